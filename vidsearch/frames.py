"""Read video metadata and sample upright, square RGB frames (or read one image) with PyAV."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.logging
import numpy as np

from .errors import BadVideo

_EPS = 1e-3  # seconds: a frame this close before a target time still counts as reaching it
STILL_IMAGE_FORMATS = frozenset({"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif_pipe",
                                 "jpegxl_pipe", "qoi_pipe", "pgm_pipe", "ppm_pipe", "svg_pipe"})

# FFmpeg's own error messages say why a file fails to open ("Picture size 100000x100000 is invalid"), so they
# are captured while opening. Only then: FFmpeg logging from decoder threads can deadlock against the GIL.
logging.getLogger("libav").addHandler(logging.NullHandler())
logging.getLogger("libav").propagate = False


@dataclass(frozen=True)
class VideoInfo:
    duration: float  # seconds
    fps: float  # average frame rate, 0.0 if unknown
    width: int  # upright (after rotation)
    height: int
    rotation: int  # display matrix rotation, counter-clockwise as PyAV and ffprobe give it: 0, 90, 180 or 270
    codec: str


@dataclass
class Coverage:
    """How much of the video stream `sample_frames` read: filled in as it runs, complete once it has run out.

    `declared` is the video stream's own duration (seconds from its first frame), None when the file does not
    say; `decoded` is where the frames read so far end (seconds from the same origin); `error` is FFmpeg's
    reason when decoding stopped on an error.
    """

    declared: float | None = None
    decoded: float = 0.0
    error: str | None = None
    frame_seconds: float = 0.04  # one frame interval, for the tolerance

    def read(self, pts: int | None, duration: int | None, origin: int, time_base) -> None:
        """Note a frame (or a packet not worth decoding) at `pts` lasting `duration`, in `time_base` units."""
        if pts is None:  # a raw stream: frames follow each other
            self.decoded += self.frame_seconds
            return
        length = float(duration * time_base) if duration else self.frame_seconds
        self.decoded = max(self.decoded, float((pts - origin) * time_base) + length)

    def shortfall(self) -> str | None:
        """Why decoding ended before the video did ("decoding stopped at 2.0 s of 4.0 s"), None when it read it all.

        Ending within a second (or two frame intervals) of the declared duration counts as all: a complete file's
        last frame ends at its duration give or take timestamp rounding. Without a declared duration only an
        FFmpeg error tells."""
        tolerance = max(1.0, 2 * self.frame_seconds)
        if self.declared is not None and self.decoded >= self.declared - tolerance:
            return None
        if self.declared is None and self.error is None:
            return None
        of = f" of {self.declared:.1f} s" if self.declared is not None else ""
        return f"decoding stopped at {self.decoded:.1f} s{of}" + (f" ({self.error})" if self.error else "")


@contextlib.contextmanager
def _ffmpeg_errors() -> Iterator[list]:
    """Collect FFmpeg's error messages for the duration (single-threaded work only)."""
    av.logging.set_level(av.logging.ERROR)
    av.logging.set_skip_repeated(False)  # the same message for the next bad file must be seen again
    try:
        with av.logging.Capture() as logs:
            yield logs
    finally:
        av.logging.set_level(None)


def _open(path: str | Path, *, still: bool = False) -> tuple[av.container.InputContainer, av.VideoStream]:
    """Open `path` and return it with its first real video stream, or raise BadVideo.

    A still image counts as a video only when `still` is set."""
    try:
        if Path(path).stat().st_size == 0:
            raise BadVideo(path, "empty file (0 bytes)")
        with _ffmpeg_errors() as logs:
            container = av.open(str(path), metadata_errors="ignore")  # a non-UTF-8 tag must not reject the file
    except FileNotFoundError:
        raise BadVideo(path, "file not found") from None
    except PermissionError:
        raise BadVideo(path, "permission denied") from None
    except (av.FFmpegError, OSError) as e:
        said = [message.strip() for level, _, message in logs if level <= av.logging.ERROR]
        raise BadVideo(path, f"cannot open: {e.strerror}" + (f" ({said[-1]})" if said else "")) from None
    if container.format.name in STILL_IMAGE_FORMATS and not still:
        container.close()
        raise BadVideo(path, f"not a video: a still image ({container.format.name.removesuffix('_pipe')})")
    cover = av.stream.Disposition.attached_pic  # album art is not a video
    videos = [s for s in container.streams.video if not s.disposition & cover]
    if not videos:
        kinds = sorted({s.type for s in container.streams} - {"video"})
        container.close()
        only = f" ({', '.join(kinds)} only)" if kinds else ""
        raise BadVideo(path, f"not a video: no video stream{only}")
    return container, videos[0]


def _decode(container, stream, path, skip: Callable[[int], bool] | None = None, coverage: Coverage | None = None) -> Iterator:
    """Decode `stream`; an error after the first frame ends it (a truncated file), noted in `coverage` if given.

    Non-reference frames whose packet pts satisfies `skip` are not decoded at all (but count as read).
    """
    decoded = False
    origin = stream.start_time or 0
    try:
        for packet in container.demux(stream):
            early = skip is not None and packet.pts is not None and skip(packet.pts)
            stream.codec_context.skip_frame = "NONREF" if early else "DEFAULT"
            for frame in packet.decode():
                decoded = True
                if coverage is not None:
                    coverage.read(frame.pts, frame.duration, origin, stream.time_base)
                yield frame
            if early and coverage is not None:
                coverage.read(packet.pts, packet.duration, origin, stream.time_base)
    except (av.FFmpegError, OSError) as e:
        if coverage is not None:
            coverage.error = e.strerror or str(e)
    if not decoded:
        raise BadVideo(path, "truncated: no decodable frames")


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns (0-3) that make `frame` upright."""
    return round(frame.rotation / 90) % 4


def probe(path: str | Path) -> VideoInfo:
    """Describe the video at `path`; decodes its first frame, so it also checks the file is usable."""
    container, stream = _open(path)
    with container:
        first = next(_decode(container, stream, path))
        turns = _quarter_turns(first)
        width, height = (first.height, first.width) if turns % 2 else (first.width, first.height)
        duration = _declared_duration(container, stream)
        if duration is None and container.duration:
            duration = _since_start(container, stream, container.duration / av.time_base)
        if duration is None:
            duration = _demuxed_duration(path)
        return VideoInfo(
            duration=duration,
            fps=float(stream.average_rate or 0.0),
            width=width,
            height=height,
            rotation=turns * 90,
            codec=stream.codec_context.codec.canonical_name,
        )


def _since_start(container, stream, declared: float) -> float:
    """A declared duration as seconds from the video stream's first frame.

    Matroska declares the time its segment ends (its clock starts at 0, whatever the first timestamp), so a file
    whose timestamps start at 1 h declares 3610 s for 10 s of video; other formats declare spans.
    """
    start = float((stream.start_time or 0) * stream.time_base)
    if "matroska" in container.format.name and 0 < start < declared:
        return declared - start
    return declared


def _declared_duration(container, stream) -> float | None:
    """The video stream's own duration in seconds from its first frame, when the file declares one.

    Only the video's: the stream's, Matroska's per-track DURATION tag, or the container's when the video is its
    only stream (otherwise that may be audio outlasting the picture)."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    tag = next((value for key, value in stream.metadata.items() if key.upper().startswith("DURATION")), None)
    if tag and "matroska" in container.format.name:
        try:
            hours, minutes, seconds = tag.strip().split(":")
            return _since_start(container, stream, int(hours) * 3600 + int(minutes) * 60 + float(seconds))
        except ValueError:
            pass
    if container.duration and len(container.streams) == 1:
        return _since_start(container, stream, container.duration / av.time_base)
    return None


def _demuxed_duration(path: str | Path) -> float:
    """The end time of the last packet, read (not decoded) from the start of the file."""
    container, stream = _open(path)
    origin, end = stream.start_time or 0, 0
    with container:
        try:
            for packet in container.demux(stream):
                if packet.pts is None:  # a raw stream: add up packet durations
                    end += packet.duration or 0
                else:
                    end = max(end, packet.pts - origin + (packet.duration or 0))
        except (av.FFmpegError, OSError):
            pass  # a truncated file: the packets read so far are all there is
        return float(end * stream.time_base)


def _square(frame: av.VideoFrame, size: int, sar: float) -> np.ndarray:
    """Scale the short side to `size` (in swscale), turn upright, centre-crop to size x size RGB."""
    display_width = frame.width * sar
    scale = size / min(display_width, frame.height)
    width = max(size, round(display_width * scale))
    height = max(size, round(frame.height * scale))
    rgb = frame.to_ndarray(width=width, height=height, format="rgb24")
    rgb = np.rot90(rgb, _quarter_turns(frame))
    top, left = (rgb.shape[0] - size) // 2, (rgb.shape[1] - size) // 2
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])


def read_image(path: str | Path, *, size: int = 224) -> np.ndarray:
    """An image file (or a video's first frame) as a size x size x 3 uint8 RGB array, cropped like video frames."""
    container, stream = _open(path, still=True)
    with container:
        frame = next(_decode(container, stream, path))
        return _square(frame, size, float(stream.sample_aspect_ratio or 1))


def frame_at(path: str | Path, seconds: float, *, size: int = 224) -> tuple[float, np.ndarray] | None:
    """(time, size x size RGB) of the frame on screen at `seconds`: the last one starting at or before it, decoded from
    the keyframe before. None when the video's frames start later. Raises BadVideo for a file that cannot be decoded."""
    container, stream = _open(path)
    with container:
        stream.thread_type = "AUTO"
        origin, time_base = stream.start_time or 0, stream.time_base
        if seconds > 0:
            try:
                container.seek(origin + int(seconds / time_base), stream=stream)
            except (av.FFmpegError, OSError) as e:
                raise BadVideo(path, f"cannot seek: {e.strerror}") from None
        shown = None
        for frame in _decode(container, stream, path):
            if frame.pts is None:  # a stream without timestamps: where the seek landed is all there is
                shown = shown or (0.0, frame)
                break
            t = float((frame.pts - origin) * time_base)
            if t > seconds + _EPS:
                break
            shown = (t, frame)
        if shown is None:
            return None
        return shown[0], _square(shown[1], size, float(stream.sample_aspect_ratio or 1))


def sample_frames(
    path: str | Path,
    *,
    fps: float = 1.0,
    size: int = 224,
    start: float = 0.0,
    end: float | None = None,
    deblock: bool = True,
    coverage: Coverage | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (seconds, size x size x 3 uint8 RGB frame) for targets start + k/fps before `end`.

    Each target takes the first frame whose own timestamp reaches it, and that
    timestamp is the one yielded; a frame is never yielded twice. Raises
    BadVideo (on the first iteration) for a file that cannot be decoded.

    `deblock=False` skips the in-loop deblocking filter of H.264/HEVC (ffmpeg's -skip_loop_filter all): about a
    fifth faster, but the frames drift from the exact ones (bench/RESULTS.md: 37-54 dB PSNR at model size, 23 dB
    on heavily compressed video).

    `coverage`, if given, is filled in with how much of the video stream was read (see Coverage.shortfall);
    it tells about the whole file only when `end` is None and every frame has been taken.
    """
    if fps <= 0 or size <= 0:
        raise ValueError("fps and size must be positive")
    container, stream = _open(path)
    with container:
        stream.thread_type = "AUTO"
        if not deblock:
            stream.codec_context.options = {"skip_loop_filter": "all"}  # applied when the decoder opens
        origin, time_base = stream.start_time or 0, stream.time_base
        step = 1 / float(stream.guessed_rate or 25)  # only for streams without timestamps
        sar = float(stream.sample_aspect_ratio or 1)
        if coverage is not None:
            coverage.declared = _declared_duration(container, stream)
            coverage.frame_seconds = 1 / float(stream.average_rate or stream.guessed_rate or 25)
        if start > 0:
            try:
                container.seek(origin + int(start / time_base), stream=stream)
            except (av.FFmpegError, OSError) as e:
                raise BadVideo(path, f"cannot seek: {e.strerror}") from None

        def before_target(pts: int) -> bool:
            # Such a frame can never be sampled; unless later frames refer to it, skip decoding it.
            return float((pts - origin) * time_base) < target - _EPS

        target, t = start, -step
        for frame in _decode(container, stream, path, before_target, coverage):
            t = t + step if frame.pts is None else float((frame.pts - origin) * time_base)
            if end is not None and t >= end:
                break
            if t < target - _EPS:
                continue
            yield t, _square(frame, size, sar)
            target = start + (math.floor((t + _EPS - start) * fps) + 1) / fps
            if end is not None and target >= end:
                break
