"""Scene cuts (on by default; `index --no-cuts`): does the colour-histogram test find cuts in real photographs, and what windows cut
short cost the encoder's batching?

Part 1, detection (`--part detection`): "footage" at 1 fps, 224 px (clip-b32's frames), made of `--shots` shots of
6-12 s. A shot is one of scikit-image's sample photos (`skimage.data`: colour ones, and greyscale ones stacked to
three channels) seen through a moving virtual camera: a square crop of 40-70% of the photo's short side that pans up
to half that side and zooms (Ken Burns), is still, or sweeps across the whole photo at a photo width per 3 s (a fast
pan); with mild Gaussian sensor noise and an exposure drifting by x0.85-1.15 over the shot. Some shots have a
camera flash (one frame lit strongly) or start with a 2-s fade in from black. A shot cuts to a different photo
(colour to colour, grey to grey, colour to grey or back), to another crop of the same photo (a cut between two
shots of one scene; a miss leaves the window as it is without cuts), or to
the black first frame of a fade in. For every two frames in a row it measures is_cut's distance (the total-variation
distance of windows.colour_histogram, averaged over the channels) and prints it per kind of pair, then recall and
false cuts per minute at several thresholds, then what `frame_windows(..., cuts=True)` (the real CUT_DISTANCE and
MIN_SHOT_SECONDS) makes of the footage: there a cut is windows.shot_cut's (the same distance and threshold, and the
new look lasts: a flash or a strobe is no cut). Frames are used as rendered, without a video codec in between.

Part 2, batching (`--part batching`): the tests' long-form synthetic set (tests/long_form_set.py: `--videos` videos
of 3-5 scenes of 6-12 s each) decoded as the indexer decodes it (decode_workers.decode_job at 1 fps, the tiny model's
64 px), with and without cuts, for windows of 16 and 32 frames. For batches of 8 and 32 windows it counts forward
passes when a batch holds windows of one length only (the old rule: a batch is flushed when the length changes)
and when windows of any length share a batch in order, padded to the longest (the new rule, Encoder.encode_clips),
with the share of padded frames; then it times encoding every window with the random-init `tiny` model on the CPU
(2 torch threads, best of 3 in this process). The pass counts and the padding share do not depend on the hardware;
the times are this CPU's, not a GPU's.

Needs scikit-image for part 1: `.venv/bin/pip install scikit-image`.

usage: python bench/cuts.py [--part detection|batching] [--seed 0] [--shots 100] [--videos 24] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidsearch.decode_workers import DecodeJob, Window, decode_job
from vidsearch.encoder import Encoder
from vidsearch.windows import CUT_DISTANCE, MIN_SHOT_SECONDS, chunked, colour_histogram, frame_windows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from long_form_set import build_long_form_set  # noqa: E402  (the set the tests build)

INSTALL_HINT = "part 1 needs scikit-image's sample photos: .venv/bin/pip install scikit-image"

# --- part 1: detection on real photographs -----------------------------------------------------------------------

FRAME = 224  # clip-b32's image size; frames are sampled at 1 fps, so shot second t is frame t of the shot
COLOUR_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "hubble_deep_field", "retina",
                 "immunohistochemistry", "logo")
GREY_PHOTOS = ("camera", "moon", "coins", "page", "text", "brick", "grass", "gravel", "clock", "cell")
SHOT_SECONDS = (6, 12)  # inclusive
CROP_SHARE = (0.4, 0.7)  # crop side / the photo's short side
PAN_SHARE = 0.5  # the most a pan moves, / the photo's short side
FAST_PAN_SECONDS = 3.0  # a fast pan crosses the photo's whole width in this time
FAST_PAN_CROP = (0.4, 0.5)  # narrower crops, to leave the sweep room
EXPOSURE = (0.85, 1.15)  # brightness at a shot's start and end, drawn in this range
NOISE_SIGMA = (2.0, 5.0)  # sensor noise, levels
MOTIONS = ("still", "pan", "pan", "pan", "fast pan")  # drawn per shot
FLASH_SHARE, FLASH_GAIN, FLASH_LIFT = 0.15, 1.6, 90.0  # shots with a flash; its frame is x * gain + lift
FADE_SHARE, FADE_SECONDS = 0.1, 2  # shots that start with a fade in from black over this many seconds
SAME_PHOTO_SHARE = 0.2  # cuts to another crop of the same photo
THRESHOLDS = (0.05, 0.10, CUT_DISTANCE, 0.20, 0.30)
WINDOWS = (8, 256)  # frame_windows sizes: the demo's 8-frame clips, and clip-b32's default (its max_frames)
CAMERA = ("still", "pan", "fast pan")  # pairs inside a shot, by how the camera moved between them
IN_SHOT = (*CAMERA, "flash", "fade")
DIFFERENT = ("colour -> colour", "grey -> grey", "colour <-> grey")
CUT_KINDS = (*DIFFERENT, "same photo", "cut to a fade's black")


@dataclass(frozen=True)
class Photo:
    name: str
    pixels: np.ndarray  # (H, W, 3) uint8
    colour: bool


@dataclass(frozen=True)
class Shot:
    """One photo through a camera whose square crop (centre x, centre y, side, in photo pixels) moves from `start` to
    `end` between shot seconds `move_from` and `move_from + move_seconds`."""

    photo: Photo
    seconds: int
    motion: str  # "still", "pan" (smooth, the whole shot) or "fast pan" (linear, part of the shot)
    start: tuple[float, float, float]
    end: tuple[float, float, float]
    move_from: float
    move_seconds: float
    exposure: tuple[float, float]
    noise: float
    flash: int | None  # the shot second lit by a flash
    fade: bool  # fades in from black over FADE_SECONDS

    def crop(self, t: int) -> tuple[float, float, float]:
        progress = min(1.0, max(0.0, (t - self.move_from) / self.move_seconds))
        if self.motion == "pan":
            progress = progress * progress * (3 - 2 * progress)  # eases in and out
        return tuple(a + (b - a) * progress for a, b in zip(self.start, self.end))

    def render(self, t: int, rng: np.random.Generator) -> np.ndarray:
        from PIL import Image  # scikit-image's imageio needs Pillow

        x, y, side = self.crop(t)
        height, width = self.photo.pixels.shape[:2]
        box = (max(0.0, x - side / 2), max(0.0, y - side / 2), min(width, x + side / 2), min(height, y + side / 2))
        frame = np.asarray(Image.fromarray(self.photo.pixels).resize((FRAME, FRAME), Image.BILINEAR, box=box), np.float32)
        low, high = self.exposure
        frame = frame * (low + (high - low) * t / (self.seconds - 1))
        if self.fade:
            frame *= min(1.0, t / FADE_SECONDS)
        if t == self.flash:
            frame = frame * FLASH_GAIN + FLASH_LIFT
        frame += rng.normal(0.0, self.noise, frame.shape)
        return np.clip(frame + 0.5, 0, 255).astype(np.uint8)

    def pair_kind(self, t: int) -> str:
        """The kind of the pair of shot seconds t - 1 and t."""
        if self.fade and t <= FADE_SECONDS:
            return "fade"
        if self.flash in (t - 1, t):
            return "flash"
        return self.motion if self.crop(t) != self.crop(t - 1) else "still"


def load_photos() -> list[Photo]:
    from skimage import data

    def pixels(name: str) -> np.ndarray:
        image = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
        return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else np.ascontiguousarray(image[..., :3])

    return [Photo(name, pixels(name), name in COLOUR_PHOTOS) for name in (*COLOUR_PHOTOS, *GREY_PHOTOS)]


def next_photo(current: Photo | None, photos: list[Photo], rng: np.random.Generator) -> Photo:
    """The same photo (SAME_PHOTO_SHARE), else a colour or a grey one (even odds) other than the current."""
    if current is not None and rng.random() < SAME_PHOTO_SHARE:
        return current
    colour = rng.random() < 0.5
    pool = [p for p in photos if p.colour == colour and p is not current]
    return pool[int(rng.integers(len(pool)))]


def draw_shot(photo: Photo, rng: np.random.Generator) -> Shot:
    height, width = photo.pixels.shape[:2]
    short = min(height, width)
    seconds = int(rng.integers(SHOT_SECONDS[0], SHOT_SECONDS[1] + 1))
    motion = MOTIONS[int(rng.integers(len(MOTIONS)))]

    def place(side: float, x: float | None = None, y: float | None = None) -> tuple[float, float, float]:
        """A crop of `side` centred near (x, y) (anywhere when not given), kept inside the photo."""
        x = rng.uniform(side / 2, width - side / 2) if x is None else min(max(x, side / 2), width - side / 2)
        y = rng.uniform(side / 2, height - side / 2) if y is None else min(max(y, side / 2), height - side / 2)
        return x, y, side

    if motion == "fast pan":
        side = rng.uniform(*FAST_PAN_CROP) * short
        start = place(side, x=0.0)  # the left edge, at a random height, sweeping to the right edge or the other way
        end = (width - side / 2, start[1], side)
        start, end = (start, end) if rng.random() < 0.5 else (end, start)
        move_seconds = FAST_PAN_SECONDS * (width - side) / width
        move_from = rng.uniform(1.0, seconds - 1 - move_seconds)
    else:
        start = place(rng.uniform(*CROP_SHARE) * short)
        end, move_from, move_seconds = start, 0.0, seconds - 1.0
        if motion == "pan":
            angle, reach = rng.uniform(0, 2 * math.pi), rng.uniform(0, PAN_SHARE) * short
            end = place(rng.uniform(*CROP_SHARE) * short, start[0] + reach * math.cos(angle),
                        start[1] + reach * math.sin(angle))
    fade = rng.random() < FADE_SHARE
    flash = int(rng.integers(FADE_SECONDS + 1, seconds - 1)) if rng.random() < FLASH_SHARE else None
    return Shot(photo, seconds, motion, start, end, move_from, move_seconds, (rng.uniform(*EXPOSURE), rng.uniform(*EXPOSURE)),
                rng.uniform(*NOISE_SIGMA), flash, fade)


def cut_kind(before: Shot, after: Shot) -> str:
    if after.fade:
        return "cut to a fade's black"
    if after.photo is before.photo:
        return "same photo"
    if before.photo.colour and after.photo.colour:
        return "colour -> colour"
    return "grey -> grey" if not (before.photo.colour or after.photo.colour) else "colour <-> grey"


@dataclass
class Footage:
    frames: list[np.ndarray]
    shot_of: list[int]  # frame -> its shot's number
    shots: list[Shot]
    kinds: list[str]  # pair i (frames i and i + 1) -> its kind
    distances: np.ndarray  # pair i -> is_cut's distance

    @property
    def minutes(self) -> float:
        return len(self.frames) / 60


def make_footage(photos: list[Photo], shots: int, seed: int) -> Footage:
    rng = np.random.default_rng(seed)
    drawn: list[Shot] = []
    for _ in range(shots):
        drawn.append(draw_shot(next_photo(drawn[-1].photo if drawn else None, photos, rng), rng))
    frames, shot_of, kinds = [], [], []
    for number, shot in enumerate(drawn):
        for t in range(shot.seconds):
            if frames:
                kinds.append(shot.pair_kind(t) if t else cut_kind(drawn[number - 1], shot))
            frames.append(shot.render(t, rng))
            shot_of.append(number)
    histograms = [colour_histogram(frame) for frame in frames]
    distances = np.array([np.abs(a - b).sum() / 2 / 3 for a, b in zip(histograms, histograms[1:])])
    return Footage(frames, shot_of, drawn, kinds, distances)


def distance_table(footage: Footage) -> list[str]:
    kinds = np.array(footage.kinds)
    out = [f"| where | kind | pairs | min | median | 95th pct | max | over {CUT_DISTANCE} |", "|---|---|---|---|---|---|---|---|"]
    for where, names in (("inside a shot", IN_SHOT), ("at a cut", CUT_KINDS)):
        for name in names:
            values = footage.distances[kinds == name]
            if len(values):
                low, median, p95, high = np.percentile(values, [0, 50, 95, 100])
                out.append(f"| {where} | {name} | {len(values)} | {low:.3f} | {median:.3f} | {p95:.3f} | {high:.3f} | "
                           f"{int((values > CUT_DISTANCE).sum())} |")
    return out


def false_cuts_by_photo(footage: Footage) -> str:
    """The photos whose camera-motion pairs (still, pan, fast pan) go over CUT_DISTANCE, most first."""
    counts: dict[str, int] = {}
    for i, (kind, distance) in enumerate(zip(footage.kinds, footage.distances)):
        if kind in CAMERA and distance > CUT_DISTANCE:
            name = footage.shots[footage.shot_of[i + 1]].photo.name
            counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items(), key=lambda item: -item[1])) or "none"


def threshold_table(footage: Footage) -> list[str]:
    kinds = np.array(footage.kinds)
    cut_columns = [*DIFFERENT, "all different photos", "same photo", "cut to a fade's black"]
    out = ["| threshold | " + " | ".join(f"recall, {c}" for c in cut_columns)
           + " | false cuts/min, still + pans | false cuts/min, flash + fade |", "|---|" + "---|" * (len(cut_columns) + 2)]
    groups = {name: [name] for name in cut_columns} | {"all different photos": list(DIFFERENT)}
    for threshold in THRESHOLDS:
        over = footage.distances > threshold
        recall = [over[np.isin(kinds, groups[c])].mean() for c in cut_columns]
        motion = over[np.isin(kinds, CAMERA)].sum() / footage.minutes
        lights = over[np.isin(kinds, ["flash", "fade"])].sum() / footage.minutes
        default = " (default)" if threshold == CUT_DISTANCE else ""
        out.append(f"| {threshold:.2f}{default} | " + " | ".join(f"{r:.0%}" for r in recall) + f" | {motion:.2f} | {lights:.2f} |")
    return out


def window_table(footage: Footage) -> list[str]:
    """frame_windows over the whole footage as one video: how windows end and what they hold."""
    kinds = footage.kinds
    starts = {i for i in range(1, len(footage.frames)) if footage.shot_of[i] != footage.shot_of[i - 1]}
    out = ["| window | cuts | windows/min | mean frames | different-photo cuts ending a window | same-photo cuts ending "
           "one | cuts to black ending one | windows ending inside a shot /min | windows holding two different photos |",
           "|---|---|---|---|---|---|---|---|---|"]
    for size in WINDOWS:
        for cuts in (False, True):
            windows = list(frame_windows(((float(i), f) for i, f in enumerate(footage.frames)), size, cuts=cuts))
            firsts = [int(w[0][0]) for w in windows]
            begun = set(firsts[1:])
            inside = sum(1 for first in firsts[1:] if first not in starts and first % size)  # not at a shot, nor the grid
            photos = [{footage.shots[footage.shot_of[int(t)]].photo.name for t, _ in w} for w in windows]
            ended = [f"{sum(i in begun for i in at)}/{len(at)}" for at in
                     ([i for i in starts if kinds[i - 1] in names] for names in (DIFFERENT, ("same photo",), CUT_KINDS[-1:]))]
            out.append(f"| {size} | {'on' if cuts else 'off'} | {len(windows) / footage.minutes:.2f} | "
                       f"{len(footage.frames) / len(windows):.1f} | {' | '.join(ended)} | {inside / footage.minutes:.2f} | "
                       f"{sum(len(p) > 1 for p in photos) / len(windows):.0%} |")
    return out


def detection(shots: int, seed: int) -> None:
    photos = load_photos()
    footage = make_footage(photos, shots, seed)
    motions = ", ".join(f"{sum(s.motion == m for s in footage.shots)} {m}" for m in dict.fromkeys(MOTIONS))
    print(f"\n## Part 1: detection on real photographs\n\nphotos: {len(COLOUR_PHOTOS)} colour "
          f"({', '.join(COLOUR_PHOTOS)}), {len(GREY_PHOTOS)} greyscale ({', '.join(GREY_PHOTOS)})\n"
          f"footage: {len(footage.shots)} shots ({motions}; {sum(s.flash is not None for s in footage.shots)} with a "
          f"flash, {sum(s.fade for s in footage.shots)} fading in), {len(footage.frames)} frames at 1 fps = "
          f"{footage.minutes:.1f} min, {FRAME} px, seed {seed}\n")
    print("TV distance (is_cut's) of frames in a row, by kind of pair:\n")
    print("\n".join(distance_table(footage)))
    print(f"\nstill, pan and fast-pan pairs over {CUT_DISTANCE}, by photo: {false_cuts_by_photo(footage)}")
    print("\nPer threshold, on the pairs alone (no minimum shot length): share of cuts over it, and pairs inside shots "
          "over it (false cuts) per minute of footage:\n")
    print("\n".join(threshold_table(footage)))
    print(f"\nframe_windows over the footage as one video (CUT_DISTANCE {CUT_DISTANCE}, MIN_SHOT_SECONDS "
          f"{MIN_SHOT_SECONDS}); a window ends at a shot's first frame, on the grid of its size, or inside a shot (a false cut):\n")
    print("\n".join(window_table(footage)))


# --- part 2: what cuts cost the encoder's batching -------------------------------------------------------------------

BATCH_WINDOWS = (16, 32)
BATCH_SIZES = (8, 32)
TIMED_BATCH = 8


def one_length_batches(lengths: list[int], size: int) -> list[list[int]]:
    """The old rule: up to `size` windows in order, a batch flushed when the next window's length differs."""
    batches: list[list[int]] = []
    for i, length in enumerate(lengths):
        if not batches or len(batches[-1]) == size or lengths[batches[-1][0]] != length:
            batches.append([])
        batches[-1].append(i)
    return batches


def mixed_batches(lengths: list[int], size: int) -> list[list[int]]:
    """The new rule: up to `size` windows in order, whatever their lengths."""
    return list(chunked(range(len(lengths)), size))


def padding_share(lengths: list[int], batches: list[list[int]], tubelet: int) -> float:
    """Padded frames / all frames encoded: each batch is padded to its longest window, in whole tubelets."""
    encoded = sum(len(b) * -(-max(lengths[i] for i in b) // tubelet) * tubelet for b in batches)
    return 1 - sum(lengths) / encoded


def decode_windows(paths: list[Path], size: int, window: int, cuts: bool) -> list[np.ndarray]:
    """Every window's frames, in order, decoded as the indexer decodes them."""
    return [event.frames for key, path in enumerate(paths)
            for event in decode_job(DecodeJob(key, path, 1.0, size, window, cuts=cuts)) if isinstance(event, Window)]


def pass_table(windows: dict[tuple[int, bool], list[np.ndarray]], tubelet: int) -> list[str]:
    out = ["| window | batch | cuts | windows | frames | passes, one length a batch | passes, mixed padded | "
           "padded frames, mixed |", "|---|---|---|---|---|---|---|---|"]
    for window in BATCH_WINDOWS:
        for size in BATCH_SIZES:
            for cuts in (False, True):
                lengths = [len(w) for w in windows[window, cuts]]
                mixed = mixed_batches(lengths, size)
                out.append(f"| {window} | {size} | {'on' if cuts else 'off'} | {len(lengths)} | {sum(lengths)} | "
                           f"{len(one_length_batches(lengths, size))} | {len(mixed)} | "
                           f"{padding_share(lengths, mixed, tubelet):.1%} |")
    return out


def best_times(encoder: Encoder, runs: dict[str, tuple[list[np.ndarray], list[list[int]]]], repeat: int) -> dict[str, float]:
    """Best of `repeat` seconds to encode each run's windows in its batches, the runs alternating."""
    best = dict.fromkeys(runs, math.inf)
    for _ in range(repeat):
        for name, (windows, batches) in runs.items():
            started = time.perf_counter()
            for batch in batches:
                encoder.encode_clips([windows[i] for i in batch])
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def time_table(encoder: Encoder, windows: dict[tuple[int, bool], list[np.ndarray]], repeat: int) -> list[str]:
    out = ["| window | run | passes | seconds | vs no cuts, batch 8 |", "|---|---|---|---|---|"]
    for window in BATCH_WINDOWS:
        plain, cut = windows[window, False], windows[window, True]
        lengths = {False: [len(w) for w in plain], True: [len(w) for w in cut]}
        runs: dict[str, tuple[list[np.ndarray], list[list[int]]]] = {
            f"no cuts, batch {TIMED_BATCH} (mixed)": (plain, mixed_batches(lengths[False], TIMED_BATCH)),
            f"cuts, batch {TIMED_BATCH}, one length a batch": (cut, one_length_batches(lengths[True], TIMED_BATCH)),
            f"cuts, batch {TIMED_BATCH}, mixed padded": (cut, mixed_batches(lengths[True], TIMED_BATCH)),
            "no cuts, batch 1": (plain, mixed_batches(lengths[False], 1)),
            "cuts, batch 1": (cut, mixed_batches(lengths[True], 1)),
        }
        seconds = best_times(encoder, runs, repeat)
        reference = seconds[f"no cuts, batch {TIMED_BATCH} (mixed)"]
        out += [f"| {window} | {name} | {len(runs[name][1])} | {s:.2f} | {s / reference:.2f}x |" for name, s in seconds.items()]
    return out


def batching(videos: int, seed: int, repeat: int) -> None:
    torch.set_num_threads(2)
    encoder = Encoder.load("tiny", "cpu")
    with tempfile.TemporaryDirectory(prefix="bench-cuts-") as folder:
        labelled = build_long_form_set(Path(folder), videos=videos, seed=seed)
        paths = [Path(labelled.path(video)) for video in labelled.scenes]
        scenes = sum(len(spans) for spans in labelled.scenes.values())
        minutes = sum(labelled.duration(v) for v in labelled.scenes) / 60
        windows = {(w, cuts): decode_windows(paths, encoder.image_size, w, cuts)
                   for w in BATCH_WINDOWS for cuts in (False, True)}
    print(f"\n## Part 2: what cuts cost the encoder's batching\n\nset: tests/long_form_set.py, {videos} videos, {scenes} "
          f"scenes, {minutes:.1f} min, seed {seed}; decoded with decode_job at 1 fps, {encoder.image_size} px (tiny)\n")
    print("Forward passes to encode every window (hardware-independent):\n")
    print("\n".join(pass_table(windows, encoder.model.tubelet_size)))
    print(f"\nEncoding every window with the random-init tiny model on this CPU ({torch.get_num_threads()} torch threads, "
          f"best of {repeat}); a CPU is not a GPU, whose passes cost far less each, so fewer passes matter more there:\n")
    print("\n".join(time_table(encoder, windows, repeat)))


# --- both -----------------------------------------------------------------------------------------------------------


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    return (f"{platform.machine()}, {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch "
            f"{torch.__version__}, vidsearch at {commit}, load average {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("detection", "batching"), help="run one part only (default: both)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the footage and of the long-form set")
    parser.add_argument("--shots", type=int, default=100, help="shots in part 1's footage")
    parser.add_argument("--videos", type=int, default=24, help="videos in part 2's long-form set")
    parser.add_argument("--repeat", type=int, default=3, help="timed repeats in part 2 (the best is kept)")
    args = parser.parse_args()
    parts: list[Callable[[], None]] = []
    if args.part != "batching":
        try:
            import skimage  # noqa: F401
        except ImportError:
            print(INSTALL_HINT, file=sys.stderr)
            sys.exit(2)
        parts.append(lambda: detection(args.shots, args.seed))
    if args.part != "detection":
        parts.append(lambda: batching(args.videos, args.seed, args.repeat))
    started = time.perf_counter()
    print(f"machine: {machine()}", flush=True)
    for part in parts:
        part()
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
