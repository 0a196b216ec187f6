"""Write tiny synthetic media files with PyAV; each video frame's gray level encodes its index."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

FrameFn = Callable[[int, int, int], np.ndarray]

# Options that keep encoding fast; everything else is the encoder's default.
_FAST = {"libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"}}


def level(index: int) -> int:
    """The gray level (30..229) of frame `index`; neighbouring frames differ by at least 37."""
    return (index * 37) % 200 + 30


def index_frame(index: int, width: int, height: int) -> np.ndarray:
    """Flat gray at level(index), with a white square marking the top-left corner."""
    img = np.full((height, width, 3), level(index), np.uint8)
    side = min(width, height) // 4
    img[:side, :side] = 255
    return img


def measured_level(frame: np.ndarray) -> float:
    """The gray level of a decoded index_frame (the median ignores the corner marker)."""
    return float(np.median(frame))


def bar_frame(index: int, width: int, height: int) -> np.ndarray:
    """A white bar moving 3 px a frame over dark gray: motion that encoders code with B-frames."""
    img = np.full((height, width, 3), 40, np.uint8)
    x = (index * 3) % (width - 8)
    img[:, x : x + 8] = 235
    return img


def frame_times(path: str | Path) -> list[float]:
    """The presentation time (seconds from the stream start) of every frame, decoding them all."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        origin = stream.start_time or 0
        return [float((f.pts - origin) * stream.time_base) for f in container.decode(stream)]


def write_video(
    path: str | Path,
    *,
    seconds: float = 4.0,
    fps: int = 10,
    size: tuple[int, int] = (160, 120),
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    frame_fn: FrameFn = index_frame,
    vfr_times: list[float] | None = None,
    rotation: int = 0,
    faststart: bool = False,
    start: float = 0.0,
) -> Path:
    """Write a video whose upright frames are frame_fn(index, width, height) at the given size.

    Frames are at k/fps for `seconds`, or at the explicit `vfr_times` (seconds,
    millisecond time base), all stamped `start` seconds later (as ffmpeg's
    -output_ts_offset does). `rotation` is stored as a display matrix turning the
    stored picture counter-clockwise into the upright one (what ffprobe reports).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    times = vfr_times if vfr_times is not None else [i / fps for i in range(round(seconds * fps))]
    time_base = Fraction(1, 1000) if vfr_times is not None else Fraction(1, fps)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream(codec, rate=fps, options=_FAST.get(codec, {}))
        stream.width, stream.height = (height, width) if rotation % 180 else (width, height)
        stream.pix_fmt = pix_fmt
        stream.time_base = stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        for i, t in enumerate(times):
            stored = np.rot90(frame_fn(i, width, height), -(rotation // 90))
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(stored), format="rgb24")
            frame.pts, frame.time_base = round((start + t) / time_base), time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def write_audio_only(path: str | Path, *, seconds: float = 1.0, codec: str = "aac") -> Path:
    """Write a file with a single audio stream (a 440 Hz tone) and no video."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = 48000
    tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(round(seconds * rate)) / rate)
    frame = av.AudioFrame.from_ndarray(tone.astype(np.float32)[None, :], format="fltp", layout="mono")
    frame.sample_rate, frame.pts = rate, 0
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        out.mux(stream.encode(frame))  # PyAV cuts the frame to the encoder's frame size
        out.mux(stream.encode(None))
    return path


def write_with_audio(path: str | Path, *, seconds: float, audio_seconds: float, fps: int = 10) -> Path:
    """Write an mpeg4 video of `seconds` with an AAC tone lasting `audio_seconds` (a container that outlasts its picture)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate, chunk = 48000, 1024
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(round(audio_seconds * rate)) / rate)).astype(np.float32)
    return _write_video_and_audio(path, tone, rate=rate, seconds=seconds, fps=fps, codecs=("mpeg4", "aac"), chunk=chunk)


def write_truncated(path: str | Path, *, fraction: float = 0.3, faststart: bool = False, codec: str = "libx264") -> Path:
    """Write a 4 s video (h264 unless `codec` says otherwise) and keep only its first `fraction` of bytes.

    Without faststart an mp4's moov atom is at the end, so the result cannot be
    opened at all; with it, the frames before the cut still decode. A Matroska
    file keeps its header (with the declared duration) either way.
    """
    path = Path(path)
    write_video(path, faststart=faststart, codec=codec)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def write_bad_files(folder: str | Path) -> dict[str, Path]:
    """Write one file of each undecodable kind: empty, text, truncated, audio_only."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    text = folder / "text.mp4"
    text.write_text("This is not a video, just some text with a video extension.\n")
    return {
        "empty": empty,
        "text": text,
        "truncated": write_truncated(folder / "truncated.mp4"),
        "audio_only": write_audio_only(folder / "audio_only.mp4"),
    }


# An ASS header: FFmpeg's text subtitle encoders (subrip, mov_text, webvtt, ass) need one to open.
_ASS_HEADER = b"""[Script Info]
ScriptType: v4.00+
PlayResX: 384
PlayResY: 288

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, \
StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
"""

Cue = tuple[float, float, str | bytes]


def write_subtitled_video(
    path: str | Path,
    cues: list[Cue],
    *,
    codec: str = "subrip",
    language: str | None = None,
    seconds: float = 4.0,
    fps: int = 10,
    start: float = 0.0,
    bitmap_stream: bool = False,
) -> Path:
    """Write an h264 video (stream 0) with a text subtitle stream (stream 1) of `codec`: subrip, ass, webvtt (mkv) or
    mov_text (mp4).

    Each cue is (start, end, text) in seconds of the video; a `str` text is encoded as an ASS dialogue text
    (`{\\i1}` tags, `\\N` line breaks), `bytes` are written as the packet as they are (to write damaged data).
    Every timestamp is `start` seconds later, the video's included. `bitmap_stream` adds a DVD (bitmap)
    subtitle stream (stream 2) with one packet that is never decoded.
    """
    from av.subtitles.subtitle import SubtitleSet

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        video.time_base = video.codec_context.time_base = Fraction(1, fps)
        subtitles = out.add_stream(codec)
        subtitles.codec_context.subtitle_header = _ASS_HEADER
        if language:
            subtitles.metadata["language"] = language
        bitmap = out.add_stream("dvd_subtitle") if bitmap_stream else None
        for i in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(index_frame(i, 160, 120), format="rgb24")
            frame.pts, frame.time_base = i + round(start * fps), Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        time_base = subtitles.time_base  # known once the header is written
        for begin, end, text in cues:
            pts, duration = round((start + begin) / time_base), round((end - begin) / time_base)
            if isinstance(text, str):
                cue = SubtitleSet.create(f"0,0,Default,,0,0,0,,{text}".encode(), 0, round((end - begin) * 1000), pts=pts)
                packet = subtitles.codec_context.encode_subtitle(cue)
            else:
                packet = av.Packet(text)
                packet.pts = packet.dts = pts
            packet.stream, packet.time_base, packet.duration = subtitles, time_base, duration
            out.mux(packet)
        if bitmap is not None:
            packet = av.Packet(b"\x00\x10\x00\x08" + bytes(12))  # an SPU header and nothing worth drawing
            packet.stream, packet.time_base = bitmap, bitmap.time_base
            packet.pts = packet.dts = round((start + 0.5) / bitmap.time_base)
            packet.duration = round(1 / bitmap.time_base)
            out.mux(packet)
    return path


def speak(text: str, *, voice: str = "en-us+f2", words_per_minute: int = 140) -> np.ndarray:
    """`text` spoken by espeak-ng (a Debian package), as 48 kHz mono float32 samples."""
    import shutil
    import subprocess
    import tempfile

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed: `bash .ci/setup test` installs it (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(wav), text], check=True)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=48000)
        with av.open(str(wav)) as container:
            frames = [f for frame in container.decode(audio=0) for f in resampler.resample(frame)]
        frames += resampler.resample(None)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32)


def write_speech_video(path: str | Path, speech: np.ndarray, *, offset: float, seconds: float, fps: int = 10) -> Path:
    """Write a video of `seconds` whose audio track is silent but for `speech` (48 kHz mono float32) at `offset`.

    The codecs follow the extension: h264 + AAC for .mp4 and .mkv, VP9 + Opus for .webm.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate, chunk = 48000, 960
    track = np.zeros(round(seconds * rate), np.float32)
    at = round(offset * rate)
    track[at : at + len(speech)] = speech[: len(track) - at]
    webm = path.suffix.lower() == ".webm"
    codecs = ("libvpx-vp9", "libopus") if webm else ("libx264", "aac")
    return _write_video_and_audio(path, track, rate=rate, seconds=seconds, fps=fps, codecs=codecs, chunk=chunk)


def _write_video_and_audio(path: Path, track: np.ndarray, *, rate: int, seconds: float, fps: int, codecs: tuple[str, str],
                           chunk: int) -> Path:
    """Mux `seconds` of index frames (160x120) and the mono float32 `track` at `rate` Hz, `chunk` samples a frame."""
    vcodec, acodec = codecs
    with av.open(str(path), "w") as out:
        video = out.add_stream(vcodec, rate=fps, options=_FAST.get(vcodec, {}))
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audio = out.add_stream(acodec, rate=rate, layout="mono")
        for i in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(index_frame(i, 160, 120), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        for begin in range(0, len(track), chunk):
            frame = av.AudioFrame.from_ndarray(track[None, begin : begin + chunk], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, begin, Fraction(1, rate)
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    return path


def write_garbled_audio_video(path: str | Path, *, seconds: float = 4.0, fps: int = 10, garbled: tuple[float, float] = (1.0, 3.0),
                              seed: int = 0) -> Path:
    """Write an h264 + AAC video (index frames, 160x120; a 300 Hz tone) whose audio packets that start within
    `garbled` (seconds) hold random bytes of the same size: the picture decodes whole, the audio track only in part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate, chunk = 48000, 1024
    rng = np.random.default_rng(seed)
    tone = (0.3 * np.sin(2 * np.pi * 300 * np.arange(round(seconds * rate)) / rate)).astype(np.float32)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audio = out.add_stream("aac", rate=rate, layout="mono")
        for i in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(index_frame(i, 160, 120), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))

        def mux_audio(packets: list[av.Packet]) -> None:
            for packet in packets:
                if packet.pts is not None and garbled[0] <= float(packet.pts * packet.time_base) < garbled[1]:
                    junk = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                    junk.pts, junk.dts, junk.duration = packet.pts, packet.dts, packet.duration
                    junk.stream, junk.time_base = audio, packet.time_base
                    packet = junk
                out.mux(packet)

        for begin in range(0, len(tone), chunk):
            frame = av.AudioFrame.from_ndarray(tone[None, begin : begin + chunk], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, begin, Fraction(1, rate)
            mux_audio(audio.encode(frame))
        mux_audio(audio.encode(None))
    return path


def add_speech(video: str | Path, out: str | Path, speech: np.ndarray, *, offset: float) -> Path:
    """Copy `video`'s picture (not re-encoded) to `out` with an AAC audio track that is silent but for `speech` (48 kHz
    mono float32) at `offset` seconds, as long as the picture: any video the tests write, made to talk."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rate, chunk = 48000, 1024
    with av.open(str(video)) as source, av.open(str(out), "w") as sink:
        picture = source.streams.video[0]
        seconds = float(picture.duration * picture.time_base) if picture.duration else float(source.duration / av.time_base)
        copy = sink.add_stream_from_template(picture)
        audio = sink.add_stream("aac", rate=rate, layout="mono")
        for packet in source.demux(picture):
            if packet.dts is None:  # the demuxer's empty packet at the end
                continue
            packet.stream = copy
            sink.mux(packet)
        track = np.zeros(round(seconds * rate), np.float32)
        at = round(offset * rate)
        track[at : at + len(speech)] = speech[: max(len(track) - at, 0)]
        for begin in range(0, len(track), chunk):
            frame = av.AudioFrame.from_ndarray(track[None, begin : begin + chunk], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, begin, Fraction(1, rate)
            sink.mux(audio.encode(frame))
        sink.mux(audio.encode(None))
    return out
