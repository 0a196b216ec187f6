"""SQLite metadata and the FAISS file derived from it."""

import numpy as np
import pytest

from vidsearch.db import Database, Segment
from vidsearch.errors import IndexProblem
from vidsearch.indexdir import VECTORS_FILE, IndexDir
from vidsearch.store import VectorStore


def unit(rng, n, dim=8):
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def segments(rng, n):
    vectors = unit(rng, n + 1)
    return [Segment("segment", 4.0 * i, 4.0 * i + 4, vectors[i]) for i in range(n)] + \
           [Segment("window", 0.0, 4.0 * n, vectors[n])]


def test_saving_a_video_replaces_it_whole(tmp_path):
    rng = np.random.default_rng(0)
    db = Database(tmp_path / "db.sqlite")
    first = db.save_video(path="/a.mp4", size=1, mtime=1.0, hash="h", duration=12.0, fps=30.0, frames=12,
                          segments=segments(rng, 3))
    assert len(first) == 3 and db.segment_checksum() == (3, sum(first))
    second = db.save_video(path="/a.mp4", size=2, mtime=2.0, hash="h2", duration=8.0, fps=30.0, frames=8,
                           segments=segments(rng, 2))
    assert db.segment_checksum() == (2, sum(second))
    assert db.video("/a.mp4")["size"] == 2 and db.stats()["windows"] == 1
    ids, vectors = db.segment_vectors(8)
    assert ids.tolist() == second and vectors.shape == (2, 8)


def test_a_failure_replaces_the_videos_segments(tmp_path):
    db = Database(tmp_path / "db.sqlite")
    db.save_video(path="/a.mp4", size=1, mtime=1.0, hash="h", duration=4.0, fps=1.0, frames=4,
                  segments=segments(np.random.default_rng(1), 1))
    db.save_failure(path="/a.mp4", size=3, mtime=3.0, error="truncated")
    assert db.segment_checksum() == (0, 0)
    assert db.failures() == [{"path": "/a.mp4", "error": "truncated"}]


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    db = Database(tmp_path / "db.sqlite")
    def bad():  # the second segment fails after the first was written
        yield Segment("segment", 0.0, 4.0, np.zeros(8, np.float32))
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        db.save_video(path="/a.mp4", size=1, mtime=1.0, hash="h", duration=8.0, fps=1.0, frames=8, segments=bad())
    assert db.video("/a.mp4") is None and db.segment_checksum() == (0, 0)


def test_the_checksum_query_reads_an_index_not_the_vectors(tmp_path):
    db = Database(tmp_path / "x.db")
    plan = " ".join(str(row) for row in db.db.execute(
        "EXPLAIN QUERY PLAN SELECT count(*), coalesce(sum(id), 0) FROM segments WHERE level = 'segment'").fetchall())
    assert "COVERING INDEX" in plan, plan


def test_settings_round_trip(tmp_path):
    db = Database(tmp_path / "db.sqlite")
    db.set_setting("model", {"spec": "tiny", "dim": 64})
    assert Database(tmp_path / "db.sqlite").get_setting("model") == {"spec": "tiny", "dim": 64}


def test_not_a_database_is_a_clear_error(tmp_path):
    (tmp_path / "db.sqlite").write_text("hello, not sqlite" * 100)
    with pytest.raises(IndexProblem, match="not a vidsearch index"):
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
    assert VectorStore.load(tmp_path / "v.faiss").checksum() == store.checksum() == (49, sum(range(100, 150)) - 107)
    assert [p.name for p in tmp_path.iterdir()] == ["v.faiss"]  # no temporary file left
    mapped = VectorStore.load(tmp_path / "v.faiss", mapped=True)  # as queries read it
    assert mapped.checksum() == store.checksum()
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
    assert store.checksum() == (2, sum(ids))


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
    assert loaded.checksum() == (5900, int(ids[100:].sum())) and loaded.nprobe == store.nprobe
    mapped = VectorStore.load(tmp_path / "ivf.faiss", mapped=True)
    np.testing.assert_array_equal(mapped.search(queries, 10)[1], loaded.search(queries, 10)[1])
    np.testing.assert_allclose(loaded.reconstruct(ids[[100, 5000]]), vectors[[100, 5000]], atol=1e-6)
    assert loaded.needs_rebuild(ivf_threshold=5000) is False and loaded.needs_rebuild(ivf_threshold=20000) is True


def test_without_a_gpu_the_store_searches_on_the_cpu():
    import faiss

    store = VectorStore.empty(8)
    assert faiss.get_num_gpus() > 0 or store.on_gpu() is store
