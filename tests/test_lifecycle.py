"""The index stays right as the library changes, survives SIGKILL anywhere, and allows one writer."""

import json
import os
import shutil
import signal
import subprocess

import av
import numpy as np
import pytest
from cli_helpers import VIDSEARCH, run_cli, run_json
from index_helpers import library, snapshot
from media import write_bad_files, write_video

from vidsearch.indexdir import IndexDir
from vidsearch.registry import registry_dir

pytestmark = pytest.mark.slow  # every test here runs the CLI on videos it indexes


def test_modify_delete_rename_add_redo_only_the_changed_work(tmp_path):
    videos, home = library(tmp_path / "videos"), tmp_path / "index"
    first = run_json("index", str(videos), "--model", "tiny", home=home)
    assert first["indexed"] == 3
    write_video(videos / "a.mp4", seconds=4, fps=5, size=(96, 64), frame_fn=lambda i, w, h: _flat(i * 50, w, h))  # modified
    os.remove(videos / "b.mp4")  # deleted
    os.rename(videos / "c.mp4", videos / "c-renamed.mp4")  # renamed
    write_video(videos / "d.mp4", seconds=3, fps=5, size=(96, 64))  # added
    again = run_json("index", str(videos), home=home)
    assert (again["indexed"], again["reused"], again["removed"], again["unchanged"]) == (2, 1, 2, 0)
    assert again["frames"] == 4 + 3  # only a.mp4 and d.mp4 were decoded and encoded (1 frame per second)
    paths = {v[0] for v in snapshot(home)[0]}
    assert paths == {str(videos / n) for n in ("a.mp4", "c-renamed.mp4", "d.mp4")}
    assert run_cli("verify", home=home).returncode == 0
    hits = run_json("query", "anything at all", "-k", "50", home=home)["hits"]
    assert {h["path"] for h in hits} <= paths and hits
    run_cli("remove", str(videos / "d.mp4"), home=home)
    assert str(videos / "d.mp4") not in {h["path"] for h in run_json("query", "x", "-k", "50", home=home)["hits"]}
    assert run_json("status", home=home)["indexed"] == 2
    assert run_cli("verify", home=home).returncode == 0


def test_a_touched_but_identical_file_is_not_re_encoded(tmp_path):
    videos, home = library(tmp_path / "videos", names=("a",)), tmp_path / "index"
    run_cli("index", str(videos), "--model", "tiny", home=home)
    os.utime(videos / "a.mp4", (1e9, 1e9))
    again = run_json("index", str(videos), home=home)
    assert again["unchanged"] == 1 and again["frames"] == 0


def test_windows_batched_across_files_give_the_vectors_of_one_at_a_time(tmp_path):
    # 4-frame windows: a.mp4 has 6 frames (windows of 4 and 2), b.mp4 8 (4, 4), c.mp4 10 (4, 4, 2), so batches
    # mix files and lengths (padded and masked), and a file's last window can wait in a batch
    videos = library(tmp_path / "videos")
    single, batched = tmp_path / "single", tmp_path / "batched"
    run_cli("index", str(videos), "--model", "tiny", "--window", "4", "--batch", "1", home=single)
    summary = run_json("index", str(videos), "--model", "tiny", "--window", "4", "--batch", "3", home=batched)
    assert summary["indexed"] == 3
    (videos_a, segments_a), (videos_b, segments_b) = snapshot(single), snapshot(batched)
    assert videos_a == videos_b and [s[:4] for s in segments_a] == [s[:4] for s in segments_b]
    for a, b in zip(segments_a, segments_b):
        np.testing.assert_allclose(np.frombuffer(a[4], np.float32), np.frombuffer(b[4], np.float32), atol=1e-5)
    assert run_cli("verify", home=batched).returncode == 0


@pytest.mark.parametrize("point", ["decode", "between-videos", "faiss-write", "faiss-stamp"])
def test_sigkill_anywhere_then_rerun_equals_a_clean_run(tmp_path, point):
    videos = library(tmp_path / "videos")
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    run_cli("index", str(videos), "--model", "tiny", home=clean)
    env = {**os.environ, "VIDSEARCH_HOME": str(crashed), "VIDSEARCH_TEST_KILL_AT": point}
    killed = subprocess.run([str(VIDSEARCH), "index", str(videos), "--model", "tiny"], env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    if point == "faiss-write":
        assert IndexDir(crashed).leftover_temp_files(), "the kill should leave a temporary FAISS file"
    run_cli("index", str(videos), "--model", "tiny", home=crashed)
    assert snapshot(crashed) == snapshot(clean)
    assert run_cli("verify", home=crashed).returncode == 0
    assert not IndexDir(crashed).leftover_temp_files()


def test_a_second_writer_is_refused_and_readers_see_committed_state(tmp_path):
    videos, home = library(tmp_path / "videos", names=("a",)), tmp_path / "index"
    run_cli("index", str(videos), "--model", "tiny", home=home)
    holder = IndexDir(home)
    holder.lock_for_writing()
    holder.db.db.execute("BEGIN IMMEDIATE")  # a writer mid-transaction
    holder.db.db.execute("DELETE FROM segments")
    try:
        refused = run_cli("index", str(videos), home=home, check=1)
        assert "another vidsearch command is writing" in refused.stderr and len(refused.stderr.splitlines()) == 1
        hits = run_json("query", "something", home=home)["hits"]  # WAL: the last committed state
        assert hits and hits[0]["path"] == str(videos / "a.mp4")
    finally:
        holder.db.db.execute("ROLLBACK")
        holder.close()
    assert run_cli("verify", home=home).returncode == 0


def test_two_concurrent_index_runs_do_not_corrupt(tmp_path):
    videos, home = library(tmp_path / "videos"), tmp_path / "index"
    env = {**os.environ, "VIDSEARCH_HOME": str(home)}
    run_cli("index", str(videos / "a.mp4"), "--model", "tiny", home=home)  # create the index first
    runs = [subprocess.Popen([str(VIDSEARCH), "index", str(videos)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(r.wait(), r.stderr.read()) for r in runs]
    assert sorted(code for code, _ in outcomes) in ([0, 0], [0, 1])
    for code, err in outcomes:
        if code == 1:
            assert "another vidsearch command is writing" in err
    assert run_json("status", home=home)["indexed"] == 3
    assert run_cli("verify", home=home).returncode == 0


def test_model_and_settings_are_pinned_unless_reindex(tmp_path):
    videos, home = library(tmp_path / "videos", names=("a",)), tmp_path / "index"
    run_cli("index", str(videos), "--model", "tiny", home=home)
    other = tmp_path / "other.json"
    config = json.loads((registry_dir() / "tiny.json").read_text())
    other.write_text(json.dumps({**config, "name": "tiny-seed-1", "init_seed": 1}))
    refused = run_cli("index", str(videos), "--model", str(other), home=home, check=1)
    assert "--reindex" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert "--reindex" in run_cli("index", str(videos), "--segment", "2", home=home, check=1).stderr
    rebuilt = run_json("index", str(videos), "--model", str(other), "--reindex", home=home)
    assert rebuilt["indexed"] == 1
    assert run_json("status", home=home)["model"]["name"] == "tiny-seed-1"


def test_windows_end_at_scene_cuts_by_default_and_the_choice_is_pinned(tmp_path):
    """Scenes of 5, 7 and 6 s, windows of 8 frames at 1 fps: by default the windows start at 0, 5 and 12 s (the
    cuts), with --no-cuts at 0, 8 and 16 s; a later run that says otherwise is refused until --reindex, and an index
    recorded before the option existed stays as it was built (without)."""
    from vidsearch.synthetic import Scene
    from vidsearch.synthetic import write_video as write_scenes

    videos, home = tmp_path / "videos", tmp_path / "index"
    videos.mkdir()
    write_scenes(videos / "cuts.mp4", [Scene("red", "circle", "left"), Scene("blue", "square", "up"),
                                       Scene("green", "triangle", "right")], scene_seconds=[5, 7, 6], fps=4.0, size=64)

    def window_starts():
        index = IndexDir(home)
        rows, _ = index.db.window_rows(index.dim)
        return [start for _, _, start, _ in rows]

    run_cli("index", str(videos), "--model", "tiny", "--window", "8", home=home)
    assert window_starts() == [0.0, 5.0, 12.0]
    # windows of 5, 7 and 6 frames in one forward pass give the vectors of one at a time
    batched = tmp_path / "batched"
    run_cli("index", str(videos), "--model", "tiny", "--window", "8", "--batch", "3", home=batched)
    (_, one_at_a_time), (_, together) = snapshot(home), snapshot(batched)
    assert [s[:4] for s in one_at_a_time] == [s[:4] for s in together]
    for a, b in zip(one_at_a_time, together):
        np.testing.assert_allclose(np.frombuffer(a[4], np.float32), np.frombuffer(b[4], np.float32), atol=1e-5)

    refused = run_cli("index", str(videos), "--no-cuts", "--window", "8", home=home, check=1)
    assert "--cuts" in refused.stderr and "--reindex" in refused.stderr
    run_cli("index", str(videos), "--no-cuts", "--window", "8", "--reindex", home=home)
    assert window_starts() == [0.0, 8.0, 16.0]

    index = IndexDir(home)
    recorded = index.db.get_setting("settings")
    del recorded["cuts"]  # as an index built before the option recorded its settings
    index.db.set_setting("settings", recorded)
    (videos / "more.mp4").write_bytes((videos / "cuts.mp4").read_bytes() + b"\0")  # new content, to be encoded
    run_cli("index", str(videos), home=home)
    assert window_starts() == [0.0, 8.0, 16.0] * 2
    assert "--reindex" in run_cli("index", str(videos), "--cuts", home=home, check=1).stderr


def test_bad_input_corpus_one_line_each_good_files_index_failures_not_retried(tmp_path):
    videos, home = library(tmp_path / "videos", names=("good",)), tmp_path / "index"
    bad = write_bad_files(videos / "bad")
    (videos / "random.mp4").write_bytes(os.urandom(5000))
    (videos / "huge.mp4").write_bytes(b"YUV4MPEG2 W100000 H100000 F10:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000))
    os.symlink(videos / "nowhere.mp4", videos / "broken-link.mp4")
    os.symlink(videos / "loop-b.mp4", videos / "loop-a.mp4")
    os.symlink(videos / "loop-a.mp4", videos / "loop-b.mp4")
    shutil.copy(videos / "good.mp4", videos / "café ☕ ünïcode.mp4")
    with av.open(str(videos / "still.mp4"), "w", format="image2") as out:  # a PNG named like a video
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "rgb24"
        out.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")))
        out.mux(stream.encode())
    shutil.copy(videos / "good.mp4", os.fsencode(videos) + b"/latin1-caf\xe9.mp4")
    expected_failures = {*map(str, bad.values()), *(str(videos / n) for n in (
        "random.mp4", "huge.mp4", "still.mp4", "broken-link.mp4", "loop-a.mp4", "loop-b.mp4")),
        str(videos / "latin1-caf\\xe9.mp4")}
    first = run_cli("index", str(videos), "--model", "tiny", "--json", home=home, check=1)
    summary = json.loads(first.stdout)
    assert {f["path"] for f in summary["failures"]} == expected_failures
    lines = [line for line in first.stderr.splitlines() if line.startswith("failed: ")]
    assert len(lines) == len(expected_failures) and all(line.count(": ") >= 2 for line in lines)
    assert summary["indexed"] == 1 and summary["reused"] == 1  # the unicode-named copy reuses good.mp4's vectors
    again = run_cli("index", str(videos), "--json", home=home, check=1)  # the non-UTF-8 name fails on every run
    summary = json.loads(again.stdout)
    assert summary["frames"] == 0 and [f["path"] for f in summary["failures"]] == [str(videos / "latin1-caf\\xe9.mp4")]
    assert {f["path"] for f in summary["earlier_failures"]} == expected_failures - {str(videos / "latin1-caf\\xe9.mp4")}
    assert f"{len(expected_failures) - 1} file(s) failed in an earlier run" in again.stderr


def test_failed_files_are_retried_only_when_changed_or_asked(tmp_path):
    videos, home = library(tmp_path / "videos", names=("flaky",)), tmp_path / "index"
    path = videos / "flaky.mp4"
    good = path.read_bytes()
    path.write_bytes(b"\0" * len(good))  # same size, unreadable content
    os.utime(path, (1e9, 1e9))
    run_cli("index", str(videos), "--model", "tiny", home=home, check=1)
    path.write_bytes(good)  # repaired in place: same size, same mtime
    os.utime(path, (1e9, 1e9))
    assert len(run_json("index", str(videos), home=home)["earlier_failures"]) == 1  # not retried
    assert run_json("index", str(videos), "--retry-failed", home=home)["indexed"] == 1


def _flat(level, width, height):
    import numpy as np

    return np.full((height, width, 3), level % 256, np.uint8)


def test_verify_finds_a_stale_faiss_file_and_repair_fixes_it(tmp_path):
    videos, home = library(tmp_path / "videos", names=("a", "b")), tmp_path / "index"
    run_cli("index", str(videos), "--model", "tiny", home=home)
    from vidsearch.store import VectorStore

    VectorStore.empty(64).save(home / "vectors.faiss")  # stale: holds nothing
    (home / "vectors.faiss.leftover.tmp").write_bytes(b"half a file")
    found = run_cli("verify", home=home, check=1).stdout
    assert "PROBLEM   FAISS matches SQLite" in found and "PROBLEM   no leftover temporary files" in found
    repaired = run_cli("verify", "--repair", home=home).stdout
    assert "repaired  FAISS matches SQLite" in repaired
    assert run_cli("verify", home=home).returncode == 0
