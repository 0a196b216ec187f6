"""Fusing visual and speech search (issue 13): which rule, reciprocal rank fusion or a calibrated weighted sum, ranks
the right video and moment higher, against each mode alone, per query kind.

The weighted rule is run at each `--weights` visual weight with the default coverage power (its text side is the line's
coverage ** power), at the default weight with each `--powers` power, and as it was before coverage (text side: the
line's bm25 over the best line's; w = 0.3), the baseline row.

The labelled sets come from tests/fusion_set.py (synthetic scene videos with sidecar subtitles; visual, spoken and
mixed queries with their right video and span): first the one tests/test_fusion_set.py builds (6 videos, 12 queries),
then `--sets` larger ones (`--videos` videos, `--per-kind` queries of each kind, seeds 1, 2, ...), pooled. Each set is
indexed with the real CLI and a tiny model trained as the tests' `trained_tiny` fixture trains it (or `--model DIR`);
each query is run once per side (the vector search and the transcript search, as `Searcher.search` runs them) and the
two lists are fused by every rule, so all modes see the same candidates; a check confirms that `Searcher.search`
returns the same for the rules it takes.

Video level: the rank of the first moment from the right video. Moment level: the rank of the first moment that is in
the right video and overlaps the labelled span (temporal IoU > 0): the scene for visual and mixed queries, the line
for spoken ones. R@1, R@5 and MRR over the top `-k` moments (a miss counts 0 in MRR).

`--unsaid WORDS` adds words no line says to the spoken words of spoken and mixed queries (a word the speech
recogniser missed, or one the user added), so the right line covers only part of them. A set is indexed once into
`--out`; runs with other `--unsaid` words reuse it.

usage: python bench/fusion.py [--model DIR] [--sets 3] [--videos 18] [--per-kind 8] [--unsaid WORDS] [--out bench-out/fusion]
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from vidsearch.fusion import RULES, fuse, text_moments
from vidsearch.indexdir import IndexDir
from vidsearch.search import Searcher
from vidsearch.terms import parse_query

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fusion_set import KINDS, build_fusion_set, metrics, ranks  # noqa: E402  (the labelled set the tests build)

VIDSEARCH = str(Path(sys.executable).with_name("vidsearch"))
TEST_SET = {"videos": 6, "per_kind": 4, "seed": 0}  # what tests/test_fusion_set.py builds
DEFAULTS = {name: p.default for name, p in inspect.signature(fuse).parameters.items()}
BEFORE = {"visual_weight": 0.3}  # the weighted rule as it was before coverage (6053acf): text bm25 / best, w = 0.3


def train_like_the_fixture(out: Path) -> Path:
    """The tiny model as tests/conftest.py's `trained_tiny` trains it: 150 steps on 24 synthetic videos."""
    from vidsearch.synthetic import make_dataset

    model = out / "tiny-ckpt"
    if (model / "config.json").is_file():
        return model
    train = make_dataset(out / "train", videos=24, scenes_per_video=4, seed=0)
    test = make_dataset(out / "val", videos=4, scenes_per_video=4, seed=99)
    subprocess.run([VIDSEARCH, "train", str(train), "--out", str(model), "--model", "tiny", "--frames", "8", "--steps",
                    "150", "--batch-size", "32", "--lr", "1e-3", "--checkpoint-every", "50", "--val", str(test), "--json",
                    "--device", "cpu"], check=True, stdout=subprocess.DEVNULL)
    return model


def modes(weights: list[float], powers: list[float]) -> list[tuple[str, str | None, dict]]:
    """(mode, rule, fuse's keywords): the single modes, rrf, the weighted rule at each weight (default power), at each
    other power (default weight), and before coverage ({"before": True})."""
    power = DEFAULTS["coverage_power"]
    return [("visual", None, {}), ("speech", None, {}), ("both", "rrf", {}),
            *(("both", "weighted", {"visual_weight": w}) for w in weights),
            *(("both", "weighted", {"coverage_power": p}) for p in powers if p != power),
            ("both", "weighted", {**BEFORE, "before": True})]


def label(mode: str, rule: str | None, keywords: dict) -> str:
    if rule is None:
        return mode
    if rule == "rrf":
        return "both, rrf"
    weight = keywords.get("visual_weight", DEFAULTS["visual_weight"])
    if keywords.get("before"):
        return f"both, weighted w={weight:g}, bm25/best (before)"
    power = keywords.get("coverage_power", DEFAULTS["coverage_power"])
    default = rule == DEFAULTS["rule"] and weight == DEFAULTS["visual_weight"] and power == DEFAULTS["coverage_power"]
    return f"both, weighted w={weight:g}, coverage^{power:g}" + " (default)" * default


def fused(seen: list, said: list, rule: str, keywords: dict) -> list:
    """The two lists fused as `modes` says. Before coverage, the weighted rule's text side was each line's bm25 over
    the best line's: taken as the coverage, to the power 1, it gives the same scores and the same lines."""
    if keywords.get("before"):
        best = max((m.score for m in said), default=1.0)
        said = [dataclasses.replace(m, coverage=m.score / best if best > 0 else 1.0) for m in said]
        return fuse(seen, said, rule=rule, visual_weight=keywords["visual_weight"], coverage_power=1)
    return fuse(seen, said, rule=rule, **keywords)


def run_set(folder: Path, model: Path, *, videos: int, per_kind: int, seed: int, k: int, weights: list[float],
            powers: list[float], unsaid: str = "") -> list[dict]:
    """Build, index and query one set; one row per query and mode with its video and moment ranks."""
    labelled = build_fusion_set(folder / "videos", videos=videos, per_kind=per_kind, seed=seed)
    labelled.save(folder / "labels.json")
    home = folder / "index"
    subprocess.run([VIDSEARCH, "index", str(labelled.folder), "--model", str(model)], check=True,
                   env={**os.environ, "VIDSEARCH_HOME": str(home)}, stdout=subprocess.DEVNULL)  # indexed: only hashes
    searcher = Searcher(IndexDir(home))
    rows = []
    for query in labelled.queries:
        terms = parse_query(query.text if query.kind == "visual" or not unsaid else f"{query.text} {unsaid}")
        seen = searcher.visual_moments(terms, k=k, group_by="moment", video_ids=None, min_score=None)
        said = searcher.text_matches(terms, k=k, group_by="moment", video_ids=None)
        for rule in RULES:  # the bench fuses the lists itself; make sure that is what a search does
            assert searcher.search(terms, k=k, mode="both", rule=rule) == fuse(seen, said, rule=rule)[:k], (query, rule)
        for mode, rule, keywords in modes(weights, powers):
            if mode == "visual":
                moments = seen
            elif mode == "speech":
                moments = text_moments(said)
            else:
                moments = fused(seen, said, rule, keywords)
            hits = [{"path": m.path, "start": m.start, "end": m.end} for m in moments[:k]]
            video_rank, moment_rank = ranks(query, hits, labelled.path(query.video))
            rows.append({"set": seed, "query": query.text, "kind": query.kind, "mode": label(mode, rule, keywords),
                         "video": video_rank, "moment": moment_rank})
    return rows


def table(rows: list[dict], level: str, names: list[str]) -> list[str]:
    """One row per mode: R@1, R@5 and MRR per kind and overall; the overall MRR against the better single mode's."""
    groups = [*KINDS, "all"]
    out = ["| mode | " + " | ".join(f"{g} R@1 | {g} R@5 | {g} MRR" for g in groups) + " | all MRR vs best single |",
           "|---|" + "---|" * (3 * len(groups) + 1)]
    scored = {name: {g: metrics([r[level] for r in rows if r["mode"] == name and g in (r["kind"], "all")])
                     for g in groups} for name in names}
    best_single = max(scored["visual"]["all"]["mrr"], scored["speech"]["all"]["mrr"])
    for name in names:
        cells = [f"{scored[name][g][m]:.3f}" for g in groups for m in ("r1", "r5", "mrr")]
        ratio = scored[name]["all"]["mrr"] / best_single if best_single else float("nan")
        out.append(f"| {name} | " + " | ".join(cells) + f" | {ratio:.2f}x |")
    return out


def worse_than_single(rows: list[dict], level: str, names: list[str]) -> list[str]:
    """Where a fused mode falls below the better single mode of a kind (R@1 or MRR)."""
    notes = []
    for name in names[2:]:
        bad = []
        for kind in (*KINDS, "all"):
            got = {n: metrics([r[level] for r in rows if r["mode"] == n and kind in (r["kind"], "all")])
                   for n in ("visual", "speech", name)}
            for m in ("r1", "mrr"):
                best = max(got["visual"][m], got["speech"][m])
                if got[name][m] < best - 1e-9:
                    bad.append(f"{kind} {m} {got[name][m]:.3f} < {best:.3f}")
        notes.append(f"- {name}: " + ("never below the better single mode" if not bad else "; ".join(bad)))
    return notes


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    return (f"{platform.machine()}, {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch "
            f"{torch.__version__} ({torch.get_num_threads()} threads), vidsearch at {commit}, load average "
            f"{os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="checkpoint folder to index with [default: train one as the tests do]")
    parser.add_argument("--sets", type=int, default=3, help="larger sets, pooled (seeds 1..N)")
    parser.add_argument("--videos", type=int, default=18, help="videos in each larger set")
    parser.add_argument("--per-kind", type=int, default=8, help="queries of each kind in each larger set")
    parser.add_argument("-k", type=int, default=10, help="moments returned per query")
    parser.add_argument("--weights", default="0.2,0.3,0.4,0.5,0.6,0.7", help="visual_weight values of the weighted rule")
    parser.add_argument("--powers", default="1,2,3", help="coverage_power values of the weighted rule (at the default weight)")
    parser.add_argument("--unsaid", default="", help="words no line says, added to the spoken words of spoken and mixed queries")
    parser.add_argument("--out", type=Path, default=Path("bench-out/fusion"), help="work folder")
    args = parser.parse_args()
    weights = [float(w) for w in args.weights.split(",")]
    powers = [float(p) for p in args.powers.split(",")]
    names = [label(*m) for m in modes(weights, powers)]
    started = time.perf_counter()
    print(f"machine: {machine()}")
    model = args.model or train_like_the_fixture(args.out)
    print(f"model: {model}")
    if args.unsaid:
        print(f"spoken and mixed queries end with words no line says: {args.unsaid!r}")
    options = {"k": args.k, "weights": weights, "powers": powers, "unsaid": args.unsaid}
    results = {"test set": run_set(args.out / "test-set", model, **options, **TEST_SET)}
    larger = []
    for seed in range(1, args.sets + 1):
        larger += run_set(args.out / f"set-{seed}", model, videos=args.videos, per_kind=args.per_kind, seed=seed, **options)
    results[f"{args.sets} sets of {args.videos} videos"] = larger
    (args.out / "ranks.json").write_text(json.dumps(results, indent=1))
    for title, rows in results.items():
        queries = len({(r["set"], r["query"]) for r in rows})
        for level in ("video", "moment"):
            print(f"\n{title}, {queries} queries, {level} level (top {args.k}):\n")
            print("\n".join(table(rows, level, names)))
            print("\n".join(worse_than_single(rows, level, names)))
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
