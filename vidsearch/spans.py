"""Multi-scale moments: spans of consecutive segments around the best segment and window hits, each scored by its
segments' mean cosine, the best window it touches, and a bonus for length, so that a query describing a scene or
two scenes finds a span of that length (the rule and its weights were chosen on bench/long_form.py's set)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .search import Moment


@dataclass(frozen=True)
class Region:
    """A stretch of one video to look for spans in, seconds."""

    video_id: int
    path: str
    start: float
    end: float


def merge_regions(regions: Iterable[Region]) -> list[Region]:
    """Overlapping or touching regions of one video become one."""
    merged: list[Region] = []
    for region in sorted(regions, key=lambda r: (r.video_id, r.start)):
        last = merged[-1] if merged else None
        if last is not None and last.video_id == region.video_id and region.start <= last.end:
            merged[-1] = Region(last.video_id, last.path, last.start, max(last.end, region.end))
        else:
            merged.append(region)
    return merged


# Chosen on bench/long_form.py's set (joint and frame models; README "Multi-scale search"): spans of up to two
# windows, the best overlapping window's cosine weighing a quarter of the segments' mean cosine, and a bonus of 0.3 of
# the query's score spread per e-fold of length.
WINDOW_WEIGHT = 0.25
LENGTH_BONUS = 0.3
LONGEST_WINDOWS = 2


def region_spans(region: Region, starts: np.ndarray, ends: np.ndarray, cosines: np.ndarray, windows: np.ndarray, *,
                 longest: int, spread: float) -> list[Moment]:
    """Every span of 1 to `longest` consecutive segments (rows in time order, with their cosines to the query) as a
    Moment scored (mean segment cosine + WINDOW_WEIGHT * best cosine of a window it overlaps) / (1 + WINDOW_WEIGHT)
    + LENGTH_BONUS * spread * ln(segments). `windows` holds the region's window rows as (start, end, cosine);
    `spread` is the query's score scale (best minus median candidate cosine), so the bonus suits any model."""
    count = len(starts)
    if count == 0:
        return []
    totals = np.concatenate([[0.0], np.cumsum(cosines, dtype=np.float64)])
    spans = []
    for length in range(1, min(longest, count) + 1):
        means = (totals[length:] - totals[:-length]) / length
        for first, mean in enumerate(means):
            start, end = float(starts[first]), float(ends[first + length - 1])
            context = max((cosine for w_start, w_end, cosine in windows if w_start < end and w_end > start), default=mean)
            score = (mean + WINDOW_WEIGHT * context) / (1 + WINDOW_WEIGHT) + LENGTH_BONUS * spread * np.log(length)
            spans.append(Moment(region.video_id, region.path, start, end, float(score), length))
    return spans


def best_spans(spans: Iterable[Moment]) -> list[Moment]:
    """The best span, then the best that overlaps none taken so far (of its video), and so on: best first."""
    taken: dict[int, list[tuple[float, float]]] = {}
    chosen = []
    for span in sorted(spans, key=lambda s: (-s.score, s.path, s.start, s.end)):
        others = taken.setdefault(span.video_id, [])
        if all(span.end <= start or span.start >= end for start, end in others):
            others.append((span.start, span.end))
            chosen.append(span)
    return chosen
