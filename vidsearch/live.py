"""An index that a long-running server reads while `vidsearch index` writes it: each read sees one committed state,
and the next read after a commit sees the new one."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .db import Database
from .indexdir import DB_FILE, IndexDir
from .search import Searcher


class LiveSearcher(Searcher):
    """A Searcher whose FAISS index follows the index's generation instead of being loaded once: IndexDir.vectors
    loads the file when its stamp proves it current, and rebuilds from SQLite otherwise (an `index` run that has
    committed videos but not yet written FAISS)."""

    _generation: int | None = None

    @property
    def vectors(self):
        generation = self.index.db.generation()
        if generation != self._generation:
            self._vectors, self._generation = None, generation
        return Searcher.vectors.fget(self)


class LiveIndex:
    """The index folder a server answers from. Searches and status go through `reading()`, one at a time, each inside
    one SQLite read transaction, so FAISS and the rows it is joined with are of the same commit. SQLite runs in WAL
    mode, so this never blocks a writer, and a writer never blocks it. Looking up a video by id (media, thumbnails)
    uses a read-only connection per thread and takes no turn."""

    def __init__(self, path: Path, *, device: str = "auto", note: Callable[[str], None] = lambda line: None):
        self.index = IndexDir(path, note=note)  # IndexProblem when there is no index there
        self.path = self.index.path
        self.device = device
        self._turn = threading.Lock()
        self._searcher: LiveSearcher | None = None
        self._searcher_key: str | None = None
        self._readers = threading.local()

    @contextmanager
    def reading(self) -> Iterator[IndexDir]:
        """The index at one committed state, for the length of the block."""
        with self._turn:
            conn = self.index.db.db.conn
            conn.execute("BEGIN")  # deferred: the snapshot is taken by the first read and kept until the end
            try:
                yield self.index
            finally:
                conn.rollback()  # nothing was written: this only ends the read transaction

    def searcher(self) -> LiveSearcher:
        """The searcher for the model and settings the index has now (call inside `reading()`): kept warm across
        requests, and made again only when a `--reindex` changed them. IndexProblem when the index is empty."""
        db = self.index.db
        key = json.dumps([db.get_setting("model"), db.get_setting("settings")], sort_keys=True)
        if self._searcher is None or key != self._searcher_key:
            self._searcher = LiveSearcher(self.index, device=self.device)
            self._searcher_key = key
        return self._searcher

    def warm(self) -> None:
        """Load the text tower and FAISS now, so the first query is as fast as the next."""
        with self.reading():
            searcher = self.searcher()
            searcher.encoder(images=False)
            searcher.vectors  # noqa: B018  (loads it)

    def video(self, video_id: int) -> dict[str, Any] | None:
        """The indexed (ok or partial) video with this id, as its row; None for any other id."""
        db = getattr(self._readers, "db", None)
        if db is None:
            db = self._readers.db = Database(self.path / DB_FILE, readonly=True)
        rows = list(db.db["videos"].rows_where("id = ? AND status != 'failed'", [int(video_id)], limit=1))
        return rows[0] if rows else None
