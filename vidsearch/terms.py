"""Parse a combined query such as `"2:dog on a beach" + sunset - people` into weighted text and image terms, and a
sequence query such as `a red square then a blue circle` into its ordered parts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

# An operator is a lone + or - between spaces (or at the start), so "t-shirt" and "+44" stay words.
_OPERATOR = re.compile(r"(?:^|\s)([+-])(?=\s|$)")
_WEIGHT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*:(.*)$", re.DOTALL)
# A sequence separator: the whole words "then" or "followed by" (a comma before them is part of the separator), or
# "->" anywhere. Whole words are bounded by spaces, the ends or that comma, so "then-some" and "thence" stay words;
# "->" is the explicit form and no word contains it, so "red->blue" splits too.
_THEN = re.compile(r"\s*,?\s*(?<![^\s,])(?:then|followed\s+by)(?!\S)\s*|\s*->\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Term:
    """One part of a query: a text or an example image, with a signed weight."""

    weight: float
    text: str | None = None
    image: Path | None = None


def parse_query(text: str, images: list[Path] = ()) -> list[Term]:
    """Split `text` on lone `+`/`-` into terms; a leading `W:` gives a term weight W (default 1).

    Each `--image` path adds a term of weight 1. At least one term must be positive: the
    query vector is the normalised weighted sum, and a purely negative one finds nothing useful.
    """
    pieces = _OPERATOR.split(text)  # term, operator, term, operator, term ...
    signs = [1.0] + [1.0 if operator == "+" else -1.0 for operator in pieces[1::2]]
    terms: list[Term] = []
    for position, (sign, part) in enumerate(zip(signs, pieces[::2])):
        if part.strip():
            terms.append(_term(part, sign))
        elif position > 0:
            raise UsageError(f"query {text!r}: a + or - with no term after it")
    terms += [Term(1.0, image=Path(image)) for image in images]
    if not terms:
        raise UsageError('the query is empty; say what to look for, e.g. vidsearch query "chopping onions"')
    if not any(term.weight > 0 for term in terms):
        raise UsageError(f"query {text!r} has only negative terms; add something to look for")
    return terms


def _term(part: str, sign: float) -> Term:
    weighted = _WEIGHT.match(part)
    weight, words = (float(weighted.group(1)), weighted.group(2)) if weighted else (1.0, part)
    words = words.strip()
    if not words:
        raise UsageError(f"query term {part.strip()!r} has a weight but no words")
    if weight == 0:
        raise UsageError(f"query term {part.strip()!r} has weight 0; drop it or give it a positive weight")
    return Term(sign * weight, text=words)


def parse_sequence(text: str, images: list[Path] = ()) -> list[list[Term]]:
    """Split `text` into ordered parts on the words `then`, `, then` or `followed by` (any case) or on `->`, and parse
    each part as `parse_query` does, so `+`, `-` and `W:` work inside each part and bind tighter than the order.

    A query without a separator is one part, exactly `parse_query(text, images)`. The grammar is the literal one:
    `and then some` is a sequence of "and" and "some"; a separator inside a closed double-quoted phrase is words, so
    `"and then some"` stays one literal (and, in what is said, exact) phrase. A quote with no closing one is ignored,
    as the search of what is said ignores it. `--image` terms are refused in a sequence: nothing says which part an
    image belongs to, and guessing (say, the last) would silently search something else than was meant.
    """
    quoted = _quoted_spans(text)
    cuts = [m for m in _THEN.finditer(text) if not any(m.start() < end and m.end() > begin for begin, end in quoted)]
    if not cuts:
        return [parse_query(text, images)]
    if images:
        raise UsageError(f"query {text!r} is a sequence (A then B): --image cannot be placed in it; "
                         "drop --image, or quote the separator to search the words alone")
    bounds = [0] + [i for cut in cuts for i in cut.span()] + [len(text)]
    pieces = [text[begin:end] for begin, end in zip(bounds[::2], bounds[1::2])]
    parts = []
    separators = [None] + [" ".join(cut.group().split()) for cut in cuts] + [None]
    for number, piece in enumerate(pieces, 1):
        if not piece.strip():
            before, after = separators[number - 1], separators[number]
            where = (f"between {before!r} and {after!r}" if before and after
                     else f"before {after!r}" if after else f"after {before!r}")
            raise UsageError(f"query {text!r} has nothing {where}: each part of a sequence says what to look for "
                             '("a red square then a blue circle"); quote a separator to search it as words')
        try:
            parts.append(parse_query(piece))
        except UsageError as error:
            raise UsageError(f"part {number} of {text!r}: {error}") from None
    return parts


def _quoted_spans(text: str) -> list[tuple[int, int]]:
    """(opening, closing) positions of each closed double-quoted phrase; a last quote with no partner quotes nothing."""
    quotes = [i for i, char in enumerate(text) if char == '"']
    return list(zip(quotes[::2], quotes[1::2]))
