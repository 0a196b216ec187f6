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


def storage_error(exc: BaseException, where: str | Path | None) -> VidsearchError | None:
    """One line, with the way out, for a SQLite or file-system failure while using the index at `where`; None for
    anything else. Callers translate at the command boundary only."""
    import errno
    import shutil
    import sqlite3

    place = str(getattr(exc, "filename", None) or where or "the index")
    text = str(exc)
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT) or "database or disk is full" in text
    if isinstance(exc, sqlite3.DatabaseError) and "disk I/O error" in text and where:
        try:  # SQLite sometimes reports a full disk only as an I/O error
            full = shutil.disk_usage(where).free < (16 << 20)
        except OSError:
            pass
    if full:
        return VidsearchError(f"{place}: the disk is full; free some space and re-run: nothing committed was lost")
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) \
            or "readonly database" in text:
        return IndexProblem(f"{place}: cannot write there ({exc.strerror if isinstance(exc, OSError) else text})")
    if isinstance(exc, sqlite3.DatabaseError):
        return IndexProblem(f"{place}: the index database is damaged or unreadable ({text}); `vidsearch verify` checks it; "
                            f"to rebuild, move the database aside and run `vidsearch index` again (your videos are unchanged)")
    return None
