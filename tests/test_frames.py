"""frames.py on generated videos: sampling times and content, codecs, rotation, cropping, bad files."""

import math
import os

import av
import numpy as np
import pytest
from media import (
    bar_frame,
    frame_times,
    level,
    measured_level,
    write_audio_only,
    write_bad_files,
    write_truncated,
    write_video,
    write_with_audio,
)

from vidsearch.decode_workers import DecodeJob, Finished, Started, Window, decode_job
from vidsearch.errors import BadVideo
from vidsearch.frames import VideoInfo, _decode, probe, sample_frames

TOLERANCE = 12  # gray levels; neighbouring frames differ by at least 37


def expected_samples(times: list[float], fps: float, start: float = 0.0, end: float = math.inf) -> list[int]:
    """Indices of the frames the sampling rule picks: per target, the first frame at or after it, once."""
    picked, target = [], start
    for i, t in enumerate(times):
        if t >= end:
            break
        if t >= target - 1e-3:
            picked.append(i)
            target = start + (math.floor((t + 1e-3 - start) * fps) + 1) / fps
    return picked


def assert_index(frame: np.ndarray, index: int) -> None:
    assert abs(measured_level(frame) - level(index)) <= TOLERANCE, f"content is not frame {index}"


@pytest.mark.parametrize(
    "codec, name, codec_name",
    [("libx264", "clip.mp4", "h264"), ("libvpx-vp9", "clip.webm", "vp9"), ("mpeg4", "clip.mkv", "mpeg4")],
)
def test_constant_rate_sampling_and_probe_across_codecs(tmp_path, codec, name, codec_name):
    path = write_video(tmp_path / name, seconds=5, fps=7, codec=codec)
    samples = list(sample_frames(path, fps=2, size=64))
    # Targets k/2 s; the first frame at or after each is frame ceil(7k/2), shown at its own time.
    assert len(samples) == 10
    for k, (t, frame) in enumerate(samples):
        index = math.ceil(7 * k / 2)
        assert t == pytest.approx(index / 7, abs=2e-3)
        assert 0 <= t - k / 2 < 1 / 7
        assert_index(frame, index)
    info = probe(path)
    assert info == VideoInfo(duration=info.duration, fps=7.0, width=160, height=120, rotation=0, codec=codec_name)
    assert info.duration == pytest.approx(5.0, abs=1 / 7)


@pytest.mark.parametrize("name, codec", [("vfr.mp4", "libx264"), ("vfr.mkv", "mpeg4")])
def test_variable_rate_uses_each_frames_own_time_and_never_repeats_a_frame(tmp_path, name, codec):
    times = [0.0, 0.04, 0.5, 0.52, 1.3, 1.31, 1.9, 4.6, 4.65, 5.1, 5.3]
    path = write_video(tmp_path / name, codec=codec, vfr_times=times)
    samples = list(sample_frames(path, fps=1, size=64))
    # Targets 0..5: 0 -> 0.0, 1 -> 1.3, 2, 3 and 4 all -> 4.6 (once), 5 -> 5.1.
    assert [t for t, _ in samples] == pytest.approx([0.0, 1.3, 4.6, 5.1], abs=2e-3)
    for (_, frame), index in zip(samples, [0, 4, 7, 9]):
        assert_index(frame, index)


def test_start_and_end_limit_the_targets(tmp_path):
    path = write_video(tmp_path / "clip.mp4", seconds=4, fps=10)
    samples = list(sample_frames(path, fps=2, size=32, start=1.25, end=3.0))
    assert [t for t, _ in samples] == pytest.approx([1.3, 1.8, 2.3, 2.8], abs=2e-3)
    for t, frame in samples:
        assert_index(frame, round(t * 10))


def test_skipping_undecoded_b_frames_picks_the_same_frames_as_full_decoding(tmp_path):
    path = write_video(tmp_path / "motion.mp4", seconds=4, fps=30, frame_fn=bar_frame)
    times = frame_times(path)
    expected = [times[i] for i in expected_samples(times, fps=3)]
    assert [t for t, _ in sample_frames(path, fps=3, size=32)] == pytest.approx(expected, abs=1e-6)


def noisy_frame(index: int, width: int, height: int) -> np.ndarray:
    """Moving gradient plus noise: compresses into blocks, so the deblocking filter has work to do."""
    rng = np.random.default_rng(index)
    x = (np.arange(width)[None, :] * 2 + index * 5) % 256
    img = np.repeat(np.broadcast_to(x, (height, width))[..., None], 3, axis=2).astype(np.int16)
    return np.clip(img + rng.integers(-40, 40, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_skipping_the_deblocking_filter_keeps_the_timing_and_nearly_the_pixels(tmp_path):
    path = write_video(tmp_path / "noisy.mp4", seconds=3, fps=30, size=(320, 240), frame_fn=noisy_frame)
    exact = list(sample_frames(path, fps=2, size=96))
    fast = list(sample_frames(path, fps=2, size=96, deblock=False))
    assert [t for t, _ in fast] == [t for t, _ in exact] and len(exact) == 6
    error = np.mean([(a.astype(float) - b.astype(float)) ** 2 for (_, a), (_, b) in zip(exact, fast)])
    assert 0 < error and 10 * np.log10(255**2 / error) > 30  # the filter was skipped, and it barely shows


def quadrant_frame(index: int, width: int, height: int) -> np.ndarray:
    """Dark gray with the top-left quadrant white: shows which way up a frame is."""
    img = np.full((height, width, 3), 40, np.uint8)
    img[: height // 2, : width // 2] = 255
    return img


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_rotated_video_is_returned_upright(tmp_path, rotation):
    path = write_video(tmp_path / "phone.mp4", seconds=1, size=(160, 120), rotation=rotation, frame_fn=quadrant_frame)
    info = probe(path)
    assert (info.rotation, info.width, info.height) == (rotation, 160, 120)
    _, frame = next(iter(sample_frames(path, size=64)))
    corners = [frame[:16, :16], frame[:16, -16:], frame[-16:, :16], frame[-16:, -16:]]
    assert [round(c.mean() / 255) for c in corners] == [1, 0, 0, 0]


def test_frames_are_square_rgb_centre_crops(tmp_path):
    def edges(index, width, height):
        # 192x108 shows only x in [42, 150) once centre-cropped: red and blue lie outside it.
        img = np.full((height, width, 3), 128, np.uint8)
        img[:, :42] = (255, 0, 0)
        img[:, 42:60] = 255
        img[:, 132:150] = 0
        img[:, 150:] = (0, 0, 255)
        return img

    path = write_video(tmp_path / "wide.mp4", seconds=1, size=(192, 108), frame_fn=edges)
    for size in (64, 224):
        _, frame = next(iter(sample_frames(path, size=size)))
        assert frame.shape == (size, size, 3) and frame.dtype == np.uint8
        band = size // 10
        assert frame[:, 1:band].mean() > 200  # the white strip is the left edge
        assert frame[:, -band:-1].mean() < 40  # the black strip is the right edge
        # No red or blue is left (the outermost columns may blend a little across the cut).
        red, green, blue = (frame[:, 3:-3, c].astype(int) for c in range(3))
        assert (red - green).max() < 60 and (blue - green).max() < 60


def test_truncated_file_yields_what_decodes_then_stops(tmp_path):
    path = write_truncated(tmp_path / "cut.mp4", fraction=0.7, faststart=True)
    samples = list(sample_frames(path, fps=10, size=32))
    assert 0 < len(samples) < 40
    for t, frame in samples:
        assert_index(frame, round(t * 10))


def test_decoding_error_mid_stream_ends_the_frames_quietly(tmp_path):
    path = write_truncated(tmp_path / "cut.mp4", fraction=0.7, faststart=True)
    # Frame threading hides this file's error at the cut; the default slice threading raises it.
    with av.open(str(path)) as container, pytest.raises(av.InvalidDataError):
        list(container.decode(container.streams.video[0]))
    with av.open(str(path)) as container:
        frames = list(_decode(container, container.streams.video[0], path))
    assert 0 < len(frames) < 40


def decoded(path, fps: float = 10) -> tuple[list[float], Finished]:
    """Every sampled time of `path` and its Finished event, as the indexer gets them."""
    events = list(decode_job(DecodeJob(0, path, fps=fps, size=32, window=8)))
    assert isinstance(events[0], Started) and isinstance(events[-1], Finished)
    return [t for e in events if isinstance(e, Window) for t in e.times], events[-1]


@pytest.mark.parametrize("name, faststart, codec, cut", [
    ("cut.mp4", True, "libx264", 0.7), ("cut.mp4", True, "libx264", 0.5), ("cut.mkv", False, "mpeg4", 0.6),
    ("cut.webm", False, "libvpx-vp9", 0.6)])
def test_a_cut_off_file_is_partial_and_says_where_it_stopped(tmp_path, name, faststart, codec, cut):
    path = write_truncated(tmp_path / name, fraction=cut, faststart=faststart, codec=codec)
    assert probe(path).duration == pytest.approx(4.0)  # the header still declares the whole video
    times, finished = decoded(path)  # 10 fps of a 10 fps video: every frame that decodes
    assert 0 < finished.frames == len(times) < 40
    assert finished.covered == pytest.approx(times[-1] + 0.1, abs=1e-3) and finished.covered < 3.5
    assert finished.error.startswith(f"decoding stopped at {finished.covered:.1f} s of 4.0 s")


@pytest.mark.parametrize("name, codec", [("clip.mp4", "libx264"), ("clip.webm", "libvpx-vp9"), ("clip.mkv", "mpeg4")])
@pytest.mark.parametrize("fps", [1, 7, 30])
def test_complete_files_are_not_partial(tmp_path, name, codec, fps):
    path = write_video(tmp_path / name, seconds=5, fps=fps, codec=codec)
    times, finished = decoded(path, fps=fps)
    assert finished == Finished(0, 5 * fps, None, finished.covered) and len(times) == 5 * fps
    assert finished.covered == pytest.approx(5.0, abs=2e-3)


def test_a_variable_rate_file_and_one_whose_audio_outlasts_the_video_are_complete(tmp_path):
    vfr = write_video(tmp_path / "vfr.mkv", codec="mpeg4", vfr_times=[0.0, 0.04, 0.5, 1.3, 1.9, 4.6, 5.1, 5.3])
    assert decoded(vfr, fps=1)[1].error is None
    talk = write_with_audio(tmp_path / "talk.mkv", seconds=2, audio_seconds=4)
    with av.open(str(talk)) as container:
        assert container.duration / av.time_base == pytest.approx(4.0, abs=0.05)  # the container lasts as long as the audio
    assert probe(talk).duration == pytest.approx(2.0)  # the video's own
    times, finished = decoded(talk)
    assert finished == Finished(0, 20, None, pytest.approx(2.0)) and times[-1] == pytest.approx(1.9)


def test_timestamps_starting_at_an_hour_read_like_the_same_video_starting_at_zero(tmp_path):
    shifted = {name: write_video(tmp_path / name, seconds=10, fps=10, codec=codec, start=3600)
               for name, codec in (("late.mkv", "mpeg4"), ("late.mp4", "libx264"))}
    plain = write_video(tmp_path / "plain.mp4", seconds=10, fps=10)
    expected = [t for t, _ in sample_frames(plain, fps=1, size=32)]
    for path in shifted.values():
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert float(stream.start_time * stream.time_base) == pytest.approx(3600)
        assert probe(path).duration == pytest.approx(10.0, abs=0.01)
        samples = list(sample_frames(path, fps=1, size=32))
        assert [t for t, _ in samples] == pytest.approx(expected, abs=2e-3) and samples[0][0] == pytest.approx(0)
        (t, frame), *_ = sample_frames(path, fps=1, size=32, start=5)
        assert t == pytest.approx(5.0, abs=2e-3)
        assert_index(frame, 50)
        assert decoded(path)[1] == Finished(0, 100, None, pytest.approx(10.0, abs=2e-3))


def bad_files(folder):
    files = write_bad_files(folder)
    files["no_frames"] = write_truncated(folder / "no_frames.mp4", fraction=0.3, faststart=True)
    files["opus_only"] = write_audio_only(folder / "voice.webm", codec="libopus")
    files["missing"] = folder / "missing.mp4"
    files["directory"] = folder
    return files


REASONS = {
    "empty": "empty file (0 bytes)",
    "text": "cannot open: Invalid data found when processing input (moov atom not found)",
    "truncated": "cannot open: Invalid data found when processing input (moov atom not found)",
    "audio_only": "not a video: no video stream (audio only)",
    "no_frames": "truncated: no decodable frames",
    "opus_only": "not a video: no video stream (audio only)",
    "missing": "file not found",
    "directory": "cannot open: Is a directory",
}


@pytest.mark.parametrize("kind", sorted(REASONS))
def test_bad_files_raise_bad_video_naming_the_path(tmp_path, kind):
    path = bad_files(tmp_path)[kind]
    for call in (probe, lambda p: list(sample_frames(p))):
        with pytest.raises(BadVideo) as caught:
            call(path)
        assert str(caught.value) == f"{path}: {REASONS[kind]}"


def test_a_huge_declared_frame_size_and_a_still_image_are_refused_with_ffmpegs_reason(tmp_path):
    huge = tmp_path / "huge.y4m"
    huge.write_bytes(b"YUV4MPEG2 W100000 H100000 F10:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000))
    with pytest.raises(BadVideo, match="Picture size 100000x100000 is invalid"):
        probe(huge)
    still = tmp_path / "still.mp4"  # a PNG, whatever its name says
    with av.open(str(still), "w", format="image2") as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "rgb24"
        out.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")))
        out.mux(stream.encode())
    with pytest.raises(BadVideo, match="not a video: a still image"):
        probe(still)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_raises_bad_video(tmp_path):
    path = write_video(tmp_path / "secret.mp4", seconds=1)
    path.chmod(0)
    with pytest.raises(BadVideo, match="permission denied"):
        probe(path)
