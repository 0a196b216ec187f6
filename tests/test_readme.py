"""The README stays true: its command reference is today's `--help`, and its two commands exist."""

from pathlib import Path

from readme_reference import COMMANDS, current, reference

ROOT = Path(__file__).resolve().parent.parent


def test_command_reference_matches_help():
    assert current() == reference(), "README is stale: run `.venv/bin/python tests/readme_reference.py`"


def test_every_command_is_in_the_reference():
    from typer.main import get_command

    from vidsearch.cli import app

    assert sorted(get_command(app).commands) == sorted(COMMANDS)


def test_the_two_commands_are_in_the_readme_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "bash examples/demo.sh" in readme and "bash .ci/test" in readme
    assert "bash .ci/test" in (ROOT / ".ci" / "run").read_text()
    assert (ROOT / "examples" / "demo.sh").is_file()
