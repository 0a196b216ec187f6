"""Decode many files into fixed-size frame windows in worker processes, through a bounded queue."""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BadVideo
from .prefetch import prefetch
from .windows import chunked


@dataclass(frozen=True)
class DecodeJob:
    """One file to cut into windows of `window` frames sampled at `fps`, `size` px square."""

    key: int
    path: Path
    fps: float
    size: int
    window: int


@dataclass(frozen=True)
class Window:
    key: int
    times: list[float]
    frames: np.ndarray  # (T, size, size, 3) uint8


@dataclass(frozen=True)
class Started:
    key: int
    duration: float
    fps: float


@dataclass(frozen=True)
class Finished:
    key: int
    frames: int
    error: str | None = None  # the reason when the file could not be decoded


Event = Started | Window | Finished


def decode_job(job: DecodeJob) -> Iterator[Event]:
    """Started, then the file's windows in order, then Finished (with the reason if it failed)."""
    from .decode import probe, sample_frames

    count = 0
    try:
        info = probe(job.path)
        yield Started(job.key, info.duration, info.fps)
        for chunk in chunked(sample_frames(job.path, fps=job.fps, size=job.size), job.window):
            count += len(chunk)
            yield Window(job.key, [t for t, _ in chunk], np.stack([f for _, f in chunk]))
    except BadVideo as exc:
        yield Finished(job.key, count, exc.reason)
        return
    except OSError as exc:
        yield Finished(job.key, count, f"cannot read: {exc.strerror or exc}")
        return
    yield Finished(job.key, count, None if count else "no decodable frames")


def decode_all(jobs: list[DecodeJob], *, workers: int, depth: int) -> Iterator[Event]:
    """Events of all jobs. Each file's events arrive in order; files interleave when workers > 1.

    workers = 0 decodes in a background thread of this process; otherwise in `workers` processes. At most
    `depth` windows wait in the queue, so memory stays bounded whatever the video length.
    """
    if workers == 0:
        yield from prefetch((event for job in jobs for event in decode_job(job)), depth=depth)
        return
    context = multiprocessing.get_context("spawn")  # no fork: the parent holds torch threads
    todo, events = context.Queue(), context.Queue(maxsize=depth)
    for job in jobs:
        todo.put(job)
    processes = [context.Process(target=_work, args=(todo, events), daemon=True) for _ in range(workers)]
    for _ in processes:
        todo.put(None)
    for process in processes:
        process.start()
    try:
        finished = 0
        while finished < len(jobs):
            try:
                event = events.get(timeout=1.0)
            except queue.Empty:
                if not any(p.is_alive() for p in processes):
                    raise RuntimeError("every decode worker exited early") from None
                continue
            finished += isinstance(event, Finished)
            yield event
    finally:
        for process in processes:
            process.kill()
            process.join()


def _work(todo, events) -> None:
    """A decode worker: take jobs until the None sentinel, put their events."""
    while (job := todo.get()) is not None:
        for event in decode_job(job):
            events.put(event)
