"""What a new user meets first: a failed first index, cron exit codes, empty folders, listing files, odd paths,
argument errors and quiet output."""

import json
import os
import subprocess
import sys
import zipfile

import pytest
from cli_helpers import run_cli, run_json
from index_helpers import library
from media import write_bad_files, write_video

from vidsearch.registry import registry_dir


@pytest.mark.slow
def test_a_failed_first_index_binds_no_model(tmp_path):
    videos, home = library(tmp_path / "videos", names=("a",)), tmp_path / "index"
    unavailable = tmp_path / "offline.json"  # a model whose weights cannot be had, as clip-b32 offline
    config = json.loads((registry_dir() / "tiny.json").read_text())
    unavailable.write_text(json.dumps({**config, "name": "offline", "pretrained": str(tmp_path / "not-downloaded.bin")}))
    failed = run_cli("index", str(videos), "--model", str(unavailable), home=home, check=1)
    assert failed.stderr.startswith("error: cannot load weights") and failed.stderr.count("\n") == 1
    empty = run_cli("query", "anything", home=home, check=1)
    assert "the index is empty" in empty.stderr and empty.stderr.count("\n") == 1
    assert run_json("status", home=home)["model"] is None
    assert run_json("index", str(videos), "--model", "tiny", home=home)["indexed"] == 1
    assert run_json("status", home=home)["model"]["name"] == "tiny"


@pytest.mark.slow
def test_an_index_emptied_of_videos_takes_another_model(tmp_path):
    videos, home = library(tmp_path / "videos", names=("a",)), tmp_path / "index"
    run_cli("index", str(videos), "--model", "tiny", home=home)
    run_cli("remove", str(videos), home=home)
    assert "the index is empty" in run_cli("query", "x", home=home, check=1).stderr
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**json.loads((registry_dir() / "tiny.json").read_text()), "name": "tiny-1", "init_seed": 1}))
    assert run_json("index", str(videos), "--model", str(other), home=home)["indexed"] == 1
    assert run_json("status", home=home)["model"]["name"] == "tiny-1"


@pytest.mark.slow
def test_cron_reruns_exit_0_and_count_earlier_failures(tmp_path):
    videos, home = library(tmp_path / "videos", names=("good",)), tmp_path / "index"
    bad = write_bad_files(videos / "bad")
    first = run_cli("index", str(videos), "--model", "tiny", "--json", home=home, check=1)
    assert len(json.loads(first.stdout)["failures"]) == len(bad)
    again = run_cli("index", str(videos), home=home)  # exit 0: nothing failed in this run
    assert not [line for line in again.stderr.splitlines() if line.startswith("failed: ")]
    assert f"{len(bad)} file(s) failed in an earlier run" in again.stderr and "--retry-failed" in again.stderr
    summary = run_json("index", str(videos), home=home)
    assert summary["failed"] == 0 and {f["path"] for f in summary["earlier_failures"]} == {str(p) for p in bad.values()}
    assert run_cli("index", str(videos), "--retry-failed", home=home, check=1).returncode == 1  # tried again, failed again


def test_an_empty_folder_says_no_videos_were_found(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no videos here")
    proc = run_cli("index", str(tmp_path / "empty"), home=tmp_path / "index", check=1)
    assert proc.stderr.startswith(f"error: no videos found under {tmp_path / 'empty'}") and proc.stderr.count("\n") == 1
    assert not (tmp_path / "index").exists()


@pytest.mark.slow
def test_ls_lists_every_file_sorted_with_its_state(tmp_path):
    videos, home = library(tmp_path / "videos", names=("b", "a")), tmp_path / "index"
    (videos / "z-broken.mp4").write_bytes(b"not a video")
    # --no-cuts: library()'s videos turn another grey every frame, which cuts (test_lifecycle covers cut windows)
    run_cli("index", str(videos), "--model", "tiny", "--no-cuts", home=home, check=1)
    rows = run_json("ls", home=home)
    assert [r["path"] for r in rows] == sorted(str(videos / n) for n in ("a.mp4", "b.mp4", "z-broken.mp4"))
    a, b, broken = rows
    assert (a["state"], a["reason"], a["segments"]) == ("ok", None, 2) and a["duration"] == pytest.approx(8, abs=0.3)
    assert b["duration"] == pytest.approx(6, abs=0.3) and b["indexed_at"]
    assert broken["state"] == "failed" and broken["reason"] and broken["segments"] == 0
    assert [r["path"] for r in run_json("ls", "a.*", home=home)] == [a["path"]]
    assert [r["path"] for r in run_json("ls", "--state", "failed", home=home)] == [broken["path"]]
    table = run_cli("ls", home=home).stdout.splitlines()
    assert len(table) == 3 and table[2].startswith("failed") and table[2].endswith(f"({broken['reason']})")


@pytest.mark.slow
def test_a_path_with_glob_characters_matches_itself_literally(tmp_path):
    videos, home = tmp_path / "videos", tmp_path / "index"
    odd = write_video(videos / "ünïcødé [1] name.mp4", seconds=4, fps=5, size=(96, 64))
    write_video(videos / "ünïcødé 1 name.mp4", seconds=4, fps=5, size=(96, 64))  # what the glob [1] matches
    run_cli("index", str(videos), "--model", "tiny", home=home)
    hits = run_json("query", "shape", "--path", str(odd), home=home)["hits"]
    assert hits and {h["path"] for h in hits} == {str(odd)}
    assert [r["path"] for r in run_json("ls", str(odd), home=home)] == [str(odd)]


@pytest.mark.slow
def test_a_one_frame_video_gets_a_thumbnail(tmp_path):
    videos, home = tmp_path / "videos", tmp_path / "index"
    write_video(videos / "one.mp4", seconds=0.1, fps=10, size=(96, 64))
    run_cli("index", str(videos), "--model", "tiny", home=home)
    hits = run_json("query", "shape", "--thumbnails", str(tmp_path / "thumbs"), home=home)["hits"]
    assert len(hits) == 1 and hits[0]["thumbnail"].endswith(".jpg")
    assert (tmp_path / "thumbs" / f"{hits[0]['moment_id']}.jpg").read_bytes()[:2] == b"\xff\xd8"


def _bad_images(folder):
    folder.mkdir()
    (folder / "notes.txt").write_text("just words, not a picture\n")
    with zipfile.ZipFile(folder / "pictures.zip", "w") as archive:
        archive.writestr("a.txt", "zipped")
    return {"missing": folder / "missing.jpg", "folder": folder, "text": folder / "notes.txt",
            "zip": folder / "pictures.zip"}


def test_image_and_score_argument_errors_exit_2_before_any_model_loads(tmp_path):
    bad = _bad_images(tmp_path / "images")
    cases = [["--image", str(path)] for path in bad.values()] + [["x", "--min-score", v] for v in ("1.5", "-2", "nan")]
    code = f"""
import sys
from vidsearch import cli
results = []
for args in {cases!r}:
    sys.argv = ["vidsearch", "query", *args, "--index", {str(tmp_path / "nowhere")!r}]
    try:
        cli.main()
    except SystemExit as exit:
        results.append(exit.code)
print(results, "torch" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.split("]")[0] == "[" + ", ".join(["2"] * len(cases)), proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("False"), "torch was imported"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(cases) and all(line.startswith("error: ") for line in lines)
    assert "not an image or video" in lines[2] and "not an image or video" in lines[3]
    assert "no such file" in lines[0] and "is a folder" in lines[1]


@pytest.mark.slow
def test_library_log_lines_stay_out_of_the_output(tmp_path):
    videos, home = tmp_path / "videos", tmp_path / "index"
    write_video(videos / "a.mp4", seconds=2, fps=5, size=(64, 48))
    random_b32 = tmp_path / "random-b32.json"  # a named open_clip architecture without weights: open_clip warns
    random_b32.write_text(json.dumps({"name": "random-b32", "clip_arch": "ViT-B-32", "pretrained": None}))
    indexed = run_cli("index", str(videos), "--model", str(random_b32), home=home)
    quiet = run_cli("query", "shape", home=home)
    for proc in (indexed, quiet):
        assert "WARNING" not in proc.stderr + proc.stdout and "No pretrained weights" not in proc.stderr
    loud = run_cli("--verbose", "query", "shape", "--index", str(home))
    assert "No pretrained weights loaded for model 'ViT-B-32'" in loud.stderr


@pytest.mark.slow
def test_a_video_whose_timestamps_start_at_an_hour_is_indexed_from_zero(tmp_path):
    videos, home = tmp_path / "videos", tmp_path / "index"
    late = write_video(videos / "late.mkv", seconds=10, fps=5, size=(96, 64), codec="mpeg4", start=3600)
    summary = run_json("index", str(videos), "--model", "tiny", "--segment", "2", home=home)
    assert summary["video_seconds"] == pytest.approx(10, abs=0.3)
    (row,) = run_json("ls", home=home)
    assert row["path"] == str(late) and row["duration"] == pytest.approx(10, abs=0.3) and row["state"] == "ok"
    hits = run_json("query", "shape", "-k", "20", home=home)["hits"]
    assert min(h["start"] for h in hits) == pytest.approx(0) and max(h["end"] for h in hits) <= 10.3


@pytest.mark.slow
def test_index_says_in_one_line_why_a_visible_gpu_is_not_used(tmp_path):
    videos, home = library(tmp_path / "videos", names=("a",)), tmp_path / "index"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 535.104.05\n")  # an R535 driver: too old for CUDA 13 builds
    (fake / "nvidia-smi").chmod(0o755)
    path = f"{fake}:{os.environ['PATH']}"
    proc = run_cli("index", str(videos), "--model", "tiny", home=home, env={"PATH": path})
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "535.104.05" in notes[0] and "pip install torch==" in notes[0]
    quiet = run_cli("index", str(videos), "--model", "tiny", "--device", "cpu", "--json", home=tmp_path / "other",
                    env={"PATH": path})
    assert json.loads(quiet.stdout)["indexed"] == 1 and "note: " not in quiet.stderr  # asked for the CPU: nothing to say


@pytest.mark.slow
def test_a_folder_that_comes_back_empty_keeps_what_was_indexed_under_it(tmp_path):
    # an unmounted disk looks like an empty folder: its files must not be dropped from the index
    a, b, home = library(tmp_path / "a", names=("a1",)), library(tmp_path / "b", names=("b1",)), tmp_path / "index"
    run_cli("index", str(a), str(b), "--model", "tiny", home=home)
    (b / "b1.mp4").rename(tmp_path / "b1.mp4")
    both = run_cli("index", str(a), str(b), "--json", home=home)  # exit 0: a is fine
    assert json.loads(both.stdout)["removed"] == 0 and f"note: no videos found under {b}" in both.stderr
    alone = run_cli("index", str(b), home=home, check=1)
    assert alone.stderr.startswith(f"error: no videos found under {b}") and "kept" in alone.stderr
    assert len(run_json("ls", home=home)) == 2
    run_cli("remove", str(b), home=home)  # the way to drop them on purpose
    assert [r["path"] for r in run_json("ls", home=home)] == [str(a / "a1.mp4")]


@pytest.mark.slow
def test_reindex_with_a_model_that_cannot_load_keeps_the_index(tmp_path):
    videos, home = library(tmp_path / "videos", names=("a",)), tmp_path / "index"
    run_cli("index", str(videos), "--model", "tiny", home=home)
    unavailable = tmp_path / "offline.json"
    config = json.loads((registry_dir() / "tiny.json").read_text())
    unavailable.write_text(json.dumps({**config, "name": "offline", "pretrained": str(tmp_path / "not-downloaded.bin")}))
    run_cli("index", str(videos), "--model", str(unavailable), "--reindex", home=home, check=1)
    assert run_json("status", home=home)["model"]["name"] == "tiny" and len(run_json("ls", home=home)) == 1
    assert run_json("query", "shape", home=home)["hits"]


@pytest.mark.parametrize("option", ["--html", "--thumbnails"])
def test_report_targets_that_cannot_be_written_exit_2_before_any_search(tmp_path, option):
    a_file = tmp_path / "a.txt"
    a_file.write_text("x")
    target = tmp_path / "no" / "such" / "r.html" if option == "--html" else a_file
    proc = run_cli("query", "x", option, str(target), "--index", str(tmp_path / "nowhere"), check=2)
    assert proc.stderr.startswith(f"error: {option} ") and proc.stderr.count("\n") == 1
