"""Run the real `vidsearch` CLI in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

VIDSEARCH = Path(sys.executable).with_name("vidsearch")


def run_cli(*args: str, home: Path | None = None, check: int | None = 0, timeout: float = 300,
            env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `vidsearch ARGS...` (with extra `env` variables, in `cwd`); assert the exit code when `check` is not None."""
    env = {**os.environ, **(env or {})}
    if home is not None:
        env["VIDSEARCH_HOME"] = str(home)
    proc = subprocess.run([str(VIDSEARCH), *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}, wanted {check}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def run_json(*args: str, **kwargs) -> dict:
    """Run with --json and parse stdout; `check` (the expected exit code) may be passed as for run_cli."""
    return json.loads(run_cli(*args, "--json", **kwargs).stdout)
