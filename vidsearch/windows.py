"""Pure arithmetic: frame streams -> windows (cut at scene changes if asked), time slices and searchable segments (no
I/O, no torch)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import TypeVar

import numpy as np

T = TypeVar("T")

# A scene cut, between two frames sampled in a row: their colour histograms (HISTOGRAM_BINS levels per channel) differ
# by more than this total-variation distance (0: the same colours, 1: none shared), averaged over the channels. On the
# synthetic long-video set at 1 fps, every cut measured 0.20 or more and no frame pair inside a scene over 0.05;
# a false cut only shortens a window.
CUT_DISTANCE = 0.15
HISTOGRAM_BINS = 16
# A cut counts only after a shot this long: flicker, flashes and strobes cut in every frame, and would otherwise leave
# windows of a frame or two with no time in them to attend to.
MIN_SHOT_SECONDS = 2.0


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of `size` items (the last may be shorter)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def colour_histogram(frame: np.ndarray) -> np.ndarray:
    """(3, HISTOGRAM_BINS): the share of a uint8 (H, W, 3) frame's pixels at each level band, per channel."""
    levels = frame.reshape(-1, 3) // (256 // HISTOGRAM_BINS)
    return np.stack([np.bincount(levels[:, c], minlength=HISTOGRAM_BINS) for c in range(3)]) / len(levels)


def is_cut(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether two colour histograms (colour_histogram) of frames in a row lie on two sides of a scene cut."""
    return float(np.abs(before - after).sum()) / 2 / 3 > CUT_DISTANCE


def frame_windows(frames: Iterable[tuple[float, np.ndarray]], size: int, *, cuts: bool = False
                  ) -> Iterator[list[tuple[float, np.ndarray]]]:
    """Consecutive (time, frame) pairs in windows of `size`; with `cuts`, a scene cut also ends a window early, so no
    window holds two shots (a shot shorter than MIN_SHOT_SECONDS joins the next one)."""
    if not cuts:
        yield from chunked(frames, size)
        return
    window: list[tuple[float, np.ndarray]] = []
    previous, shot_start = None, 0.0
    for time, frame in frames:
        histogram = colour_histogram(frame)
        cut = bool(window) and time - shot_start >= MIN_SHOT_SECONDS - 1e-9 and is_cut(previous, histogram)
        if window and (len(window) == size or cut):
            yield window
            window = []
        if not window and (cut or previous is None):
            shot_start = time
        window.append((time, frame))
        previous = histogram
    if window:
        yield window


def slice_spans(times: Sequence[float], *, tubelet: int, frame_seconds: float, duration: float | None = None) -> list[tuple[float, float]]:
    """[start, end) seconds of each time slice of a window whose frames were sampled at `times`.

    Slice i covers frames [i*tubelet, (i+1)*tubelet); it ends where the next slice starts,
    and the last one a frame period after its last frame (never past `duration`).
    """
    count = math.ceil(len(times) / tubelet)
    starts = [times[i * tubelet] for i in range(count)]
    last_end = times[-1] + frame_seconds
    if duration is not None and duration > times[-1]:
        last_end = min(last_end, duration)
    return [(start, starts[i + 1] if i + 1 < count else last_end) for i, start in enumerate(starts)]


def group_segments(spans: Sequence[tuple[float, float]], segment_seconds: float) -> list[range]:
    """Group consecutive slices into segments on a fixed time grid: slice -> floor(start / segment_seconds)."""
    groups: list[range] = []
    first = 0
    for i in range(1, len(spans) + 1):
        if i == len(spans) or _cell(spans[i][0], segment_seconds) != _cell(spans[first][0], segment_seconds):
            groups.append(range(first, i))
            first = i
    return groups


def _cell(seconds: float, segment_seconds: float) -> int:
    return math.floor(seconds / segment_seconds + 1e-9)
