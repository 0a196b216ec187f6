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
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audio = out.add_stream("aac", rate=rate, layout="mono")
        for i in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(index_frame(i, 160, 120), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        for begin in range(0, len(tone), chunk):
            frame = av.AudioFrame.from_ndarray(tone[None, begin : begin + chunk], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, begin
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    return path


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
