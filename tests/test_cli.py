"""The real CLI end to end on generated videos: index, query, status, bad input, exit codes, start-up cost."""

import json
import subprocess
import sys

import av
import pytest
from cli_helpers import run_cli, run_json
from media import write_bad_files, write_video

COMMANDS = ["index", "query", "models", "status", "ls", "remove", "verify", "pairs", "train", "eval", "eval-moments", "serve"]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Two good videos in nested folders plus the four kinds of bad file, indexed once with the tiny model."""
    root = tmp_path_factory.mktemp("library")
    (root / "videos" / "garden").mkdir(parents=True)
    write_video(root / "videos" / "kitchen.mp4", seconds=14, fps=10)
    write_video(root / "videos" / "garden" / "walk.mp4", seconds=9, fps=10, size=(128, 96))
    bad = write_bad_files(root / "videos" / "bad")
    home = root / "index"
    first = run_cli("index", str(root / "videos"), "--model", "tiny", "--json", home=home, check=1)
    return root, home, bad, first


def test_help_does_not_import_torch():
    code = f"""
import sys
from vidsearch.cli import app
for args in (['--help'], *[[c, '--help'] for c in {COMMANDS!r}]):
    try:
        app(args)
    except SystemExit:
        pass
heavy = [m for m in ('torch', 'open_clip', 'faiss', 'av', 'numpy') if m in sys.modules]
assert not heavy, heavy
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_and_option_has_help(command):
    from typer.main import get_command

    from vidsearch.cli import app

    click_command = get_command(app).commands[command]
    assert click_command.help and click_command.help.strip()
    for param in click_command.params:
        assert getattr(param, "help", None), f"{command} {param.name} has no help"
    assert run_cli(command, "--help").stdout.strip()


@pytest.mark.slow
def test_index_reports_each_bad_file_and_keeps_the_good_ones(library):
    root, home, bad, first = library
    summary = json.loads(first.stdout)
    assert summary["indexed"] == 2 and summary["failed"] == len(bad) == 4
    failures = {f["path"]: f["reason"] for f in summary["failures"]}
    assert set(failures) == {str(p) for p in bad.values()}
    assert all(reason for reason in failures.values())
    lines = [line for line in first.stderr.splitlines() if line.startswith("failed: ")]
    assert len(lines) == 4
    for path in bad.values():
        assert sum(str(path) in line for line in lines) == 1


@pytest.mark.slow
def test_query_returns_well_formed_hits_inside_the_files(library):
    root, home, _, _ = library
    result = run_json("query", "a gray frame with a white square", "-k", "5", home=home)
    assert result["query"] == "a gray frame with a white square"
    hits = result["hits"]
    assert 1 <= len(hits) <= 5
    durations = {str(p): _duration(p) for p in (root / "videos").rglob("*.mp4") if "bad" not in p.parts}
    for hit in hits:
        assert hit["path"] in durations
        assert 0 <= hit["start"] < hit["end"] <= durations[hit["path"]] + 1e-6
        assert isinstance(hit["score"], float) and -1.0001 <= hit["score"] <= 1.0001
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    table = run_cli("query", "a gray frame", home=home).stdout
    assert "kitchen.mp4" in table or "walk.mp4" in table


@pytest.mark.slow
def test_indexing_again_is_a_no_op(library):
    root, home, bad, _ = library
    before = run_json("status", home=home)
    again = run_cli("index", str(root / "videos"), "--json", home=home)  # exit 0: nothing failed in this run
    summary = json.loads(again.stdout)
    assert summary["indexed"] == 0 and summary["unchanged"] == 2 and summary["frames"] == 0
    assert summary["failed"] == 0 and len(summary["earlier_failures"]) == len(bad)
    after = run_json("status", home=home)
    assert {k: after[k] for k in ("videos", "segments", "windows", "vectors")} == \
           {k: before[k] for k in ("videos", "segments", "windows", "vectors")}
    assert run_cli("verify", home=home).returncode == 0  # FAISS on disk agrees with SQLite
    good_only = run_json("index", str(root / "videos" / "kitchen.mp4"), home=home)
    assert good_only["unchanged"] == 1 and good_only["indexed"] == 0


@pytest.mark.slow
def test_status_describes_the_index(library):
    _, home, bad, _ = library
    status = run_json("status", home=home)
    assert status["indexed"] == 2 and status["failed"] == 4
    assert status["model"]["spec"] == "tiny" and status["index_type"] == "IDMap2,Flat"
    assert status["vectors"] == status["segments"] > 0 and status["windows"] >= 2
    assert {f["path"] for f in status["failures"]} == {str(p) for p in bad.values()}


@pytest.mark.parametrize("args", [
    ["index", "/no/such/folder", "--model", "tiny"],
    ["index", ".", "--model", "no-such-model"],
    ["index", ".", "--model", "tiny", "--fps", "0"],
    ["index", ".", "--device", "tpu"],
    ["query", ""],
    ["query", "x", "-k", "0"],
    ["index"],
])
def test_bad_arguments_exit_2_with_one_line(args, tmp_path):
    (tmp_path / "index").mkdir()
    args = [str(tmp_path) if a == "." else a for a in args]
    proc = run_cli(*args, home=tmp_path / "index", check=2)
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_query_without_an_index_says_so(tmp_path):
    proc = run_cli("query", "anything", home=tmp_path / "nothing-here", check=1)
    assert proc.stderr.startswith("error:") and "vidsearch index" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_models_lists_the_registry():
    names = {m["name"] for m in run_json("models")}
    assert {"tiny", "clip-b32", "clip-b16", "clip-l14", "longvivit-b32"} <= names


def _duration(path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return float(stream.duration * stream.time_base)
