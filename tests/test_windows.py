"""Pure windowing arithmetic: chunks, slice spans and the segment grid."""

from vidsearch.windows import chunked, group_segments, slice_spans


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
