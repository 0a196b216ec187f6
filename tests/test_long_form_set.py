"""The long-video labelled set of tests/long_form_set.py (issue 14): scenes of different lengths that tile each video,
labels that agree with the scenes, files that `train` and `eval-moments` read without a problem; and, through the real
CLI, eval-moments on it with the tiny model. bench/long_form.py reports a larger set's numbers in bench/RESULTS.md."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import av
import pytest
from cli_helpers import run_cli, run_json
from long_form_set import (
    APPEARANCE,
    KINDS,
    MOTION,
    LongFormSet,
    Query,
    SceneSpan,
    Truth,
    build_long_form_set,
    random_segment_recall,
    sequence_caption,
)

from vidsearch.data import load_pairs
from vidsearch.moment_eval import METRIC_KEYS, Span, read_queries
from vidsearch.synthetic import Scene, write_video


def decoded(path: Path) -> tuple[int, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, float(stream.duration * stream.time_base)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> LongFormSet:
    return build_long_form_set(tmp_path_factory.mktemp("long") / "videos", videos=4, seed=0, size=32)


# --- the renderer: scenes of different lengths ---------------------------------------------------------------------------

def test_write_video_takes_one_length_per_scene_and_the_rows_tile_the_video(tmp_path):
    scenes = [Scene("red", "circle", "left"), Scene("blue", "square", "down"), Scene("yellow", "triangle", "up")]
    rows = write_video(tmp_path / "v.mp4", scenes, scene_seconds=[1.5, 3.0, 0.75], fps=4.0, size=32, seed=1)
    assert [(r["start"], r["end"], r["caption"]) for r in rows] == [
        (0.0, 1.5, scenes[0].caption), (1.5, 4.5, scenes[1].caption), (4.5, 5.25, scenes[2].caption)]
    assert decoded(tmp_path / "v.mp4") == (21, pytest.approx(5.25))
    # one length for all is what it always was: the same rows as a list of equal lengths, and the same bytes
    same = write_video(tmp_path / "a.mp4", scenes, scene_seconds=2.0, fps=4.0, size=32, seed=1)
    listed = write_video(tmp_path / "b.mp4", scenes, scene_seconds=[2.0] * 3, fps=4.0, size=32, seed=1)
    assert [(r["start"], r["end"]) for r in same] == [(r["start"], r["end"]) for r in listed] == [(0, 2), (2, 4), (4, 6)]
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    with pytest.raises(ValueError, match="2 lengths for 3 scenes"):
        write_video(tmp_path / "c.mp4", scenes, scene_seconds=[2.0, 3.0], size=32)
    with pytest.raises(ValueError, match="at least 2 frames"):
        write_video(tmp_path / "c.mp4", scenes, scene_seconds=[2.0, 0.1, 3.0], size=32)


# --- the set ---------------------------------------------------------------------------------------------------------------

def test_scenes_of_different_lengths_tile_each_video(small):
    assert list(small.scenes) == [f"long_{i:02d}.mp4" for i in range(4)]
    lengths = []
    for video, spans in small.scenes.items():
        assert 3 <= len(spans) <= 5
        assert [s.index for s in spans] == list(range(len(spans)))
        assert spans[0].start == 0.0
        assert all(a.end == b.start for a, b in zip(spans, spans[1:]))
        frames, duration = decoded(small.folder / video)
        assert duration == pytest.approx(small.duration(video)) and frames == round(4.0 * small.duration(video))
        lengths += [s.end - s.start for s in spans]
        # a visible cut between scenes: the next scene never has the same colour and shape
        assert all((a.scene.color, a.scene.shape) != (b.scene.color, b.scene.shape) for a, b in zip(spans, spans[1:]))
    assert all(6 <= n <= 12 and n == int(n) for n in lengths)
    assert len(set(lengths)) >= 4


def test_every_kind_is_asked_and_each_query_lists_exactly_the_spans_it_describes(small):
    counts = Counter(q.kind for q in small.queries)
    assert set(counts) == set(KINDS) and all(counts[k] >= 3 for k in KINDS), counts
    assert [q.kind for q in small.queries] == sorted((q.kind for q in small.queries), key=KINDS.index)
    assert len({(q.kind, q.text) for q in small.queries}) == len(small.queries)
    every = [s for spans in small.scenes.values() for s in spans]
    pairs = [(a, b) for spans in small.scenes.values() for a, b in zip(spans, spans[1:])]
    truth = lambda s: Truth(s.video, s.start, s.end)  # noqa: E731
    for q in small.queries:
        assert q.truths and len(set(q.truths)) == len(q.truths)
        if q.kind == "sequence":
            first, then = [Scene(*_words(part)) for part in q.text.split(", then ")]
            assert q.text == sequence_caption(first, then)
            assert set(q.truths) == {Truth(a.video, a.start, b.end) for a, b in pairs if (a.scene, b.scene) == (first, then)}
            continue
        words = set(q.text.replace(",", "").split())
        matching = [s for s in every if {s.scene.color, s.scene.shape} <= words]
        assert len({(s.scene.color, s.scene.shape) for s in matching}) == 1, q  # exactly one colour and shape named
        if q.kind == "appearance":
            assert q.text in {t.format(color=s.scene.color, shape=s.scene.shape) for t in APPEARANCE for s in matching}
            assert set(q.truths) == {truth(s) for s in matching}
            continue
        named = [s for s in matching if s.scene.direction in words]
        assert set(q.truths) == {truth(s) for s in named}
        if q.kind == "single":
            assert q.text == named[0].scene.caption
        else:  # motion: direction first or last, and the same look moves another way somewhere in the library
            assert q.text in {t.format(color=s.scene.color, shape=s.scene.shape, direction=s.scene.direction)
                              for t in MOTION for s in named}
            assert {s.scene.direction for s in matching} - {named[0].scene.direction}
    # every scene is a single query's span, and every consecutive pair a sequence query's
    assert {truth(s) for s in every} == {t for q in small.queries if q.kind == "single" for t in q.truths}
    assert {Truth(a.video, a.start, b.end) for a, b in pairs} == {
        t for q in small.queries if q.kind == "sequence" for t in q.truths}


def _words(caption: str) -> tuple[str, str, str]:
    _, color, shape, _, direction = caption.split()
    return color, shape, direction


def test_the_queries_file_reads_back_as_the_labels_in_eval_moments(small, tmp_path):
    path = small.write_queries(tmp_path / "lists" / "queries.jsonl")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert all(set(line) == {"query", "video", "start", "end", "kind"} for line in lines)
    assert all(not Path(line["video"]).is_absolute() for line in lines)
    queries, problems = read_queries(path)
    assert problems == []
    assert [(q.text, q.kind) for q in queries] == [(q.text, q.kind) for q in small.queries]
    for read, labelled in zip(queries, small.queries):
        assert read.truths == tuple(Span(small.path(t.video), t.start, t.end) for t in labelled.truths)
        assert all(Path(span.path).is_file() for span in read.truths)


@pytest.mark.parametrize("captions", ["scene", "pair", "both"])
def test_training_manifests_hold_one_caption_per_scene_or_two_consecutive_scenes(small, tmp_path, captions):
    manifest = small.write_manifest(tmp_path / captions / "pairs.jsonl", captions)
    pairs, problems = load_pairs(manifest)
    assert problems == []
    scenes = sum(len(spans) for spans in small.scenes.values())
    expected = {"scene": scenes, "pair": scenes - len(small.scenes), "both": 2 * scenes - len(small.scenes)}
    assert len(pairs) == expected[captions]
    spans = {(small.path(s.video), s.start, s.end): s.scene.caption for v in small.scenes.values() for s in v}
    for pair in pairs:
        video = os.path.abspath(pair.video)
        assert pair.end <= pair.video_duration + 1e-6
        if ", then " in pair.caption:  # two consecutive scenes under one caption, over both
            first, then = pair.caption.split(", then ")
            middle = next(end for (path, start, end), caption in spans.items()
                          if path == video and start == pair.start and caption == first)
            assert spans[(video, middle, pair.end)] == then
        else:
            assert spans[(video, pair.start, pair.end)] == pair.caption
    with pytest.raises(ValueError, match="captions must be one of"):
        small.train_rows("long")


def test_the_same_seed_builds_the_same_set_and_another_seed_another(small, tmp_path):
    again = build_long_form_set(tmp_path / "again", videos=4, seed=0, size=32)
    assert again.scenes == small.scenes  # file names and spans, not folders
    assert again.queries == small.queries
    for video in small.scenes:
        assert (again.folder / video).read_bytes() == (small.folder / video).read_bytes()
    other = build_long_form_set(tmp_path / "other", videos=4, seed=1, size=32)
    assert other.scenes != small.scenes
    with pytest.raises(ValueError, match="appearances"):
        build_long_form_set(tmp_path / "bad", videos=1, appearances=1, size=32)


def test_chance_counts_the_grid_segments_that_reach_iou_one_half():
    # one 20 s video: scenes 0-6 and 6-14 and 14-20; 4-s segments 0-4, 4-8, 8-12, 12-16, 16-20
    spans = [SceneSpan("v.mp4", 0, 0.0, 6.0, Scene("red", "circle", "left")),
             SceneSpan("v.mp4", 1, 6.0, 14.0, Scene("blue", "square", "up")),
             SceneSpan("v.mp4", 2, 14.0, 20.0, Scene("red", "circle", "down"))]
    queries = [Query("single", "a", (Truth("v.mp4", 0.0, 6.0),)),  # 0-4: IoU 4/6; 4-8: 2/8
               Query("single", "b", (Truth("v.mp4", 6.0, 14.0),)),  # 8-12: IoU 4/8, exactly one half
               Query("appearance", "c", (Truth("v.mp4", 0.0, 6.0), Truth("v.mp4", 14.0, 20.0))),  # 0-4 and 16-20
               Query("sequence", "d", (Truth("v.mp4", 0.0, 14.0),))]  # no 4-s segment reaches 7 s of overlap
    labelled = LongFormSet(Path("."), {"v.mp4": spans}, queries)
    one = random_segment_recall(labelled)
    assert one == pytest.approx({"single": 1 / 5, "appearance": 2 / 5, "sequence": 0.0, "all": 1 / 5})
    two = random_segment_recall(labelled, k=2)  # 1 - C(4, 2) / C(5, 2) for one good segment, 1 - C(3, 2) / C(5, 2) for two
    assert two == pytest.approx({"single": 1 - 6 / 10, "appearance": 1 - 3 / 10, "sequence": 0.0,
                                 "all": (2 * (1 - 6 / 10) + (1 - 3 / 10)) / 4})
    # 8-s segments: 0-8 (IoU 6/8 with 0-6, 8/14 with 0-14), 8-16 (6/10 with 6-14), 16-20 (4/6 with 14-20)
    eight = random_segment_recall(labelled, segment_seconds=8.0)
    assert eight == pytest.approx({"single": 1 / 3, "appearance": 2 / 3, "sequence": 1 / 3, "all": 5 / 12})


# --- through the CLI -----------------------------------------------------------------------------------------------------

@pytest.mark.slow  # indexes 8 videos (5 minutes of video) and runs eval-moments over about 80 queries
def test_eval_moments_on_the_set_finds_single_scenes_well_above_chance(trained_tiny, tmp_path):
    folder, _ = trained_tiny
    labelled = build_long_form_set(tmp_path / "videos", videos=8, seed=0)
    queries = labelled.write_queries(tmp_path / "queries.jsonl")
    home = tmp_path / "index"
    run_cli("index", str(labelled.folder), "--model", str(folder), "--index", str(home))
    result = run_json("eval-moments", str(queries), "--index", str(home), "--mode", "visual")
    assert set(result) == {"queries", "all", "by_kind"}
    assert result["queries"] == len(labelled.queries)
    assert set(result["by_kind"]) == set(KINDS)
    for values in [result["all"], *result["by_kind"].values()]:
        assert set(values) == set(METRIC_KEYS) and all(0.0 <= v <= 1.0 for v in values.values())
    single = result["by_kind"]["single"]
    chance = {k: random_segment_recall(labelled, k=k)["single"] for k in (1, 5)}
    assert chance[1] < 0.02 and chance[5] < 0.06, chance  # measured: 0.007 and 0.036 (22 single queries)
    # Measured with this fixture's model: R@5 0.591 and R@1 0.136 (3 of 22); the untrained tiny model scores 0 on both,
    # and a 50-step model 0.591 and 0.227. R@5 is the robust margin; R@1 asks for 2 of 22 right scenes, each a 6-12 s
    # span that a top hit grown from 4-s segments must cover at IoU 0.5.
    assert single["R@5@0.5"] >= chance[5] + 0.3, (single, chance)
    assert single["R@1@0.5"] >= chance[1] + 0.05, (single, chance)
    # Multi-scale search (--scale auto) against segments alone, every query searched as one text ("A, then B" too), on
    # windows that cross scene cuts (--no-cuts) and on the default ones that end at cuts.
    quoted = labelled.write_queries(tmp_path / "quoted.jsonl", quoted=True)
    uncut = tmp_path / "uncut"
    run_cli("index", str(labelled.folder), "--model", str(folder), "--index", str(uncut), "--no-cuts")

    def by_scale(index):
        return {scale: run_json("eval-moments", str(quoted), "--index", str(index), "--mode", "visual", "--scale",
                                scale)["by_kind"] for scale in ("segment", "auto")}

    crossing, cut = by_scale(uncut), by_scale(home)
    segment, auto = crossing["segment"], crossing["auto"]
    # Measured with this fixture's model and --no-cuts, segment -> auto: single R@1 0.364 -> 0.318 (one query) and R@5
    # 0.591 -> 0.636 (22 queries); sequence R@1 0.15 -> 0.20, R@5 0.30 -> 0.45 and mean IoU 0.129 -> 0.143 (20
    # queries). (Before identical captions stopped being negatives in training, the fixture's model gave single R@1
    # 0.136 -> 0.227 and sequence R@1 0.05 -> 0.25: a better model leaves segment search less to make up.)
    assert auto["single"]["R@1@0.5"] >= segment["single"]["R@1@0.5"] - 1 / 22, crossing  # no worse, within one query
    assert auto["single"]["R@5@0.5"] >= segment["single"]["R@5@0.5"] - 2 / 22, crossing
    assert auto["sequence"]["mIoU"] > segment["sequence"]["mIoU"] + 0.01, crossing  # spans of two scenes fit better
    assert auto["sequence"]["R@1@0.5"] >= segment["sequence"]["R@1@0.5"] + 1 / 20, crossing
    assert auto["sequence"]["R@5@0.5"] >= segment["sequence"]["R@5@0.5"] + 2 / 20, crossing
    # Windows that end at cuts give segments that end there too: single R@5 at segment scale 0.591 -> 0.909 (R@1
    # 0.364 -> 0.273). Then segment -> auto: single R@1 0.273 -> 0.364 and R@5 0.909 -> 0.773 (three queries; on the
    # larger sets of bench/long_form.py auto is within noise of segment there); sequence R@1 0.05 -> 0.10, R@5 0.55
    # both, mean IoU 0.081 -> 0.083: segments that already fit the scenes leave spans little to add.
    assert cut["segment"]["single"]["R@5@0.5"] >= segment["single"]["R@5@0.5"] + 0.2, (cut, crossing)
    assert cut["auto"]["single"]["R@1@0.5"] >= cut["segment"]["single"]["R@1@0.5"] - 1 / 22, cut
    assert cut["auto"]["sequence"]["R@1@0.5"] >= cut["segment"]["sequence"]["R@1@0.5"], cut
    assert cut["auto"]["sequence"]["mIoU"] >= cut["segment"]["sequence"]["mIoU"] - 0.01, cut
    # written as sequences, auto chains the parts' moments found at segment scale (spans made worse chains)
    chained = run_json("eval-moments", str(queries), "--index", str(home), "--mode", "visual", "--scale", "auto")
    assert chained["by_kind"]["sequence"] == result["by_kind"]["sequence"]
    assert chained["by_kind"]["single"] == cut["auto"]["single"]
