"""Frame sampling speed: `sample_frames` at 1 fps to 224 px against the ffmpeg CLI doing the same work.

For each generated file, both run in this process's run, alternating, best of --repeat:
- vidsearch: `sample_frames(path, fps=1, size=224)` (PyAV, threaded, non-reference frames skipped
  where they cannot be sampled; short side scaled to 224 and centre-cropped);
- ffmpeg: `ffmpeg -i F -vf fps=1,scale=224:224 -f rawvideo -` to /dev/null (what the issue asks to beat).
Needs the ffmpeg CLI (`apt-get install ffmpeg`) for the reference column.

usage: python bench/decode.py [--seconds 300] [--repeat 2] [--out bench-out/decode]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vidsearch.decode import sample_frames

CASES = [  # name, codec, container, width, height, share of --seconds (the reference case is full length)
    ("H.264 720p", "libx264", "mp4", 1280, 720, 1.0),
    ("H.264 1080p", "libx264", "mp4", 1920, 1080, 0.2),
    ("VP9 720p", "libvpx-vp9", "webm", 1280, 720, 0.2),
    ("HEVC 720p", "libx265", "mp4", 1280, 720, 0.2),
]


def make_video(path: Path, codec: str, width: int, height: int, seconds: int, fps: int = 30) -> None:
    """A moving test pattern with noise (so the encoder cannot cheat), with the codec's usual GOP and B-frames."""
    options = {"libx264": {"preset": "veryfast", "crf": "23"}, "libx265": {"preset": "ultrafast", "crf": "28"},
               "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "crf": "35", "b": "0"}}[codec]
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 6, size=(8, height, width, 3), dtype=np.uint8)  # film-grain-like, a realistic bitrate
    x = np.linspace(0, 4 * np.pi, width, dtype=np.float32)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(seconds * fps):
            wave = (127 + 100 * np.sin(x + i / 10)).astype(np.uint8)
            frame = np.broadcast_to(wave[None, :, None], (height, width, 3)) + noise[i % 8]
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())


def time_ours(path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    count = sum(1 for _ in sample_frames(path, fps=1.0, size=224))
    return time.perf_counter() - started, count


def time_ffmpeg(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-vf", "fps=1,scale=224:224", "-f", "rawvideo",
                    "-pix_fmt", "rgb24", "-"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=300, help="length of each generated video")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each; the best is reported")
    parser.add_argument("--out", type=Path, default=Path("bench-out/decode"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    have_ffmpeg = shutil.which("ffmpeg") is not None
    rows = []
    for name, codec, container, width, height, share in CASES:
        length = max(10, round(args.seconds * share))
        path = args.out / f"{codec}-{height}p-{length}s.{container}"
        if not path.is_file():
            make_video(path, codec, width, height, length)
        ours, ref = [], []
        for _ in range(args.repeat):
            seconds, frames = time_ours(path)
            ours.append(seconds)
            if have_ffmpeg:
                ref.append(time_ffmpeg(path))
        rows.append((name, length, frames, min(ours), min(ref) if ref else None, path.stat().st_size / 2**20))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; 30 fps sources sampled at 1 fps to 224x224; "
          f"best of {args.repeat}\n")
    print("| video | length s | MiB | frames out | vidsearch s | ffmpeg CLI s | vidsearch / ffmpeg |")
    print("|---|---|---|---|---|---|---|")
    for name, length, frames, ours, ref, mib in rows:
        ratio = f"{ours / ref:.2f}x" if ref else "n/a (no ffmpeg)"
        print(f"| {name} | {length} | {mib:.0f} | {frames} | {ours:.2f} | {ref if ref is None else f'{ref:.2f}'} | "
              f"{ratio} |")


if __name__ == "__main__":
    main()
