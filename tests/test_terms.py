"""Pure query logic: combined-term parsing, path globs, grouping, and id-restricted vector search."""

from pathlib import Path

import numpy as np
import pytest

from vidsearch.errors import UsageError
from vidsearch.search import Hit, best_per_video, merge_moments, select_paths
from vidsearch.store import VectorStore
from vidsearch.terms import Term, parse_query, parse_sequence


def test_weights_and_signs_as_rclip_spells_them():
    assert parse_query("2:dog on a beach + sunset - people") == [
        Term(2.0, text="dog on a beach"), Term(1.0, text="sunset"), Term(-1.0, text="people")]
    assert parse_query("0.5:cat - 1.5:grass") == [Term(0.5, text="cat"), Term(-1.5, text="grass")]


def test_operators_inside_words_are_words():
    assert parse_query("t-shirt on a +44 phone") == [Term(1.0, text="t-shirt on a +44 phone")]
    assert parse_query("the 2:1 score") == [Term(1.0, text="the 2:1 score")]  # a weight prefix only at the start


def test_images_join_the_terms():
    assert parse_query("- people", [Path("beach.jpg")]) == [Term(-1.0, text="people"), Term(1.0, image=Path("beach.jpg"))]
    assert parse_query("", [Path("a.png")]) == [Term(1.0, image=Path("a.png"))]


@pytest.mark.parametrize("bad, said", [
    ("", "empty"), ("   ", "empty"), ("dog -", "no term after"), ("dog + - cat", "no term after"),
    ("- cat", "only negative"), ("0:cat", "weight 0"), ("2:", "no words"),
])
def test_malformed_queries_are_usage_errors(bad, said):
    with pytest.raises(UsageError, match=said):
        parse_query(bad)


def test_path_globs_match_the_path_the_path_from_here_or_the_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = str(tmp_path / "holidays" / "beach.mp4")

    def matches(patterns):
        return select_paths([path], patterns) == [path]

    assert matches(["*/holidays/*"])
    assert matches(["holidays/*.mp4"])  # relative to the current folder
    assert matches(["beach.*"])
    assert matches(["nope*", "*.mp4"])  # any of several
    assert not matches(["*.mkv"]) and not matches(["Beach.mp4"])  # case counts


def test_a_path_naming_an_indexed_file_or_folder_matches_it_literally(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    odd = str(tmp_path / "vids [1]" / "ünïcødé [1] name.mkv")
    other = str(tmp_path / "vids [1]" / "ünïcødé 1 name.mkv")  # what the glob class [1] would match
    paths = [odd, other, str(tmp_path / "elsewhere.mp4")]
    assert select_paths(paths, [odd]) == [odd]
    assert select_paths(paths, ["vids [1]/ünïcødé [1] name.mkv"]) == [odd]  # relative to here
    assert select_paths(paths, [str(tmp_path / "vids [1]")]) == [odd, other]  # a folder: everything under it
    assert select_paths(paths, ["*/ünïcødé [1] name.mkv"]) == [other]  # not a path: a glob, [1] a class


def test_grouping_by_video_keeps_each_videos_best_moment():
    hits = [Hit(1, "a", 0, 4, 0.9), Hit(1, "a", 20, 24, 0.8), Hit(2, "b", 0, 4, 0.7), Hit(2, "b", 30, 34, 0.6)]
    moments = merge_moments(hits, margin=0.05)
    assert len(moments) == 4
    best = best_per_video(moments)
    assert [(m.path, m.start, m.score) for m in best] == [("a", 0, 0.9), ("b", 0, 0.7)]


def test_moment_ids_name_the_video_and_span():
    (moment,) = merge_moments([Hit(7, "a", 12.0, 16.0, 0.5), Hit(7, "a", 16.0, 20.0, 0.5)])
    assert moment.moment_id == "7-12000-20000" and moment.segments == 2


@pytest.mark.parametrize("ivf", [False, True])
def test_search_can_be_restricted_to_some_ids(ivf):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(2000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(2000, dtype=np.int64) * 3 + 1
    store = VectorStore.build_ivf(ids, vectors, 16, nlist=8) if ivf else VectorStore.build(ids, vectors, 16)
    allowed = ids[500:600]
    scores, found = store.search(vectors[:1], 10, only=allowed)
    assert set(found[0].tolist()) <= set(allowed.tolist()) and len(found[0]) == 10
    exact = np.sort(vectors[500:600] @ vectors[0])[::-1][:10]
    if not ivf:  # exact search: the best ten of the allowed ones, in order
        np.testing.assert_allclose(scores[0], exact, rtol=1e-5)
    assert store.search(vectors[:1], 10, only=np.zeros(0, np.int64))[1].shape == (1, 0)


@pytest.mark.parametrize("query", [
    "a red square then a blue circle", "a red square, then a blue circle", "a red square,then a blue circle",
    "a red square followed by a blue circle", "a red square, followed  by a blue circle", "a red square -> a blue circle",
    "a red square->a blue circle", "A Red Square THEN a blue circle", "a red square Followed By a blue circle",
])
def test_a_sequence_splits_on_each_separator(query):
    parts = parse_sequence(query)
    assert [[term.text.lower() for term in part] for part in parts] == [["a red square"], ["a blue circle"]]


def test_terms_and_weights_work_inside_each_part():
    assert parse_sequence("2:dog + sun - people then cat - grass -> 0.5:bird") == [
        [Term(2.0, text="dog"), Term(1.0, text="sun"), Term(-1.0, text="people")],
        [Term(1.0, text="cat"), Term(-1.0, text="grass")],
        [Term(0.5, text="bird")],
    ]


def test_a_quoted_separator_is_words():
    assert parse_sequence('"and then some"') == [[Term(1.0, text='"and then some"')]]
    assert parse_sequence('he said "then" -> "A followed by B" later') == [
        [Term(1.0, text='he said "then"')], [Term(1.0, text='"A followed by B" later')]]
    assert parse_sequence('"a -> b" then c') == [[Term(1.0, text='"a -> b"')], [Term(1.0, text="c")]]
    # unquoted, the grammar is literal: "and then some" is a sequence of "and" and "some"
    assert parse_sequence("and then some") == [[Term(1.0, text="and")], [Term(1.0, text="some")]]
    # a quote with no closing one quotes nothing, as in the search of what is said
    assert parse_sequence('he said "so then it') == [[Term(1.0, text='he said "so')], [Term(1.0, text="it")]]


@pytest.mark.parametrize("query", ["thence the authentic then-some", "t-shirt on a +44 phone", "2:dog on a beach + sunset - people",
                                   "the 2:1 score", '"quoted" words', "dog - people"])
def test_an_ordinary_query_is_one_part_as_parse_query_gives_it(query):
    assert parse_sequence(query) == [parse_query(query)]
    assert parse_sequence(query, [Path("beach.jpg")]) == [parse_query(query, [Path("beach.jpg")])]


@pytest.mark.parametrize("bad, said", [
    ("then a blue circle", "nothing before 'then'"), ("a red square then", "nothing after 'then'"),
    ("a then then b", "nothing between 'then' and 'then'"), ("a ->  , then b", "nothing between '->' and ', then'"),
    ("-> b", "nothing before '->'"), ("then", "nothing before 'then'"), ("a followed by", "nothing after 'followed by'"),
    ("a then - people", r"part 2 of 'a then - people': query '- people' has only negative terms"),
    ("a then 0:b", "part 2 .* weight 0"), ("a + then b", "part 1 .* no term after"),
])
def test_malformed_sequences_are_one_line_usage_errors(bad, said):
    with pytest.raises(UsageError, match=said) as raised:
        parse_sequence(bad)
    assert "\n" not in str(raised.value)


def test_images_are_refused_in_a_sequence():
    with pytest.raises(UsageError, match="--image cannot be placed"):
        parse_sequence("a then b", [Path("a.png")])
