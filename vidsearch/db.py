"""SQLite metadata through sqlite-utils: videos, segments with vectors, transcripts with full-text search, settings."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import sqlite_utils

from .errors import IndexProblem, storage_error

migrations = sqlite_utils.Migrations("vidsearch")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db["videos"].create(
        {
            "id": int, "path": str, "size": int, "mtime": float, "hash": str, "duration": float,
            "fps": float, "status": str, "error": str, "frames": int, "indexed_at": str,
        },
        pk="id",
    )
    db["videos"].create_index(["path"], unique=True)
    db["videos"].create_index(["hash"])
    db["segments"].create(
        {"id": int, "video_id": int, "level": str, "start": float, "end": float, "vector": bytes},
        pk="id",
        foreign_keys=[("video_id", "videos", "id")],
    )
    db["segments"].create_index(["video_id"])
    db["settings"].create({"key": str, "value": str}, pk="key")


@migrations()
def m002_segment_level_index(db: sqlite_utils.Database) -> None:
    """Counting and summing the segment-level ids (the FAISS checksum on every query) reads this index, not the
    rows with their vectors: 0.09 s -> 0.006 s at 100k segments."""
    db["segments"].create_index(["level"])


@migrations()
def m003_vector_generation(db: sqlite_utils.Database) -> None:
    """A counter bumped in the same transaction as every change to a segment-level row, so the FAISS file can be
    stamped with the generation it holds: ids are reused after the highest rows are deleted, so (count, sum of ids)
    cannot tell a stale file from a fresh one."""
    db.execute("CREATE TABLE vector_generation (id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL)")
    db.execute("INSERT INTO vector_generation VALUES (1, 0)")
    bump = "BEGIN UPDATE vector_generation SET generation = generation + 1; END"
    db.execute(f"CREATE TRIGGER segment_added AFTER INSERT ON segments WHEN NEW.level = 'segment' {bump}")
    db.execute(f"CREATE TRIGGER segment_removed AFTER DELETE ON segments WHEN OLD.level = 'segment' {bump}")
    db.execute(f"CREATE TRIGGER segment_changed AFTER UPDATE ON segments "
               f"WHEN OLD.level = 'segment' OR NEW.level = 'segment' {bump}")
    db.execute("DELETE FROM settings WHERE key = 'faiss_checksum'")  # the old (count, sum of ids) check


@migrations()
def m004_partial_videos(db: sqlite_utils.Database) -> None:
    """A file that stopped decoding part-way is kept as `partial`, with the seconds it covers."""
    db["videos"].add_column("covered", float)
    db["segments"].create_index(["level", "video_id"])  # `vidsearch ls` counts every video's segments from it alone


@migrations()
def m005_transcripts(db: sqlite_utils.Database) -> None:
    """Each video's timed text lines (subtitles, speech) with an FTS5 index (porter stemming), the text sources it
    has (or that failed), and a stamp of what its text was read from (sidecar files, speech engine)."""
    db["transcripts"].create(
        {"id": int, "video_id": int, "start": float, "end": float, "source": str, "language": str, "text": str},
        pk="id", foreign_keys=[("video_id", "videos", "id")])
    db["transcripts"].create_index(["video_id"])
    db["transcripts"].enable_fts(["text"], tokenize="porter", create_triggers=True)
    db["text_sources"].create(
        {"video_id": int, "source": str, "language": str, "lines": int, "problem": str, "note": str},
        pk=("video_id", "source"), foreign_keys=[("video_id", "videos", "id")])
    db["videos"].add_column("text_stamp", str)


class TextRow(NamedTuple):
    """A stored transcript line."""

    start: float
    end: float
    text: str
    source: str
    language: str | None


@dataclass(frozen=True)
class VideoTextRecord:
    """What a video's text sources gave, as stored: `lines` have start, end, text, source and language; `sources`
    are (source, language, lines, problem, note) rows, one per source that gave lines, failed or was skipped;
    `stamp` says what was read (sidecar names, sizes and times; the speech engine), to tell when to read again."""

    lines: list
    sources: list[tuple[str, str | None, int, str | None, str | None]]
    stamp: dict


@dataclass(frozen=True)
class Segment:
    """One searchable span of a video and its L2-normalised vector."""

    level: str  # "segment" or "window"
    start: float
    end: float
    vector: np.ndarray


class Database:
    """The index's source of truth. Writes for one video happen in one transaction."""

    def __init__(self, path: Path, *, readonly: bool = False):
        """`readonly` opens an index on a folder this process cannot write to (read-only media, another user's)."""
        try:
            self.db = sqlite_utils.Database(_connect(Path(path), readonly=readonly))
            self.db.execute("PRAGMA foreign_keys = ON")
            unknown = self._unknown_migrations()
            if unknown:
                raise IndexProblem(f"{path}: made by a newer vidsearch (schema {unknown[-1]}); upgrade vidsearch")
            if readonly:
                if migrations.pending(self.db):
                    raise IndexProblem(f"{path}: made by an older vidsearch and cannot be upgraded on a read-only folder; "
                                       f"run a vidsearch command once where it can write there")
            else:
                self.db.enable_wal()
                migrations.apply(self.db)
        except sqlite3.DatabaseError as exc:
            raise storage_error(exc, Path(path).parent) from exc

    def _unknown_migrations(self) -> list[str]:
        known = {m.name for m in migrations._migrations}
        return [m.name for m in migrations.applied(self.db) if m.name not in known]

    def close(self) -> None:
        self.db.conn.close()

    def generation(self) -> int:
        """Bumped with every change to a segment-level row (see m003): what a FAISS file must have been built at."""
        return int(self.db.execute("SELECT generation FROM vector_generation").fetchone()[0])

    # settings -----------------------------------------------------------------
    def get_setting(self, key: str) -> Any:
        rows = list(self.db["settings"].rows_where("key = ?", [key]))
        return json.loads(rows[0]["value"]) if rows else None

    def set_setting(self, key: str, value: Any) -> None:
        with self.db.atomic():
            self.db["settings"].upsert({"key": key, "value": json.dumps(value)}, pk="key")

    # videos -------------------------------------------------------------------
    def video(self, path: str) -> dict[str, Any] | None:
        rows = list(self.db["videos"].rows_where("path = ?", [path]))
        return rows[0] if rows else None

    def videos(self) -> list[dict[str, Any]]:
        return list(self.db["videos"].rows_where(order_by="path"))

    def save_video(self, *, path: str, size: int, mtime: float, hash: str, duration: float, fps: float,
                   frames: int, segments: Iterable[Segment], partial: str | None = None,
                   covered: float | None = None, text: VideoTextRecord | None = None) -> list[int]:
        """Replace a video, its segments and its text atomically; returns the new segment-level ids. `partial` is
        why decoding stopped early (the video is then indexed over its first `covered` seconds only)."""
        with self.db.atomic():
            self._delete(path)
            video_id = self.db["videos"].insert({
                "path": path, "size": size, "mtime": mtime, "hash": hash, "duration": duration, "fps": fps,
                "status": "partial" if partial else "ok", "error": partial, "frames": frames, "indexed_at": _now(),
                "covered": covered if partial else None, "text_stamp": json.dumps(text.stamp) if text else None,
            }).last_pk
            if text is not None:
                self._insert_text(video_id, text)
            self.db.conn.executemany(
                "INSERT INTO segments (video_id, level, start, end, vector) VALUES (?, ?, ?, ?, ?)",
                ((video_id, seg.level, seg.start, seg.end, np.ascontiguousarray(seg.vector, dtype=np.float32).tobytes())
                 for seg in segments))
            rows = self.db.execute("SELECT id FROM segments WHERE video_id = ? AND level = 'segment' ORDER BY id",
                                   [video_id]).fetchall()
        return [r[0] for r in rows]

    def replace_text(self, path: str, text: VideoTextRecord, *, sources: Callable[[str], bool]) -> None:
        """Replace the lines and source rows of `path` whose source `sources` selects with `text`'s, and record its
        stamp, in one transaction; the segments (and so FAISS) are not touched."""
        with self.db.atomic():
            video_id = self.video(path)["id"]
            old = [row[0] for row in self.db.execute("SELECT source FROM text_sources WHERE video_id = ?", [video_id])]
            for source in [s for s in old if sources(s)]:
                self.db.execute("DELETE FROM transcripts WHERE video_id = ? AND source = ?", [video_id, source])
                self.db.execute("DELETE FROM text_sources WHERE video_id = ? AND source = ?", [video_id, source])
            self._insert_text(video_id, text)
            self.db.execute("UPDATE videos SET text_stamp = ? WHERE id = ?", [json.dumps(text.stamp), video_id])

    def _insert_text(self, video_id: int, text: VideoTextRecord) -> None:
        self.db.conn.executemany(
            "INSERT INTO transcripts (video_id, start, end, source, language, text) VALUES (?, ?, ?, ?, ?, ?)",
            ((video_id, line.start, line.end, line.source, line.language, line.text) for line in text.lines))
        self.db.conn.executemany(
            "INSERT INTO text_sources (video_id, source, language, lines, problem, note) VALUES (?, ?, ?, ?, ?, ?)",
            ((video_id, *row) for row in text.sources))

    def text_of(self, path: str, *, sources: Callable[[str], bool] = lambda source: True,
                lines: bool = True) -> VideoTextRecord | None:
        """A video's stored text (lines as TextRow, by source and time; none read without `lines`), or None if the
        video is not recorded."""
        video = self.video(path)
        if video is None:
            return None
        rows = self.db.execute("SELECT start, end, text, source, language FROM transcripts WHERE video_id = ? "
                               "ORDER BY source, start, end, id", [video["id"]]).fetchall() if lines else []
        found = self.db.execute("SELECT source, language, lines, problem, note FROM text_sources WHERE video_id = ? "
                                "ORDER BY source", [video["id"]]).fetchall()
        return VideoTextRecord([TextRow(*r) for r in rows if sources(r[3])], [tuple(r) for r in found if sources(r[0])],
                               json.loads(video["text_stamp"] or "null") or {})

    def has_text(self) -> bool:
        """Whether any video has a transcript line (queries then search the text too)."""
        return self.db.execute("SELECT 1 FROM transcripts LIMIT 1").fetchone() is not None

    def video_with_hash(self, digest: str, *, other_than: str) -> dict[str, Any] | None:
        """An indexed video with this content at another path (a rename or a copy)."""
        rows = list(self.db["videos"].rows_where("hash = ? AND status != 'failed' AND path != ?", [digest, other_than], limit=1))
        return rows[0] if rows else None

    def copy_video(self, source: str, *, path: str, size: int, mtime: float,
                   text: VideoTextRecord | None = None) -> list[int]:
        """Index `path` with the segments and vectors of `source` (same content) and `text`; returns the new
        segment ids."""
        original = self.video(source)
        rows = self.db.execute("SELECT level, start, end, vector FROM segments WHERE video_id = ? ORDER BY id",
                               [original["id"]]).fetchall()
        segments = (Segment(level, start, end, np.frombuffer(vector, dtype=np.float32)) for level, start, end, vector in rows)
        return self.save_video(path=path, size=size, mtime=mtime, hash=original["hash"], duration=original["duration"],
                               fps=original["fps"], frames=original["frames"], segments=segments,
                               partial=original["error"] if original["status"] == "partial" else None,
                               covered=original["covered"], text=text)

    def touch_video(self, path: str, *, size: int, mtime: float) -> None:
        """Record a new size/mtime for a file whose content hash did not change."""
        with self.db.atomic():
            self.db.execute("UPDATE videos SET size = ?, mtime = ? WHERE path = ?", [size, mtime, path])

    def remove_videos(self, paths: Iterable[str]) -> tuple[list[str], np.ndarray]:
        """Delete these files, and everything under these folders; returns (removed paths, their segment ids)."""
        removed: list[str] = []
        with self.db.atomic():
            for path in paths:
                prefix = path.rstrip("/") + "/"
                rows = self.db.execute("SELECT path FROM videos WHERE path = ? OR substr(path, 1, ?) = ?",
                                       [path, len(prefix), prefix]).fetchall()
                removed += [r[0] for r in rows]
            ids = np.concatenate([self.segment_ids(p) for p in removed]) if removed else np.zeros(0, np.int64)
            for path in removed:
                self._delete(path)
        return removed, ids

    def reset(self) -> None:
        """Forget every video, segment and setting (for re-indexing with another model or settings)."""
        with self.db.atomic():
            for table in ("segments", "transcripts", "text_sources", "videos", "settings"):
                self.db.execute(f"DELETE FROM {table}")

    def save_failure(self, *, path: str, size: int, mtime: float, error: str) -> None:
        with self.db.atomic():
            self._delete(path)
            self.db["videos"].insert({
                "path": path, "size": size, "mtime": mtime, "status": "failed", "error": error, "indexed_at": _now(),
            })

    def _delete(self, path: str) -> None:
        for table in ("segments", "transcripts", "text_sources"):
            self.db.execute(f"DELETE FROM {table} WHERE video_id IN (SELECT id FROM videos WHERE path = ?)", [path])
        self.db.execute("DELETE FROM videos WHERE path = ?", [path])

    # segments -----------------------------------------------------------------
    def segment_ids(self, path: str) -> np.ndarray:
        """Segment-level ids of one video (what FAISS holds for it)."""
        rows = self.db.execute("SELECT s.id FROM segments s JOIN videos v ON v.id = s.video_id "
                               "WHERE v.path = ? AND s.level = 'segment'", [path]).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def segment_ids_of(self, video_ids: Iterable[int]) -> np.ndarray:
        """Segment-level ids of these videos."""
        marks = ",".join(str(int(i)) for i in video_ids)
        rows = self.db.execute(f"SELECT id FROM segments WHERE level = 'segment' AND video_id IN ({marks})").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def segment_vectors(self, dim: int, *, ids: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Segment-level (ids, vectors) in id order, all of them or those in `ids`: what FAISS is built from."""
        where = "" if ids is None else f" AND id IN ({','.join(str(int(i)) for i in ids)})"
        rows = self.db.execute(f"SELECT id, vector FROM segments WHERE level = 'segment'{where} ORDER BY id").fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        return ids, vectors

    def window_rows(self, dim: int, *, video_ids: list[int] | None = None) -> tuple[list[tuple], np.ndarray]:
        """Window-level rows, [(video_id, path, start, end)], and their vectors (n, dim), of all videos or these."""
        where = "" if video_ids is None else f" AND s.video_id IN ({','.join(str(int(i)) for i in video_ids)})"
        rows = self.db.execute(f"SELECT s.video_id, v.path, s.start, s.end, s.vector FROM segments s JOIN videos v "
                               f"ON v.id = s.video_id WHERE s.level = 'window'{where} ORDER BY s.id").fetchall()
        vectors = np.frombuffer(b"".join(r[4] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        return [r[:4] for r in rows], vectors

    def segments_in(self, video_id: int, start: float, end: float, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(starts, ends, vectors) of the segment-level rows of a video inside [start, end], in time order."""
        rows = self.db.execute("SELECT start, end, vector FROM segments WHERE level = 'segment' AND video_id = ? "
                               "AND start >= ? AND end <= ? ORDER BY start", [video_id, start - 1e-6, end + 1e-6]).fetchall()
        vectors = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        return (np.array([r[0] for r in rows], dtype=np.float64), np.array([r[1] for r in rows], dtype=np.float64),
                vectors)

    def segment_count(self) -> int:
        """Segment-level rows: what FAISS must hold."""
        return int(self.db.execute("SELECT count(*) FROM segments WHERE level = 'segment'").fetchone()[0])

    def segments(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Segment rows with their video's path and duration, keyed by id."""
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(
            f"SELECT s.id, s.video_id, s.start, s.end, v.path, v.duration FROM segments s "
            f"JOIN videos v ON v.id = s.video_id WHERE s.id IN ({marks})", ids).fetchall()
        keys = ("id", "video_id", "start", "end", "path", "duration")
        return {row[0]: dict(zip(keys, row)) for row in rows}

    def stats(self) -> dict[str, Any]:
        (videos, ok, partial, failed, seconds) = self.db.execute(
            "SELECT count(*), sum(status = 'ok'), sum(status = 'partial'), sum(status = 'failed'), "
            "coalesce(sum(coalesce(covered, duration)), 0) FROM videos").fetchone()
        (segments,) = self.db.execute("SELECT count(*) FROM segments WHERE level = 'segment'").fetchone()
        (windows,) = self.db.execute("SELECT count(*) FROM segments WHERE level = 'window'").fetchone()
        return {"videos": videos, "indexed": ok or 0, "partial": partial or 0, "failed": failed or 0, "segments": segments,
                "windows": windows, "seconds": float(seconds)}

    def text_stats(self) -> dict[str, Any]:
        """Transcript lines, the videos that have any, videos per kind of source, and the text sources that failed."""
        lines, videos = self.db.execute("SELECT count(*), count(DISTINCT video_id) FROM transcripts").fetchone()
        kinds = dict(self.db.execute(
            "SELECT substr(source, 1, instr(source || ':', ':') - 1) AS kind, count(DISTINCT video_id) FROM text_sources "
            "WHERE lines > 0 GROUP BY kind ORDER BY kind").fetchall())
        failed = [{"path": path, "source": source, "problem": problem} for path, source, problem in self.db.execute(
            "SELECT v.path, t.source, t.problem FROM text_sources t JOIN videos v ON v.id = t.video_id "
            "WHERE t.problem IS NOT NULL ORDER BY v.path, t.source")]
        return {"lines": lines, "videos": videos, "sources": kinds, "failures": failed}

    def failures(self) -> list[dict[str, Any]]:
        return list(self.db["videos"].rows_where("status = 'failed'", order_by="path", select="path, error"))

    def listing(self) -> list[dict[str, Any]]:
        """Every recorded file, sorted by path: path, state, reason, duration, covered (seconds indexed, when
        partial), segments, indexed_at and text (its text sources: source, language, lines, problem, note)."""
        counts = dict(self.db.execute(
            "SELECT video_id, count(*) FROM segments WHERE level = 'segment' GROUP BY video_id").fetchall())
        text: dict[int, list[dict[str, Any]]] = {}
        for video_id, *row in self.db.execute("SELECT video_id, source, language, lines, problem, note FROM text_sources "
                                              "ORDER BY video_id, source"):
            text.setdefault(video_id, []).append(dict(zip(("source", "language", "lines", "problem", "note"), row)))
        rows = self.db.execute("SELECT id, path, status, error, duration, covered, indexed_at FROM videos")
        listing = [{"path": path, "state": status, "reason": error, "duration": duration, "covered": covered,
                    "segments": counts.get(vid, 0), "indexed_at": indexed_at, "text": text.get(vid, [])}
                   for vid, path, status, error, duration, covered, indexed_at in rows]
        return sorted(listing, key=lambda r: r["path"])

    def partials(self) -> list[dict[str, Any]]:
        """Files indexed only up to where decoding stopped: path, reason, seconds covered and duration."""
        return list(self.db["videos"].rows_where("status = 'partial'", order_by="path",
                                                 select="path, error, covered, duration"))


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """A connection; read-only ones use `mode=ro`, else (no -shm file can be made beside a WAL database on
    read-only media) `immutable=1`."""
    if not readonly:
        return sqlite3.connect(str(path), timeout=30.0, check_same_thread=False)
    for flag in ("mode=ro", "immutable=1"):
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?{flag}", uri=True, timeout=30.0, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
    raise IndexProblem(f"{path}: cannot open the index read-only")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
