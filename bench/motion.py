"""The paper's point, measured: joint space-time attention vs the frame-level baseline on motion direction.

Trains the tiny encoder twice under the same budget on synthetic scenes (a shape moving left, right,
up or down; each training video shows one shape moving all four ways, so batches hold hard negatives),
then scores held-out scenes:
- t2v R@1: a caption against every held-out clip (a hit is any clip with that caption);
- motion R@1: a caption against the 4 clips of its video, which differ only in direction (chance 0.25);
- direction accuracy: a clip against the 4 captions that differ only in direction (chance 0.25).

usage: python bench/motion.py [--steps 4000] [--out bench-out/motion]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vidsearch.encoder import Encoder
from vidsearch.evaluate import embed_pairs, retrieval_metrics
from vidsearch.synthetic import DIRECTIONS, make_dataset
from vidsearch.train import load_pairs

VIDSEARCH = str(Path(sys.executable).with_name("vidsearch"))


def motion_scores(model: Path, manifest: Path) -> dict[str, float]:
    encoder = Encoder.load(str(model), "cpu")
    pairs, _ = load_pairs(str(manifest))
    videos, texts = embed_pairs(encoder, pairs, frames=encoder.config.window, fps=encoder.config.fps)
    captions = [p.caption for p in pairs]
    by_video: dict[Path, list[int]] = {}
    for i, pair in enumerate(pairs):
        by_video.setdefault(pair.video, []).append(i)
    motion_hits = direction_hits = 0
    for i, pair in enumerate(pairs):
        group = by_video[pair.video]
        motion_hits += group[int(np.argmax(videos[group] @ texts[i]))] == i
        stem = pair.caption.rsplit(" ", 1)[0]
        options = [f"{stem} {d}" for d in DIRECTIONS]
        direction_hits += options[int(np.argmax(encoder.encode_text(options) @ videos[i]))] == pair.caption
    metrics = retrieval_metrics(texts @ videos.T, captions)
    return {"t2v_r1": metrics["t2v_r1"], "t2v_r5": metrics["t2v_r5"], "motion_r1": motion_hits / len(pairs),
            "direction_acc": direction_hits / len(pairs), "pairs": len(pairs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4000, help="training steps for each model")
    parser.add_argument("--mask-ratio", type=float, default=0.75, help="token masking ratio in training")
    parser.add_argument("--out", type=Path, default=Path("bench-out/motion"), help="work folder")
    args = parser.parse_args()
    train, test = args.out / "train" / "pairs.jsonl", args.out / "test" / "pairs.jsonl"
    if not train.is_file():
        make_dataset(args.out / "train", videos=300, scenes_per_video=4, hard_negatives=True, seed=0)
    if not test.is_file():
        make_dataset(args.out / "test", videos=30, scenes_per_video=4, hard_negatives=True, seed=1)
    rows = []
    for mixing in ("joint", "frame"):
        model = args.out / f"tiny-{mixing}"
        started = time.perf_counter()
        subprocess.run([VIDSEARCH, "train", str(train), "--out", str(model), "--model", "tiny", "--mixing", mixing,
                        "--frames", "8", "--steps", str(args.steps), "--batch-size", "32", "--lr", "1e-3",
                        "--mask-ratio", str(args.mask_ratio), "--group-by-video", "--checkpoint-every", "1000",
                        "--device", "cpu"], check=True, stdout=subprocess.DEVNULL)
        minutes = (time.perf_counter() - started) / 60
        rows.append({"mixing": mixing, "minutes": minutes, **motion_scores(model, test)})
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
          f"{args.steps} steps, batch 32, mask {args.mask_ratio}, 8 frames at 1 fps, {rows[0]['pairs']} held-out clips\n")
    print("| model | train min | t2v R@1 | t2v R@5 | motion R@1 (chance 0.25) | direction acc (chance 0.25) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        name = "joint (video-first)" if row["mixing"] == "joint" else "frame (ImageViT baseline)"
        print(f"| {name} | {row['minutes']:.1f} | {row['t2v_r1']:.3f} | {row['t2v_r5']:.3f} | {row['motion_r1']:.3f} | "
              f"{row['direction_acc']:.3f} |")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
