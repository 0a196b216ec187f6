"""Sequence queries: composing the parts' moments into ordered spans, and gathering the parts' candidates."""

import pytest

from vidsearch.search import Moment, best_per_video
from vidsearch.sequence import MAX_GAP, OVERLAP, Part, SequenceMoment, compose, find_sequences, gather_candidates
from vidsearch.terms import Term, parse_sequence


def moment(video, start, end, score=0.5, segments=1):
    return Moment(video, f"/videos/{video}.mp4", float(start), float(end), score, segments)


def spans(found):
    return [(m.video_id, m.start, m.end) for m in found]


def test_the_next_part_must_come_after_the_one_before():
    a = moment(1, 20, 24)
    assert compose([[a], [moment(1, 0, 4)]]) == []  # B before A
    assert compose([[a], [moment(1, 18, 30)]]) == []  # B starts before A does
    assert compose([[a], [moment(1, 20, 24)]]) == []  # the same span is not a sequence
    assert compose([[a], [moment(1, 21, 24)]]) == []  # nor a B that ends no later than A
    assert spans(compose([[a], [moment(1, 30, 34)]])) == [(1, 20, 34)]
    assert compose([[moment(1, 30, 34)], [a]]) == []  # the order of the parts is the order in time


def test_the_next_part_must_start_within_the_gap():
    a = moment(1, 0, 4)
    assert MAX_GAP == 60
    assert spans(compose([[a], [moment(1, 64, 68)]])) == [(1, 0, 68)]  # exactly max_gap after A ends
    assert compose([[a], [moment(1, 64.5, 68)]]) == []
    assert spans(compose([[a], [moment(1, 14, 18)]], max_gap=10)) == [(1, 0, 18)]
    assert compose([[a], [moment(1, 15, 18)]], max_gap=10) == []


def test_parts_may_overlap_by_the_tolerance():
    a = moment(1, 0, 8)
    assert OVERLAP == 4  # one segment at the default --segment: a scene cut inside it puts it in both moments
    assert spans(compose([[a], [moment(1, 4, 12)]])) == [(1, 0, 12)]
    assert compose([[a], [moment(1, 3, 12)]]) == []
    assert compose([[a], [moment(1, 4, 12)]], overlap=0) == []
    assert spans(compose([[a], [moment(1, 8, 12)]], overlap=0)) == [(1, 0, 12)]  # touching is no overlap


def test_the_score_is_the_mean_calibrated_part_score_less_the_gap_penalty():
    # A's scores 0.9, 0.6, 0.5, 0.1: median 0.55, best 0.9 -> calibrated 1, 1/7, 0, 0 (clipped)
    # B's scores 0.3, 0.5, 0.1: median 0.3, best 0.5 -> 0, 1, 0
    parts = [[moment(1, 0, 4, 0.9), moment(2, 0, 4, 0.6), moment(3, 0, 4, 0.5), moment(4, 0, 4, 0.1)],
             [moment(1, 34, 38, 0.3), moment(2, 4, 8, 0.5), moment(3, 4, 8, 0.1)]]
    found = compose(parts)
    assert spans(found) == [(2, 0, 8), (1, 0, 38), (3, 0, 8)]  # video 4 has no B
    assert [m.score for m in found] == pytest.approx([(1 / 7 + 1) / 2, (1 + 0) / 2 - 0.1 * 30 / 60, 0.0])
    assert compose(parts, gap_penalty=0)[1].score == pytest.approx(0.5)
    assert compose(parts, gap_penalty=0.5)[1].score == pytest.approx(0.5 - 0.5 * 30 / 60)


def test_the_gap_penalty_prefers_the_nearer_of_equal_matches():
    a, near, far = moment(1, 0, 4), moment(1, 10, 14), moment(1, 40, 44)
    (found,) = compose([[a], [far, near]])  # the chain to the far B overlaps the better one: dropped
    assert (found.start, found.end) == (0, 14)
    assert found.score == pytest.approx(1 - 0.1 * 6 / 60)


def test_a_clearly_better_match_beats_a_nearer_one():
    a = moment(1, 0, 4)
    parts = [[a], [moment(1, 4, 8, 0.2), moment(1, 50, 54, 0.9), moment(2, 0, 4, 0.5)]]  # B: median 0.5
    assert spans(compose(parts)) == [(1, 0, 54)]


def test_chains_stay_inside_one_video():
    assert compose([[moment(1, 0, 4)], [moment(2, 10, 14)]]) == []
    found = compose([[moment(1, 0, 4, 0.9), moment(2, 0, 4, 0.8)], [moment(2, 10, 14, 0.7), moment(1, 10, 14, 0.6)]])
    assert sorted(spans(found)) == [(1, 0, 14), (2, 0, 14)]


def test_ties_are_ordered_by_path_and_time_whatever_the_input_order():
    parts = [[moment(2, 0, 4), moment(1, 30, 34), moment(1, 0, 4)], [moment(1, 10, 14), moment(2, 10, 14), moment(1, 40, 44)]]
    found = compose(parts)
    assert spans(found) == [(1, 0, 14), (1, 30, 44), (2, 0, 14)]
    assert compose([part[::-1] for part in parts]) == found


def test_a_sequence_is_a_moment_that_carries_its_parts():
    a, b = moment(7, 12, 20, 0.31, segments=2), moment(7, 24, 28, 0.27, segments=1)
    (found,) = compose([[a], [b]])
    assert isinstance(found, SequenceMoment) and isinstance(found, Moment)
    assert found.parts == (Part(12.0, 20.0, 0.31), Part(24.0, 28.0, 0.27))  # the parts' own scores
    assert (found.path, found.start, found.end, found.segments) == ("/videos/7.mp4", 12.0, 28.0, 3)
    assert found.moment_id == "7-12000-28000"
    assert best_per_video([found]) == [found]


def test_a_chain_of_three_parts_takes_the_best_path_through_the_middle():
    a, c = moment(1, 0, 4), moment(1, 100, 104)
    b_good, b_reachable = moment(1, 10, 14, 0.9), moment(1, 50, 54, 0.6)  # c is 86 s after b_good: too far
    others = [moment(v, 0, 4, 0.1) for v in (2, 3, 4)]  # the B candidates' median is 0.1
    (found,) = compose([[a], [b_good, b_reachable, *others], [c]])
    assert found.parts == (Part(0, 4, 0.5), Part(50, 54, 0.6), Part(100, 104, 0.5))
    calibrated = (1 + (0.6 - 0.1) / (0.9 - 0.1) + 1) / 3
    assert found.score == pytest.approx(calibrated - 0.1 * (46 + 46) / 2 / 60)
    assert compose([[a], [b_good, b_reachable], [moment(1, 5, 9)]]) == []  # C before B


def test_overlapping_chains_keep_the_best_and_k_counts_what_is_kept():
    parts = [[moment(1, 0, 4), moment(1, 100, 104), moment(1, 200, 204)],
             [moment(1, 4, 8, 0.9), moment(1, 8, 12, 0.5), moment(1, 104, 108, 0.8), moment(1, 210, 214, 0.7)]]
    found = compose(parts, k=None)
    assert spans(found) == [(1, 0, 8), (1, 100, 108), (1, 200, 214)]  # (0, 12) overlaps (0, 8) and is dropped
    assert spans(compose(parts, k=2)) == [(1, 0, 8), (1, 100, 108)]


@pytest.mark.parametrize("seed", range(5))
def test_the_best_chain_is_the_best_of_all_chains(seed):
    import itertools
    import random

    rng = random.Random(seed)
    parts = [[moment(rng.randrange(2), start, start + rng.choice([4, 8]), rng.random()) for start in rng.sample(range(0, 240, 2), 12)]
             for _ in range(3)]
    # the calibrated scores, worked out again: a part's 12 scores have the mean of the middle two as median
    median_best = [(sorted(m.score for m in part)[5:7], max(m.score for m in part)) for part in parts]

    def calibrated(i, m):
        (low, high), best = median_best[i]
        return min(max((m.score - (low + high) / 2) / (best - (low + high) / 2), 0), 1)

    def follows(before, after):
        return (after.video_id == before.video_id and after.start >= before.start and after.end > before.end
                and before.end - OVERLAP <= after.start <= before.end + MAX_GAP)

    scores = [sum(calibrated(i, m) for i, m in enumerate(chain)) / 3 - 0.1 * sum(max(q.start - p.end, 0) for p, q in
              zip(chain, chain[1:])) / 2 / MAX_GAP for chain in itertools.product(*parts)
              if all(follows(p, q) for p, q in zip(chain, chain[1:]))]
    found = compose(parts, k=None)
    assert bool(found) == bool(scores)
    if scores:
        assert found[0].score == pytest.approx(max(scores))
    assert all(follows(moment(m.video_id, p.start, p.end), moment(m.video_id, q.start, q.end))
               for m in found for p, q in zip(m.parts, m.parts[1:]))


def test_compose_needs_a_part_and_sane_limits():
    with pytest.raises(ValueError):
        compose([])
    with pytest.raises(ValueError):
        compose([[moment(1, 0, 4)]], max_gap=-1)


def test_later_parts_are_searched_only_where_the_earlier_ones_matched():
    calls = []
    found = {"a": [moment(1, 0, 4), moment(2, 0, 4), moment(3, 0, 4)], "b": [moment(2, 10, 14), moment(3, 10, 14)],
             "c": [moment(3, 20, 24)]}

    def moments_for(terms, video_ids):
        calls.append((terms[0].text, video_ids))
        return [m for m in found[terms[0].text] if video_ids is None or m.video_id in video_ids]

    parts = parse_sequence("a then b then c")
    assert gather_candidates(parts, moments_for) == [found["a"], found["b"], found["c"]]
    assert calls == [("a", None), ("b", [1, 2, 3]), ("c", [2, 3])]
    calls.clear()
    assert gather_candidates(parts, moments_for, video_ids=[1]) == [[found["a"][0]], [], []]
    assert calls == [("a", [1]), ("b", [1])]  # no video left for c: not searched
    (sequence,) = find_sequences(parts, moments_for)
    assert (sequence.video_id, sequence.start, sequence.end, len(sequence.parts)) == (3, 0, 24, 3)


def test_a_part_with_no_candidates_means_no_sequences():
    assert compose([[moment(1, 0, 4)], []]) == []
    assert find_sequences([[Term(1.0, text="a")], [Term(1.0, text="b")]], lambda terms, ids: []) == []
