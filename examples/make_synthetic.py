"""Make a synthetic video-caption dataset: coloured shapes moving left, right, up or down.

Writes OUT_DIR/videos/*.mp4 and a JSONL manifest (one clip per line: video, start, end, caption)
and prints the manifest path. Example:

    python examples/make_synthetic.py demo-out/train --videos 40 --scenes-per-video 4 --hard-negatives
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from vidsearch.synthetic import make_dataset
except ImportError:  # running from a source checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from vidsearch.synthetic import make_dataset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Make synthetic videos of coloured shapes moving in named directions, with a JSONL caption manifest."
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="folder to write videos/ and the manifest into")
    parser.add_argument("--videos", type=int, default=40, help="number of mp4 files to write (default: %(default)s)")
    parser.add_argument("--scenes-per-video", type=int, default=4, help="captioned scenes in each video (default: %(default)s)")
    parser.add_argument("--scene-seconds", type=float, default=8.0, help="length of each scene in seconds (default: %(default)s)")
    parser.add_argument("--fps", type=float, default=4.0, help="frames per second (default: %(default)s)")
    parser.add_argument("--size", type=int, default=128, help="frame width and height in pixels, even (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same dataset (default: %(default)s)")
    parser.add_argument(
        "--hard-negatives",
        action="store_true",
        help="group each video's scenes so they share colour and shape and differ only in direction",
    )
    parser.add_argument("--manifest", default="pairs.jsonl", help="manifest file name inside OUT_DIR (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        manifest = make_dataset(
            args.out_dir,
            videos=args.videos,
            scenes_per_video=args.scenes_per_video,
            scene_seconds=args.scene_seconds,
            fps=args.fps,
            size=args.size,
            seed=args.seed,
            manifest_name=args.manifest,
            hard_negatives=args.hard_negatives,
        )
    except ValueError as exc:
        print(f"make_synthetic.py: error: {exc}", file=sys.stderr)
        return 2
    print(manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
