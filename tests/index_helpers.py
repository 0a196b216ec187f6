"""Build small indexes through the real CLI and compare what they hold."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from media import write_video


def library(folder: Path, names=("a", "b", "c")) -> Path:
    """Short videos a.mp4, b.mp4, ... (6, 8, 10 s at 5 fps) in `folder`."""
    for i, name in enumerate(names):
        write_video(folder / f"{name}.mp4", seconds=6 + 2 * i, fps=5, size=(96, 64))
    return folder


def snapshot(home: Path):
    """Everything an index holds, comparable across runs: videos, and segments with their vectors."""
    con = sqlite3.connect(home / "vidsearch.db")
    videos = con.execute("SELECT path, status, error, hash, frames FROM videos ORDER BY path").fetchall()
    segments = con.execute("SELECT v.path, s.level, s.start, s.end, s.vector FROM segments s JOIN videos v "
                           "ON v.id = s.video_id ORDER BY v.path, s.level, s.start").fetchall()
    con.close()
    return videos, segments


def text_snapshot(home: Path):
    """An index's text, comparable across runs: transcript lines (path, source, language, start, end, text) and text
    sources (path, source, language, lines, problem, note)."""
    con = sqlite3.connect(home / "vidsearch.db")
    transcripts = con.execute("SELECT v.path, t.source, t.language, t.start, t.end, t.text FROM transcripts t JOIN videos v "
                              "ON v.id = t.video_id ORDER BY v.path, t.source, t.start, t.end, t.text").fetchall()
    sources = con.execute("SELECT v.path, t.source, t.language, t.lines, t.problem, t.note FROM text_sources t JOIN videos v "
                          "ON v.id = t.video_id ORDER BY v.path, t.source").fetchall()
    con.close()
    return transcripts, sources
