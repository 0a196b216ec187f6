"""Merging segment hits into moments, and the Searcher's modes: the vectors, the transcripts, or both fused."""

import numpy as np
import pytest

from vidsearch.errors import UsageError
from vidsearch.search import Hit, merge_moments
from vidsearch.terms import parse_query


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


# --- Searcher modes on a hand-made index ------------------------------------------------------------------------------


@pytest.fixture
def index(tmp_path):
    """Three videos of five 4-s segments whose cosines to QUERY are chosen, and what is said in them:
    a.mp4 looks most like the query (0-4 s) and says nothing of it; b.mp4 looks like it at 16-20 s and says "chop
    the onions" at 17-18 s; c.mp4 looks like nothing and says "onions" at 5-6 s. Filler lines keep the words rare."""
    from vidsearch import registry
    from vidsearch.db import Segment, TextRow, VideoTextRecord
    from vidsearch.indexdir import IndexDir

    index = IndexDir(tmp_path / "index", create=True)
    dim = registry.embedding_dim(registry.resolve("tiny")[0])
    index.db.set_setting("model", {"spec": "tiny", "fingerprint": registry.fingerprint("tiny"), "name": "tiny", "dim": dim,
                                   "weights": None})
    index.db.set_setting("settings", {"fps": 1.0, "window": 32, "segment": 4.0})
    cosines = {"a": [0.9, 0.2, 0.1, 0.1, 0.1], "b": [0.1, 0.1, 0.1, 0.1, 0.5], "c": [0.0] * 5}
    said = {"a": [(2.0 * i, 2.0 * i + 1, f"filler line number {i} about nothing") for i in range(10)],
            "b": [(17.0, 18.0, "now we chop the onions")], "c": [(5.0, 6.0, "onions")]}
    for name in "abc":
        segments = [Segment("segment", 4.0 * i, 4.0 * i + 4, unit(dim, cosine)) for i, cosine in enumerate(cosines[name])]
        lines = [TextRow(start, end, text, "sidecar:x.srt", "en") for start, end, text in said[name]]
        index.db.save_video(path=f"/v/{name}.mp4", size=1, mtime=0.0, hash=name, duration=20.0, fps=1.0, frames=20,
                            segments=segments, text=VideoTextRecord(lines, [("sidecar:x.srt", "en", len(lines), None, None)], {}))
    return index


def unit(dim, cosine):
    """A unit vector at this cosine to QUERY (the first axis)."""
    vector = np.zeros(dim, np.float32)
    vector[0], vector[1] = cosine, np.sqrt(1 - cosine**2)
    return vector


@pytest.fixture
def searcher(index, monkeypatch):
    """A Searcher whose query vector is QUERY whatever the words: no model is loaded."""
    from vidsearch.search import Searcher

    dim = index.dim
    monkeypatch.setattr(Searcher, "query_vector", lambda self, terms: unit(dim, 1.0)[None])
    return Searcher(index, device="cpu")


@pytest.mark.parametrize("scale", ["segment", "window", "auto"])
def test_asking_for_fewer_hits_returns_the_first_of_the_same_ranking(tmp_path, monkeypatch, scale):
    """40 videos of 12 segments and 3 windows with random cosines: -k 1..9 give the first hits of -k 10, the same spans
    with the same scores (the candidates, which set the scores' spread and how far moments grow, do not shrink)."""
    from vidsearch import registry
    from vidsearch.db import Segment, VideoTextRecord
    from vidsearch.indexdir import IndexDir
    from vidsearch.search import Searcher

    index = IndexDir(tmp_path / "index", create=True)
    dim = registry.embedding_dim(registry.resolve("tiny")[0])
    index.db.set_setting("model", {"spec": "tiny", "fingerprint": registry.fingerprint("tiny"), "name": "tiny", "dim": dim,
                                   "weights": None})
    index.db.set_setting("settings", {"fps": 1.0, "window": 16, "segment": 4.0})
    rng = np.random.default_rng(0)
    for v in range(40):
        segments = [Segment("segment", 4.0 * i, 4.0 * i + 4, unit(dim, c)) for i, c in enumerate(rng.uniform(-0.2, 0.9, 12))]
        segments += [Segment("window", 16.0 * i, 16.0 * i + 16, unit(dim, c)) for i, c in enumerate(rng.uniform(-0.2, 0.9, 3))]
        index.db.save_video(path=f"/v/{v}.mp4", size=1, mtime=0.0, hash=str(v), duration=48.0, fps=1.0, frames=48,
                            segments=segments, text=VideoTextRecord([], [], {}))
    monkeypatch.setattr(Searcher, "query_vector", lambda self, terms: unit(dim, 1.0)[None])
    searcher = Searcher(index, device="cpu")

    def ranked(k):
        return [(m.path, m.start, m.end, round(m.score, 6)) for m in searcher.search(parse_query("x"), k=k, scale=scale,
                                                                                     mode="visual")]

    ten = ranked(10)
    assert len(ten) == 10
    for k in range(1, 10):
        assert ranked(k) == ten[:k], k


def found(moments):
    return [(m.path[3], m.start, m.end, m.text.line if m.text else None) for m in moments]


def test_visual_mode_is_the_vector_search_alone(searcher):
    moments = searcher.search(parse_query("onions"), k=2, mode="visual")
    assert found(moments) == [("a", 0.0, 4.0, None), ("b", 16.0, 20.0, None)]
    assert moments[0].score == pytest.approx(0.9) and moments[0].visual_score is None and moments[0].segments == 1


def test_speech_mode_ranks_lines_alone_without_loading_a_model_or_the_vectors(index, monkeypatch):
    from vidsearch.search import Searcher

    monkeypatch.setattr(Searcher, "query_vector", lambda self, terms: pytest.fail("speech mode encoded the query"))
    searcher = Searcher(index, device="cpu")
    moments = searcher.search(parse_query("onions"), k=5, mode="speech")
    assert found(moments) == [("c", 5.0, 6.0, "onions"), ("b", 17.0, 18.0, "now we chop the onions")]
    assert [m.score for m in moments] == [m.text_score for m in moments] and moments[0].text.marks == ((0, 6),)
    assert searcher._vectors is None and searcher._text_encoder is None and searcher._full_encoder is None


def test_both_ranks_moments_seen_and_said_above_those_only_seen(searcher):
    moments = searcher.search(parse_query("onions"), k=3, mode="both", rule="rrf")
    # b: 2nd seen, 2nd said. c: said best, and its flat segments (all candidates in so small an index) make one
    # poorly ranked visual moment, which it joins. a: seen best, says nothing.
    assert found(moments) == [("b", 16.0, 20.0, "now we chop the onions"), ("c", 0.0, 20.0, "onions"), ("a", 0.0, 4.0, None)]
    assert moments[0].visual_score == pytest.approx(0.5) and moments[0].text_score > 0 and moments[0].segments == 1
    assert found(searcher.search(parse_query("onions"), k=3, rule="rrf")) == found(moments)  # auto: the index has text
    # the default rule, the weighted sum leaning on text: b's and c's lines both say the whole query, and b also looks
    # like it; a, seen best but silent, comes last
    weighted = searcher.search(parse_query("onions"), k=3, mode="both")
    assert [m.path for m in weighted] == ["/v/b.mp4", "/v/c.mp4", "/v/a.mp4"]
    assert [m.text.coverage for m in weighted[:2]] == [1.0, 1.0]
    # with two words not said their lines have a third of the query (a ninth of the text side): a comes first
    assert [m.path for m in searcher.search(parse_query("onions garlic pepper"), k=3, mode="both")] == \
        ["/v/a.mp4", "/v/b.mp4", "/v/c.mp4"]


def test_min_score_floors_the_visual_side_only_and_paths_limit_both(searcher):
    moments = searcher.search(parse_query("onions"), k=3, mode="both", min_score=0.6, rule="rrf")
    # only a's moment is seen well enough; the lines stand alone, spanning themselves (a and c tie at 1/61: by path)
    assert found(moments) == [("a", 0.0, 4.0, None), ("c", 5.0, 6.0, "onions"), ("b", 17.0, 18.0, "now we chop the onions")]
    assert found(searcher.search(parse_query("onions"), k=9, mode="both", paths=["c.mp4"])) == [("c", 0.0, 20.0, "onions")]
    assert found(searcher.search(parse_query("onions"), k=9, mode="speech", paths=["*/b*"])) == [
        ("b", 17.0, 18.0, "now we chop the onions")]


def test_grouped_by_video_each_video_once(searcher):
    moments = searcher.search(parse_query("onions"), k=9, mode="both", group_by="video", rule="rrf")
    assert [m.path for m in moments] == ["/v/b.mp4", "/v/c.mp4", "/v/a.mp4"]


def test_modes_that_cannot_work_are_refused(searcher, index, tmp_path):
    with pytest.raises(UsageError, match="--mode must be one of"):
        searcher.search(parse_query("onions"), mode="loud")
    with pytest.raises(UsageError, match="give words"):
        searcher.search(parse_query("", [tmp_path / "x.jpg"]), mode="speech")
    index.db.db.execute("DELETE FROM transcripts")
    with pytest.raises(UsageError, match="no subtitles or transcripts"):
        searcher.search(parse_query("onions"), mode="speech")
    assert found(searcher.search(parse_query("onions"), k=1)) == [("a", 0.0, 4.0, None)]  # auto: visual


def test_the_text_encoder_gets_the_words_without_quotes(index):
    from vidsearch.search import Searcher

    class Words:
        def encode_text(self, texts):
            self.texts = texts
            return np.ones((len(texts), index.dim), np.float32)

    searcher, words = Searcher(index, device="cpu"), Words()
    searcher.encoder = lambda images: words
    searcher.query_vector(parse_query('"chopping  onions" knife + "" salt'))
    assert words.texts == ["chopping onions knife", "salt"]
