"""Warm text-query latency through `vidsearch serve` over HTTP on a 100k-segment index (issue 15), beside the CLI's.

The index: bench/query.py's `build_index` (a real `vidsearch index` of one 2 s video with `clip-b32`, whose Hugging
Face cache bench/query.py fills with random ViT-B/32 weights, then --videos x --segments random 512-d unit vectors
through `Database.save_video` and FAISS written by `IndexDir.sync_vectors`). The server: `vidsearch serve --port 0`
as a subprocess (uvicorn on loopback), warmed by a few searches. Then `GET /api/search?q=...&k=10` with distinct
query texts (so nothing is cached anywhere): --requests sequential requests from one client, then a bounded loop of
--requests-each requests from each of --clients concurrent clients (threads, one keep-alive connection each);
p50/p95 of the wall time from sending to the parsed JSON. Beside it, `vidsearch query TEXT --json` as a subprocess
(process start to the printed JSON), median of --cli-runs after a warm-up, measured in the same run.

usage: python bench/serve_latency.py [--videos 1000] [--segments 100] [--requests 200] [--clients 16]
                                     [--requests-each 20] [--cli-runs 5] [--out bench-out/serve]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from query import build_clip_index, load  # noqa: E402  (bench/query.py)

VIDSEARCH = str(Path(sys.executable).with_name("vidsearch"))
COLOURS = ["red", "blue", "green", "yellow", "white", "black", "orange", "purple"]
SHAPES = ["square", "circle", "triangle", "star", "car", "dog", "person", "boat"]
MOTIONS = ["moving left", "moving right", "going up", "falling down", "spinning", "standing still"]


def texts(count: int, offset: int = 0) -> list[str]:
    """`count` distinct plain-language queries."""
    every = [f"a {c} {s} {m}" for m in MOTIONS for s in SHAPES for c in COLOURS]
    return [every[(offset + i) % len(every)] + ("" if (offset + i) < len(every) else f" {(offset + i) // len(every)}")
            for i in range(count)]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def get(conn: http.client.HTTPConnection, text: str) -> float:
    """Seconds for one search, from sending the request to the parsed JSON."""
    started = time.perf_counter()
    conn.request("GET", "/api/search?" + urllib.parse.urlencode({"q": text, "k": 10}))
    response = conn.getresponse()
    body = response.read()
    answer = json.loads(body)
    elapsed = time.perf_counter() - started
    if response.status != 200 or not answer["hits"]:
        raise SystemExit(f"search failed ({response.status}): {body[:300]!r}")
    return elapsed


def start_server(index: Path, env: dict) -> tuple[subprocess.Popen, str, int]:
    proc = subprocess.Popen([VIDSEARCH, "serve", "--index", str(index), "--port", "0", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if not line.startswith("serving "):
        raise SystemExit(f"serve failed: {line}{proc.stderr.read()}")
    host_port = line.split(" at http://")[1].strip().strip("/")
    host, port = host_port.rsplit(":", 1)
    return proc, host, int(port)


def one_client(host: str, port: int, queries: list[str]) -> list[float]:
    conn = http.client.HTTPConnection(host, port, timeout=120)
    try:
        return [get(conn, text) for text in queries]
    finally:
        conn.close()


def concurrent(host: str, port: int, clients: int, each: int) -> tuple[list[float], float]:
    """Every request's seconds, and the wall seconds of the whole loop."""
    results: list[list[float]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=300)
        conn.connect()
        barrier.wait()
        try:
            results[i] = [get(conn, text) for text in texts(each, offset=1000 + i * each)]
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return [t for r in results for t in r], time.perf_counter() - started


def cli_seconds(index: Path, runs: int, env: dict) -> list[float]:
    """Process start to printed JSON of `vidsearch query TEXT --json`, after one warm-up run."""
    walls = []
    for i, text in enumerate(texts(runs + 1, offset=500)):
        started = time.perf_counter()
        proc = subprocess.Popen([VIDSEARCH, "query", text, "--json", "--index", str(index), "--device", "cpu"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = proc.stdout.readline()
        printed = time.perf_counter() - started
        proc.communicate()
        if proc.returncode or not json.loads(line)["hits"]:
            raise SystemExit(f"query failed ({proc.returncode})")
        if i:
            walls.append(printed)
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--segments", type=int, default=100, help="segments per video")
    parser.add_argument("--requests", type=int, default=200, help="sequential requests of the one client")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests-each", type=int, default=20, help="requests of each concurrent client")
    parser.add_argument("--cli-runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench-out/serve"))
    args = parser.parse_args()
    out = args.out.resolve()
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(out / "pycache"), "HF_HOME": str(out / "hf"), "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.update(HF_HOME=env["HF_HOME"], HF_HUB_OFFLINE="1")
    index, built = build_clip_index(out, env, videos=args.videos, segments=args.segments)
    print(f"built: {args.videos * args.segments} segments in {built:.1f} s (load {load()})", flush=True)

    cli = cli_seconds(index, args.cli_runs, env)
    print(f"CLI done (load {load()})", flush=True)
    started = time.perf_counter()
    proc, host, port = start_server(index, env)
    ready = time.perf_counter() - started
    try:
        one_client(host, port, texts(5, offset=3000))  # warm-up: the first requests of each kind
        single = one_client(host, port, texts(args.requests))
        print(f"one client done (load {load()})", flush=True)
        many, wall = concurrent(host, port, args.clients, args.requests_each)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"\nmachine: {platform.machine()}, {cpu}, {os.cpu_count()} cores, no GPU used; Python "
          f"{platform.python_version()}, torch {torch.__version__}; load average after: {load()}")
    print(f"index: {args.videos * args.segments} segments (IDMap2,Flat, 512-d), model clip-b32 (random weights)")
    print(f"server ready (model and FAISS loaded) {ready:.1f} s after start\n")
    ms = lambda s: f"{1000 * s:.1f}"  # noqa: E731
    print("| what | requests | p50 ms | p95 ms | mean ms | throughput |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| HTTP, 1 client | {len(single)} | {ms(percentile(single, 50))} | {ms(percentile(single, 95))} | "
          f"{ms(statistics.mean(single))} | {len(single) / sum(single):.1f} q/s |")
    print(f"| HTTP, {args.clients} concurrent clients | {len(many)} | {ms(percentile(many, 50))} | "
          f"{ms(percentile(many, 95))} | {ms(statistics.mean(many))} | {len(many) / wall:.1f} q/s |")
    print(f"| `vidsearch query --json` (new process) | {len(cli)} | {ms(statistics.median(cli))} | "
          f"{ms(percentile(cli, 95))} | {ms(statistics.mean(cli))} | {len(cli) / sum(cli):.2f} q/s |")


if __name__ == "__main__":
    main()
