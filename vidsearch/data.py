"""Training pairs: manifest parsing and checking with line-numbered problems, and a dataset of fixed-length frame clips
(decoded here or in decode worker processes, the same either way)."""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .decode_workers import Finished, Span, SpanJob, decode_all, decode_span
from .errors import BadVideo, UsageError


@dataclass(frozen=True)
class Pair:
    """One video span and its caption, from line `line` of a manifest; `video_duration` once load_pairs has probed it.
    `alternatives` are other phrasings of the caption (a manifest's list of captions after the first)."""

    video: Path
    start: float | None
    end: float | None
    caption: str
    line: int
    video_duration: float | None = field(default=None, compare=False)
    alternatives: tuple[str, ...] = ()

    @property
    def caption_id(self) -> int:
        """The same number for pairs captioned alike (the same caption, or the same list of phrasings), on every run
        and process: training never scores such pairs as each other's negatives."""
        said = "\x1f".join((self.caption, *self.alternatives)).encode()
        return int.from_bytes(hashlib.blake2b(said, digest_size=8).digest(), "little", signed=True)

    def caption_for(self, key: tuple[int, ...]) -> str:
        """The caption a training step uses: one of the phrasings, drawn by `key` (seed, step, clip), so that a
        resumed run draws the same."""
        if not self.alternatives:
            return self.caption
        drawn = int(np.random.default_rng(key).integers(1 + len(self.alternatives)))
        return self.caption if drawn == 0 else self.alternatives[drawn - 1]


@dataclass(frozen=True)
class ManifestProblem:
    """A manifest line that was skipped, and why."""

    manifest: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.manifest}:{self.line}: {self.reason}"


def read_manifest(path: Path) -> tuple[list[Pair], list[ManifestProblem]]:
    """Parse JSONL (or CSV with a header) lines `{"video", "start"?, "end"?, "caption"}`, where a JSON caption may be
    a list of phrasings (training draws one each time it takes the clip); video paths may be
    relative to the manifest's folder. Bad lines are returned as problems, never raised."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read manifest ({exc})") from None
    pairs, problems = [], []
    for line, record in manifest_records(path, text):
        try:
            pairs.append(_pair(path, line, record))
        except ValueError as exc:
            problems.append(ManifestProblem(path, line, str(exc)))
    return pairs, problems


def load_pairs(manifest: str | Path) -> tuple[list[Pair], list[ManifestProblem]]:
    """The manifest's pairs whose video opens and whose span starts before the video ends; every other line becomes
    a problem with its line number."""
    from .frames import probe

    pairs, problems = read_manifest(Path(manifest))
    usable = []
    for pair in pairs:
        try:
            duration = probe(pair.video).duration
        except BadVideo as exc:
            problems.append(ManifestProblem(Path(manifest), pair.line, f"unreadable video: {exc}"))
            continue
        if pair.start is not None and duration > 0 and pair.start >= duration:
            problems.append(ManifestProblem(Path(manifest), pair.line,
                                            f"start ({pair.start:g} s) is not before the video's end ({duration:g} s)"))
            continue
        usable.append(replace(pair, video_duration=duration))
    return usable, sorted(problems, key=lambda p: p.line)


def span_frames(pair: Pair, fps: float) -> int:
    """How many frames ClipDataset decodes for the pair's span at `fps`, at most: one per 1/fps of the span, which
    ends at `end` or the video's end, whichever comes first (fewer when the video has fewer frames per second)."""
    if pair.video_duration is None and pair.end is None:
        from .frames import probe

        pair = replace(pair, video_duration=probe(pair.video).duration)
    ends = [t for t in (pair.end, pair.video_duration) if t is not None and t > 0]
    start = pair.start or 0.0
    return max(1, math.ceil((min(ends) - start) * fps)) if ends else 1


def span_bytes(pairs: Sequence[Pair], *, fps: float, size: int) -> int:
    """The memory ClipDataset's cache takes once every pair has been decoded (at most): whole spans, not clips."""
    return sum(span_frames(pair, fps) for pair in pairs) * size * size * 3


def manifest_records(path: Path, text: str) -> Iterator[tuple[int, object]]:
    """(line number, record) of a JSONL or CSV (by extension) file's text; a JSONL line that is not JSON is its error."""
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        for row in reader:
            yield reader.line_num, {k: v for k, v in row.items() if v not in ("", None)}
        return
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.strip():
            try:
                yield number, json.loads(raw)
            except json.JSONDecodeError as exc:
                yield number, ValueError(f"not valid JSON ({exc.msg})")


def _pair(manifest: Path, line: int, record: object) -> Pair:
    if isinstance(record, ValueError):
        raise record
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object with keys video, caption, and optional start, end")
    missing = [k for k in ("video", "caption") if k not in record]
    if missing:
        raise ValueError(f"missing key{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    captions = record["caption"] if isinstance(record["caption"], list) else [record["caption"]]
    captions = [str(caption).strip() for caption in captions]
    if not captions or not all(captions):
        raise ValueError("empty caption")
    start, end = (seconds_field(record, key) for key in ("start", "end"))
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    video = Path(os.path.expanduser(str(record["video"])))
    video = video if video.is_absolute() else manifest.parent / video
    if not video.is_file():
        raise ValueError(f"video not found: {video}")
    if not os.access(video, os.R_OK):
        raise ValueError(f"video not readable: {video}")
    return Pair(video=video, start=start, end=end, caption=captions[0], line=line, alternatives=tuple(captions[1:]))


def seconds_field(record: dict, key: str) -> float | None:
    """A record's time in seconds under `key` (None when absent); ValueError when it is not a finite number."""
    if record.get(key) is None:
        return None
    try:
        value = float(record[key])
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number of seconds, got {record[key]!r}") from None
    if value < 0 or not np.isfinite(value):
        raise ValueError(f"{key} must be a non-negative number of seconds, got {record[key]!r}")
    return value


ClipRequest = tuple[int, Sequence[int] | None]  # (pair index, seed of the clip's random draw, or None for the centre)
SAMPLINGS = ("spread", "contiguous")  # how take_clip picks a clip's frames out of a span


class ClipDataset:
    """Each pair as a clip of `frames` uint8 frames (frames, size, size, 3) out of its span decoded at `fps`; with
    `cache`, each span is decoded once.

    `sampling` says how a span longer than the clip is cut (take_clip): `contiguous`, a window of consecutive frames
    (random in training, the centre otherwise); `spread`, frames evenly strided over the whole span (from a random
    phase in training, the middle of each stride otherwise). A span that fits in the clip is all of it, its last
    frame repeated, either way.
    """

    def __init__(self, pairs: list[Pair], *, frames: int, fps: float, size: int, cache: bool = True,
                 sampling: str = "contiguous"):
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, not {sampling!r}")
        self.pairs, self.frames, self.fps, self.size, self.cache = pairs, frames, fps, size, cache
        self.sampling = sampling
        self._decoded: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def span_job(self, index: int, *, key: int = 0, keep: Callable[[np.ndarray], np.ndarray] | None = None) -> SpanJob:
        """The decode_workers job that decodes the pair's span."""
        pair = self.pairs[index]
        return SpanJob(key, pair.video, fps=self.fps, size=self.size, start=pair.start or 0.0, end=pair.end, keep=keep)

    def decoded(self, index: int) -> np.ndarray:
        """All frames of the pair's span at `fps`, decoded here. Raises BadVideo for unreadable videos."""
        if index in self._decoded:
            return self._decoded[index]
        for event in decode_span(self.span_job(index)):
            if isinstance(event, Span):
                frames = event.frames
            elif isinstance(event, Finished) and event.error:
                raise BadVideo(self.pairs[index].video, event.error)
        if self.cache:
            self._decoded[index] = frames
        return frames

    def clip(self, index: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """A clip of exactly `frames` frames, drawn by `rng` when it is given, else the centre one (take_clip)."""
        return take_clip(self.decoded(index), self.frames, rng, sampling=self.sampling)

    def batches(self, requests: Callable[[], Iterable[list[ClipRequest]]], *, workers: int,
                depth: int) -> Iterator[np.ndarray]:
        """Each batch of clips `requests()` names, stacked (batch, frames, size, size, 3), in order.

        A clip's frames are drawn from its seed alone, so the batches do not depend on `workers`: 0 decodes here,
        otherwise `workers` processes decode (decode_workers' pool, at most `depth` events waiting). `requests` is called once
        per reader, so it must give the same batches every time. With `cache`, a worker sends each pair's whole
        span once and it is kept here; without, a worker cuts the clip out of the span and sends only that.
        """
        if workers == 0:
            for batch in requests():
                yield np.stack([self.clip(i, _rng(seed)) for i, seed in batch])
            return
        cached = frozenset(self._decoded)

        def jobs():
            uncached = len(self.pairs) - len(cached)  # with the cache: once each is decoded, the rest is reading
            for planned in self._plan(requests(), cached):
                for index, seed, key in planned:
                    if key is None:
                        continue
                    yield self.span_job(index, key=key, keep=None if self.cache else
                                        functools.partial(_clip_from_seed, length=self.frames, seed=seed,
                                                          sampling=self.sampling))
                    uncached -= 1
                    if self.cache and not uncached:
                        return

        events = decode_all(jobs(), workers=workers, depth=depth)
        received: dict[int, np.ndarray | str] = {}  # key -> span or clip, or why it failed; workers may finish out of order
        wanted = 0  # keys below this have been used
        try:
            for planned in self._plan(requests(), cached):
                clips = []
                for index, seed, key in planned:
                    if key is None:
                        clips.append(self.clip(index, _rng(seed)))
                        continue
                    while key not in received:
                        event = next(events)  # the pool ends only after every job has finished, so this cannot run out
                        if isinstance(event, Span):
                            received[event.key] = event.frames
                        elif isinstance(event, Finished) and event.error and event.key >= wanted:
                            received.setdefault(event.key, event.error)  # a crash after the span came does not spoil it
                    got = received.pop(key)
                    wanted = key + 1
                    if isinstance(got, str):
                        raise BadVideo(self.pairs[index].video, got)
                    if self.cache:
                        self._decoded[index] = got
                        got = take_clip(got, self.frames, _rng(seed), sampling=self.sampling)
                    clips.append(got)
                yield np.stack(clips)
        finally:
            events.close()  # stops the pool and its workers

    def _plan(self, batches: Iterable[list[ClipRequest]],
              cached: frozenset[int]) -> Iterator[list[tuple[int, Sequence[int] | None, int | None]]]:
        """Each batch as (index, seed, key): key numbers the clips to decode, None for those in the cache by then. A
        pure function of `batches` and `cached`, so the job list and the reader agree on the keys without sharing
        anything."""
        seen, key = set(cached), 0
        for batch in batches:
            planned = []
            for index, seed in batch:
                if self.cache and index in seen:
                    planned.append((index, seed, None))
                    continue
                planned.append((index, seed, key))
                key += 1
                if self.cache:
                    seen.add(index)
            yield planned


def take_clip(frames: np.ndarray, length: int, rng: np.random.Generator | None = None, *,
              sampling: str = "contiguous") -> np.ndarray:
    """`length` frames of a span of n frames; a span of `length` frames or fewer is all of it, its last frame
    repeated to fill the clip.

    - contiguous: `length` consecutive frames, from a random start when `rng` is given, else the centre ones. A
      span longer than the clip is seen in part.
    - spread: one frame every n / `length` frames over the whole span, from a random phase within the first stride
      when `rng` is given, else from the middle of each stride. The first frame is within one stride of the span's
      start and the last within one stride of its end, so the clip sees everything the caption describes (at
      `length` / n of the decoding rate): the paper's strided sampling, with the stride set by the span.
    """
    extra = len(frames) - length
    if extra < 0:
        return np.concatenate([frames, np.repeat(frames[-1:], -extra, axis=0)])
    if sampling == "spread":
        phase = float(rng.random()) if rng is not None else 0.5
        picks = np.floor((np.arange(length) + phase) * (len(frames) / length)).astype(np.int64)
        return frames[np.minimum(picks, len(frames) - 1)]  # the minimum: rounding when the phase is next to 1
    first = int(rng.integers(0, extra + 1)) if rng is not None else extra // 2
    return frames[first:first + length]


def _rng(seed: Sequence[int] | None) -> np.random.Generator | None:
    return None if seed is None else np.random.default_rng(list(seed))


def _clip_from_seed(frames: np.ndarray, *, length: int, seed: Sequence[int] | None, sampling: str) -> np.ndarray:
    """take_clip with the frames drawn from `seed`: what a decode worker runs on a span when nothing is cached."""
    return np.ascontiguousarray(take_clip(frames, length, _rng(seed), sampling=sampling))


def epoch_batches(pairs: list[Pair], batch_size: int, rng: np.random.Generator, *, group_by_video: bool) -> list[list[int]]:
    """One epoch of full batches (the ragged tail is dropped unless it is all there is).

    With `group_by_video`, the clips of one video are consecutive, so they share batches and act as hard
    negatives for each other: same scene, different action.
    """
    if group_by_video:
        groups: dict[Path, list[int]] = {}
        for i, pair in enumerate(pairs):
            groups.setdefault(pair.video, []).append(i)
        videos = list(groups.values())
        order = [i for v in rng.permutation(len(videos)) for i in rng.permutation(videos[v]).tolist()]
    else:
        order = rng.permutation(len(pairs)).tolist()
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [b for b in batches if len(b) == batch_size] or batches[:1]
