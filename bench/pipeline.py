"""End to end: does indexing overlap decoding and encoding? Index wall time against max(decode-only, encode-only)
on the same files, with the default model's shape (ViT-B/32, frame mixing; random weights cost the same).

usage: python bench/pipeline.py [--videos 4] [--seconds 120] [--workers 1] [--out bench-out/pipeline]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import av
import numpy as np

from vidsearch import registry
from vidsearch.decoding import DecodeJob, Window, decode_all
from vidsearch.encoder import Encoder

VIDSEARCH = str(Path(sys.executable).with_name("vidsearch"))


def make_video(path: Path, seconds: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"preset": "veryfast", "crf": "26"})
        stream.width, stream.height, stream.pix_fmt = 854, 480, "yuv420p"
        base = rng.integers(0, 255, size=(480, 854, 3), dtype=np.uint8)
        for i in range(seconds * 30):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.roll(base, 4 * i, axis=1), format="rgb24")))
        out.mux(stream.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench-out/pipeline"))
    args = parser.parse_args()
    folder = args.out / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / f"v{i}.mp4" for i in range(args.videos)]
    for i, path in enumerate(files):
        if not path.is_file():
            make_video(path, args.seconds, i)
    config = replace(registry.resolve("clip-b32")[0], name="clip-b32-random", pretrained=None)
    model_json = args.out / "clip-b32-random.json"
    config.save(model_json)
    encoder = Encoder.load(str(model_json), "cpu")
    jobs = [DecodeJob(i, p, 1.0, encoder.image_size, config.window) for i, p in enumerate(files)]

    started = time.perf_counter()
    windows = [e for e in decode_all(jobs, workers=0, depth=4) if isinstance(e, Window)]
    decode_s = time.perf_counter() - started
    started = time.perf_counter()
    for window in windows:
        encoder.encode_clip(window.frames)
    encode_s = time.perf_counter() - started

    shutil.rmtree(args.out / "index", ignore_errors=True)
    started = time.perf_counter()
    out = subprocess.run([VIDSEARCH, "index", str(folder), "--model", str(model_json), "--index", str(args.out / "index"),
                          "--workers", str(args.workers), "--json"], check=True, capture_output=True, text=True).stdout
    index_s = time.perf_counter() - started
    summary = json.loads(out)
    video_s = summary["video_seconds"]
    print(f"machine: {platform.machine()}, 2 cores; {args.videos} x {args.seconds} s 480p H.264, 1 fps, ViT-B/32 frame "
          f"mixing (random weights), --workers {args.workers}\n")
    print("| decode only s | encode only s | max of the two | index (whole CLI run) s | index / max | video-s per wall-s |")
    print("|---|---|---|---|---|---|")
    slowest = max(decode_s, encode_s)
    print(f"| {decode_s:.1f} | {encode_s:.1f} | {slowest:.1f} | {index_s:.1f} | {index_s / slowest:.2f}x | "
          f"{video_s / index_s:.1f} |")


if __name__ == "__main__":
    main()
