"""`index --ray` on a local Ray cluster (started once per session) gives the index a local `index` gives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import VIDSEARCH, run_cli, run_json
from index_helpers import library, snapshot
from media import write_bad_files, write_video

ray = pytest.importorskip("ray", reason="the ray extra: pip install -e '.[ray]'")

pytestmark = pytest.mark.slow
TINY = Path(__file__).parent.parent / "models" / "tiny.json"


@pytest.fixture(scope="session")
def cluster():
    """A local Ray with 2 CPUs and a small object store, for the session; `index --ray=ADDRESS` joins it."""
    # Workers at the usual priority, not Ray's nice 15: beside other tests on 2 cores, niced workers crawl.
    before = os.environ.get("RAY_worker_niceness")
    os.environ["RAY_worker_niceness"] = "0"
    context = ray.init(num_cpus=2, object_store_memory=80 * 1024**2, include_dashboard=False, logging_level="ERROR")
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()
        if before is None:
            os.environ.pop("RAY_worker_niceness", None)
        else:
            os.environ["RAY_worker_niceness"] = before


@pytest.fixture(scope="session")
def videos(tmp_path_factory):
    """Three short videos and one of 70 s that --ray-unit 10 cuts in two: a cell of 64 frames at 1 fps (two windows of
    32 frames), as scene cuts round units (library()'s videos turn another grey every frame, which cuts)."""
    folder = library(tmp_path_factory.mktemp("ray") / "videos")
    write_video(folder / "long.mp4", seconds=70, fps=5, size=(96, 64))
    return folder


@pytest.fixture(scope="session")
def local_index(videos, tmp_path_factory):
    """The reference: the same videos indexed without Ray."""
    home = tmp_path_factory.mktemp("local") / "index"
    run_cli("index", str(videos), "--model", "tiny", home=home)
    return home


def assert_same(a: Path, b: Path) -> None:
    """Same videos, same segments, vectors within 1e-5."""
    (videos_a, segments_a), (videos_b, segments_b) = snapshot(a), snapshot(b)
    assert videos_a == videos_b
    assert [s[:4] for s in segments_a] == [s[:4] for s in segments_b]
    for x, y in zip(segments_a, segments_b):
        np.testing.assert_allclose(np.frombuffer(x[4], np.float32), np.frombuffer(y[4], np.float32), atol=1e-5)


def test_ray_equals_local_and_an_unchanged_rerun_sends_nothing(cluster, videos, local_index, tmp_path):
    home = tmp_path / "index"
    summary = run_json("index", str(videos), "--model", "tiny", "--ray-unit", "10", f"--ray={cluster}", home=home)
    assert summary["indexed"] == 4 and summary["failed"] == 0
    assert summary["ray"]["units"] == 5 and summary["ray"]["redone"] == 0  # long.mp4 in two units, cut exactly
    assert summary["frames"] == 94 and summary["video_seconds"] == 94.0
    assert_same(local_index, home)
    assert run_cli("verify", home=home).returncode == 0

    again = run_json("index", str(videos), "--ray-unit", "10", f"--ray={cluster}", home=home)
    assert again["unchanged"] == 4 and again["indexed"] == 0 and again["frames"] == 0
    assert again["ray"]["units"] == 0  # nothing was sent
    assert_same(local_index, home)


def test_frame_mixing_many_units_and_a_worker_killed_mid_unit_equal_local(cluster, videos, tmp_path):
    config = json.loads(TINY.read_text())
    frame = tmp_path / "tiny-frame.json"
    frame.write_text(json.dumps({**config, "name": "tiny-frame", "temporal_mixing": "frame"}))
    local, clustered = tmp_path / "local", tmp_path / "ray"
    options = ("--model", str(frame), "--window", "4", "--segment", "2", "--no-cuts")
    run_cli("index", str(videos), *options, home=local)
    # units of 8 frames (two windows): a.mp4 (6 s) 1, b.mp4 (8 s) 1, c.mp4 (10 s) 2, long.mp4 (70 s) 9; long.mp4's
    # unit 2 (frames 16-23) dies once after sending its first window, and Ray runs it again
    point = "ray-decode-once@long.mp4#2"
    proc = run_cli("index", str(videos), *options, "--ray-unit", "8", f"--ray={cluster}", "--json", home=clustered,
                   env={"VIDSEARCH_TEST_KILL_AT": point})
    context = ray.get_runtime_context()
    fired = list(Path(context.get_temp_dir()).glob(f"vidsearch-fault-{context.get_session_name()}-*-{point.encode().hex()}"))
    assert len(fired) == 1, proc.stderr  # the worker was killed (once: the marker is written just before)
    summary = json.loads(proc.stdout)
    assert summary["indexed"] == 4 and summary["failed"] == 0
    assert summary["ray"]["units"] == 13 and summary["ray"]["redone"] == 0
    assert_same(local, clustered)


def test_bad_files_and_a_worker_dying_on_every_try_fail_alone(cluster, tmp_path):
    folder = library(tmp_path / "videos", names=("a", "b"))
    bad = write_bad_files(folder)
    # frames stop from 4 s to 8 s: its second unit ([4, 8) s) gets none, so the units do not line up with one
    # continuous decode and the file is decoded again as one unit
    write_video(folder / "gap.mp4", vfr_times=[i / 5 for i in range(20)] + [8 + i / 5 for i in range(30)], size=(96, 64))
    local, clustered = tmp_path / "local", tmp_path / "ray"
    options = ("--model", "tiny", "--window", "4", "--no-cuts")
    expected = run_cli("index", str(folder), *options, home=local, check=1)
    # b.mp4's decode task dies (SIGSEGV) on every try
    proc = run_cli("index", str(folder), *options, "--ray-unit", "4", f"--ray={cluster}", "--json", home=clustered,
                   check=1, env={"VIDSEARCH_TEST_KILL_AT": "ray-decode@b.mp4#0:SIGSEGV"})
    failed = sorted(line for line in proc.stderr.splitlines() if line.startswith("failed:"))
    crashed = f"failed: {folder / 'b.mp4'}: decoder crashed: the Ray worker failed on all 3 tries (see the Ray logs)"
    local_failed = sorted(line for line in expected.stderr.splitlines() if line.startswith("failed:"))
    assert len(local_failed) == len(bad)
    assert failed == sorted([*local_failed, crashed])  # one line each, the same reasons as locally
    summary = json.loads(proc.stdout)
    assert summary["indexed"] == 2 and summary["failed"] == len(bad) + 1 and summary["ray"]["redone"] == 1
    videos_local = {v[0]: v for v in snapshot(local)[0]}
    videos_ray = {v[0]: v for v in snapshot(clustered)[0]}
    assert videos_ray[str(folder / "a.mp4")] == videos_local[str(folder / "a.mp4")]
    assert videos_ray[str(folder / "b.mp4")][1] == "failed"
    assert {p: v for p, v in videos_ray.items() if "b.mp4" not in p} == {p: v for p, v in videos_local.items() if "b.mp4" not in p}
    segments_local, segments_ray = snapshot(local)[1], [s for s in snapshot(clustered)[1] if not s[0].endswith("b.mp4")]
    segments_local = [s for s in segments_local if not s[0].endswith("b.mp4")]
    assert [s[:4] for s in segments_ray] == [s[:4] for s in segments_local] and any("gap.mp4" in s[0] for s in segments_ray)
    for x, y in zip(segments_local, segments_ray):
        np.testing.assert_allclose(np.frombuffer(x[4], np.float32), np.frombuffer(y[4], np.float32), atol=1e-5)
    assert run_cli("verify", home=clustered).returncode == 0


@pytest.mark.parametrize("point, code", [("between-videos", -signal.SIGKILL), ("between-videos:SIGTERM", 143)])
def test_a_killed_driver_resumes_to_a_clean_runs_index(cluster, videos, local_index, tmp_path, point, code):
    home = tmp_path / "index"
    args = [str(VIDSEARCH), "index", str(videos), "--model", "tiny", "--ray-unit", "10", f"--ray={cluster}"]
    killed = subprocess.run(args, env={**_env(home), "VIDSEARCH_TEST_KILL_AT": point}, capture_output=True, text=True)
    assert killed.returncode == code, killed.stderr
    if code == 143:  # SIGTERM is the indexer's (Ray's driver takes it over), handled as locally
        assert "terminated; everything committed so far is kept" in killed.stderr
    assert len(snapshot(home)[0]) == 1  # one video committed before the kill
    summary = run_json("index", str(videos), "--ray-unit", "10", f"--ray={cluster}", home=home)
    assert summary["unchanged"] == 1 and summary["indexed"] == 3
    assert_same(local_index, home)
    assert run_cli("verify", home=home).returncode == 0


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "VIDSEARCH_HOME": str(home)}
