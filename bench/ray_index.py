"""`index --ray` on a local Ray against plain `index` on this machine, and what bounds a cluster: the driver's write rate.

1. Overhead: whole `vidsearch index` runs on a fresh index, plain and with --ray, on one long file (5 min) and on
   many short ones (50 x 10 s), 854x480 H.264 30 fps, with the default model's shape (ViT-B/32, frame mixing, random
   weights: same cost as trained ones), on the CPU. --ray is run two ways: `--ray` (starts its own local Ray, so it
   pays Ray's start-up) and `--ray=ADDRESS` (joins a local cluster this script started, as on a real cluster), with
   Ray's workers at nice 0 (--niceness) like the plain run; the object store's peak use is polled meanwhile.
2. The driver's ceiling: Indexer.finish_file (one SQLite transaction + the FAISS add per video, the only writes a
   cluster run makes on the driver) fed pre-computed vectors as fast as it takes them, for videos of the long
   file's shape; and the driver's per-file checks before anything is sent (content hash in one thread and
   Indexer.check_files, which hashes ahead in threads; probe).

usage: python bench/ray_index.py [--long 300] [--short 50] [--short-seconds 10] [--out bench-out/ray_index]
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

import numpy as np

VIDSEARCH = str(Path(sys.executable).with_name("vidsearch"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import make_video  # noqa: E402  (bench/pipeline.py's 854x480 panning test video)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def index_run(folder: Path, model_json: Path, index: Path, *ray: str) -> tuple[float, dict]:
    """Wall seconds of one whole `vidsearch index` process on a fresh index, and its JSON summary."""
    shutil.rmtree(index, ignore_errors=True)
    started = time.perf_counter()
    out = subprocess.run([VIDSEARCH, "index", str(folder), "--model", str(model_json), "--index", str(index),
                          "--device", "cpu", "--json", *ray], check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - started, json.loads(out)


class StorePeak:
    """The most object-store memory in use on the cluster while a run lasts (polled every 0.1 s from this process)."""

    def __init__(self):
        import threading

        import ray

        self.ray, self.peak, self.stop = ray, 0.0, threading.Event()
        self.total = ray.cluster_resources()["object_store_memory"]
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while not self.stop.wait(0.1):
            free = self.ray.available_resources().get("object_store_memory", self.total)
            self.peak = max(self.peak, self.total - free)

    def done(self) -> float:
        self.stop.set()
        self.thread.join()
        return self.peak


def driver_rate(out: Path, model_json: Path, *, videos: int, seconds: int) -> dict:
    """Videos (of `seconds` s, default settings) committed per second by Indexer.finish_file from vectors made
    beforehand: the driver's whole share of a cluster run once the files are checked."""
    from vidsearch.decode_workers import Finished
    from vidsearch.encoder import l2_normalize
    from vidsearch.indexdir import IndexDir
    from vidsearch.indexer import Indexer
    from vidsearch.registry import embedding_dim, resolve
    from vidsearch.text_sources import VideoText

    home = out / "driver-index"
    shutil.rmtree(home, ignore_errors=True)
    index = IndexDir(home, create=True)
    index.lock_for_writing()
    indexer = Indexer(index, model=str(model_json))
    dim = embedding_dim(resolve(str(model_json))[0])
    seg = indexer.settings.segment
    window = indexer.settings.window / indexer.settings.fps
    rng = np.random.default_rng(0)
    from vidsearch.db import Segment

    spans = [("segment", t, min(t + seg, seconds)) for t in np.arange(0, seconds, seg)]
    spans += [("window", t, min(t + window, seconds)) for t in np.arange(0, seconds, window)]
    made = [[Segment(level, float(a), float(b), l2_normalize(rng.standard_normal(dim).astype(np.float32)))
             for level, a, b in spans] for _ in range(videos)]
    dummy = out / "dummy.mp4"
    dummy.write_bytes(b"x")
    stat = dummy.stat()
    started = time.perf_counter()
    for i, segments in enumerate(made):
        indexer.finish_file((Path(f"/videos/v{i:06d}.mp4"), stat, f"{i:032x}"), float(seconds), 30.0,
                            Finished(0, seconds), segments, VideoText, {"sidecars": [], "speech": None})
    commit_s = time.perf_counter() - started
    started = time.perf_counter()
    index.sync_vectors()  # the FAISS write at the end of a run
    save_s = time.perf_counter() - started
    index.close()
    return {"videos": videos, "segments_per_video": len(spans), "commit_s": commit_s, "faiss_save_s": save_s,
            "videos_per_s": videos / commit_s, "segments_per_s": videos * len(spans) / commit_s,
            "video_s_per_s": videos * seconds / commit_s}


def driver_checks(files: list[Path], out: Path, model_json: Path) -> dict:
    """Per-file work on the driver before a file is sent: content hash in one thread and the whole check of new
    files as `index` runs it (`Indexer.check_files`, hashing ahead in threads) in MB/s, and probe (ms per file). The
    files were just written, so they are read from the page cache: this is the CPU's rate, not a disk's."""
    from vidsearch.frames import probe
    from vidsearch.indexdir import IndexDir
    from vidsearch.indexer import Indexer, file_hash

    size = sum(f.stat().st_size for f in files)
    started = time.perf_counter()
    for f in files:
        file_hash(f)
    hash_s = time.perf_counter() - started
    shutil.rmtree(out / "index-checks", ignore_errors=True)
    index = IndexDir(out / "index-checks", create=True)
    index.lock_for_writing()
    indexer = Indexer(index, model=str(model_json), device="cpu")
    started = time.perf_counter()
    checked = list(indexer.check_files(files))
    checks_s = time.perf_counter() - started
    index.close()
    assert all(isinstance(outcome, tuple) for outcome in checked)  # every file new: hashed, to be encoded
    started = time.perf_counter()
    for f in files:
        probe(f)
    probe_s = time.perf_counter() - started
    return {"hash_mb_per_s": size / 1e6 / hash_s, "checks_mb_per_s": size / 1e6 / checks_s,
            "probe_ms": 1000 * probe_s / len(files), "mb_per_file": size / 1e6 / len(files)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long", type=int, default=300, help="seconds of the long file")
    parser.add_argument("--short", type=int, default=50, help="how many short files")
    parser.add_argument("--short-seconds", type=int, default=10)
    parser.add_argument("--driver-videos", type=int, default=300)
    parser.add_argument("--niceness", type=int, default=0, help="of Ray's workers (Ray's own default is 15)")
    parser.add_argument("--out", type=Path, default=Path("bench-out/ray_index"))
    args = parser.parse_args()
    import torch

    import vidsearch
    from vidsearch import registry

    out = args.out.resolve()
    long_dir, short_dir = out / f"long-{args.long}s", out / f"short-{args.short}x{args.short_seconds}s"
    long_dir.mkdir(parents=True, exist_ok=True)
    short_dir.mkdir(parents=True, exist_ok=True)
    if not (long_dir / "long.mp4").is_file():
        make_video(long_dir / "long.mp4", args.long, 0)
    for i in range(args.short):
        if not (short_dir / f"s{i:03d}.mp4").is_file():
            make_video(short_dir / f"s{i:03d}.mp4", args.short_seconds, i + 1)
    config = replace(registry.resolve("clip-b32")[0], name="clip-b32-random", pretrained=None)
    model_json = out / "clip-b32-random.json"
    config.save(model_json)

    load_before = load()
    bench_started = time.perf_counter()
    rows = []
    # Ray runs its workers at nice 15; on this machine, shared with other work, that starves them against everything
    # else (a first try: 114 s for what takes 15 s at nice 0), which is not what this measures. The same for both
    # --ray runs (the variable reaches the Ray that `--ray` alone starts, too).
    os.environ["RAY_worker_niceness"] = str(args.niceness)
    import ray

    address = ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR").address_info["gcs_address"]
    try:
        for name, folder in (("5-min file" if args.long == 300 else f"{args.long} s file", long_dir),
                             (f"{args.short} x {args.short_seconds} s files", short_dir)):
            plain_s, plain = index_run(folder, model_json, out / "index-plain")
            store = StorePeak()
            joined_s, joined = index_run(folder, model_json, out / "index-joined", f"--ray={address}")
            rows.append({"input": name, "video_s": plain["video_seconds"], "plain": plain_s, "joined": joined_s,
                         "units": joined["ray"]["units"], "redone": joined["ray"]["redone"],
                         "store_mb": store.done() / 1e6, "store_total_mb": store.total / 1e6})
    finally:
        ray.shutdown()
    for row, folder in zip(rows, (long_dir, short_dir)):  # --ray alone: its own Ray, started and stopped in the run
        row["own"], _ = index_run(folder, model_json, out / "index-own", "--ray")
    checks = driver_checks(sorted(short_dir.glob("*.mp4")) + [long_dir / "long.mp4"], out, model_json)
    driver = driver_rate(out, model_json, videos=args.driver_videos, seconds=args.long)
    total = time.perf_counter() - bench_started

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; load average (1/5/15 min) "
          f"{load_before} before, {load()} after; vidsearch from {Path(vidsearch.__file__).parent}; {total:.0f} s in all\n")
    print("| input | video s | plain `index` s | `--ray=ADDRESS` (warm local cluster) s | ratio | `--ray` (own Ray) s | "
          "ratio | units | redone | peak object store MB (of) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['input']} | {r['video_s']:.0f} | {r['plain']:.1f} | {r['joined']:.1f} | {r['joined'] / r['plain']:.2f}x "
              f"| {r['own']:.1f} | {r['own'] / r['plain']:.2f}x | {r['units']} | {r['redone']} "
              f"| {r['store_mb']:.0f} ({r['store_total_mb']:.0f}) |")
    print(f"\ndriver checks per new file: content hash {checks['hash_mb_per_s']:.0f} MB/s in one thread, "
          f"{checks['checks_mb_per_s']:.0f} MB/s through Indexer.check_files, probe {checks['probe_ms']:.1f} "
          f"ms (files of {checks['mb_per_file']:.1f} MB)")
    print(f"driver writes: {driver['videos']} videos of {args.long} s ({driver['segments_per_video']} vectors each) "
          f"committed in {driver['commit_s']:.2f} s: {driver['videos_per_s']:.1f} videos/s, "
          f"{driver['segments_per_s']:.0f} vectors/s, {driver['video_s_per_s']:.0f} video-s/s; final FAISS save "
          f"{driver['faiss_save_s']:.2f} s")


if __name__ == "__main__":
    main()
