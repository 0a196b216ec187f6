"""Training through the real CLI: it learns, it resumes exactly, torchrun matches one process, bad manifests."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from cli_helpers import VIDSEARCH, run_cli, run_json


def losses(folder):
    return [json.loads(line)["loss"] for line in (folder / "train_log.jsonl").read_text().splitlines()]


def test_training_learns_far_above_chance(trained_tiny):
    folder, summary = trained_tiny
    assert summary["step"] == 150 and summary["checkpoint"] == str(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["temporal_mixing"] == "joint" and config["clip_frames"] == 8
    curve = losses(folder)
    assert len(curve) == 150 and sum(curve[-10:]) / 10 < 0.7 * sum(curve[:10]) / 10
    # 16 held-out scenes with (almost) unique captions: chance R@1 is about 1/16
    assert summary["val"]["t2v_r1"] >= 0.25, summary["val"]
    assert summary["val"]["t2v_r5"] >= 0.6, summary["val"]


def test_eval_command_reports_recall(trained_tiny, synthetic):
    folder, summary = trained_tiny
    metrics = run_json("eval", str(synthetic[1]), "--model", str(folder))
    assert metrics == summary["val"]
    assert set(metrics) >= {"t2v_r1", "t2v_r5", "t2v_r10", "t2v_median_rank", "v2t_r1", "v2t_median_rank"}


def test_the_trained_model_finds_the_right_moment(trained_tiny, synthetic, tmp_path):
    folder, _ = trained_tiny
    test = synthetic[1]
    rows = [json.loads(line) for line in test.read_text().splitlines()]
    home = tmp_path / "index"
    run_cli("index", str(test.parent / "videos"), "--model", str(folder), "--segment", "8", home=home)
    found = 0
    rows = rows[::2]  # one query per 16 s keeps the test quick; each is a fresh process
    for row in rows:
        hits = run_json("query", row["caption"], "-k", "3", home=home)["hits"]
        path = str((test.parent / row["video"]).resolve())
        found += any(h["path"] == path and h["start"] < row["end"] and h["end"] > row["start"] for h in hits)
    # 16 scenes of 8 s: a random ranking puts the right one in the top 3 about 1.5 times in 8
    assert found >= 5, f"{found}/{len(rows)} queries found their scene in the top 3"
    # a query on a checkpoint-built index loads only the text tower, and imports neither open_clip nor torchvision
    code = ("import sys; from pathlib import Path; from vidsearch.indexdir import IndexDir; "
            "from vidsearch.search import Searcher; from vidsearch.terms import parse_query; "
            f"assert Searcher(IndexDir(Path({str(home)!r}))).search(parse_query('a red circle'), k=1); "
            "assert not {'open_clip', 'torchvision'} & set(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_resume_after_a_kill_retraces_the_uninterrupted_run(synthetic, tmp_path):
    train, _ = synthetic
    args = ["train", str(train), "--model", "tiny", "--frames", "8", "--steps", "30", "--batch-size", "16", "--lr", "1e-3",
            "--checkpoint-every", "5", "--device", "cpu"]
    run_cli(*args, "--out", str(tmp_path / "whole"))
    killed = tmp_path / "killed"
    proc = subprocess.Popen([str(VIDSEARCH), *args, "--out", str(killed)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not _checkpoint_step(killed):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stopped_at = _checkpoint_step(killed)
    assert stopped_at and stopped_at < 30, "the run was not killed part-way"
    assert len(losses(killed)) == stopped_at
    summary = json.loads(run_cli("train", str(train), "--out", str(killed), "--resume", "--json").stdout)
    assert summary["step"] == 30
    whole, resumed = losses(tmp_path / "whole"), losses(killed)
    assert len(resumed) == 30
    assert resumed == pytest.approx(whole, abs=1e-4)


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="torchrun missing")
def test_torchrun_with_two_processes_matches_one_process(synthetic, tmp_path):
    train, _ = synthetic
    args = ["train", str(train), "--model", "tiny", "--frames", "4", "--steps", "4", "--batch-size", "16", "--lr", "1e-3",
            "--mask-ratio", "0", "--device", "cpu"]
    run_cli(*args, "--out", str(tmp_path / "one"))
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "vidsearch", *args, "--out",
                           str(tmp_path / "two")], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), abs=1e-4)


def test_a_bad_manifest_gives_line_numbered_errors_and_training_goes_on(synthetic, tmp_path):
    train, _ = synthetic
    lines = train.read_text().splitlines()
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    bad = [json.dumps({"caption": "no video"}), json.dumps({"video": str(tmp_path / "broken.mp4"), "caption": "x"}),
           json.dumps({"video": json.loads(lines[0])["video"], "start": 4, "end": 1, "caption": "backwards"}),
           json.dumps({"video": json.loads(lines[0])["video"], "caption": ""})]
    manifest = train.parent / "with-bad-lines.jsonl"
    manifest.write_text("\n".join(lines[:40] + bad) + "\n")
    proc = run_cli("train", str(manifest), "--out", str(tmp_path / "out"), "--model", "tiny", "--frames", "4", "--steps",
                   "2", "--batch-size", "8", "--device", "cpu")
    skipped = [line for line in proc.stderr.splitlines() if line.startswith("skipped: ")]
    assert [line.split(":")[2] for line in skipped] == ["41", "42", "43", "44"], proc.stderr
    assert "missing key: video" in skipped[0] and "unreadable video" in skipped[1]
    assert "after start" in skipped[2] and "empty caption" in skipped[3]
    assert (tmp_path / "out" / "model.safetensors").is_file()


def _checkpoint_step(folder):
    log = folder / "train_log.jsonl"
    if not (folder / "model.safetensors").is_file() or not log.is_file():
        return 0
    lines = log.read_text().splitlines()
    return json.loads(lines[-1])["step"] if lines else 0
