"""Fusing visual moments with transcript matches: which ones merge, and how each rule ranks them."""

import pytest

from vidsearch.fusion import RRF_K, fuse, text_moments
from vidsearch.search import Moment
from vidsearch.text_search import TextMatch


def seen(video, start, end, cosine, segments=2):
    return Moment(video, f"/v{video}.mp4", start, end, cosine, segments)


def said(video, start, end, score, line="chopping onions", source="sidecar:a.srt", coverage=1.0):
    return TextMatch(video, f"/v{video}.mp4", start, end, score, line, ((0, 8),), source, "en", coverage)


def spans(moments):
    return [(m.video_id, m.start, m.end) for m in moments]


def test_a_line_overlapping_a_visual_moment_of_its_video_fuses_into_one_moment_spanning_both():
    visual, line = seen(1, 10.0, 20.0, 0.4, segments=3), said(1, 19.5, 22.0, 2.5)
    (moment,) = fuse([visual], [line], rule="rrf")
    assert (moment.start, moment.end, moment.segments) == (10.0, 22.0, 3)
    assert (moment.text, moment.visual_score, moment.text_score) == (line, 0.4, 2.5)
    assert moment.score == pytest.approx(2 / (RRF_K + 1))


def test_a_line_within_the_gap_joins_and_one_past_it_or_in_another_video_stands_alone():
    near, far, elsewhere = said(1, 20.8, 23.0, 2.0), said(1, 21.5, 23.0, 2.0), said(2, 10.0, 12.0, 2.0)
    assert spans(fuse([seen(1, 10.0, 20.0, 0.4)], [near])) == [(1, 10.0, 23.0)]
    assert sorted(spans(fuse([seen(1, 10.0, 20.0, 0.4)], [far]))) == [(1, 10.0, 20.0), (1, 21.5, 23.0)]
    assert sorted(spans(fuse([seen(1, 10.0, 20.0, 0.4)], [elsewhere]))) == [(1, 10.0, 20.0), (2, 10.0, 12.0)]


def test_of_several_lines_overlapping_one_moment_the_best_is_its_text_and_the_others_add_nothing():
    best, worse = said(1, 12.0, 14.0, 3.0, line="best"), said(1, 15.0, 17.0, 1.0, line="worse")
    (moment,) = fuse([seen(1, 10.0, 20.0, 0.4)], [best, worse], rule="rrf")
    assert moment.text.line == "best" and moment.score == pytest.approx(2 / (RRF_K + 1))


def test_a_line_joins_the_best_ranked_visual_moment_it_overlaps():
    first, second = seen(1, 8.0, 12.0, 0.5), seen(1, 12.5, 16.0, 0.3)
    moments = fuse([first, second], [said(1, 11.0, 13.0, 2.0)])
    assert [(m.start, m.end, m.text is not None) for m in moments] == [(8.0, 13.0, True), (12.5, 16.0, False)]


def test_a_line_alone_is_a_moment_of_its_span_and_a_visual_moment_alone_stays_as_it_is():
    visual, line = seen(1, 0.0, 4.0, 0.6), said(2, 5.0, 7.5, 2.0)
    moments = fuse([visual], [line])
    by_video = {m.video_id: m for m in moments}
    assert (by_video[2].start, by_video[2].end, by_video[2].segments, by_video[2].visual_score) == (5.0, 7.5, 0, None)
    assert by_video[2].text == line and by_video[2].text_score == 2.0
    assert (by_video[1].start, by_video[1].end, by_video[1].text, by_video[1].visual_score) == (0.0, 4.0, None, 0.6)


def test_rrf_sums_reciprocal_ranks_so_agreement_beats_one_list_topping():
    visual = [seen(1, 0.0, 4.0, 0.9), seen(2, 0.0, 4.0, 0.8), seen(3, 0.0, 4.0, 0.7)]
    text = [said(4, 0.0, 2.0, 9.0), said(5, 0.0, 2.0, 8.0), said(3, 1.0, 3.0, 7.0)]
    moments = fuse(visual, text, rule="rrf")
    assert [m.video_id for m in moments] == [3, 1, 4, 2, 5]  # ties (1 and 4, 2 and 5) by path
    assert [m.score for m in moments] == pytest.approx([2 / 63, 1 / 61, 1 / 61, 1 / 62, 1 / 62])


def test_weighted_calibrates_cosines_on_the_candidates_and_text_by_coverage_squared():
    # cosines 0.30 0.25 0.20 0.10: median 0.225, so 0.30 -> 1, 0.25 -> 1/3, 0.20 and 0.10 -> 0; coverage 1 -> 1, 0.5 -> 0.25
    visual = [seen(1, 0.0, 4.0, 0.30), seen(2, 0.0, 4.0, 0.25), seen(3, 0.0, 4.0, 0.20), seen(4, 0.0, 4.0, 0.10)]
    text = [said(5, 0.0, 2.0, 4.0), said(2, 1.0, 2.0, 9.0, coverage=0.5)]  # bm25 does not enter the score
    moments = fuse(visual, text, rule="weighted", visual_weight=0.5)
    assert [m.video_id for m in moments] == [5, 1, 2, 3, 4]  # 5 and 1 tie: the one with a line first
    assert [m.score for m in moments] == pytest.approx([0.5, 0.5, 0.5 / 3 + 0.125, 0.0, 0.0])
    assert moments[2].text_score == 9.0 and moments[0].visual_score is None
    tilted = fuse(visual, text, rule="weighted", visual_weight=0.8)
    assert [m.video_id for m in tilted][:2] == [1, 2]  # leaning on the picture, the text-only moment drops


def test_weighted_with_one_side_missing_or_flat():
    assert [m.score for m in fuse([], [said(1, 0.0, 1.0, 3.0)], rule="weighted", visual_weight=0.5)] == [0.5]
    assert [m.score for m in fuse([], [said(1, 0.0, 1.0, 0.0, coverage=0.5)], rule="weighted", visual_weight=0.5)] == [0.125]
    flat = [seen(1, 0.0, 4.0, 0.2), seen(2, 0.0, 4.0, 0.2)]
    assert [m.score for m in fuse(flat, [], rule="weighted", visual_weight=0.5)] == [0.5, 0.5]


def test_by_default_a_line_with_all_the_words_beats_the_best_looking_moment_with_one_of_them():
    # the weighted sum leaning on text (bench/fusion.py): coverage counts, which rrf's ranks lose
    visual = [seen(1, 0.0, 4.0, 0.9), seen(2, 0.0, 4.0, 0.5), seen(3, 0.0, 4.0, 0.3), seen(4, 0.0, 4.0, 0.2)]
    text = [said(4, 1.0, 3.0, 6.0, line="the bakery opens early"), said(1, 1.0, 3.0, 1.0, line="early", coverage=1 / 3)]
    assert [m.video_id for m in fuse(visual, text)][:2] == [4, 1]
    assert fuse(visual, text) == fuse(visual, text, rule="weighted", visual_weight=0.2, coverage_power=2)
    assert [m.video_id for m in fuse(visual, text, rule="rrf")][:2] == [1, 4]


def test_by_default_an_incidental_word_barely_counts_even_as_the_best_line():
    # "a red triangle moving up": the only line is "the red wine stain would not come out", 1 of the 4 words, the best
    # (and only) bm25; it adds 0.8 / 16, so the best-looking moment stays first, where a relative bm25 put the line's
    visual = [seen(1, 0.0, 4.0, 0.70), seen(2, 0.0, 4.0, 0.68), seen(3, 0.0, 4.0, 0.60), seen(4, 0.0, 4.0, 0.50)]
    (first, second, *_) = fuse(visual, [said(2, 1.0, 3.0, 2.6, line="the red wine stain", coverage=0.25)])
    assert (first.video_id, first.text, second.video_id) == (1, None, 2)
    assert second.score == pytest.approx(0.2 * (0.68 - 0.64) / (0.70 - 0.64) + 0.8 / 16)  # median 0.64


@pytest.mark.parametrize("share, first", [(1.0, 2), (2 / 3, 2), (0.5, 2), (0.4, 1), (0.25, 1)])
def test_by_default_a_line_with_half_of_a_term_or_more_outranks_the_best_looking_silent_moment(share, first):
    # 0.8 * share ** 2 against 0.2: at half they tie, and equal scores put the moment with a line first
    visual = [seen(1, 0.0, 4.0, 0.9), seen(3, 0.0, 4.0, 0.3), seen(4, 0.0, 4.0, 0.2)]
    assert fuse(visual, [said(2, 0.0, 2.0, 1.0, coverage=share)])[0].video_id == first


def test_weighted_takes_a_moments_line_by_coverage_and_breaks_equal_scores_by_bm25():
    # best bm25 first, as search_text gives them; the line with more of the query becomes the moment's text
    partial, whole = said(1, 1.0, 2.0, 8.0, line="onions", coverage=0.5), said(1, 2.0, 3.0, 3.0, line="chopping onions")
    (moment,) = fuse([seen(1, 0.0, 4.0, 0.5)], [partial, whole])
    assert moment.text == whole and moment.score == pytest.approx(1.0)
    # two lines alone with the whole query: the better bm25 first, whatever the order or the path
    weak, strong = said(1, 0.0, 2.0, 2.0), said(2, 0.0, 2.0, 5.0)
    assert [m.video_id for m in fuse([], [weak, strong])] == [2, 1]
    assert [m.video_id for m in fuse([seen(3, 0.0, 4.0, 0.1)], [weak, strong], visual_weight=0.5)] == [2, 1, 3]
    assert [m.video_id for m in fuse([], [weak, strong], rule="rrf")] == [1, 2]  # rrf keeps the list's order


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="rrf, weighted"):
        fuse([], [], rule="max")


def test_text_moments_score_by_text_and_drop_a_line_overlapping_a_better_one():
    subtitle, speech, later = said(1, 5.0, 7.0, 3.0), said(1, 5.2, 6.8, 1.0, source="speech:pocketsphinx"), said(1, 30.0, 31.0, 2.0)
    moments = text_moments([subtitle, speech, later])
    assert [(m.start, m.end, m.score, m.text.source, m.segments) for m in moments] == [
        (5.0, 7.0, 3.0, "sidecar:a.srt", 0), (30.0, 31.0, 2.0, "sidecar:a.srt", 0)]
    assert [m.visual_score for m in moments] == [None, None] and [m.text_score for m in moments] == [3.0, 2.0]
