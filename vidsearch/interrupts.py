"""Ctrl-C and SIGTERM stop a run at a safe point: sections that must not be cut in two finish first."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (exit code 143 instead of 130)."""


_depth = 0  # how many finish_first sections are open
_pending: int | None = None  # a signal that arrived inside one


def install() -> None:
    """Handle SIGINT and SIGTERM in this (main) thread by raising KeyboardInterrupt / Terminated at a safe point."""
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)


def _stop(signum: int, frame) -> None:
    global _pending
    if _depth:
        _pending = signum
        return
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def finish_first() -> Iterator[None]:
    """A section a stop waits for: a commit and its FAISS update, a FAISS write and its stamp."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            signum, _pending = _pending, None
            _stop(signum, None)
