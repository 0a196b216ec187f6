"""Training data from decode worker processes: the same batches as the thread, the cache filled once, failures
raised at the clip that needs them, workers stopped with the run, page-locked batches, and one loss read per log."""

import json
import multiprocessing
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vidsearch.data import ClipDataset, epoch_batches, load_pairs
from vidsearch.errors import BadVideo
from vidsearch.faults import KILL_AT
from vidsearch.synthetic import make_dataset
from vidsearch.train import Distributed, TrainSettings, _batches, train

CLIP = {"frames": 4, "fps": 2.0, "size": 32}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """12 scenes of 3 s, plus each whole video (a long span) and a span shorter than a clip: 16 pairs."""
    root = tmp_path_factory.mktemp("clips")
    manifest = make_dataset(root, videos=3, scenes_per_video=4, scene_seconds=3, fps=4, size=64, seed=1)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    videos = sorted({row["video"] for row in rows})
    rows += [{"video": video, "caption": f"all of {video}"} for video in videos]
    rows.append({"video": videos[0], "start": 1.0, "end": 1.6, "caption": "a moment"})
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root


def pairs_in(folder):
    pairs, problems = load_pairs(folder / "pairs.jsonl")
    assert problems == [] and len(pairs) == 16
    return pairs


def requests_for(pairs, steps, *, batch=4, seed=0):
    """The training plan: step s takes batch s of its epoch's shuffle; each clip's window is seeded by (seed, s, i)."""
    per_epoch = len(pairs) // batch

    def requests():
        for step in steps:
            epoch, position = divmod(step, per_epoch)
            chosen = epoch_batches(pairs, batch, np.random.default_rng([seed, epoch]), group_by_video=False)[position]
            yield [(i, (seed, step, i)) for i in chosen]
    return requests


def by_hand(pairs, requests):
    """Each batch as training cut it before workers: centre-or-random windows of spans decoded one by one, here."""
    dataset = ClipDataset(pairs, **CLIP, cache=False)
    return [np.stack([dataset.clip(i, np.random.default_rng(list(seed))) for i, seed in batch]) for batch in requests()]


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("workers", [1, 2])
def test_workers_give_the_same_batches_as_decoding_here(folder, workers, cache):
    pairs = pairs_in(folder)
    requests = requests_for(pairs, range(10))  # two and a half epochs: later epochs take spans from the cache
    dataset = ClipDataset(pairs, **CLIP, cache=cache)
    got = list(dataset.batches(requests, workers=workers, depth=2))
    expected = by_hand(pairs, requests)
    assert len(got) == len(expected) == 10
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    assert {len(batch) for batch in got} == {4} and got[0].shape[1:] == (4, 32, 32, 3)
    assert multiprocessing.active_children() == []


def test_with_the_cache_each_span_crosses_once_and_later_epochs_need_no_video(folder, tmp_path):
    copy = shutil.copytree(folder, tmp_path / "copy")
    pairs = pairs_in(copy)
    first, later = requests_for(pairs, range(4)), requests_for(pairs, range(4, 12))  # epoch 0 holds every pair
    expected = by_hand(pairs, later)
    spans = [ClipDataset(pairs, **CLIP, cache=False).decoded(i) for i in range(len(pairs))]
    dataset = ClipDataset(pairs, **CLIP, cache=True)
    assert len(list(dataset.batches(first, workers=2, depth=2))) == 4
    shutil.rmtree(copy / "videos")
    # the spans came back from the workers whole and stay here: nothing is decoded again
    for i, span in enumerate(spans):
        np.testing.assert_array_equal(dataset.decoded(i), span)
    for a, b in zip(dataset.batches(later, workers=2, depth=2), expected, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(BadVideo, match="file not found"):  # without the cache the videos would be needed
        list(ClipDataset(pairs, **CLIP, cache=False).batches(later, workers=1, depth=2))
    assert multiprocessing.active_children() == []


def first_step_using(pairs, requests, video):
    return next(step for step, batch in enumerate(requests()) if any(pairs[i].video == video for i, _ in batch))


@pytest.mark.parametrize("cache", [True, False])
def test_a_video_that_fails_stops_at_the_batch_that_needs_it_as_decoding_here_does(folder, tmp_path, cache):
    copy = shutil.copytree(folder, tmp_path / "copy")
    pairs = pairs_in(copy)
    requests = requests_for(pairs, range(8))
    broken = pairs[5].video
    broken.write_bytes(b"not a video any more")
    reached, errors = {}, {}
    for workers in (0, 1, 2):
        batches = ClipDataset(pairs, **CLIP, cache=cache).batches(requests, workers=workers, depth=2)
        reached[workers] = 0
        with pytest.raises(BadVideo) as caught:
            for _ in batches:
                reached[workers] += 1
        errors[workers] = str(caught.value)
    assert reached == dict.fromkeys((0, 1, 2), first_step_using(pairs, requests, broken))
    assert errors[1] == errors[2] == errors[0] and errors[0].startswith(f"{broken}: cannot open")
    assert multiprocessing.active_children() == []


def test_a_decoder_crash_is_an_error_naming_the_video(folder, monkeypatch):
    pairs = pairs_in(folder)
    requests = requests_for(pairs, range(4))
    victim = pairs[7].video
    monkeypatch.setenv(KILL_AT, f"decode-worker@{victim.name}:SIGSEGV")
    with pytest.raises(BadVideo, match="decoder crashed: signal 11 \\(SIGSEGV\\)") as caught:
        list(ClipDataset(pairs, **CLIP, cache=True).batches(requests, workers=2, depth=2))
    assert caught.value.path == str(victim)
    assert multiprocessing.active_children() == []


def training_batches(pairs, *, rank=0, world=1, workers=1, pin=False, steps=6, batch=8, cache=True):
    settings = TrainSettings(manifest="unused", out="unused", batch_size=batch, frames=CLIP["frames"], fps=CLIP["fps"], seed=5)
    dataset = ClipDataset(pairs, **CLIP, cache=cache)
    per_epoch = len(epoch_batches(pairs, batch, np.random.default_rng(0), group_by_video=False))
    def tokenizer(captions):  # the tiny model's tokens would do; lengths keep this test free of open_clip
        return torch.tensor([len(c) for c in captions])
    dist = SimpleNamespace(rank=rank, world=world)
    return _batches(dataset, settings, tokenizer, dist, start=1, total=1 + steps, per_epoch=per_epoch, workers=workers, pin=pin)


def test_training_draws_one_of_a_clip_s_phrasings_per_step_the_same_on_every_run(folder):
    from dataclasses import replace

    pairs = [replace(p, alternatives=(f"{p.caption} (again)", f"{p.caption} (once more)")) for p in pairs_in(folder)]
    settings = TrainSettings(manifest="unused", out="unused", batch_size=8, frames=CLIP["frames"], fps=CLIP["fps"], seed=5)
    dataset = ClipDataset(pairs, **CLIP, cache=False)
    per_epoch = len(epoch_batches(pairs, 8, np.random.default_rng(0), group_by_video=False))

    def said_in_a_run() -> list[str]:
        said = []

        def tokenizer(captions):
            said.extend(captions)
            return torch.zeros(len(captions))

        list(_batches(dataset, settings, tokenizer, SimpleNamespace(rank=0, world=1), start=1, total=7,
                      per_epoch=per_epoch, workers=0, pin=False))
        return said

    said = said_in_a_run()
    phrasings = {text for p in pairs for text in (p.caption, *p.alternatives)}
    assert len(said) == 48 and set(said) <= phrasings
    assert {text.endswith("(again)") for text in said} == {True, False}  # both the caption and the others are drawn
    assert any(text.endswith("(once more)") for text in said)
    assert said_in_a_run() == said


def test_each_rank_gets_its_share_of_the_same_global_batch(folder):
    pairs = pairs_in(folder)
    whole = list(training_batches(pairs, workers=0))
    halves = [list(training_batches(pairs, rank=rank, world=2, workers=1)) for rank in (0, 1)]
    assert len(whole) == 6
    assert {i for batch in whole for i in batch.captions.tolist()} <= {p.caption_id for p in pairs}
    for batch, first, second in zip(whole, *halves, strict=True):
        for got, one, two in zip(batch, first, second, strict=True):  # clips, tokens, caption ids
            assert torch.equal(got, torch.cat([one, two]))


def test_batches_are_page_locked_off_the_training_thread_when_asked(folder, monkeypatch):
    """No CUDA here, so Tensor.pin_memory (which needs a driver) is replaced by a copy that is recorded: this checks
    that every batch goes through it, in the producer thread, and is otherwise unchanged."""
    import threading

    pairs = pairs_in(folder)
    plain = list(training_batches(pairs))
    pinned, threads = [], set()

    def pin_memory(tensor):
        threads.add(threading.current_thread())
        pinned.append(tensor.clone())
        return pinned[-1]

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
    got = list(training_batches(pairs, pin=True))
    assert len(pinned) == 2 * len(got) == 12 and threading.current_thread() not in threads
    for (video, tokens, captions), want in zip(got, plain, strict=True):
        assert any(video is p for p in pinned) and any(tokens is p for p in pinned)
        assert all(torch.equal(a, b) for a, b in zip((video, tokens, captions), want, strict=True))


def test_stopping_early_stops_the_workers(folder):
    pairs = pairs_in(folder)
    batches = training_batches(pairs, workers=2, steps=20, cache=False)  # 160 spans to decode: far more than fit ahead
    next(batches)
    assert len(multiprocessing.active_children()) == 2
    batches.close()
    assert multiprocessing.active_children() == []


@pytest.mark.slow
def test_workers_and_pinning_train_exactly_as_the_thread_and_read_the_loss_only_when_logging(folder, tmp_path, monkeypatch):
    """In this process: 5 steps of the tiny model decoded here, then by 2 workers with the CUDA-only page-locking forced
    on (pin_memory copies, as above); the same losses, and the loss is read (a GPU sync) at steps 2, 4 and 5 only."""
    import vidsearch.train as training

    reads = []
    mean = Distributed.mean
    monkeypatch.setattr(Distributed, "mean", lambda self, value: reads.append(value) or mean(self, value))

    def run(name, workers):
        settings = TrainSettings(manifest=str(folder / "pairs.jsonl"), out=str(tmp_path / name), model="tiny",
                                 frames=4, fps=2.0, steps=5, batch_size=8, lr=1e-3, device="cpu", workers=workers,
                                 log_every=2)
        steps = []
        train(settings, on_step=lambda report: steps.append(report.step))
        log = [json.loads(line) for line in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]
        assert [line["step"] for line in log] == steps == [2, 4, 5]
        return [line["loss"] for line in log]

    thread = run("thread", 0)
    assert len(reads) == 3
    pins = []
    monkeypatch.setattr(training, "page_locked", lambda device: True)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda tensor: pins.append(tensor) or tensor.clone())
    assert run("workers", 2) == pytest.approx(thread, abs=1e-6)
    assert len(pins) == 2 * 5 and len(reads) == 6
    assert multiprocessing.active_children() == []
