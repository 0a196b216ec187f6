"""Pure windowing arithmetic: chunks, slice spans and the segment grid."""

import numpy as np
import pytest

from vidsearch import windows
from vidsearch.synthetic import Scene, render_frames
from vidsearch.windows import MIN_SHOT_SECONDS, chunked, colour_histogram, frame_windows, group_segments, is_cut, slice_spans


def test_chunked_keeps_order_and_a_short_tail():
    assert list(chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunked([], 3)) == []


def test_slice_spans_tile_the_window_and_stop_at_the_duration():
    times = [0.0, 1.0, 2.0, 3.0, 4.0]
    assert slice_spans(times, tubelet=1, frame_seconds=1.0, duration=10.0) == [
        (0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 4.0), (4.0, 5.0)]
    assert slice_spans(times, tubelet=1, frame_seconds=1.0, duration=4.5)[-1] == (4.0, 4.5)


def test_slice_spans_with_two_frame_tubelets_and_a_padded_tail():
    spans = slice_spans([10.0, 11.0, 12.0, 13.0, 14.0], tubelet=2, frame_seconds=1.0)
    assert spans == [(10.0, 12.0), (12.0, 14.0), (14.0, 15.0)]


def test_slice_spans_follow_real_timestamps():
    spans = slice_spans([0.0, 0.9, 2.1], tubelet=1, frame_seconds=1.0)
    assert spans == [(0.0, 0.9), (0.9, 2.1), (2.1, 3.1)]


def test_segments_follow_a_fixed_time_grid_across_windows():
    spans = [(float(t), t + 1.0) for t in range(6, 15)]  # a window starting at 6 s
    groups = group_segments(spans, 4.0)
    assert [(spans[g.start][0], spans[g.stop - 1][1]) for g in groups] == [(6.0, 8.0), (8.0, 12.0), (12.0, 15.0)]
    assert sum(len(g) for g in groups) == len(spans)


def test_one_slice_is_one_segment():
    assert group_segments([(3.0, 4.0)], 4.0) == [range(0, 1)]


def flat(value):
    return np.full((8, 8, 3), value, np.uint8)


def test_without_cuts_windows_are_fixed_runs_of_frames():
    frames = [(float(t), flat(0 if t < 3 else 200)) for t in range(7)]
    assert [[t for t, _ in w] for w in frame_windows(frames, 3)] == [[0, 1, 2], [3, 4, 5], [6]]


def test_a_scene_cut_ends_a_window_early_and_the_count_starts_again():
    frames = [(float(t), flat(0 if t < 4 else 200)) for t in range(9)]
    assert [[t for t, _ in w] for w in frame_windows(frames, 3, cuts=True)] == [[0, 1, 2], [3], [4, 5, 6], [7, 8]]
    assert list(frame_windows([], 3, cuts=True)) == []


def test_a_flash_is_no_cut_and_flicker_leaves_windows_of_min_shot_seconds():
    """A flash (one white frame in a shot) and a strobe (two looks in turn) return to the look before: no cut. Flicker
    (a new look every frame) cuts everywhere, and leaves windows of MIN_SHOT_SECONDS (2 frames at 1 fps, 4 at 2 fps),
    not of one frame."""
    flash = [(float(t), flat(255 if t == 5 else 60)) for t in range(10)]
    assert [[t for t, _ in w] for w in frame_windows(flash, 8, cuts=True)] == [list(range(8)), [8, 9]]
    strobe = [(float(t), flat(250 * (t % 2))) for t in range(7)]
    assert [len(w) for w in frame_windows(strobe, 8, cuts=True)] == [7]
    looks = [0, 80, 160, 240, 40, 120, 200, 20, 100, 180]  # every one in another 16-level band
    flicker = [(float(t), flat(v)) for t, v in enumerate(looks)]
    assert [[t for t, _ in w] for w in frame_windows(flicker, 8, cuts=True)] == [[0], [1, 2], [3, 4], [5, 6], [7, 8], [9]]
    fast = [(t / 2, flat(looks[t])) for t in range(10)]
    assert [len(w) for w in frame_windows(fast, 8, cuts=True)] == [1, 4, 4, 1]
    assert MIN_SHOT_SECONDS == 2.0


@pytest.mark.parametrize("start", [0, 16, 32])
def test_a_stream_starting_at_a_cell_line_cuts_as_the_whole_stream_does(start, monkeypatch):
    """What a Ray unit (whole cells) relies on: windows from frame `start` on are the whole stream's; inside a cell
    windows start again at cuts, off the grid of the window size."""
    monkeypatch.setattr(windows, "CUT_CELL_FRAMES", 16)
    rng = np.random.default_rng(5)
    looks = np.repeat(rng.integers(0, 255, 20), rng.integers(1, 6, 20))[:40]  # shots of 1-5 frames, some flashes
    frames = [(float(t), flat(int(v))) for t, v in enumerate(looks)]
    whole = [[t for t, _ in w] for w in frame_windows(frames, 4, cuts=True)]
    part = [[t for t, _ in w] for w in frame_windows(frames[start:], 4, cuts=True)]
    assert part == [w for w in whole if w[0] >= start]
    assert any(w[0] % 4 for w in whole) and all(len(w) <= 4 for w in whole)
    assert windows.cut_cell(4) == 16 and windows.cut_cell(32) == 32  # whole windows, at least one


def test_cuts_are_found_between_rendered_scenes_and_not_inside_one():
    """The synthetic renderer's scenes at 1 fps and 64 px, as the tiny model samples them: a shape moving across its
    own background. Consecutive scenes differ in colour or shape (and background); some pairs share the colour."""
    rng = np.random.default_rng(3)
    scenes = [Scene("red", "circle", "left"), Scene("red", "square", "up"), Scene("blue", "triangle", "right"),
              Scene("yellow", "circle", "down"), Scene("yellow", "square", "left")]
    shots = [render_frames(scene, seconds=8, fps=1.0, size=64, rng=rng) for scene in scenes]
    for shot in shots:
        histograms = [colour_histogram(frame) for frame in shot]
        assert not any(is_cut(a, b) for a, b in zip(histograms, histograms[1:]))
    for before, after in zip(shots, shots[1:]):
        assert is_cut(colour_histogram(before[-1]), colour_histogram(after[0]))
    assert colour_histogram(shots[0][0]).shape == (3, 16) and np.allclose(colour_histogram(shots[0][0]).sum(axis=1), 1)


def test_the_local_decoder_and_ray_units_cut_windows_at_the_same_frames(tmp_path, monkeypatch):
    """A file of scenes of 5, 7 and 6 s: decode_job's windows (local indexing) and decode_unit's (Ray) start at the
    cuts (0, 5, 12 s) and otherwise every 8 frames; with cells of 8 frames, units of 8 s split the file in three
    and all windows also start at the cells (0, 5, 8, 12, 16 s), the same locally and on Ray."""
    from vidsearch.decode_workers import DecodeJob, Window, decode_job
    from vidsearch.ray_index import decode_unit, unit_rows
    from vidsearch.synthetic import write_video

    path = tmp_path / "cuts.mp4"
    write_video(path, [Scene("red", "circle", "left"), Scene("blue", "square", "up"), Scene("green", "triangle", "right")],
                scene_seconds=[5, 7, 6], fps=4.0, size=64)

    def local(**options):
        return [e.times[0] for e in decode_job(DecodeJob(0, path, 1.0, 64, 8, **options)) if isinstance(e, Window)]

    def clustered(unit_seconds):
        units = unit_rows(0, path, duration=18.0, video_fps=4.0, fps=1.0, size=64, window=8, deblock=True,
                          unit_seconds=unit_seconds, cuts=True)
        return len(units), [row["times"][0] for unit in units for row in decode_unit(unit) if row["index"] >= 0]

    assert local(cuts=True) == [0.0, 5.0, 12.0] and local() == [0.0, 8.0, 16.0]
    assert clustered(None) == clustered(8) == (1, [0.0, 5.0, 12.0])  # 8-s units round up to a cell of 64 frames
    monkeypatch.setattr(windows, "CUT_CELL_FRAMES", 8)
    assert local(cuts=True) == [0.0, 5.0, 8.0, 12.0, 16.0]
    assert clustered(8) == (3, local(cuts=True))
