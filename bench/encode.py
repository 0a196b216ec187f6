"""Encoder throughput: frames per second and peak memory for frame mixing and for joint mixing at 16, 64 and
256 frames per window, with the ViT-B/32 shape (random weights: same cost), on the CPU and, where present, a
CUDA GPU in bf16. Each configuration runs in a fresh process so its peak memory is its own.

usage: python bench/encode.py [--frames 16 64 256] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time


def measure(mixing: str, frames: int, device: str, repeat: int) -> dict:
    import numpy as np
    import torch

    from vidsearch import registry
    from vidsearch.encoder import Encoder

    config, _ = registry.resolve("longvivit-b32")
    config.temporal_mixing = mixing
    encoder = Encoder(config, registry.build_model(config, load_pretrained=False), torch.device(device))
    clip = np.random.default_rng(0).integers(0, 255, size=(frames, 224, 224, 3), dtype=np.uint8)
    encoder.encode_clip(clip[:2])  # warm-up
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before = _rss_mib()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        encoder.encode_clip(clip)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before)
    return {"mixing": mixing, "frames": frames, "device": device, "seconds": best, "fps": frames / best,
            "peak_mib": peak, "threads": torch.get_num_threads()}


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64, 256], help="frames per window (joint)")
    parser.add_argument("--repeat", type=int, default=2, help="timed passes per configuration; the best is kept")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mixing, frames, device = args.child
        print(json.dumps(measure(mixing, int(frames), device, args.repeat)))
        return
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    configs = [("frame", 64)] + [("joint", f) for f in args.frames]
    rows = []
    for device in devices:
        for mixing, frames in configs:
            out = subprocess.run([sys.executable, __file__, "--child", mixing, str(frames), device, "--repeat",
                                  str(args.repeat)], check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"machine: {platform.machine()}, {rows[0]['threads']} torch threads on the CPU; ViT-B/32 shape, 224 px, "
          f"one window per pass, best of {args.repeat}\n")
    print("| device | mixing | frames per window | s per window | frames/s | peak memory MiB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['device']} | {r['mixing']} | {r['frames']} | {r['seconds']:.2f} | {r['fps']:.1f} | {r['peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
