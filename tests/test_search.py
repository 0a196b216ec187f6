"""Merging segment hits into moments."""

from vidsearch.search import Hit, merge_moments


def hit(video, start, end, score, path=None):
    return Hit(video, path or f"/v{video}.mp4", start, end, score)


def test_adjacent_strong_hits_of_one_video_merge_into_one_moment_scored_by_the_best():
    moments = merge_moments([hit(1, 4, 8, 0.65), hit(1, 8, 12, 0.7), hit(1, 0, 4, 0.68)], margin=0.1)
    assert len(moments) == 1
    assert (moments[0].start, moments[0].end, moments[0].score, moments[0].segments) == (0, 12, 0.7, 3)


def test_a_weak_neighbour_does_not_stretch_a_moment():
    moments = merge_moments([hit(1, 0, 4, 0.9), hit(1, 4, 8, 0.2)], margin=0.1)
    assert [(m.start, m.end) for m in moments] == [(0, 4), (4, 8)]


def test_gaps_and_other_videos_stay_apart_and_rank_by_score():
    moments = merge_moments([hit(1, 0, 4, 0.3), hit(1, 20, 24, 0.9), hit(2, 4, 8, 0.6)], margin=1.0)
    assert [(m.path, m.start, m.score) for m in moments] == [
        ("/v1.mp4", 20, 0.9), ("/v2.mp4", 4, 0.6), ("/v1.mp4", 0, 0.3)]


def test_overlapping_hits_merge():
    (moment,) = merge_moments([hit(3, 0, 6, 0.1), hit(3, 5, 9, 0.2)], margin=0.5)
    assert (moment.start, moment.end) == (0, 9)


def test_default_margin_follows_the_score_spread():
    # best 0.9, median 0.1 -> margin 0.2: 0.75 joins, 0.6 does not
    hits = [hit(1, 0, 4, 0.9), hit(1, 4, 8, 0.75), hit(1, 8, 12, 0.6)] + [hit(v, 0, 4, 0.1) for v in range(2, 7)]
    assert (merge_moments(hits)[0].start, merge_moments(hits)[0].end) == (0, 8)


def test_no_hits_no_moments():
    assert merge_moments([]) == []
