"""`vidsearch ls` and `status` on an index of many files: wall time of the real CLI against its bare start-up.

    .venv/bin/python bench/listing.py [--files 100000] [--repeat 3]

The index is written straight into SQLite (no videos are decoded): each file gets three segments and a window with
8-float vectors, so the database has the row counts of a real 100k-file index without its size.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vidsearch.db import Database
from vidsearch.indexdir import IndexDir

VIDSEARCH = Path(sys.executable).with_name("vidsearch")


def build(folder: Path, files: int) -> None:
    db = Database(folder / "vidsearch.db")
    db.set_setting("model", {"spec": "tiny", "fingerprint": "bench", "name": "tiny", "dim": 8})
    vector = np.ones(8, np.float32).tobytes()
    with db.db.atomic():
        db.db.conn.executemany(
            "INSERT INTO videos (id, path, size, mtime, hash, duration, fps, status, error, frames, indexed_at) "
            "VALUES (?, ?, 1, 1.0, ?, 12.0, 30.0, ?, ?, 12, '2026-12-01T00:00:00+00:00')",
            ((i + 1, f"/videos/{i // 1000:03d}/clip_{i:06d}.mp4", f"h{i}", "failed" if i % 97 == 0 else "ok",
              "cannot open" if i % 97 == 0 else None) for i in range(files)))
        db.db.conn.executemany(
            "INSERT INTO segments (video_id, level, start, end, vector) VALUES (?, ?, ?, ?, ?)",
            ((i + 1, level, start, start + 4.0, vector) for i in range(files) if i % 97
             for level, start in (("segment", 0.0), ("segment", 4.0), ("segment", 8.0), ("window", 0.0))))
    db.close()
    index = IndexDir(folder)
    index.rebuild_and_save()  # the FAISS file a real index has
    index.close()


def timed(args: list[str], env: dict[str, str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([str(VIDSEARCH), *args], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "index"
        home.mkdir()
        started = time.perf_counter()
        build(home, args.files)
        print(f"built {args.files} files in {time.perf_counter() - started:.1f} s; {platform.machine()}, "
              f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
        env = {**os.environ, "VIDSEARCH_HOME": str(home), "PYTHONDONTWRITEBYTECODE": ""}
        start_up = timed(["--help"], env, args.repeat)
        rows = [("vidsearch --help (start-up)", start_up)]
        for label, command in (("ls --json", ["ls", "--json"]), ("ls (table)", ["ls"]),
                               ("ls '*/042/*' --json", ["ls", "*/042/*", "--json"]),
                               ("ls --state failed --json", ["ls", "--state", "failed", "--json"]),
                               ("status --json", ["status", "--json"])):
            rows.append((label, timed(command, env, args.repeat)))
        print(f"\n| command ({args.files} files) | median s | minus start-up | x start-up |\n|---|---|---|---|")
        for label, seconds in rows:
            print(f"| `{label}` | {seconds:.2f} | {seconds - start_up:.2f} | {seconds / start_up:.1f} |")


if __name__ == "__main__":
    main()
