"""`pairs`: subtitle and speech lines merged into captioned spans, written as a manifest that `train` reads."""

from __future__ import annotations

import json
import os

import pytest
from cli_helpers import run_cli, run_json
from media import write_subtitled_video, write_video, write_with_audio

from vidsearch import pairs as vp
from vidsearch.data import load_pairs
from vidsearch.db import Database, VideoTextRecord
from vidsearch.errors import UsageError
from vidsearch.indexdir import DB_FILE
from vidsearch.text_sources import Line, TextLine


def merged(lines, **kwargs):
    return [tuple(line) for line in vp.merge_lines([Line(*line) for line in lines], **kwargs)]


def srt(cues) -> str:
    def stamp(t):
        ms = round(t * 1000)
        return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    return "\n".join(f"{i}\n{stamp(a)} --> {stamp(b)}\n{text}\n" for i, (a, b, text) in enumerate(cues, 1))


# --- merging lines -----------------------------------------------------------------------------------------------


def test_lines_are_merged_until_the_span_is_long_enough_and_says_enough():
    lines = [(0.0, 1.5, "first we take"), (1.5, 3.0, "the big bowl"), (3.0, 4.5, "and pour the flour"),
             (4.5, 6.0, "then the milk"), (6.0, 7.5, "and stir it"), (7.5, 9.0, "until it is smooth")]
    assert merged(lines) == [(0.0, 4.5, "first we take the big bowl and pour the flour"),
                             (4.5, 9.0, "then the milk and stir it until it is smooth")]
    # many short words quickly: the time decides; few words slowly: the words decide
    assert merged([(0, 1, "one two three four five"), (1, 2, "six"), (2, 4, "seven"), (4, 9, "eight nine ten eleven")]) == [
        (0, 4, "one two three four five six seven"), (4, 9, "eight nine ten eleven")]
    slow = [(0, 3, "so"), (3, 6, "right"), (6, 9, "okay then"), (9, 13, "we start with eggs")]
    assert merged(slow) == [(0, 9, "so right okay then"), (9, 13, "we start with eggs")]
    assert merged(slow, min_words=1) == [(0, 6, "so right"), (6, 13, "okay then we start with eggs")]


def test_a_pause_longer_than_max_gap_is_never_bridged():
    lines = [(0, 2, "wash the onions"), (2, 4, "under the tap"), (7, 9, "now peel them"), (9, 11, "with the knife")]
    assert merged(lines) == [(0, 4, "wash the onions under the tap"), (7, 11, "now peel them with the knife")]
    assert merged(lines, max_gap=3.0) == [(0, 4, "wash the onions under the tap"), (7, 11, "now peel them with the knife")]
    assert merged(lines, min_seconds=6.0) == []  # each run is 4 s: nothing reaches 6 s without crossing the pause
    assert merged(lines, min_seconds=6.0, max_gap=3.0) == [(0, 11, "wash the onions under the tap now peel them "
                                                                  "with the knife")]


def test_a_trailing_fragment_joins_the_pair_before_it_when_close_and_is_dropped_when_alone():
    lines = [(0, 2.5, "wash the onions"), (2.5, 5, "under the tap"), (5.5, 6.5, "done")]
    assert merged(lines) == [(0, 6.5, "wash the onions under the tap done")]
    # before a pause as at the end
    lines = [(0, 2.5, "wash the onions"), (2.5, 5, "under the tap"), (5.5, 6.5, "done"), (20, 22, "next we"),
             (22, 24, "fry them in butter")]
    assert merged(lines) == [(0, 6.5, "wash the onions under the tap done"), (20, 24, "next we fry them in butter")]
    # too far from the pair before it, or alone: dropped
    assert merged([(0, 2.5, "wash the onions"), (2.5, 5, "under the tap"), (8, 9, "done")]) == [
        (0, 5, "wash the onions under the tap")]
    assert merged([(3, 4, "hello there")]) == []
    assert merged([]) == []


def test_a_single_line_long_enough_is_a_pair_of_its_own_and_a_pathological_one_is_cut():
    assert merged([(10, 15, "the whole sentence in one line"), (15, 20, "and another long line here")]) == [
        (10, 15, "the whole sentence in one line"), (15, 20, "and another long line here")]
    # a subtitle that lasts an hour (a broken end time) keeps its first max_seconds
    assert merged([(10, 3610, "a line that never ends on screen")]) == [(10, 26, "a line that never ends on screen")]
    assert merged([(10, 3610, "a line that never ends on screen")], max_seconds=8) == [
        (10, 18, "a line that never ends on screen")]
    assert vp.PairSettings(min_seconds=30).longest == 120  # room for longer pairs when asked for
    # merging stops before a pair grows past max_seconds: "one two" cannot take "three", and is too short alone
    lines = [(0, 6, "one"), (6, 12, "two"), (12, 18, "three"), (18, 24, "four five six seven")]
    assert merged(lines) == [(12, 24, "three four five six seven")]


def test_sounds_in_brackets_are_not_words_and_lines_are_taken_in_time_order():
    lines = [(6, 8, "and stir it"), (0, 2, "[Music]"), (2, 4, "♪ pour the milk ♪"), (4, 6, "[splash] slowly")]
    assert merged(lines) == [(2, 8, "pour the milk slowly and stir it")]
    assert vp.count_words("we pour the milk") == 4 and vp.count_words("牛乳を注ぐ") == 5  # no spaces: each character


def test_one_source_per_video_subtitles_before_speech_and_speech_when_nothing_else():
    def lines(source, language=None, words="wash the onions under the tap"):
        return [TextLine(0, 2.5, words, source, language), TextLine(2.5, 5, "and peel them", source, language)]

    speech = lines("speech:pocketsphinx", "en", "wash done young under the top")
    embedded = lines("embedded:2", "eng")
    sidecar = lines("sidecar:film.srt")
    assert vp.choose_source(speech + embedded + sidecar)[0] == "sidecar:film.srt"
    assert vp.choose_source(speech + embedded)[0] == "embedded:2"
    assert vp.choose_source(speech)[0] == "speech:pocketsphinx"
    # within a kind: English (or untagged) first, then the most words; a source that gives no pair is passed over
    german = lines("sidecar:film.de.srt", "de", "die Zwiebeln unter dem Wasserhahn waschen und dann")
    forced = [TextLine(1, 5, "only this one line", "sidecar:film.en.forced.srt", "en")]
    full = lines("sidecar:film.en.srt", "en")
    assert vp.choose_source(german + forced + full)[0] == "sidecar:film.en.srt"
    assert vp.choose_source(german + forced)[0] == "sidecar:film.en.forced.srt"
    assert vp.choose_source([TextLine(0, 1, "hi", "sidecar:film.srt")] + speech)[0] == "speech:pocketsphinx"
    # so the records say each word once
    records = vp.video_pairs("/v/film.mkv", speech + embedded + sidecar, limit=60.0)
    assert records == [{"video": "/v/film.mkv", "start": 0.0, "end": 5.0, "caption": "wash the onions under the tap and peel them"}]


def test_spans_end_at_the_limit_and_lines_after_it_are_dropped():
    lines = [TextLine(0, 2.5, "wash the onions", "sidecar:a.srt"), TextLine(2.5, 5, "under the tap", "sidecar:a.srt"),
             TextLine(5.5, 9, "then peel them", "sidecar:a.srt"), TextLine(9.5, 12, "with a knife", "sidecar:a.srt")]
    spans = [(r["start"], r["end"]) for r in vp.video_pairs("/v/a.mp4", lines, limit=6.0)]
    assert spans == [(0.0, 6.0)]  # the line cut at 6 s is a fragment of 0.5 s: it joins the pair before it
    assert [(r["start"], r["end"]) for r in vp.video_pairs("/v/a.mp4", lines, limit=None)] == [(0.0, 5.0), (5.5, 12.0)]


def test_write_manifest_replaces_the_file_whole_or_not_at_all(tmp_path):
    out = tmp_path / "pairs.jsonl"
    out.write_text("old\n")
    records = [{"video": "/v/a.mp4", "start": 0.0, "end": 4.0, "caption": "crème brûlée"}] * 3
    assert vp.write_manifest(iter(records), out) == 3
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == records

    def failing():
        yield records[0]
        raise RuntimeError("stopped half-way")

    with pytest.raises(RuntimeError):
        vp.write_manifest(failing(), out)
    assert len(out.read_text().splitlines()) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]  # no temporary file left
    assert vp.write_manifest([], tmp_path / "new" / "empty.jsonl") == 0


@pytest.mark.parametrize("out, sources, speech, message", [
    ("pairs.csv", ["v"], None, "JSONL"), ("outdir", ["v"], None, "is a folder"), ("p.jsonl", [], None, "give an index"),
    ("p.jsonl", ["v"], "espeak", "--speech 'espeak'"), ("p.jsonl", ["index"], "pocketsphinx", "--speech reads videos"),
    ("p.jsonl", ["index", "v"], None, "give it alone")])
def test_bad_arguments_are_refused_before_any_work(tmp_path, out, sources, speech, message):
    (tmp_path / "outdir").mkdir()
    (tmp_path / "v").mkdir()
    Database(_index_folder(tmp_path / "index") / DB_FILE).close()
    with pytest.raises(UsageError, match=message):
        vp.make_manifest([tmp_path / s for s in sources], tmp_path / out, speech=speech)
    assert not (tmp_path / "pairs.csv").exists() and not (tmp_path / "p.jsonl").exists()


# --- from an index -----------------------------------------------------------------------------------------------


def _index_folder(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


CUT = [(0.0, 2.5, "wash the onions"), (2.5, 5.0, "under cold water"), (5.5, 8.0, "then peel them"),
       (8.0, 10.5, "with a small knife"), (10.5, 13.0, "and slice them thin")]


def _save(db, video, *, lines=(), partial=None, covered=None):
    text = VideoTextRecord([TextLine(a, b, t, source, "en") for source, a, b, t in lines],
                           sorted({(s, "en", 1, None, None) for s, *_ in lines}), {})
    db.save_video(path=str(video), size=video.stat().st_size, mtime=video.stat().st_mtime, hash=video.name,
                  duration=12.0, fps=10.0, frames=120, segments=[], partial=partial, covered=covered, text=text)


@pytest.fixture
def index(tmp_path):
    """An index of five videos of 12 s: one with subtitles and speech, one partial, one failed, one without text,
    and one whose file is gone."""
    folder = _index_folder(tmp_path / "index")
    db = Database(folder / DB_FILE)
    videos = {name: write_video(tmp_path / "videos" / f"{name}.mp4", seconds=12.0) for name in
              ("talk", "cut", "silent", "gone")}
    _save(db, videos["talk"], lines=[("sidecar:talk.srt", *cue) for cue in CUT] +
          [("speech:pocketsphinx", 0.2, 4.8, "wash the on ions under cold water")])
    _save(db, videos["cut"], lines=[("speech:pocketsphinx", *cue) for cue in CUT], partial="stops decoding",
          covered=6.0)
    _save(db, videos["silent"])
    _save(db, videos["gone"], lines=[("sidecar:gone.srt", *cue) for cue in CUT])
    videos["gone"].unlink()
    db.save_failure(path=str(tmp_path / "videos" / "broken.mp4"), size=5, mtime=0.0, error="not a video")
    db.close()
    return folder, tmp_path / "videos"


def test_pairs_from_an_index_load_for_training_without_problems(index, tmp_path):
    folder, videos = index
    report = vp.PairsReport()
    db = Database(folder / DB_FILE, readonly=True)
    records = list(vp.pairs_from_index(db, report=report))
    db.close()
    talk, cut = str(videos / "talk.mp4"), str(videos / "cut.mp4")
    assert [(r["video"], r["start"], r["end"], r["caption"]) for r in records] == [
        (cut, 0.0, 6.0, "wash the onions under cold water then peel them"),  # partial: only the 6 s it covers
        (talk, 0.0, 5.0, "wash the onions under cold water"),  # the sidecar, not what speech heard
        (talk, 5.5, 12.0, "then peel them with a small knife and slice them thin"),  # ends at the video's end
    ]
    assert report.videos == 2
    assert [(os.path.basename(path), reason.split(" (")[0]) for path, reason in report.skipped] == [
        ("broken.mp4", "failed to index: not a video"), ("gone.mp4", "the file is gone"),
        ("silent.mp4", "no subtitles or speech in the index")]

    manifest = tmp_path / "pairs.jsonl"
    assert vp.write_manifest(records, manifest) == 3
    pairs, problems = load_pairs(manifest)
    assert problems == [] and [(str(p.video), p.start, p.end, p.caption) for p in pairs] == [
        (r["video"], r["start"], r["end"], r["caption"]) for r in records]

    summary = vp.make_manifest([folder], tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_text() == manifest.read_text()
    assert summary["pairs"] == 3 and summary["videos"] == 2 and summary["out"] == str((tmp_path / "again.jsonl").resolve())
    assert len(summary["skipped"]) == 3 and summary["problems"] == []


# --- from video files --------------------------------------------------------------------------------------------


def test_pairs_from_a_folder_use_sidecar_files_and_embedded_subtitles(tmp_path):
    folder = tmp_path / "videos"
    write_video(folder / "lesson.mp4", seconds=10.0)
    (folder / "lesson.srt").write_text(srt(CUT))
    write_subtitled_video(folder / "film.mkv", [(1.0, 3.5, "the embedded track says this"),
                                                (3.5, 6.0, "and then it says that")], seconds=8.0)
    (folder / "film.en.srt").write_text(srt([(1.0, 6.0, "the sidecar file says it all")]))
    write_subtitled_video(folder / "clip.mkv", [(0.5, 6.0, "only an embedded track here")], seconds=8.0)
    write_video(folder / "quiet.mp4", seconds=2.0)
    (folder / "junk.mp4").write_bytes(b"not a video")

    report = vp.PairsReport()
    from vidsearch.indexer import find_videos

    records = list(vp.pairs_from_folder(find_videos([folder]), report=report))
    assert [(os.path.basename(r["video"]), r["start"], r["end"], r["caption"]) for r in records] == [
        ("clip.mkv", 0.5, 6.0, "only an embedded track here"),
        ("film.mkv", 1.0, 6.0, "the sidecar file says it all"),
        ("lesson.mp4", 0.0, 5.0, "wash the onions under cold water"),
        ("lesson.mp4", 5.5, 10.0, "then peel them with a small knife"),  # the cue from 10 s on is after the end
    ]
    assert all(os.path.isabs(r["video"]) for r in records) and report.videos == 3
    assert [(os.path.basename(path), reason.split(":")[0]) for path, reason in report.skipped] == [
        ("junk.mp4", "unreadable video"), ("quiet.mp4", "no subtitles (pass --speech ENGINE to use speech)")]

    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert load_pairs(tmp_path / "pairs.jsonl")[1] == []


class HeardEverywhere:
    """A speech engine that hears the same two lines in any audio, and counts the videos it listened to."""

    name, language = "fake", "en"

    def __init__(self):
        self.calls = 0

    def transcribe(self, audio):
        self.calls += 1
        return iter([Line(0.5, 2.5, "what the engine heard"), Line(2.5, 4.5, "in this video")])


def test_speech_is_listened_to_only_in_videos_whose_subtitles_give_no_pair(tmp_path):
    folder = tmp_path / "videos"
    talk = write_with_audio(folder / "talk.mp4", seconds=6.0, audio_seconds=6.0)
    (folder / "talk.srt").write_text(srt([(0.0, 5.0, "the subtitles say this")]))
    mumble = write_with_audio(folder / "mumble.mp4", seconds=6.0, audio_seconds=6.0)
    (folder / "mumble.srt").write_text(srt([(0.0, 1.0, "hm")]))
    engine = HeardEverywhere()
    records = list(vp.pairs_from_folder([talk, mumble], speech=engine))
    assert [(os.path.basename(r["video"]), r["start"], r["end"], r["caption"]) for r in records] == [
        ("talk.mp4", 0.0, 5.0, "the subtitles say this"), ("mumble.mp4", 0.5, 4.5, "what the engine heard in this video")]
    assert engine.calls == 1
    # the engine named on the command line loads only when a video needs it (faster-whisper's weights cannot be had
    # here, so loading it would fail)
    summary = vp.make_manifest([talk], tmp_path / "pairs.jsonl", speech="whisper-tiny")
    assert summary["pairs"] == 1


def test_no_pair_at_all_writes_nothing(tmp_path):
    write_video(tmp_path / "videos" / "quiet.mp4", seconds=2.0)
    (tmp_path / "pairs.jsonl").write_text("kept\n")
    summary = vp.make_manifest([tmp_path / "videos"], tmp_path / "pairs.jsonl")
    assert summary["pairs"] == 0 and summary["out"] is None and len(summary["skipped"]) == 1
    assert (tmp_path / "pairs.jsonl").read_text() == "kept\n"


# --- through the CLI ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_pairs_from_subtitles_train_the_tiny_model(tmp_path):
    folder = tmp_path / "videos"
    for n, topic in enumerate(["onions", "bread", "a bicycle"]):
        write_video(folder / f"video{n}.mp4", seconds=20.0)
        cues = [(t, t + 2.5, f"step {t:g} with {topic}") for t in (0.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0, 17.5)]
        (folder / f"video{n}.srt").write_text(srt(cues))
    out = tmp_path / "pairs.jsonl"
    summary = run_json("pairs", str(folder), "--out", str(out))
    assert summary["pairs"] == 12 and summary["videos"] == 3 and summary["out"] == str(out.resolve())
    proc = run_cli("train", str(out), "--out", str(tmp_path / "ckpt"), "--model", "tiny", "--frames", "4", "--steps", "2",
                   "--batch-size", "8", "--device", "cpu", "--workers", "0")
    assert "skipped:" not in proc.stderr, proc.stderr
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
