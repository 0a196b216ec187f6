"""Result presentation: the table, the JSON, JPEG thumbnails, the HTML cards and the player command."""

import base64
import re
import stat

import numpy as np
import pytest
from media import level, measured_level, write_video

from vidsearch.frames import read_image
from vidsearch.player import play, player_command
from vidsearch.report import as_json, clock, html_report, table
from vidsearch.search import Moment
from vidsearch.text_search import TextMatch
from vidsearch.thumbnails import jpeg, moment_frames, write_thumbnails


def test_clock_and_table():
    assert [clock(s) for s in (0, 59.6, 61, 3600, 3725)] == ["0:00", "1:00", "1:01", "1:00:00", "1:02:05"]
    assert [clock(s, tenths=True) for s in (0, 0.04, 3.26, 59.96, 3725.4)] == ["0:00.0", "0:00.0", "0:03.3", "1:00.0",
                                                                              "1:02:05.4"]
    moments = [Moment(1, "/v/a.mp4", 12, 20, 0.3123, 2), Moment(2, "/v/b.mp4", 3600, 3604, 0.25, 1),
               Moment(3, "/v/one frame.mp4", 0.0, 0.04, 0.2, 1), Moment(4, "/v/c.mp4", 0.0, 0.4, 0.1, 1),
               Moment(5, "/v/d.mp4", 30.0, 30.4, 0.05, 1), Moment(6, "/v/e.mp4", 5.0, 9.96, 0.01, 1)]
    lines = table(moments).splitlines()
    assert lines[0].split() == ["#", "score", "start-end", "file"]
    assert lines[1].split() == ["1", "0.312", "0:12-0:20", "/v/a.mp4"]
    assert lines[2].split() == ["2", "0.250", "1:00:00-1:00:04", "/v/b.mp4"]
    # Under 10 s, or less than a second long: tenths, rounded outward so that no moment looks empty.
    assert lines[3].split() == ["3", "0.200", "0:00.0-0:00.1", "/v/one", "frame.mp4"]
    assert lines[4].split() == ["4", "0.100", "0:00.0-0:00.4", "/v/c.mp4"]
    assert lines[5].split() == ["5", "0.050", "0:30.0-0:30.4", "/v/d.mp4"]
    assert lines[6].split() == ["6", "0.010", "0:05.0-0:10.0", "/v/e.mp4"]
    assert len({line.index("file" if i == 0 else "/v/") for i, line in enumerate(lines)}) == 1  # the file column lines up
    assert table([]) == "no matches"


def test_json_adds_moment_id_and_a_thumbnail_only_when_made():
    moments = [Moment(3, "/v/a.mp4", 12.0, 20.0, 0.31, 2), Moment(4, "/v/b.mp4", 0.0, 4.0, 0.2, 1)]
    result = as_json("dogs", moments, {"3-12000-20000": "/t/3-12000-20000.jpg"})
    assert result == {"query": "dogs", "hits": [
        {"path": "/v/a.mp4", "start": 12.0, "end": 20.0, "score": 0.31, "segments": 2, "moment_id": "3-12000-20000",
         "thumbnail": "/t/3-12000-20000.jpg"},
        {"path": "/v/b.mp4", "start": 0.0, "end": 4.0, "score": 0.2, "segments": 1, "moment_id": "4-0-4000"}]}


def said(line, marks, source="sidecar:a.srt"):
    return TextMatch(3, "/v/a.mp4", 13.0, 15.5, 4.2, line, marks, source, "en")


def test_a_moment_with_a_matching_line_shows_it_marked_under_its_row():
    text = said("we are chopping\nonions  with a knife", ((7, 22), (31, 36)))
    moments = [Moment(3, "/v/a.mp4", 12.0, 20.0, 0.0323, 2, text=text, visual_score=0.31, text_score=4.2),
               Moment(4, "/v/b.mp4", 0.0, 4.0, 0.0164, 1, visual_score=0.3)]
    lines = table(moments).splitlines()
    assert lines[1].split() == ["1", "0.032", "0:12-0:20", "/v/a.mp4"]
    assert lines[2] == " " * lines[1].index("/v/") + '"we are *chopping onions* with a *knife*" (sidecar:a.srt)'
    assert lines[3].split() == ["2", "0.016", "0:00.0-0:04.0", "/v/b.mp4"] and len(lines) == 4


def test_json_adds_the_line_and_the_scores_when_there_are_some():
    text = said("chopping onions", ((0, 8), (9, 15)))
    moments = [Moment(3, "/v/a.mp4", 12.0, 20.0, 0.0323, 2, text=text, visual_score=0.312345678, text_score=4.2),
               Moment(5, "/v/c.mp4", 13.0, 15.5, 4.2, 0, text=said("x", ()), text_score=4.2)]
    first, second = as_json("onions", moments, {})["hits"]
    assert first == {"path": "/v/a.mp4", "start": 12.0, "end": 20.0, "score": 0.0323, "segments": 2, "moment_id": "3-12000-20000",
                     "visual_score": 0.31235, "text_score": 4.2, "text": {
                         "line": "chopping onions", "marks": [[0, 8], [9, 15]], "source": "sidecar:a.srt", "language": "en",
                         "start": 13.0, "end": 15.5}}
    assert "visual_score" not in second and second["segments"] == 0 and second["text"]["marks"] == []


def test_html_captions_a_card_with_its_line_marked_and_escaped(tmp_path):
    text = said("<b>chop</b> & onions", ((3, 7), (14, 20)), source="sidecar:<x>.srt")
    moments = [Moment(1, str(tmp_path / "gone.mp4"), 12.0, 20.0, 0.03, 2, text=text),
               Moment(2, str(tmp_path / "gone.mp4"), 0.0, 4.0, 0.02, 1)]
    page = html_report("q", moments, index="/idx", model="tiny", strip=2, size=32)
    first, second = page.split('<article class="card"')[1:]
    assert ('<p class="said">“&lt;b&gt;<mark>chop</mark>&lt;/b&gt; &amp; <mark>onions</mark>”'
            '<span class="source">sidecar:&lt;x&gt;.srt</span></p>') in first
    assert 'class="said"' not in second


def test_jpeg_round_trips_through_the_decoder(tmp_path):
    image = np.zeros((64, 96, 3), np.uint8)
    image[:, :48] = (220, 30, 30)
    image[:, 48:] = (30, 30, 220)
    data = jpeg(image)
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    (tmp_path / "x.jpg").write_bytes(data)
    back = read_image(tmp_path / "x.jpg", size=64).astype(int)  # centre crop of the 96-wide image
    assert abs(back[32, 8] - (220, 30, 30)).max() < 25 and abs(back[32, 56] - (30, 30, 220)).max() < 25


def test_moment_frames_spread_over_the_moment(tmp_path):
    video = write_video(tmp_path / "v.mp4", seconds=20, fps=10)
    frames = moment_frames(str(video), 6.0, 14.0, count=4, size=32)
    assert [round(t) for t, _ in frames] == [6, 8, 10, 12] and frames[0][1].shape == (32, 32, 3)


def thumbnail_level(path: str) -> float:
    return measured_level(read_image(path, size=48))


def test_thumbnails_are_written_per_moment_and_a_missing_file_is_reported(tmp_path):
    video = write_video(tmp_path / "v.mp4", seconds=10, fps=10)
    moments = [Moment(1, str(video), 2.0, 6.0, 0.5, 1), Moment(2, str(tmp_path / "gone.mp4"), 0.0, 4.0, 0.4, 1)]
    written, problems = write_thumbnails(moments, tmp_path / "thumbs", size=48)
    assert list(written) == ["1-2000-6000"] and read_image(written["1-2000-6000"], size=48).shape == (48, 48, 3)
    assert thumbnail_level(written["1-2000-6000"]) == pytest.approx(level(40), abs=12)  # the frame at 4.0 s
    assert len(problems) == 1 and "gone.mp4: file not found" in problems[0]


@pytest.mark.parametrize("seconds, start, end, frame", [
    (0.1, 0.0, 0.1, 0), (0.1, 0.0, 1.0, 0),  # one frame; a moment as long as the frame, or as a 1 s segment
    (0.5, 0.0, 0.5, 2), (0.5, 0.0, 1.0, 4), (0.5, 0.3, 0.4, 3)])  # half a second: the frame on screen at the middle
def test_every_moment_of_a_tiny_video_gets_a_thumbnail(tmp_path, seconds, start, end, frame):
    video = write_video(tmp_path / "tiny.mp4", seconds=seconds, fps=10)
    moment = Moment(1, str(video), start, end, 0.5, 1)
    written, problems = write_thumbnails([moment], tmp_path / "thumbs", size=48)
    assert problems == [] and as_json("q", [moment], written)["hits"][0]["thumbnail"] == written[moment.moment_id]
    assert thumbnail_level(written[moment.moment_id]) == pytest.approx(level(frame), abs=12)


def test_html_report_has_a_card_per_moment_with_decodable_thumbnails_and_a_timed_video(tmp_path):
    video = write_video(tmp_path / "my clip.mp4", seconds=12, fps=10)
    moments = [Moment(1, str(video), 4.0, 8.0, 0.5, 1), Moment(1, str(video), 0.0, 2.0, 0.4, 1),
               Moment(2, str(tmp_path / "gone.mp4"), 0.0, 4.0, 0.3, 1)]
    page = html_report("a <b> query", moments, index="/idx", model="tiny", strip=3, size=40)
    assert page.count('<article class="card"') == 3 and "a &lt;b&gt; query" in page
    assert 'src="file://' + str(tmp_path) + '/my%20clip.mp4#t=4.00,8.00"' in page
    images = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(images) == 6  # three frames spread over each moment, however long
    for i, data in enumerate(images):
        (tmp_path / f"{i}.jpg").write_bytes(base64.b64decode(data))
        assert read_image(tmp_path / f"{i}.jpg", size=40).shape == (40, 40, 3)
    assert "no preview: file not found" in page


def captions(page: str) -> list[list[str]]:
    """Each card's strip labels."""
    return [re.findall(r"<figcaption>([^<]*)</figcaption>", card) for card in page.split('<article class="card"')[1:]]


def test_strip_labels_show_tenths_when_seconds_would_repeat(tmp_path):
    video = write_video(tmp_path / "v.mp4", seconds=40, fps=10, size=(64, 48))
    one_frame = write_video(tmp_path / "one.mp4", seconds=0.1, fps=10, size=(64, 48))
    moments = [Moment(1, str(video), 0.0, 1.0, 0.5, 1), Moment(1, str(video), 30.0, 32.0, 0.4, 1),
               Moment(1, str(video), 20.0, 28.0, 0.3, 1), Moment(2, str(one_frame), 0.0, 1.0, 0.2, 1)]
    page = html_report("q", moments, index="/idx", model="tiny", strip=4, size=32)
    assert captions(page) == [["0:00.0", "0:00.3", "0:00.5", "0:00.8"], ["0:30.0", "0:30.5", "0:31.0", "0:31.5"],
                              ["0:20", "0:22", "0:24", "0:26"], ["0:00.0"]]
    assert re.findall(r'<span class="when">([^<]*)</span>', page) == ["0:00.0–0:01.0", "0:30–0:32", "0:20–0:28",
                                                                      "0:00.0–0:01.0"]


def test_player_is_mpv_then_ffplay_else_the_command_is_returned(tmp_path, monkeypatch):
    assert player_command("mpv", "/v/a b.mp4", 12.5) == ["mpv", "--start=12.50", "--", "/v/a b.mp4"]
    assert player_command("ffplay", "/v/a.mp4", 3) == ["ffplay", "-autoexit", "-ss", "3.00", "/v/a.mp4"]
    monkeypatch.setenv("PATH", str(tmp_path))
    assert play("/v/a b.mp4", 12.5) == "mpv --start=12.50 -- '/v/a b.mp4'"
    fake = tmp_path / "ffplay"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/played\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    assert play("/v/a.mp4", 3) is None
    assert (tmp_path / "played").read_text().split() == ["-autoexit", "-ss", "3.00", "/v/a.mp4"]
