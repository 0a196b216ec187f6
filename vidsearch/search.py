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


def merge_moments(hits: list[Hit], *, gap: float = 0.5) -> list[Moment]:
    """Merge hits of one video whose spans touch or overlap (within `gap` seconds); best score first."""
    by_video: dict[int, list[Hit]] = {}
    for hit in hits:
        by_video.setdefault(hit.video_id, []).append(hit)
    moments: list[Moment] = []
    for video_hits in by_video.values():
        video_hits.sort(key=lambda h: h.start)
        current = video_hits[0]
        start, end, score, count = current.start, current.end, current.score, 1
        for hit in video_hits[1:]:
            if hit.start <= end + gap:
                end, score, count = max(end, hit.end), max(score, hit.score), count + 1
            else:
                moments.append(Moment(current.path, start, end, score, count))
                start, end, score, count = hit.start, hit.end, hit.score, 1
            current = hit
        moments.append(Moment(current.path, start, end, score, count))
    moments.sort(key=lambda m: (-m.score, m.path, m.start))
    return moments


def check_query(text: str, k: int) -> None:
    if not text.strip():
        raise UsageError("the query is empty; say what to look for, e.g. vidsearch query \"chopping onions\"")
    if k < 1:
        raise UsageError("-k must be at least 1")


class Searcher:
    """Answers queries against one index with the model that built it."""

    def __init__(self, index: IndexDir, *, device: str = "auto"):
        from . import registry
        from .encoder import Encoder

        recorded = index.db.get_setting("model")
        if recorded is None:
            raise IndexProblem(f"{index.path}: the index is empty; run `vidsearch index PATH` first")
        if registry.fingerprint(recorded["spec"]) != recorded["fingerprint"]:
            raise IndexProblem(f"{index.path}: model {recorded['spec']!r} changed since this index was built; re-index")
        self.index = index
        self.encoder = Encoder.load(recorded["spec"], device)

    def search(self, text: str, *, k: int = 10) -> list[Moment]:
        check_query(text, k)
        query = self.encoder.encode_text([text])
        store = self.index.vectors()
        scores, ids = store.search(query, max(50, 10 * k))
        rows = self.index.db.segments(ids[0].tolist())
        hits = [Hit(row["video_id"], row["path"], row["start"], row["end"], float(score))
                for score, seg_id in zip(scores[0], ids[0]) if (row := rows.get(int(seg_id)))]
        return merge_moments(hits)[:k]
