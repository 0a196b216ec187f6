"""Query latency on a 100k-segment index: `vidsearch query --json` wall time (process start to printed JSON) and
where it goes (imports, fingerprint, FAISS load, model load, search), for checkpoint-folder indexes and the default
`clip-b32` (pretrained weights from a Hugging Face cache this script fills with random weights: the text tower
only), against a random-init registry model (`tiny`: the full model is built), plus the biggest imports.

usage: python bench/query.py [--videos 1000] [--segments 100] [--runs 5] [--out bench-out/query]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

VIDSEARCH = str(Path(sys.executable).with_name("vidsearch"))
QUERY = "a red circle moving left"
ENV = dict(os.environ)  # set in main(): bytecode cached outside the checkout, as an installed package has it


# -- building the indexes (package API, as vidsearch/indexer.py records them) ------------------------------------

def make_checkpoint(name: str, folder: Path) -> None:
    """A random-init model of registry shape `name`, saved as a checkpoint folder (what `train` writes)."""
    from vidsearch import registry

    if (folder / registry.WEIGHTS_FILE).is_file():
        return
    config, _ = registry.resolve(name)
    config = replace(config, name=f"{name}-random", pretrained=None)
    registry.save_checkpoint(registry.build_model(config, load_pretrained=False), config, folder)


def fill_hf_cache(home: Path) -> None:
    """Random ViT-B/32 weights where open_clip's `openai` tag for clip-b32 looks for them (no network here)."""
    snapshot = home / "hub" / "models--timm--vit_base_patch32_clip_224.openai" / "snapshots" / ("0" * 40)
    if (snapshot / "open_clip_model.safetensors").is_file():
        return
    import open_clip
    from safetensors.torch import save_file

    (snapshot.parent.parent / "refs").mkdir(parents=True, exist_ok=True)
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    snapshot.mkdir(parents=True, exist_ok=True)
    model = open_clip.create_model("ViT-B-32-quickgelu")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snapshot / "open_clip_model.safetensors"))


def build_clip_index(out: Path, env: dict, *, videos: int, segments: int) -> tuple[Path, float]:
    """`out/index`: build_index with `clip-b32` (random weights filled into `out/hf`) from a 2-s seed video made in
    `out/seed`; (the index folder, seconds to build it)."""
    from vidsearch.synthetic import make_dataset

    fill_hf_cache(out / "hf")
    seed_videos = out / "seed"
    if not seed_videos.is_dir():
        make_dataset(seed_videos, videos=1, scenes_per_video=1, scene_seconds=2.0)
    index = out / "index"
    return index, build_index(index, "clip-b32", seed_videos / "videos", env, videos=videos, segments=segments)


def build_index(path: Path, spec: str, seed_videos: Path, env: dict, *, videos: int, segments: int) -> float:
    """`vidsearch index` of one short video (so the index records what a real run records), then `videos` x
    `segments` random unit vectors added through Database.save_video; returns seconds."""
    import shutil

    import numpy as np

    from vidsearch.db import Segment
    from vidsearch.indexdir import IndexDir

    shutil.rmtree(path, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([VIDSEARCH, "index", str(seed_videos), "--model", spec, "--index", str(path), "--device", "cpu"],
                   check=True, capture_output=True, env=env)
    index = IndexDir(path)
    index.lock_for_writing()
    dim = index.dim
    rng = np.random.default_rng(0)
    for v in range(videos):
        vectors = rng.standard_normal((segments + 1, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = [Segment("segment", 4.0 * s, 4.0 * s + 4.0, vectors[s]) for s in range(segments)]
        rows.append(Segment("window", 0.0, 4.0 * segments, vectors[-1]))
        index.db.save_video(path=f"/videos/v{v:04d}.mp4", size=1000 + v, mtime=1.0, hash=f"{v:032x}",
                            duration=4.0 * segments, fps=30.0, frames=segments * 4, segments=rows)
    index.sync_vectors()  # builds and writes FAISS from SQLite, as the end of an `index` run does
    index.close()
    return time.perf_counter() - started


# -- the in-process split (run in a fresh interpreter per sample) ------------------------------------------------

def split(index_path: str) -> dict:
    """Wall seconds of each stage of a query, in the order the CLI runs them, then the parts measured alone."""
    clock = time.perf_counter
    out = {}
    t = clock()
    import vidsearch.cli  # noqa: F401  (what `vidsearch query` imports before running)
    import vidsearch.report  # noqa: F401
    from vidsearch import search
    from vidsearch.terms import parse_query
    out["import vidsearch"] = clock() - t
    t = clock()
    import torch
    out["import torch"] = clock() - t
    torch.set_num_threads(1)  # as `vidsearch query` does for a text query
    t = clock()
    torch.cuda.is_available()
    out["cuda check"] = clock() - t
    from vidsearch import registry
    from vidsearch.encoder import TextEncoder
    from vidsearch.indexdir import IndexDir

    t = clock()
    index = IndexDir(Path(index_path))
    searcher = search.Searcher(index, device="cpu")
    out["Searcher()"] = clock() - t
    t = clock()
    moments = searcher.search(parse_query(QUERY), k=10)
    out["first search"] = clock() - t
    t = clock()
    searcher.search(parse_query("a blue square moving up"), k=10)
    out["warm search"] = clock() - t
    assert moments, "the query found nothing"
    # the same parts again, one at a time (files now in the page cache, modules imported)
    recorded = index.db.get_setting("model")
    spec = recorded["spec"]
    t = clock()
    registry.fingerprint(spec, weights=recorded.get("weights"))  # as Searcher checks it
    out["fingerprint"] = clock() - t
    t = clock()
    fresh = IndexDir(Path(index_path))
    fresh.vectors(search_only=True)  # as Searcher loads it
    out["FAISS load + check"] = clock() - t
    t = clock()
    encoder = TextEncoder(spec, "cpu", weights_file=recorded.get("weights_file"))
    out["model load (again)"] = clock() - t
    t = clock()
    vector = encoder.encode_text([QUERY])
    out["encode text (first call)"] = clock() - t
    t = clock()
    encoder.encode_text(["a blue square moving up"])
    out["encode text (second call)"] = clock() - t
    t = clock()
    fresh.vectors().search(vector, 100)
    out["FAISS search k=100"] = clock() - t
    out["open_clip imported"] = "open_clip" in sys.modules
    out["torchvision imported"] = "torchvision" in sys.modules
    return out


# -- measuring the CLI ---------------------------------------------------------------------------------------------

def cli_wall(index: Path, runs: int, env: dict) -> list[tuple[float, float]]:
    """(seconds to the printed JSON, seconds to process exit) of `runs` `vidsearch query` runs after a warm-up."""
    command = [VIDSEARCH, "query", QUERY, "--json", "--index", str(index), "--device", "cpu"]
    walls = []
    for i in range(runs + 1):  # the first is a warm-up (page cache, bytecode), not counted
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = proc.stdout.readline()  # the JSON is one line
        printed = time.perf_counter() - started
        rest, errors = proc.communicate()
        exited = time.perf_counter() - started
        if proc.returncode or not json.loads(line)["hits"]:
            raise SystemExit(f"query failed ({proc.returncode}): {errors.strip() or line + rest}")
        if i:
            walls.append((printed, exited))
    return walls


def top_imports(index: Path, env: dict, count: int = 8) -> list[tuple[str, float]]:
    """Top-level imports of one `vidsearch query` run by cumulative seconds (`python -X importtime`)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "vidsearch", "query", QUERY, "--json", "--index",
                           str(index), "--device", "cpu"], check=True, capture_output=True, text=True, env=env)
    found = []
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)  # no indent: imported from the top
        if match:
            found.append((match.group(2), int(match.group(1)) / 1e6))
    return sorted(found, key=lambda x: -x[1])[:count]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--segments", type=int, default=100, help="segments per video")
    parser.add_argument("--runs", type=int, default=5, help="timed CLI runs (after one warm-up) and in-process samples")
    parser.add_argument("--out", type=Path, default=Path("bench-out/query"))
    parser.add_argument("--split", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.split:
        print(json.dumps(split(args.split)))
        return
    import torch

    out = args.out.resolve()
    ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    ENV["PYTHONPYCACHEPREFIX"] = str(out / "pycache")
    hf = {"HF_HOME": str(out / "hf"), "HF_HUB_OFFLINE": "1"}
    cases = [  # (label, how the model is given, spec, index folder, extra environment)
        ("clip-b32 (default), pretrained", "text tower only", "clip-b32", "index-clip", hf),
        ("clip-b32 shape, checkpoint folder", "text tower only", out / "clip-b32-ckpt", "index0", {}),
        ("tiny, checkpoint folder", "text tower only", out / "tiny-ckpt", "index1", {}),
        ("tiny, registry spec", "full model", "tiny", "index2", {}),
    ]
    fill_hf_cache(out / "hf")
    make_checkpoint("clip-b32", out / "clip-b32-ckpt")
    make_checkpoint("tiny", out / "tiny-ckpt")
    from vidsearch.synthetic import make_dataset

    seed_videos = out / "seed"
    if not seed_videos.is_dir():
        make_dataset(seed_videos, videos=1, scenes_per_video=1, scene_seconds=2.0)
    load_before = load()
    results, built_s = [], {}
    for label, path, spec, folder, extra in cases:
        index, env = out / folder, {**ENV, **extra}
        if folder not in built_s:
            built_s[folder] = build_index(index, str(spec), seed_videos / "videos", env, videos=args.videos,
                                          segments=args.segments)
        walls = cli_wall(index, args.runs, env)
        samples = [json.loads(subprocess.run([sys.executable, __file__, "--split", str(index)], check=True,
                                             capture_output=True, text=True, env=env).stdout) for _ in range(args.runs)]
        parts = {k: (statistics.median(s[k] for s in samples) if not isinstance(samples[0][k], bool) else samples[0][k])
                 for k in samples[0]}
        weights = Path(spec) / "model.safetensors"
        results.append({"label": label, "path": path, "walls": walls, "parts": parts,
                        "weights_mib": weights.stat().st_size / 2**20 if weights.is_file() else 0.0,
                        "imports": top_imports(index, env)})

    import vidsearch

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads; load average (1/5/15 min) {load_before} before, {load()} after; "
          f"vidsearch from {Path(vidsearch.__file__).parent}")
    print(f"index: {args.videos} videos x {args.segments} segments = {args.videos * args.segments} vectors "
          f"(IDMap2,Flat), random unit vectors (plus one real 2 s video); query {QUERY!r}, --json, --device cpu; bytecode cached "
          f"(PYTHONPYCACHEPREFIX), page cache warm\n")
    for folder, seconds in built_s.items():
        print(f"built {folder} in {seconds:.1f} s")
    print(f"\n`vidsearch query` wall time from process start (median of {args.runs} after a warm-up); 'to exit' adds "
          "the interpreter's teardown after the JSON is printed:\n")
    base = statistics.median(p for p, _ in results[0]["walls"])
    print("| index model | query loads | weights file MiB | to JSON median s | min s | max s | vs first row | "
          "to exit median s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        printed = [p for p, _ in r["walls"]]
        exited = statistics.median(e for _, e in r["walls"])
        mib = f"{r['weights_mib']:.0f}" if r["weights_mib"] else "-"
        print(f"| {r['label']} | {r['path']} | {mib} | {statistics.median(printed):.2f} | "
              f"{min(printed):.2f} | {max(printed):.2f} | {statistics.median(printed) / base:.2f}x | {exited:.2f} |")
    print(f"\nIn-process split, seconds (median of {args.runs} fresh interpreters). The first five stages run in the "
          "CLI's order and add up to one query (the sum is below the CLI wall: interpreter start, typer and printing are "
          "left out); 'warm search' is a second query in the same process; the rest are parts re-timed alone "
          "afterwards (files cached, modules imported):\n")
    keys = [k for k in results[0]["parts"] if not k.endswith("imported")]
    print("| stage | " + " | ".join(r["label"] for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for k in keys:
        print(f"| {k} | " + " | ".join(f"{r['parts'][k]:.3f}" for r in results) + " |")
    total = ["import vidsearch", "import torch", "cuda check", "Searcher()", "first search"]
    print("| **sum of stages** | " + " | ".join(f"**{sum(r['parts'][k] for k in total):.3f}**" for r in results) + " |")
    for k in ("open_clip imported", "torchvision imported"):
        print(f"| {k} | " + " | ".join("yes" if r["parts"][k] else "no" for r in results) + " |")
    print("\nBiggest top-level imports of one `vidsearch query` run (`python -X importtime`, cumulative s):\n")
    print("| " + " | ".join(r["label"] for r in results) + " |")
    print("|" + "---|" * len(results))
    for row in range(max(len(r["imports"]) for r in results)):
        cells = [f"{r['imports'][row][0]} {r['imports'][row][1]:.2f}" if row < len(r["imports"]) else ""
                 for r in results]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
