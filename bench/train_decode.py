"""Training's data path: clips/s with decoding in a thread (--workers 0, the only way before) against decode worker
processes (--workers N), in the same run, on synthetic videos (vidsearch.synthetic.make_dataset).

Two measurements, each repeated and reported as the median:
- data only: the training batches (decode, random window, tokens, stacking) for --steps steps, no model, at the tiny
  model's 64 px and at ViT-B/32's 224 px;
- whole training: `train` of the tiny model on the CPU for --steps steps, clips/s as the run reports it (from the
  first step's wait for data to the last step, so the pool's start is counted).
The clip cache is off in both (every step decodes, as with a data set too large to cache); with it on, decoding
stops after the first epoch whatever --workers is.

usage: python bench/train_decode.py [--videos 40] [--steps 30] [--batch-size 16] [--workers 0 1 2] [--repeats 3]
                                    [--out bench-out/train_decode]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from vidsearch import registry
from vidsearch import train as training
from vidsearch.data import ClipDataset, epoch_batches, load_pairs
from vidsearch.synthetic import make_dataset
from vidsearch.train import Distributed, TrainSettings


def dataset_manifest(out: Path, videos: int, size: int, fps: float) -> Path:
    """The synthetic set, made once per shape and reused by later runs."""
    folder = out / f"videos{videos}-{size}px-{fps:g}fps"
    manifest = folder / "pairs.jsonl"
    if not manifest.is_file():
        print(f"making {videos} videos of 4 scenes x 8 s, {size} px, {fps:g} fps in {folder} ...", flush=True)
        make_dataset(folder, videos=videos, scenes_per_video=4, fps=fps, size=size, seed=0)
    return manifest


def data_only(pairs, tokenizer, *, size: int, frames: int, batch: int, steps: int, workers: int) -> float:
    """Clips/s of the batches training consumes, taken as fast as they come."""
    settings = TrainSettings(manifest="", out="", frames=frames, batch_size=batch, seed=0)
    dataset = ClipDataset(pairs, frames=frames, fps=settings.fps, size=size, cache=False)
    per_epoch = len(epoch_batches(pairs, batch, np.random.default_rng(0), group_by_video=False))
    started = time.perf_counter()
    batches = training._batches(dataset, settings, tokenizer, Distributed("cpu"), start=0, total=steps, per_epoch=per_epoch,
                                workers=workers, pin=False)
    clips = sum(batch.video.shape[0] for batch in batches)
    return clips / (time.perf_counter() - started)


def whole_training(manifest: Path, out: Path, *, frames: int, batch: int, steps: int, workers: int) -> float:
    """Clips/s that a tiny-model `train` run reports at its last step."""
    reports = []
    settings = TrainSettings(manifest=str(manifest), out=str(out), model="tiny", frames=frames, steps=steps, batch_size=batch,
                             lr=1e-3, device="cpu", workers=workers, log_every=steps, checkpoint_every=10 * steps)
    training.train(settings, on_step=reports.append)
    return reports[-1].clips_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=40, help="synthetic videos of 4 scenes each (one pair a scene)")
    parser.add_argument("--video-size", type=int, default=256, help="their frame size, px")
    parser.add_argument("--video-fps", type=float, default=24.0, help="their frame rate")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-out/train_decode"))
    args = parser.parse_args()

    manifest = dataset_manifest(args.out, args.videos, args.video_size, args.video_fps)
    pairs, problems = load_pairs(manifest)
    assert not problems, problems
    training.CACHE_LIMIT_BYTES = 0  # every step decodes (see the docstring)
    config = registry.resolve("tiny")[0]
    tokenizer = registry.build_tokenizer(config)
    print(f"{len(pairs)} pairs, {args.frames}-frame clips at 1 fps, batch {args.batch_size}, {args.steps} steps; "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"{platform.machine()}", flush=True)

    # warm the page cache and the imports, so the first configuration measured pays nothing extra
    data_only(pairs, tokenizer, size=64, frames=args.frames, batch=args.batch_size, steps=max(1, len(pairs) // args.batch_size),
              workers=0)

    rows = []
    cases = [("data only, 64 px", {"size": 64}), ("data only, 224 px", {"size": 224}), ("whole tiny training, 64 px", None)]
    for name, data in cases:
        results: dict[int, list[float]] = {w: [] for w in args.workers}
        for repeat in range(args.repeats):
            order = args.workers if repeat % 2 == 0 else args.workers[::-1]  # alternate, so drift in load spreads evenly
            for workers in order:
                if data is not None:
                    rate = data_only(pairs, tokenizer, **data, frames=args.frames, batch=args.batch_size, steps=args.steps,
                                     workers=workers)
                else:
                    rate = whole_training(manifest, args.out / f"ckpt-w{workers}-{repeat}", frames=args.frames,
                                          batch=args.batch_size, steps=args.steps, workers=workers)
                results[workers].append(rate)
                print(f"  {name}, workers {workers}: {rate:.1f} clips/s (load {os.getloadavg()[0]:.2f})", flush=True)
        thread = statistics.median(results[0]) if 0 in results else None
        for workers in args.workers:
            rate = statistics.median(results[workers])
            how = "thread (before)" if workers == 0 else f"{workers} worker process{'es' if workers > 1 else ''}"
            ratio = f"{rate / thread:.2f}x" if thread else "-"
            rows.append((name, how, rate, ratio, " ".join(f"{r:.0f}" for r in results[workers])))

    print()
    print("| measured | decoding in | clips/s (median) | vs thread | runs |")
    print("|---|---|---|---|---|")
    for name, how, rate, ratio, runs in rows:
        print(f"| {name} | {how} | {rate:.1f} | {ratio} | {runs} |")


if __name__ == "__main__":
    main()
