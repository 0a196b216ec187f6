"""Moment-retrieval metrics and the query file of eval-moments: pure logic, fast. Expected values are worked by hand."""

import json
from dataclasses import dataclass

import pytest

from vidsearch.errors import UsageError
from vidsearch.moment_eval import (
    HITS_USED,
    METRIC_KEYS,
    LabelledQuery,
    Span,
    average_precision,
    evaluate,
    metrics,
    read_queries,
    temporal_iou,
)

A, B = "/videos/a.mp4", "/videos/b.mp4"


@dataclass
class Hit:  # what search.Moment offers eval-moments: a path, a span and a score
    path: str
    start: float
    end: float
    score: float = 0.5


def a(start, end, score=0.5):
    return Hit(A, start, end, score)


def b(start, end, score=0.5):
    return Hit(B, start, end, score)


def write_lines(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_temporal_iou_edges():
    assert temporal_iou(a(2, 6), a(2, 6)) == 1.0                  # identical
    assert temporal_iou(a(0, 4), a(4, 8)) == 0.0                  # touching: no overlap
    assert temporal_iou(a(0, 4), a(5, 8)) == 0.0                  # disjoint
    assert temporal_iou(a(0, 4), b(0, 4)) == 0.0                  # same times, another video
    assert temporal_iou(a(0, 10), a(2, 4)) == pytest.approx(0.2)  # contained: 2 / 10
    assert temporal_iou(a(0, 4), a(2, 6)) == pytest.approx(1 / 3)  # inter 2, union 6
    assert temporal_iou(a(2, 6), a(0, 4)) == temporal_iou(a(0, 4), a(2, 6))
    assert temporal_iou(a(3, 3), a(3, 3)) == 0.0                  # empty spans: no 0/0
    assert temporal_iou(a(3, 3), a(0, 6)) == 0.0
    assert temporal_iou(Span(A, 0, 4), a(0, 4)) == 1.0            # a correct span against a hit


# Five queries, hits best first; IoUs against the correct spans worked out beside each hit.
EXAMPLE_TRUTHS = [
    [Span(A, 0, 10), Span(B, 20, 30)],        # q1: two correct spans, in different videos
    [Span(A, 20, 30), Span(A, 40, 50)],       # q2: two correct spans in one video
    [Span(A, 0, 5)],                          # q3
    [Span(B, 0, 4)],                          # q4
    [Span(A, 60, 70)],                        # q5
]
EXAMPLE_HITS = [
    [b(0, 10, 0.9),    # wrong video (a's correct times): IoU 0, false positive
     a(0, 8, 0.8),     # a[0,10]: 8/10 = 0.8, TP at 0.5 and 0.75
     a(1, 9, 0.7),     # a[0,10] again (0.8) but already matched: false positive
     b(20, 26, 0.6)],  # b[20,30]: 6/10 = 0.6, TP at 0.5 only
    [b(50, 60, 0.5),   # tie with the next, given first: wrong video, IoU 0
     a(20, 30, 0.5),   # a[20,30]: 1.0
     a(40, 45, 0.4)],  # a[40,50]: 5/10 = 0.5 exactly, TP at 0.5 (>=), not at 0.75
    [],                # q3: no hits at all
    [b(1, 4)],         # one hit, fewer than K = 5: b[0,4]: 3/4 = 0.75 exactly, TP at 0.75 (>=)
    [a(60, 66),        # a[60,70]: 6/10 = 0.6
     a(70, 80)],       # touches a[60,70]: IoU 0
]


def test_metrics_on_a_fixed_example():
    # Per query (R@1@.5, R@1@.7, R@5@.5, R@5@.7, AP@.5, AP@.75, top IoU):
    # q1: top IoU 0 -> R@1 0, 0; best of top 5 is 0.8 -> R@5 1, 1.
    #     AP@.5: F T F T, 2 spans; precision 0, 1/2, 1/3, 2/4; interpolated at the TPs: rank 2 max(1/2, 1/3, 1/2) = 1/2,
    #     rank 4 1/2 -> (1/2 + 1/2) / 2 = 1/2.   AP@.75: F T F F -> (1/2) / 2 = 1/4.
    # q2: top IoU 0 (the tie keeps the given order) -> R@1 0, 0; top 5 has 1.0 -> R@5 1, 1.
    #     AP@.5: F T T; precision 0, 1/2, 2/3; interpolated: rank 2 -> 2/3 (a later rank is better), rank 3 -> 2/3
    #     -> (2/3 + 2/3) / 2 = 2/3 (the uninterpolated AP would be (1/2 + 2/3) / 2 = 7/12).   AP@.75: F T F -> 1/4.
    # q3: no hits -> all 0.
    # q4: 0.75 -> R@1 1, 1; R@5 1, 1; AP@.5 = AP@.75 = 1; top IoU 0.75.
    # q5: 0.6 then 0 -> R@1 1, 0; R@5 1, 0; AP@.5: T F -> 1/1 = 1; AP@.75: 0; top IoU 0.6.
    expected = {
        "R@1@0.5": 2 / 5,                                 # q4, q5
        "R@1@0.7": 1 / 5,                                 # q4
        "R@5@0.5": 4 / 5,                                 # q1, q2, q4, q5
        "R@5@0.7": 3 / 5,                                 # q1, q2, q4
        "mAP@0.5": (1 / 2 + 2 / 3 + 0 + 1 + 1) / 5,       # = 19/30
        "mAP@0.75": (1 / 4 + 1 / 4 + 0 + 1 + 0) / 5,      # = 0.3
        "mIoU": (0 + 0 + 0 + 0.75 + 0.6) / 5,             # = 0.27
    }
    got = metrics(EXAMPLE_HITS, EXAMPLE_TRUTHS)
    assert tuple(got) == METRIC_KEYS
    assert got == pytest.approx(expected)


def test_ties_keep_the_given_order():
    truth = [[Span(A, 20, 30)]]
    right, wrong = a(20, 30, 0.5), b(50, 60, 0.5)  # equal scores; sorting by path would put `right` (a.mp4) first
    assert metrics([[wrong, right]], truth)["R@1@0.5"] == 0.0
    assert metrics([[right, wrong]], truth)["R@1@0.5"] == 1.0
    # AP: F T -> 1/2 against T F -> 1
    assert metrics([[wrong, right]], truth)["mAP@0.5"] == pytest.approx(0.5)
    assert metrics([[right, wrong]], truth)["mAP@0.5"] == pytest.approx(1.0)


def test_thresholds_are_inclusive():
    truth = [[Span(A, 0, 10)]]
    at_07 = metrics([[a(0, 7)]], truth)  # 7/10 = 0.7 exactly (a correctly rounded 7.0 / 10.0 is the literal 0.7)
    assert at_07["R@1@0.7"] == at_07["R@5@0.7"] == 1.0 and at_07["mAP@0.75"] == 0.0
    at_05 = metrics([[a(0, 5)]], truth)  # 5/10 = 0.5
    assert at_05["R@1@0.5"] == at_05["R@5@0.5"] == at_05["mAP@0.5"] == 1.0 and at_05["R@1@0.7"] == 0.0
    assert metrics([[a(0, 4.99)]], truth)["R@1@0.5"] == 0.0  # just under


def test_a_hit_matches_the_unmatched_span_it_overlaps_most():
    truths = [Span(A, 2, 12), Span(A, 0, 10)]
    # hit 1 a[1,10]: with a[2,12] inter 8 / union 11 = 0.727, with a[0,10] 9/10 = 0.9 -> takes a[0,10].
    # hit 2 a[4,14]: with a[2,12] 8/12 = 0.667, with a[0,10] 6/14 = 0.43 -> takes a[2,12] at 0.5.
    hits = [a(1, 10), a(4, 14)]
    assert average_precision(hits, truths, 0.5) == pytest.approx(1.0)  # T T; taking the first listed span would give T F = 1/2
    assert average_precision(hits, truths, 0.75) == pytest.approx(0.5)  # T (0.9) F (0.667 < 0.75): (1/1) / 2
    # Equal IoUs go to the span listed first: a[2,5] has 2/4 = 0.5 with both a[1,4] and a[3,6] and takes a[1,4], so
    # a[3,6] (1.0 with a[3,6], 1/5 with a[1,4]) finds a[3,6] free: T T = 1. Taking a[3,6] first would give T F = 1/2.
    assert average_precision([a(2, 5), a(3, 6)], [Span(A, 1, 4), Span(A, 3, 6)], 0.5) == pytest.approx(1.0)


def test_recall_looks_at_five_hits_and_ap_at_ten():
    truth = [Span(A, 0, 10)]
    misses = [b(i, i + 1) for i in range(10)]
    sixth = misses[:5] + [a(0, 10)]
    got = metrics([sixth], [truth])
    assert got["R@5@0.5"] == 0.0 and got["R@1@0.5"] == 0.0 and got["mIoU"] == 0.0
    assert got["mAP@0.5"] == pytest.approx(1 / 6)  # the only TP at rank 6: precision 1/6, one span
    assert metrics([misses + [a(0, 10)]], [truth])["mAP@0.5"] == 0.0  # rank 11: past the 10 QVHighlights keeps
    assert HITS_USED == 10


def test_metrics_needs_queries_and_one_hit_list_each():
    with pytest.raises(ValueError, match="no queries"):
        metrics([], [])
    with pytest.raises(ValueError, match="hit lists"):
        metrics([[]], [])


def test_read_queries_groups_spans_and_resolves_paths(tmp_path, monkeypatch):
    folder = tmp_path / "set"
    folder.mkdir()
    write_lines(folder / "queries.jsonl", [
        {"query": "a red square", "video": "v/a.mp4", "start": 0, "end": 4, "kind": "single"},
        {"query": "a blue circle", "video": "/elsewhere/c.mp4", "start": 2, "end": 6.5},
        {"query": " a red square ", "video": "v/b.mp4", "start": 8, "end": 12, "kind": "single"},  # same query, other video
        "",
        {"query": "a red square", "video": "v/a.mp4", "start": 0, "end": 4, "kind": "appearance"},  # another kind: another query
    ])
    monkeypatch.chdir(tmp_path)
    queries, problems = read_queries("set/queries.jsonl")  # a relative file name still gives absolute video paths
    assert problems == []
    videos = folder / "v"
    assert queries == [
        LabelledQuery("a red square", "single", (Span(str(videos / "a.mp4"), 0.0, 4.0), Span(str(videos / "b.mp4"), 8.0, 12.0)), (1, 3)),
        LabelledQuery("a blue circle", None, (Span("/elsewhere/c.mp4", 2.0, 6.5),), (2,)),
        LabelledQuery("a red square", "appearance", (Span(str(videos / "a.mp4"), 0.0, 4.0),), (5,)),
    ]


def test_read_queries_reports_bad_lines_with_their_numbers(tmp_path):
    path = write_lines(tmp_path / "queries.jsonl", [
        {"query": "fine", "video": "a.mp4", "start": 0, "end": 4},
        "{not json",
        {"video": "a.mp4", "start": 0, "end": 4},
        {"query": "no span", "video": "a.mp4"},
        {"query": "backwards", "video": "a.mp4", "start": 5, "end": 2},
        {"query": "empty span", "video": "a.mp4", "start": 3, "end": 3},
        {"query": "   ", "video": "a.mp4", "start": 0, "end": 4},
        {"query": "bad number", "video": "a.mp4", "start": "soon", "end": 4},
        [1, 2],
        {"query": "fine", "video": "a.mp4", "start": 0, "end": 4},  # repeats line 1
        {"query": "odd kind", "video": "a.mp4", "start": 0, "end": 4, "kind": 3},
    ])
    queries, problems = read_queries(path)
    assert [(q.text, q.lines) for q in queries] == [("fine", (1,))]
    found = {p.line: p.reason for p in problems}
    assert set(found) == {2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
    assert "JSON" in found[2] and found[3] == "missing key: query" and found[4] == "missing keys: start, end"
    assert "after start" in found[5] and "after start" in found[6] and "empty query" in found[7]
    assert "number" in found[8] and "JSON object" in found[9] and "line 1" in found[10] and "kind" in found[11]
    assert all(str(p).startswith(f"{path}:{p.line}: ") for p in problems)


def test_read_queries_unreadable_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot read queries"):
        read_queries(tmp_path / "missing.jsonl")


def test_evaluate_searches_each_text_once_and_splits_by_kind():
    red_single = LabelledQuery("red square", "single", (Span(A, 0, 10), Span(B, 0, 10)), (1, 2))
    sequence = LabelledQuery("red then blue", "sequence", (Span(A, 0, 20),), (3,))
    no_kind = LabelledQuery("blue circle", None, (Span(B, 10, 20),), (4,))
    red_appearance = LabelledQuery("red square", "appearance", (Span(A, 0, 10),), (5,))
    answers = {"red square": [a(0, 10)], "red then blue": [a(0, 8)], "blue circle": [b(10, 20)]}
    calls = []

    def search(text):
        calls.append(text)
        return answers[text]

    got = evaluate([red_single, sequence, no_kind, red_appearance], search)
    assert sorted(calls) == ["blue circle", "red square", "red then blue"]  # "red square" once for both kinds
    # red/single: IoU 1 with a[0,10] -> every R 1; AP: T with 2 spans = 1/2 at both thresholds; top IoU 1.
    # sequence: a[0,8] against a[0,20]: 8/20 = 0.4 -> every R 0, AP 0; top IoU 0.4.
    # no kind and red/appearance: IoU 1 with their only span -> everything 1.
    ones = dict.fromkeys(METRIC_KEYS, 1.0)
    assert got["queries"] == 4
    assert got["all"] == pytest.approx({
        **dict.fromkeys(("R@1@0.5", "R@1@0.7", "R@5@0.5", "R@5@0.7"), 3 / 4),
        "mAP@0.5": (1 / 2 + 0 + 1 + 1) / 4, "mAP@0.75": (1 / 2 + 0 + 1 + 1) / 4,  # 0.625
        "mIoU": (1 + 0.4 + 1 + 1) / 4,                                               # 0.85
    })
    assert list(got["by_kind"]) == ["appearance", "sequence", "single"]  # only kinds present; no None
    assert got["by_kind"]["appearance"] == pytest.approx(ones)
    assert got["by_kind"]["single"] == pytest.approx({**ones, "mAP@0.5": 0.5, "mAP@0.75": 0.5})
    assert got["by_kind"]["sequence"] == pytest.approx({**dict.fromkeys(METRIC_KEYS, 0.0), "mIoU": 0.4})


def test_evaluate_needs_queries():
    with pytest.raises(UsageError):
        evaluate([], lambda text: [])
