"""SQLite metadata and the FAISS file derived from it."""

import errno
import os
import shutil
import stat
import struct
import subprocess

import faiss
import numpy as np
import pytest

from vidsearch.db import Database, Segment
from vidsearch.errors import IndexProblem
from vidsearch.indexdir import VECTORS_FILE, IndexDir
from vidsearch.store import GPU_MAX_SELECTION_K, DamagedVectors, VectorStore, file_crc32


def unit(rng, n, dim=8):
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def held(store) -> list[int]:
    """The ids a store holds, sorted."""
    return sorted(store.ids().tolist())


def segments(rng, n):
    vectors = unit(rng, n + 1)
    return [Segment("segment", 4.0 * i, 4.0 * i + 4, vectors[i]) for i in range(n)] + \
           [Segment("window", 0.0, 4.0 * n, vectors[n])]


def test_saving_a_video_replaces_it_whole(tmp_path):
    rng = np.random.default_rng(0)
    db = Database(tmp_path / "db.sqlite")
    first = db.save_video(path="/a.mp4", size=1, mtime=1.0, hash="h", duration=12.0, fps=30.0, frames=12,
                          segments=segments(rng, 3))
    assert len(first) == 3 and db.segment_count() == 3
    second = db.save_video(path="/a.mp4", size=2, mtime=2.0, hash="h2", duration=8.0, fps=30.0, frames=8,
                           segments=segments(rng, 2))
    assert db.segment_count() == 2
    assert db.video("/a.mp4")["size"] == 2 and db.stats()["windows"] == 1
    ids, vectors = db.segment_vectors(8)
    assert ids.tolist() == second and vectors.shape == (2, 8)


def test_a_failure_replaces_the_videos_segments(tmp_path):
    db = Database(tmp_path / "db.sqlite")
    db.save_video(path="/a.mp4", size=1, mtime=1.0, hash="h", duration=4.0, fps=1.0, frames=4,
                  segments=segments(np.random.default_rng(1), 1))
    db.save_failure(path="/a.mp4", size=3, mtime=3.0, error="truncated")
    assert db.segment_count() == 0
    assert db.failures() == [{"path": "/a.mp4", "error": "truncated"}]


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    db = Database(tmp_path / "db.sqlite")
    def bad():  # the second segment fails after the first was written
        yield Segment("segment", 0.0, 4.0, np.zeros(8, np.float32))
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        db.save_video(path="/a.mp4", size=1, mtime=1.0, hash="h", duration=8.0, fps=1.0, frames=8, segments=bad())
    assert db.video("/a.mp4") is None and db.segment_count() == 0 and db.generation() == 0


def test_the_generation_moves_with_every_change_to_segment_rows_and_only_then(tmp_path):
    rng = np.random.default_rng(3)
    db = Database(tmp_path / "db.sqlite")
    seen = [db.generation()]

    def changed(action):
        action()
        seen.append(db.generation())
        return seen[-1] != seen[-2]

    assert changed(lambda: db.save_video(path="/a.mp4", size=1, mtime=1.0, hash="h", duration=8.0, fps=1.0, frames=8,
                                         segments=segments(rng, 2)))
    assert changed(lambda: db.save_video(path="/b.mp4", size=1, mtime=1.0, hash="hb", duration=8.0, fps=1.0, frames=8,
                                         segments=segments(rng, 2)))
    # the case: b's ids are the highest, so replacing b reuses them; the generation still moves
    assert changed(lambda: db.save_video(path="/b.mp4", size=2, mtime=2.0, hash="hc", duration=8.0, fps=1.0, frames=8,
                                         segments=segments(rng, 2)))
    assert not changed(lambda: db.touch_video("/a.mp4", size=3, mtime=3.0))
    assert not changed(lambda: db.set_setting("faiss", {"generation": 1}))
    assert changed(lambda: db.db.execute("UPDATE segments SET vector = vector WHERE level = 'segment'"))
    assert changed(lambda: db.save_failure(path="/a.mp4", size=4, mtime=4.0, error="gone bad"))
    assert changed(lambda: db.remove_videos(["/b.mp4"]))
    assert db.segment_count() == 0


def test_counting_segments_reads_an_index_not_the_vectors(tmp_path):
    db = Database(tmp_path / "x.db")
    for sql in ("SELECT count(*) FROM segments WHERE level = 'segment'",
                "SELECT video_id, count(*) FROM segments WHERE level = 'segment' GROUP BY video_id"):
        plan = " ".join(str(row) for row in db.db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall())
        assert "COVERING INDEX" in plan, plan


def test_settings_round_trip(tmp_path):
    db = Database(tmp_path / "db.sqlite")
    db.set_setting("model", {"spec": "tiny", "dim": 64})
    assert Database(tmp_path / "db.sqlite").get_setting("model") == {"spec": "tiny", "dim": 64}


def test_not_a_database_is_a_clear_error(tmp_path):
    (tmp_path / "db.sqlite").write_text("hello, not sqlite" * 100)
    with pytest.raises(IndexProblem, match="damaged or unreadable .*move the database aside"):
        Database(tmp_path / "db.sqlite")


def test_exact_search_finds_the_nearest_and_saves_atomically(tmp_path):
    rng = np.random.default_rng(2)
    vectors = unit(rng, 50)
    store = VectorStore.build(np.arange(100, 150), vectors, 8)
    scores, ids = store.search(vectors[[7, 30]], 3)
    assert ids[:, 0].tolist() == [107, 130] and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    store.remove(np.array([107]))
    assert store.search(vectors[[7]], 1)[1][0, 0] != 107
    store.save(tmp_path / "v.faiss")
    expected = sorted(set(range(100, 150)) - {107})
    assert sorted(VectorStore.load(tmp_path / "v.faiss").ids()) == sorted(store.ids()) == expected
    assert [p.name for p in tmp_path.iterdir()] == ["v.faiss"]  # no temporary file left
    mapped = VectorStore.load(tmp_path / "v.faiss", mapped=True)  # as queries read it
    assert sorted(mapped.ids()) == expected
    for a, b in zip(mapped.search(vectors[:5], 4), store.search(vectors[:5], 4)):
        np.testing.assert_array_equal(a, b)


def test_faiss_is_rebuilt_when_it_disagrees_with_sqlite(tmp_path):
    rng = np.random.default_rng(3)
    index = IndexDir(tmp_path, create=True)
    index.db.set_setting("model", {"spec": "x", "fingerprint": "f", "dim": 8})
    ids = index.db.save_video(path="/a.mp4", size=1, mtime=1.0, hash="h", duration=8.0, fps=1.0, frames=8,
                              segments=segments(rng, 2))
    VectorStore.empty(8).save(tmp_path / VECTORS_FILE)  # stale: holds nothing
    store = IndexDir(tmp_path).vectors()
    assert held(store) == sorted(ids)


def test_a_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(IndexProblem, match="vidsearch index PATH"):
        IndexDir(tmp_path / "none")


def clustered(rng, n, dim=32, centres=50):
    means = unit(rng, centres, dim)
    v = means[rng.integers(0, centres, n)] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32) / np.sqrt(dim)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_past_the_threshold_an_ivf_index_is_trained_and_tuned_for_recall(tmp_path):
    rng = np.random.default_rng(4)
    vectors = clustered(rng, 6000)
    ids = np.arange(10, 6010)
    store = VectorStore.build(ids, vectors, 32, ivf_threshold=5000)
    assert store.kind.startswith("IVF") and store.nprobe >= 1
    assert VectorStore.build(ids[:4000], vectors[:4000], 32, ivf_threshold=5000).kind == "IDMap2,Flat"
    exact = VectorStore.build(ids, vectors, 32, ivf_threshold=10**9)
    queries = clustered(np.random.default_rng(5), 100)
    truth, found = exact.search(queries, 10)[1], store.search(queries, 10)[1]
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])
    assert recall >= 0.9, recall
    store.remove(ids[:100])
    store.save(tmp_path / "ivf.faiss")
    loaded = VectorStore.load(tmp_path / "ivf.faiss")
    assert held(loaded) == sorted(ids[100:].tolist()) and loaded.nprobe == store.nprobe
    mapped = VectorStore.load(tmp_path / "ivf.faiss", mapped=True)
    np.testing.assert_array_equal(mapped.search(queries, 10)[1], loaded.search(queries, 10)[1])
    np.testing.assert_allclose(loaded.reconstruct(ids[[100, 5000]]), vectors[[100, 5000]], atol=1e-6)
    assert loaded.needs_rebuild(ivf_threshold=5000) is False and loaded.needs_rebuild(ivf_threshold=20000) is True


@pytest.fixture
def small_disk(tmp_path, request):
    """A 2 MB tmpfs to fill up (needs root to mount; CI fails rather than skips without it)."""
    folder = tmp_path / "small"
    folder.mkdir()
    mount = shutil.which("mount")
    result = subprocess.run([mount, "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True,
                            text=True) if mount else None
    if result is None or result.returncode != 0:
        reason = "cannot mount a 2 MB tmpfs to fill up: " + (result.stderr.strip() if result else "no mount command") + \
                 " (the full-disk test needs root)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    request.addfinalizer(lambda: subprocess.run(["umount", str(folder)], check=True))
    return folder


def test_a_full_disk_raises_and_keeps_the_old_file(small_disk):
    rng = np.random.default_rng(6)
    path = small_disk / "v.faiss"
    old = VectorStore.build(np.arange(100), unit(rng, 100, 16), 16)
    old.save(path)
    before = path.read_bytes()
    big = VectorStore.build(np.arange(40_000), unit(rng, 40_000, 16), 16)  # 2.9 MB: more than the disk holds
    with pytest.raises(OSError) as raised:
        big.save(path)
    assert raised.value.errno == errno.ENOSPC
    assert path.read_bytes() == before and [p.name for p in small_disk.iterdir()] == ["v.faiss"]  # no temp file left
    assert held(VectorStore.load(path)) == held(old)
    smaller = VectorStore.build(np.arange(10_000), unit(rng, 10_000, 16), 16)  # fits once the temp file is gone
    assert smaller.save(path)["count"] == 10_000 and held(VectorStore.load(path)) == held(smaller)


def test_a_disk_that_fills_up_at_the_last_write_raises_too(small_disk):
    """The short write happens when the file is flushed, not while FAISS writes (the 0-byte file of issue #10)."""
    rng = np.random.default_rng(11)
    path = small_disk / "v.faiss"
    VectorStore.build(np.arange(10), unit(rng, 10, 16), 16).save(path)
    before = path.read_bytes()
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(4096))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    os.truncate(filler, filler.stat().st_size - 4096)  # one page free; the next file needs two
    with pytest.raises(OSError) as raised:
        VectorStore.build(np.arange(100), unit(rng, 100, 16), 16).save(path)
    assert raised.value.errno == errno.ENOSPC
    assert path.read_bytes() == before and sorted(p.name for p in small_disk.iterdir()) == ["filler", "v.faiss"]


def test_save_returns_the_stamp_of_what_it_wrote(tmp_path):
    rng = np.random.default_rng(7)
    store = VectorStore.build(np.arange(5, 505), unit(rng, 500, 16), 16)
    path = tmp_path / "v.faiss"
    umask = os.umask(0o022)
    try:
        stamp = store.save(path)
    finally:
        os.umask(umask)
    info = path.stat()
    assert stamp == {"bytes": info.st_size, "crc32": file_crc32(path), "count": 500, "mtime_ns": info.st_mtime_ns}
    assert stat.S_IMODE(info.st_mode) == 0o644
    assert file_crc32(path, chunk=1000) == stamp["crc32"]  # the same in any chunk size
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of a vector: FAISS cannot tell, the CRC can
    path.write_bytes(data)
    assert path.stat().st_size == stamp["bytes"] and file_crc32(path) != stamp["crc32"]


def stores(rng):
    """One store of each kind a file may hold: exact, and IVF."""
    vectors = unit(rng, 3000, 16)
    return {"exact": VectorStore.build(np.arange(3000), vectors, 16),
            "ivf": VectorStore.build_ivf(np.arange(3000), vectors, 16, nlist=16)}


@pytest.mark.parametrize("kind", ["exact", "ivf"])
@pytest.mark.parametrize("mapped", [False, True])
def test_a_damaged_file_raises_damaged_vectors(tmp_path, kind, mapped):
    rng = np.random.default_rng(8)
    good = tmp_path / "good.faiss"
    stores(rng)[kind].save(good)
    data = good.read_bytes()
    bad = tmp_path / "bad.faiss"
    # every cut in the headers (FAISS's memory-mapped reader crashes on a cut inside a field), then through the data
    cuts = [*range(0, 300), *range(300, len(data), 4099), len(data) - 1]
    damaged = {f"cut at {n}": data[:n] for n in cuts}
    damaged.update({"zeroed": bytes(len(data)), "random": rng.bytes(len(data)), "one byte more": data + b"\0",
                    "not FAISS": b"SQLite format 3\0" * 100})
    for name, index in {"L2 flat": faiss.IndexFlatL2(16), "IDMap (not IDMap2)": faiss.IndexIDMap(faiss.IndexFlatIP(16)),
                        "HNSW": faiss.IndexHNSWFlat(16, 8, faiss.METRIC_INNER_PRODUCT)}.items():
        damaged[name] = faiss.serialize_index(index).tobytes()
    for name, content in damaged.items():
        bad.write_bytes(content)
        with pytest.raises(DamagedVectors) as raised:
            VectorStore.load(bad, mapped=mapped)
        assert str(raised.value) and "\n" not in str(raised.value), name
    with pytest.raises(FileNotFoundError):  # missing is not damaged
        VectorStore.load(tmp_path / "none.faiss", mapped=mapped)


@pytest.mark.parametrize("mapped", [False, True])
def test_every_layout_we_write_loads(tmp_path, mapped):
    """The header check accepts what FAISS writes: empty, exact, IVF with most lists full, IVF with few (sparse)."""
    rng = np.random.default_rng(9)
    built = stores(rng)
    sparse = VectorStore.build_ivf(np.arange(3000), unit(rng, 3000, 16), 16, nlist=64)
    lists = sparse.ivf.invlists
    keep = [i for i in range(64) if lists.list_size(i)][:5]
    sparse.remove(np.setdiff1d(sparse.ids(), np.concatenate([faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i))
                                                             for i in keep])))
    for name, store in {"empty": VectorStore.empty(8), **built, "sparse ivf": sparse}.items():
        stamp = store.save(tmp_path / "v.faiss")
        loaded = VectorStore.load(tmp_path / "v.faiss", mapped=mapped)
        assert (held(loaded), loaded.kind) == (held(store), store.kind) and stamp["count"] == store.count, name
    assert b"ilar" + struct.pack("<QQ", 64, 4 * 16) + b"sprs" in (tmp_path / "v.faiss").read_bytes()  # lists stored sparse


class FakeGpuIndex:
    """Searches as GPU FAISS does, on the CPU: no more than GPU_MAX_SELECTION_K neighbours (or IVF cells probed),
    search parameters (and so any id selector) ignored by flat search and refused by IVF unless SearchParametersIVF."""

    def __init__(self, index):
        self.index = faiss.clone_index(index)
        self.d, self.ntotal = index.d, index.ntotal
        self.is_ivf = faiss.try_extract_index_ivf(self.index) is not None
        self.searches = 0

    @property
    def nprobe(self):
        return faiss.try_extract_index_ivf(self.index).nprobe

    @nprobe.setter
    def nprobe(self, value):
        faiss.try_extract_index_ivf(self.index).nprobe = value

    def search(self, x, k, params=None):
        if k > GPU_MAX_SELECTION_K or (self.is_ivf and self.nprobe > GPU_MAX_SELECTION_K):
            raise RuntimeError("Error: 'k <= GPU_MAX_SELECTION_K' failed")
        if self.is_ivf and params is not None and not isinstance(params, faiss.SearchParametersIVF):
            raise RuntimeError("GPU IVF index: only SearchParametersIVF implemented at present")
        self.searches += 1
        return self.index.search(x, k)


@pytest.mark.parametrize("kind", ["exact", "ivf"])
def test_a_gpu_copy_sends_what_the_gpu_cannot_do_to_the_cpu(monkeypatch, kind):
    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: object(), raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", lambda resources, device, index: FakeGpuIndex(index), raising=False)
    rng = np.random.default_rng(10)
    store = stores(rng)[kind]
    gpu = store.on_gpu()
    assert isinstance(gpu.index, FakeGpuIndex) and gpu.cpu is store and gpu.on_gpu() is gpu
    assert (gpu.kind, gpu.count, gpu.dim, held(gpu)) == (store.kind, store.count, store.dim, held(store))
    queries = unit(rng, 4, 16)

    for a, b in zip(gpu.search(queries, 10), store.search(queries, 10)):
        np.testing.assert_array_equal(a, b)
    assert gpu.index.searches == 1  # plain searches run on the GPU

    only = np.arange(0, 3000, 7)
    scores, ids = gpu.search(queries, 10, only=only)
    assert set(ids.ravel()) <= set(only.tolist())  # filtered, although the GPU would ignore the filter
    np.testing.assert_array_equal(ids, store.search(queries, 10, only=only)[1])

    scores, ids = gpu.search(queries, 2500)  # past what GPU FAISS can select
    assert ids.shape == (4, 2500)
    np.testing.assert_array_equal(ids, store.search(queries, 2500)[1])
    if kind == "ivf":  # more cells probed than GPU FAISS can (1M segments make 4096 cells)
        gpu.nprobe = 4096
        np.testing.assert_array_equal(gpu.search(queries, 10)[1], store.search(queries, 10)[1])
    assert gpu.index.searches == 1
    with pytest.raises(ValueError, match="GPU copy"):
        gpu.add(np.array([5000]), unit(rng, 1, 16))
