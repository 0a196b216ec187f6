"""Exception types whose messages are shown to users as one line."""

from __future__ import annotations

from pathlib import Path


class VidsearchError(Exception):
    """Base class: the message is a complete, user-facing sentence."""

    exit_code = 1


class UsageError(VidsearchError):
    """A bad argument or option value; the CLI exits with code 2."""

    exit_code = 2


class BadVideo(VidsearchError):
    """A file that cannot be decoded; indexing records it and moves on."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ModelUnavailable(VidsearchError):
    """Model weights or config could not be found or loaded."""


class IndexProblem(VidsearchError):
    """The index folder is missing, locked, or made for another model."""
