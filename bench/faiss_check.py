"""FAISS file checks: what it costs to write the vectors file safely and to check it against its stamp.

For N random unit vectors (exact `IDMap2,Flat`, as the index folder keeps below 200k segments), times
`VectorStore.save` (callback writer, fsync, rename, folder fsync), `VectorStore.load` (read, and memory-mapped; both
include the header check), `file_crc32` and `os.stat`, with the page cache warm (the file was just written) and cold
(its pages dropped with posix_fadvise; os.stat warm only), and compares them as ratios. Also measures the extra peak memory of a save
through the callback writer against `faiss.serialize_index` (the whole file in one numpy buffer) in forked children.

usage: python bench/faiss_check.py [--vectors 100000] [--dim 512] [--runs 5] [--out bench-out/faiss_check]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from vidsearch.store import VectorStore, file_crc32


def median_seconds(run: Callable[[], object], runs: int, *, before: Callable[[], object] = lambda: None) -> float:
    times = []
    for _ in range(runs):
        before()
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def drop_cache(path: Path) -> None:
    """Ask the kernel to forget the file's pages (clean pages only, so after fsync; best effort)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def extra_peak_mib(work: Callable[[], object]) -> float:
    """Peak resident memory `work` adds, run in a forked child whose high-water mark is reset first."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # reset VmHWM to the current RSS
            before = _status_kib("VmRSS")
            work()
            os.write(write, str(_status_kib("VmHWM") - before).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        text = fh.read()
    os.waitpid(pid, 0)
    return int(text) / 1024 if text else float("nan")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench-out/faiss_check"))
    args = parser.parse_args()

    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    path = args.out / "vectors.faiss"
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.vectors, args.dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = VectorStore.build(np.arange(args.vectors), vectors, args.dim, ivf_threshold=10**12)
    del vectors

    save = median_seconds(lambda: store.save(path), args.runs)
    stamp = store.save(path)
    assert file_crc32(path) == stamp["crc32"] and np.array_equal(VectorStore.load(path, mapped=True).ids(), store.ids())
    size_mib = stamp["bytes"] / 2**20

    warm = {
        "load (read)": median_seconds(lambda: VectorStore.load(path), args.runs),
        "load (mmap)": median_seconds(lambda: VectorStore.load(path, mapped=True), args.runs),
        "faiss.read_index alone (mmap)": median_seconds(lambda: faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC), args.runs),
        "file_crc32": median_seconds(lambda: file_crc32(path), args.runs),
        "os.stat": median_seconds(lambda: os.stat(path), 1000),
    }
    evict = lambda: drop_cache(path)  # noqa: E731
    cold = {
        "load (read)": median_seconds(lambda: VectorStore.load(path), args.runs, before=evict),
        "load (mmap)": median_seconds(lambda: VectorStore.load(path, mapped=True), args.runs, before=evict),
        "faiss.read_index alone (mmap)": median_seconds(lambda: faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC),
                                                        args.runs, before=evict),
        "file_crc32": median_seconds(lambda: file_crc32(path), args.runs, before=evict),
    }

    def serialize_then_write() -> None:
        with open(args.out / "serialized.faiss", "wb") as fh:
            fh.write(faiss.serialize_index(store.index))  # a numpy buffer of the whole file, written without a copy

    memory_callback = extra_peak_mib(lambda: store.save(path))
    memory_serialize = extra_peak_mib(serialize_then_write)
    serialize = median_seconds(serialize_then_write, args.runs)

    print(f"machine: {os.cpu_count()} cores ({platform.machine()}), no GPU; faiss {faiss.__version__}, Python "
          f"{platform.python_version()}; {args.vectors:,} x {args.dim} random unit vectors, {store.kind}; "
          f"median of {args.runs} runs (os.stat: of 1000)\n")
    print(f"file: {stamp['bytes']:,} bytes ({size_mib:.1f} MiB)\n")
    print("| step | warm cache ms | cold cache ms | MiB/s (warm) |")
    print("|---|---|---|---|")
    print(f"| save (callback writer, fsync, rename) | {save * 1e3:.1f} | | {size_mib / save:.0f} |")
    print(f"| serialize_index + write (for comparison, no fsync) | {serialize * 1e3:.1f} | | {size_mib / serialize:.0f} |")
    for step in warm:
        rate = f"{size_mib / warm[step]:.0f}" if step in ("file_crc32", "load (read)") else ""
        print(f"| {step} | {warm[step] * 1e3:.3f} | {cold[step] * 1e3 if step in cold else float('nan'):.3f} | {rate} |")
    print("\n| ratio | warm | cold |")
    print("|---|---|---|")
    for a, b in [("file_crc32", "load (mmap)"), ("file_crc32", "load (read)"), ("load (read)", "load (mmap)"),
                 ("load (mmap)", "faiss.read_index alone (mmap)")]:
        print(f"| {a} / {b} | {warm[a] / warm[b]:.1f}x | {cold[a] / cold[b]:.1f}x |")
    print(f"| file_crc32 / os.stat | {warm['file_crc32'] / warm['os.stat']:.0f}x | |")
    print(f"| file_crc32 / save | {warm['file_crc32'] / save:.2f}x | |")
    print("\n| save path | extra peak memory MiB | of the file size |")
    print("|---|---|---|")
    print(f"| VectorStore.save (callback writer) | {memory_callback:.1f} | {memory_callback / size_mib:.2f}x |")
    print(f"| faiss.serialize_index, then write | {memory_serialize:.1f} | {memory_serialize / size_mib:.2f}x |")


if __name__ == "__main__":
    main()
