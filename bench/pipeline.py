"""End to end: does indexing overlap decoding and encoding? `vidsearch index` wall time, with its fixed start-up
(imports, model build: an index run on one 2-second video) taken out, against decode-only, encode-only, their max
and their sum on the same files, with the default model's shape (ViT-B/32, frame mixing; random weights cost the
same), for --workers 1 (a decode process) and --workers 0 (a decode thread). --threads N gives torch N threads
(in this process and, through OMP_NUM_THREADS, in the index runs), e.g. 1 to leave the other core to decoding.

usage: python bench/pipeline.py [--videos 4] [--seconds 150] [--workers 1 0] [--threads N] [--out bench-out/pipeline]
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
from dataclasses import replace
from pathlib import Path

import av
import numpy as np

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


def index_run(folder: Path, model_json: Path, index: Path, workers: int, threads: int | None) -> tuple[float, dict]:
    """Wall seconds of one whole `vidsearch index` process on a fresh index, and its JSON summary."""
    shutil.rmtree(index, ignore_errors=True)
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    started = time.perf_counter()
    out = subprocess.run([VIDSEARCH, "index", str(folder), "--model", str(model_json), "--index", str(index),
                          "--workers", str(workers), "--device", "cpu", "--json"], check=True, capture_output=True,
                         text=True, env=env).stdout
    return time.perf_counter() - started, json.loads(out)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=150)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's own choice]")
    parser.add_argument("--out", type=Path, default=Path("bench-out/pipeline"))
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import vidsearch
    from vidsearch import registry
    from vidsearch.config import IndexSettings
    from vidsearch.decode_workers import DecodeJob, Window, decode_all
    from vidsearch.encoder import Encoder

    out = args.out.resolve()
    folder, tiny_folder = out / f"videos-{args.videos}x{args.seconds}", out / "one-short-video"
    folder.mkdir(parents=True, exist_ok=True)
    tiny_folder.mkdir(parents=True, exist_ok=True)
    files = [folder / f"v{i}.mp4" for i in range(args.videos)]
    for i, path in enumerate(files):
        if not path.is_file():
            make_video(path, args.seconds, i)
    if not (tiny_folder / "short.mp4").is_file():
        make_video(tiny_folder / "short.mp4", 2, 99)
    config = replace(registry.resolve("clip-b32")[0], name="clip-b32-random", pretrained=None)
    model_json = out / "clip-b32-random.json"
    config.save(model_json)

    load_before = load()
    started = time.perf_counter()
    encoder = Encoder.load(str(model_json), "cpu")
    build_s = time.perf_counter() - started
    settings = IndexSettings(fps=1.0, window=config.window)  # what `index` decodes with by default
    jobs = [DecodeJob(i, p, settings.fps, encoder.image_size, settings.window, settings.deblock)
            for i, p in enumerate(files)]
    started = time.perf_counter()
    windows = [e for e in decode_all(jobs, workers=0, depth=4) if isinstance(e, Window)]
    decode_s = time.perf_counter() - started
    encoder.encode_clip(windows[0].frames[:2])  # warm-up, as the CLI's first window pays it too (in start-up below)
    started = time.perf_counter()
    for window in windows:
        encoder.encode_clip(window.frames)
    encode_s = time.perf_counter() - started
    frames = sum(len(w.frames) for w in windows)

    rows = []
    for workers in args.workers:
        startup_s, _ = index_run(tiny_folder, model_json, out / "index-short", workers, args.threads)
        index_s, summary = index_run(folder, model_json, out / "index", workers, args.threads)
        rows.append({"workers": workers, "startup": startup_s, "index": index_s, "steady": index_s - startup_s,
                     "video_s": summary["video_seconds"]})

    slowest, total = max(decode_s, encode_s), decode_s + encode_s
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} "
          f"torch threads; load average (1/5/15 min) {load_before} before, {load()} after; vidsearch from "
          f"{Path(vidsearch.__file__).parent}")
    print(f"{args.videos} x {args.seconds} s 854x480 H.264 30 fps, sampled at 1 fps ({frames} frames in {len(windows)} "
          f"windows of up to {config.window}, deblocking {'on' if settings.deblock else 'off'}); "
          "ViT-B/32 frame mixing, random weights, CPU\n")
    print(f"in-process: model build {build_s:.1f} s; decode only (a thread, nothing else running) {decode_s:.1f} s; "
          f"encode only {encode_s:.1f} s ({frames / encode_s:.1f} frames/s); max {slowest:.1f} s; sum {total:.1f} s\n")
    print("| --workers | start-up s (index of one 2 s video) | index s (whole CLI run) | steady state s (index - start-up) "
          "| steady / max(decode, encode) | steady / (decode + encode) | whole / max | video-s per wall-s (steady) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['startup']:.1f} | {r['index']:.1f} | {r['steady']:.1f} | {r['steady'] / slowest:.2f}x "
              f"| {r['steady'] / total:.2f}x | {r['index'] / slowest:.2f}x | {r['video_s'] / r['steady']:.1f} |")


if __name__ == "__main__":
    main()
