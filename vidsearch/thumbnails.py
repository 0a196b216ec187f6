"""Frames from a moment as small JPEGs: the strips of the HTML report and the files of --thumbnails."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .decode import sample_frames
from .errors import BadVideo


def moment_frames(path: str, start: float, end: float, *, count: int, size: int) -> list[tuple[float, np.ndarray]]:
    """Up to `count` (seconds, size x size RGB) frames spread evenly over [start, end)."""
    span = max(end - start, 1e-3)
    return list(sample_frames(path, fps=count / span, size=size, start=start, end=end))[:count]


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
    """One JPEG per moment, its middle frame, as folder/MOMENT_ID.jpg; returns ({moment_id: file}, problems)."""
    folder.mkdir(parents=True, exist_ok=True)
    written, problems = {}, []
    for moment in moments:
        middle = (moment.start + moment.end) / 2
        try:
            frames = moment_frames(moment.path, middle, moment.end, count=1, size=size)
        except BadVideo as e:
            problems.append(str(e))
            continue
        if frames:
            target = folder / f"{moment.moment_id}.jpg"
            target.write_bytes(jpeg(frames[0][1]))
            written[moment.moment_id] = str(target.resolve())
    return written, problems
