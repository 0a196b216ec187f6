"""A video's timed text lines from every source: embedded subtitle streams, sidecar subtitle files and speech."""

from __future__ import annotations

import bisect
import math
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

import av
import numpy as np

from vidsearch.errors import ModelUnavailable, UsageError, VidsearchError

SAMPLE_RATE = 16000  # what both speech engines take
CHUNK_SECONDS = 60.0  # audio is read and transcribed in chunks of at most this long, so memory stays bounded
LINE_SECONDS = 5.0  # recognised words are grouped into lines of at most this long...
LINE_GAP = 0.8  # ...and a pause longer than this starts a new line
OPEN_END_SECONDS = 5.0  # an embedded subtitle without a duration lasts until the next one, at most this long
SIDECAR_FORMATS = {".srt": "srt", ".vtt": "vtt", ".ass": "ass", ".ssa": "ssa"}
SPEECH_ENGINES = ("pocketsphinx", "whisper")

_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*")  # en, eng, pt-BR, zh-Hans
_SIDECAR_FLAGS = {"forced", "sdh", "cc", "default", "full"}  # name.en.forced.srt, as media servers name them


class Line(NamedTuple):
    """One timed line of text, in seconds."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class TextLine:
    """A line of a video's text: seconds from the video stream's first frame, its source and language (or None)."""

    start: float
    end: float
    text: str
    source: str
    language: str | None = None


@dataclass(frozen=True)
class TextProblem:
    """A text source that is corrupt or cannot be read (some or all of its lines are missing)."""

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass(frozen=True)
class TextNote:
    """A text source skipped on purpose, and why."""

    source: str
    note: str

    def __str__(self) -> str:
        return f"{self.source}: {self.note}"


@dataclass
class VideoText:
    """What a video's text sources gave: lines (by source, then time), problems and notes."""

    lines: list[TextLine] = field(default_factory=list)
    problems: list[TextProblem] = field(default_factory=list)
    notes: list[TextNote] = field(default_factory=list)

    def extend(self, other: VideoText) -> None:
        self.lines += other.lines
        self.problems += other.problems
        self.notes += other.notes

    @property
    def sources(self) -> dict[str, str | None]:
        """Each source that gave lines, with its language."""
        return {line.source: line.language for line in self.lines}


class NoAudio(VidsearchError):
    """The file has no audio track."""


class UnreadableText(VidsearchError):
    """A subtitle file that cannot be read or parsed; the message is the reason."""


class UnreadableAudio(VidsearchError):
    """An audio track that cannot be decoded, in part or whole; the message is the reason."""


def read_text(video: str | Path, *, embedded: bool = True, sidecars: bool = True, speech: SpeechEngine | None = None,
              chunk_seconds: float = CHUNK_SECONDS) -> VideoText:
    """Every text source of `video`: its embedded subtitle streams, its sidecar files and, with an engine, its speech.

    Returns a VideoText:
    - `lines`: `TextLine(start, end, text, source, language)`, in seconds from the video stream's first frame (the
      clock of the segment times), plain text on one line (tags stripped), by source and then by time. Sources are
      `embedded:STREAM_INDEX`, `sidecar:FILE_NAME` and `speech:ENGINE` (`speech:pocketsphinx`,
      `speech:whisper-small`); the language is the stream's tag (`eng`), the sidecar's name tag (`en` in
      `x.en.srt`) or the engine's (`en`), else None.
    - `problems`: one `TextProblem(source, reason)` for each source that is corrupt or cannot be read; the lines it
      gave before and around the damage are kept.
    - `notes`: one `TextNote(source, note)` for each source skipped on purpose (a bitmap subtitle stream, a video
      without audio).
    Nothing is printed, and a bad source never raises: the other sources still give their lines.
    """
    text = VideoText()
    if embedded:
        text.extend(read_embedded(video))
    if sidecars:
        text.extend(read_sidecars(video))
    if speech is not None:
        text.extend(read_speech(video, speech, chunk_seconds=chunk_seconds))
    return text


# --- embedded subtitle streams -------------------------------------------------------------------------------


@dataclass
class _StreamText:
    source: str
    language: str | None
    lines: list[TextLine] = field(default_factory=list)
    open_end: set[int] = field(default_factory=set)  # indexes of lines whose end is not known yet
    bad_packets: int = 0
    first_error: str = ""


def read_embedded(video: str | Path) -> VideoText:
    """The lines of every text subtitle stream (SRT, mov_text, ASS/SSA, WebVTT...) in one pass over the file.

    Bitmap streams (PGS, VobSub, DVB) and streams without a decoder are skipped with a note. A packet that does
    not decode is skipped, and its stream gets one problem saying how many; a file that stops demuxing gives
    each stream one problem, keeping the lines before the damage.
    """
    result = VideoText()
    try:
        container = av.open(str(video), metadata_errors="ignore")
    except (av.FFmpegError, OSError) as exc:
        result.problems.append(TextProblem("embedded", f"cannot open the file: {_reason(exc)}"))
        return result
    with container:
        origin = _video_origin(container)
        streams: dict[int, _StreamText] = {}
        for stream in container.streams.subtitles:
            source = f"embedded:{stream.index}"
            codec = stream.codec_context.codec if stream.codec_context is not None else None
            if codec is None or not codec.is_decoder:
                result.notes.append(TextNote(source, "no decoder for this subtitle codec; skipped"))
            elif codec.bitmap_sub:
                result.notes.append(TextNote(source, f"bitmap subtitles ({codec.name}) have no text; skipped"))
            else:
                streams[stream.index] = _StreamText(source, _language(stream.language))
        if not streams:
            return result
        wanted = [s for s in container.streams.subtitles if s.index in streams]
        reached = None
        try:
            for packet in container.demux(*wanted):
                if packet.size:
                    _decode_subtitle(packet, streams[packet.stream.index], origin)
                    if packet.pts is not None:
                        reached = float(packet.pts * packet.time_base) - origin
        except (av.FFmpegError, OSError) as exc:
            where = f" after {reached:.1f} s" if reached is not None else ""
            for text in streams.values():
                result.problems.append(TextProblem(text.source, f"the file stops demuxing{where}: {_reason(exc)}"))
        for text in streams.values():
            _close_open_ends(text)
            result.lines += _sorted_unique(text.lines)
            if text.bad_packets:
                many = "1 subtitle packet does" if text.bad_packets == 1 else f"{text.bad_packets} subtitle packets do"
                result.problems.append(TextProblem(text.source, f"{many} not decode ({text.first_error}); skipped"))
    return result


def _decode_subtitle(packet: av.Packet, text: _StreamText, origin: float) -> None:
    """Decode one subtitle packet into `text`'s lines (times from the video stream's first frame)."""
    try:
        subtitles = packet.stream.decode2(packet)
    except av.FFmpegError as exc:  # FFmpeg rejects subtitle text that is not UTF-8
        text.bad_packets += 1
        text.first_error = text.first_error or _reason(exc)
        return
    if subtitles is None or packet.pts is None:
        return  # mov_text fills the gaps between lines with empty packets
    begin = float(packet.pts * packet.time_base) - origin
    start = begin + subtitles.start_display_time / 1000
    if packet.duration:
        end = begin + float(packet.duration * packet.time_base)
    elif 0 < subtitles.end_display_time < 0xFFFFFFFF:
        end = begin + subtitles.end_display_time / 1000
    else:
        end = None
    for rect in subtitles:
        if rect.type == b"ass":
            plain = _plain(rect.dialogue.decode("utf-8", "replace"))
        elif rect.type == b"text":
            plain = " ".join(rect.text.decode("utf-8", "replace").split())
        else:
            continue
        if plain:
            if end is None:
                text.open_end.add(len(text.lines))
            text.lines.append(TextLine(start, start if end is None else end, plain, text.source, text.language))


def _close_open_ends(text: _StreamText) -> None:
    """Lines without a duration last until the stream's next line starts, at most OPEN_END_SECONDS."""
    starts = sorted({line.start for line in text.lines})
    for i in text.open_end:
        line = text.lines[i]
        later = bisect.bisect_right(starts, line.start)
        end = min(line.start + OPEN_END_SECONDS, starts[later] if later < len(starts) else math.inf)
        text.lines[i] = TextLine(line.start, end, line.text, line.source, line.language)


def _video_origin(container: av.container.InputContainer) -> float:
    """Seconds at which the first video stream (not cover art) starts: time 0 of the segment times."""
    cover = av.stream.Disposition.attached_pic
    for stream in container.streams.video:
        if not stream.disposition & cover:
            return float((stream.start_time or 0) * stream.time_base)
    return 0.0


def _language(tag: str | None) -> str | None:
    return None if not tag or tag.lower() in ("und", "unk", "none") else tag


# --- sidecar files -------------------------------------------------------------------------------------------


class Sidecar(NamedTuple):
    """A subtitle file next to a video, and the language its name gives (`name.en.srt`), if any."""

    path: Path
    language: str | None


def find_sidecars(video: str | Path, *, listing: Iterable[os.DirEntry] | None = None) -> list[Sidecar]:
    """The subtitle files next to `video`: `NAME.srt`, `.vtt`, `.ass`, `.ssa` and tagged ones (`NAME.en.srt`,
    `NAME.pt-BR.forced.vtt`), by name. `listing` is the folder's entries when the caller has them already.
    Raises OSError when the folder cannot be listed."""
    video = Path(video)
    if listing is None:
        with os.scandir(video.parent) as entries:
            return find_sidecars(video, listing=list(entries))
    found = []
    for entry in listing:
        base, ext = os.path.splitext(entry.name)
        if ext.lower() not in SIDECAR_FORMATS or not entry.is_file():
            continue
        if base == video.stem:
            found.append(Sidecar(Path(entry.path), None))
        elif base.startswith(video.stem + "."):
            tags = base[len(video.stem) + 1 :].split(".")
            languages = [t for t in tags if t.lower() not in _SIDECAR_FLAGS]
            if all(_LANGUAGE_TAG.fullmatch(t) for t in languages):  # `name.part2.srt` belongs to another video
                found.append(Sidecar(Path(entry.path), languages[0] if languages else None))
    return sorted(found, key=lambda s: s.path.name)


def read_sidecars(video: str | Path) -> VideoText:
    """The lines of every sidecar file of `video`; a file that cannot be read or parsed gives one problem."""
    result = VideoText()
    try:
        sidecars = find_sidecars(video)
    except OSError as exc:
        result.problems.append(TextProblem("sidecar", f"cannot list {Path(video).parent}: {_reason(exc)}"))
        return result
    for sidecar in sidecars:
        try:
            result.lines += read_sidecar(sidecar)
        except UnreadableText as exc:
            result.problems.append(TextProblem(f"sidecar:{sidecar.path.name}", str(exc)))
    return result


def read_sidecar(sidecar: Sidecar) -> list[TextLine]:
    """One subtitle file's lines, as plain text (tags stripped); raises UnreadableText with the reason."""
    import pysubs2

    path = sidecar.path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableText(f"cannot read it: {_reason(exc)}") from None
    text = _decode_text(data)
    if "\x00" in text:
        raise UnreadableText("not a text file")
    fmt = SIDECAR_FORMATS[path.suffix.lower()]
    try:
        with warnings.catch_warnings():  # pysubs2 warns about each style field it cannot parse; nothing here prints
            warnings.simplefilter("ignore")
            subs = pysubs2.SSAFile.from_string(text, format_=fmt)
            if not len(subs):  # a mislabelled file (WebVTT named .srt) parses as its real format
                subs = pysubs2.SSAFile.from_string(text)
    except pysubs2.FormatAutodetectionError:
        subs = []
    except Exception as exc:  # any user file: pysubs2 raises ValueError and IndexError, and may raise others
        raise UnreadableText(f"cannot parse it as {fmt}: {_reason(exc)}") from None
    source = f"sidecar:{path.name}"
    lines = [TextLine(e.start / 1000, e.end / 1000, plain, source, sidecar.language)
             for e in subs if e.is_text and (plain := " ".join(e.plaintext.split()))]
    if not lines:
        raise UnreadableText("the file is empty" if not text.strip() else f"no {fmt} subtitle lines found in it")
    return _sorted_unique(lines)


def _decode_text(data: bytes) -> str:
    """A subtitle file's text: UTF-8 or UTF-16 (with a byte-order mark), else Windows-1252, as older files are."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _plain(ass_text: str) -> str:
    """Plain text of an ASS dialogue text: override tags removed, drawings dropped, whitespace collapsed."""
    import pysubs2

    event = pysubs2.SSAEvent(text=ass_text)
    return "" if event.is_drawing else " ".join(event.plaintext.split())


def _sorted_unique(lines: list[TextLine]) -> list[TextLine]:
    """Lines by time, without exact repeats (ASS often draws one line on several layers)."""
    return sorted(set(lines), key=lambda line: (line.start, line.end, line.text))


# --- audio ---------------------------------------------------------------------------------------------------


class AudioChunk(NamedTuple):
    """`samples` (16 kHz mono float32) starting `offset` seconds from the video stream's first frame."""

    offset: float
    samples: np.ndarray


def audio_chunks_16k(path: str | Path, *, chunk_seconds: float = CHUNK_SECONDS) -> Iterator[AudioChunk]:
    """The file's main audio track at 16 kHz mono float32, streamed in chunks of at most `chunk_seconds`.

    A chunk ends at the quietest tenth of a second in its last quarter, so few words are cut in two, or where
    the track's timestamps jump (a gap starts a new chunk at the later time). Packets that do not decode are
    skipped. After yielding all it could, raises UnreadableAudio when packets were skipped, the FFmpeg error
    when the file stops demuxing, and NoAudio (before any chunk) when there is no audio track.
    """
    with av.open(str(path), metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise NoAudio(f"{path}: no audio track")
        stream = container.streams.best("audio") or container.streams.audio[0]
        if stream.codec_context is None:
            raise UnreadableAudio("no decoder for its codec")
        origin = _video_origin(container)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks = _Chunker(max(int(chunk_seconds * SAMPLE_RATE), SAMPLE_RATE))
        bad, first_error, stopped = 0, "", None
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()  # the last, empty packet flushes the decoder
                except av.FFmpegError as exc:
                    bad, first_error = bad + 1, first_error or _reason(exc)
                    continue
                for frame in frames:
                    time = None if frame.pts is None else float(frame.pts * frame.time_base) - origin
                    for out in resampler.resample(frame):
                        yield from chunks.add(time, out.to_ndarray().reshape(-1))
                        time = None  # the rest of this frame's output follows on
        except (av.FFmpegError, OSError) as exc:
            stopped = exc
        for out in resampler.resample(None):
            yield from chunks.add(None, out.to_ndarray().reshape(-1))
        yield from chunks.flush()
        if stopped is not None:
            raise stopped
        if bad:
            many = "1 audio packet does" if bad == 1 else f"{bad} audio packets do"
            raise UnreadableAudio(f"{many} not decode ({first_error}); skipped")


def read_audio_16k(path: str | Path) -> np.ndarray:
    """The file's whole main audio track at 16 kHz mono float32 (for short files; long ones: audio_chunks_16k)."""
    chunks = [chunk.samples for chunk in audio_chunks_16k(path)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


class _Chunker:
    """Collects 16 kHz samples into chunks of at most `size` samples, cut where it is quiet."""

    GAP = 0.1  # seconds: timestamps further ahead than this start a new chunk

    def __init__(self, size: int) -> None:
        self.size = size
        self.pending: list[np.ndarray] = []
        self.held = 0
        self.offset: float | None = None

    def add(self, time: float | None, samples: np.ndarray) -> Iterator[AudioChunk]:
        """Append `samples`, which start at `time` (None: right after the previous ones)."""
        if self.offset is None:
            self.offset = time or 0.0
        elif time is not None and time - (self.offset + self.held / SAMPLE_RATE) > self.GAP:
            yield from self.flush()
            self.offset = time
        self.pending.append(samples)
        self.held += len(samples)
        while self.held >= self.size:
            buffer = np.concatenate(self.pending)
            cut = _quiet_cut(buffer[: self.size])
            yield AudioChunk(self.offset, buffer[:cut])
            self.offset += cut / SAMPLE_RATE
            self.pending, self.held = [buffer[cut:]], len(buffer) - cut

    def flush(self) -> Iterator[AudioChunk]:
        if self.held:
            yield AudioChunk(self.offset or 0.0, np.concatenate(self.pending))
            self.offset += self.held / SAMPLE_RATE
            self.pending, self.held = [], 0


def _quiet_cut(samples: np.ndarray) -> int:
    """Where to end a chunk: the middle of its quietest 100 ms in the last quarter (10 ms steps)."""
    hop = SAMPLE_RATE // 100
    begin = len(samples) * 3 // 4
    frames = (len(samples) - begin) // hop
    if frames < 10:
        return len(samples)
    energy = np.square(samples[begin : begin + frames * hop], dtype=np.float64).reshape(frames, hop).sum(axis=1)
    smooth = np.convolve(energy, np.ones(10), mode="valid")  # 100 ms windows
    return begin + (int(np.argmin(smooth)) + 5) * hop


# --- speech --------------------------------------------------------------------------------------------------


class SpeechEngine(Protocol):
    """Speech recognition behind one call. `name` names the source (`speech:NAME`); `language` is the language
    of the lines the last `transcribe` gave (None when unknown)."""

    name: str
    language: str | None

    def transcribe(self, audio: np.ndarray) -> Iterator[Line]:
        """Timed lines (seconds from the first sample) of 16 kHz mono float32 `audio`."""
        ...


def speech_engine(name: str, *, model_size: str = "small") -> SpeechEngine:
    """A loaded speech engine by name (`pocketsphinx` or `whisper`; `model_size` is whisper's: tiny ... large-v3).

    Raises UsageError for an unknown name and ModelUnavailable, in one line, when the engine's package or
    weights are missing.
    """
    if name == "pocketsphinx":
        return PocketsphinxEngine()
    if name == "whisper":
        return WhisperEngine(model_size=model_size)
    raise UsageError(f"unknown speech engine {name!r}: choose one of {', '.join(SPEECH_ENGINES)}")


def read_speech(video: str | Path, engine: SpeechEngine, *, chunk_seconds: float = CHUNK_SECONDS) -> VideoText:
    """What `engine` hears in `video`'s main audio track, read in chunks; a video without audio gets a note."""
    result = VideoText()
    source = f"speech:{engine.name}"
    done = None
    try:
        for chunk in audio_chunks_16k(video, chunk_seconds=chunk_seconds):
            for line in engine.transcribe(chunk.samples):
                start, end = max(0.0, chunk.offset + line.start), max(0.0, chunk.offset + line.end)
                result.lines.append(TextLine(start, end, line.text, source, engine.language))
            done = chunk.offset + len(chunk.samples) / SAMPLE_RATE
    except NoAudio:
        result.notes.append(TextNote(source, "no audio track"))
    except UnreadableAudio as exc:
        result.problems.append(TextProblem(source, f"audio track: {exc}"))
    except (av.FFmpegError, OSError) as exc:
        what = "cannot read the audio track" if done is None else f"the audio track stops decoding after {done:.1f} s"
        result.problems.append(TextProblem(source, f"{what}: {_reason(exc)}"))
    except RuntimeError as exc:  # the recogniser failed on this audio; other files may be fine
        result.problems.append(TextProblem(source, f"speech recognition failed: {exc}"))
    return result


def group_words(words: Iterable[tuple[float, float, str]], *, seconds: float = LINE_SECONDS,
                gap: float = LINE_GAP) -> Iterator[Line]:
    """Timed words -> lines of at most `seconds`, split at pauses longer than `gap`."""
    line: list[tuple[float, float, str]] = []
    for word in words:
        if line and (word[0] - line[-1][1] > gap or word[1] - line[0][0] > seconds):
            yield Line(line[0][0], line[-1][1], " ".join(w[2] for w in line))
            line = []
        line.append(word)
    if line:
        yield Line(line[0][0], line[-1][1], " ".join(w[2] for w in line))


class PocketsphinxEngine:
    """CMU PocketSphinx with the US English model its wheel ships: offline, fast, and weak on hard audio.

    Voice activity detection splits the audio into utterances; each is decoded and its words, with their
    frame times, are grouped into lines. Not thread-safe: one engine per worker.
    """

    name = "pocketsphinx"
    language = "en"

    def __init__(self) -> None:
        try:
            import pocketsphinx
        except ImportError:
            raise ModelUnavailable("the pocketsphinx speech engine needs pocketsphinx: pip install 'vidsearch[speech]'") from None
        self._ps = pocketsphinx
        self._decoder = pocketsphinx.Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        self._frame_rate = float(self._decoder.config["frate"])

    def transcribe(self, audio: np.ndarray) -> Iterator[Line]:
        endpointer = self._ps.Endpointer(sample_rate=SAMPLE_RATE)
        step = endpointer.frame_bytes // 2
        pcm = np.clip(np.asarray(audio, np.float32) * 32768, -32768, 32767).astype("<i2")
        pcm = np.concatenate([pcm, np.zeros(-len(pcm) % step if len(pcm) else step, "<i2")])  # whole frames
        last = len(pcm) - step
        utterance: list[bytes] = []
        start = 0.0
        for begin in range(0, len(pcm), step):
            frame = pcm[begin : begin + step].tobytes()
            speech = endpointer.end_stream(frame) if begin == last else endpointer.process(frame)
            if speech is None:
                continue
            if not utterance:
                start = endpointer.speech_start
            utterance.append(speech)
            if not endpointer.in_speech:
                # A whole utterance at once: its cepstral mean is its own (full_utt), so the words do not
                # depend on what this decoder heard before, and the first utterance is as good as later ones.
                self._decoder.start_utt()
                self._decoder.process_raw(b"".join(utterance), False, True)
                self._decoder.end_utt()
                utterance = []
                yield from group_words(self._words(start))

    def _words(self, offset: float) -> Iterator[tuple[float, float, str]]:
        for seg in self._decoder.seg():
            word = seg.word
            if word.startswith(("<", "[")):  # <s>, </s>, <sil>, [NOISE]
                continue
            word = re.sub(r"\(\d+\)$", "", word)  # alternative pronunciations: the(2)
            yield offset + seg.start_frame / self._frame_rate, offset + (seg.end_frame + 1) / self._frame_rate, word


class WhisperEngine:
    """faster-whisper (CTranslate2): a CUDA GPU when there is one (float16), else the CPU (int8), with word
    timestamps and voice activity detection. The weights of `model_size` are downloaded from Hugging Face on
    first use and cached; when they cannot be had, loading raises ModelUnavailable."""

    def __init__(self, *, model_size: str = "small", device: str | None = None, compute_type: str | None = None) -> None:
        try:
            import ctranslate2
            from faster_whisper import WhisperModel
        except ImportError:
            raise ModelUnavailable("the whisper speech engine needs faster-whisper: pip install 'vidsearch[whisper]'") from None
        if device is None:
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        compute_type = compute_type or ("float16" if device == "cuda" else "int8")
        try:
            self._model = WhisperModel(model_size, device=device, compute_type=compute_type)
        except Exception as exc:  # Hugging Face, network and CTranslate2 errors have no common base
            raise ModelUnavailable(f"whisper model {model_size!r} could not be loaded (its weights are downloaded "
                                   f"from Hugging Face on first use): {_reason(exc)}") from None
        self.name = f"whisper-{model_size}"
        self.language: str | None = None

    def transcribe(self, audio: np.ndarray) -> Iterator[Line]:
        segments, info = self._model.transcribe(np.asarray(audio, np.float32), word_timestamps=True, vad_filter=True)
        self.language = info.language
        for segment in segments:
            words = [(w.start, w.end, w.word.strip()) for w in segment.words or [] if w.word.strip()]
            if words:
                yield from group_words(words)
            elif segment.text.strip():
                yield Line(segment.start, segment.end, segment.text.strip())


def _reason(exc: BaseException) -> str:
    """An exception's message as one line."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())
