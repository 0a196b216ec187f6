"""Decode many files into fixed-size frame windows (or spans of files into one array each, or their text) in worker
processes, each on its own pipe, a bounded number ahead."""

from __future__ import annotations

import atexit
import ctypes
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

from .errors import BadVideo
from .faults import KILL_AT, crash_point
from .prefetch import prefetch
from .windows import frame_windows


@dataclass(frozen=True)
class DecodeJob:
    """One file to cut into windows of `window` frames sampled at `fps`, `size` px square (and at scene cuts, with
    `cuts`)."""

    key: int
    path: Path
    fps: float
    size: int
    window: int
    deblock: bool = True
    cuts: bool = False


@dataclass(frozen=True)
class SpanJob:
    """The frames of [start, end) of one file sampled at `fps`, `size` px square, as one array (a Span event).

    `keep`, if given, is applied to that array in the worker (cutting a training clip out of a long span, say), so
    only what it returns crosses the pipe; it must be picklable, e.g. a functools.partial of a module function.
    """

    key: int
    path: Path
    fps: float
    size: int
    start: float = 0.0
    end: float | None = None
    keep: Callable[[np.ndarray], np.ndarray] | None = None


@dataclass(frozen=True)
class TextJob:
    """The text of one file's sources of these kinds (`embedded`, `sidecar`, `speech`), speech by the engine named
    (text_index.speech_name), as one TextRead event. Subtitle and audio decoders run in the worker, so one that
    crashes costs that file's text only."""

    key: int
    path: Path
    kinds: frozenset[str]
    speech: str | None = None


@dataclass(frozen=True)
class TextRead:
    """A TextJob's text_sources.VideoText; Finished follows."""

    key: int
    text: object


@dataclass(frozen=True)
class Window:
    key: int
    times: list[float]
    frames: np.ndarray  # (T, size, size, 3) uint8


@dataclass(frozen=True)
class Span:
    """A SpanJob's frames, (T, size, size, 3) uint8, after its `keep`; Finished follows."""

    key: int
    frames: np.ndarray


@dataclass(frozen=True)
class Started:
    key: int
    duration: float
    fps: float


@dataclass(frozen=True)
class Finished:
    """The last event of a file: how many frames its windows held, and whether the whole video was read.

    - error is None: the file decoded to its end.
    - error set, frames > 0: PARTIAL. Decoding stopped early (an FFmpeg error, the data ending before the video
      stream's declared duration, or the decoder crashing) and the windows sent so far are good; `covered` is how
      far they reach, in seconds from the video's start. error says where it stopped, e.g. "decoding stopped at
      2.0 s of 4.0 s" or "decoder crashed: signal 11 (SIGSEGV)".
    - error set, frames == 0: FAILED, nothing usable; error is the reason.
    `covered` is None when no frame was decoded.
    """

    key: int
    frames: int
    error: str | None = None
    covered: float | None = None  # seconds of video decoded, from the stream's start


Event = Started | Window | Span | TextRead | Finished
Job = DecodeJob | SpanJob | TextJob
PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}  # the parent's to handle
_DONE = object()  # the pool thread's last item: every file has finished


def decode_job(job: DecodeJob) -> Iterator[Event]:
    """Started, then the file's windows in order, then Finished (with the reason if it failed or stopped early)."""
    from .frames import Coverage, probe, sample_frames

    count = 0
    coverage = Coverage()
    try:
        info = probe(job.path)
        yield Started(job.key, info.duration, info.fps)
        frames = sample_frames(job.path, fps=job.fps, size=job.size, deblock=job.deblock, coverage=coverage)
        for chunk in frame_windows(frames, job.window, cuts=job.cuts):
            count += len(chunk)
            yield Window(job.key, [t for t, _ in chunk], np.stack([f for _, f in chunk]))
    except BadVideo as exc:
        yield Finished(job.key, count, exc.reason, coverage.decoded if count else None)
        return
    except OSError as exc:
        yield Finished(job.key, count, f"cannot read: {exc.strerror or exc}", coverage.decoded if count else None)
        return
    if not count:
        yield Finished(job.key, 0, "no decodable frames")
        return
    yield Finished(job.key, count, coverage.shortfall(), coverage.decoded)


def decode_span(job: SpanJob) -> Iterator[Span | Finished]:
    """Span (every frame of the span, through `keep`), then Finished; only Finished, with the reason, when the file
    cannot be decoded or the span holds no frame. A file that stops decoding inside the span gives the frames
    before that point, as sample_frames does."""
    from .frames import sample_frames

    try:
        frames = [f for _, f in sample_frames(job.path, fps=job.fps, size=job.size, start=job.start, end=job.end)]
    except BadVideo as exc:
        yield Finished(job.key, 0, exc.reason)
        return
    except OSError as exc:
        yield Finished(job.key, 0, f"cannot read: {exc.strerror or exc}")
        return
    if not frames:
        yield Finished(job.key, 0, f"no frames between {job.start:g} and {job.end if job.end is None else f'{job.end:g}'} s")
        return
    span = np.stack(frames)
    yield Span(job.key, span if job.keep is None else job.keep(span))
    yield Finished(job.key, len(frames))


_engines: dict[str, object] = {}  # speech engines loaded in this process, by name: one each, reused for every file


def read_text_job(job: TextJob) -> Iterator[TextRead | Finished]:
    """TextRead with every source's lines, problems and notes (read_text never raises for a bad source), then
    Finished."""
    from .text_index import load_engine
    from .text_sources import read_text

    engine = None
    if job.speech and "speech" in job.kinds:
        engine = _engines.get(job.speech) or _engines.setdefault(job.speech, load_engine(job.speech))
    text = read_text(job.path, embedded="embedded" in job.kinds, sidecars="sidecar" in job.kinds, speech=engine)
    yield TextRead(job.key, text)
    yield Finished(job.key, 0)


def job_events(job: Job) -> Iterator[Event]:
    """A job's events, decoded here: decode_job's for a DecodeJob, decode_span's for a SpanJob, read_text_job's for
    a TextJob."""
    if isinstance(job, TextJob):
        return read_text_job(job)
    return decode_span(job) if isinstance(job, SpanJob) else decode_job(job)


def decode_all(jobs: Iterable[Job], *, workers: int, depth: int) -> Iterator[Event]:
    """Events of all jobs. Each file's events arrive in order; files interleave when workers > 1.

    `jobs` may be a lazy iterator: it is read one job ahead of the workers, in a thread of this process.

    workers = 0 decodes in a background thread of this process; otherwise in `workers` processes. At most
    `depth` events wait here (and one more per worker, being sent), so memory stays bounded whatever the
    video length. A worker that dies (a decoder crash, the OOM killer) costs only the file it held: that file
    gets Finished(error="decoder crashed: ...") and a new worker takes the remaining files.
    """
    if workers == 0:
        yield from prefetch((event for job in jobs for event in job_events(job)), depth=depth)
        return
    pool = _Pool(jobs, workers=workers, depth=depth)
    try:
        yield from pool.events()
    finally:
        pool.close()


@dataclass
class _Slot:
    """One worker process, its end of the pipe, and the job it holds (None once it has been let go)."""

    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    job: Job | None = None
    frames: int = 0  # of `job`, in the windows received
    reached: float | None = None  # where those windows end, seconds
    duration: float | None = None


@dataclass(frozen=True)
class _Raised:
    """A Python exception in a worker (a bug, not a bad file): re-raised here, as the thread path does."""

    error: BaseException


class _Pool:
    """Worker processes with a pipe each, so a worker that dies mid-message spoils only its own pipe (a shared
    multiprocessing.Queue can be left locked by a dead writer). A thread here hands out jobs one at a time, reads
    events into a queue while at most `depth` are waiting, notices dead workers and replaces them."""

    def __init__(self, jobs: Iterable[Job], *, workers: int, depth: int):
        self.context = _worker_context()
        self.jobs = iter(jobs)  # read by the pool thread only, one job ahead (`todo`), so it may be lazy
        self.todo: deque = deque()
        self.ready: queue.Queue = queue.Queue()  # events, then _DONE or an exception
        self.room = threading.Semaphore(depth)  # taken per event read from a worker, given back when it is yielded
        self.stopping = threading.Event()
        self.lock = threading.Lock()  # starting a worker vs close() killing them all
        self.slots: list[_Slot] = []
        # A pool still open at exit (its consumer thread was a daemon, cut off) kills its workers first: they ignore
        # SIGTERM, so multiprocessing's own exit handler (terminate, then join) would wait for them for ever.
        atexit.register(self._kill_workers)
        self.thread = threading.Thread(target=self._run, args=(workers,), name="decode-pool", daemon=True)
        self.thread.start()

    def events(self) -> Iterator[Event]:
        while True:
            item = self.ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            self.room.release()
            yield item

    def close(self) -> None:
        """Stop the thread and kill every worker, whatever it is doing."""
        atexit.unregister(self._kill_workers)
        self._kill_workers()
        self.room.release(len(self.slots) + 1)  # a thread waiting for room wakes, sees `stopping` and returns
        self.thread.join()
        for slot in self.slots:
            slot.process.join()
            slot.conn.close()

    def _kill_workers(self) -> None:
        self.stopping.set()
        with self.lock:
            for slot in self.slots:
                slot.process.kill()

    def _run(self, workers: int) -> None:
        try:
            if hasattr(signal, "pthread_sigmask"):
                # The fork server, started from this thread, and the workers it forks keep SIGINT/SIGTERM blocked
                # until they ignore them, so a Ctrl-C right then cannot kill one. This thread never handles
                # signals anyway (Python does that on the main thread).
                signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
            for _ in range(workers):
                if not self._more():  # no more workers than jobs
                    break
                self._hand_out(self._hire())
            while not self.stopping.is_set() and (busy := [s for s in self.slots if s.job is not None]):
                ready = wait([s.conn for s in busy] + [s.process.sentinel for s in busy])
                for slot in busy:
                    if self.stopping.is_set():
                        return
                    if slot.conn in ready:
                        self._receive(slot)
                    elif slot.process.sentinel in ready and not slot.conn.poll():  # dead, and nothing left to read
                        self._bury(slot)
            self.ready.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self.ready.put(exc)

    def _more(self) -> bool:
        """Is there a job left to hand out? Reads the next one from `jobs` into `todo` if need be."""
        if not self.todo:
            job = next(self.jobs, None)
            if job is not None:
                self.todo.append(job)
        return bool(self.todo)

    def _hire(self) -> _Slot | None:
        """Start a worker on a new pipe (None when the pool is stopping)."""
        with self.lock:
            if self.stopping.is_set():
                return None
            ours, theirs = self.context.Pipe()
            process = self.context.Process(target=_work, args=(theirs, os.environ.get(KILL_AT)), name="vidsearch-decode",
                                           daemon=True)
            process.start()
            theirs.close()  # the worker's copy is its only one, so its death reads as end-of-file here
            slot = _Slot(process, ours)
            self.slots.append(slot)
            return slot

    def _hand_out(self, slot: _Slot | None) -> None:
        """Give the worker the next job, or let it go when there is none."""
        if slot is None:
            return
        slot.job = self.todo.popleft() if self._more() else None
        slot.frames, slot.reached, slot.duration = 0, None, None
        try:
            slot.conn.send(slot.job)
        except OSError:
            pass  # the worker is dead: the loop notices and the job counts as crashed

    def _receive(self, slot: _Slot) -> None:
        """Read one event from the worker (waiting for room for it first) and pass it on."""
        self.room.acquire()
        if self.stopping.is_set():
            return
        try:
            event = slot.conn.recv()
        except (EOFError, OSError):  # it died, perhaps half-way through a message
            self.room.release()
            self._bury(slot)
            return
        if isinstance(event, _Raised):
            raise event.error
        if isinstance(event, Started):
            slot.duration = event.duration
        elif isinstance(event, Window):
            slot.frames += len(event.times)
            slot.reached = event.times[-1] + 1 / slot.job.fps
        self.ready.put(event)
        if isinstance(event, Finished):
            self._hand_out(slot)

    def _bury(self, slot: _Slot) -> None:
        """The worker died holding a job: that file ends with the reason, and a new worker takes its place."""
        slot.process.join(5)
        if slot.process.exitcode is None:  # closed its pipe but lives on: cannot be trusted with more
            slot.process.kill()
            slot.process.join()
        job, slot.job = slot.job, None
        slot.conn.close()
        self.room.acquire()
        if self.stopping.is_set():
            return
        covered = None if slot.reached is None else min(slot.reached, slot.duration or slot.reached)
        self.ready.put(Finished(job.key, slot.frames, _death(slot.process.exitcode), covered))
        if self._more():
            self._hand_out(self._hire())



def _death(exitcode: int) -> str:
    """How a worker ended, for the file it held: "decoder crashed: signal 11 (SIGSEGV)"."""
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown"
        return f"decoder crashed: signal {-exitcode} ({name})"
    return f"decoder crashed: exit code {exitcode}"


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers come from a fork server on Linux: a clean single-threaded process that has imported this module, so
    starting one is a cheap fork that cannot inherit a lock held by another thread of the indexer (a plain fork while
    the text reader was inside PyAV's imports left the worker waiting for that lock for ever)."""
    if sys.platform != "linux":
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, f"{__package__}.frames"])  # PyAV, imported once
    return context


def _work(conn, kill_at: str | None) -> None:
    """A decode worker: take jobs from the pipe until None, send their events back one by one.

    Ctrl-C and SIGTERM are for the parent, which stops the workers itself. The kernel kills this worker when the
    process that forked it ends (the fork server, which ends with the parent), whatever it is doing. `kill_at` is
    the parent's fault point (a fork server started earlier holds an older environment)."""
    for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    if kill_at:
        os.environ[KILL_AT] = kill_at
    else:
        os.environ.pop(KILL_AT, None)
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        parent = multiprocessing.parent_process()
        if parent is not None and not parent.is_alive():  # the parent died before prctl took effect
            return
    try:
        while (job := conn.recv()) is not None:
            crash_point(f"{'text' if isinstance(job, TextJob) else 'decode'}-worker@{job.path.name}")
            for event in _guarded(job):
                conn.send(event)
    except (EOFError, OSError):  # the parent has gone
        return


def _guarded(job: Job) -> Iterator[Event | _Raised]:
    """The job's events, ending with _Raised if it raises (with the traceback as text if the error cannot be pickled)."""
    try:
        yield from job_events(job)
    except Exception as exc:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            exc = RuntimeError(f"decode worker failed on {job.path}:\n{traceback.format_exc()}")
        yield _Raised(exc)
