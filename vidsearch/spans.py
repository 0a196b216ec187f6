"""Multi-scale moments: spans of consecutive segments around the best segment and window hits, each scored by the
cosine of its mean vector, so that a query describing a few seconds or a few minutes finds a span of that length."""

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


def region_spans(region: Region, starts: np.ndarray, ends: np.ndarray, vectors: np.ndarray, query: np.ndarray, *,
                 longest: int) -> list[Moment]:
    """Every span of 1 to `longest` consecutive segments (rows in time order) as a Moment scored by the cosine between
    the query and the span's mean segment vector (the window vector is that mean over a whole window, so a span
    is a window of its own length)."""
    count = len(starts)
    if count == 0:
        return []
    totals = np.concatenate([np.zeros((1, vectors.shape[1]), np.float64), np.cumsum(vectors, axis=0, dtype=np.float64)])
    spans = []
    for length in range(1, min(longest, count) + 1):
        sums = totals[length:] - totals[:-length]  # (count - length + 1, dim): each span's summed vectors
        norms = np.linalg.norm(sums, axis=1)
        scores = (sums @ query.astype(np.float64)) / np.maximum(norms, 1e-12)
        for first, score in enumerate(scores):
            last = first + length - 1
            spans.append(Moment(region.video_id, region.path, float(starts[first]), float(ends[last]), float(score),
                                length))
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
