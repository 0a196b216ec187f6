"""Synthetic videos of coloured shapes moving in named directions, with captions."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

__all__ = [
    "COLORS",
    "DIRECTIONS",
    "SHAPES",
    "Scene",
    "make_dataset",
    "random_scenes",
    "render_frames",
    "write_video",
]

COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")

# Other ways to say a scene's caption (the first), for manifests with `phrasings`: word orders and verbs vary, so
# a model learns the colour, shape and direction rather than one sentence.
PHRASINGS: tuple[str, ...] = (
    "a {color} {shape} moving {direction}",
    "a {color} {shape} that goes {direction}",
    "the {shape} is {color} and heads {direction}",
    "going {direction}: a {color} {shape}",
    "{direction}ward motion of a {shape} in {color}",
    "a {shape}, {color}, travelling {direction}",
)

# Saturated, bright shape colours; backgrounds stay dark (max channel <= ~105), so every
# shape differs from its background by well over 100 in at least one channel.
_RGB = {
    "red": (225.0, 45.0, 40.0),
    "green": (45.0, 205.0, 65.0),
    "blue": (55.0, 95.0, 235.0),
    "yellow": (235.0, 220.0, 45.0),
}
# Unit motion vectors in image coordinates (x right, y down).
_VECTORS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}

_SHAPE_DIAMETER = (0.22, 0.28)  # shape size as a fraction of the frame
_TRAVEL = (0.60, 0.72)  # distance travelled during one scene, fraction of the frame
_TRIANGLE_R = 1.3  # triangle circumradius, in units of the shape radius
_MIN_JITTER = 0.08  # start points along the motion axis vary over at least this fraction of the frame


@dataclass(frozen=True)
class Scene:
    """One shot: a single shape of one colour moving in one direction."""

    color: str
    shape: str
    direction: str

    def __post_init__(self) -> None:
        for value, allowed, what in (
            (self.color, COLORS, "colour"),
            (self.shape, SHAPES, "shape"),
            (self.direction, DIRECTIONS, "direction"),
        ):
            if value not in allowed:
                raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")

    @property
    def caption(self) -> str:
        return f"a {self.color} {self.shape} moving {self.direction}"

    @property
    def phrasings(self) -> list[str]:
        """The caption and other ways to say it, the direction first or last (PHRASINGS)."""
        return [template.format(color=self.color, shape=self.shape, direction=self.direction) for template in PHRASINGS]


def random_scenes(count: int, *, rng: np.random.Generator) -> list[Scene]:
    """Return ``count`` scenes with independently drawn colour, shape and direction."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return [
        Scene(
            COLORS[int(rng.integers(len(COLORS)))],
            SHAPES[int(rng.integers(len(SHAPES)))],
            DIRECTIONS[int(rng.integers(len(DIRECTIONS)))],
        )
        for _ in range(count)
    ]


def _hard_negative_scenes(count: int, *, rng: np.random.Generator) -> list[Scene]:
    """Scenes in groups of len(DIRECTIONS) sharing colour and shape, directions shuffled.

    Groups within one call use distinct colour/shape pairs while there are enough of them.
    A final partial group gets distinct directions too.
    """
    combos = [(c, s) for c in COLORS for s in SHAPES]
    groups = -(-count // len(DIRECTIONS))
    order: list[int] = []
    while len(order) < groups:
        order.extend(int(i) for i in rng.permutation(len(combos)))
    scenes: list[Scene] = []
    for g in range(groups):
        color, shape = combos[order[g]]
        for d in rng.permutation(len(DIRECTIONS)):
            if len(scenes) < count:
                scenes.append(Scene(color, shape, DIRECTIONS[int(d)]))
    return scenes


def _frame_count(seconds: float, fps: float) -> int:
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    n = round(seconds * fps)
    if n < 2:
        raise ValueError(f"a scene needs at least 2 frames; {seconds} s at {fps} fps gives {n}")
    return n


def _check_size(size: int) -> None:
    if size < 16 or size % 2:
        raise ValueError(f"size must be an even number of pixels >= 16, got {size}")


def _reach(shape: str, r: float) -> tuple[float, float, float, float]:
    """How far a shape of radius ``r`` extends left, right, up and down from its centre (pixels)."""
    if shape == "triangle":
        big = _TRIANGLE_R * r
        return (0.8660254 * big, 0.8660254 * big, big, 0.5 * big)
    if shape == "square":
        return (0.9 * r,) * 4
    return (r,) * 4


def _coverage(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a shape of radius ``r`` at offsets (dx, dy)."""
    if shape == "circle":
        inside = r - np.sqrt(dx * dx + dy * dy)
    elif shape == "square":
        inside = 0.9 * r - np.maximum(np.abs(dx), np.abs(dy))
    else:  # equilateral triangle pointing up, centred on its centroid
        big = _TRIANGLE_R * r
        h = np.float32(np.sqrt(3.0) / 2.0)
        inside = np.minimum(
            0.5 * big - dy,  # bottom edge
            np.minimum(0.5 * big - (h * dx - 0.5 * dy), 0.5 * big - (-h * dx - 0.5 * dy)),
        )
    return np.clip(inside + 0.5, 0.0, 1.0)


def render_frames(scene: Scene, *, seconds: float, fps: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render one scene as an (n, size, size, 3) uint8 RGB array, n = round(seconds * fps).

    The shape (about a quarter of the frame across) moves in a straight line at constant
    speed, covering about 60-72% of the frame between the first and the last frame; the
    start point is jittered along the motion axis (by at least 8% of the frame) and uniform
    across it, so a single frame does not reveal the direction. The shape always stays
    fully inside the frame.
    """
    _check_size(size)
    n = _frame_count(seconds, fps)

    # Background: dark tinted gray, a gentle linear gradient, static mild noise.
    base = rng.uniform(15.0, 70.0) + rng.uniform(-12.0, 12.0, size=3)
    grad = rng.uniform(-10.0, 10.0, size=2)
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    bg = (
        base[None, None, :].astype(np.float32)
        + (grad[0] * axis)[None, :, None]
        + (grad[1] * axis)[:, None, None]
        + rng.normal(0.0, 2.0, size=(size, size, 1)).astype(np.float32)
    )
    bg = np.clip(bg, 0.0, 255.0)

    color = np.clip(np.array(_RGB[scene.color]) + rng.uniform(-12.0, 12.0, size=3), 0, 255)
    r = rng.uniform(*_SHAPE_DIAMETER) * size / 2.0
    # Where the centre may go (+1 px for anti-aliasing) so the whole shape stays in frame.
    left, right, top, bottom = (e + 1.0 for e in _reach(scene.shape, r))
    x_range, y_range = (left, size - right), (top, size - bottom)
    vx, vy = _VECTORS[scene.direction]
    (lo, hi), (across_lo, across_hi) = (x_range, y_range) if vx else (y_range, x_range)
    sign = vx or vy
    travel = min(rng.uniform(*_TRAVEL) * size, hi - lo - _MIN_JITTER * size)
    offset = rng.uniform(0.0, hi - lo - travel)
    start = lo + offset if sign > 0 else hi - offset
    along = start + sign * travel * np.linspace(0.0, 1.0, n)
    across = np.full(n, rng.uniform(across_lo, across_hi))
    cx, cy = (along, across) if vx else (across, along)

    # Composite the anti-aliased shape onto the background inside its bounding window only.
    bg8 = np.rint(bg).astype(np.uint8)
    frames = np.repeat(bg8[None], n, axis=0)
    rgb = color.astype(np.float32)
    reach = int(np.ceil(max(left, right, top, bottom))) + 1
    for i in range(n):
        x0, x1 = max(int(cx[i]) - reach, 0), min(int(cx[i]) + reach + 1, size)
        y0, y1 = max(int(cy[i]) - reach, 0), min(int(cy[i]) + reach + 1, size)
        dx = np.arange(x0, x1, dtype=np.float32)[None, :] + np.float32(0.5 - cx[i])
        dy = np.arange(y0, y1, dtype=np.float32)[:, None] + np.float32(0.5 - cy[i])
        alpha = _coverage(scene.shape, dx, dy, np.float32(r))[..., None]
        window = bg[y0:y1, x0:x1] * (1.0 - alpha) + rgb * alpha
        frames[i, y0:y1, x0:x1] = np.rint(window).astype(np.uint8)
    return frames


def write_video(
    path: str | os.PathLike[str],
    scenes: list[Scene],
    *,
    scene_seconds: float | Sequence[float] = 8.0,
    fps: float = 4.0,
    size: int = 128,
    seed: int = 0,
) -> list[dict]:
    """Encode ``scenes`` back to back as one H.264 mp4; return one manifest row per scene.

    ``scene_seconds`` is every scene's length, or a list of one length per scene (scenes of
    different lengths). Scene k lasts round(seconds_k * fps) frames; rows hold the actual
    boundaries in seconds, which tile the video exactly.
    """
    if not scenes:
        raise ValueError("a video needs at least one scene")
    _check_size(size)
    if np.ndim(scene_seconds) == 0:
        lengths = [float(scene_seconds)] * len(scenes)
    else:
        lengths = [float(s) for s in scene_seconds]
        if len(lengths) != len(scenes):
            raise ValueError(f"scene_seconds has {len(lengths)} lengths for {len(scenes)} scenes")
    counts = [_frame_count(seconds, fps) for seconds in lengths]
    rate = Fraction(fps).limit_denominator(1001)
    rng = np.random.default_rng(seed)
    # Convert to yuv420p ourselves, single-threaded with accurate, bit-exact rounding.
    reformatter = VideoReformatter()
    interpolation = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.BITEXACT
    rows = []
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width = size
        stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = max(counts)
        # One thread is faster at these sizes; without lookahead / mb-tree, x264 (as bundled with
        # PyAV 18) gives byte-identical output run after run, which it otherwise occasionally does not.
        stream.options = {"crf": "18", "preset": "veryfast", "threads": "1", "x264-params": "rc-lookahead=0:mbtree=0"}
        index = 0
        for scene, seconds in zip(scenes, lengths):
            first = index
            for rgb in render_frames(scene, seconds=seconds, fps=fps, size=size, rng=rng):
                frame = reformatter.reformat(
                    av.VideoFrame.from_ndarray(rgb, format="rgb24"), format="yuv420p", interpolation=interpolation, threads=1
                )
                frame.pts = index
                frame.time_base = 1 / rate
                index += 1
                container.mux(stream.encode(frame))
            rows.append(
                {
                    "video": str(path),
                    "start": round(first / float(rate), 6),
                    "end": round(index / float(rate), 6),
                    "caption": scene.caption,
                }
            )
        container.mux(stream.encode(None))
    return rows


def make_dataset(
    out_dir: str | os.PathLike[str],
    *,
    videos: int,
    scenes_per_video: int,
    scene_seconds: float = 8.0,
    fps: float = 4.0,
    size: int = 128,
    seed: int = 0,
    manifest_name: str = "pairs.jsonl",
    hard_negatives: bool = False,
    phrasings: bool = False,
) -> Path:
    """Write ``videos`` mp4 files under out_dir/videos and a JSONL manifest of clip captions.

    Manifest "video" paths are relative to the manifest's folder. With ``hard_negatives``,
    each video's scenes come in groups sharing colour and shape that differ only in
    direction. With ``phrasings``, each caption is the list of a scene's phrasings (Scene.phrasings), of which
    training draws one at a time. Returns the manifest path.
    """
    if videos < 1 or scenes_per_video < 1:
        raise ValueError("videos and scenes_per_video must be >= 1")
    _check_size(size)
    _frame_count(scene_seconds, fps)
    out = Path(out_dir)
    video_dir = out / "videos"
    video_dir.mkdir(parents=True, exist_ok=True)
    manifest = out / manifest_name
    manifest.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pick = _hard_negative_scenes if hard_negatives else random_scenes
    rows: list[dict] = []
    for i in range(videos):
        scenes = pick(scenes_per_video, rng=rng)
        video_seed = int(rng.integers(2**31))
        path = video_dir / f"synth_{i:04d}.mp4"
        for scene, row in zip(scenes, write_video(path, scenes, scene_seconds=scene_seconds, fps=fps, size=size,
                                                  seed=video_seed)):
            row["video"] = Path(os.path.relpath(path, manifest.parent)).as_posix()
            if phrasings:
                row["caption"] = scene.phrasings
            rows.append(row)
    with manifest.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return manifest
