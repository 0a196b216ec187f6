"""Frames from a moment as small JPEGs: the strips of the HTML report and the files of --thumbnails."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .errors import BadVideo
from .frames import frame_at, read_image, sample_frames


def moment_frames(path: str, start: float, end: float, *, count: int, size: int) -> list[tuple[float, np.ndarray]]:
    """Up to `count` (seconds, size x size RGB) frames spread evenly over [start, end)."""
    span = max(end - start, 1e-3)
    return list(sample_frames(path, fps=count / span, size=size, start=start, end=end))[:count]


def moment_still(path: str, start: float, end: float, *, size: int) -> tuple[float, np.ndarray]:
    """(seconds, size x size RGB) standing for the moment: the frame on screen at its middle, else its first frame,
    else the video's first frame, so a decodable file always gives one (a 1-frame or sub-second video too).
    Raises BadVideo, with the reason, only when the file cannot be decoded at all."""
    try:
        found = frame_at(path, (start + end) / 2, size=size)
        if found is not None:
            return found
    except BadVideo:
        pass
    try:
        frames = moment_frames(path, start, end, count=1, size=size)
        if frames:
            return frames[0]
    except BadVideo:
        pass
    return 0.0, read_image(path, size=size)


def strip_frames(path: str, start: float, end: float, *, count: int, size: int) -> list[tuple[float, np.ndarray]]:
    """A report strip: moment_frames, or moment_still alone when no frame starts inside the moment (a moment
    shorter than a frame). Raises BadVideo, with the reason, only when the file cannot be decoded at all."""
    try:
        frames = moment_frames(path, start, end, count=count, size=size)
    except BadVideo:
        frames = []
    return frames or [moment_still(path, start, end, size=size)]


def jpeg(rgb: np.ndarray) -> bytes:
    """Encode one uint8 RGB image as a baseline JPEG (FFmpeg's mjpeg encoder, quantiser 2-5)."""
    height, width = rgb.shape[:2]
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
    codec.time_base = Fraction(1, 1)
    codec.qmin, codec.qmax = 2, 5
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuvj420p")
    return b"".join(bytes(packet) for packet in [*codec.encode(frame), *codec.encode(None)])


def write_thumbnails(moments: list, folder: Path, *, size: int = 224) -> tuple[dict[str, str], list[str]]:
    """One JPEG per moment (moment_still) as folder/MOMENT_ID.jpg; returns ({moment_id: file}, problems)."""
    folder.mkdir(parents=True, exist_ok=True)
    written, problems = {}, []
    for moment in moments:
        try:
            _, rgb = moment_still(moment.path, moment.start, moment.end, size=size)
        except BadVideo as e:
            problems.append(str(e))
            continue
        target = folder / f"{moment.moment_id}.jpg"
        target.write_bytes(jpeg(rgb))
        written[moment.moment_id] = str(target.resolve())
    return written, problems
