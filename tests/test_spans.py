"""Multi-scale spans: a span scores its segments' mean cosine, the best window it touches and a bonus for length;
the best spans that do not overlap win."""

import numpy as np
import pytest

from vidsearch.search import Moment
from vidsearch.spans import LENGTH_BONUS, WINDOW_WEIGHT, Region, best_spans, merge_regions, region_spans


def by_extent(spans):
    return {(s.start, s.end): s for s in spans}


def test_a_span_scores_its_mean_cosine_its_best_window_and_its_length():
    starts, ends = np.array([0.0, 4.0, 8.0]), np.array([4.0, 8.0, 12.0])
    cosines = np.array([0.5, 0.3, 0.1])
    windows = [(0.0, 8.0, 0.6), (8.0, 12.0, 0.2)]
    spans = by_extent(region_spans(Region(1, "a.mp4", 0, 12), starts, ends, cosines, windows, longest=3, spread=0.2))
    assert len(spans) == 3 + 2 + 1
    w = WINDOW_WEIGHT
    assert spans[(0.0, 4.0)].score == pytest.approx((0.5 + w * 0.6) / (1 + w))  # one segment: no length bonus
    assert spans[(8.0, 12.0)].score == pytest.approx((0.1 + w * 0.2) / (1 + w))
    assert spans[(4.0, 12.0)].score == pytest.approx((0.2 + w * 0.6) / (1 + w) + LENGTH_BONUS * 0.2 * np.log(2))
    assert spans[(0.0, 12.0)].score == pytest.approx((0.3 + w * 0.6) / (1 + w) + LENGTH_BONUS * 0.2 * np.log(3))
    assert spans[(0.0, 12.0)].segments == 3


def test_two_halves_that_both_match_win_as_one_span_but_a_lone_match_stays_short():
    starts, ends = np.arange(4) * 4.0, np.arange(1, 5) * 4.0
    # "A then B": two neighbours match equally well -> the span of both beats either alone
    both = by_extent(region_spans(Region(1, "a", 0, 16), starts, ends, np.array([0.1, 0.5, 0.5, 0.1]), [], longest=4,
                                  spread=0.4))
    assert best_spans(both.values())[0].start == 4.0 and best_spans(both.values())[0].end == 12.0
    # one strong segment among poor ones: growing it costs more than the bonus gives
    lone = region_spans(Region(1, "a", 0, 16), starts, ends, np.array([0.1, 0.6, 0.1, 0.1]), [], longest=4, spread=0.4)
    assert (best_spans(lone)[0].start, best_spans(lone)[0].end) == (4.0, 8.0)


def test_spans_are_never_longer_than_asked():
    spans = region_spans(Region(1, "a", 0, 20), np.arange(5) * 4.0, np.arange(1, 6) * 4.0, np.ones(5), [], longest=2,
                         spread=0.1)
    assert max(s.segments for s in spans) == 2 and len(spans) == 5 + 4


def test_the_best_spans_that_do_not_overlap_are_kept_best_first():
    spans = [Moment(1, "a", 0, 8, 0.9, 2), Moment(1, "a", 4, 8, 0.95, 1), Moment(1, "a", 8, 12, 0.5, 1),
             Moment(2, "b", 0, 8, 0.7, 2)]
    assert [(s.video_id, s.start, s.end) for s in best_spans(spans)] == [(1, 4, 8), (2, 0, 8), (1, 8, 12)]


def test_regions_of_one_video_that_touch_merge():
    regions = [Region(1, "a", 10, 20), Region(2, "b", 0, 5), Region(1, "a", 0, 10), Region(1, "a", 30, 40)]
    assert merge_regions(regions) == [Region(1, "a", 0, 20), Region(1, "a", 30, 40), Region(2, "b", 0, 5)]
