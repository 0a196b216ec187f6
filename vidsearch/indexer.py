"""Walk -> decode -> windows -> encode -> SQLite + FAISS, one transaction per video, skipping unchanged files."""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from .config import IndexSettings
from .db import Segment
from .errors import BadVideo, IndexProblem, UsageError
from .indexdir import IndexDir
from .windows import chunked, group_segments, slice_spans

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .ts .mts .m2ts .wmv .flv .3gp .ogv".split())
T = TypeVar("T")


@dataclass(frozen=True)
class FileResult:
    """What happened to one file in an indexing run."""

    path: str
    status: str  # "indexed", "unchanged" or "failed"
    reason: str | None = None
    seconds: float = 0.0  # seconds of video encoded in this run
    frames: int = 0  # frames decoded and encoded in this run


def find_videos(paths: Iterable[Path]) -> list[Path]:
    """Video files under `paths` (recursively, hidden folders skipped); files named directly are always taken."""
    found: list[Path] = []
    for root in paths:
        root = Path(root).expanduser()
        if root.is_dir():
            for folder, dirs, files in os.walk(root):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [Path(folder, f) for f in sorted(files) if Path(f).suffix.lower() in VIDEO_EXTENSIONS]
        elif root.exists() or root.is_symlink():
            found.append(root)
        else:
            raise UsageError(f"{root}: no such file or folder")
    return sorted({Path(os.path.abspath(p)) for p in found})


def file_hash(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prefetch(items: Iterator[T], depth: int) -> Iterator[T]:
    """Run `items` in a background thread, `depth` items ahead, so decoding overlaps encoding."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put((item, None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            buffer.put((None, exc))
        buffer.put((done, None))

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                buffer.get_nowait()
            except queue.Empty:
                worker.join(0.05)


class Indexer:
    """Indexes files into one index folder with one model; the model loads only when a file needs encoding."""

    def __init__(self, index: IndexDir, *, model: str | None = None, device: str = "auto",
                 fps: float | None = None, window: int | None = None, segment: float | None = None):
        from . import registry

        self.index = index
        recorded = index.db.get_setting("model")
        spec = registry.canonical_spec(model) if model else (recorded["spec"] if recorded else "clip-b32")
        config, _ = registry.resolve(spec)
        self.fingerprint = registry.fingerprint(spec)
        if recorded and recorded["fingerprint"] != self.fingerprint:
            raise IndexProblem(f"{index.path}: this index was built with model {recorded['spec']!r}; "
                               f"use that model, or another --index folder for {spec!r}")
        stored = index.db.get_setting("settings")
        base = IndexSettings(**stored) if stored else IndexSettings(fps=config.fps, window=config.window)
        settings = IndexSettings(fps=base.fps if fps is None else fps, window=base.window if window is None else window,
                                 segment=base.segment if segment is None else segment)
        try:
            settings.validate()
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if stored and settings != base:
            raise IndexProblem(f"{index.path}: this index was built with --fps {base.fps} --window {base.window} "
                               f"--segment {base.segment}; use those, or another --index folder")
        self.spec, self.config, self.settings, self.device = spec, config, settings, device
        self._encoder = None

    @property
    def encoder(self):
        if self._encoder is None:
            from .encoder import Encoder

            self._encoder = Encoder.load(self.spec, self.device)
            if self.index.db.get_setting("model") is None:
                self.index.db.set_setting("model", {"spec": self.spec, "fingerprint": self.fingerprint,
                                                    "dim": self._encoder.dim, "name": self.config.name})
                self.index.db.set_setting("settings", self.settings.to_dict())
        return self._encoder

    def run(self, paths: Iterable[Path]) -> Iterator[FileResult]:
        """Index every video under `paths`, yielding one result per file as it finishes."""
        try:
            for path in find_videos(paths):
                yield self.index_file(path)
        finally:
            self.index.save_vectors()

    def index_file(self, path: Path) -> FileResult:
        name = str(path)
        try:
            stat = path.stat()
        except OSError as exc:
            return self._fail(name, 0, 0.0, f"cannot read: {exc.strerror or exc}")
        previous = self.index.db.video(name)
        if previous and previous["size"] == stat.st_size and previous["mtime"] == stat.st_mtime:
            return FileResult(name, "unchanged" if previous["status"] == "ok" else "failed", previous["error"])
        try:
            return self._encode_file(path, stat)
        except BadVideo as exc:
            return self._fail(name, stat.st_size, stat.st_mtime, exc.reason)
        except OSError as exc:
            return self._fail(name, stat.st_size, stat.st_mtime, f"cannot read: {exc.strerror or exc}")

    def _fail(self, path: str, size: int, mtime: float, reason: str) -> FileResult:
        old_ids = self.index.db.segment_ids(path)
        self.index.db.save_failure(path=path, size=size, mtime=mtime, error=reason)
        if len(old_ids):
            self.index.vectors().remove(old_ids)
        return FileResult(path, "failed", reason)

    def _encode_file(self, path: Path, stat: os.stat_result) -> FileResult:
        from .decode import probe, sample_frames
        from .encoder import l2_normalize

        info = probe(path)
        encoder = self.encoder
        settings = self.settings
        frames = sample_frames(path, fps=settings.fps, size=encoder.image_size)
        segments: list[Segment] = []
        count = 0
        for window in prefetch(chunked(frames, settings.window), depth=2):
            times = [t for t, _ in window]
            slices, whole = encoder.encode_clip(np.stack([f for _, f in window]))
            spans = slice_spans(times, tubelet=self.config.tubelet_size, frame_seconds=1.0 / settings.fps,
                                duration=info.duration)
            for group in group_segments(spans, settings.segment):
                vector = l2_normalize(slices[group.start:group.stop].mean(axis=0))
                segments.append(Segment("segment", spans[group.start][0], spans[group.stop - 1][1], vector))
            segments.append(Segment("window", spans[0][0], spans[-1][1], l2_normalize(whole)))
            count += len(window)
        if count == 0:
            raise BadVideo(path, "no decodable frames")
        name = str(path)
        old_ids = self.index.db.segment_ids(name)
        new_ids = self.index.db.save_video(path=name, size=stat.st_size, mtime=stat.st_mtime, hash=file_hash(path),
                                           duration=info.duration, fps=info.fps, frames=count, segments=segments)
        store = self.index.vectors()
        store.remove(old_ids)
        store.add(np.asarray(new_ids, dtype=np.int64), np.stack([s.vector for s in segments if s.level == "segment"]))
        return FileResult(name, "indexed", seconds=info.duration, frames=count)
