"""The words of a query -> a safe FTS5 query -> the best matching transcript lines, with the matched terms marked."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .terms import Term

# A word as the FTS5 unicode61 tokenizer sees it; an inner ' or - keeps "don't" and "t-shirt" one piece, which FTS5
# reads as a phrase of its parts, so it matches only where they are written together.
_WORD = re.compile(r"\w+(?:['’-]\w+)*")
# Words too common to say anything about a line; dropped unless a term has nothing else.
STOP_WORDS = frozenset(
    "a an and are as at be but by for from has have i in is it its of on or that the this to was were will with".split())
# highlight() wraps matched terms in these private-use characters; they are stripped again to give offsets.
_OPEN, _CLOSE = "\ue000", "\ue001"


@dataclass(frozen=True)
class TextMatch:
    """A transcript line that matches a query: where it is, how well it matches (higher is better: -bm25), the
    whole line, the (begin, end) character offsets in it of the matched terms, and how much of the query it has
    (`coverage` in [0, 1], see `coverage`; fusion.py's default rule scores the text side by it)."""

    video_id: int
    path: str
    start: float
    end: float
    score: float
    line: str
    marks: tuple[tuple[int, int], ...]
    source: str
    language: str | None
    coverage: float = 1.0


def fts_query(terms: Iterable[Term]) -> str | None:
    """An FTS5 MATCH expression for the text terms, or None when they hold no word to look for.

    A line matches when it has any of the positive terms' words or quoted phrases (bm25 ranks lines with more of them
    higher, so weak speech recognition still matches in part) and none of the negative terms'. A weight counts only by
    its sign: FTS5 cannot weight one phrase above another. Every word and phrase is written as an FTS5 string, so no
    user text is ever read as FTS5 syntax.
    """
    terms = [t for t in terms if t.text is not None]
    positive = [unit for t in terms if t.weight > 0 for unit in _units(t.text)]
    negative = [unit for t in terms if t.weight < 0 for unit in _units(t.text)]
    if not positive:
        return None
    query = " OR ".join(dict.fromkeys(positive))
    return f"({query}) NOT ({' OR '.join(dict.fromkeys(negative))})" if negative else query


def _units(text: str) -> list[str]:
    """The FTS5 strings of one term: each "quoted phrase", and each other word but the stop words (kept when the
    term has nothing else). A quote with no closing one is ignored."""
    pieces = text.lower().split('"')
    quoted = [i % 2 == 1 and i + 1 < len(pieces) for i in range(len(pieces))]
    phrases = [" ".join(words) for piece, q in zip(pieces, quoted) if q and (words := _WORD.findall(piece))]
    words = [word for piece, q in zip(pieces, quoted) if not q for word in _WORD.findall(piece)]
    telling = [word for word in words if word not in STOP_WORDS]
    return [_fts_string(unit) for unit in phrases + (telling if telling or phrases else words)]


def _fts_string(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def search_text(db, terms: Iterable[Term], *, limit: int = 200, video_ids: Iterable[int] | None = None) -> list[TextMatch]:
    """The best `limit` transcript lines for the terms, best first, from videos that did not fail (and only those in
    `video_ids`, when given). `db` is a vidsearch.db.Database.

    Each line's `coverage` is the share of a query term's words and quoted phrases it has (see `coverage`), as FTS5
    matches them: each word or phrase is checked on its own with MATCH, so stemming counts ("onion" covers "onions"),
    and a phrase counts only where it is written as one.
    """
    terms = list(terms)
    query = fts_query(terms)
    video_ids = None if video_ids is None else [int(i) for i in video_ids]
    if query is None or video_ids == []:
        return []
    asked = [_units(t.text) for t in terms if t.text is not None and t.weight > 0]
    units = list(dict.fromkeys(unit for term in asked for unit in term))
    has = ", ".join("t.id IN (SELECT rowid FROM transcripts_fts WHERE transcripts_fts MATCH ?)" for _ in units)
    only = "" if video_ids is None else f" AND t.video_id IN ({','.join(map(str, video_ids))})"
    rows = db.db.execute(
        "SELECT t.video_id, v.path, t.start, t.end, -bm25(transcripts_fts), t.text, t.source, t.language, "
        f"highlight(transcripts_fts, 0, ?, ?), {has} FROM transcripts_fts "
        "JOIN transcripts t ON t.id = transcripts_fts.rowid "
        f"JOIN videos v ON v.id = t.video_id WHERE transcripts_fts MATCH ? AND v.status != 'failed'{only} "
        "ORDER BY bm25(transcripts_fts), v.path, t.start LIMIT ?", [_OPEN, _CLOSE, *units, query, int(limit)]).fetchall()
    return [TextMatch(video_id, path, start, end, score, line, _marks(highlighted, line), source, language,
                      coverage({unit for unit, hit in zip(units, found) if hit}, asked))
            for video_id, path, start, end, score, line, source, language, highlighted, *found in rows]


def coverage(found: set[str], asked: list[list[str]]) -> float:
    """How much of the query a line has, in [0, 1], from the FTS5 strings it matches (`found`) and each positive
    term's (`asked`, as `_units` gives them): the largest share of one term's distinct words and phrases. Per term,
    because the terms of a query can ask for different things: in `a red circle moving left + bakery opens early` the
    second is what is said and the first what is seen, and a line with all of the second covers the query."""
    return max((len(found.intersection(term)) / len(set(term)) for term in asked if term), default=0.0)


def _marks(highlighted: str, line: str) -> tuple[tuple[int, int], ...]:
    """The offsets in `line` of the spans highlight() wrapped; none if the line itself holds the marker characters."""
    marks, length, begin = [], 0, 0
    for piece in re.split(f"([{_OPEN}{_CLOSE}])", highlighted):
        if piece == _OPEN:
            begin = length
        elif piece == _CLOSE:
            marks.append((begin, length))
        else:
            length += len(piece)
    plain = highlighted.replace(_OPEN, "").replace(_CLOSE, "")
    return tuple(marks) if plain == line else ()
