"""ASR speed: pocketsphinx's real-time factor on this CPU, on synthetic espeak-ng speech (issue 13).

Builds --minutes of varied English sentences spoken by espeak-ng (half in each of two voices, one after the other:
en-us+f2, the tests' voice, then en-us+m3), muxes them into an mp4 (h264 160x120 at 10 fps + AAC 48 kHz mono) in a
temporary folder, then times, alternating, best of --repeat:
- decode + resample alone: `audio_chunks_16k` (PyAV: AAC decode, resample to 16 kHz mono, chunking);
- transcription: `read_speech(video, speech_engine("pocketsphinx"))` (the same decode, then voice activity
  detection and pocketsphinx on each utterance), as `index --speech pocketsphinx` runs it;
each with CHUNK_SECONDS 60 (the default) and 30. Real-time factor (RTF) = processing seconds / audio seconds; CPU s
is the process's CPU time (pocketsphinx is single-threaded, so CPU s / audio s is the share of one core that
speech costs). Word accuracy is against the known script: word error rate (word edit distance / script words) and
the share of script words recognised (aligned hits) - on espeak's synthetic speech, which is clean and regular; real
recordings will score worse. As a reference measured in the same run, the default visual encoder (`clip-b32`'s
ViT-B/32 shape, frame mixing, random weights: the same cost) encodes a --frames window of 224 px frames, which at
1 fps is the visual cost of that many seconds of video.

usage: python bench/asr.py [--minutes 3] [--repeat 2] [--frames 32] [--no-encoder]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vidsearch import text_sources as ts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from media import speak, write_speech_video  # noqa: E402  (tests/media.py: espeak-ng and the muxer the tests use)

VOICES = ("en-us+f2", "en-us+m3")
GAP_SECONDS = 0.7  # silence between sentences
OFFSET = 0.5  # seconds of silence before the first
SENTENCES = [  # no digits or abbreviations, so the script's words are the words espeak says
    "The quick brown fox jumps over the lazy dog.",
    "Heavy rain is expected tomorrow morning across the northern hills.",
    "Preheat the oven and grease a large baking tray with butter.",
    "Chop the onions finely and fry them until they turn golden brown.",
    "Today we will talk about the history of the printing press in Europe.",
    "The committee agreed to meet again next week to review the budget.",
    "Please remember to turn off the lights when you leave the office.",
    "She walked along the beach looking for shells and smooth stones.",
    "The train to the city leaves from platform four every half hour.",
    "Our team scored twice in the second half and won the match.",
    "Water boils at a lower temperature high up in the mountains.",
    "He opened the window and listened to the birds in the garden.",
    "Add a pinch of salt and stir the sauce for another few minutes.",
    "The museum is closed on Mondays but open late on Friday evenings.",
    "In this lecture we look at how plants turn sunlight into sugar.",
    "The children built a small wooden boat and sailed it on the pond.",
    "Make sure your password is long and never share it with anyone.",
    "The market sells fresh fruit, vegetables and bread every morning.",
    "A strong wind blew the leaves across the empty parking lot.",
    "The doctor told him to drink more water and get some rest.",
    "We drove through the desert for hours without seeing another car.",
    "The new library has quiet rooms for reading and group study.",
    "Slice the tomatoes and place them on top of the warm bread.",
    "Scientists found a new species of frog in the tropical forest.",
    "The meeting was moved to the large room on the third floor.",
    "My grandmother keeps her old letters in a box under the bed.",
    "The bridge was painted red so ships could see it in the fog.",
    "Interest rates may rise again if prices keep going up this year.",
    "The cat sat on the warm roof and watched the people below.",
    "Let the dough rest for an hour before you roll it out.",
    "The river flooded the fields after a week of heavy storms.",
    "Students should hand in their essays before the end of the month.",
    "The pilot said we would land a little earlier than planned.",
    "Fresh snow covered the village and the roads were closed.",
    "The band played their best known songs at the summer festival.",
    "Keep the camera steady and let the light come from behind you.",
    "The farmer sold his apples at the market on Saturday morning.",
    "We need more volunteers to help clean the park this weekend.",
    "The old clock in the hall stopped working many years ago.",
    "Mix the flour with the eggs and slowly pour in the milk.",
    "The lecture ended with a short question and answer session.",
    "A small boat appeared on the horizon just before sunset.",
    "The company plans to open three new stores in the spring.",
    "Turn left at the church and the hotel is on your right.",
    "The players trained hard all summer for the final game.",
    "Bees carry pollen from flower to flower as they collect nectar.",
    "The soup tastes better if you cook it slowly on a low heat.",
    "He forgot his umbrella and got wet on the way home.",
]


def script_words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def build_speech(minutes: float) -> tuple[np.ndarray, list[tuple[str, list[str], float]]]:
    """About `minutes` of sentences at 48 kHz: an equal share in each voice, one voice after the other, the sentences
    running on (and cycling) across them. Also (voice, the script's words, start s in the track) for each voice."""
    rate, parts, blocks, count, length = 48000, [], [], 0, 0
    gap, pause = np.zeros(round(GAP_SECONDS * rate), np.float32), np.zeros(2 * rate, np.float32)
    for voice in VOICES:
        start, words = length / rate, []
        while length - start * rate < minutes * 60 * rate / len(VOICES):
            sentence = SENTENCES[count % len(SENTENCES)]
            parts += [speak(sentence, voice=voice), gap]
            length += len(parts[-2]) + len(gap)
            words += script_words(sentence)
            count += 1
        blocks.append((voice, words, start))
        parts.append(pause)  # a longer pause between voices, so no recognised line spans both
        length += len(pause)
    return np.concatenate(parts), blocks


def voice_of(start: float, blocks: list[tuple[str, list[str], float]]) -> int:
    """Which voice's block a line starting at `start` (s from the video's start) belongs to: cut in each pause."""
    return sum(start >= block_start + OFFSET - 1.0 for _, _, block_start in blocks[1:])


def alignment(reference: list[str], hypothesis: list[str]) -> tuple[int, int]:
    """(word edit distance, hits): Levenshtein over words; among the cheapest alignments, the most matched words."""
    previous = [(j, 0) for j in range(len(hypothesis) + 1)]  # (cost, -hits), compared as tuples
    for i, ref in enumerate(reference, 1):
        row = [(i, 0)]
        for j, hyp in enumerate(hypothesis, 1):
            cost, neg_hits = previous[j - 1]
            diagonal = (cost, neg_hits - 1) if ref == hyp else (cost + 1, neg_hits)
            row.append(min(diagonal, (previous[j][0] + 1, previous[j][1]), (row[j - 1][0] + 1, row[j - 1][1])))
        previous = row
    cost, neg_hits = previous[-1]
    return cost, -neg_hits


def timed(run: Callable[[], object]) -> tuple[float, float, object]:
    """(wall s, process CPU s, result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def decode_all(path: Path, chunk_seconds: float) -> int:
    return sum(len(chunk.samples) for chunk in ts.audio_chunks_16k(path, chunk_seconds=chunk_seconds))


def encoder_seconds(frames: int, repeat: int) -> tuple[float, float, int]:
    """Best (wall s, CPU s) of `clip-b32`'s encoder on one `frames`-frame 224 px window, and torch's thread count."""
    import torch

    from vidsearch import registry
    from vidsearch.encoder import Encoder

    config, _ = registry.resolve("clip-b32")
    logging.disable(logging.WARNING)  # open_clip's "no pretrained weights loaded": random weights are the point
    encoder = Encoder(config, registry.build_model(config, load_pretrained=False), torch.device("cpu"))
    logging.disable(logging.NOTSET)
    clip = np.random.default_rng(0).integers(0, 255, size=(frames, 224, 224, 3), dtype=np.uint8)
    encoder.encode_clip(clip)  # warm-up at the timed shape
    best = min((timed(lambda: encoder.encode_clip(clip))[:2] for _ in range(repeat)), key=lambda t: t[0])
    return best[0], best[1], torch.get_num_threads()


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the synthetic speech")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each; the best (by wall time) is reported")
    parser.add_argument("--frames", type=int, default=32, help="frames in the encoder reference window (1 fps: seconds)")
    parser.add_argument("--no-encoder", action="store_true", help="skip the visual encoder reference (imports torch)")
    args = parser.parse_args()
    chunks = (ts.CHUNK_SECONDS, 30.0)

    began, load_before = time.perf_counter(), load()
    with tempfile.TemporaryDirectory(prefix="vidsearch-asr-") as folder:
        made = time.perf_counter()
        speech, blocks = build_speech(args.minutes)
        seconds = len(speech) / 48000 + 1.0
        video = write_speech_video(Path(folder) / "speech.mp4", speech, offset=OFFSET, seconds=seconds)
        made = time.perf_counter() - made
        print(f"built {seconds:.0f} s of speech ({sum(len(words) for _, words, _ in blocks)} words; "
              f"{', '.join(f'{voice} from {start + OFFSET:.0f} s' for voice, _, start in blocks)}) into "
              f"{video.stat().st_size / 2**20:.1f} MiB of mp4 in {made:.1f} s", flush=True)

        engine_load, _, engine = timed(lambda: ts.speech_engine("pocketsphinx"))
        audio_seconds = decode_all(video, ts.CHUNK_SECONDS) / ts.SAMPLE_RATE
        runs: dict[tuple[str, float], list[tuple[float, float]]] = {}
        heard: dict[float, list[ts.TextLine]] = {}
        for _ in range(args.repeat):
            for chunk in chunks:
                wall, cpu, _ = timed(lambda: decode_all(video, chunk))  # noqa: B023 (called at once)
                runs.setdefault(("decode", chunk), []).append((wall, cpu))
                wall, cpu, text = timed(lambda: ts.read_speech(video, engine, chunk_seconds=chunk))  # noqa: B023
                assert not text.problems, text.problems
                runs.setdefault(("asr", chunk), []).append((wall, cpu))
                heard[chunk] = text.lines
                print(f"  chunk {chunk:.0f} s: decode {runs['decode', chunk][-1][0]:.2f} s, "
                      f"pocketsphinx {wall:.2f} s (load {load()})", flush=True)
        encoder = None if args.no_encoder else encoder_seconds(args.frames, args.repeat)
    load_after, total = load(), time.perf_counter() - began

    print(f"\nmachine: {platform.machine()}, {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
          f"pocketsphinx {importlib.metadata.version('pocketsphinx')}, espeak-ng voices {', '.join(VOICES)}; "
          f"load average {load_before} before, {load_after} after; whole run {total:.0f} s")
    print(f"audio: {audio_seconds:.1f} s of espeak-ng speech (synthetic: clean and regular) in an mp4 (AAC 48 kHz mono); "
          f"best of {args.repeat} by wall time; pocketsphinx engine load {engine_load:.2f} s (not in the rows)\n")
    best = {key: min(values) for key, values in runs.items()}
    print("| step | CHUNK_SECONDS | wall s | CPU s | RTF (wall s / audio s) | CPU s / audio s | audio s per wall s | "
          "vs chunk 60 |")
    print("|---|---|---|---|---|---|---|---|")
    for step, name in (("decode", "decode + resample to 16 kHz (`audio_chunks_16k`)"),
                       ("asr", "pocketsphinx (`read_speech`: decode, VAD, recognition)")):
        for chunk in chunks:
            wall, cpu = best[step, chunk]
            print(f"| {name} | {chunk:.0f} | {wall:.2f} | {cpu:.2f} | {wall / audio_seconds:.4f} | {cpu / audio_seconds:.4f} | "
                  f"{audio_seconds / wall:.0f} | {wall / best[step, ts.CHUNK_SECONDS][0]:.2f}x |")

    print("\nWord accuracy against the script (espeak-ng synthetic speech; lines split between voices at the pause):\n")
    print("| voice | script words | " + " | ".join(f"chunk {c:.0f}: word error rate | chunk {c:.0f}: script words recognised"
                                                   for c in chunks) + " |")
    print("|---|---|" + "---|---|" * len(chunks))
    scores = {}
    for index, (voice, words, _) in enumerate([*blocks, ("all", [w for _, ws, _ in blocks for w in ws], 0.0)]):
        cells = []
        for chunk in chunks:
            lines = heard[chunk] if voice == "all" else [line for line in heard[chunk] if voice_of(line.start, blocks) == index]
            distance, hits = alignment(words, script_words(" ".join(line.text for line in lines)))
            scores[voice, chunk] = distance / len(words)
            cells.append(f"{distance / len(words):.2f} | {hits / len(words):.2f} ({hits})")
        print(f"| {voice} | {len(words)} | {' | '.join(cells)} |")
    texts = [script_words(" ".join(line.text for line in heard[chunk])) for chunk in chunks]
    distance, _ = alignment(texts[0], texts[1])
    print(f"\nchunks of 30 s against 60 s: {len(heard[30.0])} and {len(heard[ts.CHUNK_SECONDS])} lines, "
          f"{'identical' if heard[30.0] == heard[ts.CHUNK_SECONDS] else 'not identical'}; their words differ by "
          f"{distance} edits in {len(texts[0])} (utterances are cut where a chunk ends)")

    asr_wall, asr_cpu = best["asr", ts.CHUNK_SECONDS]
    if encoder is not None:
        wall, cpu, threads = encoder
        print("\n| reference (same run) | wall s | CPU s | wall s per video s at 1 fps | CPU s per video s | "
              "pocketsphinx / encoder (wall) | pocketsphinx / encoder (CPU) |")
        print("|---|---|---|---|---|---|---|")
        print(f"| clip-b32 encoder, {args.frames} frames at 224 px, {threads} torch threads | {wall:.2f} | {cpu:.2f} | "
              f"{wall / args.frames:.3f} | {cpu / args.frames:.3f} | {asr_wall / audio_seconds / (wall / args.frames):.2f}x | "
              f"{asr_cpu / audio_seconds / (cpu / args.frames):.2f}x |")
    decode_share = best["decode", ts.CHUNK_SECONDS][0] / asr_wall
    by_voice = ", ".join(f"{voice} {scores[voice, ts.CHUNK_SECONDS]:.2f}" for voice in VOICES)
    summary = (f"\nsummary: pocketsphinx RTF {asr_wall / audio_seconds:.3f} ({audio_seconds / asr_wall:.1f}x real time, "
               f"{100 * asr_cpu / audio_seconds:.0f}% of one core), decoding {100 * decode_share:.1f}% of it; 30 s chunks "
               f"{best['asr', 30.0][0] / asr_wall:.2f}x the time of 60 s; word error rate {scores['all', ts.CHUNK_SECONDS]:.2f} "
               f"on espeak speech ({by_voice})")
    if encoder is not None:
        summary += f"; {asr_cpu / audio_seconds / (encoder[1] / args.frames):.2f}x the clip-b32 encoder's CPU time per video second"
    print(summary)


if __name__ == "__main__":
    main()
