"""A video's text for the index: which sources to read, the stamp that tells when to read again, and a reader
thread so that speech recognition runs beside video encoding."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path

from .db import VideoTextRecord
from .decode_workers import Finished, TextJob, TextRead, decode_all
from .errors import UsageError
from .faults import crash_point

KINDS = ("embedded", "sidecar", "speech")  # a source `sidecar:a.srt` is of kind `sidecar`
SPEECH_OFF = "off"


def speech_name(value: str) -> str | None:
    """The canonical name of a `--speech` value: `pocketsphinx`, `whisper` (= `whisper-small`), `whisper-SIZE`
    (tiny, base, small, medium, large-v3 ...), or None for `off`. Raises UsageError for anything else."""
    from .text_sources import SPEECH_ENGINES

    value = value.strip().lower()
    if value == SPEECH_OFF:
        return None
    if value == "whisper":
        return "whisper-small"
    if value == "pocketsphinx" or (value.startswith("whisper-") and len(value) > len("whisper-")):
        return value
    raise UsageError(f"--speech {value!r}: choose {', '.join(SPEECH_ENGINES)}, whisper-SIZE (whisper-tiny ... "
                     f"whisper-large-v3) or {SPEECH_OFF}")


def load_engine(name: str):
    """The speech engine of a canonical name; ModelUnavailable (one line) when its package or weights are missing."""
    from .text_sources import speech_engine

    engine, _, size = name.partition("-")
    return speech_engine(engine, model_size=size or "small")


def kind(source: str) -> str:
    return source.split(":", 1)[0]


class Sidecars:
    """The sidecar files of videos, each folder listed once per run (a folder of 10,000 videos is not listed
    10,000 times)."""

    def __init__(self) -> None:
        self._listings: dict[Path, list[os.DirEntry]] = {}

    def stamp(self, video: Path) -> list[list]:
        """[name, size, mtime_ns] of each sidecar file of `video`; an unlistable folder is a stamp of its own."""
        from .text_sources import find_sidecars

        folder = video.parent
        try:
            if folder not in self._listings:
                with os.scandir(folder) as entries:
                    self._listings[folder] = list(entries)
            found = find_sidecars(video, listing=self._listings[folder])
            return [[s.path.name, *_size_and_time(s.path)] for s in found]
        except OSError as exc:
            return [["", -1, exc.errno or 0]]


def _size_and_time(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return -1, 0
    return stat.st_size, stat.st_mtime_ns


def stamp_of(video: Path, speech: str | None, sidecars: Sidecars) -> dict:
    """What a video's text is read from: its sidecar files (name, size, time) and the speech engine (or None)."""
    return {"sidecars": sidecars.stamp(video), "speech": speech}


def kinds_to_read(stored: VideoTextRecord | None, stamp: dict, *, retry_failed: bool = False) -> set[str]:
    """The kinds of source to read again for an unchanged video: all of them when its text was never read, the
    sidecars when they changed, speech when the engine changed, and (with `retry_failed`) the kinds that failed."""
    if stored is None or not stored.stamp:
        return set(KINDS)
    kinds = set()
    if stored.stamp.get("sidecars") != stamp["sidecars"]:
        kinds.add("sidecar")
    if stored.stamp.get("speech") != stamp["speech"]:
        kinds.add("speech")
    if retry_failed:
        kinds |= {kind(source) for source, _, _, problem, _ in stored.sources if problem}
    return kinds


def record(text, stamp: dict) -> VideoTextRecord:
    """A VideoText (text_sources.read_text) as stored: its lines, one row per source, and the stamp."""
    rows: dict[str, list] = {}
    for line in text.lines:
        row = rows.setdefault(line.source, [line.source, line.language, 0, None, None])
        row[2] += 1
    for problem in text.problems:
        rows.setdefault(problem.source, [problem.source, None, 0, None, None])[3] = problem.reason
    for note in text.notes:
        rows.setdefault(note.source, [note.source, None, 0, None, None])[4] = note.note
    return VideoTextRecord(list(text.lines), [tuple(row) for row in rows.values()], stamp)


def text_workers(speech: str | None) -> int:
    """Worker processes that read text: one per core with pocketsphinx, which runs on one thread and is the slow part
    of a run (files are transcribed side by side, beside encoding); else one (subtitles are quick, and whisper
    runs threads of its own or on the GPU)."""
    return max(1, os.cpu_count() or 1) if speech == "pocketsphinx" else 1


class TextReader:
    """Reads videos' text in worker processes of its own (decode_workers' TextJob; `text_workers`), so that speech
    recognition overlaps video decoding and encoding (in a thread of this process, pocketsphinx held the GIL: 7% of
    it overlapped) and a crashing subtitle or audio decoder costs only that file's text."""

    def __init__(self, speech: str | None):
        self.speech = speech
        self.workers = text_workers(speech)
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._futures: dict[int, tuple[Future, Path, frozenset[str]]] = {}
        self._threads: list[threading.Thread] = []
        self._failed: BaseException | None = None  # what stopped the reader: every later text raises it too

    def submit(self, video: Path, kinds: Iterable[str]) -> Future:
        """A future VideoText of these kinds of `video`'s sources (speech only when an engine is set)."""
        future: Future = Future()
        if self._failed is not None:
            future.set_exception(self._failed)
            return future
        key = len(self._futures)
        kinds = frozenset(kinds)
        self._futures[key] = (future, video, kinds)
        self._jobs.put(TextJob(key, video, kinds, self.speech if "speech" in kinds else None))
        if not self._threads:  # daemons: Ctrl-C does not wait for a long transcription to end
            self._threads = [threading.Thread(target=self._run, name=f"vidsearch-text-{i}", daemon=True)
                             for i in range(self.workers)]
            for thread in self._threads:
                thread.start()
        return future

    def read(self, video: Path, kinds: Iterable[str]):
        """submit(...).result(): the text, read where every other is."""
        return self.submit(video, kinds).result()

    def close(self) -> None:
        """Let the threads go once the texts asked for are read (after a failed or interrupted run, the process's
        exit stops them instead: this would wait for a transcription to end)."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def _feed(self) -> Iterator[TextJob]:
        while (job := self._jobs.get()) is not None:
            yield job

    def _run(self) -> None:
        """One worker's texts. Each thread runs a pool of one worker, which takes the next job from the shared queue
        only once its own is done: a pool of several would wait for a job that is not yet asked for (it reads its
        jobs one ahead) while holding the texts of jobs its other workers finished."""
        read: dict[int, object] = {}
        try:
            for event in decode_all(self._feed(), workers=1, depth=4):
                if isinstance(event, TextRead):
                    read[event.key] = event.text
                elif isinstance(event, Finished):
                    future, _, kinds = self._futures[event.key]
                    crash_point("text-read")
                    text = read.pop(event.key, None)
                    if text is None:  # the worker died reading it: a subtitle or audio decoder crashed
                        from .text_sources import TextProblem, VideoText

                        text = VideoText(problems=[TextProblem(source_kind, event.error or "the text reader died")
                                                   for source_kind in sorted(kinds)])
                    future.set_result(text)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for a text, which raises it
            self._failed = exc
            for future, _, _ in self._futures.values():
                if not future.done():
                    future.set_exception(exc)
