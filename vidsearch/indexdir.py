"""The index folder: where it lives, its SQLite database, its FAISS file kept in step with it, its writer lock."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .db import Database
from .errors import IndexProblem
from .store import VectorStore

DB_FILE = "vidsearch.db"
VECTORS_FILE = "vectors.faiss"
LOCK_FILE = "writer.lock"


def default_index_dir() -> Path:
    """`$VIDSEARCH_HOME`, else the platform's user data folder."""
    if os.environ.get("VIDSEARCH_HOME"):
        return Path(os.environ["VIDSEARCH_HOME"]).expanduser()
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "vidsearch"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", home / "AppData" / "Local")) / "vidsearch"
    return Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share") / "vidsearch"


class IndexDir:
    """Opens (or creates) an index folder. FAISS is derived from SQLite and rebuilt when they disagree."""

    def __init__(self, path: Path, *, create: bool = False):
        self.path = Path(path).expanduser().resolve()
        if not (self.path / DB_FILE).is_file():
            if not create:
                raise IndexProblem(f"{self.path}: no index here yet; run `vidsearch index PATH` first (or pass --index)")
            self.path.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.path / DB_FILE)
        self._vectors: VectorStore | None = None
        self._dirty = False
        self._lock_fd: int | None = None

    def leftover_temp_files(self) -> list[Path]:
        """Temporary FAISS files a killed run left behind."""
        return sorted(self.path.glob(f"{VECTORS_FILE}*.tmp"))

    @property
    def dim(self) -> int | None:
        model = self.db.get_setting("model")
        return model["dim"] if model else None

    def vectors(self, *, search_only: bool = False) -> VectorStore:
        """The FAISS index, loaded from disk, or rebuilt from SQLite when its ids disagree. `search_only` maps the
        file into memory rather than reading it (the store must then not be changed)."""
        if self._vectors is None:
            store = None
            if (self.path / VECTORS_FILE).is_file():
                store = VectorStore.load(self.path / VECTORS_FILE, mapped=search_only)
                if store.checksum() != self.db.segment_checksum():
                    store = None
            if store is None:
                store = self.rebuild_vectors()
                self._dirty = True
            if self.dim is None:
                return store  # nothing indexed yet: the dimension is unknown, so do not keep it
            self._vectors = store
        return self._vectors

    def rebuild_vectors(self) -> VectorStore:
        dim = self.dim
        if dim is None:
            return VectorStore.empty(1)
        ids, vectors = self.db.segment_vectors(dim)
        return VectorStore.build(ids, vectors, dim)

    def changed_vectors(self) -> None:
        """Note that the loaded FAISS index was modified and must be written."""
        self._dirty = True

    def save_vectors(self) -> None:
        """Write FAISS if it changed; first switch it between exact and IVF (or retrain IVF) when its size calls
        for it. The checksum it was written with is recorded, so a later run can tell a stale file cheaply."""
        if self._vectors is None or not self._dirty:
            return
        if self._vectors.needs_rebuild():
            self._vectors = self.rebuild_vectors()
        self._vectors.save(self.path / VECTORS_FILE)
        self.db.set_setting("faiss_checksum", list(self._vectors.checksum()))
        self._dirty = False

    def sync_vectors(self) -> None:
        """Make the FAISS file agree with SQLite (after a killed run, say), loading it only when it may not."""
        recorded = self.db.get_setting("faiss_checksum")
        if self._vectors is None and self.dim is not None and (
                recorded != list(self.db.segment_checksum()) or not (self.path / VECTORS_FILE).is_file()):
            self.vectors()
            self._dirty = True
        self.save_vectors()

    def rebuild_and_save(self) -> None:
        """Rebuild FAISS from SQLite and write it (verify --repair)."""
        self._vectors = self.rebuild_vectors()
        self._dirty = True
        self.save_vectors()

    def remove(self, paths: list[str]) -> list[str]:
        """Drop files (or everything under folders) from SQLite and FAISS; returns the removed paths."""
        store = self.vectors()  # loaded before SQLite changes, so the removal is applied exactly once
        removed, ids = self.db.remove_videos(paths)
        if len(ids):
            store.remove(ids)
            self.changed_vectors()
            self.save_vectors()
        return removed

    def reset(self) -> None:
        """Empty the index, keeping the folder (and the writer lock)."""
        self.db.reset()
        (self.path / VECTORS_FILE).unlink(missing_ok=True)
        self._vectors, self._dirty = None, False

    def lock_for_writing(self) -> None:
        """Take the single-writer lock, or fail at once with a clear message."""
        import fcntl

        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise IndexProblem(f"{self.path}: another `vidsearch index` is writing to this index; wait for it to finish") from None
        self._lock_fd = fd
        for leftover in self.leftover_temp_files():  # only a writer may clean up after a killed writer
            leftover.unlink(missing_ok=True)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self.db.close()
