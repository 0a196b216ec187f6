"""decode_all's worker processes: a worker that dies costs only the file it held, and Ctrl-C is not a crash."""

import multiprocessing
import os
import signal

import pytest
from media import write_video

from vidsearch.decode_workers import DecodeJob, Finished, Started, Window, decode_all
from vidsearch.faults import KILL_AT


def jobs_for(folder, seconds: dict[str, float], fps: float = 2.0, window: int = 4) -> list[DecodeJob]:
    return [DecodeJob(key, write_video(folder / name, seconds=length), fps=fps, size=32, window=window)
            for key, (name, length) in enumerate(seconds.items())]


def by_file(events) -> dict[int, list]:
    """Each file's events in the order they came, windows as (times, pixels) so they compare by value."""
    files: dict[int, list] = {}
    for event in events:
        item = ("window", event.times, event.frames.tobytes()) if isinstance(event, Window) else event
        files.setdefault(event.key, []).append(item)
    return files


def frames_of(events: list) -> int:
    return sum(len(item[1]) for item in events if isinstance(item, tuple))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_crashing_decoder_fails_only_its_file(tmp_path, monkeypatch, workers):
    jobs = jobs_for(tmp_path, {"a.mp4": 3, "b.mp4": 3, "c.mp4": 5, "d.mp4": 2})
    reference = by_file(decode_all(jobs, workers=0, depth=2))  # in this process: no worker, no fault point
    assert [reference[key][-1] for key in range(4)] == [Finished(0, 6, None, 3.0), Finished(1, 6, None, 3.0),
                                                        Finished(2, 10, None, 5.0), Finished(3, 4, None, 2.0)]
    monkeypatch.setenv(KILL_AT, "decode-worker@b.mp4:SIGSEGV")
    files = by_file(decode_all(jobs, workers=workers, depth=2))
    assert files[1] == [Finished(1, 0, "decoder crashed: signal 11 (SIGSEGV)", None)]
    assert {key: files[key] for key in (0, 2, 3)} == {key: reference[key] for key in (0, 2, 3)}
    assert multiprocessing.active_children() == []


def kill_mid_file(jobs, signals: list[signal.Signals]) -> dict[int, list]:
    """Run one worker; once the first file's first window is in, send the worker `signals`. The worker cannot be
    far ahead: it waits for room (depth 1) after a window or two of the 25."""
    events, sent = [], False
    for event in decode_all(jobs, workers=1, depth=1):
        events.append(event)
        if isinstance(event, Window) and not sent:
            [worker] = multiprocessing.active_children()
            for signum in signals:
                os.kill(worker.pid, signum)
            sent = True
    return by_file(events)


def test_a_worker_killed_mid_file_leaves_that_file_partial_and_a_new_worker_goes_on(tmp_path):
    jobs = jobs_for(tmp_path, {"long.mp4": 20, "next.mp4": 3}, fps=5.0)
    files = kill_mid_file(jobs, [signal.SIGKILL])
    *received, finished = files[0]
    assert isinstance(received[0], Started) and frames_of(received) == finished.frames
    assert finished == Finished(0, finished.frames, "decoder crashed: signal 9 (SIGKILL)", received[-1][1][-1] + 0.2)
    assert 0 < finished.frames < 100  # 20 s at 5 fps
    assert files[1] == by_file(decode_all(jobs[1:], workers=0, depth=1))[1]
    assert multiprocessing.active_children() == []


def test_workers_ignore_ctrl_c_and_sigterm(tmp_path):
    jobs = jobs_for(tmp_path, {"long.mp4": 20, "next.mp4": 3}, fps=5.0)
    assert kill_mid_file(jobs, [signal.SIGINT, signal.SIGTERM]) == by_file(decode_all(jobs, workers=0, depth=1))


def test_stopping_early_leaves_no_worker_behind(tmp_path):
    jobs = jobs_for(tmp_path, {"a.mp4": 20, "b.mp4": 20, "c.mp4": 20}, fps=5.0)
    events = decode_all(jobs, workers=2, depth=1)
    assert isinstance(next(events), Started)
    assert len(multiprocessing.active_children()) == 2
    events.close()
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("workers", [0, 1])
def test_a_bug_in_a_worker_is_raised_not_recorded(tmp_path, workers):
    [job] = jobs_for(tmp_path, {"a.mp4": 2})
    broken = DecodeJob(job.key, job.path, fps=job.fps, size=0, window=job.window)  # sample_frames refuses size 0
    with pytest.raises(ValueError, match="fps and size must be positive"):
        list(decode_all([broken], workers=workers, depth=1))
    assert multiprocessing.active_children() == []


def test_a_text_job_reads_the_same_in_a_worker_as_here(tmp_path):
    from media import write_subtitled_video

    from vidsearch.decode_workers import TextJob, TextRead

    video = write_subtitled_video(tmp_path / "s.mkv", [(0.5, 1.5, "hello there")], seconds=2)
    (tmp_path / "s.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nbeside it\n", encoding="utf-8")
    jobs = [TextJob(0, video, frozenset({"embedded", "sidecar"}))]
    here, there = (list(decode_all(jobs, workers=workers, depth=2)) for workers in (0, 1))
    assert [type(e) for e in there] == [TextRead, Finished] and there == here
    assert sorted(line.text for line in there[0].text.lines) == ["beside it", "hello there"]


def test_a_text_worker_that_crashes_costs_only_its_file(tmp_path, monkeypatch):
    from media import write_subtitled_video

    from vidsearch.decode_workers import TextJob, TextRead

    videos = [write_subtitled_video(tmp_path / f"{name}.mkv", [(0.5, 1.5, name)], seconds=2) for name in ("a", "b")]
    monkeypatch.setenv(KILL_AT, "text-worker@a.mkv:SIGSEGV")
    events = list(decode_all([TextJob(i, v, frozenset({"embedded"})) for i, v in enumerate(videos)], workers=1, depth=2))
    assert events[0] == Finished(0, 0, "decoder crashed: signal 11 (SIGSEGV)")
    assert isinstance(events[1], TextRead) and [line.text for line in events[1].text.lines] == ["b"]
