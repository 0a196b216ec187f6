"""Compose the moments of a sequence query's parts ("A then B") into ordered spans of one video, scored and ranked."""

from __future__ import annotations

import statistics
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .search import Moment
from .terms import Term

# Seconds B may start after A ends. "Then" in a query means what comes next, but a moment covers only the segments
# that matched best, so it often ends before its scene does, and a cutaway or a short scene may sit between: a minute
# is several scenes of an edited video (the synthetic scenes last 6-12 s) yet still "next" in a long one.
MAX_GAP = 60.0
# Seconds B may overlap the end of A: one segment at the default --segment 4, since a scene cut inside a segment
# puts that segment in the moments of both scenes.
OVERLAP = 4.0
# What a chain at the full max_gap loses against an adjacent one, in calibrated units (0 = a median candidate,
# 1 = the best): enough to prefer the B right after A over an equally good one later, too little to beat a clearly
# better match. A judgement, not a measurement: the sequence benchmark of issue 14 is where to tune it.
GAP_PENALTY = 0.1
# Moments to ask of each part's search: hundreds, so the right A and B are among them even when other moments look
# more like either alone; the composition stays fast at that size (see compose).
PART_CANDIDATES = 200


@dataclass(frozen=True)
class Part:
    """Where one part of a sequence matched, scored as its own search scored it (a cosine, or a fused score)."""

    start: float
    end: float
    score: float


@dataclass(frozen=True)
class SequenceMoment(Moment):
    """A span of one video from its first part's start to its last part's end, with the parts in order. Its score is
    `compose`'s (about 0 to 1, not a cosine); `segments` adds up the parts'. A Moment, so grouping, reports and JSON
    take it as one."""

    parts: tuple[Part, ...] = ()


def compose(parts_moments: Sequence[Sequence[Moment]], *, max_gap: float = MAX_GAP, overlap: float = OVERLAP,
            gap_penalty: float = GAP_PENALTY, k: int | None = 10) -> list[SequenceMoment]:
    """The best `k` (None: all) chains, best first: in one video, a moment of each part in order, each next one
    starting no earlier than the one before, ending later, overlapping it by at most `overlap` seconds and starting at
    most `max_gap` seconds after it ends.

    Score: the mean of the parts' calibrated scores minus `gap_penalty` times the mean gap over `max_gap` (overlaps
    count as no gap). A part's score is calibrated over that part's candidates as fusion calibrates cosines:
    (score - median) / (best - median), clipped to [0, 1], so each part counts alike whatever its raw scale (cosine,
    fused score, bm25) and spread. The rule is additive, so dynamic programming over the parts finds each video's best
    chain ending at every last-part moment exactly; a chain that overlaps a better one of its video is dropped, so the
    spans are distinct as moments are. Time: sorting, plus for each moment a scan of the previous part's moments
    that end within `max_gap` + `overlap` of its start.
    """
    if not parts_moments:
        raise ValueError("a sequence needs at least one part")
    if max_gap < 0 or overlap < 0:
        raise ValueError(f"max_gap and overlap must be at least 0, got {max_gap} and {overlap}")
    count = len(parts_moments)
    per_second = gap_penalty / (count - 1) / max_gap if count > 1 and max_gap > 0 else 0.0
    of_video: list[dict[int, list[tuple[Moment, float]]]] = []
    for moments in parts_moments:
        grouped = defaultdict(list)
        for moment, calibrated in zip(moments, _calibrated([m.score for m in moments])):
            grouped[moment.video_id].append((moment, calibrated / count))
        of_video.append(grouped)
    chains: list[tuple[float, list[Moment]]] = []
    for video in sorted(set.intersection(*(set(grouped) for grouped in of_video))):
        chains += _chains([grouped[video] for grouped in of_video], max_gap=max_gap, overlap=overlap, per_second=per_second)
    chains.sort(key=lambda chain: (-chain[0], chain[1][0].path, [(m.start, m.end) for m in chain[1]]))
    kept: list[SequenceMoment] = []
    spans: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for score, chain in chains:
        if k is not None and len(kept) >= k:
            break
        start, end, video = chain[0].start, chain[-1].end, chain[0].video_id
        if any(start < other_end and other_start < end for other_start, other_end in spans[video]):
            continue
        spans[video].append((start, end))
        kept.append(SequenceMoment(video, chain[0].path, start, end, score, sum(m.segments for m in chain),
                                   parts=tuple(Part(m.start, m.end, m.score) for m in chain)))
    return kept


def _calibrated(scores: list[float]) -> list[float]:
    """Each score against its list: 0 at the median or below, 1 at the best."""
    if not scores:
        return []
    median, best = statistics.median(scores), max(scores)
    if best <= median:
        return [1.0] * len(scores)
    return [min(max((score - median) / (best - median), 0.0), 1.0) for score in scores]


def _chains(parts: list[list[tuple[Moment, float]]], *, max_gap: float, overlap: float,
            per_second: float) -> list[tuple[float, list[Moment]]]:
    """For one video (each part's moments with their share of the score), the best chain ending at each moment of
    the last part that ends any chain: (score, moments in order)."""
    previous = sorted(parts[0], key=_by_end)
    values: list[float | None] = [share for _, share in previous]
    links: list[tuple | None] = [(moment, None) for moment, _ in previous]  # each chain as (last moment, rest of it)
    for part in parts[1:]:
        ends = [moment.end for moment, _ in previous]
        current = sorted(part, key=_by_end)
        new_values: list[float | None] = []
        new_links: list[tuple | None] = []
        for moment, share in current:
            best, link = None, None
            for j in range(bisect_left(ends, moment.start - max_gap), bisect_right(ends, moment.start + overlap)):
                before = previous[j][0]
                if values[j] is None or before.start > moment.start or before.end >= moment.end:
                    continue
                value = values[j] - per_second * max(moment.start - before.end, 0.0)
                if best is None or value > best:
                    best, link = value, links[j]
            new_values.append(None if best is None else best + share)
            new_links.append((moment, link))
        previous, values, links = current, new_values, new_links
    chains = []
    for value, link in zip(values, links):
        if value is not None:
            moments = []
            while link is not None:
                moment, link = link
                moments.append(moment)
            chains.append((value, moments[::-1]))
    return chains


def _by_end(item: tuple[Moment, float]) -> tuple:
    """By end, so the moments that end in a window are a slice; then start and best first, so ties are stable."""
    moment, share = item
    return moment.end, moment.start, -share


def gather_candidates(parts: Sequence[list[Term]], moments_for: Callable[[list[Term], list[int] | None], list[Moment]],
                      *, video_ids: list[int] | None = None) -> list[list[Moment]]:
    """Each part's candidate moments, in order: the first part searched in `video_ids` (None: every video), each later
    part only in the videos where every earlier part matched, since a chain needs them all; so the work stays bounded
    by the first part's hits. `moments_for(terms, video_ids)` is one part's search (a Searcher's visual or fused search
    with k = PART_CANDIDATES, say); it is not called once no video is left."""
    found: list[list[Moment]] = []
    for terms in parts:
        moments = moments_for(terms, video_ids) if video_ids is None or video_ids else []
        found.append(moments)
        video_ids = sorted({moment.video_id for moment in moments})
    return found


def find_sequences(parts: Sequence[list[Term]], moments_for: Callable[[list[Term], list[int] | None], list[Moment]],
                   *, video_ids: list[int] | None = None, k: int | None = 10, max_gap: float = MAX_GAP,
                   overlap: float = OVERLAP, gap_penalty: float = GAP_PENALTY) -> list[SequenceMoment]:
    """`parse_sequence`'s parts (two or more; one part is a plain query) -> the best `k` sequences, best first."""
    return compose(gather_candidates(parts, moments_for, video_ids=video_ids), max_gap=max_gap, overlap=overlap,
                   gap_penalty=gap_penalty, k=k)
