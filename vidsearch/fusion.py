"""Fuse visual moments and transcript matches into one ranking of moments.

A text match and a visual moment of the same video that overlap in time (within GAP seconds) become one moment
spanning both; when several lines overlap one moment, the best keeps it as its text and the others add nothing. A line
that overlaps no visual moment is a moment of its own, and a visual moment no line overlaps stays as it is.

Two rules score the fused moments:
- "rrf", reciprocal rank fusion (Cormack et al., 2009): the sum over the two lists of 1 / (60 + rank). It uses only
  ranks, so the cosine and bm25 scales never meet, and a moment both lists agree on beats one that only one likes.
- "weighted": visual_weight * v + (1 - visual_weight) * t, each calibrated per query to [0, 1]: the cosine against the
  visual candidates, (score - median) / (best - median) clipped, since raw cosines bunch in a model-specific band;
  the text score divided by the best text score. A missing side counts 0.

The default is "weighted" with visual_weight 0.3, chosen by bench/fusion.py (bench/RESULTS.md): on its labelled set it
beat rrf and each side alone overall, while rrf fell below the transcripts alone. rrf sees only ranks, so a line with
all the query's words counts no more than one that shares a common word with it. And the visual side always has a
candidate calibrated to 1, even for words that are only spoken, so the text side needs the larger share: below 0.5 a
line with all the words outranks the best-looking moment that says nothing.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from .search import Moment
from .text_search import TextMatch

GAP = 1.0  # seconds: a line this close to a visual moment is taken to be about it
RRF_K = 60  # rrf's constant: ranks past the first few count nearly alike, so neither list's tail dominates
RULES = ("rrf", "weighted")
VISUAL_WEIGHT = 0.3  # the weighted rule's default share for the picture: below 0.5, see the module docstring


@dataclass
class _Fused:
    """A moment being fused: a visual moment, its best text match, or both, with their ranks in their lists."""

    video_id: int
    path: str
    start: float
    end: float
    visual: Moment | None = None
    visual_rank: int | None = None
    match: TextMatch | None = None
    text_rank: int | None = None

    def moment(self, score: float) -> Moment:
        return Moment(self.video_id, self.path, self.start, self.end, score, self.visual.segments if self.visual else 0,
                      text=self.match, visual_score=self.visual.score if self.visual else None,
                      text_score=self.match.score if self.match else None)


def fuse(visual: list[Moment], matches: list[TextMatch], *, rule: str = "weighted", visual_weight: float = VISUAL_WEIGHT,
         gap: float = GAP) -> list[Moment]:
    """Visual moments (best first, scored by cosine) and text matches (best first) as one ranking, best first, each
    moment scored by `rule` and carrying its visual and text scores and its line."""
    if rule == "rrf":
        score = _rrf
    elif rule == "weighted":
        score = _weighted(visual, matches, visual_weight)
    else:
        raise ValueError(f"unknown fusion rule {rule!r}; use one of {', '.join(RULES)}")
    moments = [fused.moment(score(fused)) for fused in _pair(visual, matches, gap)]
    return sorted(moments, key=lambda m: (-m.score, m.path, m.start))


def text_moments(matches: list[TextMatch], *, gap: float = GAP) -> list[Moment]:
    """Text matches alone as moments, best first, scored by their text score; a line within `gap` of a better one
    of its video adds nothing (the same words from two sources, or a neighbouring line)."""
    return [fused.moment(fused.match.score) for fused in _pair([], matches, gap)]


def _pair(visual: list[Moment], matches: list[TextMatch], gap: float) -> list[_Fused]:
    """Each text match joins the best-ranked moment of its video it overlaps within `gap` (visual ones first); the
    first to join one becomes its text and widens it, later ones are dropped; one that joins none stands alone."""
    fused = [_Fused(m.video_id, m.path, m.start, m.end, visual=m, visual_rank=rank) for rank, m in enumerate(visual, 1)]
    of_video: dict[int, list[_Fused]] = defaultdict(list)
    for moment in fused:
        of_video[moment.video_id].append(moment)
    for rank, match in enumerate(matches, 1):
        near = next((m for m in of_video[match.video_id] if match.start <= m.end + gap and match.end >= m.start - gap), None)
        if near is None:
            alone = _Fused(match.video_id, match.path, match.start, match.end, match=match, text_rank=rank)
            fused.append(alone)
            of_video[match.video_id].append(alone)
        elif near.match is None:
            near.match, near.text_rank = match, rank
            near.start, near.end = min(near.start, match.start), max(near.end, match.end)
    return fused


def _rrf(fused: _Fused) -> float:
    return sum(1 / (RRF_K + rank) for rank in (fused.visual_rank, fused.text_rank) if rank is not None)


def _weighted(visual: list[Moment], matches: list[TextMatch], visual_weight: float) -> Callable[[_Fused], float]:
    """The weighted-sum score, calibrated on this query's candidates."""
    cosines = [m.score for m in visual] or [0.0]
    median, best = statistics.median(cosines), max(cosines)
    best_text = max((m.score for m in matches), default=1.0)

    def visual_part(cosine: float) -> float:
        return 1.0 if best <= median else min(max((cosine - median) / (best - median), 0.0), 1.0)

    def score(fused: _Fused) -> float:
        seen = visual_part(fused.visual.score) if fused.visual else 0.0
        said = fused.match.score / best_text if fused.match else 0.0
        return visual_weight * seen + (1 - visual_weight) * said

    return score
