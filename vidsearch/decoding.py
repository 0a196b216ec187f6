"""Decode many files into fixed-size frame windows in worker processes, through a bounded queue."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import queue
import signal
import sys
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
    deblock: bool = True


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
PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)


def decode_job(job: DecodeJob) -> Iterator[Event]:
    """Started, then the file's windows in order, then Finished (with the reason if it failed)."""
    from .decode import probe, sample_frames

    count = 0
    try:
        info = probe(job.path)
        yield Started(job.key, info.duration, info.fps)
        for chunk in chunked(sample_frames(job.path, fps=job.fps, size=job.size, deblock=job.deblock), job.window):
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
    # fork, as PyTorch's DataLoader does on Linux: workers start at once and only touch PyAV and numpy.
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    todo, events = context.Queue(), context.Queue(maxsize=depth)
    for job in jobs:
        todo.put(job)
    parent = os.getpid()
    processes = [context.Process(target=_work, args=(todo, events, parent), daemon=True) for _ in range(workers)]
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


def _work(todo, events, parent: int) -> None:
    """A decode worker: take jobs until the None sentinel, put their events; quit if the parent is gone
    (a killed `index` must not leave workers behind)."""
    if sys.platform == "linux":  # the kernel kills this worker when its parent dies, whatever it is doing
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            return
    while (job := todo.get()) is not None:
        for event in decode_job(job):
            while True:
                try:
                    events.put(event, timeout=1.0)
                    break
                except queue.Full:
                    if os.getppid() != parent:
                        events.cancel_join_thread()  # nobody will read: do not wait to flush at exit
                        return
