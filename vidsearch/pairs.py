"""Training pairs from what is said: a video's subtitle or speech lines, merged into captioned spans, as a `train` manifest."""

from __future__ import annotations

import itertools
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .errors import BadVideo, UsageError, VidsearchError
from .frames import probe
from .indexdir import DB_FILE, IndexDir
from .text_index import load_engine, speech_name
from .text_sources import Line, TextLine, read_speech, read_text

if TYPE_CHECKING:
    from .db import Database
    from .text_sources import SpeechEngine

# Defaults, after HowTo100M (Miech et al. 2019), whose 136M clips are its ASR caption lines, about 4 s each:
MIN_SECONDS = 4.0  # a pair is at least as long as a HowTo100M clip, so it shows the action the words go with...
MIN_WORDS = 4  # ...and says at least a clause: "Okay." or "Right, so" name nothing to see
MAX_GAP = 2.0  # a longer pause usually moves on to the next step; words are never paired across one
MAX_SECONDS = 16.0  # the default training clip (16 frames at 1 fps) sees a span this long whole; a longer one would be
# cut to a random 16 s window that may miss what the words describe. Raised to 4x --min-seconds when that is larger.

# Kinds of text source, best first: subtitles are made (or checked) by people, speech recognition is not; a sidecar
# file beside the video is one its owner chose, so it comes before the streams the file was released with.
SOURCE_ORDER = ("sidecar", "embedded", "speech")
_ENGLISH = {"en", "eng", "english"}  # the text towers are CLIP's, trained on English

_NON_SPEECH = re.compile(r"\[[^\]]*\]|[♪♫]")  # "[Music]", "[door slams]", song marks: sounds, not words
# a word is a run of non-space characters, except in scripts written without spaces, where each character counts
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")


@dataclass(frozen=True)
class PairSettings:
    """How lines are merged into pairs (see the defaults above for why)."""

    min_seconds: float = MIN_SECONDS
    min_words: int = MIN_WORDS
    max_gap: float = MAX_GAP
    max_seconds: float | None = None  # None: MAX_SECONDS, or 4x min_seconds when that is larger

    def validate(self) -> None:
        if not self.min_seconds >= 0:
            raise UsageError("--min-seconds must be 0 or more")
        if self.min_words < 0:
            raise UsageError("--min-words must be 0 or more")
        if not self.max_gap >= 0:
            raise UsageError("max_gap must be 0 or more seconds")
        if self.max_seconds is not None and not self.max_seconds >= max(self.min_seconds, 0.001):
            raise UsageError(f"max_seconds ({self.max_seconds:g}) must be at least --min-seconds ({self.min_seconds:g})")

    @property
    def longest(self) -> float:
        return self.max_seconds if self.max_seconds is not None else max(MAX_SECONDS, 4 * self.min_seconds)


class VideoNote(NamedTuple):
    """A video that gave no pair (`PairsReport.skipped`) or a text source of it that failed (`.problems`)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class PairsReport:
    """What a run found besides the pairs: filled in by pairs_from_index and pairs_from_folder as they go."""

    videos: int = 0  # videos that gave at least one pair
    skipped: list[VideoNote] = field(default_factory=list)
    problems: list[VideoNote] = field(default_factory=list)


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


def merge_lines(lines: Iterable, *, min_seconds: float = MIN_SECONDS, min_words: int = MIN_WORDS,
                max_gap: float = MAX_GAP, max_seconds: float | None = None) -> list[Line]:
    """Consecutive lines (anything with start, end and text; one source of one video) merged into `Line`s of at least
    `min_seconds` and `min_words`.

    Lines are taken by start time and joined until both minimums are met. A pause longer than `max_gap` between
    one line's end and the next one's start, or a span that would grow past `max_seconds`, ends the pair being
    built; if it is still short of a minimum, it joins the previous pair when that is at most `max_gap` before it
    and the two fit in `max_seconds`, and is dropped otherwise. A single line longer than `max_seconds` keeps its
    first `max_seconds` (a subtitle that never ends is a broken one, and its words are said at its start).
    Sounds in brackets (`[Music]`) and song marks are removed first; a line with nothing else is no line.
    """
    longest = PairSettings(min_seconds=min_seconds, max_seconds=max_seconds).longest
    cleaned = []
    for line in lines:
        start, end = max(0.0, float(line.start)), min(float(line.end), float(line.start) + longest)
        text = " ".join(_NON_SPEECH.sub(" ", line.text).split())
        if text and end > start:
            cleaned.append((start, end, text))
    cleaned.sort()
    pairs: list[Line] = []
    current: list[tuple[float, float, str]] = []

    def span(parts):
        return Line(parts[0][0], max(end for _, end, _ in parts), " ".join(text for _, _, text in parts))

    def long_enough(line: Line) -> bool:
        return line.end - line.start >= min_seconds and count_words(line.text) >= min_words

    def close(parts) -> None:
        """End the pair being built: kept when long enough, else joined to the previous pair if it can be."""
        if not parts:
            return
        line = span(parts)
        if long_enough(line):
            pairs.append(line)
        elif pairs and line.start - pairs[-1].end <= max_gap and max(line.end, pairs[-1].end) - pairs[-1].start <= longest:
            last = pairs.pop()
            pairs.append(Line(last.start, max(last.end, line.end), f"{last.text} {line.text}"))

    for line in cleaned:
        if current:
            built = span(current)
            if line[0] - built.end > max_gap or max(line[1], built.end) - built.start > longest:
                close(current)
                current = []
        current.append(line)
        if long_enough(span(current)):
            pairs.append(span(current))
            current = []
    close(current)
    return pairs


def choose_source(lines: Iterable, *, settings: PairSettings = PairSettings()) -> tuple[str | None, list[Line]]:
    """The one source of a video's lines that pairs are made from, and its merged lines; (None, []) when none gives any.

    One source only, so the same words are never paired twice (a film's subtitles in two files, or its subtitles
    and what speech recognition heard). Kinds in SOURCE_ORDER (sidecar files, embedded streams, speech); within a
    kind, English or untagged before other languages (the text tower reads English), then the most words (a
    `forced` track holds only the foreign-language lines), then by name. The first source in that order that
    gives a pair is used.
    """
    by_source: dict[str, list] = {}
    for line in lines:
        by_source.setdefault(line.source, []).append(line)

    def rank(source: str):
        kind = source.split(":", 1)[0]
        language = by_source[source][0].language
        english = not language or re.split(r"[-_]", language.lower())[0] in _ENGLISH
        words = sum(count_words(line.text) for line in by_source[source])
        return SOURCE_ORDER.index(kind) if kind in SOURCE_ORDER else len(SOURCE_ORDER), not english, -words, source

    for source in sorted(by_source, key=rank):
        merged = merge_lines(by_source[source], min_seconds=settings.min_seconds, min_words=settings.min_words,
                             max_gap=settings.max_gap, max_seconds=settings.max_seconds)
        if merged:
            return source, merged
    return None, []


def video_pairs(path: str, lines: Iterable, *, limit: float | None,
                settings: PairSettings = PairSettings()) -> list[dict]:
    """Manifest records of one video from its lines (TextLine or stored TextRow, all sources): the chosen source's
    pairs, within the first `limit` seconds (its duration, or what a partial video covers; None or 0: unknown)."""
    if limit:
        lines = [TextLine(line.start, min(line.end, limit), line.text, line.source, line.language)
                 for line in lines if line.start < limit]
    _, merged = choose_source(lines, settings=settings)
    records = []
    for line in merged:
        start, end = round(line.start, 3), round(line.end, 3)
        if end > start:  # what load_pairs requires
            records.append({"video": os.path.abspath(path), "start": start, "end": end, "caption": line.text})
    return records


def pairs_from_index(db: Database, *, settings: PairSettings = PairSettings(),
                     report: PairsReport | None = None) -> Iterator[dict]:
    """Manifest records of every video in an index from its stored text, by path. Failed videos and videos whose
    file is gone are skipped; partial ones give pairs within the seconds they cover; spans end by the video's end."""
    report = report if report is not None else PairsReport()
    for video in db.videos():
        path = video["path"]
        if video["status"] == "failed":
            report.skipped.append(VideoNote(path, f"failed to index: {video['error']}"))
            continue
        if not os.path.isfile(path):
            report.skipped.append(VideoNote(path, "the file is gone (run `vidsearch index` to update the index)"))
            continue
        text = db.text_of(path)
        report.problems += [VideoNote(path, f"{source}: {problem}") for source, _, _, problem, _ in text.sources if problem]
        limit = video["covered"] if video["status"] == "partial" else video["duration"]
        records = video_pairs(path, text.lines, limit=limit, settings=settings)
        yield from _counted(path, records, report, bool(text.lines), settings,
                            none="no subtitles or speech in the index (index with --speech ENGINE, or add subtitles)")


def pairs_from_folder(paths: Sequence[Path], *, settings: PairSettings = PairSettings(),
                      speech: SpeechEngine | None = None, report: PairsReport | None = None) -> Iterator[dict]:
    """Manifest records of video files (not an index): each one's embedded subtitles and sidecar files, and, with a
    speech engine, what it hears in the videos whose subtitles give no pair (speech recognition is slow, and
    subtitles would be chosen over it anyway). Unreadable videos are skipped."""
    report = report if report is not None else PairsReport()
    for path in paths:
        path = os.path.abspath(path)
        try:
            duration = probe(path).duration
        except BadVideo as exc:
            report.skipped.append(VideoNote(path, f"unreadable video: {exc.reason}"))
            continue
        text = read_text(path, speech=None)
        records = video_pairs(path, text.lines, limit=duration, settings=settings)
        if not records and speech is not None:
            heard = read_speech(path, speech)
            text.extend(heard)
            records = video_pairs(path, heard.lines, limit=duration, settings=settings)
        report.problems += [VideoNote(path, str(problem)) for problem in text.problems]
        none = "no subtitles" + (" and no speech heard" if speech is not None else " (pass --speech ENGINE to use speech)")
        yield from _counted(path, records, report, bool(text.lines), settings, none=none)


def _counted(path: str, records: list[dict], report: PairsReport, had_text: bool, settings: PairSettings, *,
             none: str) -> list[dict]:
    if records:
        report.videos += 1
    elif had_text:
        report.skipped.append(VideoNote(path, f"no run of lines reaches {settings.min_seconds:g} s and "
                                              f"{settings.min_words} words (see --min-seconds, --min-words)"))
    else:
        report.skipped.append(VideoNote(path, none))
    return records


def write_manifest(records: Iterable[dict], out: Path) -> int:
    """Write `records` as JSONL to `out` atomically (a temporary file beside it, then a rename); returns how many."""
    out = Path(out)
    folder = out.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder)
    try:
        count = 0
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, out)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return count


def is_index(path: Path) -> bool:
    """Whether `path` is an index folder (holds the index database)."""
    return (Path(path) / DB_FILE).is_file()


def make_manifest(sources: Sequence[Path], out: Path, *, settings: PairSettings = PairSettings(),
                  speech: str | None = None) -> dict:
    """`vidsearch pairs`: write the pairs of an index folder (one source holding the index database) or of video files
    and folders to `out`, and return a summary: pairs, videos (that gave pairs), out (None when there was no pair:
    nothing is written then), skipped and problems (each {"path", "reason"}).

    `speech` names an engine (`pocketsphinx`, `whisper`, `whisper-SIZE`), loaded only when a video needs it. Raises
    UsageError for bad arguments, VidsearchError when no video is found.
    """
    settings.validate()
    out = Path(out).expanduser()
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder: give a file name, such as pairs.jsonl")
    if out.suffix.lower() == ".csv":
        raise UsageError(f"--out {out}: the manifest is written as JSONL (`train` would read a .csv as CSV); "
                         f"name it .jsonl")
    if not sources:
        raise UsageError("give an index folder, or video files and folders")
    engine_name = speech_name(speech) if speech is not None else None
    engine = _LazyEngine(engine_name) if engine_name else None
    sources = [Path(s).expanduser() for s in sources]
    report = PairsReport()
    indexes = [s for s in sources if s.is_dir() and is_index(s)]
    if indexes and len(sources) > 1:
        raise UsageError(f"{indexes[0]} is an index folder: give it alone, or give video files and folders")
    if indexes:
        if speech is not None:
            raise UsageError("--speech reads videos, not an index: an index's text was read when it was indexed "
                             "(`vidsearch index --speech ENGINE`)")
        db = IndexDir(indexes[0]).db
        try:
            return _write(pairs_from_index(db, settings=settings, report=report), out, report)
        finally:
            db.close()
    from .indexer import find_videos

    videos = find_videos(sources)
    if not videos:
        raise VidsearchError(f"no video found in {', '.join(map(str, sources))}")
    return _write(pairs_from_folder(videos, settings=settings, speech=engine, report=report), out, report)


def _write(records: Iterator[dict], out: Path, report: PairsReport) -> dict:
    try:
        first = next(records, None)  # with no pair at all, nothing is written and a file at `out` is left alone
        count = write_manifest(itertools.chain([first], records), out) if first is not None else 0
    except OSError as exc:  # the disk is full, the folder read-only...
        raise VidsearchError(f"{exc.filename or out}: cannot write the manifest ({exc.strerror or exc})") from None
    return {"pairs": count, "videos": report.videos, "out": str(out.resolve()) if count else None,
            "skipped": [note._asdict() for note in report.skipped],
            "problems": [note._asdict() for note in report.problems]}


class _LazyEngine:
    """A speech engine by its canonical name, loaded when it first transcribes: videos with subtitles never need it."""

    def __init__(self, name: str) -> None:
        self.name = name  # names the source: speech:pocketsphinx, speech:whisper-small
        self._engine = None

    @property
    def language(self) -> str | None:
        return self._engine.language if self._engine is not None else None

    def transcribe(self, audio):
        if self._engine is None:
            self._engine = load_engine(self.name)
        return self._engine.transcribe(audio)
