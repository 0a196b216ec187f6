"""Multi-scale spans: every span's score is its mean vector's cosine; the best spans that do not overlap win."""

import numpy as np
import pytest

from vidsearch.search import Moment
from vidsearch.spans import Region, best_spans, merge_regions, region_spans


def unit(*values):
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_a_span_scores_the_cosine_of_its_mean_vector():
    vectors = np.stack([unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1)])
    starts, ends = np.array([0.0, 4.0, 8.0]), np.array([4.0, 8.0, 12.0])
    query = unit(1, 1, 0)
    spans = region_spans(Region(1, "a.mp4", 0, 12), starts, ends, vectors, query, longest=3)
    by_extent = {(s.start, s.end): s for s in spans}
    assert len(spans) == 3 + 2 + 1
    assert by_extent[(0.0, 4.0)].score == pytest.approx(1 / np.sqrt(2))  # one segment: its own cosine
    assert by_extent[(0.0, 8.0)].score == pytest.approx(1.0)  # the two halves of "A then B" together
    assert by_extent[(0.0, 12.0)].score == pytest.approx(2 / np.sqrt(6))  # a third scene dilutes it
    assert by_extent[(0.0, 12.0)].segments == 3


def test_spans_are_never_longer_than_asked():
    vectors = np.stack([unit(1, 0)] * 5)
    spans = region_spans(Region(1, "a", 0, 20), np.arange(5) * 4.0, np.arange(1, 6) * 4.0, vectors, unit(1, 0), longest=2)
    assert max(s.segments for s in spans) == 2 and len(spans) == 5 + 4


def test_the_best_spans_that_do_not_overlap_are_kept_best_first():
    spans = [Moment(1, "a", 0, 8, 0.9, 2), Moment(1, "a", 4, 8, 0.95, 1), Moment(1, "a", 8, 12, 0.5, 1),
             Moment(2, "b", 0, 8, 0.7, 2)]
    assert [(s.video_id, s.start, s.end) for s in best_spans(spans)] == [(1, 4, 8), (2, 0, 8), (1, 8, 12)]


def test_regions_of_one_video_that_touch_merge():
    regions = [Region(1, "a", 10, 20), Region(2, "b", 0, 5), Region(1, "a", 0, 10), Region(1, "a", 30, 40)]
    assert merge_regions(regions) == [Region(1, "a", 0, 20), Region(1, "a", 30, 40), Region(2, "b", 0, 5)]
