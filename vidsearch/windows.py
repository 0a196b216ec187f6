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
# by more than this total-variation distance (0: the same colours, 1: none shared), averaged over the channels, and
# the new look lasts (shot_cut). On the synthetic long-video set at 1 fps every cut measured 0.196 or more and no
# frame pair inside a scene over 0.052; on footage made of real photographs (bench/cuts.py) every cut between two
# photos was found, and exposure drift and fast pans made some false ones. A false cut only shortens a window.
CUT_DISTANCE = 0.15
HISTOGRAM_BINS = 16
# A cut does not end a shot that began at a cut less than this long ago: flicker cuts in every frame, and would
# otherwise leave windows of a frame or two with no time in them to attend to.
MIN_SHOT_SECONDS = 2.0
# With cuts, a file is cut in cells of whole windows, about this many frames (at least one window), each on its own:
# a window never spans two cells, so a Ray unit of whole cells cuts its frames exactly as the whole file's stream
# does. Inside a cell a window starts again at each cut; a cell's frames are held until it is cut.
CUT_CELL_FRAMES = 64


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
    """Whether two colour histograms (colour_histogram) differ by more than CUT_DISTANCE."""
    return float(np.abs(before - after).sum()) / 2 / 3 > CUT_DISTANCE


def shot_cut(histograms: Sequence[np.ndarray], t: int) -> bool:
    """Whether frames t-1 and t lie on two sides of a scene cut: they differ (is_cut), the new look lasts (frame t+1,
    when there is one, differs from t-1 too) and is not a return to the look before (frame t differs from t-2, when
    there is one). So a flash (one frame lit) is no cut, going in or coming out."""
    differs = is_cut(histograms[t - 1], histograms[t])
    lasts = t + 1 == len(histograms) or is_cut(histograms[t - 1], histograms[t + 1])
    new = t < 2 or is_cut(histograms[t - 2], histograms[t])
    return differs and lasts and new


def cut_cell(window: int) -> int:
    """Frames per cell (CUT_CELL_FRAMES): whole windows of `window` frames."""
    return max(1, CUT_CELL_FRAMES // window) * window


def frame_windows(frames: Iterable[tuple[float, np.ndarray]], size: int, *, cuts: bool = False
                  ) -> Iterator[list[tuple[float, np.ndarray]]]:
    """Consecutive (time, frame) pairs in windows of `size`. With `cuts`, a scene cut (shot_cut) also ends a window,
    unless the shot it ends began at a cut less than MIN_SHOT_SECONDS before, so no window holds two shots; the count
    starts again after each cut, and at each cell (cut_cell) from the first frame."""
    if not cuts:
        yield from chunked(frames, size)
        return
    for cell in chunked(frames, cut_cell(size)):
        histograms = [colour_histogram(frame) for _, frame in cell]
        shots = [0]  # where each shot starts in the cell
        for t in range(1, len(cell)):
            long_enough = len(shots) == 1 or cell[t][0] - cell[shots[-1]][0] >= MIN_SHOT_SECONDS - 1e-9
            if long_enough and shot_cut(histograms, t):
                shots.append(t)
        for first, end in zip(shots, [*shots[1:], len(cell)]):
            yield from chunked(cell[first:end], size)


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
