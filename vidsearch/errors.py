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
    """One line, with the way out, for a SQLite or file-system failure while using the index at `where` (any OSError
    gets one); None for anything else. Callers translate at the command boundary only."""
    import errno
    import shutil
    import sqlite3

    place = str(getattr(exc, "filename", None) or where or "")
    at = f"{place}: " if place else ""
    text = str(exc)
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT) or "database or disk is full" in text
    if isinstance(exc, sqlite3.DatabaseError) and "disk I/O error" in text and where:
        try:  # SQLite sometimes reports a full disk only as an I/O error
            full = shutil.disk_usage(where).free < (16 << 20)
        except OSError:
            pass
    if full:
        return VidsearchError(f"{at}the disk is full; free some space and re-run: nothing committed was lost")
    if isinstance(exc, OSError) and exc.errno == errno.EROFS or "readonly database" in text:
        return IndexProblem(f"{at}cannot write there (read-only); `index`, `remove` and `verify --repair` need "
                            f"write access (`query`, `status` and `ls` still work)")
    if isinstance(exc, OSError):  # permission denied, not a folder, ...: say what and where, and nothing more
        return VidsearchError(f"{at}{exc.strerror or text}")
    if "unable to open database file" in text:
        return IndexProblem(f"{at}SQLite cannot open the database there ({text}); check that the folder exists "
                            f"and that you may read and write it")
    if isinstance(exc, sqlite3.DatabaseError):
        return IndexProblem(f"{at}the index database is damaged or unreadable ({text}); to rebuild, move the "
                            f"database aside and run `vidsearch index` again (your videos are unchanged)")
    return None
