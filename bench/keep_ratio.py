"""Inference-time token dropping (`vidsearch index --keep-ratio R`): retrieval quality and encode throughput of a
briefly trained `tiny` model on held-out synthetic videos, and ViT-B/32-shape joint throughput, per keep ratio.

usage: python bench/keep_ratio.py [--steps 1500] [--train-videos 300] [--test-videos 15] [--ratios 1 0.75 0.5 0.25]
                                  [--out bench-out/keep_ratio]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

VIDSEARCH = str(Path(sys.executable).with_name("vidsearch"))


def cli(*args: str) -> dict:
    out = subprocess.run([VIDSEARCH, *args, "--json"], check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)


def train(out: Path, *, train_videos: int, test_manifest: Path, steps: int) -> tuple[Path, dict, float]:
    """The tiny model trained through the CLI as bench/motion.py does (hard negatives, --group-by-video); reused when
    a run with the same settings already finished there."""
    from vidsearch.synthetic import make_dataset

    model = out / f"tiny-{train_videos}v-{steps}s"
    summary_file = model.with_suffix(".json")
    if summary_file.is_file() and (model / "model.safetensors").is_file():
        return model, json.loads(summary_file.read_text()), 0.0
    started = time.perf_counter()
    manifest = make_dataset(out / "train", videos=train_videos, scenes_per_video=4, hard_negatives=True, seed=0)
    summary = cli("train", str(manifest), "--out", str(model), "--model", "tiny", "--frames", "8", "--steps", str(steps),
                  "--batch-size", "32", "--lr", "1e-3", "--group-by-video", "--checkpoint-every", str(steps),
                  "--val", str(test_manifest), "--device", "cpu")
    summary_file.write_text(json.dumps(summary))
    return model, summary, time.perf_counter() - started


def overlaps(moment, scene: dict, videos: Path) -> bool:
    return (moment.path == str((videos.parent / scene["video"]).resolve()) and moment.start < scene["end"]
            and moment.end > scene["start"])


def retrieval(index: Path, scenes: list[dict], videos: Path) -> tuple[float, float, float]:
    """(top-1, top-3, seconds per query): share of distinct captions with a scene of that caption among the first
    1 / 3 moments (queried in-process through Searcher, as `vidsearch query` does)."""
    from vidsearch.indexdir import IndexDir
    from vidsearch.search import Searcher

    searcher = Searcher(IndexDir(index), device="cpu")
    captions = sorted({s["caption"] for s in scenes})
    top1 = top3 = 0
    started = time.perf_counter()
    for caption in captions:
        moments = search(searcher, caption)[:3]
        truth = [s for s in scenes if s["caption"] == caption]
        top1 += any(overlaps(m, s, videos) for m in moments[:1] for s in truth)
        top3 += any(overlaps(m, s, videos) for m in moments for s in truth)
    per_query = (time.perf_counter() - started) / len(captions)
    searcher.index.close()
    return top1 / len(captions), top3 / len(captions), per_query


def search(searcher, text: str):
    try:  # the query API takes parsed terms since vidsearch.terms exists; plain text before that
        from vidsearch.terms import parse_query
    except ImportError:
        return searcher.search(text, k=3)
    return searcher.search(parse_query(text), k=3)


def encode_rate(encoder, windows: list[np.ndarray], keep_ratio: float, repeat: int = 2) -> float:
    """Frames per second of encode_clip over these windows (best of `repeat` passes, after a warm-up)."""
    import torch

    torch.manual_seed(0)
    encoder.encode_clip(windows[0], keep_ratio=keep_ratio)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for frames in windows:
            encoder.encode_clip(frames, keep_ratio=keep_ratio)
        best = min(best, time.perf_counter() - started)
    return sum(len(w) for w in windows) / best


def tiny_windows(model: Path, videos: Path) -> list[np.ndarray]:
    """The held-out videos cut into the index's windows (8 frames at 1 fps), decoded once."""
    from vidsearch.decode_workers import DecodeJob, Window, decode_all
    from vidsearch.registry import resolve

    config, _ = resolve(str(model))
    size = config.clip_arch["vision_cfg"]["image_size"]
    jobs = [DecodeJob(i, p, 1.0, size, config.window) for i, p in enumerate(sorted(videos.glob("*.mp4")))]
    return [e.frames for e in decode_all(jobs, workers=0, depth=4) if isinstance(e, Window)]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500, help="training steps for the tiny model")
    parser.add_argument("--train-videos", type=int, default=300)
    parser.add_argument("--test-videos", type=int, default=15)
    parser.add_argument("--ratios", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25])
    parser.add_argument("--b32-ratios", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    parser.add_argument("--out", type=Path, default=Path("bench-out/keep_ratio"))
    args = parser.parse_args()
    import torch

    import vidsearch
    from vidsearch import registry
    from vidsearch.encoder import Encoder
    from vidsearch.synthetic import make_dataset

    started = time.perf_counter()
    load_before = load()
    out = args.out.resolve()
    test = make_dataset(out / f"test{args.test_videos}", videos=args.test_videos, scenes_per_video=4, seed=99)
    videos = test.parent / "videos"
    scenes = [json.loads(line) for line in test.read_text().splitlines()]
    model, summary, train_s = train(out, train_videos=args.train_videos, test_manifest=test, steps=args.steps)

    encoder = Encoder.load(str(model), "cpu")
    windows = tiny_windows(model, videos)
    rows = []
    for ratio in args.ratios:
        index = out / f"index-{ratio}"
        shutil.rmtree(index, ignore_errors=True)
        indexed = cli("index", str(videos), "--model", str(model), "--index", str(index), "--segment", "8",
                      "--keep-ratio", str(ratio), "--device", "cpu")
        top1, top3, per_query = retrieval(index, scenes, videos)
        rows.append({"ratio": ratio, "top1": top1, "top3": top3, "query_s": per_query, "index_s": indexed["wall_seconds"],
                     "fps": encode_rate(encoder, windows, ratio, repeat=5)})

    config, _ = registry.resolve("longvivit-b32")  # joint mixing, ViT-B/32 shape; random weights cost the same
    big = Encoder(config, registry.build_model(config, load_pretrained=False), torch.device("cpu"))
    clip = np.random.default_rng(0).integers(0, 255, size=(64, 224, 224, 3), dtype=np.uint8)
    b32 = [(ratio, encode_rate(big, [clip], ratio)) for ratio in args.b32_ratios]

    captions = len({s["caption"] for s in scenes})
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads; load average (1/5/15 min) {load_before} before, {load()} after; "
          f"vidsearch from {Path(vidsearch.__file__).parent}\n")
    print(f"tiny model: {args.steps} steps on {args.train_videos} hard-negative videos x 4 scenes (batch 32, lr 1e-3, "
          f"75% training mask, 8 frames at 1 fps, --group-by-video); "
          + (f"trained in {train_s:.0f} s" if train_s else "reused from an earlier run") +
          f"; its held-out t2v R@1 at the end of training: {summary.get('val', {}).get('t2v_r1', float('nan')):.3f}")
    print(f"held out: {args.test_videos} videos x 4 scenes of 8 s ({len(scenes)} scenes, {captions} distinct captions; "
          f"chance top-1 about {1 / len(scenes):.3f}); index --segment 8 (one segment per scene); a query is right "
          "when a moment overlaps a scene with its caption. Encode frames/s: encode_clip over the "
          f"{len(windows)} held-out windows of 8 frames, best of 5.\n")
    base = rows[0]
    print("| keep ratio | top-1 | top-3 | tiny encode frames/s | vs keep 1.0 | index run s (CLI, incl. start-up) | "
          "query ms |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['ratio']:.2f} | {r['top1']:.3f} | {r['top3']:.3f} | {r['fps']:.0f} | {r['fps'] / base['fps']:.2f}x | "
              f"{r['index_s']:.1f} | {1000 * r['query_s']:.0f} |")
    print("\nViT-B/32 shape, joint mixing, one 64-frame window at 224 px (random weights), best of 2:\n")
    print("| keep ratio | frames/s | vs keep 1.0 |")
    print("|---|---|---|")
    for ratio, fps in b32:
        print(f"| {ratio:.2f} | {fps:.1f} | {fps / b32[0][1]:.2f}x |")
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
