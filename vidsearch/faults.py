"""Fault injection for the crash-safety tests: named points where a run can be killed on purpose."""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    """SIGKILL this process here when VIDSEARCH_TEST_KILL_AT names this point; otherwise do nothing."""
    if os.environ.get("VIDSEARCH_TEST_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
