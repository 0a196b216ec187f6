"""Pure arithmetic: frame streams -> windows, time slices and searchable segments (no I/O, no torch)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of `size` items (the last may be shorter)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


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
