"""FAISS vectors keyed by int64 segment ids: exact search while small, a tuned IVF index past a threshold; the file
written so that every error raises, and read so that any damage is one exception."""

from __future__ import annotations

import errno
import math
import os
import re
import secrets
import struct
import zlib
from pathlib import Path

import numpy as np

from .faiss_backend import import_faiss
from .faults import crash_point

faiss = import_faiss()  # one line naming the extra to install (cpu or gpu) when FAISS is missing or broken

IVF_THRESHOLD = 200_000  # segments; below this an exact scan answers in well under 0.1 s on 2 CPU cores
TARGET_RECALL = 0.95  # recall@10 of IVF against exact search that nprobe is tuned for
GPU_MAX_SELECTION_K = 2048  # GPU FAISS selects at most this many neighbours (and probes at most this many IVF cells)


class DamagedVectors(Exception):
    """A FAISS file that cannot be read as a vidsearch index: cut short, empty, zeroed, random bytes, another index
    type. The message is one line saying what is wrong with it (not its path)."""


class VectorStore:
    """`IDMap2,Flat` (exact) or `IVF{n},Flat` (ids kept by the inverted lists, a hash-table direct map for
    lookups) inner-product index over L2-normalised vectors.

    A store made by `on_gpu` is a search-only copy on a GPU; `cpu` is the store it was copied from, which answers
    what GPU FAISS cannot (filtered searches, more than GPU_MAX_SELECTION_K neighbours) and everything but searching.
    """

    def __init__(self, index: faiss.Index, *, cpu: VectorStore | None = None):
        self.index = index
        self.cpu = cpu
        self.gpu_resources = None  # kept alive as long as a GPU copy's index

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
        """Read an index file; `mapped` memory-maps its vectors instead (for searching only: 0.01 s instead of 0.12 s
        for 100k x 512). Raises DamagedVectors for a file that is not a complete index of ours, and OSError (such as
        FileNotFoundError) when the file cannot be opened.

        The headers are checked against each other and the file size first: FAISS's memory-mapped reader runs past
        the end of a file cut short in the middle of a field and crashes the process."""
        path = Path(path)
        with open(path, "rb") as f:
            _check_layout(f, os.fstat(f.fileno()).st_size)
        try:
            return cls(faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mapped else 0))
        except RuntimeError as exc:
            raise DamagedVectors(f"FAISS cannot read it: {_faiss_reason(exc)}") from None

    @property
    def ivf(self):
        """The IVF part of the index (of the CPU index, for a GPU copy), or None for an exact index."""
        return faiss.try_extract_index_ivf((self.cpu if self.cpu is not None else self).index)

    @property
    def nprobe(self) -> int | None:
        return self.ivf.nprobe if self.ivf is not None else None

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self.ivf.nprobe = value
        if self.cpu is not None:
            self.index.nprobe = value

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
        # exact top 10 by inner product; FAISS scans the vectors in blocks, so memory stays bounded at any count
        rows = faiss.knn(probe, vectors, min(10, len(vectors)), metric=faiss.METRIC_INNER_PRODUCT)[1]
        truth = [set(ids[r[r >= 0]]) for r in rows]
        nprobe = 1
        while nprobe < self.ivf.nlist:
            self.ivf.nprobe = nprobe
            found = self.search(probe, 10)[1]
            if np.mean([len(truth[i] & set(found[i])) / 10 for i in range(len(probe))]) >= TARGET_RECALL:
                break
            nprobe *= 2
        return min(nprobe, self.ivf.nlist)

    def ids(self) -> np.ndarray:
        if self.cpu is not None:
            return self.cpu.ids()
        if self.ivf is None:
            return faiss.vector_to_array(self.index.id_map) if self.count else np.zeros(0, dtype=np.int64)
        lists = self.ivf.invlists
        chunks = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                  for i in range(self.ivf.nlist) if lists.list_size(i)]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these ids, one row each."""
        if self.cpu is not None:
            return self.cpu.reconstruct(ids)
        return np.stack([self.index.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros((0, self.dim), np.float32)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._not_a_gpu_copy("add to")
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        self._not_a_gpu_copy("remove from")
        if len(ids):
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))

    def _not_a_gpu_copy(self, action: str) -> None:
        if self.cpu is not None:
            raise ValueError(f"cannot {action} a GPU copy of the vectors; change the CPU store and copy it again")

    def on_gpu(self) -> VectorStore:
        """A search-only copy on the first GPU, when GPU FAISS and a GPU are present; otherwise this store. The copy
        keeps this store and sends it the searches GPU FAISS gets wrong or refuses (see `search`)."""
        if self.cpu is not None or not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
            return self
        resources = faiss.StandardGpuResources()
        try:
            copy = VectorStore(faiss.index_cpu_to_gpu(resources, 0, self.index), cpu=self)
        except RuntimeError:  # an index type GPU FAISS cannot hold: search on the CPU
            return self
        copy.gpu_resources = resources
        return copy

    def search(self, queries: np.ndarray, k: int, *, only: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n_queries, k'), best first; k' = min(k, count). IVF may pad with id -1.

        `only` restricts the search to these ids (FAISS skips the others while scanning).

        A GPU copy answers on the CPU store it came from when `only` is given (GPU flat search ignores an id
        selector and returns unfiltered results; GPU IVF refuses plain SearchParameters), when k' or IVF's nprobe is
        above GPU_MAX_SELECTION_K (GPU FAISS cannot select more).
        """
        k = min(k, self.count if only is None else len(only))
        if k == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        if self.cpu is not None and (only is not None or k > GPU_MAX_SELECTION_K or (self.nprobe or 0) > GPU_MAX_SELECTION_K):
            return self.cpu.search(queries, k, only=only)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if only is None:
            return self.index.search(queries, k)
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(only, dtype=np.int64))
        params = faiss.SearchParametersIVF(sel=selector, nprobe=self.nprobe) if self.ivf is not None \
            else faiss.SearchParameters(sel=selector)
        return self.index.search(queries, k, params=params)

    def save(self, path: Path) -> dict:
        """Write the index to a temporary file beside `path` through our own file object (so a full disk, or any
        other write error, raises rather than leaving a short file), fsync it, rename it into place and fsync the
        folder. On any error the temporary file is removed, `path` is left as it was and the error propagates
        (OSError with errno ENOSPC for a full disk).

        Returns the stamp of what was written: {"bytes": size, "crc32": zlib.crc32 of the bytes (computed while
        writing), "count": vectors, "mtime_ns": the file's st_mtime_ns}."""
        if self.cpu is not None:
            return self.cpu.save(path)
        path = Path(path)
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(6)}.tmp")  # IndexDir finds leftovers by this pattern
        size = crc = 0

        def write(chunk: bytes) -> int:
            nonlocal size, crc
            out.write(chunk)  # an OSError here propagates through FAISS to our caller
            size += len(chunk)
            crc = zlib.crc32(chunk, crc)
            return len(chunk)

        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
        try:
            with open(fd, "wb") as out:
                faiss.write_index(self.index, faiss.PyCallbackIOWriter(write))
                out.flush()
                os.fsync(out.fileno())
                if os.fstat(out.fileno()).st_size != size:
                    raise OSError(errno.EIO, f"wrote {size} bytes but the file holds {os.fstat(out.fileno()).st_size}",
                                  str(tmp))
            crash_point("faiss-write")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_folder(path.parent)
        return {"bytes": size, "crc32": crc, "count": self.count, "mtime_ns": path.stat().st_mtime_ns}


def ivf_cells(count: int) -> int:
    """Number of IVF cells for `count` vectors: about 4 * sqrt(count), a power of two (1M -> 4096)."""
    return 2 ** max(4, round(math.log2(4 * math.sqrt(max(count, 1)))))


def file_crc32(path: Path, *, chunk: int = 1 << 20) -> int:
    """zlib.crc32 of a file's bytes, read `chunk` bytes at a time (what `VectorStore.save` returns as "crc32")."""
    crc = 0
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            crc = zlib.crc32(view[:n], crc)
    return crc


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable."""
    if os.name == "nt":  # Windows cannot open a folder to fsync it (NTFS journals the rename)
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _faiss_reason(exc: RuntimeError) -> str:
    """The last line of a FAISS error without its C++ function and source location."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^Error in .*? at \S+:\d+: ", "", text)


class _Headers:
    """Reads the fixed-size fields of a FAISS file and skips its arrays, never past the end of the file."""

    def __init__(self, f, size: int):
        self.f, self.size, self.pos = f, size, 0

    def read(self, n: int) -> bytes:
        if self.pos + n > self.size:
            raise DamagedVectors(f"cut short: {self.size} bytes, its headers need more" if self.size else "empty file")
        self.pos += n
        return self.f.read(n)

    def skip(self, n: int) -> None:
        if self.pos + n > self.size:
            raise DamagedVectors(f"cut short: {self.size} bytes, its headers say {self.pos + n} or more")
        self.f.seek(n, os.SEEK_CUR)
        self.pos += n

    def fourcc(self) -> bytes:
        return self.read(4)

    def u64(self) -> int:
        return struct.unpack("<Q", self.read(8))[0]

    def index(self) -> tuple[int, int]:
        """(d, ntotal) of an inner-product index header."""
        d, ntotal, _, _, _, metric = struct.unpack("<iqqq?i", self.read(33))
        if metric != faiss.METRIC_INNER_PRODUCT:
            raise DamagedVectors(f"not an inner-product index (metric {metric})")
        if d <= 0 or ntotal < 0:
            raise DamagedVectors(f"impossible header (dimension {d}, {ntotal} vectors)")
        return d, ntotal

    def flat(self, what: str) -> tuple[int, int]:
        """(d, ntotal) of an IndexFlatIP, its vectors skipped."""
        if (code := self.fourcc()) != b"IxFI":
            raise DamagedVectors(f"{what} is {code!r}, not an inner-product flat index")
        d, ntotal = self.index()
        if (floats := self.u64()) != d * ntotal:
            raise DamagedVectors(f"{what} holds {floats} floats for {ntotal} vectors of size {d}")
        self.skip(4 * floats)
        return d, ntotal


def _check_layout(f, size: int) -> None:
    """Check that a file is a whole `IDMap2,Flat` or `IVF,Flat` inner-product index as FAISS writes it (the layout of
    faiss/impl/index_write.cpp): its headers agree with each other and add up to exactly the file's size. Reads only
    the headers and IVF's list sizes (a few KB); what the vectors and ids hold is for the caller's CRC to check."""
    h = _Headers(f, size)
    code = h.fourcc()
    if code == b"IxM2":
        d, ntotal = h.index()
        if h.flat("its storage") != (d, ntotal):
            raise DamagedVectors("the id map and its storage disagree on the dimension or the count")
        if (n_ids := h.u64()) != ntotal:
            raise DamagedVectors(f"{n_ids} ids for {ntotal} vectors")
        h.skip(8 * n_ids)
    elif code == b"IwFl":
        d, ntotal = h.index()
        nlist, nprobe = h.u64(), h.u64()
        if h.flat("its quantizer") != (d, nlist) or not 1 <= nprobe <= nlist:
            raise DamagedVectors(f"the quantizer does not hold {nlist} centroids of size {d}, or nprobe {nprobe} is off")
        map_type, n_array = h.read(1)[0], h.u64()
        h.skip(8 * n_array)
        n_pairs = h.u64() if map_type == faiss.DirectMap.Hashtable else 0
        h.skip(16 * n_pairs)
        if (map_type, n_array, n_pairs) not in {(faiss.DirectMap.NoMap, 0, 0), (faiss.DirectMap.Array, ntotal, 0),
                                                (faiss.DirectMap.Hashtable, 0, ntotal)}:
            raise DamagedVectors(f"direct map of type {map_type} with {n_array + n_pairs} entries for {ntotal} vectors")
        if (code := h.fourcc()) != b"ilar" or h.u64() != nlist or h.u64() != 4 * d:
            raise DamagedVectors("inverted lists of another kind or shape")
        list_type, n_sizes = h.fourcc(), h.u64()
        if n_sizes > 2 * nlist:
            raise DamagedVectors(f"{n_sizes} list sizes for {nlist} lists")
        sizes = np.frombuffer(h.read(8 * n_sizes), dtype="<u8")
        if list_type == b"sprs" and n_sizes % 2 == 0 and np.all(sizes[0::2] < nlist):
            sizes = sizes[1::2]
        elif list_type != b"full" or n_sizes != nlist:
            raise DamagedVectors("unreadable inverted list sizes")
        if (listed := int(sizes.sum(dtype=object))) != ntotal:
            raise DamagedVectors(f"inverted lists hold {listed} vectors, the header says {ntotal}")
        h.skip(listed * (4 * d + 8))
    else:
        raise DamagedVectors("not a FAISS file" if not code.isalnum() else f"a FAISS {code.decode()} index, "
                                                                          "not IDMap2,Flat or IVF,Flat")
    if h.pos != size:
        raise DamagedVectors(f"{size} bytes, its headers add up to {h.pos}")
