"""Check an index's invariants (SQLite health, FAISS agreeing with SQLite, vectors, files) and repair them."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .indexdir import DB_FILE, VECTORS_FILE, IndexDir


@dataclass(frozen=True)
class Finding:
    """One checked invariant: `ok`, or what is wrong and whether --repair fixed it."""

    check: str
    ok: bool
    detail: str
    repaired: bool = False


def verify(index: IndexDir, *, repair: bool = False) -> list[Finding]:
    db = index.db.db
    findings = []

    def report(check: str, problems: list[str], fix=None) -> None:
        if not problems:
            findings.append(Finding(check, True, "ok"))
            return
        detail = f"{len(problems)} problem(s): " + "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")
        if repair and fix is not None:
            fix()
        findings.append(Finding(check, False, detail, repaired=repair and fix is not None))

    try:
        integrity = [row[0] for row in db.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        integrity = [str(exc)]
    if integrity != ["ok"]:  # nothing else can be trusted: say how to start again
        report("sqlite integrity", integrity + [f"to rebuild, move {index.path / DB_FILE} aside and run `vidsearch index` "
                                                f"again (your videos are unchanged)"])
        return findings
    report("sqlite integrity", [])
    orphans = db.execute("SELECT count(*) FROM segments WHERE video_id NOT IN (SELECT id FROM videos)").fetchone()[0]
    report("segments belong to videos", [f"{orphans} orphan segments"] if orphans else [],
           lambda: index.commit(_orphan_remover(index)))
    stray = db.execute("SELECT count(*) FROM transcripts WHERE video_id NOT IN "
                       "(SELECT id FROM videos WHERE status != 'failed')").fetchone()[0]
    report("transcript lines belong to indexed videos", [f"{stray} stray lines"] if stray else [],
           lambda: _remove_stray_text(index))
    report("full-text index matches the transcripts", _fts_problems(index),
           lambda: _rebuild_fts(index))
    model = index.db.get_setting("model")
    videos = index.db.videos()
    report("model recorded", ["videos indexed but no model recorded"]
           if any(v["status"] != "failed" for v in videos) and not model else [])
    if model:
        report("vectors well-formed", _bad_vectors(index, model["dim"]))
    counts = dict(db.execute("SELECT video_id, count(*) FROM segments GROUP BY video_id").fetchall())
    report("indexed videos have segments, failed ones none",
           [f"{v['path']} ({v['status']}, {counts.get(v['id'], 0)} segments)" for v in videos
            if (v["status"] != "failed") != bool(counts.get(v["id"]))])
    missing = [v["path"] for v in videos if not Path(v["path"]).exists()]
    report("indexed files still exist", missing, lambda: index.remove(missing))
    changed = [v["path"] for v in videos if v["path"] not in missing and _changed(v)]
    report("indexed files unchanged (re-run `vidsearch index` for these)", changed)
    leftovers = index.leftover_temp_files()
    report("no leftover temporary files", [p.name for p in leftovers],
           lambda: [p.unlink(missing_ok=True) for p in leftovers])
    report("FAISS matches SQLite", _faiss_problems(index), index.rebuild_and_save)
    partial = [f"{v['path']} ({v['error']})" for v in videos if v["status"] == "partial"]
    if partial:  # not a problem of the index: these files themselves stop decoding part-way
        findings.append(Finding("files indexed only in part (note)", True, "; ".join(partial)))
    return findings


def _orphan_remover(index: IndexDir):
    def write():
        ids = [r[0] for r in index.db.db.execute(
            "SELECT id FROM segments WHERE level = 'segment' AND video_id NOT IN (SELECT id FROM videos)")]
        with index.db.db.atomic():
            index.db.db.execute("DELETE FROM segments WHERE video_id NOT IN (SELECT id FROM videos)")
        return ids, []
    return write


def _remove_stray_text(index: IndexDir) -> None:
    with index.db.db.atomic():
        for table in ("transcripts", "text_sources"):
            index.db.db.execute(f"DELETE FROM {table} WHERE video_id NOT IN "
                                f"(SELECT id FROM videos WHERE status != 'failed')")


def _fts_problems(index: IndexDir) -> list[str]:
    """FTS5's own check that its index holds exactly the transcripts' words."""
    try:
        index.db.db.execute("INSERT INTO transcripts_fts(transcripts_fts, rank) VALUES ('integrity-check', 1)")
    except sqlite3.DatabaseError as exc:
        if "readonly" in str(exc):  # FTS5 checks through a write command: a read-only index cannot run it
            return []
        return [f"{exc} (`verify --repair` rebuilds it from the transcripts)"]
    return []


def _rebuild_fts(index: IndexDir) -> None:
    with index.db.db.atomic():
        index.db.db.execute("INSERT INTO transcripts_fts(transcripts_fts) VALUES ('rebuild')")


def _bad_vectors(index: IndexDir, dim: int) -> list[str]:
    problems = []
    for seg_id, blob in index.db.db.execute("SELECT id, vector FROM segments"):
        if blob is None or len(blob) != dim * 4:
            problems.append(f"segment {seg_id}: {0 if blob is None else len(blob)} bytes, expected {dim * 4}")
            continue
        vector = np.frombuffer(blob, dtype=np.float32)
        if not np.all(np.isfinite(vector)) or abs(float(np.linalg.norm(vector)) - 1.0) > 1e-3:
            problems.append(f"segment {seg_id}: not a finite unit vector")
    return problems


def _changed(video: dict) -> bool:
    stat = Path(video["path"]).stat()
    return stat.st_size != video["size"] or stat.st_mtime != video["mtime"]


def _faiss_problems(index: IndexDir) -> list[str]:
    """The FAISS file against its stamp (generation, size, CRC-32) and against SQLite (every id, 1,000 vectors)."""
    from .indexdir import STAMP
    from .store import DamagedVectors, VectorStore, file_crc32

    path = index.path / VECTORS_FILE
    expected = index.db.segment_count()
    if not path.is_file():
        return [] if expected == 0 else [f"{VECTORS_FILE} is missing"]
    stamp = index.db.get_setting(STAMP)
    problems = []
    if stamp is None or stamp["generation"] != index.db.generation():
        problems.append(f"{VECTORS_FILE} was written before the last change to SQLite")
    elif path.stat().st_size != stamp["bytes"] or file_crc32(path) != stamp["crc32"]:
        problems.append(f"{VECTORS_FILE} is not the file that was written (size or CRC-32 differs)")
    try:
        store = VectorStore.load(path)
    except DamagedVectors as exc:
        return [*problems, f"{VECTORS_FILE} cannot be read ({exc})"]
    ids, vectors = index.db.segment_vectors(index.dim) if index.dim else (np.zeros(0, np.int64), None)
    held = np.sort(store.ids())
    if store.dim != index.dim or not np.array_equal(held, ids):
        return [*problems, f"{VECTORS_FILE} holds {store.count} vectors of size {store.dim}, SQLite {len(ids)} of "
                           f"{index.dim} (or other ids)"]
    sample = np.unique(np.linspace(0, len(ids) - 1, num=min(len(ids), 1000)).astype(int)) if len(ids) else []
    stored = store.reconstruct(ids[sample])
    mismatched = [int(ids[i]) for i, row in zip(sample, stored) if not np.allclose(row, vectors[i], atol=1e-6)]
    return problems + [f"segment {i}: FAISS vector differs from SQLite" for i in mismatched]
