"""Offline demo: make synthetic videos, train the tiny encoder on them, index held-out videos, query them.

Every step is the real `vidsearch` CLI, printed before it runs. About five minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from vidsearch.synthetic import make_dataset

VIDSEARCH = str(Path(sys.executable).with_name("vidsearch"))


def run(*args: str) -> str:
    print(f"\n$ vidsearch {shlex.join(args)}", flush=True)
    proc = subprocess.run([VIDSEARCH, *args], stdout=subprocess.PIPE, text=True)
    print(proc.stdout, end="", flush=True)
    if proc.returncode not in (0, 1):
        sys.exit(f"demo: `vidsearch {args[0]}` failed with exit code {proc.returncode}")
    return proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="Folder for videos, model and index.")
    parser.add_argument("--steps", type=int, default=1500, help="Training steps for the tiny encoder.")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    started = time.perf_counter()

    print("making synthetic videos: coloured shapes moving left, right, up or down ...", flush=True)
    # Training videos show one shape moving four ways, so each batch holds clips that differ only in motion.
    train = make_dataset(out / "train", videos=300, scenes_per_video=4, hard_negatives=True, seed=0)
    test = make_dataset(out / "test", videos=6, scenes_per_video=4, seed=7)

    model = out / "model"
    run("train", str(train), "--out", str(model), "--model", "tiny", "--frames", "8", "--steps", str(args.steps),
        "--batch-size", "32", "--lr", "1e-3", "--group-by-video", "--val", str(test), "--checkpoint-every", "500")
    index = out / "index"
    run("index", str(test.parent / "videos"), "--model", str(model), "--segment", "8", "--index", str(index))

    scenes = [json.loads(line) for line in test.read_text().splitlines()]
    right = 0
    for scene in scenes[::5]:
        hits = json.loads(run("query", scene["caption"], "--index", str(index), "-k", "3", "--json"))["hits"]
        expected = (test.parent / scene["video"]).resolve()
        top = hits[0] if hits else {}
        ok = top.get("path") == str(expected) and top["start"] < scene["end"] and top["end"] > scene["start"]
        right += ok
        print(f"  top hit {Path(top.get('path', '-')).name} {top.get('start')}-{top.get('end')} s; the scene is "
              f"{expected.name} {scene['start']}-{scene['end']} s: {'right' if ok else 'wrong'}")
    asked = len(scenes[::5])
    print(f"\n{right}/{asked} queries put the right scene first.")

    report = out / "report.html"
    run("query", scenes[0]["caption"], "--index", str(index), "-k", "5", "--html", str(report))
    print(f"\ndemo took {time.perf_counter() - started:.0f} s. Open {report} in a browser, or try:\n"
          f'  vidsearch query "a red circle moving left" --index {index}\n'
          f'  vidsearch query "a red circle" - "moving left" --group-by video --index {index}')


if __name__ == "__main__":
    main()
