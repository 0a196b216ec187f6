"""Frame sampling speed: `sample_frames` at 1 fps to 224 px against the ffmpeg CLI doing the same work.

For each generated file, all run in this process's run, alternating, best of --repeat:
- vidsearch as `index` runs it: `sample_frames(path, fps=1, size=224)` (PyAV, threaded, non-reference frames
  skipped where they cannot be sampled; short side scaled to 224 and centre-cropped);
- vidsearch `index --no-deblock`: the same with H.264/HEVC's in-loop deblocking filter skipped;
- ffmpeg: `ffmpeg -i F -vf fps=1,scale=224:224 -f rawvideo -` to /dev/null (what the issue asks to beat).
PSNR compares the --no-deblock frames with the exact ones.
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

from vidsearch.frames import sample_frames

CASES = [  # name, codec, container, width, height, share of --seconds (the reference case is full length), crf, busy
    ("H.264 720p", "libx264", "mp4", 1280, 720, 1.0, "23", False),
    ("H.264 720p, busy (about 3 Mbit/s)", "libx264", "mp4", 1280, 720, 0.2, "23", True),
    ("H.264 720p, crf 35", "libx264", "mp4", 1280, 720, 0.2, "35", False),
    ("H.264 1080p", "libx264", "mp4", 1920, 1080, 0.2, "23", False),
    ("VP9 720p", "libvpx-vp9", "webm", 1280, 720, 0.2, "35", False),
    ("HEVC 720p", "libx265", "mp4", 1280, 720, 0.2, "28", False),
]


def make_video(path: Path, codec: str, width: int, height: int, seconds: int, crf: str, busy: bool,
               fps: int = 30) -> None:
    """A moving test pattern with the codec's usual GOP and B-frames: a sine wave with light grain (a very low
    bitrate), or, `busy`, a scrolling blocky texture with fresh noise in every frame (a bitrate like real footage)."""
    options = {"libx264": {"preset": "veryfast"}, "libx265": {"preset": "ultrafast"},
               "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "b": "0"}}[codec] | {"crf": crf}
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 6, size=(8, height, width, 3), dtype=np.uint8)
    x = np.linspace(0, 4 * np.pi, width, dtype=np.float32)
    texture = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(seconds * fps):
            if busy:
                grain = rng.integers(-12, 12, (height, width, 1), dtype=np.int16)
                frame = np.clip(np.roll(texture, 3 * i, axis=1) + grain, 0, 255).astype(np.uint8)
            else:
                wave = (127 + 100 * np.sin(x + i / 10)).astype(np.uint8)
                frame = np.broadcast_to(wave[None, :, None], (height, width, 3)) + noise[i % 8]
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())


def time_ours(path: Path, *, deblock: bool) -> tuple[float, list[np.ndarray]]:
    started = time.perf_counter()
    frames = [frame for _, frame in sample_frames(path, fps=1.0, size=224, deblock=deblock)]
    return time.perf_counter() - started, frames


def psnr(frames: list[np.ndarray], reference: list[np.ndarray]) -> float:
    error = np.mean([(a.astype(np.float64) - b) ** 2 for a, b in zip(frames, reference)])
    return float("inf") if error == 0 else 10 * np.log10(255**2 / error)


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
    for name, codec, container, width, height, share, crf, busy in CASES:
        length = max(10, round(args.seconds * share))
        path = args.out / f"{codec}-{height}p-crf{crf}{'-busy' if busy else ''}-{length}s.{container}"
        if not path.is_file():
            make_video(path, codec, width, height, length, crf, busy)
        exact, fast, ref = [], [], []
        for _ in range(args.repeat):
            seconds, exact_frames = time_ours(path, deblock=True)
            exact.append(seconds)
            seconds, frames = time_ours(path, deblock=False)
            fast.append(seconds)
            if have_ffmpeg:
                ref.append(time_ffmpeg(path))
        rows.append((name, length, path.stat().st_size * 8 / length / 1e6, len(frames), min(exact), min(fast),
                     min(ref) if ref else None, psnr(frames, exact_frames)))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; 30 fps sources sampled at 1 fps to 224x224; "
          f"best of {args.repeat}\n")
    print("| video | length s | Mbit/s | frames out | vidsearch s | --no-deblock s | ffmpeg CLI s | vidsearch / ffmpeg | "
          "--no-deblock / ffmpeg | --no-deblock PSNR vs exact |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, length, mbits, count, exact, fast, ref, quality in rows:
        ratios = (f"{exact / ref:.2f}x | {fast / ref:.2f}x" if ref else "n/a (no ffmpeg) | n/a")
        print(f"| {name} | {length} | {mbits:.2f} | {count} | {exact:.2f} | {fast:.2f} | "
              f"{'-' if ref is None else f'{ref:.2f}'} | {ratios} | {quality:.1f} dB |")


if __name__ == "__main__":
    main()
