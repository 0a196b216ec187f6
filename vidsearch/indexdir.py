"""The index folder: where it lives, its SQLite database, its FAISS file kept in step with it, its writer lock."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .db import Database
from .errors import IndexProblem
from .faults import crash_point
from .interrupts import finish_first

DB_FILE = "vidsearch.db"
VECTORS_FILE = "vectors.faiss"
LOCK_FILE = "writer.lock"
STAMP = "faiss"  # the settings key of what the FAISS file was written with: generation, count, bytes, crc32, mtime_ns


def default_index_dir() -> Path:
    """`$VIDSEARCH_HOME`, else the platform's user data folder."""
    if os.environ.get("VIDSEARCH_HOME"):
        return Path(os.environ["VIDSEARCH_HOME"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("vidsearch", appauthor=False))


class IndexDir:
    """Opens (or creates) an index folder. SQLite is the truth; the FAISS file is used only while the stamp SQLite
    keeps of it says it holds the current generation of the segment rows, and is rebuilt from SQLite otherwise.

    `note` receives one line whenever the FAISS file had to be rebuilt (the CLI prints it as `note: ...`).
    """

    def __init__(self, path: Path, *, create: bool = False, note: Callable[[str], None] = lambda line: None):
        self.path = Path(path).expanduser().resolve()
        if not (self.path / DB_FILE).is_file():
            if not create:
                raise IndexProblem(f"{self.path}: no index here yet; run `vidsearch index PATH` first (or pass --index)")
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise IndexProblem(f"{self.path}: cannot create the index folder ({exc.strerror or exc})") from None
        self.writable = os.access(self.path, os.W_OK)
        self.db = Database(self.path / DB_FILE, readonly=not self.writable)
        self.note = note
        self._vectors = None  # a VectorStore equal to SQLite's segment rows at self._generation
        self._generation: int | None = None
        self._on_disk = False  # the FAISS file holds exactly self._vectors
        self._lock = None

    @property
    def vectors_file(self) -> Path:
        return self.path / VECTORS_FILE

    def leftover_temp_files(self) -> list[Path]:
        """Temporary FAISS files a killed run left behind (the only files vidsearch ever deletes on its own)."""
        return sorted(self.path.glob(f"{VECTORS_FILE}*.tmp"))

    @property
    def dim(self) -> int | None:
        model = self.db.get_setting("model")
        return model["dim"] if model else None

    def vectors(self, *, search_only: bool = False):
        """The FAISS index as SQLite has it now: the file when its stamp proves it current, else rebuilt from SQLite.
        `search_only` memory-maps the file instead of reading it (the store must then not be changed)."""
        generation = self.db.generation()
        if self._vectors is not None and self._generation == generation:
            return self._vectors

        try:
            store, problem = self._load_current(generation, mapped=search_only)
        except OSError as exc:  # unreadable (permissions, I/O): a derived file never stops the tool
            store, problem = None, f"cannot be read ({exc.strerror or exc})"
        if store is None:
            store = self.rebuild_vectors()
            if problem:
                self.note(f"{self.vectors_file} {problem}; " + (
                    "rebuilt it from SQLite" if self._lock else
                    "searching a copy rebuilt from SQLite in memory (an `index` run may be in progress; otherwise "
                    "`vidsearch index` or `vidsearch verify --repair` writes it back)"))
        self._vectors, self._generation, self._on_disk = store, generation, problem is None
        return store

    def _load_current(self, generation: int, *, mapped: bool):
        """(store, None) when the file is what the stamp says and the stamp is of this generation; otherwise
        (None, why not), the reason None when there is simply nothing to load."""
        from .store import DamagedVectors, VectorStore, file_crc32

        stamp = self.db.get_setting(STAMP)
        if not self.vectors_file.is_file():
            return None, ("is missing" if self.db.segment_count() else None)
        if stamp is None or stamp["generation"] != generation or self.dim is None:
            return None, "was written before the last change (a run was interrupted)"
        stat = self.vectors_file.stat()
        if stat.st_size != stamp["bytes"]:
            return None, f"is damaged ({stat.st_size} bytes, {stamp['bytes']} written)"
        if stat.st_mtime_ns != stamp["mtime_ns"]:  # copied, or touched: trust it only if its bytes are the same
            if file_crc32(self.vectors_file) != stamp["crc32"]:
                return None, "is damaged (its checksum changed since it was written)"
            if self._lock:
                self.db.set_setting(STAMP, {**stamp, "mtime_ns": stat.st_mtime_ns})
        try:
            store = VectorStore.load(self.vectors_file, mapped=mapped)
        except DamagedVectors as exc:
            return None, f"is damaged ({exc})"
        if store.count != stamp["count"] or store.dim != self.dim:
            return None, f"is damaged ({store.count} vectors of size {store.dim}, expected {stamp['count']} of {self.dim})"
        return store, None

    def rebuild_vectors(self):
        from .store import VectorStore

        dim = self.dim
        if dim is None:
            return VectorStore.empty(1)
        ids, vectors = self.db.segment_vectors(dim)
        return VectorStore.build(ids, vectors, dim)

    def commit(self, write: Callable[[], tuple[np.ndarray, list[int]]]) -> None:
        """Run `write`, one SQLite transaction that returns (segment ids it deleted, segment ids it added), and make
        the same change to the loaded FAISS index. A stop (Ctrl-C, SIGTERM) waits until both are done; if FAISS
        fails after the commit, it is rebuilt from SQLite on next use."""
        from .store import VectorStore

        with finish_first():
            store = self.vectors()
            try:
                removed, added = write()
                generation, dim = self.db.generation(), self.dim
                if store.count == 0 and dim is not None and store.dim != dim:  # the first video: now the size is known
                    store = VectorStore.empty(dim)
                store.remove(np.asarray(removed, dtype=np.int64))
                if len(added):
                    store.add(*self.db.segment_vectors(dim, ids=list(added)))
            except BaseException:
                self._vectors = None
                raise
            self._vectors, self._generation, self._on_disk = store, generation, False

    def save_vectors(self) -> None:
        """Write FAISS if SQLite changed since it was written; first switch it between exact and IVF (or retrain IVF)
        when its size calls for it. The stamp SQLite keeps of it is what later runs trust."""
        if self._vectors is None or self._on_disk or self.dim is None:
            return
        with finish_first():
            if self._vectors.needs_rebuild():
                self._vectors = self.rebuild_vectors()
            stamp = self._vectors.save(self.vectors_file)
            crash_point("faiss-stamp")
            self.db.set_setting(STAMP, {**stamp, "generation": self._generation})
            self._on_disk = True

    def sync_vectors(self) -> None:
        """Make the FAISS file agree with SQLite (after a killed run, say), loading it only when it may not."""
        if self._vectors is None and self._stamp_current():
            return
        self.vectors()
        self.save_vectors()

    def _stamp_current(self) -> bool:
        stamp = self.db.get_setting(STAMP)
        if self.dim is None:
            return True
        if stamp is None or stamp["generation"] != self.db.generation() or not self.vectors_file.is_file():
            return False
        stat = self.vectors_file.stat()
        return (stat.st_size, stat.st_mtime_ns) == (stamp["bytes"], stamp["mtime_ns"])

    def rebuild_and_save(self) -> None:
        """Rebuild FAISS from SQLite and write it (verify --repair)."""
        self._vectors, self._generation, self._on_disk = self.rebuild_vectors(), self.db.generation(), False
        self.save_vectors()

    def remove(self, paths: list[str]) -> list[str]:
        """Drop files (or everything under folders) from SQLite and FAISS; returns the removed paths."""
        removed: list[str] = []

        def write():
            paths_gone, ids = self.db.remove_videos(paths)
            removed.extend(paths_gone)
            return ids, []

        self.commit(write)
        self.save_vectors()
        return removed

    def reset(self) -> None:
        """Empty the index, keeping the folder (and the writer lock)."""
        self.db.reset()
        self.vectors_file.unlink(missing_ok=True)
        self._vectors, self._generation, self._on_disk = None, None, False

    def lock_for_writing(self) -> None:
        """Take the single-writer lock, or fail at once with a clear message."""
        import filelock

        if not self.writable:
            raise IndexProblem(f"{self.path}: the index folder is read-only here; `index`, `remove` and "
                               f"`verify --repair` need to write to it (`query`, `status` and `ls` still work)")
        lock = filelock.FileLock(self.path / LOCK_FILE, timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise IndexProblem(f"{self.path}: another vidsearch command is writing to this index; wait for it to finish") from None
        self._lock = lock
        for leftover in self.leftover_temp_files():  # only a writer may clean up after a killed writer
            leftover.unlink(missing_ok=True)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self.db.close()
