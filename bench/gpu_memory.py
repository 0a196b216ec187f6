"""What issue #12's GPU decisions rest on, measured on a CPU (no GPU here): the peak memory of one encode pass
against `encode_bytes`, the estimate `Encoder.windows_per_batch` sizes GPU batches with (`fitted_peak_bytes`, the
terms fitted to these peaks, times a margin, plus a fixed allowance for kernels' workspaces); and (`--search`) the time
of an exact FAISS search against the index size, the CPU side of `search_on_gpu`.

Memory: each configuration runs in a fresh process through `Encoder.encode_clips` under CPU autocast, the stand-in
for a GPU's: bf16 with SDPA's flash kernel (an Ampere or later GPU), or fp16 with SDPA's math kernel (a GPU without
a fused attention kernel). The CPU autocast casts what CUDA's does for this model (convolutions and matrix products
to half precision; open_clip's LayerNorm returns its input's dtype on both), so the same tensors are alive.

"measured" is the peak of PyTorch's CPU allocator over the pass, summed from its own events (torch.profiler with
profile_memory=True records every allocation and free, also those inside kernels such as the math attention's
matrices) plus the uint8 frames (on a GPU they are a copy the pass allocates; on the CPU the tensor shares numpy's
array). It is the CPU's counterpart of torch.cuda.max_memory_allocated. "RSS growth" is the rise of the process's
peak resident memory over the same pass without the profiler (glibc told to return every large block at once, so
that memory freed earlier does not hide it); it adds numpy's copy of the frames and the CPU kernels' own buffers.

usage: python bench/gpu_memory.py [--quick] [--search]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

# (model, mixing, frames, windows, dtype, attention)
CONFIGS = [
    *[("tiny", "joint", f, 1, "bf16", "flash") for f in (16, 64, 128)],
    *[("tiny", "joint", f, 1, "fp16", "math") for f in (16, 64, 128)],
    *[("b32", "joint", f, 1, "bf16", "flash") for f in (16, 64, 128, 256)],
    ("b32", "joint", 64, 2, "bf16", "flash"),
    ("b32", "frame", 64, 1, "bf16", "flash"),
    ("b32", "joint", 64, 1, "fp16", "flash"),
    *[("b32", "joint", f, 1, "fp16", "math") for f in (16, 32, 64)],  # the CPU's fp16 math attention is slow
    ("b32", "frame", 64, 1, "fp16", "math"),
]
QUICK = {("tiny", "joint", 64, 1, "bf16", "flash"), ("b32", "joint", 64, 1, "bf16", "flash"),
         ("b32", "joint", 64, 1, "fp16", "math")}
SEARCH_COUNTS = (10_000, 50_000, 100_000, 200_000, 400_000)


def measure(name: str, mixing: str, frames: int, windows: int, dtype_name: str, attention: str) -> dict:
    from dataclasses import replace

    import numpy as np
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from vidsearch import registry
    from vidsearch.encoder import Encoder, TowerShape, encode_bytes, fitted_peak_bytes

    torch.manual_seed(0)
    config, _ = registry.resolve("tiny" if name == "tiny" else "longvivit-b32")
    config = replace(config, temporal_mixing=mixing)
    model = registry.build_model(config, load_pretrained=False)  # random weights: same shapes, same memory
    encoder = Encoder(config, model, torch.device("cpu"))
    size = encoder.image_size
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8) for _ in range(windows)]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    backend = SDPBackend.MATH if attention == "math" else SDPBackend.FLASH_ATTENTION
    with sdpa_kernel([backend]), torch.autocast("cpu", dtype=dtype):
        encoder.encode_clips([c[:2] for c in clips])  # warm-up: one-off buffers and thread pools
        peak = allocator_peak(lambda: encoder.encode_clips(clips)) + sum(c.nbytes for c in clips)
        reset = _reset_peak_rss()
        before = _status_kib("VmRSS")
        started = time.perf_counter()
        encoder.encode_clips(clips)
        seconds = time.perf_counter() - started
        rss = (_status_kib("VmHWM") - before) * 1024 if reset else float("nan")
    shape = TowerShape.of(encoder.model)
    fused = attention != "math"
    return {"model": name, "mixing": mixing, "frames": frames, "windows": windows, "dtype": dtype_name,
            "attention": attention, "tokens": windows * frames * ((size // shape.patch) ** 2 + 1),
            "measured": peak, "rss": rss,
            "fitted": fitted_peak_bytes(shape, frames=frames, windows=windows, fused_attention=fused),
            "estimate": encode_bytes(shape, frames=frames, windows=windows, fused_attention=fused),
            "seconds": seconds, "threads": torch.get_num_threads(), "torch": torch.__version__}


def allocator_peak(run) -> int:
    """The most bytes PyTorch's CPU allocator held at once during `run()`, over what it held before."""
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns())
    held = peak = 0
    for event in events:
        held += event.nbytes()
        peak = max(peak, held)
    return peak


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def _reset_peak_rss() -> bool:
    """Reset the process's peak RSS (VmHWM) to its current RSS (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def search_times(counts: tuple[int, ...], *, dim: int = 512, repeat: int = 9) -> list[dict]:
    """Median time of one exact top-50 search (as `vidsearch query` makes) over `count` random unit vectors."""
    import faiss
    import numpy as np

    from vidsearch.device import search_on_gpu

    rows = []
    rng = np.random.default_rng(0)
    for threads in (1, os.cpu_count()):
        faiss.omp_set_num_threads(threads)
        for count in counts:
            vectors = rng.standard_normal((count, dim), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
            index.add_with_ids(vectors, np.arange(count))
            query = vectors[:1] + 0.01
            index.search(query, 50)
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                index.search(query, 50)
                times.append(time.perf_counter() - started)
            median = sorted(times)[repeat // 2]
            rows.append({"threads": threads, "count": count, "seconds": median,
                         "bytes_per_s": count * dim * 4 / median, "gpu": search_on_gpu(count, "cuda", dim=dim)})
            del index, vectors
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="three configurations only")
    parser.add_argument("--search", action="store_true", help="also time exact FAISS search against the index size")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*json.loads(args.child))))
        return
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 17)}  # large blocks go back to the OS when freed
    rows = []
    for config in CONFIGS:
        if args.quick and config not in QUICK:
            continue
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps(config)], check=True, capture_output=True,
                             text=True, env=env).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"  measured {config}", file=sys.stderr, flush=True)
    mib = 2 ** 20
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, no GPU; torch {rows[0]['torch']}, "
          f"{rows[0]['threads']} threads; CPU autocast as the GPU stand-in; tiny = models/tiny.json, "
          "b32 = ViT-B/32 shape of longvivit-b32 (random weights), 224 px\n")
    print("| model | mixing | frames | windows | autocast | attention | tokens | measured peak MiB | RSS growth MiB "
          "| fitted MiB | fitted / measured | estimate MiB | estimate / measured | pass s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['mixing']} | {r['frames']} | {r['windows']} | {r['dtype']} | {r['attention']} | "
              f"{r['tokens']} | {r['measured'] / mib:.1f} | {r['rss'] / mib:.1f} | {r['fitted'] / mib:.1f} | "
              f"{r['fitted'] / r['measured']:.2f} | {r['estimate'] / mib:.1f} | {r['estimate'] / r['measured']:.2f} | "
              f"{r['seconds']:.2f} |")
    for key in ("fitted", "estimate"):
        ratios = [r[key] / r["measured"] for r in rows]
        print(f"\n{key} / measured: min {min(ratios):.2f}, max {max(ratios):.2f}", end="")
    print()
    if args.search:
        from vidsearch.device import GPU_START_SECONDS, PCIE_BYTES_PER_S, gpu_search_min_segments

        print(f"\nExact search, one 512-d query, top 50, median of 9; GPU columns are estimates (PCIe "
              f"{PCIE_BYTES_PER_S / 1e9:.0f} GB/s, start-up {GPU_START_SECONDS} s)\n")
        print("| FAISS threads | segments | CPU search ms | CPU GB/s | GPU copy ms (est.) | GPU start-up + copy ms (est.) "
              "| search_on_gpu |")
        print("|---|---|---|---|---|---|---|")
        for r in search_times(SEARCH_COUNTS):
            copy = r["count"] * 512 * 4 / PCIE_BYTES_PER_S
            print(f"| {r['threads']} | {r['count']:,} | {r['seconds'] * 1e3:.1f} | {r['bytes_per_s'] / 1e9:.1f} | "
                  f"{copy * 1e3:.1f} | {(GPU_START_SECONDS + copy) * 1e3:.0f} | {r['gpu']} |")
        print(f"\nsmallest exact index search_on_gpu sends to a GPU: {gpu_search_min_segments(512):,} segments of 512-d")
    print(f"\npeak RSS of this parent: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB",
          file=sys.stderr)


if __name__ == "__main__":
    main()
