"""Why motion queries miss across a library (issue 14): is the top hit the right look, the right direction, or neither?

On the labelled long-form set of bench/long_form.py (tests/long_form_set.py), for each motion query ("moving left, a
red circle": every scene of that colour, shape and direction is correct, and the library also shows that colour and
shape moving another way), the top hit's middle falls in some scene; this counts how often that scene has the right
look (colour and shape) and how often it is a right scene, so that right scene / right look is how often the direction
was told apart once the look was found. Each query is asked twice: as the set asks it (direction first or last), and
in the training captions' own words ("a red circle moving left"), which separates the text tower's hold on other
word orders from the video side.

With `--cut-aligned`, every scene is also rendered as a file of its own and indexed so: windows and segments then
never cross a scene cut, an upper bound on indexing that cuts windows at detected scene changes.

Searches run in this process (vidsearch.search.Searcher, the top of 10 hits as eval-moments asks), at `--scale`
segment and auto, after the real CLI indexed the set.

usage: python bench/motion_library.py --model NAME=DIR [--model ...] [--videos 24] [--seed 1] [--cut-aligned]
                                      [--out bench-out/motion-library]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from long_form_set import build_long_form_set  # noqa: E402  (the set the tests build)

from vidsearch.indexdir import IndexDir  # noqa: E402
from vidsearch.search import Searcher  # noqa: E402
from vidsearch.synthetic import write_video  # noqa: E402
from vidsearch.terms import parse_sequence  # noqa: E402

VIDSEARCH = str(Path(sys.executable).with_name("vidsearch"))
SCALES = ("segment", "auto")


def index(videos: Path, model: str, home: Path) -> Searcher:
    subprocess.run([VIDSEARCH, "index", str(videos), "--model", model, "--index", str(home), "--device", "cpu"],
                   check=True, stdout=subprocess.DEVNULL)
    return Searcher(IndexDir(home), device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=DIR", help="a checkpoint (repeatable)")
    parser.add_argument("--videos", type=int, default=24, help="videos in the labelled set")
    parser.add_argument("--seed", type=int, default=1, help="seed of the labelled set")
    parser.add_argument("--cut-aligned", action="store_true", help="also index every scene as a file of its own")
    parser.add_argument("--out", type=Path, default=Path("bench-out/motion-library"), help="work folder")
    args = parser.parse_args()

    labelled = build_long_form_set(args.out / f"set-{args.videos}-{args.seed}" / "videos", videos=args.videos,
                                   seed=args.seed)
    every = [s for spans in labelled.scenes.values() for s in spans]
    motion = [q for q in labelled.queries if q.kind == "motion"]
    layouts = {"whole videos": {labelled.path(video): spans for video, spans in labelled.scenes.items()}}
    if args.cut_aligned:
        folder = args.out / f"scenes-{args.videos}-{args.seed}"
        layouts["a file per scene"] = {}
        for n, s in enumerate(every):
            path = folder / f"{s.video[:-4]}_{s.index}.mp4"
            if not path.is_file():
                folder.mkdir(parents=True, exist_ok=True)
                write_video(path, [s.scene], scene_seconds=s.end - s.start, size=128, fps=4.0, seed=args.seed * 1000 + n)
            layouts["a file per scene"][os.path.abspath(path)] = [s]

    print(f"{len(motion)} motion queries on {len(every)} scenes of {len(labelled.scenes)} videos (seed {args.seed})\n")
    print("| model | videos indexed as | scale | asked | right look | right scene | right scene / right look |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.model:
        name, model = spec.split("=", 1)
        for layout, files in layouts.items():
            videos = labelled.folder if layout == "whole videos" else Path(next(iter(files))).parent
            searcher = index(videos, model, args.out / f"index-{name}-{layout.replace(' ', '-')}")
            for scale in SCALES:
                for asked in ("as the set asks", "in training's words"):
                    look = scene = 0
                    for query in motion:
                        wanted = [s.scene for s in every for t in query.truths
                                  if (s.video, s.start, s.end) == (t.video, t.start, t.end)]
                        text = query.text if asked == "as the set asks" else wanted[0].caption
                        hit = searcher.search(parse_sequence(f'"{text}"'), k=10, mode="visual", scale=scale)[0]
                        offset = 0.0 if layout == "whole videos" else files[hit.path][0].start
                        middle = offset + (hit.start + hit.end) / 2
                        got = next(s.scene for s in files[hit.path] if s.start <= middle < s.end or s is files[hit.path][-1])
                        look += (got.color, got.shape) == (wanted[0].color, wanted[0].shape)
                        scene += got in wanted
                    print(f"| {name} | {layout} | {scale} | {asked} | {look / len(motion):.3f} | {scene / len(motion):.3f} "
                          f"| {scene / look if look else 0:.2f} |", flush=True)


if __name__ == "__main__":
    main()
