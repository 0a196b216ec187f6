"""Check an index's invariants (SQLite health, FAISS agreeing with SQLite, vectors, files) and repair them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .indexdir import VECTORS_FILE, IndexDir


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

    integrity = [row[0] for row in db.execute("PRAGMA integrity_check").fetchall()]
    report("sqlite integrity", [] if integrity == ["ok"] else integrity)
    orphans = db.execute("SELECT count(*) FROM segments WHERE video_id NOT IN (SELECT id FROM videos)").fetchone()[0]
    report("segments belong to videos", [f"{orphans} orphan segments"] if orphans else [],
           lambda: db.execute("DELETE FROM segments WHERE video_id NOT IN (SELECT id FROM videos)"))
    model = index.db.get_setting("model")
    videos = index.db.videos()
    report("model recorded", ["videos but no model recorded"] if videos and not model else [])
    if model:
        report("vectors well-formed", _bad_vectors(index, model["dim"]))
    counts = dict(db.execute("SELECT video_id, count(*) FROM segments GROUP BY video_id").fetchall())
    report("indexed videos have segments, failed ones none",
           [f"{v['path']} ({v['status']}, {counts.get(v['id'], 0)} segments)" for v in videos
            if (v["status"] == "ok") != bool(counts.get(v["id"]))])
    missing = [v["path"] for v in videos if not Path(v["path"]).exists()]
    report("indexed files still exist", missing, lambda: index.remove(missing))
    changed = [v["path"] for v in videos if v["path"] not in missing and _changed(v)]
    report("indexed files unchanged (re-run `vidsearch index` for these)", changed)
    leftovers = index.leftover_temp_files()
    report("no leftover temporary files", [p.name for p in leftovers],
           lambda: [p.unlink(missing_ok=True) for p in leftovers])
    report("FAISS matches SQLite", _faiss_problems(index), index.rebuild_and_save)
    return findings


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
    path = index.path / VECTORS_FILE
    expected = index.db.segment_checksum()
    if not path.is_file():
        return [] if expected[0] == 0 else [f"{VECTORS_FILE} is missing"]
    from .store import VectorStore

    store = VectorStore.load(path)
    if store.checksum() != expected:
        return [f"{VECTORS_FILE} holds {store.count} vectors (id sum {store.checksum()[1]}), SQLite {expected[0]} "
                f"(id sum {expected[1]})"]
    ids, vectors = index.db.segment_vectors(store.dim)
    sample = np.unique(np.linspace(0, len(ids) - 1, num=min(len(ids), 1000)).astype(int)) if len(ids) else []
    stored = store.reconstruct(ids[sample])
    mismatched = [int(ids[i]) for i, row in zip(sample, stored) if not np.allclose(row, vectors[i], atol=1e-6)]
    return [f"segment {i}: FAISS vector differs from SQLite" for i in mismatched]
