"""Scale: 1M segment vectors (512-d, clustered like real embeddings) through SQLite into FAISS, exact vs IVF.

Vectors are drawn from a Gaussian mixture with a few thousand centres (uniformly random vectors are a worst
case no IVF index handles), stored as segments of fake videos through `Database.save_video`, then the index
folder builds FAISS from SQLite as it does on open. Reports build time and memory, single-query latency
(median and p95) for exact and IVF search, and IVF recall@10 against exact.

usage: python bench/scale.py [--vectors 1000000] [--centres 4000] [--queries 200] [--out bench-out/scale]
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import time
from pathlib import Path

import numpy as np

from vidsearch.db import Segment
from vidsearch.indexdir import IndexDir
from vidsearch.store import IVF_THRESHOLD, VectorStore

DIM = 512


def mixture(rng: np.random.Generator, count: int, centres: np.ndarray, spread: float) -> np.ndarray:
    picks = rng.integers(0, len(centres), count)
    v = centres[picks] + spread * rng.standard_normal((count, DIM), dtype=np.float32) / np.sqrt(DIM)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def timed_queries(store: VectorStore, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-query latency in ms (one query per call, as `vidsearch query` does) and the top-10 ids."""
    latencies, found = [], []
    for q in queries:
        started = time.perf_counter()
        found.append(store.search(q[None], 10)[1][0])
        latencies.append((time.perf_counter() - started) * 1000)
    return np.array(latencies), np.array(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--centres", type=int, default=4000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench-out/scale"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((args.centres, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    index = IndexDir(args.out, create=True)
    index.db.set_setting("model", {"spec": "bench", "fingerprint": "bench", "dim": DIM, "name": "bench"})
    started = time.perf_counter()
    per_video = 1000
    for video in range(0, args.vectors, per_video):
        vectors = mixture(rng, per_video, centres, spread=0.8)
        index.db.save_video(path=f"/bench/video{video // per_video:05d}.mp4", size=0, mtime=0.0, hash=str(video),
                            duration=4.0 * per_video, fps=1.0, frames=4 * per_video,
                            segments=[Segment("segment", 4.0 * i, 4.0 * i + 4, v) for i, v in enumerate(vectors)])
    sqlite_seconds = time.perf_counter() - started

    ids, vectors = index.db.segment_vectors(DIM)
    before = rss_mib()
    started = time.perf_counter()
    exact = VectorStore.build(ids, vectors, DIM, ivf_threshold=10**12)
    exact_build, exact_mib = time.perf_counter() - started, rss_mib() - before
    before = rss_mib()
    started = time.perf_counter()
    ivf = VectorStore.build(ids, vectors, DIM)  # what the index folder builds past IVF_THRESHOLD
    ivf_build, ivf_mib = time.perf_counter() - started, rss_mib() - before

    # Queries: perturbed centres, like text queries that land between clips (never stored vectors).
    queries = mixture(np.random.default_rng(1), args.queries, centres, spread=1.5)
    exact_ms, truth = timed_queries(exact, queries)
    ivf_ms, found = timed_queries(ivf, queries)
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])

    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}; {args.vectors:,} vectors x {DIM}, "
          f"{args.centres} centres, {args.queries} single-vector queries; IVF threshold {IVF_THRESHOLD:,}\n")
    print(f"SQLite insert of {args.vectors:,} segments: {sqlite_seconds:.1f} s\n")
    print("| index | build s | memory growth MiB | query median ms | query p95 ms | recall@10 vs exact |")
    print("|---|---|---|---|---|---|")
    print(f"| {exact.kind} | {exact_build:.1f} | {exact_mib:.0f} | {np.median(exact_ms):.2f} | "
          f"{np.percentile(exact_ms, 95):.2f} | 1.000 |")
    print(f"| {ivf.kind} | {ivf_build:.1f} | {ivf_mib:.0f} | {np.median(ivf_ms):.2f} | "
          f"{np.percentile(ivf_ms, 95):.2f} | {recall:.3f} |")
    print(f"\nIVF search is {np.median(exact_ms) / np.median(ivf_ms):.0f}x faster than exact at the median.")


if __name__ == "__main__":
    main()
