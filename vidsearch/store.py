"""FAISS vectors keyed by int64 segment ids: exact inner-product search, atomic save, GPU when present."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import faiss
import numpy as np

from .faults import crash_point


class VectorStore:
    """An `IDMap2,Flat` inner-product index; vectors are L2-normalised, so scores are cosines."""

    def __init__(self, index: faiss.Index):
        self.index = index

    @classmethod
    def empty(cls, dim: int) -> VectorStore:
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)))

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, dim: int) -> VectorStore:
        store = cls.empty(dim)
        store.add(ids, vectors)
        return store

    @classmethod
    def load(cls, path: Path) -> VectorStore:
        return cls(faiss.read_index(str(path)))

    @property
    def dim(self) -> int:
        return self.index.d

    @property
    def count(self) -> int:
        return self.index.ntotal

    @property
    def kind(self) -> str:
        return "IDMap2,Flat"

    def checksum(self) -> tuple[int, int]:
        """(count, sum of ids), comparable with `Database.segment_checksum`."""
        ids = faiss.vector_to_array(self.index.id_map) if self.count else np.zeros(0, dtype=np.int64)
        return int(ids.size), int(ids.sum())

    def reconstruct(self, vector_id: int) -> np.ndarray:
        return self.index.reconstruct(vector_id)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n_queries, k'), best first; k' = min(k, count)."""
        k = min(k, self.count)
        if k == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def save(self, path: Path) -> None:
        """Write to a temporary file beside `path`, then rename it into place."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.close(fd)
        try:
            faiss.write_index(self.index, tmp)
            crash_point("faiss-write")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
