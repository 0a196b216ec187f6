"""Query features through the real CLI with a trained tiny model: moments, grouping, image and combined
queries, filters, thumbnails, the player, and the HTML report rendered by headless Chromium."""

import base64
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
from itertools import islice

import numpy as np
import pytest
from cli_helpers import run_cli, run_json

from vidsearch.frames import read_image, sample_frames
from vidsearch.thumbnails import jpeg

pytestmark = pytest.mark.slow  # every test here runs the CLI on videos it indexes

SEGMENT = 2.0  # short segments, so a scene of 8 s spans four of them


@pytest.fixture(scope="module")
def indexed(trained_tiny, synthetic, tmp_path_factory):
    """The held-out synthetic videos indexed with the trained tiny model; returns (home, scenes)."""
    folder, _ = trained_tiny
    test = synthetic[1]
    home = tmp_path_factory.mktemp("query-index")
    run_cli("index", str(test.parent / "videos"), "--model", str(folder), "--segment", str(SEGMENT), home=home)
    scenes = [json.loads(line) for line in test.read_text().splitlines()]
    for scene in scenes:
        scene["path"] = str((test.parent / scene["video"]).resolve())
    return home, scenes


def overlaps(hit, scene):
    return hit["path"] == scene["path"] and hit["start"] < scene["end"] and hit["end"] > scene["start"]


def scene_image(scene, tmp_path):
    """A JPEG of the frame in the middle of a scene, as a user would grab one."""
    middle = (scene["start"] + scene["end"]) / 2
    _, frame = next(islice(sample_frames(scene["path"], fps=1, size=128, start=middle), 1))
    path = tmp_path / "example.jpg"
    path.write_bytes(jpeg(frame))
    return path


def test_an_image_query_finds_its_scene_as_one_moment_spanning_adjacent_segments(indexed, tmp_path):
    home, scenes = indexed
    scene = scenes[5]
    hits = run_json("query", "--image", str(scene_image(scene, tmp_path)), "-k", "3", home=home)["hits"]
    best = hits[0]
    assert overlaps(best, scene), (best, scene)
    # the scene's adjacent 2-s segments merged into one moment that spans them, scored by the best
    assert best["segments"] >= 2 and best["end"] - best["start"] == pytest.approx(best["segments"] * SEGMENT)
    assert best["moment_id"] and all(h["score"] <= best["score"] for h in hits)
    # moments of one video never touch or overlap: adjacent hits would have been one moment
    for a in hits:
        for b in hits:
            if a is not b and a["path"] == b["path"]:
                assert a["end"] < b["start"] or b["end"] < a["start"]


def test_group_by_video_gives_at_most_one_moment_per_file(indexed):
    home, scenes = indexed
    files = {s["path"] for s in scenes}
    caption = scenes[0]["caption"]
    plain = run_json("query", caption, "-k", "8", home=home)["hits"]
    assert len(plain) == 8 and len({h["path"] for h in plain}) < len(plain)  # without grouping a file repeats
    grouped = run_json("query", caption, "-k", "8", "--group-by", "video", home=home)["hits"]
    assert sorted(h["path"] for h in grouped) == sorted(files)  # one each, however many were asked for
    assert grouped[0] == plain[0] and [h["score"] for h in grouped] == sorted((h["score"] for h in grouped), reverse=True)


def test_negative_terms_lower_the_scores_of_what_they_describe(indexed):
    home, scenes = indexed
    wanted, unwanted = scenes[0], next(s for s in scenes if s["caption"] != scenes[0]["caption"])
    before = run_json("query", wanted["caption"], "-k", "100", home=home)["hits"]
    after = run_json("query", wanted["caption"], "-", unwanted["caption"], "-k", "100", home=home)["hits"]

    def best_on(hits, scene):
        return max(h["score"] for h in hits if overlaps(h, scene))

    assert best_on(after, unwanted) < best_on(before, unwanted) - 0.05


def test_path_filters_and_min_score(indexed, synthetic):
    home, scenes = indexed
    caption = scenes[0]["caption"]
    only = scenes[-1]["path"]
    hits = run_json("query", caption, "-k", "5", "--path", "*" + only[-14:], home=home)["hits"]
    assert hits and {h["path"] for h in hits} == {only}
    # a glob relative to the current folder, and several of them
    relative = run_json("query", caption, "-k", "20", "--path", "videos/synth_0001.mp4", "--path", "*0002.mp4",
                        home=home, cwd=synthetic[1].parent)["hits"]
    assert {h["path"].rsplit("_", 1)[1] for h in relative} == {"0001.mp4", "0002.mp4"}
    assert run_cli("query", caption, "--path", "*.mkv", home=home).stdout.strip() == "no matches"
    every = run_json("query", caption, "-k", "50", home=home)["hits"]
    floor = sorted(h["score"] for h in every)[len(every) // 2]
    strong = run_json("query", caption, "-k", "50", "--min-score", str(floor), home=home)["hits"]
    assert 0 < len(strong) < len(every) and all(h["score"] >= floor for h in strong)


def test_thumbnails_and_open_with_and_without_a_player(indexed, tmp_path):
    home, scenes = indexed
    result = run_json("query", scenes[2]["caption"], "-k", "2", "--thumbnails", str(tmp_path / "thumbs"), home=home)
    for hit in result["hits"]:
        assert hit["thumbnail"] == str(tmp_path / "thumbs" / f"{hit['moment_id']}.jpg")
        assert read_image(hit["thumbnail"], size=64).std() > 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    proc = run_cli("query", scenes[2]["caption"], "-k", "2", "--open", "2", home=home, env={"PATH": str(bin_dir)})
    second = result["hits"][1]
    assert f"mpv --start={second['start']:.2f} -- {second['path']}" in proc.stderr
    mpv = bin_dir / "mpv"
    mpv.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/played\necho Playing: \"$3\"\n")  # mpv talks on stdout
    mpv.chmod(mpv.stat().st_mode | stat.S_IEXEC)
    opened = run_json("query", scenes[2]["caption"], "-k", "2", "--open", "1", home=home, env={"PATH": str(bin_dir)})
    # the player's output did not get into the JSON
    assert opened["hits"] == [{k: v for k, v in h.items() if k != "thumbnail"} for h in result["hits"]]
    first = result["hits"][0]
    assert (tmp_path / "played").read_text().split() == [f"--start={first['start']:.2f}", "--", first["path"]]


@pytest.mark.parametrize("args, said", [
    (["query", "   "], "empty"),
    (["query", "--", "- dogs"], "only negative"),  # -- lets a query start with -
    (["query", "dogs", "--open", "3", "-k", "2"], "--open"),
])
def test_bad_queries_are_one_line_usage_errors(indexed, args, said):
    home, _ = indexed
    proc = run_cli(*args, home=home, check=2)
    assert proc.stderr.startswith("error: ") and said in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_an_index_from_a_newer_version_is_refused_in_one_line(indexed, tmp_path):
    home, _ = indexed
    newer = tmp_path / "newer"
    shutil.copytree(home, newer)
    with sqlite3.connect(newer / "vidsearch.db") as db:
        db.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                   "VALUES ('vidsearch', 'm999_future', '2030-01-01')")
    proc = run_cli("query", "dogs", home=newer, check=1)
    assert "newer vidsearch" in proc.stderr and len(proc.stderr.splitlines()) == 1


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--allow-file-access-from-files"]

# Appended to a copy of the report: once the page has loaded, write what the browser sees into the title.
PROBE = """<script>window.addEventListener("load", () => { const images = [...document.images];
document.title = "PROBE" + JSON.stringify({cards: document.querySelectorAll("article.card").length, images: images.length,
decoded: images.filter(i => i.complete && i.naturalWidth > 0).length, videos: [...document.querySelectorAll("video")]
.map(v => v.getAttribute("src"))}); });</script>"""


def chromium(tmp_path, *args):
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("VIDSEARCH_REQUIRE_CHROMIUM"),
                    reason="Chromium is not installed (.ci/setup installs it, and .ci/test requires it)")
def test_the_html_report_renders_in_chromium(indexed, tmp_path):
    assert CHROMIUM, "Chromium is required here (VIDSEARCH_REQUIRE_CHROMIUM) but not installed"
    home, scenes = indexed
    report = tmp_path / "report.html"
    hits = run_json("query", scenes[1]["caption"], "-k", "4", "--html", str(report), home=home)["hits"]
    assert len(hits) == 4
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()).stdout
    seen = json.loads(re.search(r"<title>PROBE(.*?)</title>", dom).group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert seen["cards"] == len(hits) and seen["images"] == 5 * len(hits) and seen["decoded"] == seen["images"]
    assert [src.split("#t=")[1] for src in seen["videos"]] == [f"{h['start']:.2f},{h['end']:.2f}" for h in hits]
    # the same data URIs decode outside the browser too
    for data in re.findall(r'src="data:image/jpeg;base64,([^"]+)"', report.read_text())[:3]:
        (tmp_path / "thumb.jpg").write_bytes(base64.b64decode(data))
        assert read_image(tmp_path / "thumb.jpg", size=32).shape == (32, 32, 3)
    shot = tmp_path / "shot.png"
    chromium(tmp_path, "--window-size=1000,800", f"--screenshot={shot}", report.as_uri())
    pixels = read_image(shot, size=256).astype(np.float32)
    assert pixels.std() > 20, "the screenshot is blank"
    assert (np.abs(np.diff(pixels, axis=0)).mean(axis=2) > 30).mean() > 0.01  # edges: text and thumbnails drew
