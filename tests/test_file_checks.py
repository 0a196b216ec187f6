"""The indexer's checks before any decoding: each file settled in order, new content hashed ahead in threads."""

from __future__ import annotations

import os
import threading

import numpy as np

from vidsearch import indexer as indexer_module
from vidsearch.db import Segment
from vidsearch.indexdir import IndexDir
from vidsearch.indexer import FileResult, Indexer, file_hash


def comparable(outcome):
    """A check's outcome without the file's access time (reading it may change it)."""
    if isinstance(outcome, FileResult):
        return outcome
    path, stat, digest = outcome
    return path, stat.st_size, stat.st_mtime_ns, digest


def test_check_files_equal_check_file_one_by_one_and_hash_only_new_content_in_threads(tmp_path, monkeypatch):
    folder = tmp_path / "videos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        path = folder / f"{i:02}.mp4"
        path.write_bytes(rng.bytes(50_000 + i))
        paths.append(path)
    (folder / "03.mp4").write_bytes((folder / "01.mp4").read_bytes())  # a copy: the same hash as 01
    index = IndexDir(tmp_path / "index", create=True)
    index.lock_for_writing()
    indexer = Indexer(index, model="tiny", device="cpu")
    known = paths[5]  # indexed before, unchanged since: settled by its size and time, never read
    stat = known.stat()
    index.db.set_setting("model", indexer.model_record)
    vector = np.ones(indexer.model_record["dim"], np.float32) / np.sqrt(indexer.model_record["dim"])
    index.commit(lambda: ([], index.db.save_video(path=str(known), size=stat.st_size, mtime=stat.st_mtime,
                                                 hash=file_hash(known), duration=1.0, fps=1.0, frames=1,
                                                 segments=[Segment("segment", 0.0, 1.0, vector)])))
    hashed = []

    def recording_hash(path):
        hashed.append((path.name, threading.current_thread().name))
        return file_hash(path)

    monkeypatch.setattr(indexer_module, "file_hash", recording_hash)
    try:
        ahead = list(indexer.check_files(paths))
    finally:
        indexer.text.close()  # the known file's text was read by a worker process: let it go
    assert all(thread.startswith("vidsearch-hash") for _, thread in hashed)
    assert sorted(name for name, _ in hashed) == sorted(p.name for p in paths if p != known)
    hashed.clear()
    one_by_one = [indexer.check_file(path) for path in paths]  # reads no text: the known file's is read now
    assert {thread for _, thread in hashed} == {threading.current_thread().name}
    # the known file's text was never read, so the first check reads it (its frames stay as they are)
    assert ahead[5].status == "text_updated" and one_by_one[5] == FileResult(str(known), "unchanged")
    assert [comparable(o) for o in ahead[:5] + ahead[6:]] == [comparable(o) for o in one_by_one[:5] + one_by_one[6:]]
    assert ahead[1][2] == ahead[3][2] == file_hash(paths[1])


def test_a_file_that_goes_while_it_is_hashed_ahead_is_one_failure(tmp_path, monkeypatch):
    paths = []
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"x" * 1000)
        paths.append(tmp_path / name)
    index = IndexDir(tmp_path / "index", create=True)
    index.lock_for_writing()
    indexer = Indexer(index, model="tiny", device="cpu")

    def vanishing_hash(path):
        if path.name == "a.mp4":
            raise FileNotFoundError(2, os.strerror(2))
        return file_hash(path)

    monkeypatch.setattr(indexer_module, "file_hash", vanishing_hash)
    first, second = indexer.check_files(paths)
    assert first.status == "failed" and first.reason == "cannot read: No such file or directory"
    assert second[2] == file_hash(paths[1])
