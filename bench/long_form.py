"""Long-form queries (issue 14): moment retrieval library-wide on long synthetic videos, per model and search variant.

The labelled set comes from tests/long_form_set.py: `--videos` videos of 3-5 scenes each, 6-12 s per scene (a shape of
one colour moving one way), with four kinds of query and every correct span in the library:
- single: a scene's caption as in training ("a red circle moving left");
- appearance: colour and shape only, in other word orders ("circle, red");
- motion: colour, shape and direction, direction first ("moving left, a red circle"), asked only where the library
  shows that colour and shape moving another way too;
- sequence: two consecutive scenes ("a red square moving up, then a blue circle moving left"; the span is both).

Models (MODELS): `joint` and `frame` are the tiny encoder trained as the README's demo trains it (300 synthetic videos
of one shape moving four ways, `--group-by-video`, 8 frames at 1 fps, lr 1e-3; as bench/motion.py, once per temporal
mixing); `joint+long` (not run by default) continues `joint` on long synthetic videos whose manifest also captions
every two consecutive scenes ("a X, then a Y") over both, 16 frames, only the last block trained; `joint-phrased` and
`frame-phrased` are the demo's recipe on the same videos with each caption a list of six phrasings
(synthetic.PHRASINGS), one drawn per step (caption variety). `--model NAME=DIR`
takes a checkpoint instead of training. Each model indexes the set with the real CLI (the index's defaults: 4-s
segments, the model's clip length as window); each search variant in SEARCHES is then one
`vidsearch eval-moments QUERIES --index DIR --mode visual --json FLAGS...` process, which runs all the queries.

Chance: R@K IoU>=0.5 when the top K hits are K different segments of the 4-s grid drawn at random from the library.

Search variants (SEARCHES): `--scale segment`, `window` and `auto` (multi-scale), each with every query quoted whole
(so "A, then B" is searched as one text, as before sequence queries) or, for the `+ sequence` ones, as written.

usage: python bench/long_form.py [--videos 24] [--seed 1] [--steps 1500] [--train-videos 300]
                                 [--models joint,frame,joint+long,joint-phrased,...] [--model joint=DIR]
                                 [--long-videos 150] [--searches segment,...] [--out bench-out/long-form]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from vidsearch.synthetic import make_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from long_form_set import KINDS, build_long_form_set, random_segment_recall  # noqa: E402  (the set the tests build)

VIDSEARCH = str(Path(sys.executable).with_name("vidsearch"))


@dataclass(frozen=True)
class Search:
    """A search variant: the flags eval-moments gets for it (beside --index, --mode visual, --json), and whether "A, then
    B" is a sequence query. Without, every query is quoted whole, which makes the separator plain words and leaves the
    vector as it is (quotes are not sent to the text encoder): the words of a sequence query searched as one text."""

    name: str
    flags: list[str]
    sequence: bool = False


# A new variant is one line here.
SEARCHES: list[Search] = [
    Search("segment", ["--scale", "segment"]),
    Search("window", ["--scale", "window"]),
    Search("multi-scale", ["--scale", "auto"]),
    Search("segment + sequence", ["--scale", "segment"], sequence=True),
    Search("multi-scale + sequence", ["--scale", "auto"], sequence=True),
]


@dataclass(frozen=True)
class Recipe:
    """How a model is trained: `vidsearch train` flags beyond TRAIN, on which manifest, and from which model."""

    flags: list[str]
    # "scenes": the demo's 300 videos of 8-s scenes; "phrased": the same videos, each caption a list of phrasings
    # (synthetic.PHRASINGS); "long": --long-videos long videos, both captions
    manifest: str = "scenes"
    after: str | None = None  # start from this model's checkpoint (the paper's second, long-video stage)


# Models: a name and its recipe; the first ones are trained as the README's demo trains the tiny encoder.
MODELS: dict[str, Recipe] = {
    "joint": Recipe(["--mixing", "joint", "--frames", "8"]),
    "frame": Recipe(["--mixing", "frame", "--frames", "8"]),
    # Stage 2 on long videos whose manifest also has a caption per two consecutive scenes ("a X, then a Y"), only the
    # last block trained, as the README's two-stage recipe; for the "multi-scene captions" rows.
    "joint+long": Recipe(["--frames", "16", "--train-last", "1"], manifest="long", after="joint"),
    # Caption variety: the demo's recipe on the same videos, each caption said six ways, one drawn per step.
    "joint-phrased": Recipe(["--mixing", "joint", "--frames", "8"], manifest="phrased"),
    "frame-phrased": Recipe(["--mixing", "frame", "--frames", "8"], manifest="phrased"),
}
TRAIN = ["--batch-size", "32", "--lr", "1e-3", "--group-by-video", "--checkpoint-every", "500",
         "--device", "cpu"]  # examples/demo.py's, as the README's demo runs it
DEMO_VIDEOS = 300  # training videos of the demo's recipe (examples/demo.py)
LONG_SEED = 100  # of the long-form training set of "long" recipes (the labelled sets use 0 in the tests, 1 here)
METRICS = ("R@1@0.5", "R@1@0.7", "R@5@0.5", "mAP@0.5", "mIoU")


def train(out: Path, name: str, steps: int, given: dict[str, str], long_videos: int, train_videos: int) -> Path:
    """MODELS[name] trained with its recipe (kept in `out` and reused), or the checkpoint given for it."""
    if name in given:
        return Path(given[name])
    model = out / f"tiny-{name}"
    if (model / "config.json").is_file():
        return model
    recipe = MODELS[name]
    if recipe.manifest == "long":
        manifest = out / f"train-long-{long_videos}" / "pairs.jsonl"
        if not manifest.is_file():
            built = build_long_form_set(manifest.parent / "videos", videos=long_videos, seed=LONG_SEED)
            built.write_manifest(manifest, "both")
    else:
        phrased = recipe.manifest == "phrased"
        folder = out / ("train" if train_videos == DEMO_VIDEOS else f"train-{train_videos}")
        manifest = folder / ("phrased.jsonl" if phrased else "pairs.jsonl")
        if not manifest.is_file():
            make_dataset(folder, videos=train_videos, scenes_per_video=4, hard_negatives=True, seed=0,
                         manifest_name=manifest.name, phrasings=phrased)
    start = ["--model", str(train(out, recipe.after, steps, given, long_videos, train_videos)) if recipe.after else "tiny"]
    started = time.perf_counter()
    subprocess.run([VIDSEARCH, "train", str(manifest), "--out", str(model), "--steps", str(steps), *start, *TRAIN,
                    *recipe.flags], check=True, stdout=subprocess.DEVNULL)
    print(f"trained {name}: {steps} steps in {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    return model


def index(videos: Path, model: Path, home: Path) -> Path:
    """The set indexed with the real CLI and the index's defaults (4-s segments; the model's clip length as window)."""
    subprocess.run([VIDSEARCH, "index", str(videos), "--model", str(model), "--index", str(home), "--device", "cpu"],
                   check=True, stdout=subprocess.DEVNULL)  # incremental: unchanged files are skipped
    return home


def eval_moments(queries: Path, home: Path, flags: list[str]) -> tuple[dict, float]:
    """One eval-moments process over all the queries: its --json result and its wall time."""
    started = time.perf_counter()
    proc = subprocess.run([VIDSEARCH, "eval-moments", str(queries), "--index", str(home), "--mode", "visual",
                           "--device", "cpu", "--json", *flags], check=True, capture_output=True, text=True)
    return json.loads(proc.stdout), time.perf_counter() - started


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    return (f"{platform.machine()}, {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch "
            f"{torch.__version__} ({torch.get_num_threads()} threads), vidsearch at {commit}, load average "
            f"{os.getloadavg()[0]:.2f}")


def tables(rows: list[dict], chance: dict[int, dict[str, float]]) -> list[str]:
    """The issue's table, then every metric per kind, with the chance rows."""
    out = ["| model | search | R@1 IoU≥0.5, single | R@1 IoU≥0.5, sequence | mean IoU |", "|---|---|---|---|---|"]
    for row in rows:
        kinds = row["result"]["by_kind"]
        out.append(f"| {row['model']} | {row['search']} | {kinds['single']['R@1@0.5']:.3f} | "
                   f"{kinds['sequence']['R@1@0.5']:.3f} | {row['result']['all']['mIoU']:.3f} |")
    out.append(f"| chance (a random 4-s segment) | | {chance[1]['single']:.3f} | {chance[1]['sequence']:.3f} | |")
    out += ["", "| model | search | kind | " + " | ".join(METRICS) + " |", "|---|---|---|" + "---|" * len(METRICS)]
    for row in rows:
        for kind in (*KINDS, "all"):
            values = row["result"]["all"] if kind == "all" else row["result"]["by_kind"][kind]
            out.append(f"| {row['model']} | {row['search']} | {kind} | "
                       + " | ".join(f"{values[m]:.3f}" for m in METRICS) + " |")
    for kind in (*KINDS, "all"):
        out.append(f"| chance | random segments | {kind} | {chance[1][kind]:.3f} | | {chance[5][kind]:.3f} | | |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=24, help="videos in the labelled set")
    parser.add_argument("--seed", type=int, default=1, help="seed of the labelled set (the tests use 0)")
    parser.add_argument("--steps", type=int, default=1500, help="training steps of each model (the demo's)")
    parser.add_argument("--models", default="joint,frame", help=f"models to run, of {', '.join(MODELS)}")
    parser.add_argument("--train-videos", type=int, default=DEMO_VIDEOS,
                        help="videos (of 4 scenes) in the training set of the short-clip recipes (the demo's 300)")
    parser.add_argument("--long-videos", type=int, default=150, help="videos in the training set of joint+long")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=DIR",
                        help="use this checkpoint for model NAME instead of training it (repeatable)")
    parser.add_argument("--searches", default=",".join(search.name for search in SEARCHES),
                        help=f"search variants to run, of {', '.join(search.name for search in SEARCHES)}")
    parser.add_argument("--out", type=Path, default=Path("bench-out/long-form"), help="work folder")
    args = parser.parse_args()
    given = dict(item.split("=", 1) for item in args.model)
    models = args.models.split(",")
    searches = [search for search in SEARCHES if search.name in args.searches.split(",")]
    unknown = [m for m in [*models, *given] if m not in MODELS] + sorted(
        set(args.searches.split(",")) - {search.name for search in SEARCHES})
    if unknown:
        parser.error(f"unknown model or search: {', '.join(unknown)}")
    started = time.perf_counter()
    print(f"machine: {machine()}", flush=True)

    folder = args.out / f"set-{args.videos}-{args.seed}"
    labelled = build_long_form_set(folder / "videos", videos=args.videos, seed=args.seed)
    queries = {True: labelled.write_queries(folder / "queries.jsonl")}
    queries[False] = labelled.write_queries(folder / "queries-quoted.jsonl", quoted=True)
    labelled.save(folder / "labels.json")
    scenes = [s for spans in labelled.scenes.values() for s in spans]
    counts = Counter(q.kind for q in labelled.queries)
    print(f"set: {len(labelled.scenes)} videos, {len(scenes)} scenes, "
          f"{sum(labelled.duration(v) for v in labelled.scenes) / 60:.1f} min; queries: "
          + ", ".join(f"{counts[k]} {k}" for k in KINDS), flush=True)
    chance = {k: random_segment_recall(labelled, k=k) for k in (1, 5)}

    rows = []
    for name in models:
        model = train(args.out, name, args.steps, given, args.long_videos, args.train_videos)
        home = index(labelled.folder, model, folder / f"index-{name}")
        for search in searches:
            result, seconds = eval_moments(queries[search.sequence], home, search.flags)
            rows.append({"model": name, "search": search.name, "flags": search.flags, "sequence": search.sequence,
                         "checkpoint": str(model), "seconds": seconds, "result": result})
            print(f"{name} / {search.name}: {result['queries']} queries in {seconds:.0f} s", flush=True)
    (args.out / "results.json").write_text(json.dumps({"chance": chance, "rows": rows}, indent=1))
    print()
    print("\n".join(tables(rows, chance)))
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
