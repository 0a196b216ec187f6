"""Moment retrieval measured as the field does (Charades-STA, QVHighlights, Lighthouse): R@K at temporal IoU, mAP, mean IoU."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .data import ManifestProblem, manifest_records, seconds_field
from .errors import UsageError

RECALL_AT = (1, 5)
RECALL_IOU = (0.5, 0.7)
MAP_IOU = (0.5, 0.75)
MAP_HITS = 10  # QVHighlights' and Lighthouse's compute_mr_ap keep a query's first 10 predicted windows (max_pred_windows=10)
HITS_USED = max(*RECALL_AT, MAP_HITS)  # the most hits any metric looks at: ask the search for this many per query
METRIC_KEYS = ("R@1@0.5", "R@1@0.7", "R@5@0.5", "R@5@0.7", "mAP@0.5", "mAP@0.75", "mIoU")


class Timed(Protocol):
    """Anything with a video path and a span in seconds: a search hit (search.Moment) or a correct Span."""

    path: str
    start: float
    end: float


@dataclass(frozen=True)
class Span:
    """A correct span: `path` is the video's absolute path, spelt as the index spells it (os.path.abspath, links kept)."""

    path: str
    start: float
    end: float


@dataclass(frozen=True)
class LabelledQuery:
    """A query text, its `kind` (None when its lines have none) and every correct span, from lines `lines` of the file."""

    text: str
    kind: str | None
    truths: tuple[Span, ...]
    lines: tuple[int, ...]


def read_queries(path: str | Path) -> tuple[list[LabelledQuery], list[ManifestProblem]]:
    """Parse JSONL lines `{"query", "video", "start", "end", "kind"?}` (or CSV with that header, as data.read_manifest).

    Lines with the same query text (stripped) and the same kind are one query with several correct spans, which may
    lie in different videos; the same text under another kind is another query. Video paths may be relative to the
    file's folder and are made absolute as the indexer makes them (os.path.abspath, symlinks kept), so they equal
    the paths hits carry. Bad lines (not JSON, not an object, a missing key, an empty query, a bad number,
    end <= start, a repeat of an earlier line's span) are returned as problems with their line numbers, never
    raised; the video files need not exist here (a span in a video the index lacks simply cannot be found).
    Queries come in the order of their first line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read queries ({exc})") from None
    grouped: dict[tuple[str, str | None], tuple[list[Span], list[int]]] = {}
    seen: dict[tuple[str, str | None, Span], int] = {}
    problems = []
    for line, record in manifest_records(path, text):
        try:
            query, kind, span = _labelled_span(path, record)
            if (query, kind, span) in seen:
                raise ValueError(f"repeats the span of line {seen[query, kind, span]}")
        except ValueError as exc:
            problems.append(ManifestProblem(path, line, str(exc)))
            continue
        seen[query, kind, span] = line
        truths, lines = grouped.setdefault((query, kind), ([], []))
        truths.append(span)
        lines.append(line)
    queries = [LabelledQuery(query, kind, tuple(truths), tuple(lines)) for (query, kind), (truths, lines) in grouped.items()]
    return queries, problems


def _labelled_span(path: Path, record: object) -> tuple[str, str | None, Span]:
    if isinstance(record, ValueError):
        raise record
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object with keys query, video, start, end, and optional kind")
    missing = [k for k in ("query", "video", "start", "end") if record.get(k) is None]
    if missing:
        raise ValueError(f"missing key{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    query = str(record["query"]).strip()
    if not query:
        raise ValueError("empty query")
    kind = record.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise ValueError(f"kind must be a string, got {kind!r}")
    kind = (kind or "").strip() or None  # "kind": "" is no kind
    start, end = seconds_field(record, "start"), seconds_field(record, "end")
    if end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    video = os.path.expanduser(str(record["video"]))
    video = os.path.abspath(video if os.path.isabs(video) else path.parent / video)  # relative to the file, as data.py does
    return query, kind, Span(video, start, end)


def temporal_iou(a: Timed, b: Timed) -> float:
    """Temporal intersection over union of two spans: 0 for spans of different videos (paths compared as strings),
    for touching or disjoint spans, and when both are empty; 1 for identical spans. The same value as the
    Moment-DETR/QVHighlights/Lighthouse standalone_eval's compute_temporal_iou_batch_cross, without its 0/0."""
    if os.fspath(a.path) != os.fspath(b.path):
        return 0.0
    inter = max(0.0, min(a.end, b.end) - max(a.start, b.start))
    union = max(0.0, a.end - a.start) + max(0.0, b.end - b.start) - inter
    return inter / union if union > 0 else 0.0


def best_iou(hit: Timed, truths: Sequence[Timed]) -> float:
    """The hit's IoU with the correct span it overlaps most (0 with none)."""
    return max((temporal_iou(hit, truth) for truth in truths), default=0.0)


def average_precision(hits: Sequence[Timed], truths: Sequence[Timed], threshold: float) -> float:
    """One query's AP at one IoU threshold, as QVHighlights and Lighthouse compute moment-retrieval AP
    (standalone_eval: compute_mr_ap -> compute_average_precision_detection, after ActivityNet/MMAction2):

    - only the first MAP_HITS (10) hits count, in the order given;
    - in that order, each hit is a true positive when some correct span not yet matched has IoU >= threshold with
      it, and it then matches the one of those with the highest IoU (of equal ones the one listed first, where the
      reference leaves the choice to numpy's argsort, which is not stable); otherwise (a miss, a hit in another
      video, a second hit on an already matched span) it is a false positive;
    - precision p_i = TP among the first i hits / i and recall = TP / number of correct spans; AP is the area under
      the VOC-2011 interpolated curve (precision at each rank raised to the best precision at any later rank):
      AP = (1 / len(truths)) * sum over true-positive ranks i of max_{j >= i} p_j.

    0 when there are no hits or no correct spans."""
    if not truths:
        return 0.0
    matched = [False] * len(truths)
    hits_so_far = 0
    precision, positive = [], []
    for rank, hit in enumerate(hits[:MAP_HITS], 1):
        candidates = [(iou, i) for i, truth in enumerate(truths)
                      if not matched[i] and (iou := temporal_iou(hit, truth)) >= threshold]
        if candidates:
            _, best = max(candidates, key=lambda c: (c[0], -c[1]))  # highest IoU, then the first listed
            matched[best] = True
            hits_so_far += 1
        positive.append(bool(candidates))
        precision.append(hits_so_far / rank)
    total, envelope = 0.0, 0.0
    for p, is_positive in zip(reversed(precision), reversed(positive)):
        envelope = max(envelope, p)
        total += envelope if is_positive else 0.0
    return total / len(truths)


def metrics(ranked_hits_per_query: Sequence[Sequence[Timed]], truths_per_query: Sequence[Sequence[Timed]]) -> dict[str, float]:
    """The moment-retrieval metrics over queries (the i-th hit list answers the i-th truths), as fractions in [0, 1]
    (papers print them x 100), each a mean over the queries, so a query with no hits counts 0 in every one:

    - `R@K@t` (K = 1, 5; t = 0.5, 0.7): the query counts 1 when at least one of its first K hits has IoU >= t with
      some correct span, Charades-STA's "R@K, IoU=t" (Gao et al., TALL, 2017). For K = 1 this is QVHighlights'
      and Lighthouse's MR-R1@t (compute_mr_r1: the top window against the correct span it overlaps most). Fewer
      than K hits are used as they are.
    - `mAP@t` (t = 0.5, 0.75): the mean of average_precision at t, QVHighlights' and Lighthouse's MR-mAP@t; unlike
      their compute_mr_ap, which leaves out queries with no predicted window, such a query counts AP 0 here.
    - `mIoU`: the top hit's IoU with the correct span it overlaps most (0 with no hit), as Charades-STA papers report
      mean IoU.

    Hits are taken in the order given, best first, and never re-sorted: ties in score keep the caller's order, so
    the caller must make it deterministic (search.py and fusion.py sort ties by path, then start). QVHighlights' stable sort
    by score does the same for hits already sorted by score. A hit is matched to a span only in its own video."""
    if len(ranked_hits_per_query) != len(truths_per_query):
        raise ValueError(f"{len(ranked_hits_per_query)} hit lists for {len(truths_per_query)} queries")
    if not truths_per_query:
        raise ValueError("no queries to measure")
    totals = dict.fromkeys(METRIC_KEYS, 0.0)
    for hits, truths in zip(ranked_hits_per_query, truths_per_query):
        ious = [best_iou(hit, truths) for hit in hits[:max(RECALL_AT)]]
        for k in RECALL_AT:
            for t in RECALL_IOU:
                totals[f"R@{k}@{t}"] += any(iou >= t for iou in ious[:k])
        for t in MAP_IOU:
            totals[f"mAP@{t}"] += average_precision(hits, truths, t)
        totals["mIoU"] += ious[0] if ious else 0.0
    return {key: value / len(truths_per_query) for key, value in totals.items()}


def evaluate(queries: Sequence[LabelledQuery], search: Callable[[str], Sequence[Timed]]) -> dict:
    """`{"queries": N, "all": METRICS, "by_kind": {KIND: METRICS}}` (METRICS as `metrics` gives them), where
    `search(text)` returns a query's hits best first (at least HITS_USED of them when it can; more are not used).
    `search` is called once per distinct query text, even when the text is labelled under several kinds.
    by_kind has only the kinds present, in name order; queries without a kind count in `all` only."""
    if not queries:
        raise UsageError("no queries to evaluate")
    answers: dict[str, list[Timed]] = {}
    for query in queries:
        if query.text not in answers:
            answers[query.text] = list(search(query.text))
    hits = [answers[q.text] for q in queries]
    truths = [q.truths for q in queries]
    by_kind = {}
    for kind in sorted({q.kind for q in queries if q.kind is not None}):
        chosen = [i for i, q in enumerate(queries) if q.kind == kind]
        by_kind[kind] = metrics([hits[i] for i in chosen], [truths[i] for i in chosen])
    return {"queries": len(queries), "all": metrics(hits, truths), "by_kind": by_kind}
