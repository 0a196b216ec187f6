"""Training pairs: manifest parsing and checking with line-numbered problems, and a dataset of fixed-length frame clips."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BadVideo, UsageError


@dataclass(frozen=True)
class Pair:
    """One video span and its caption, from line `line` of a manifest."""

    video: Path
    start: float | None
    end: float | None
    caption: str
    line: int


@dataclass(frozen=True)
class ManifestProblem:
    """A manifest line that was skipped, and why."""

    manifest: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.manifest}:{self.line}: {self.reason}"


def read_manifest(path: Path) -> tuple[list[Pair], list[ManifestProblem]]:
    """Parse JSONL (or CSV with a header) lines `{"video", "start"?, "end"?, "caption"}`; video paths may be
    relative to the manifest's folder. Bad lines are returned as problems, never raised."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read manifest ({exc})") from None
    pairs, problems = [], []
    for line, record in _records(path, text):
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
        usable.append(pair)
    return usable, sorted(problems, key=lambda p: p.line)


def _records(path: Path, text: str) -> Iterator[tuple[int, object]]:
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
    caption = str(record["caption"]).strip()
    if not caption:
        raise ValueError("empty caption")
    start, end = (_seconds(record, key) for key in ("start", "end"))
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    video = Path(os.path.expanduser(str(record["video"])))
    video = video if video.is_absolute() else manifest.parent / video
    if not video.is_file():
        raise ValueError(f"video not found: {video}")
    if not os.access(video, os.R_OK):
        raise ValueError(f"video not readable: {video}")
    return Pair(video=video, start=start, end=end, caption=caption, line=line)


def _seconds(record: dict, key: str) -> float | None:
    if record.get(key) is None:
        return None
    try:
        value = float(record[key])
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number of seconds, got {record[key]!r}") from None
    if value < 0 or not np.isfinite(value):
        raise ValueError(f"{key} must be a non-negative number of seconds, got {record[key]!r}")
    return value


class ClipDataset:
    """Each pair as a (frames, fps)-clip of uint8 frames (frames, size, size, 3); with `cache`, decoded once.

    Spans longer than the clip give a random window in training and the centre one otherwise;
    shorter spans repeat their last frame.
    """

    def __init__(self, pairs: list[Pair], *, frames: int, fps: float, size: int, cache: bool = True):
        self.pairs, self.frames, self.fps, self.size, self.cache = pairs, frames, fps, size, cache
        self._decoded: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def decoded(self, index: int) -> np.ndarray:
        """All frames of the pair's span at `fps`. Raises BadVideo for unreadable videos."""
        if index in self._decoded:
            return self._decoded[index]
        from .frames import sample_frames

        pair = self.pairs[index]
        start = pair.start or 0.0
        frames = [f for _, f in sample_frames(pair.video, fps=self.fps, size=self.size, start=start, end=pair.end)]
        if not frames:
            raise BadVideo(pair.video, f"no frames between {start} and {pair.end} s")
        if self.cache:
            self._decoded[index] = np.stack(frames)
            return self._decoded[index]
        return np.stack(frames)

    def clip(self, index: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """A clip of exactly `frames` frames: random window when `rng` is given, else the centre window."""
        frames = self.decoded(index)
        extra = len(frames) - self.frames
        if extra < 0:
            return np.concatenate([frames, np.repeat(frames[-1:], -extra, axis=0)])
        first = int(rng.integers(0, extra + 1)) if rng is not None else extra // 2
        return frames[first:first + self.frames]


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
