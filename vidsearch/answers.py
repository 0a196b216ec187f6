"""What `query --json` and `status --json` answer, built in one place for the CLI and for `vidsearch serve`."""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError
from .indexdir import IndexDir
from .search import Moment, Searcher
from .terms import Term


def check_query_options(*, k: int, min_score: float | None) -> None:
    """Refuse a bad -k or --min-score before any model loads."""
    if k < 1:
        raise UsageError("-k must be at least 1")
    if min_score is not None and not -1.0 <= min_score <= 1.0:  # also refuses nan
        raise UsageError(f"--min-score must be a cosine similarity between -1 and 1, got {min_score}")


def search_moments(searcher: Searcher, terms: list[list[Term]], *, k: int = 10, group_by: str = "moment",
                   paths: list[str] = (), min_score: float | None = None, mode: str = "auto",
                   scale: str = "segment", one_thread: bool = True) -> list[Moment]:
    """The moments `vidsearch query` finds for parsed `terms` (terms.parse_sequence). `one_thread` runs a text query's
    text tower on one torch thread, as the CLI does: one short text gains nothing from more, and loses a lot when the
    cores are busy."""
    chosen = {searcher.resolve_mode(mode, part) for part in terms}.pop()
    if one_thread and chosen != "speech" and not any(t.image is not None for part in terms for t in part):
        import torch

        torch.set_num_threads(1)
    return searcher.search(terms, k=k, group_by=group_by, paths=list(paths), min_score=min_score, mode=chosen,
                           scale=scale)


def status_info(idx: IndexDir) -> dict:
    """`vidsearch status --json`: totals, model, settings, FAISS type and size, failures, partials, text, and when
    the last file was indexed (`last_indexed`, ISO 8601 UTC, or None)."""
    stats = idx.db.stats()
    store = idx.vectors(search_only=True)
    size = 0
    for file in Path(idx.path).iterdir():
        try:
            size += file.stat().st_size if file.is_file() else 0
        except FileNotFoundError:  # a writer's temporary file, renamed meanwhile
            pass
    last = max((v["indexed_at"] for v in idx.db.videos() if v["indexed_at"]), default=None)
    return {"index": str(idx.path), **stats, "model": idx.db.get_setting("model"),
            "settings": idx.db.get_setting("settings"), "index_type": store.kind, "vectors": store.count,
            "bytes": size, "failures": idx.db.failures(), "partials": idx.db.partials(),
            "text": {**idx.db.text_stats(), "speech": idx.db.get_setting("speech")}, "last_indexed": last}
