"""Result presentation: the table, the JSON, JPEG thumbnails, the HTML cards and the player command."""

import base64
import re
import stat

import numpy as np
from media import write_video

from vidsearch.decode import read_image
from vidsearch.player import play, player_command
from vidsearch.report import as_json, clock, html_report, table
from vidsearch.search import Moment
from vidsearch.thumbnails import jpeg, moment_frames, write_thumbnails


def test_clock_and_table():
    assert [clock(s) for s in (0, 59.6, 61, 3600, 3725)] == ["0:00", "1:00", "1:01", "1:00:00", "1:02:05"]
    lines = table([Moment(1, "/v/a.mp4", 12, 20, 0.3123, 2), Moment(2, "/v/b.mp4", 3600, 3604, 0.25, 1)]).splitlines()
    assert lines[0].split() == ["#", "score", "start-end", "file"]
    assert lines[1].split() == ["1", "0.312", "0:12-0:20", "/v/a.mp4"]
    assert lines[2].split() == ["2", "0.250", "1:00:00-1:00:04", "/v/b.mp4"]
    assert table([]) == "no matches"


def test_json_adds_moment_id_and_a_thumbnail_only_when_made():
    moments = [Moment(3, "/v/a.mp4", 12.0, 20.0, 0.31, 2), Moment(4, "/v/b.mp4", 0.0, 4.0, 0.2, 1)]
    result = as_json("dogs", moments, {"3-12000-20000": "/t/3-12000-20000.jpg"})
    assert result == {"query": "dogs", "hits": [
        {"path": "/v/a.mp4", "start": 12.0, "end": 20.0, "score": 0.31, "segments": 2, "moment_id": "3-12000-20000",
         "thumbnail": "/t/3-12000-20000.jpg"},
        {"path": "/v/b.mp4", "start": 0.0, "end": 4.0, "score": 0.2, "segments": 1, "moment_id": "4-0-4000"}]}


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


def test_thumbnails_are_written_per_moment_and_a_missing_file_is_reported(tmp_path):
    video = write_video(tmp_path / "v.mp4", seconds=10, fps=10)
    moments = [Moment(1, str(video), 2.0, 6.0, 0.5, 1), Moment(2, str(tmp_path / "gone.mp4"), 0.0, 4.0, 0.4, 1)]
    written, problems = write_thumbnails(moments, tmp_path / "thumbs", size=48)
    assert list(written) == ["1-2000-6000"] and read_image(written["1-2000-6000"], size=48).shape == (48, 48, 3)
    assert len(problems) == 1 and "gone.mp4: file not found" in problems[0]


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
