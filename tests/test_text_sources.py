"""Text sources: embedded subtitle streams, sidecar files and speech, on media the tests write."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from media import speak, write_speech_video, write_subtitled_video, write_video, write_with_audio

from vidsearch import text_sources as ts
from vidsearch.errors import ModelUnavailable, UsageError

CUES = [(0.5, 1.5, "hello {\\i1}there{\\i0}"), (2.0, 3.25, "second line\\Nbroken in two")]
PLAIN = [(0.5, 1.5, "hello there"), (2.0, 3.25, "second line broken in two")]


def spans(lines):
    return [(round(line.start, 3), round(line.end, 3), line.text) for line in lines]


@pytest.fixture(scope="module")
def pocketsphinx():
    return ts.speech_engine("pocketsphinx")


# --- embedded streams ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec, ext", [("subrip", "mkv"), ("ass", "mkv"), ("webvtt", "mkv"), ("mov_text", "mp4")])
def test_an_embedded_text_stream_gives_plain_lines_timed_from_the_video_start(tmp_path, codec, ext):
    # Every timestamp in the file starts 1.5 s late; the lines must still line up with the video's own clock.
    video = write_subtitled_video(tmp_path / f"talk.{ext}", CUES, codec=codec, language="eng", start=1.5)
    text = ts.read_text(video)
    assert spans(text.lines) == PLAIN
    assert {line.source for line in text.lines} == {"embedded:1"}
    assert text.sources == {"embedded:1": "eng"}
    assert text.problems == [] and text.notes == []


def test_a_bitmap_subtitle_stream_is_skipped_with_a_note(tmp_path):
    video = write_subtitled_video(tmp_path / "dvd.mkv", CUES, bitmap_stream=True)
    text = ts.read_embedded(video)
    assert spans(text.lines) == PLAIN
    assert text.problems == []
    assert [note.source for note in text.notes] == ["embedded:2"]
    assert "bitmap" in text.notes[0].note
    assert text.lines[0].language is None  # the stream has no language tag


def test_packets_that_do_not_decode_give_one_problem_and_the_rest_of_the_stream_stays(tmp_path):
    latin1 = "caf\xe9 au lait".encode("latin-1")  # FFmpeg takes subtitle text as UTF-8 only
    cues = [(0.5, 1.0, "first"), (1.5, 2.0, latin1), (2.5, 3.0, latin1), (3.0, 3.5, "last")]
    video = write_subtitled_video(tmp_path / "bad.mkv", cues)
    text = ts.read_embedded(video)
    assert spans(text.lines) == [(0.5, 1.0, "first"), (3.0, 3.5, "last")]
    assert len(text.problems) == 1
    assert text.problems[0].source == "embedded:1"
    assert "2 subtitle packets" in text.problems[0].reason


def test_a_subtitle_without_a_duration_lasts_until_the_next_one_or_five_seconds(tmp_path):
    cues = [(1.0, 1.0, "no end"), (2.5, 2.5, "no end either"), (20.0, 21.0, "timed")]  # 0 s: the packet has no duration
    text = ts.read_embedded(write_subtitled_video(tmp_path / "open.mkv", cues, seconds=2.0))
    assert spans(text.lines) == [(1.0, 2.5, "no end"), (2.5, 2.5 + ts.OPEN_END_SECONDS, "no end either"), (20.0, 21.0, "timed")]


def test_a_file_that_cannot_be_opened_gives_one_problem_and_its_sidecar_still_gives_lines(tmp_path):
    video = tmp_path / "broken.mp4"
    video.write_text("not a video at all\n")
    (tmp_path / "broken.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nstill here\n")
    text = ts.read_text(video)
    assert spans(text.lines) == [(1.0, 2.0, "still here")]
    assert [problem.source for problem in text.problems] == ["embedded"]
    assert "\n" not in str(text.problems[0])


# --- sidecar files ---------------------------------------------------------------------------------------------

SRT = "1\n00:00:01,000 --> 00:00:02,500\n<i>Hello</i> from\nthe SRT\n\n2\n00:00:04,000 --> 00:00:05,000\nsecond cue\n"
VTT = "WEBVTT\n\n00:00:03.000 --> 00:00:04.250\n<v Bob>Hi from <b>WebVTT</b>\n"
ASS = """[Script Info]
ScriptType: v4.00+

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, \
StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,2,2,2,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:06.00,0:00:07.50,Default,,0,0,0,,{\\b1}Bold{\\b0} words\\Nfrom ASS
Comment: 0,0:00:08.00,0:00:09.00,Default,,0,0,0,,a comment is not shown
Dialogue: 0,0:00:10.00,0:00:11.00,Default,,0,0,0,,{\\p1}m 0 0 l 100 0 100 100 0 100{\\p0}
"""


@pytest.fixture
def with_sidecars(tmp_path):
    """x.mp4 with x.srt, x.en.vtt and x.ass, and files that are not its sidecars."""
    video = write_video(tmp_path / "x.mp4", seconds=1.0)
    (tmp_path / "x.srt").write_text(SRT)
    (tmp_path / "x.en.vtt").write_text(VTT)
    (tmp_path / "x.ass").write_text(ASS)
    for other in ("y.srt", "xx.srt", "x.part2.srt", "x.srt.bak", "x.txt"):
        (tmp_path / other).write_text(SRT)
    return video


def test_sidecars_are_the_subtitle_files_named_after_the_video(with_sidecars):
    found = ts.find_sidecars(with_sidecars)
    assert [(s.path.name, s.language) for s in found] == [("x.ass", None), ("x.en.vtt", "en"), ("x.srt", None)]
    (with_sidecars.parent / "x.pt-BR.forced.SRT").write_text(SRT)
    assert ("x.pt-BR.forced.SRT", "pt-BR") in [(s.path.name, s.language) for s in ts.find_sidecars(with_sidecars)]


def test_sidecar_lines_are_plain_text_with_their_source_and_language(with_sidecars):
    text = ts.read_text(with_sidecars)
    assert text.problems == [] and text.notes == []
    by_source = {source: spans(line for line in text.lines if line.source == source) for source in text.sources}
    assert by_source == {
        "sidecar:x.ass": [(6.0, 7.5, "Bold words from ASS")],  # the comment and the drawing are not text
        "sidecar:x.en.vtt": [(3.0, 4.25, "Hi from WebVTT")],
        "sidecar:x.srt": [(1.0, 2.5, "Hello from the SRT"), (4.0, 5.0, "second cue")],
    }
    assert text.sources == {"sidecar:x.ass": None, "sidecar:x.en.vtt": "en", "sidecar:x.srt": None}


@pytest.mark.parametrize("content", [b"\x00\x01\x02\xff binary junk \x00", b"no cues in here at all\n", b""],
                         ids=["binary", "no-cues", "empty"])
def test_a_broken_sidecar_gives_one_problem_and_the_others_still_work(with_sidecars, content):
    (with_sidecars.parent / "x.fr.srt").write_bytes(content)
    text = ts.read_text(with_sidecars)
    assert [problem.source for problem in text.problems] == ["sidecar:x.fr.srt"]
    assert "\n" not in str(text.problems[0])
    assert set(text.sources) == {"sidecar:x.ass", "sidecar:x.en.vtt", "sidecar:x.srt"}
    assert len(text.lines) == 4


def test_a_sidecar_in_windows_1252_is_read(tmp_path):
    video = write_video(tmp_path / "old.mp4", seconds=1.0)
    (tmp_path / "old.srt").write_bytes("1\n00:00:01,000 --> 00:00:02,000\nCaf\xe9 cr\xe8me\n".encode("cp1252"))
    assert [line.text for line in ts.read_text(video).lines] == ["Café crème"]


# --- audio -----------------------------------------------------------------------------------------------------


def test_audio_is_read_as_16k_mono_float32(tmp_path):
    video = write_with_audio(tmp_path / "tone.mp4", seconds=1.0, audio_seconds=2.0)  # 440 Hz at 48 kHz
    audio = ts.read_audio_16k(video)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / ts.SAMPLE_RATE - 2.0) < 0.1
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * ts.SAMPLE_RATE / len(audio) - 440) < 5


def test_audio_chunks_are_bounded_and_end_in_the_quiet(tmp_path):
    rate = 48000
    burst = (0.3 * np.sin(2 * np.pi * 300 * np.arange(round(0.9 * rate)) / rate)).astype(np.float32)
    period = np.concatenate([burst, np.zeros(round(0.3 * rate), np.float32)])  # 0.9 s of tone, 0.3 s of silence
    video = write_speech_video(tmp_path / "bursts.mkv", np.tile(period, 14), offset=0.0, seconds=16.0)
    chunks = list(ts.audio_chunks_16k(video, chunk_seconds=4.0))
    assert np.array_equal(np.concatenate([c.samples for c in chunks]), ts.read_audio_16k(video))
    assert all(len(c.samples) <= 4 * ts.SAMPLE_RATE for c in chunks)
    assert len(chunks) >= 4
    assert abs(chunks[0].offset) < 0.05
    for before, after in zip(chunks, chunks[1:]):
        assert after.offset == pytest.approx(before.offset + len(before.samples) / ts.SAMPLE_RATE)
        from_silence_middle = abs((after.offset - 1.05 + 0.6) % 1.2 - 0.6)
        assert from_silence_middle < 0.15, f"a chunk ends inside a burst, at {after.offset:.2f} s"


def test_a_video_without_audio_gets_a_note(tmp_path, pocketsphinx):
    text = ts.read_speech(write_video(tmp_path / "mute.mp4", seconds=1.0), pocketsphinx)
    assert text.lines == [] and text.problems == []
    assert [str(note) for note in text.notes] == ["speech:pocketsphinx: no audio track"]


def test_damaged_audio_gives_one_problem(tmp_path, pocketsphinx):
    tone = (0.3 * np.sin(2 * np.pi * 300 * np.arange(48000 * 4) / 48000)).astype(np.float32)
    video = write_speech_video(tmp_path / "damaged.mkv", tone, offset=0.0, seconds=4.0)
    data = bytearray(video.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    video.write_bytes(bytes(data))
    text = ts.read_speech(video, pocketsphinx)
    assert [problem.source for problem in text.problems] == ["speech:pocketsphinx"]
    assert "\n" not in str(text.problems[0])


# --- speech ----------------------------------------------------------------------------------------------------


def test_group_words_splits_lines_at_pauses_and_length():
    words = [(0.0, 0.4, "one"), (0.5, 0.9, "two"), (2.0, 2.3, "three"), (2.4, 6.9, "four"), (7.0, 7.2, "five")]
    assert list(ts.group_words(words, seconds=5.0, gap=0.8)) == [
        ts.Line(0.0, 0.9, "one two"),  # then a 1.1 s pause
        ts.Line(2.0, 6.9, "three four"),
        ts.Line(7.0, 7.2, "five"),  # "three four five" would last 5.2 s
    ]


def test_pocketsphinx_hears_nothing_in_silence(pocketsphinx):
    assert list(pocketsphinx.transcribe(np.zeros(5 * ts.SAMPLE_RATE, np.float32))) == []
    assert list(pocketsphinx.transcribe(np.zeros(0, np.float32))) == []


FOX = "the quick brown fox jumps over the lazy dog"
CONTENT = {"quick", "brown", "fox", "jumps", "lazy", "dog"}


@pytest.mark.slow
@pytest.mark.parametrize("ext, offset, chunk_seconds", [("mp4", 3.0, 60.0), ("webm", 4.3, 4.0)])
def test_pocketsphinx_hears_espeak_speech_at_its_time(tmp_path, pocketsphinx, ext, offset, chunk_seconds):
    speech = speak(FOX)
    spoken = len(speech) / 48000
    video = write_speech_video(tmp_path / f"fox.{ext}", speech, offset=offset, seconds=offset + spoken + 2.0)
    text = ts.read_speech(video, pocketsphinx, chunk_seconds=chunk_seconds)
    assert text.problems == [] and text.notes == []
    heard = {word for line in text.lines for word in line.text.split()}
    assert len(heard & CONTENT) >= 2, f"heard {[line.text for line in text.lines]}"
    assert {line.source for line in text.lines} == {"speech:pocketsphinx"}
    assert {line.language for line in text.lines} == {"en"}
    # Only the speech is heard, where it is: from its offset to its end (the silence around it gives nothing).
    assert abs(text.lines[0].start - offset) < 0.5
    assert all(offset - 0.3 < line.start < line.end < offset + spoken + 0.3 for line in text.lines)


@pytest.mark.slow
def test_pocketsphinx_gives_the_same_lines_whatever_it_heard_before(tmp_path, pocketsphinx):
    fox = write_speech_video(tmp_path / "fox.mp4", speak(FOX), offset=1.0, seconds=6.0)
    other = write_speech_video(tmp_path / "rain.mp4", speak("heavy rain is expected tomorrow morning"), offset=0.5, seconds=4.0)
    first = ts.read_speech(fox, pocketsphinx).lines
    ts.read_speech(other, pocketsphinx)
    assert first and ts.read_speech(fox, pocketsphinx).lines == first


def test_unknown_speech_engine_is_a_usage_error():
    with pytest.raises(UsageError, match="pocketsphinx, whisper"):
        ts.speech_engine("kaldi")


def test_whisper_without_faster_whisper_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # as if not installed, even where it is
    with pytest.raises(ModelUnavailable) as caught:
        ts.speech_engine("whisper", model_size="tiny")
    message = str(caught.value)
    assert "vidsearch[whisper]" in message and "\n" not in message


def test_whisper_weights_that_cannot_be_had_are_one_line(monkeypatch):
    """The real loading call, with a WhisperModel that fails as the Hugging Face download does offline."""
    calls = []

    class OfflineWhisperModel:
        def __init__(self, size, **options):
            calls.append((size, options))
            raise OSError("We couldn't connect to 'https://huggingface.co' to load this file,\ncheck your connection.")

    fake_fw = type(sys)("faster_whisper")
    fake_fw.WhisperModel = OfflineWhisperModel
    fake_ct2 = type(sys)("ctranslate2")
    fake_ct2.get_cuda_device_count = lambda: 0
    monkeypatch.setitem(sys.modules, "faster_whisper", fake_fw)
    monkeypatch.setitem(sys.modules, "ctranslate2", fake_ct2)
    with pytest.raises(ModelUnavailable) as caught:
        ts.speech_engine("whisper", model_size="base")
    message = str(caught.value)
    assert "'base'" in message and "huggingface.co" in message and "\n" not in message
    assert calls == [("base", {"device": "cpu", "compute_type": "int8"})]
