"""Text in the index. End to end through the real CLI: `vidsearch index` reads the subtitle streams, sidecar files
and (with --speech pocketsphinx) the speech of videos the tests write, `vidsearch query --mode speech|visual|both`
finds it, and it stays right through kill -9, sidecar edits, renames, removal, broken sources and --speech changes.
Fast: text_index.py's pure logic (engine names, what to read again, source rows, sidecar stamps)."""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_helpers import run_cli, run_json
from index_helpers import snapshot as visual_snapshot
from index_helpers import text_snapshot
from media import add_speech, speak, write_garbled_audio_video, write_speech_video, write_subtitled_video, write_video

from vidsearch.db import VideoTextRecord
from vidsearch.errors import UsageError
from vidsearch.text_index import KINDS, Sidecars, TextReader, kinds_to_read, record, speech_name, stamp_of, text_workers
from vidsearch.text_sources import TextLine, TextNote, TextProblem, VideoText

TINY = ("--model", "tiny", "--device", "cpu")
SPEECH = ("--speech", "pocketsphinx")
KILL_AT = "VIDSEARCH_TEST_KILL_AT"
INDEXED_WITHOUT_IT = "(the video is indexed without it)"


# --- text_index.py: pure logic (fast) ---------------------------------------------------------------------------


@pytest.mark.parametrize("value, name", [
    ("pocketsphinx", "pocketsphinx"), (" PocketSphinx ", "pocketsphinx"), ("whisper", "whisper-small"),
    ("whisper-tiny", "whisper-tiny"), ("Whisper-Large-V3", "whisper-large-v3"), ("off", None), ("OFF", None)])
def test_speech_name_is_the_canonical_engine_or_none_for_off(value, name):
    assert speech_name(value) == name


@pytest.mark.parametrize("value", ["kaldi", "whisper-", "", "sphinx", "offline"])
def test_speech_name_refuses_anything_else_and_names_the_choices(value):
    with pytest.raises(UsageError, match=r"pocketsphinx, whisper.*whisper-SIZE.* or off"):
        speech_name(value)


STAMP = {"sidecars": [["x.en.srt", 120, 1_700_000_000_000_000_000]], "speech": "pocketsphinx"}


def stored(stamp, *sources):
    return VideoTextRecord([], list(sources), stamp)


def test_kinds_to_read_everything_when_the_text_was_never_read():
    assert kinds_to_read(None, STAMP) == set(KINDS) == {"embedded", "sidecar", "speech"}
    assert kinds_to_read(stored({}), STAMP) == set(KINDS)  # recorded before text was read (no stamp)


@pytest.mark.parametrize("now, kinds", [
    (STAMP, set()),
    ({**STAMP, "sidecars": [["x.en.srt", 121, 1_700_000_000_000_000_000]]}, {"sidecar"}),  # edited: size
    ({**STAMP, "sidecars": [["x.en.srt", 120, 1_700_000_000_000_000_001]]}, {"sidecar"}),  # edited: time
    ({**STAMP, "sidecars": STAMP["sidecars"] + [["x.fr.srt", 9, 1]]}, {"sidecar"}),  # one added
    ({**STAMP, "sidecars": []}, {"sidecar"}),  # deleted
    ({**STAMP, "speech": None}, {"speech"}),  # --speech off
    ({**STAMP, "speech": "whisper-small"}, {"speech"}),  # another engine
    ({"sidecars": [], "speech": None}, {"sidecar", "speech"}),
], ids=["same", "size", "time", "added", "deleted", "speech-off", "other-engine", "both"])
def test_kinds_to_read_only_what_changed(now, kinds):
    assert kinds_to_read(stored(STAMP, ("sidecar:x.en.srt", "en", 3, None, None)), now) == kinds


def test_retry_failed_reads_again_only_the_kinds_that_failed():
    failed = stored(STAMP,
                    ("embedded:1", "eng", 4, "2 subtitle packets do not decode", None),
                    ("sidecar:x.en.srt", "en", 3, None, None),
                    ("sidecar:x.fr.srt", None, 0, "not a subtitle file", None),
                    ("speech:pocketsphinx", None, 0, None, "no audio track"))  # a note is not a failure
    assert kinds_to_read(failed, STAMP) == set()
    assert kinds_to_read(failed, STAMP, retry_failed=True) == {"embedded", "sidecar"}
    assert kinds_to_read(stored(STAMP, ("sidecar:x.en.srt", "en", 3, None, None)), STAMP, retry_failed=True) == set()
    # a whole kind that failed (the file would not open, the folder could not be listed) is a source of its own
    assert kinds_to_read(stored(STAMP, ("embedded", None, 0, "Invalid data", None)), STAMP, retry_failed=True) == {"embedded"}
    # with a changed stamp too, both count
    assert kinds_to_read(failed, {**STAMP, "speech": None}, retry_failed=True) == {"embedded", "sidecar", "speech"}


def test_record_gives_one_row_per_source_with_its_lines_language_problem_and_note():
    lines = [TextLine(0.5, 1.0, "first", "embedded:1", "eng"), TextLine(3.0, 3.5, "last", "embedded:1", "eng"),
             TextLine(1.0, 2.0, "hello", "sidecar:x.en.srt", "en"), TextLine(2.0, 4.0, "spoken words", "speech:pocketsphinx", "en")]
    text = VideoText(lines=lines,
                     problems=[TextProblem("embedded:1", "1 subtitle packet does not decode"),
                               TextProblem("sidecar:x.fr.srt", "not a subtitle file")],
                     notes=[TextNote("embedded:2", "bitmap subtitles (dvd_subtitle) cannot be read as text; skipped")])
    stamp = {"sidecars": [["x.en.srt", 1, 2], ["x.fr.srt", 3, 4]], "speech": "pocketsphinx"}
    kept = record(text, stamp)
    assert kept.lines == lines and kept.stamp == stamp
    assert sorted(kept.sources) == [
        ("embedded:1", "eng", 2, "1 subtitle packet does not decode", None),  # damaged in part: its lines and the problem
        ("embedded:2", None, 0, None, "bitmap subtitles (dvd_subtitle) cannot be read as text; skipped"),
        ("sidecar:x.en.srt", "en", 1, None, None),
        ("sidecar:x.fr.srt", None, 0, "not a subtitle file", None),
        ("speech:pocketsphinx", "en", 1, None, None),
    ]
    assert record(VideoText(), stamp) == VideoTextRecord([], [], stamp)


def test_pocketsphinx_reads_files_side_by_side_one_worker_per_core(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert text_workers("pocketsphinx") == 4 and TextReader("pocketsphinx").workers == 4
    assert text_workers(None) == text_workers("whisper-small") == 1  # subtitles are quick; whisper has its threads
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert text_workers("pocketsphinx") == 1


def test_texts_read_side_by_side_come_back_to_their_own_files(tmp_path):
    said = {"fox.mp4": "the quick brown fox", "dog.mp4": "a lazy dog sleeps", "cat.mp4": "yellow cat"}
    videos = [write_speech_video(tmp_path / name, speak(words), offset=0.3, seconds=2.5) for name, words in said.items()]
    for video in videos:
        video.with_suffix(".srt").write_text(f"1\n00:00:00,100 --> 00:00:01,000\n{video.stem} subtitle\n")
    reader = TextReader("pocketsphinx")
    assert reader.workers >= 2 or os.cpu_count() == 1
    futures = [reader.submit(video, KINDS) for video in videos]
    for video, future in zip(videos, futures):
        text = future.result()
        assert [line.text for line in text.lines if line.source.startswith("sidecar")] == [f"{video.stem} subtitle"]
        assert any(line.source == "speech:pocketsphinx" for line in text.lines)
    reader.close()


def test_sidecar_stamps_list_each_folder_once_and_look_at_each_file_every_time(tmp_path, monkeypatch):
    for name in ("a.mp4", "b.mp4", "ab.srt", "a.part2.srt", "a.srt.bak"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "a.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nhello\n")
    (tmp_path / "a.en.vtt").write_text("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nhi\n")
    (tmp_path / "b.ass").write_text("[Script Info]\n")
    listed = []
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: listed.append(Path(path)) or scandir(path))

    sidecars = Sidecars()
    first = sidecars.stamp(tmp_path / "a.mp4")
    srt = (tmp_path / "a.srt").stat()
    assert first == [["a.en.vtt", (tmp_path / "a.en.vtt").stat().st_size, (tmp_path / "a.en.vtt").stat().st_mtime_ns],
                     ["a.srt", srt.st_size, srt.st_mtime_ns]]
    assert [name for name, _, _ in sidecars.stamp(tmp_path / "b.mp4")] == ["b.ass"]
    assert listed == [tmp_path]  # one listing for the folder, however many videos it holds

    # Each file's size and time are looked at every time; the listing is kept, so a file added during a run is
    # seen by the next run, and one deleted during it gets a stamp no file has.
    (tmp_path / "a.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nhello again\n")
    (tmp_path / "a.fr.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nbonjour\n")
    (tmp_path / "a.en.vtt").unlink()
    again = sidecars.stamp(tmp_path / "a.mp4")
    srt = (tmp_path / "a.srt").stat()
    assert again == [["a.en.vtt", -1, 0], ["a.srt", srt.st_size, srt.st_mtime_ns]] and again != first
    assert listed == [tmp_path]
    assert [name for name, _, _ in Sidecars().stamp(tmp_path / "a.mp4")] == ["a.fr.srt", "a.srt"]
    assert stamp_of(tmp_path / "b.mp4", "pocketsphinx", sidecars) == {
        "sidecars": [["b.ass", (tmp_path / "b.ass").stat().st_size, (tmp_path / "b.ass").stat().st_mtime_ns]],
        "speech": "pocketsphinx"}


def test_a_folder_that_cannot_be_listed_is_a_stamp_of_its_own():
    assert Sidecars().stamp(Path("/nonexistent-folder/x.mp4")) == [["", -1, errno.ENOENT]]


# --- end to end: a library of every text source -----------------------------------------------------------------


@dataclass(frozen=True)
class Phrase:
    """What a video of the library says or shows as text, when, and how a query finds it."""

    video: str  # file name in the library
    query: str
    start: float
    end: float
    source: str  # the source its line must come from
    language: str | None
    line: str | None = None  # the exact line, for subtitles (speech recognition gets only some words right)


FOX = "the quick brown fox jumps over the lazy dog"
LIGHTS = "please remember to turn off the lights when you leave the office"
DOCTOR = "the doctor told him to drink more water and get some rest"
SIDECARS = {  # file name -> (video seconds, cue start, cue end, its text): each phrase of its own words
    "lighthouse.srt": (3.0, 1.0, 2.5, "1\n00:00:01,000 --> 00:00:02,500\nthe lighthouse keeper waved\n"),
    "volcano.vtt": (4.0, 2.0, 3.5, "WEBVTT\n\n00:00:02.000 --> 00:00:03.500\nvolcano eruption warning\n"),
    "penguins.en.srt": (5.0, 0.5, 2.0, "1\n00:00:00,500 --> 00:00:02,000\npenguins march across the ice\n"),
}
BAD = {  # the library's broken text sources: video -> the source that fails
    "junk.mp4": "sidecar:junk.srt",
    "damaged.mkv": "embedded:1",
    "noisy.mkv": "speech:pocketsphinx",
}


@dataclass(frozen=True)
class Library:
    folder: Path
    home: Path  # indexed once, with --speech pocketsphinx: the clean run
    phrases: dict[str, Phrase]
    summary: dict
    stderr: list[str]

    def path(self, name: str) -> str:
        return str(self.folder / name)


def write_library(folder: Path) -> dict[str, Phrase]:
    """Twelve short videos: speech in mp4, mkv and webm; SRT, ASS and mov_text subtitle streams; .srt, .vtt and
    .en.srt sidecars; and three broken sources (a binary .srt, undecodable subtitle packets, garbled audio)."""
    phrases = {}
    for name, said, words, offset in (("fox.mp4", FOX, "brown fox", 1.5), ("lights.mkv", LIGHTS, "lights office", 1.0),
                                      ("doctor.webm", DOCTOR, "doctor water", 1.0)):
        speech = speak(said)
        spoken = len(speech) / 48000
        write_speech_video(folder / name, speech, offset=offset, seconds=round(offset + spoken + 0.5, 1))
        phrases[name] = Phrase(name, words, offset, offset + spoken, "speech:pocketsphinx", "en")
    for name, codec, language, (start, end, text), line in (
        ("zebra.mkv", "subrip", "eng", (1.0, 2.5, "a zebra crossed the river"), "a zebra crossed the river"),
        ("violin.mkv", "ass", None, (1.5, 3.0, "{\\i1}violin{\\i0} concert\\Ntonight"), "violin concert tonight"),
        ("pineapple.mp4", "mov_text", None, (0.5, 2.0, "pineapple pizza party"), "pineapple pizza party"),
    ):
        write_subtitled_video(folder / name, [(start, end, text)], codec=codec, language=language)
        phrases[name] = Phrase(name, name.split(".")[0], start, end, "embedded:1", language, line)
    for sidecar, (seconds, start, end, content) in SIDECARS.items():
        stem = sidecar.split(".")[0]
        write_video(folder / f"{stem}.mp4", seconds=seconds, fps=5, size=(96, 64))
        (folder / sidecar).write_text(content)
        line = content.strip().splitlines()[-1]
        phrases[f"{stem}.mp4"] = Phrase(f"{stem}.mp4", stem, start, end, f"sidecar:{sidecar}", "en" if ".en." in sidecar else None, line)
    write_video(folder / "junk.mp4", seconds=3.5, fps=5, size=(96, 64))
    (folder / "junk.srt").write_bytes(b"\x00\x01\x02\xff binary junk \x00" * 20)
    latin1 = "caf\xe9 au lait".encode("latin-1")  # FFmpeg takes subtitle text as UTF-8 only: this packet does not decode
    write_subtitled_video(folder / "damaged.mkv", [(0.5, 1.0, "first marmot"), (1.5, 2.0, latin1), (3.0, 3.5, "last marmot")])
    write_garbled_audio_video(folder / "noisy.mkv", seconds=4.0)
    return phrases


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> Library:
    folder = tmp_path_factory.mktemp("text-library")
    phrases = write_library(folder)
    home = tmp_path_factory.mktemp("text-library-index")
    proc = run_cli("index", str(folder), *TINY, *SPEECH, "--json", home=home)
    return Library(folder, home, phrases, stdout_json(proc), proc.stderr.splitlines())


def stdout_json(proc) -> dict:
    return json.loads(proc.stdout)


def query(home: Path, *words: str, mode: str, k: int = 10, extra: tuple[str, ...] = ()) -> list[dict]:
    return run_json("query", *words, "--mode", mode, "-k", str(k), *extra, home=home)["hits"]


def overlaps(hit: dict, phrase: Phrase) -> bool:
    return hit["start"] < phrase.end and hit["end"] > phrase.start


def snapshot(home: Path) -> tuple[list, list, list, list]:
    """Videos, segments (with vectors), transcript lines and text sources: everything the index holds."""
    return visual_snapshot(home) + text_snapshot(home)


def copy_index(home: Path, to: Path) -> Path:
    """A copy of a closed index folder (its database, FAISS file and lock file): the same index at another place."""
    shutil.copytree(home, to)
    return to


def text_failed(stderr: list[str]) -> list[str]:
    return [line for line in stderr if line.startswith("text failed:")]


@pytest.mark.slow
@pytest.mark.parametrize("video", ["fox.mp4", "lights.mkv", "doctor.webm", "zebra.mkv", "violin.mkv", "pineapple.mp4",
                                   "lighthouse.mp4", "volcano.mp4", "penguins.mp4"])
def test_a_spoken_or_subtitled_phrase_finds_its_video_at_its_time(lib, video):
    phrase = lib.phrases[video]
    hits = query(lib.home, phrase.query, mode="speech")
    assert hits, f"{phrase.query!r} found nothing"
    best = hits[0]
    assert best["path"] == lib.path(video), hits
    assert {hit["path"] for hit in hits} == {lib.path(video)}, "another video's lines match words only this one has"
    assert overlaps(best, phrase), (best, phrase)
    text = best["text"]
    assert (text["source"], text["language"]) == (phrase.source, phrase.language)
    assert (text["start"], text["end"]) == (best["start"], best["end"])  # a line alone is its own moment
    marked = {text["line"][begin:end].lower() for begin, end in text["marks"]}
    assert marked and marked <= set(phrase.query.split()), (text, phrase.query)
    if phrase.line is None:  # speech: the line starts where the voice does, give or take the recogniser's frames
        assert abs(text["start"] - phrase.start) < 0.5 and text["end"] < phrase.end + 0.5, (text, phrase)
    else:
        assert text["line"] == phrase.line
        assert (text["start"], text["end"]) == pytest.approx((phrase.start, phrase.end), abs=0.01)


@pytest.mark.slow
def test_mode_both_finds_every_phrase_with_its_line(lib):
    phrases = [p for p in lib.phrases.values()]
    hits = query(lib.home, " ".join(p.query for p in phrases), mode="both", k=40)
    for phrase in phrases:
        with_text = [h for h in hits if h["path"] == lib.path(phrase.video) and h.get("text")]
        assert with_text, f"--mode both lost {phrase.video}'s line"
        assert with_text[0]["text"]["source"] == phrase.source and overlaps(with_text[0], phrase), with_text[0]
        assert "visual_score" in with_text[0], "the line did not join its video's visual moment"


@pytest.mark.slow
def test_a_broken_text_source_is_one_line_and_its_video_is_still_indexed(lib):
    failed = text_failed(lib.stderr)
    assert len(failed) == len(BAD), "\n".join(lib.stderr)
    for video, source in BAD.items():
        mine = [line for line in failed if line.startswith(f"text failed: {lib.path(video)}: {source}: ")]
        assert len(mine) == 1 and mine[0].endswith(INDEXED_WITHOUT_IT), (video, failed)
    reported = sorted((f["path"], f["reason"]) for f in lib.summary["text_failures"])
    assert [(path, reason.startswith(f"{BAD[Path(path).name]}: ")) for path, reason in reported] == \
        [(lib.path(video), True) for video in sorted(BAD)], reported
    assert not [line for line in lib.stderr if line.startswith(("failed:", "partial:", "error:"))], lib.stderr
    assert lib.summary["indexed"] == 12 and lib.summary["failed"] == 0 and lib.summary["partial"] == 0
    # every video is there to a visual query, the broken ones too
    seen = {hit["path"] for hit in query(lib.home, "a grey picture", mode="visual", k=50, extra=("--group-by", "video"))}
    assert {lib.path(video) for video in BAD} <= seen
    assert len(seen) == 12
    # the lines around a damaged packet are kept
    around = query(lib.home, "marmot", mode="speech")
    assert sorted((h["path"], h["text"]["line"]) for h in around) == [(lib.path("damaged.mkv"), "first marmot"),
                                                                      (lib.path("damaged.mkv"), "last marmot")]


@pytest.mark.slow
def test_ls_and_status_show_each_video_s_text(lib):
    listing = {row["path"]: row for row in run_json("ls", home=lib.home)}
    sources = {path: {s["source"]: s for s in row["text"]} for path, row in listing.items()}
    for video, phrase in lib.phrases.items():
        row = sources[lib.path(video)][phrase.source]
        assert row["lines"] >= 1 and row["problem"] is None and row["language"] == phrase.language, row
    for video, source in BAD.items():
        assert sources[lib.path(video)][source]["problem"], sources[lib.path(video)]
        assert listing[lib.path(video)]["state"] == "ok"
    assert sources[lib.path("zebra.mkv")]["speech:pocketsphinx"]["note"] == "no audio track"
    table = run_cli("ls", home=lib.home).stdout.splitlines()
    [junk] = [line for line in table if line.endswith(lib.path("junk.mp4"))]
    assert "sidecar!" in junk

    text = run_json("status", home=lib.home)["text"]
    transcripts = snapshot(lib.home)[2]
    assert text["lines"] == len(transcripts)
    assert text["videos"] == len({row[0] for row in transcripts}) == 10  # the nine phrases and damaged.mkv
    assert text["sources"] == {"embedded": 4, "sidecar": 3, "speech": 3}
    assert text["speech"] == "pocketsphinx"
    assert sorted((f["path"], f["source"]) for f in text["failures"]) == sorted((lib.path(v), s) for v, s in BAD.items())


@pytest.mark.slow
def test_kill_9_while_reading_text_then_a_rerun_equals_a_clean_run(lib, tmp_path):
    home = tmp_path / "index"
    killed = run_cli("index", str(lib.folder), *TINY, *SPEECH, home=home, check=None, env={KILL_AT: "text-read"})
    assert killed.returncode == -9, killed.stderr
    rerun = run_cli("index", str(lib.folder), *TINY, *SPEECH, "--json", home=home)
    assert snapshot(home) == snapshot(lib.home)
    assert len(text_failed(rerun.stderr.splitlines())) == len(BAD)
    checked = run_cli("verify", home=home).stdout.splitlines()
    assert checked and all(line.startswith("ok") for line in checked), checked
    assert any("transcript" in line for line in checked) and any("full-text" in line for line in checked)
    again = run_json("index", str(lib.folder), *TINY, home=home)  # the stamps were written: nothing to read again
    assert again["unchanged"] == 12 and again["text_updated"] == 0 and again["frames"] == 0


@pytest.mark.slow
def test_kill_9_while_rereading_a_changed_sidecar_then_a_rerun_equals_a_clean_run(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "talk.mp4", seconds=3.0, fps=5, size=(96, 64))
    (videos / "talk.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nan otter swam past\n")
    clean = tmp_path / "clean"
    run_cli("index", str(videos), *TINY, home=clean)
    home = copy_index(clean, tmp_path / "killed")
    (videos / "talk.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\na beaver built a dam\n")
    run_cli("index", str(videos), *TINY, home=clean)
    killed = run_cli("index", str(videos), *TINY, home=home, check=None, env={KILL_AT: "text-read"})
    assert killed.returncode == -9, killed.stderr
    assert snapshot(home)[2] == [(str(videos / "talk.mp4"), "sidecar:talk.srt", None, 1.0, 2.0, "an otter swam past")]
    summary = run_json("index", str(videos), *TINY, home=home)
    assert summary["text_updated"] == 1 and summary["frames"] == 0
    assert snapshot(home) == snapshot(clean)
    assert all(line.startswith("ok") for line in run_cli("verify", home=home).stdout.splitlines())


@pytest.mark.slow
def test_a_sidecar_edit_addition_and_deletion_read_the_text_again_and_encode_nothing(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "walk.mp4", seconds=4.0, fps=5, size=(96, 64))
    write_video(videos / "other.mp4", seconds=3.0, fps=5, size=(96, 64))
    (videos / "walk.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nthe red kite soared\n")
    home = tmp_path / "index"
    first = run_json("index", str(videos), *TINY, home=home)
    assert first["indexed"] == 2 and first["frames"] > 0
    walk = str(videos / "walk.mp4")
    videos_before, segments_before, _, _ = snapshot(home)

    def found(word: str) -> list[tuple[str, str, str]]:
        return [(h["path"], h["text"]["source"], h["text"]["line"]) for h in query(home, word, mode="speech")]

    def index_text_only() -> None:
        summary = run_json("index", str(videos), *TINY, home=home)
        assert (summary["frames"], summary["text_updated"], summary["unchanged"], summary["indexed"]) == (0, 1, 1, 0), summary
        assert snapshot(home)[:2] == (videos_before, segments_before)  # the same frames, hashes and vectors

    assert found("kite") == [(walk, "sidecar:walk.srt", "the red kite soared")]
    (videos / "walk.srt").write_text("1\n00:00:01,000 --> 00:00:03,000\na grey heron landed by the pond\n")
    index_text_only()
    assert found("heron") == [(walk, "sidecar:walk.srt", "a grey heron landed by the pond")]
    assert found("kite") == []

    (videos / "walk.en.vtt").write_text("WEBVTT\n\n00:00:02.000 --> 00:00:03.000\nmarmalade for lunch\n")
    index_text_only()
    assert found("marmalade") == [(walk, "sidecar:walk.en.vtt", "marmalade for lunch")]
    assert found("heron") == [(walk, "sidecar:walk.srt", "a grey heron landed by the pond")]

    (videos / "walk.srt").unlink()
    index_text_only()
    assert found("heron") == []
    assert found("marmalade") == [(walk, "sidecar:walk.en.vtt", "marmalade for lunch")]
    assert [row[1] for row in snapshot(home)[3]] == ["sidecar:walk.en.vtt"]
    assert run_json("index", str(videos), *TINY, home=home)["unchanged"] == 2  # and then nothing to do


@pytest.mark.slow
def test_remove_drops_a_video_s_lines(lib, tmp_path):
    home = copy_index(lib.home, tmp_path / "index")
    assert query(home, "lights office", mode="speech")
    run_cli("remove", lib.path("lights.mkv"), home=home)
    assert query(home, "lights office", mode="speech") == []
    _, _, transcripts, sources = snapshot(home)
    assert lib.path("lights.mkv") not in {row[0] for row in transcripts} | {row[0] for row in sources}
    assert query(home, "brown fox", mode="speech")[0]["path"] == lib.path("fox.mp4")
    assert all(line.startswith("ok") for line in run_cli("verify", home=home).stdout.splitlines())


@pytest.mark.slow
def test_a_renamed_video_keeps_its_text_and_a_broken_sidecar_is_read_again_only_with_retry_failed(tmp_path):
    videos = tmp_path / "videos"
    speech = speak(FOX)
    write_speech_video(videos / "a.mp4", speech, offset=1.0, seconds=round(1.5 + len(speech) / 48000, 1))
    (videos / "a.srt").write_text("1\n00:00:00,500 --> 00:00:01,500\nan old tram rattled by\n")
    write_video(videos / "bad.mp4", seconds=3.0, fps=5, size=(96, 64))
    (videos / "bad.srt").write_bytes(b"\x00\xff\xfe garbage \x00" * 10)
    home = tmp_path / "index"
    first = run_cli("index", str(videos), *TINY, *SPEECH, home=home)
    broken = f"text failed: {videos / 'bad.mp4'}: sidecar:bad.srt: "
    assert [line.startswith(broken) for line in text_failed(first.stderr.splitlines())] == [True]

    plain = run_cli("index", str(videos), *TINY, "--json", home=home)  # unchanged: the broken sidecar is not read again
    assert text_failed(plain.stderr.splitlines()) == []
    assert stdout_json(plain)["unchanged"] == 2
    retried = run_cli("index", str(videos), *TINY, "--retry-failed", "--json", home=home)
    assert [line.startswith(broken) for line in text_failed(retried.stderr.splitlines())] == [True]
    summary = stdout_json(retried)
    assert (summary["text_updated"], summary["unchanged"], summary["frames"]) == (1, 1, 0), summary
    assert [f["path"] for f in summary["text_failures"]] == [str(videos / "bad.mp4")]

    def lines_of(path: Path) -> list[tuple]:
        return [row[1:] for row in snapshot(home)[2] if row[0] == str(path)]

    before = lines_of(videos / "a.mp4")
    assert {row[0] for row in before} == {"speech:pocketsphinx", "sidecar:a.srt"}
    (videos / "a.mp4").rename(videos / "b.mp4")
    (videos / "a.srt").rename(videos / "b.srt")
    moved = run_json("index", str(videos), *TINY, home=home)
    assert (moved["reused"], moved["removed"], moved["indexed"], moved["frames"]) == (1, 1, 0, 0), moved
    assert lines_of(videos / "b.mp4") == [(s.replace("a.srt", "b.srt"), *rest) for s, *rest in before]
    assert lines_of(videos / "a.mp4") == []
    spoken = query(home, "brown fox", mode="speech")
    assert [(h["path"], h["text"]["source"]) for h in spoken] == [(str(videos / "b.mp4"), "speech:pocketsphinx")]
    shown = query(home, "tram", mode="speech")
    assert [(h["path"], h["text"]["source"]) for h in shown] == [(str(videos / "b.mp4"), "sidecar:b.srt")]


@pytest.mark.slow
def test_speech_is_sticky_off_drops_it_without_encoding_and_a_missing_whisper_changes_nothing(lib, tmp_path):
    home = copy_index(lib.home, tmp_path / "index")
    before = snapshot(home)
    again = run_json("index", str(lib.folder), *TINY, home=home)  # no --speech: the index's own choice
    assert (again["unchanged"], again["text_updated"], again["frames"]) == (12, 0, 0), again

    # faster-whisper made missing even where it is installed (weights could not be downloaded here anyway)
    stub = tmp_path / "no-whisper" / "faster_whisper"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError(\"No module named 'faster_whisper'\")\n")
    no_whisper = {"PYTHONPATH": os.pathsep.join(filter(None, [str(stub.parent), os.environ.get("PYTHONPATH")]))}
    for target in (home, tmp_path / "fresh"):
        proc = run_cli("index", str(lib.folder), *TINY, "--speech", "whisper", home=target, check=None, env=no_whisper)
        assert proc.returncode in (1, 2), proc
        assert proc.stderr.splitlines() == [proc.stderr.splitlines()[0]] and proc.stderr.startswith("error: "), proc.stderr
        assert "vidsearch[whisper]" in proc.stderr
    assert snapshot(home) == before and run_json("status", home=home)["text"]["speech"] == "pocketsphinx"
    if (tmp_path / "fresh" / "vidsearch.db").exists():
        assert snapshot(tmp_path / "fresh")[0] == []

    off = run_cli("index", str(lib.folder), *TINY, "--speech", "off", "--json", home=home)
    summary = stdout_json(off)
    assert (summary["text_updated"], summary["frames"], summary["indexed"]) == (12, 0, 0), summary
    assert text_failed(off.stderr.splitlines()) == []  # only speech was read again (to nothing)
    videos, segments, transcripts, sources = snapshot(home)
    assert (videos, segments) == before[:2]
    assert transcripts == [row for row in before[2] if not row[1].startswith("speech:")]
    assert sources == [row for row in before[3] if not row[1].startswith("speech:")]
    assert query(home, "lights office", mode="speech") == []
    assert query(home, "zebra", mode="speech")[0]["path"] == lib.path("zebra.mkv")
    assert run_json("status", home=home)["text"]["speech"] is None
    assert run_json("index", str(lib.folder), *TINY, home=home)["unchanged"] == 12  # off is sticky too


# --- fusion with a model that sees something ------------------------------------------------------------------


@pytest.mark.slow
def test_said_in_one_video_and_shown_in_another_they_rank_as_the_mode_says(trained_tiny, tmp_path):
    from vidsearch.synthetic import Scene
    from vidsearch.synthetic import write_video as write_shapes

    checkpoint, _ = trained_tiny
    caption = "a blue triangle moving right"
    videos = tmp_path / "videos"
    # said.mp4 shows a red circle and says the caption (pocketsphinx hears "blue triangle moving right" in it);
    # shown.mp4 shows it after a green square, and says nothing; other.mp4 neither shows nor says it.
    write_shapes(tmp_path / "silent.mp4", [Scene("red", "circle", "up")])
    said = str(add_speech(tmp_path / "silent.mp4", videos / "said.mp4", speak(caption), offset=1.0))
    scenes = write_shapes(videos / "shown.mp4", [Scene("green", "square", "down"), Scene("blue", "triangle", "right")])
    write_shapes(videos / "other.mp4", [Scene("yellow", "circle", "left"), Scene("red", "square", "up")], seed=1)
    (videos / "other.srt").write_text("1\n00:00:01,000 --> 00:00:03,000\nnothing to see in this one\n")
    assert scenes[1]["caption"] == caption
    home = tmp_path / "index"
    run_cli("index", str(videos), "--model", str(checkpoint), "--device", "cpu", *SPEECH, home=home)
    shown = str(videos / "shown.mp4")

    spoken = query(home, caption, mode="speech")
    assert [h["path"] for h in spoken] == [said], spoken
    assert 0.5 < spoken[0]["start"] < 1.5 and spoken[0]["text"]["source"] == "speech:pocketsphinx"
    seen = query(home, caption, mode="visual")
    best = seen[0]
    assert best["path"] == shown, seen
    assert scenes[1]["start"] <= (best["start"] + best["end"]) / 2 <= scenes[1]["end"], best  # the triangle's scene
    assert not any("text" in hit for hit in seen)
    both = query(home, caption, mode="both")
    assert {h["path"] for h in both[:2]} == {said, shown}, both
    assert next(h for h in both if h["path"] == said)["text"]["source"] == "speech:pocketsphinx"
    assert run_json("query", caption, home=home)["hits"] == both  # the default (auto) is both on an index with text


@pytest.mark.slow
def test_a_text_reader_that_crashes_costs_only_that_file_s_text(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "a.mp4", seconds=3.0, fps=5, size=(96, 64))
    (videos / "a.srt").write_text("1\n00:00:00,500 --> 00:00:01,500\nan old tram rattled by\n")
    write_video(videos / "b.mp4", seconds=4.0, fps=5, size=(96, 64))  # not a copy of a.mp4 (that would be reused)
    (videos / "b.srt").write_text("1\n00:00:00,500 --> 00:00:01,500\na kettle sang in the kitchen\n")
    home = tmp_path / "index"
    proc = run_cli("index", str(videos), *TINY, "--json", home=home, env={"VIDSEARCH_TEST_KILL_AT": "text-worker@a.mp4:SIGSEGV"})
    failed = text_failed(proc.stderr.splitlines())
    assert len(failed) == 1 and failed[0].startswith(f"text failed: {videos / 'a.mp4'}: ") and "SIGSEGV" in failed[0], proc.stderr
    summary = stdout_json(proc)
    assert summary["indexed"] == 2 and summary["failed"] == 0, summary  # both searchable visually
    assert query(home, "kettle", mode="speech")[0]["path"] == str(videos / "b.mp4")  # the next file's text was read
    retried = run_cli("index", str(videos), *TINY, "--retry-failed", "--json", home=home)  # no fault this time
    assert text_failed(retried.stderr.splitlines()) == [] and stdout_json(retried)["frames"] == 0
    assert query(home, "tram", mode="speech")[0]["path"] == str(videos / "a.mp4")
