"""Nothing is lost: stale or damaged FAISS files, a full disk, a damaged database, a read-only folder, crashing
decoders, partial files and SIGTERM each cost at most one line, and the next run heals the index."""

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time

import numpy as np
import pytest
from cli_helpers import VIDSEARCH, run_cli, run_json
from index_helpers import library, snapshot
from media import write_truncated, write_video

from vidsearch.indexdir import IndexDir

pytestmark = pytest.mark.slow


def _flat(level):
    return lambda i, w, h: np.full((h, w, 3), (level + 7 * i) % 256, np.uint8)


def _hits(home, text="a moving shape"):
    proc = run_cli("query", text, "-k", "50", "--json", home=home)
    return json.loads(proc.stdout)["hits"], [line for line in proc.stderr.splitlines() if line.strip()]


def _index(videos, home, *, check=0, env=None):
    return run_cli("index", str(videos), "--model", "tiny", "--json", home=home, check=check, env=env)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Two videos indexed with the tiny model, and the hits of a query on them."""
    root = tmp_path_factory.mktemp("clean")
    videos = library(root / "videos", names=("a", "b"))
    _index(videos, root / "index")
    return videos, root / "index", _hits(root / "index")[0]


def test_a_stale_faiss_file_is_never_trusted_after_a_kill(tmp_path):
    # the issue's reproduction: b.mp4's segment ids are the highest, so a new b.mp4 reuses them
    videos, home = tmp_path / "videos", tmp_path / "index"
    write_video(videos / "a.mp4", seconds=6, fps=5, size=(96, 64))
    _index(videos, home)
    write_video(videos / "b.mp4", seconds=8, fps=5, size=(96, 64))
    _index(videos, home)
    write_video(videos / "b.mp4", seconds=8, fps=5, size=(96, 64), frame_fn=_flat(90))  # same length, new content
    killed = run_cli("index", str(videos), home=home, check=None, env={"VIDSEARCH_TEST_KILL_AT": "faiss-write"})
    assert killed.returncode == -signal.SIGKILL
    again = run_cli("index", str(videos), "--json", home=home)
    assert json.loads(again.stdout)["unchanged"] == 2
    assert "rebuilt it from SQLite" in again.stderr
    fresh = tmp_path / "fresh"
    _index(videos, fresh)
    assert _hits(home) == _hits(fresh)
    assert run_cli("verify", home=home).returncode == 0


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zero-length":
        path.write_bytes(b"")
    else:  # random bytes inside the vector data, the size unchanged
        noise = np.random.default_rng(0).integers(0, 256, 256, dtype=np.uint8).tobytes()
        path.write_bytes(data[:-400] + noise + data[-144:])


@pytest.mark.parametrize("how", ["truncated", "zero-length", "random-bytes"])
def test_a_damaged_faiss_file_costs_one_line_and_the_next_writer_heals_it(clean, tmp_path, how):
    videos, source, clean_hits = clean
    home = tmp_path / "index"
    shutil.copytree(source, home)
    _damage(home / "vectors.faiss", how)
    hits, lines = _hits(home)
    assert hits == clean_hits and len(lines) == 1 and lines[0].startswith("note: ") and "in memory" in lines[0]
    for command in (["status", "--json"], ["ls", "--json"]):
        proc = run_cli(*command, home=home)
        assert len(proc.stderr.strip().splitlines()) <= 1 and json.loads(proc.stdout)
    assert "PROBLEM   FAISS matches SQLite" in run_cli("verify", home=home, check=1).stdout
    healed = run_cli("index", str(videos), home=home)
    assert len(healed.stderr.strip().splitlines()) == 1 and "rebuilt it from SQLite" in healed.stderr
    assert run_cli("verify", home=home).returncode == 0
    assert _hits(home) == (clean_hits, [])


def test_remove_heals_a_damaged_faiss_file_too(clean, tmp_path):
    videos, source, _ = clean
    home = tmp_path / "index"
    shutil.copytree(source, home)
    _damage(home / "vectors.faiss", "random-bytes")
    run_cli("remove", str(videos / "b.mp4"), home=home)
    assert run_cli("verify", home=home).returncode == 0
    assert {h["path"] for h in _hits(home)[0]} == {str(videos / "a.mp4")}


@contextlib.contextmanager
def mounted_tmpfs(where, size):
    """A small tmpfs at `where` (tests run as root); skipped only outside CI when mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True)
    if mount.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs: {mount.stderr}")
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_gives_one_line_leaves_no_broken_faiss_and_a_rerun_heals(tmp_path):
    videos = library(tmp_path / "videos", names=("a", "b", "c"))
    clean_home = tmp_path / "clean"
    _index(videos, clean_home)
    with mounted_tmpfs(tmp_path / "small", "2m") as disk:
        home = disk / "index"
        _index(videos / "a.mp4", home)
        before = (home / "vectors.faiss").read_bytes()
        filler = disk / "filler"
        with open(filler, "wb", buffering=0) as fh, contextlib.suppress(OSError):  # take every free block
            while True:
                fh.write(b"\0" * 4096)
        full = run_cli("index", str(videos), "--model", "tiny", home=home, check=1)
        lines = full.stderr.strip().splitlines()
        assert "Traceback" not in full.stderr
        assert [line for line in lines if line.startswith("error: ")] == [lines[-1]]
        assert "disk is full" in lines[-1] and "nothing committed was lost" in lines[-1]
        faiss_file = home / "vectors.faiss"
        assert faiss_file.stat().st_size > 0 and not list(home.glob("vectors.faiss*.tmp"))
        assert faiss_file.read_bytes() == before or run_cli("verify", home=home, check=None).returncode == 0
        filler.unlink()
        _index(videos, home)
        assert run_cli("verify", home=home).returncode == 0
        assert snapshot(home) == snapshot(clean_home)


@pytest.mark.parametrize("how", ["random-bytes", "truncated"])
def test_a_damaged_database_gives_one_line_with_the_way_out(clean, tmp_path, how):
    videos, source, _ = clean
    home = tmp_path / "index"
    shutil.copytree(source, home)
    db = home / "vidsearch.db"
    data = bytearray(db.read_bytes())
    if how == "truncated":
        db.write_bytes(bytes(data[:3000]))
    else:
        middle = len(data) // 2 // 4096 * 4096  # a whole page in the middle: its b-tree header is gone
        data[middle:middle + 2000] = np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes()
        db.write_bytes(bytes(data))
    for command in (["query", "shape"], ["status"], ["ls"], ["index", str(videos)], ["remove", str(videos / "a.mp4")],
                    ["verify"], ["verify", "--repair"]):
        proc = run_cli(*command, home=home, check=None)
        assert "Traceback" not in proc.stderr, (command, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) <= 1, (command, proc.stderr)
    verdict = run_cli("verify", home=home, check=1)
    assert "move" in verdict.stdout + verdict.stderr and "aside" in verdict.stdout + verdict.stderr


def test_a_read_only_index_folder_answers_queries_and_refuses_writes_in_one_line(clean, tmp_path):
    videos, source, clean_hits = clean
    with mounted_tmpfs(tmp_path / "ro", "8m") as disk:
        shutil.copytree(source, disk / "index")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        home = disk / "index"
        for command in (["index", str(videos)], ["remove", str(videos / "a.mp4")], ["verify", "--repair"]):
            proc = run_cli(*command, home=home, check=1)
            assert proc.stderr.count("\n") == 1 and "read-only" in proc.stderr, proc.stderr
        assert _hits(home) == (clean_hits, [])
        assert run_json("status", home=home)["indexed"] == 2
        assert len(run_json("ls", home=home)) == 2
        assert run_cli("verify", home=home).returncode == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_crashing_decoder_costs_one_file_and_the_run_goes_on(tmp_path, workers):
    videos, home = library(tmp_path / "videos"), tmp_path / "index"
    crash = {"VIDSEARCH_TEST_KILL_AT": "decode-worker@b.mp4:SIGSEGV"}
    proc = run_cli("index", str(videos), "--model", "tiny", "--workers", workers, "--json", home=home, check=1, env=crash)
    summary = json.loads(proc.stdout)
    assert summary["indexed"] == 2
    assert summary["failures"] == [{"path": str(videos / "b.mp4"), "reason": "decoder crashed: signal 11 (SIGSEGV)"}]
    assert [line for line in proc.stderr.splitlines() if line.startswith("failed: ")] == [
        f"failed: {videos / 'b.mp4'}: decoder crashed: signal 11 (SIGSEGV)"]
    assert run_json("index", str(videos), home=home)["earlier_failures"]  # not retried, and exit 0
    assert run_json("index", str(videos), "--retry-failed", home=home)["indexed"] == 1
    assert run_cli("verify", home=home).returncode == 0


def test_a_file_that_stops_decoding_part_way_is_indexed_up_to_there_and_marked_partial(tmp_path):
    videos, home = tmp_path / "videos", tmp_path / "index"
    write_video(videos / "whole.mp4", seconds=4, fps=10)
    write_truncated(videos / "cut.mp4", fraction=0.5, faststart=True)
    proc = run_cli("index", str(videos), "--model", "tiny", "--json", home=home)
    assert json.loads(proc.stdout)["partial"] == 1
    assert [line for line in proc.stderr.splitlines() if line.startswith("partial: ")][0].startswith(
        f"partial: {videos / 'cut.mp4'}: ")
    status = run_json("status", home=home)
    assert status["partial"] == 1 and status["partials"][0]["path"] == str(videos / "cut.mp4")
    covered = status["partials"][0]["covered"]
    assert 0 < covered < status["partials"][0]["duration"]
    listed = {r["path"]: r for r in run_json("ls", home=home)}
    assert listed[str(videos / "cut.mp4")]["state"] == "partial" and listed[str(videos / "whole.mp4")]["state"] == "ok"
    assert run_json("index", str(videos), home=home)["unchanged"] == 2
    assert run_json("index", str(videos), "--retry-failed", home=home)["partial"] == 1
    assert run_cli("verify", home=home).returncode == 0


@pytest.mark.parametrize("point", ["decode", "between-videos", "faiss-write"])
def test_sigterm_keeps_what_was_committed_and_a_rerun_equals_a_clean_run(tmp_path, point):
    videos = library(tmp_path / "videos")
    clean_home, home = tmp_path / "clean", tmp_path / "index"
    _index(videos, clean_home)
    proc = run_cli("index", str(videos), "--model", "tiny", home=home, check=143,
                   env={"VIDSEARCH_TEST_KILL_AT": f"{point}:SIGTERM"})
    assert proc.stderr.strip().splitlines()[-1] == "terminated; everything committed so far is kept"
    assert "Traceback" not in proc.stderr
    assert run_cli("verify", home=home).returncode == 0  # FAISS was written before exiting
    _index(videos, home)
    assert snapshot(home) == snapshot(clean_home)
    assert not IndexDir(home).leftover_temp_files()


def test_sigterm_from_outside_mid_run(tmp_path):
    videos, home = library(tmp_path / "videos", names=("a", "b", "c", "d", "e")), tmp_path / "index"
    env = {**os.environ, "VIDSEARCH_HOME": str(home)}
    run = subprocess.Popen([str(VIDSEARCH), "index", str(videos), "--model", "tiny"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (home / "vidsearch.db").exists() and run.poll() is None:
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    code = run.wait(timeout=120)
    assert code in (0, 143), run.stderr.read()
    assert run_cli("verify", home=home).returncode == 0


def test_an_index_made_before_the_generation_counter_is_upgraded_without_re_encoding(clean, tmp_path):
    videos, source, clean_hits = clean
    home = tmp_path / "index"
    shutil.copytree(source, home)
    con = sqlite3.connect(home / "vidsearch.db")  # back to the schema of m001 + m002, with its old FAISS checksum
    with con:
        for trigger in ("segment_added", "segment_removed", "segment_changed"):
            con.execute(f"DROP TRIGGER {trigger}")
        con.execute("DROP TABLE vector_generation")
        con.execute("DROP INDEX idx_segments_level_video_id")
        con.execute("ALTER TABLE videos DROP COLUMN covered")
        con.execute("DELETE FROM settings WHERE key = 'faiss'")
        con.execute("INSERT INTO settings VALUES ('faiss_checksum', '[4, 10]')")
        con.execute("DELETE FROM _sqlite_migrations WHERE name IN ('m003_vector_generation', 'm004_partial_videos')")
    con.close()
    again = run_json("index", str(videos), home=home)
    assert (again["unchanged"], again["indexed"], again["frames"]) == (2, 0, 0)
    assert run_cli("verify", home=home).returncode == 0
    assert _hits(home) == (clean_hits, [])
