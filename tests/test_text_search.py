"""Searching what is said: the query's words as a safe FTS5 query, phrases, stemming, exclusions and marked terms."""

import re

import pytest

from vidsearch.db import Database, TextRow, VideoTextRecord
from vidsearch.terms import Term, parse_query
from vidsearch.text_search import fts_query, search_text

FILLER = ["music plays softly", "hello and welcome back", "let me show you", "that is all for today", "thanks for watching",
          "see you next time", "a quick word from our sponsor", "the weather is nice", "pass me the salt", "ready to start"]


def add_video(db, path, lines, source="sidecar:talk.srt"):
    """Index `path` with no segments and these (start, end, text) lines."""
    text = VideoTextRecord([TextRow(start, end, words, source, "en") for start, end, words in lines],
                           [(source, "en", len(lines), None, None)], {})
    db.save_video(path=path, size=1, mtime=0.0, hash=path, duration=60.0, fps=1.0, frames=60, segments=[], text=text)
    return db.video(path)["id"]


@pytest.fixture
def db(tmp_path):
    db = Database(tmp_path / "vidsearch.db")
    add_video(db, "/v/cook.mp4", [(1.0, 3.0, "We are chopping onions with a knife"), (4.0, 6.0, "onions, chopping them fast"),
                                  (7.0, 9.0, "Don't forget the t-shirt, people!")])
    add_video(db, "/v/soup.mp4", [(0.0, 2.0, "Chopped the onion for the soup"), (2.0, 4.0, "people love onion soup")])
    add_video(db, "/v/other.mp4", [(2.0 * i, 2.0 * i + 1, words) for i, words in enumerate(FILLER)])  # makes words rare
    yield db
    db.close()


def lines(matches):
    return [m.line for m in matches]


def words(text, weight=1.0):
    return [Term(weight, text=text)]


HOSTILE = ['"', '""', '"""', "'", "(", ")", "())(", '"chopping', 'onions"', "NEAR(chopping onions, 2)", "NEAR", "*", "onion*",
           "^onions", "text:onions", "text : onions", "{text}: onions", "AND", "OR", "NOT", "onions AND", "OR onions NOT",
           "- -", "+", "😀", "🧅 onions 🔪", "", "   ", "\x00", "\\", "%_", "col:", "a:b:c", '"a" "" "b"', "'; DROP TABLE x; --",
           "ünïcödé wörds", "日本語のテキスト", "t-shirt", "don't", "don’t", "_", "1.5", "-1", "--", "+onions", "(*)^:\"NEAR\""]


@pytest.mark.parametrize("text", HOSTILE)
def test_no_user_text_makes_fts5_fail(db, text):
    for terms in (words(text), [Term(1.0, text="onions"), Term(-1.0, text=text)], words(f'"{text}" onions')):
        query = fts_query(terms)
        if query is not None:  # only FTS5 strings, joined by OR / NOT and grouped: nothing of the user's is syntax
            assert re.fullmatch(r"(?:[() ]|OR|NOT)*", re.sub(r'"(?:[^"]|"")*"', "", query))
        search_text(db, terms)  # never raises


def test_nothing_to_match_gives_none_and_no_lines(db, tmp_path):
    for terms in (words("?!... --"), words("😀"), [Term(1.0, image=tmp_path / "x.jpg")], words('""')):
        assert fts_query(terms) is None and search_text(db, terms) == []


def test_a_quoted_phrase_matches_only_as_written(db):
    assert lines(search_text(db, words('"chopping onions"'))) == ["We are chopping onions with a knife"]
    assert lines(search_text(db, words('"onions chopping"'))) == ["onions, chopping them fast"]  # across the comma
    assert lines(search_text(db, words('"the onion"'))) == ["Chopped the onion for the soup"]  # stop words kept in a phrase


def test_unquoted_words_match_any_and_lines_with_more_of_them_rank_first(db):
    found = lines(search_text(db, words("chopping knife")))
    assert found[0] == "We are chopping onions with a knife"
    assert set(found) == {"We are chopping onions with a knife", "onions, chopping them fast", "Chopped the onion for the soup"}


def test_porter_stemming_finds_other_forms(db):
    assert set(lines(search_text(db, words("onion")))) == {"We are chopping onions with a knife", "onions, chopping them fast",
                                                            "Chopped the onion for the soup", "people love onion soup"}
    assert "Chopped the onion for the soup" in lines(search_text(db, words("chop")))


def test_stop_words_are_dropped_unless_a_term_has_nothing_else():
    assert fts_query(words("the onion of the day")) == '"onion" OR "day"'
    assert fts_query(words("The The")) == '"the"'
    assert fts_query(words('"the onion" of')) == '"the onion"'
    assert fts_query(words('say "don\'t" t-shirt')) == '"don\'t" OR "say" OR "t-shirt"'


def test_negative_terms_exclude_the_lines_that_say_them(db):
    terms = parse_query("onions - people")
    assert fts_query(terms) == '("onions") NOT ("people")'
    assert "people love onion soup" not in lines(search_text(db, terms)) and len(search_text(db, terms)) == 3
    assert lines(search_text(db, parse_query("onions - knife - soup"))) == ["onions, chopping them fast"]


def test_marks_are_offsets_of_the_matched_terms_in_the_unchanged_line(db):
    (match,) = search_text(db, parse_query('"chopping onions" knife - people'))
    assert match.line == "We are chopping onions with a knife" and (match.start, match.end) == (1.0, 3.0)
    assert [match.line[b:e] for b, e in match.marks] == ["chopping onions", "knife"]
    (shirt,) = search_text(db, words("T-Shirt"))
    assert [shirt.line[b:e] for b, e in shirt.marks] == ["t-shirt"] and shirt.source == "sidecar:talk.srt"
    assert shirt.path == "/v/cook.mp4" and shirt.language == "en" and shirt.score > 0


def test_a_line_holding_the_marker_characters_is_returned_unchanged_without_marks(db):
    add_video(db, "/v/odd.mp4", [(0.0, 1.0, "odd \ue000marker\ue001 garlic")])
    (match,) = search_text(db, words("garlic"))
    assert match.line == "odd \ue000marker\ue001 garlic" and match.marks == ()


def test_best_first_limited_to_videos_and_never_from_failed_ones(db):
    found = search_text(db, words("onion soup"))
    assert [m.score for m in found] == sorted((m.score for m in found), reverse=True)
    assert len(search_text(db, words("onion"), limit=2)) == 2
    soup = db.video("/v/soup.mp4")["id"]
    assert {m.path for m in search_text(db, words("onion"), video_ids=[soup])} == {"/v/soup.mp4"}
    assert search_text(db, words("onion"), video_ids=[]) == []
    db.db.execute("UPDATE videos SET status = 'failed' WHERE id = ?", [soup])
    assert {m.path for m in search_text(db, words("onion"))} == {"/v/cook.mp4"}


def coverage(db, query):
    return {m.line: m.coverage for m in search_text(db, parse_query(query))}


def test_coverage_is_the_share_of_the_query_words_a_line_has_after_stemming(db):
    assert coverage(db, "onion knife soup people") == {
        "people love onion soup": 0.75, "We are chopping onions with a knife": 0.5, "Chopped the onion for the soup": 0.5,
        "Don't forget the t-shirt, people!": 0.25, "onions, chopping them fast": 0.25}
    assert coverage(db, "onion")["onions, chopping them fast"] == 1.0  # onion covers onions, as FTS5 matches it
    assert set(coverage(db, "onion onions").values()) == {1.0}  # both stem to onion
    assert coverage(db, "the onion of the day")["people love onion soup"] == 0.5  # stop words do not count
    assert coverage(db, "t-shirt don't") == {"Don't forget the t-shirt, people!": 1.0}


def test_a_quoted_phrase_is_one_part_of_the_query_and_covered_only_as_written(db):
    assert coverage(db, '"onions chopping" knife') == {"onions, chopping them fast": 0.5, "We are chopping onions with a knife": 0.5}
    assert coverage(db, '"chopping onions" knife') == {"We are chopping onions with a knife": 1.0}


def test_coverage_is_the_best_share_of_one_term_and_negative_terms_do_not_count(db):
    # in "caption + spoken words" a line with all the spoken words covers the query
    assert coverage(db, "chopping knife + soup people") == {
        "people love onion soup": 1.0, "We are chopping onions with a knife": 1.0, "Chopped the onion for the soup": 0.5,
        "Don't forget the t-shirt, people!": 0.5, "onions, chopping them fast": 0.5}
    assert coverage(db, "onion soup - knife") == {"people love onion soup": 1.0, "Chopped the onion for the soup": 1.0,
                                                  "onions, chopping them fast": 0.5}
