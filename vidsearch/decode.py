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


def _decode(container, stream, path, skip: Callable[[int], bool] | None = None) -> Iterator:
    """Decode `stream`; an error after the first frame ends it quietly (a truncated file).

    Non-reference frames whose packet pts satisfies `skip` are not decoded at all.
    """
    decoded = False
    try:
        for packet in container.demux(stream):
            early = skip is not None and packet.pts is not None and skip(packet.pts)
            stream.codec_context.skip_frame = "NONREF" if early else "DEFAULT"
            for frame in packet.decode():
                decoded = True
                yield frame
    except (av.FFmpegError, OSError):
        pass
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
        if stream.duration:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = _demuxed_duration(path)
        return VideoInfo(
            duration=duration,
            fps=float(stream.average_rate or 0.0),
            width=width,
            height=height,
            rotation=turns * 90,
            codec=stream.codec_context.codec.canonical_name,
        )


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


def sample_frames(
    path: str | Path,
    *,
    fps: float = 1.0,
    size: int = 224,
    start: float = 0.0,
    end: float | None = None,
    deblock: bool = True,
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (seconds, size x size x 3 uint8 RGB frame) for targets start + k/fps before `end`.

    Each target takes the first frame whose own timestamp reaches it, and that
    timestamp is the one yielded; a frame is never yielded twice. Raises
    BadVideo (on the first iteration) for a file that cannot be decoded.

    `deblock=False` skips the in-loop deblocking filter of H.264/HEVC (ffmpeg's -skip_loop_filter all): about a
    fifth faster, but the frames drift from the exact ones (bench/RESULTS.md: 37-54 dB PSNR at model size, 23 dB
    on heavily compressed video).
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
        if start > 0:
            try:
                container.seek(origin + int(start / time_base), stream=stream)
            except (av.FFmpegError, OSError) as e:
                raise BadVideo(path, f"cannot seek: {e.strerror}") from None

        def before_target(pts: int) -> bool:
            # Such a frame can never be sampled; unless later frames refer to it, skip decoding it.
            return float((pts - origin) * time_base) < target - _EPS

        target, t = start, -step
        for frame in _decode(container, stream, path, before_target):
            t = t + step if frame.pts is None else float((frame.pts - origin) * time_base)
            if end is not None and t >= end:
                break
            if t < target - _EPS:
                continue
            yield t, _square(frame, size, sar)
            target = start + (math.floor((t + _EPS - start) * fps) + 1) / fps
            if end is not None and target >= end:
                break
