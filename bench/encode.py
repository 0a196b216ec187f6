"""Encoder throughput: frames per second and peak memory for frame mixing and for joint mixing at 16, 64 and
256 frames per window, with the ViT-B/32 shape (random weights: same cost), on the CPU and, where present, a
CUDA GPU in bf16. Each configuration runs in a fresh process so its peak memory is its own.

usage: python bench/encode.py [--frames 16 64 256] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
    reset = _reset_peak_rss()
    before = _rss_mib()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        encoder.encode_clip(clip)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else _peak_rss_mib() - before)
    return {"mixing": mixing, "frames": frames, "device": device, "seconds": best, "fps": frames / best,
            "peak_mib": peak, "exact_peak": reset or device == "cuda", "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def _rss_mib() -> float:
    return _status_kib("VmRSS") / 1024


def _peak_rss_mib() -> float:
    return _status_kib("VmHWM") / 1024


def _reset_peak_rss() -> bool:
    """Reset the process's peak RSS (VmHWM) to its current RSS, so the peak is the encoding's own (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


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

    load_before = load()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    configs = [("frame", 64)] + [("joint", f) for f in args.frames]
    rows = []
    for device in devices:
        for mixing, frames in configs:
            out = subprocess.run([sys.executable, __file__, "--child", mixing, str(frames), device, "--repeat",
                                  str(args.repeat)], check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {rows[0]['torch']}, {rows[0]['threads']} "
          f"torch threads; load average (1/5/15 min) {load_before} before, {load()} after\n"
          f"ViT-B/32 shape, 224 px, random weights, one window per pass, best of {args.repeat}; peak memory is the "
          f"growth of peak RSS (CPU) or peak allocated (CUDA) over the passes\n")
    print("| device | mixing | frames per window | s per window | frames/s | vs frame mixing | peak memory MiB |")
    print("|---|---|---|---|---|---|---|")
    for device in ["cpu", "cuda"]:
        mine = [r for r in rows if r["device"] == device]
        if not mine:
            print(f"| {device} | — | — | — | — | — | no GPU here |")
            continue
        base = next((r["fps"] for r in mine if r["mixing"] == "frame"), None)
        for r in mine:
            ratio = f"{r['fps'] / base:.2f}x" if base else "—"
            peak = f"{r['peak_mib']:.0f}" + ("" if r["exact_peak"] else " (lifetime peak)")
            print(f"| {device} | {r['mixing']} | {r['frames']} | {r['seconds']:.2f} | {r['fps']:.1f} | {ratio} | {peak} |")


if __name__ == "__main__":
    main()
