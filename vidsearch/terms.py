"""Parse a combined query such as `"2:dog on a beach" + sunset - people` into weighted text and image terms."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

# An operator is a lone + or - between spaces (or at the start), so "t-shirt" and "+44" stay words.
_OPERATOR = re.compile(r"(?:^|\s)([+-])(?=\s|$)")
_WEIGHT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*:(.*)$", re.DOTALL)


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
