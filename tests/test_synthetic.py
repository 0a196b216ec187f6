"""The synthetic moving-shape generator: captions, timing, motion in the pixels, determinism, manifests."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import av
import numpy as np
import pytest

from vidsearch.synthetic import COLORS, DIRECTIONS, SHAPES, Scene, make_dataset, random_scenes, render_frames, write_video

ROOT = Path(__file__).resolve().parent.parent
AXIS = {"left": (0, -1), "right": (0, 1), "up": (1, -1), "down": (1, 1)}  # (0 = x / 1 = y, sign)


def centroid(frame: np.ndarray) -> np.ndarray:
    """(x, y) centre of the pixels far from the (median) background colour."""
    background = np.median(frame.reshape(-1, 3), axis=0)
    mask = np.abs(frame.astype(np.int16) - background.astype(np.int16)).max(axis=-1) > 60
    assert 0.01 < mask.mean() < 0.25, f"shape covers {mask.mean():.3f} of the frame"
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def decode(path) -> tuple[list[np.ndarray], list[float], float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, times = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.time))
        duration = float(stream.duration * stream.time_base)
    return frames, times, duration


def read_manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_scene_caption_and_vocabulary():
    assert Scene("red", "circle", "left").caption == "a red circle moving left"
    assert set(DIRECTIONS) == {"left", "right", "up", "down"}
    assert len(COLORS) == 4 and len(SHAPES) == 3
    with pytest.raises(ValueError):
        Scene("purple", "circle", "left")
    with pytest.raises(ValueError):
        Scene("red", "circle", "sideways")
    scenes = random_scenes(200, rng=np.random.default_rng(0))
    assert {s.color for s in scenes} == set(COLORS)
    assert {s.shape for s in scenes} == set(SHAPES)
    assert {s.direction for s in scenes} == set(DIRECTIONS)


def test_rows_tile_the_video_and_it_decodes_to_the_expected_frames(tmp_path):
    scenes = [Scene("red", "circle", "left"), Scene("blue", "square", "down"), Scene("yellow", "triangle", "up")]
    path = tmp_path / "v.mp4"
    rows = write_video(path, scenes, scene_seconds=2.0, fps=4.0, size=64, seed=3)
    assert [r["caption"] for r in rows] == [s.caption for s in scenes]
    assert all(r["video"] == str(path) for r in rows)
    assert [(r["start"], r["end"]) for r in rows] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]

    frames, times, duration = decode(path)
    assert len(frames) == 3 * 8
    assert frames[0].shape == (64, 64, 3)
    assert times == pytest.approx([i / 4.0 for i in range(24)])
    assert duration == pytest.approx(6.0)


def test_the_named_direction_is_in_the_decoded_pixels(tmp_path):
    scenes = [Scene(c, s, d) for c, s, d in zip(COLORS, SHAPES * 2, DIRECTIONS)]
    path = tmp_path / "v.mp4"
    size, per_scene = 96, 6
    write_video(path, scenes, scene_seconds=1.5, fps=4.0, size=size, seed=1)
    frames, _, _ = decode(path)
    assert len(frames) == len(scenes) * per_scene
    for k, scene in enumerate(scenes):
        first = centroid(frames[k * per_scene])
        last = centroid(frames[(k + 1) * per_scene - 1])
        axis, sign = AXIS[scene.direction]
        moved = (last - first) * sign
        assert moved[axis] > 0.5 * size, (scene, first, last)
        assert abs(moved[1 - axis]) < 0.05 * size, (scene, first, last)


@pytest.mark.parametrize("shape", SHAPES)
def test_every_scene_moves_most_of_the_frame_and_stays_inside(shape):
    rng = np.random.default_rng(7)
    size = 64
    for color in COLORS:
        for direction in DIRECTIONS:
            frames = render_frames(Scene(color, shape, direction), seconds=1.0, fps=3.0, size=size, rng=rng)
            assert frames.shape == (3, size, size, 3) and frames.dtype == np.uint8
            first, middle, last = (centroid(f) for f in frames)
            axis, sign = AXIS[direction]
            assert 0.55 * size < (last - first)[axis] * sign < 0.8 * size
            assert middle == pytest.approx((first + last) / 2, abs=1.0)  # constant speed


def test_start_positions_are_jittered_so_a_middle_frame_does_not_give_the_direction_away():
    rng = np.random.default_rng(11)
    size = 64

    def track(direction):
        out = []
        for _ in range(30):
            scene = Scene("green", "circle", direction)
            out.append([centroid(f) for f in render_frames(scene, seconds=1.0, fps=3.0, size=size, rng=rng)])
        return np.array(out)  # (30 scenes, 3 frames, xy)

    left, right = track("left"), track("right")
    assert left[:, 0, 0].std() > 1.0 and right[:, 0, 0].std() > 1.0  # start x varies
    assert left[:, 0, 1].max() - left[:, 0, 1].min() > 0.3 * size  # y spread across the frame
    assert left[:, 0, 0].min() > size / 2 > left[:, -1, 0].max()  # left starts right, ends left
    mid_left, mid_right = left[:, 1, 0], right[:, 1, 0]
    overlap = min(mid_left.max(), mid_right.max()) - max(mid_left.min(), mid_right.min())
    assert overlap > 0.5 * min(np.ptp(mid_left), np.ptp(mid_right))


def test_same_seed_same_dataset_other_seed_differs(tmp_path):
    kwargs = dict(videos=2, scenes_per_video=2, scene_seconds=1.0, fps=4.0, size=48)
    a = make_dataset(tmp_path / "a", seed=5, **kwargs)
    b = make_dataset(tmp_path / "b", seed=5, **kwargs)
    c = make_dataset(tmp_path / "c", seed=6, **kwargs)
    assert a.read_text() == b.read_text()
    for row in read_manifest(a):
        assert (a.parent / row["video"]).read_bytes() == (b.parent / row["video"]).read_bytes()
    assert a.read_text() != c.read_text() or any(
        (a.parent / r["video"]).read_bytes() != (c.parent / r["video"]).read_bytes() for r in read_manifest(a)
    )
    # Encoding is byte-exact too on one machine (a cheap guard: with lookahead / mb-tree, x264
    # differed in roughly 1 in 100 encodes, which 16 encodes will usually miss).
    scenes = random_scenes(4, rng=np.random.default_rng(1))
    digests = set()
    for k in range(16):
        write_video(tmp_path / f"w{k}.mp4", scenes, scene_seconds=2.0, fps=4.0, size=48, seed=4)
        digests.add((tmp_path / f"w{k}.mp4").read_bytes())
    assert len(digests) == 1
    rng1, rng2 = np.random.default_rng(9), np.random.default_rng(9)
    scene = Scene("red", "square", "up")
    one = render_frames(scene, seconds=1.0, fps=4.0, size=32, rng=rng1)
    assert np.array_equal(one, render_frames(scene, seconds=1.0, fps=4.0, size=32, rng=rng2))
    assert not np.array_equal(one, render_frames(scene, seconds=1.0, fps=4.0, size=32, rng=rng1))


def test_hard_negative_groups_share_colour_and_shape_and_differ_in_direction(tmp_path):
    manifest = make_dataset(tmp_path, videos=3, scenes_per_video=6, scene_seconds=0.5, fps=4.0, size=32, seed=2, hard_negatives=True)
    rows = read_manifest(manifest)
    assert len(rows) == 18
    by_video: dict[str, list[list[str]]] = {}
    for row in rows:
        _, color, shape, _, direction = row["caption"].split()
        by_video.setdefault(row["video"], []).append([color, shape, direction])
    assert len(by_video) == 3
    for scenes in by_video.values():
        for group in (scenes[:4], scenes[4:]):  # a full group of 4, then a partial one of 2
            assert len({(c, s) for c, s, _ in group}) == 1
            assert len({d for _, _, d in group}) == len(group)
        assert {d for _, _, d in scenes[:4]} == set(DIRECTIONS)
        assert scenes[0][:2] != scenes[4][:2]  # groups in one video use different appearances

    plain = read_manifest(make_dataset(tmp_path / "plain", videos=3, scenes_per_video=6, scene_seconds=0.5, size=32, seed=2))
    groups = [plain[i : i + 4] for i in range(0, 18, 6)]
    assert any(len({tuple(r["caption"].split()[1:3]) for r in g}) > 1 for g in groups)


def test_phrased_captions_say_each_scene_several_ways_and_train_reads_them(tmp_path):
    from vidsearch import data

    manifest = make_dataset(tmp_path, videos=2, scenes_per_video=2, scene_seconds=0.5, size=32, seed=2, phrasings=True)
    plain = read_manifest(make_dataset(tmp_path / "plain", videos=2, scenes_per_video=2, scene_seconds=0.5, size=32,
                                       seed=2))
    rows = read_manifest(manifest)
    assert [row["caption"][0] for row in rows] == [row["caption"] for row in plain]  # the caption comes first
    for row in rows:
        _, color, shape, _, direction = row["caption"][0].split()
        assert len(set(row["caption"])) == len(row["caption"]) >= 5
        assert all(color in said and shape in said and direction in said for said in row["caption"])
    pairs, problems = data.read_manifest(manifest)
    assert problems == [] and [(p.caption, *p.alternatives) for p in pairs] == [tuple(r["caption"]) for r in rows]


@pytest.mark.parametrize("manifest_name", ["pairs.jsonl", "lists/train.jsonl"])
def test_manifest_paths_are_relative_to_the_manifest_folder(tmp_path, manifest_name):
    manifest = make_dataset(
        tmp_path / "data", videos=2, scenes_per_video=2, scene_seconds=0.5, size=32, seed=0, manifest_name=manifest_name
    )
    assert manifest == tmp_path / "data" / manifest_name
    rows = read_manifest(manifest)
    assert len(rows) == 4
    for row in rows:
        assert not Path(row["video"]).is_absolute()
        resolved = (manifest.parent / row["video"]).resolve()
        assert resolved.parent == (tmp_path / "data" / "videos").resolve()
        assert len(decode(resolved)[0]) == 4  # 2 scenes x 0.5 s x 4 fps


def test_example_script_makes_a_dataset_and_documents_every_option(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_synthetic", ROOT / "examples" / "make_synthetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    help_text = module.build_parser().format_help()
    for option in ("--videos", "--scenes-per-video", "--scene-seconds", "--fps", "--size", "--seed", "--hard-negatives", "--manifest"):
        assert option in help_text
    code = module.main(
        [
            str(tmp_path / "out"),
            "--videos",
            "1",
            "--scenes-per-video",
            "4",
            "--scene-seconds",
            "0.5",
            "--size",
            "32",
            "--hard-negatives",
            "--manifest",
            "m.jsonl",
        ]
    )
    assert code == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed == tmp_path / "out" / "m.jsonl"
    assert len({r["caption"].split()[1] for r in read_manifest(printed)}) == 1

    assert module.main([str(tmp_path / "bad"), "--size", "33"]) == 2
    assert "even" in capsys.readouterr().err
