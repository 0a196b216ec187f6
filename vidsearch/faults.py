"""Fault injection for the crash-safety tests: named points where a run can be killed on purpose."""

from __future__ import annotations

import os
import signal

KILL_AT = "VIDSEARCH_TEST_KILL_AT"


def crash_point(name: str) -> None:
    """Send this process a signal here when VIDSEARCH_TEST_KILL_AT names this point; otherwise do nothing.

    The variable is `NAME` (SIGKILL) or `NAME:SIGNAL` (`faiss-write:SIGTERM`, `decode-worker@a.mp4:SIGSEGV`).
    Points that repeat carry what tells them apart in their name (`train-step@12`, `decode-worker@FILE`).
    """
    wanted = os.environ.get(KILL_AT)
    if not wanted:
        return
    point, _, signame = wanted.rpartition(":") if wanted.rpartition(":")[2].startswith("SIG") else (wanted, "", "")
    if point == name:
        os.kill(os.getpid(), getattr(signal, signame or "SIGKILL"))
