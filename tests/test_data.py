"""Manifest parsing, batching, the LR schedule and the contrastive loss: pure logic, fast."""

import json
import math

import numpy as np
import pytest
import torch

from vidsearch.data import ClipDataset, Pair, epoch_batches, load_pairs, read_manifest, span_bytes, span_frames, take_clip
from vidsearch.loss import ContrastiveLoss
from vidsearch.train import get_lr


@pytest.fixture
def videos(tmp_path):
    (tmp_path / "clips").mkdir()
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / "clips" / name).write_bytes(b"\0")
    return tmp_path


def write_lines(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_good_lines_resolve_relative_paths_and_optional_spans(videos):
    manifest = write_lines(videos / "pairs.jsonl", [
        {"video": "clips/a.mp4", "start": 1, "end": 5.5, "caption": "a dog"},
        {"video": str(videos / "clips" / "b.mp4"), "caption": "a cat"},
    ])
    pairs, problems = read_manifest(manifest)
    assert problems == []
    assert pairs == [Pair(videos / "clips" / "a.mp4", 1.0, 5.5, "a dog", 1), Pair(videos / "clips" / "b.mp4", None, None, "a cat", 2)]


def test_a_caption_may_be_a_list_of_phrasings_and_training_draws_one_per_step(videos):
    manifest = write_lines(videos / "pairs.jsonl", [
        {"video": "clips/a.mp4", "caption": ["a dog running", "a running dog", "running: a dog"]},
        {"video": "clips/a.mp4", "caption": []},
        {"video": "clips/a.mp4", "caption": ["fine", " "]},
    ])
    pairs, problems = read_manifest(manifest)
    assert [(p.line, p.reason) for p in problems] == [(2, "empty caption"), (3, "empty caption")]
    pair = pairs[0]
    assert pair.caption == "a dog running" and pair.alternatives == ("a running dog", "running: a dog")
    drawn = [pair.caption_for((0, step, 0)) for step in range(60)]
    assert set(drawn) == {"a dog running", "a running dog", "running: a dog"}
    assert drawn == [pair.caption_for((0, step, 0)) for step in range(60)]  # a resumed run draws the same
    single = Pair(videos / "clips" / "a.mp4", None, None, "a cat", 1)
    assert {single.caption_for((0, step, 0)) for step in range(10)} == {"a cat"}


def test_pairs_captioned_alike_share_a_caption_id_in_every_process(videos):
    import subprocess
    import sys

    video = videos / "clips" / "a.mp4"
    dog, also_dog = Pair(video, 0.0, 4.0, "a dog", 1), Pair(videos / "clips" / "b.mp4", 2.0, 9.0, "a dog", 7)
    listed = Pair(video, None, None, "a dog", 2, alternatives=("a running dog",))
    assert dog.caption_id == also_dog.caption_id  # the span, the video and the line do not matter
    assert len({dog.caption_id, listed.caption_id, Pair(video, None, None, "a cat", 3).caption_id,
                Pair(video, None, None, "a running dog", 4, alternatives=("a dog",)).caption_id}) == 4
    # torchrun ranks are separate processes with their own string hashing: ids must not depend on it
    code = "from vidsearch.data import Pair; print(Pair('v', None, None, 'a dog', 1, alternatives=('a running dog',)).caption_id)"
    ids = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**__import__("os").environ, "PYTHONHASHSEED": seed}).stdout.strip() for seed in ("1", "2")}
    assert ids == {str(listed.caption_id)}


def test_bad_lines_are_reported_with_their_line_numbers(videos):
    manifest = write_lines(videos / "pairs.jsonl", [
        {"video": "clips/a.mp4", "caption": "fine"},
        {"caption": "no video"},
        {"video": "clips/a.mp4"},
        "{not json",
        "",
        {"video": "clips/a.mp4", "start": 5, "end": 2, "caption": "backwards"},
        {"video": "clips/a.mp4", "caption": "   "},
        {"video": "clips/missing.mp4", "caption": "gone"},
        {"video": "clips/a.mp4", "start": "soon", "caption": "bad number"},
        [1, 2],
    ])
    pairs, problems = read_manifest(manifest)
    assert [p.line for p in pairs] == [1]
    found = {p.line: p.reason for p in problems}
    assert set(found) == {2, 3, 4, 6, 7, 8, 9, 10}
    assert "missing key: video" in found[2] and "missing key: caption" in found[3]
    assert "JSON" in found[4] and "after start" in found[6] and "empty caption" in found[7]
    assert "not found" in found[8] and "number" in found[9]
    assert all(str(manifest) in str(p) and f":{p.line}:" in str(p) for p in problems)


def test_lines_whose_video_is_unreadable_or_starts_past_its_end_are_skipped(tmp_path):
    from media import write_video

    write_video(tmp_path / "four.mp4", seconds=4, fps=10)
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    manifest = write_lines(tmp_path / "pairs.jsonl", [
        {"video": "four.mp4", "caption": "whole"},
        {"video": "four.mp4", "start": 3.5, "caption": "the last half second"},
        {"video": "four.mp4", "start": 4, "end": 6, "caption": "starts at the end"},
        {"video": "four.mp4", "start": 100, "caption": "starts long after"},
        {"video": "broken.mp4", "caption": "unreadable"},
        {"video": "four.mp4", "start": 0, "end": 100, "caption": "ends after the end"},
    ])
    pairs, problems = load_pairs(manifest)
    assert [p.line for p in pairs] == [1, 2, 6]
    assert [p.line for p in problems] == [3, 4, 5]
    assert "start (4 s) is not before the video's end (4 s)" in problems[0].reason
    assert "start (100 s)" in problems[1].reason and "unreadable video" in problems[2].reason


def test_the_cache_is_sized_by_the_spans_it_holds_not_by_the_clip_length(tmp_path):
    from dataclasses import replace

    from media import write_video

    write_video(tmp_path / "four.mp4", seconds=4, fps=10)
    manifest = write_lines(tmp_path / "pairs.jsonl", [
        {"video": "four.mp4", "caption": "whole"},
        {"video": "four.mp4", "start": 1, "caption": "from 1 s to the end"},
        {"video": "four.mp4", "start": 0, "end": 2, "caption": "the first 2 s"},
        {"video": "four.mp4", "start": 3.5, "end": 100, "caption": "ends after the end"},
        {"video": "four.mp4", "start": 1, "end": 1.3, "caption": "shorter than a frame interval"},
    ])
    pairs, problems = load_pairs(manifest)
    assert problems == [] and [p.video_duration for p in pairs] == [4.0] * 5
    for fps in (1.0, 2.0, 3.0):
        dataset = ClipDataset(pairs, frames=16, fps=fps, size=8, cache=True)  # 16 frames: more than most spans hold
        decoded = [dataset.decoded(i) for i in range(len(pairs))]
        assert [span_frames(p, fps) for p in pairs] == [len(frames) for frames in decoded]
        assert span_bytes(pairs, fps=fps, size=8) == sum(frames.nbytes for frames in decoded)
    assert [span_frames(p, 2.0) for p in pairs] == [8, 6, 4, 1, 1]
    # a pair straight from the manifest, not yet probed, is probed when its span runs to the video's end
    assert span_frames(replace(pairs[1], video_duration=None), 2.0) == 6


def numbered(count):
    """A fake span whose frame k holds k everywhere, so a clip shows which frames it took."""
    return np.arange(count, dtype=np.int64).reshape(count, 1, 1, 1)


def picked(clip):
    return clip[:, 0, 0, 0].tolist()


@pytest.mark.parametrize("count", [9, 40, 61, 1000])
def test_spread_clips_cover_the_whole_span_a_stride_apart(count):
    stride = count / 8
    draws = [np.random.default_rng([0, step, 3]) for step in range(50)] + [None]  # training's seeds, then the centre
    for rng in draws:
        frames = picked(take_clip(numbered(count), 8, rng, sampling="spread"))
        assert len(frames) == 8 and frames[0] < stride and frames[-1] >= count - 1 - stride  # a stride from either end
        assert all(math.floor(stride) <= b - a <= math.ceil(stride) for a, b in zip(frames, frames[1:]))
    centre = picked(take_clip(numbered(count), 8, sampling="spread"))
    assert centre == [math.floor((k + 0.5) * stride) for k in range(8)]  # the middle of each stride
    starts = {picked(take_clip(numbered(count), 8, rng, sampling="spread"))[0] for rng in draws[:-1]}
    assert len(starts) >= min(5, math.ceil(stride))  # the phase moves from step to step


def test_spread_frames_are_a_function_of_the_seed_and_step():
    span = numbered(100)

    def clip(seed, step, pair):
        return picked(take_clip(span, 8, np.random.default_rng([seed, step, pair]), sampling="spread"))

    assert clip(0, 7, 2) == clip(0, 7, 2) and clip(1, 7, 2) == clip(1, 7, 2)
    assert len({tuple(clip(0, step, 2)) for step in range(20)}) > 5
    assert len({tuple(clip(seed, 7, 2)) for seed in range(20)}) > 5


def test_contiguous_clips_are_the_windows_they_always_were():
    span = numbered(40)
    for step in range(20):
        seed = [0, step, 5]
        first = int(np.random.default_rng(seed).integers(0, 40 - 8 + 1))  # the draw take_clip has always made
        expected = list(range(first, first + 8))
        assert picked(take_clip(span, 8, np.random.default_rng(seed))) == expected
        assert picked(take_clip(span, 8, np.random.default_rng(seed), sampling="contiguous")) == expected
    assert picked(take_clip(span, 8)) == list(range(16, 24))  # the centre window


@pytest.mark.parametrize("count", [3, 8])
def test_a_span_that_fits_in_the_clip_is_taken_whole_whatever_the_sampling(count):
    whole = list(range(count)) + [count - 1] * (8 - count)  # its last frame repeated
    for rng in (np.random.default_rng([0, 1, 2]), None):
        assert picked(take_clip(numbered(count), 8, rng, sampling="spread")) == whole
        assert picked(take_clip(numbered(count), 8, rng, sampling="contiguous")) == whole


def test_spread_clips_of_a_decoded_span_reach_its_ends_here_and_in_workers(tmp_path):
    from media import write_video

    write_video(tmp_path / "twenty.mp4", seconds=20, fps=4)  # every frame a different gray
    manifest = write_lines(tmp_path / "pairs.jsonl", [{"video": "twenty.mp4", "caption": "all of it"},
                                                      {"video": "twenty.mp4", "start": 2, "end": 18, "caption": "most"}])
    pairs, problems = load_pairs(manifest)
    assert problems == []
    dataset = ClipDataset(pairs, frames=4, fps=2.0, size=32, cache=False, sampling="spread")
    for pair, (start, end) in enumerate([(0, 20), (2, 18)]):
        span = dataset.decoded(pair)
        assert len(span) == (end - start) * 2
        for rng in [np.random.default_rng([0, step, pair]) for step in range(10)] + [None]:
            clip = dataset.clip(pair, rng)
            seconds = [start + [np.array_equal(frame, f) for f in span].index(True) / 2.0 for frame in clip]
            stride = (end - start) / 4
            assert seconds[0] < start + stride and seconds[-1] >= end - stride and seconds == sorted(seconds)

    def requests():
        return iter([[(0, (0, step, 0)), (1, (0, step, 1))] for step in range(3)])

    here = list(dataset.batches(requests, workers=0, depth=2))
    there = list(ClipDataset(pairs, frames=4, fps=2.0, size=32, cache=False, sampling="spread").batches(
        requests, workers=1, depth=2))
    for a, b in zip(here, there, strict=True):
        np.testing.assert_array_equal(a, b)
    contiguous = ClipDataset(pairs, frames=4, fps=2.0, size=32, cache=False)
    assert contiguous.sampling == "contiguous"  # what a dataset does unless told (eval's centre windows)
    assert not np.array_equal(contiguous.clip(0), dataset.clip(0))


def test_csv_manifests_work_too(videos):
    (videos / "pairs.csv").write_text("video,start,end,caption\nclips/a.mp4,0,4,a dog\nclips/b.mp4,,,a cat\nclips/b.mp4,3,1,x\n")
    pairs, problems = read_manifest(videos / "pairs.csv")
    assert [(p.start, p.end, p.caption) for p in pairs] == [(0.0, 4.0, "a dog"), (None, None, "a cat")]
    assert [p.line for p in problems] == [4]


def test_grouped_batches_keep_each_videos_clips_together():
    pairs = [Pair(f"/v{i // 4}.mp4", None, None, f"c{i}", i) for i in range(32)]
    batches = epoch_batches(pairs, 8, np.random.default_rng(0), group_by_video=True)
    assert len(batches) == 4 and all(len(b) == 8 for b in batches)
    for batch in batches:
        assert len({pairs[i].video for i in batch}) == 2
    assert sorted(i for b in batches for i in b) == list(range(32))
    shuffled = epoch_batches(pairs, 8, np.random.default_rng(0), group_by_video=False)
    assert any(len({pairs[i].video for i in b}) > 2 for b in shuffled)


def test_lr_warms_up_then_decays_to_zero():
    lrs = [get_lr(s, base=1.0, warmup=10, total=110) for s in range(111)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.5) and lrs[110] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_contrastive_loss_rewards_alignment_and_is_symmetric():
    torch.manual_seed(0)
    x = torch.randn(8, 16)
    loss = ContrastiveLoss()
    scale = torch.tensor(math.log(10.0))
    aligned, shuffled = loss(x, x, scale), loss(x, x[torch.randperm(8)], scale)
    assert aligned < shuffled
    y = torch.randn(8, 16)
    torch.testing.assert_close(loss(x, y, scale), loss(y, x, scale))


def test_pairs_captioned_alike_are_not_each_other_s_negatives():
    """Clips 0 and 2 share a caption: with ids, each row's softmax leaves out the other one (and only that), in both
    directions; with all ids distinct, the loss is the plain one."""
    torch.manual_seed(0)
    video, text, scale = torch.randn(4, 8), torch.randn(4, 8), torch.tensor(math.log(10.0))
    loss = ContrastiveLoss()
    assert loss(video, text, scale, torch.tensor([5, 6, 7, 8])) == loss(video, text, scale)

    v, t = torch.nn.functional.normalize(video, dim=-1), torch.nn.functional.normalize(text, dim=-1)
    def one_way(a, b):  # rows of a against the columns of b they may be scored against
        logits = 10.0 * a @ b.T
        kept = [[0, 1, 3], [0, 1, 2, 3], [1, 2, 3], [0, 1, 2, 3]]
        return sum(torch.logsumexp(logits[i, kept[i]], 0) - logits[i, i] for i in range(4)) / 4
    expected = (one_way(v, t) + one_way(t, v)) / 2
    got = loss(video, text, scale, torch.tensor([5, 6, 5, 8]))
    torch.testing.assert_close(got, expected)
    assert got < loss(video, text, scale)

    video.requires_grad_(True)
    loss(video, text, scale, torch.tensor([5, 6, 5, 8])).backward()
    moved = video.grad.clone()
    video.grad = None
    shifted = text.clone()
    shifted[2] += 3.0  # the text of clip 2 no longer matters to clip 0's row
    loss(video, shifted, scale, torch.tensor([5, 6, 5, 8])).backward()
    torch.testing.assert_close(video.grad[0], moved[0])


def test_temperature_is_clamped():
    x, y = torch.randn(4, 8), torch.randn(4, 8)
    loss = ContrastiveLoss()
    torch.testing.assert_close(loss(x, y, torch.tensor(50.0)), loss(x, y, torch.tensor(math.log(100.0))))
