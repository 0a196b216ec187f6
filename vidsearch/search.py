"""Text query -> vector -> nearest segments -> adjacent hits merged into ranked moments."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import IndexProblem, UsageError
from .indexdir import IndexDir


@dataclass(frozen=True)
class Hit:
    """One segment returned by the vector search."""

    video_id: int
    path: str
    start: float
    end: float
    score: float


@dataclass(frozen=True)
class Moment:
    """A span of one video made of adjacent matching segments; scored by its best segment."""

    path: str
    start: float
    end: float
    score: float
    segments: int

    def to_dict(self) -> dict:
        return asdict(self)


def merge_moments(hits: list[Hit], *, margin: float | None = None, gap: float = 0.5) -> list[Moment]:
    """Grow moments from the best hits: a hit joins a moment of its video when it touches or overlaps it
    (within `gap` seconds) and scores within `margin` of the moment's best; otherwise it starts its own.

    The default margin is a quarter of the spread between the best and the median candidate score, so it
    adapts to each model's score scale. A moment's score is its best segment's.
    """
    if not hits:
        return []
    ranked = sorted(hits, key=lambda h: (-h.score, h.path, h.start))
    if margin is None:
        scores = [h.score for h in ranked]
        margin = 0.25 * (scores[0] - scores[len(scores) // 2])
    moments: list[dict] = []
    for hit in ranked:
        joined = [m for m in moments if m["video_id"] == hit.video_id and hit.start <= m["end"] + gap
                  and hit.end >= m["start"] - gap and hit.score >= m["score"] - margin]
        merged = {"video_id": hit.video_id, "path": hit.path, "start": hit.start, "end": hit.end, "score": hit.score,
                  "segments": 1}
        for moment in joined:  # a hit that bridges two moments fuses them
            merged.update(start=min(merged["start"], moment["start"]), end=max(merged["end"], moment["end"]),
                          score=max(merged["score"], moment["score"]), segments=merged["segments"] + moment["segments"])
            moments.remove(moment)
        moments.append(merged)
    moments.sort(key=lambda m: (-m["score"], m["path"], m["start"]))
    return [Moment(m["path"], m["start"], m["end"], m["score"], m["segments"]) for m in moments]


def check_query(text: str, k: int) -> None:
    if not text.strip():
        raise UsageError("the query is empty; say what to look for, e.g. vidsearch query \"chopping onions\"")
    if k < 1:
        raise UsageError("-k must be at least 1")


class Searcher:
    """Answers queries against one index with the model that built it."""

    def __init__(self, index: IndexDir, *, device: str = "auto"):
        from . import registry
        from .encoder import TextEncoder

        recorded = index.db.get_setting("model")
        if recorded is None:
            raise IndexProblem(f"{index.path}: the index is empty; run `vidsearch index PATH` first")
        if registry.fingerprint(recorded["spec"]) != recorded["fingerprint"]:
            raise IndexProblem(f"{index.path}: model {recorded['spec']!r} changed since this index was built; re-index")
        self.index = index
        self.encoder = TextEncoder(recorded["spec"], device)  # queries need only the text tower
        self.vectors = index.vectors().on_gpu() if self.encoder.device.type == "cuda" else index.vectors()

    def search(self, text: str, *, k: int = 10) -> list[Moment]:
        check_query(text, k)
        query = self.encoder.encode_text([text])
        scores, ids = self.vectors.search(query, max(50, 10 * k))
        rows = self.index.db.segments(ids[0].tolist())
        hits = [Hit(row["video_id"], row["path"], row["start"], row["end"], float(score))
                for score, seg_id in zip(scores[0], ids[0]) if (row := rows.get(int(seg_id)))]
        return merge_moments(hits)[:k]
