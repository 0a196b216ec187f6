"""Fuse visual moments and transcript matches into one ranking of moments.

A text match and a visual moment of the same video that overlap in time (within GAP seconds) become one moment
spanning both; when several lines overlap one moment, the best keeps it as its text and the others add nothing. A line
that overlaps no visual moment is a moment of its own, and a visual moment no line overlaps stays as it is.

Two rules score the fused moments:
- "rrf", reciprocal rank fusion (Cormack et al., 2009): the sum over the two lists of 1 / (60 + rank). It uses only
  ranks, so the cosine and bm25 scales never meet, and a moment both lists agree on beats one that only one likes.
- "weighted": visual_weight * v + (1 - visual_weight) * t, each in [0, 1]. v is the cosine calibrated on the visual
  candidates, (score - median) / (best - median) clipped, since raw cosines bunch in a model-specific band. t is the
  line's coverage ** coverage_power: the share of one query term's words and quoted phrases the line has, the best
  term's, as FTS5 matches them (TextMatch.coverage). A missing side counts 0. A moment's text is its line with the
  most coverage (then bm25), and equal scores put the better line first (bm25; a moment with no line last).

The default is "weighted" with visual_weight 0.2 and coverage_power 2, chosen by bench/fusion.py (bench/RESULTS.md):
on its labelled sets it beat rrf, each side alone, and the weighted rule as it was before (the text side: bm25 over
the best line's, w 0.3). Why:
- rrf sees only ranks, so a line with all the query's words counts no more than one that shares a common word with it.
- A relative bm25 gives the best line 1 however little of the query it has: for a caption whose words are said only
  by chance ("the red wine stain would not come out" for "a red triangle moving up") that line beat the right scene.
  Coverage is absolute, and squared it makes such a match small: 1 of 4 words adds 0.8 / 16 = 0.05, a quarter of the
  visual side's range.
- The visual side always has a candidate calibrated to 1, even for words that are only spoken, so the text side needs
  the larger share: at 0.2 a line with at least half of a term's words ranks with or above (on a tie, by the line) the
  best-looking moment that says nothing (0.8 * 1/4 = 0.2), so words the recogniser missed or the user added cost
  little. A higher visual weight or power guards visual queries a little more against half-matching lines but drops
  spoken lines with a word or two unsaid below silent moments (bench/fusion.py --unsaid).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from .search import Moment
from .text_search import TextMatch

GAP = 1.0  # seconds: a line this close to a visual moment is taken to be about it
RRF_K = 60  # rrf's constant: ranks past the first few count nearly alike, so neither list's tail dominates
RULES = ("rrf", "weighted")
VISUAL_WEIGHT = 0.2  # the weighted rule's default share for the picture: below 0.5, see the module docstring
COVERAGE_POWER = 2  # the weighted rule's text side is coverage ** this: see the module docstring


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
         coverage_power: float = COVERAGE_POWER, gap: float = GAP) -> list[Moment]:
    """Visual moments (best first, scored by cosine) and text matches (best first) as one ranking, best first, each
    moment scored by `rule` and carrying its visual and text scores and its line. `visual_weight` and `coverage_power`
    tune the weighted rule."""
    if rule == "rrf":
        score, tie = _rrf, _no_tie
    elif rule == "weighted":
        matches = sorted(matches, key=lambda m: -m.coverage)  # stable: bm25 orders lines of equal coverage
        score, tie = _weighted(visual, visual_weight, coverage_power), _by_bm25
    else:
        raise ValueError(f"unknown fusion rule {rule!r}; use one of {', '.join(RULES)}")
    moments = [fused.moment(score(fused)) for fused in _pair(visual, matches, gap)]
    return sorted(moments, key=lambda m: (-m.score, tie(m), m.path, m.start))


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


def _no_tie(moment: Moment) -> float:
    return 0.0


def _by_bm25(moment: Moment) -> float:
    """Between equal scores, the moment with the better line first (one with no line last)."""
    return -moment.text_score if moment.text_score is not None else math.inf


def _weighted(visual: list[Moment], visual_weight: float, power: float) -> Callable[[_Fused], float]:
    """The weighted-sum score, the cosine calibrated on this query's visual candidates."""
    cosines = [m.score for m in visual] or [0.0]
    median, best = statistics.median(cosines), max(cosines)

    def visual_part(cosine: float) -> float:
        return 1.0 if best <= median else min(max((cosine - median) / (best - median), 0.0), 1.0)

    def score(fused: _Fused) -> float:
        seen = visual_part(fused.visual.score) if fused.visual else 0.0
        said = fused.match.coverage ** power if fused.match else 0.0
        return visual_weight * seen + (1 - visual_weight) * said

    return score
