"""FAISS vectors keyed by int64 segment ids: exact search while small, a tuned IVF index past a threshold."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import faiss
import numpy as np

from .faults import crash_point

IVF_THRESHOLD = 200_000  # segments; below this an exact scan answers in well under 0.1 s on 2 CPU cores
TARGET_RECALL = 0.95  # recall@10 of IVF against exact search that nprobe is tuned for


class VectorStore:
    """`IDMap2,Flat` (exact) or `IVF{n},Flat` (ids kept by the inverted lists, a hash-table direct map for
    lookups) inner-product index over L2-normalised vectors."""

    def __init__(self, index: faiss.Index):
        self.index = index

    @classmethod
    def empty(cls, dim: int) -> VectorStore:
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)))

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, dim: int, *, ivf_threshold: int = IVF_THRESHOLD) -> VectorStore:
        """Exact below `ivf_threshold` vectors, IVF at or above it."""
        if len(ids) >= ivf_threshold:
            return cls.build_ivf(ids, vectors, dim)
        store = cls.empty(dim)
        store.add(ids, vectors)
        return store

    @classmethod
    def build_ivf(cls, ids: np.ndarray, vectors: np.ndarray, dim: int, *, nlist: int | None = None,
                  seed: int = 0) -> VectorStore:
        """Train k-means cells on a sample, add everything, then pick the smallest nprobe reaching TARGET_RECALL."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        nlist = nlist or ivf_cells(len(vectors))
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = vectors[np.sort(rng.choice(len(vectors), size=min(len(vectors), 64 * nlist), replace=False))]
        ivf.train(sample)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct and remove by arbitrary int64 id
        store = cls(ivf)
        store.add(ids, vectors)
        store.nprobe = store.tune_nprobe(np.asarray(ids, dtype=np.int64), vectors, rng)
        return store

    @classmethod
    def load(cls, path: Path, *, mapped: bool = False) -> VectorStore:
        """Read an index file; `mapped` memory-maps an exact index's vectors instead (for searching only: 0.01 s
        instead of 0.12 s for 100k x 512)."""
        return cls(faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mapped else 0))

    @property
    def ivf(self):
        return faiss.try_extract_index_ivf(self.index)

    @property
    def nprobe(self) -> int | None:
        return self.ivf.nprobe if self.ivf is not None else None

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self.ivf.nprobe = value

    @property
    def dim(self) -> int:
        return self.index.d

    @property
    def count(self) -> int:
        return self.index.ntotal

    @property
    def kind(self) -> str:
        if self.ivf is None:
            return "IDMap2,Flat"
        return f"IVF{self.ivf.nlist},Flat (nprobe {self.ivf.nprobe})"

    def needs_rebuild(self, *, ivf_threshold: int = IVF_THRESHOLD) -> bool:
        """True when the index type no longer fits its size: exact past the threshold, or IVF cells trained for
        far fewer (or more) vectors than it now holds."""
        if self.ivf is None:
            return self.count >= ivf_threshold
        return self.count < ivf_threshold // 2 or self.ivf.nlist < ivf_cells(self.count) // 2

    def tune_nprobe(self, ids: np.ndarray, vectors: np.ndarray, rng: np.random.Generator, *, queries: int = 200) -> int:
        """Smallest power-of-two nprobe whose recall@10 against exact search reaches TARGET_RECALL, on queries
        that are perturbed stored vectors (cosine about 0.7 to their source, as a text query is far from any clip)."""
        picked = vectors[rng.choice(len(vectors), size=min(queries, len(vectors)), replace=False)]
        noise = rng.normal(size=picked.shape).astype(np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        probe = picked + noise
        probe /= np.linalg.norm(probe, axis=1, keepdims=True)
        truth = [set(ids[rows]) for rows in _exact_top(vectors, probe, 10)]
        nprobe = 1
        while nprobe < self.ivf.nlist:
            self.ivf.nprobe = nprobe
            found = self.search(probe, 10)[1]
            if np.mean([len(truth[i] & set(found[i])) / 10 for i in range(len(probe))]) >= TARGET_RECALL:
                break
            nprobe *= 2
        return min(nprobe, self.ivf.nlist)

    def ids(self) -> np.ndarray:
        if self.ivf is None:
            return faiss.vector_to_array(self.index.id_map) if self.count else np.zeros(0, dtype=np.int64)
        lists = self.ivf.invlists
        chunks = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                  for i in range(self.ivf.nlist) if lists.list_size(i)]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)

    def checksum(self) -> tuple[int, int]:
        """(count, sum of ids), comparable with `Database.segment_checksum`."""
        ids = self.ids()
        return int(ids.size), int(ids.sum())

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these ids, one row each."""
        return np.stack([self.index.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros((0, self.dim), np.float32)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))

    def on_gpu(self) -> VectorStore:
        """A copy on the first GPU for searching, when GPU FAISS and a GPU are present; otherwise this store."""
        if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
            return self
        try:
            return VectorStore(faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, self.index))
        except RuntimeError:  # an index type GPU FAISS cannot hold: search on the CPU
            return self

    def search(self, queries: np.ndarray, k: int, *, only: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n_queries, k'), best first; k' = min(k, count). IVF may pad with id -1.

        `only` restricts the search to these ids (FAISS skips the others while scanning).
        """
        k = min(k, self.count if only is None else len(only))
        if k == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if only is None:
            return self.index.search(queries, k)
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(only, dtype=np.int64))
        params = faiss.SearchParametersIVF(sel=selector, nprobe=self.nprobe) if self.ivf is not None \
            else faiss.SearchParameters(sel=selector)
        return self.index.search(queries, k, params=params)

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


def ivf_cells(count: int) -> int:
    """Number of IVF cells for `count` vectors: about 4 * sqrt(count), a power of two (1M -> 4096)."""
    return 2 ** max(4, round(math.log2(4 * math.sqrt(max(count, 1)))))


def _exact_top(vectors: np.ndarray, queries: np.ndarray, k: int, *, chunk: int = 65536) -> np.ndarray:
    """Row numbers of the exact top-k inner products, scanning `vectors` in chunks to bound memory."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        scores = queries @ vectors[start:start + chunk].T
        rows = np.arange(start, start + scores.shape[1])[None, :].repeat(len(queries), axis=0)
        merged_scores = np.concatenate([best_scores, scores], axis=1)
        merged_rows = np.concatenate([best_rows, rows], axis=1)
        top = np.argsort(-merged_scores, axis=1)[:, :k]
        best_scores = np.take_along_axis(merged_scores, top, axis=1)
        best_rows = np.take_along_axis(merged_rows, top, axis=1)
    return best_rows
