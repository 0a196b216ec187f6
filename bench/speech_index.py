"""Indexing time with and without `--speech pocketsphinx` on a 5-minute file, or a library of --files (issue 13).

Builds a video of --seconds (default 300: h264 160x120 at 10 fps + AAC 48 kHz mono; cut into --files videos of
equal length, a library, when --files > 1) whose audio is espeak-ng speech for most of its length (bench/asr.py's
sentences and voices, one after the other, 0.7 s apart), and a
2-second clip with one spoken sentence for the fixed cost of a run. Then, alternating, --repeat times each:
- `vidsearch index VIDEO --index FRESH --model M --device cpu [--workers 0]` as a subprocess, without and with
  `--speech pocketsphinx` (a fresh index every run);
- the same on the 2-second clip: the fixed cost of a run (start-up, model and engine loading, FAISS write);
- in-process references, each alone: pocketsphinx's transcription (`read_speech`, engine loaded beforehand, and
  the engine's load), and per model decoding (`job_events` of the file's DecodeJob) and encoding
  (`Encoder.encode_clips`, one window a pass as `index` does on a CPU).
Models: `tiny` (what the tests use) and `clip-b32`, the default, whose OpenAI weights cannot be downloaded here: the
script fills a Hugging Face cache with random ViT-B/32 weights (bench/query.py's `fill_hf_cache`; the same cost).

The overlap: `index` loads the engine, then reads a video's text in a background thread while its frames decode and
encode. With W the overlappable work (decoding + encoding alone) and A the transcription alone (L its engine load), a
serial run would take `without + L + A` and a perfectly overlapped one `without + L + A - min(A, W)`;
hidden = (serial - with) / min(A, W).
Wall times are the best of --repeat; CPU s is the user + system time of the process and its decode workers. The
machine is shared: each run starts in a quiet moment (other work below 0.3 cores over 3 s, waiting up to 3 min), and
"others' CPU s" is what the rest of the machine used during the run (/proc/stat less this run's CPU).

usage: python bench/speech_index.py [--seconds 300] [--files 1] [--repeat 2] [--models tiny clip-b32] [--out bench-out/speech-index]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asr import GAP_SECONDS, OFFSET, VOICES, build_speech, cpu_model, timed  # noqa: E402  (bench/asr.py)
from media import speak, write_speech_video  # noqa: E402  (tests/media.py, on the path through asr)
from query import fill_hf_cache  # noqa: E402  (bench/query.py)

VIDSEARCH = str(Path(sys.executable).with_name("vidsearch"))
ENGINE = "pocketsphinx"
ENV = dict(os.environ)  # set in main(): bytecode cached outside the checkout, the Hugging Face cache offline


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def busy_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as fh:
        ticks = [int(x) for x in fh.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


PATIENCE = [180.0]  # seconds wait_quiet waits at most; --patience sets it


def wait_quiet(*, cores: float = 0.3, patience: float | None = None) -> float:
    """Wait (at most `patience` s) until the machine's other work uses less than `cores` over 3 s; seconds waited.
    The machine is shared: this starts a measurement in a quiet moment, it cannot keep it quiet."""
    started = time.perf_counter()
    patience = PATIENCE[0] if patience is None else patience
    while time.perf_counter() - started < patience:
        before = busy_seconds()
        time.sleep(3.0)
        if (busy_seconds() - before) / 3.0 < cores:
            break
    return time.perf_counter() - started


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def make_videos(folder: Path, seconds: float, files: int) -> tuple[list[Path], Path, float, int]:
    """The long input (speech from OFFSET to near its end), as one video or cut into `files` videos of equal length,
    and a 2 s clip with one sentence, written once; the long input's seconds of speech and words."""
    folder.mkdir(parents=True, exist_ok=True)
    short = folder / "short" / "clip.mp4"
    # build_speech overshoots its minutes by up to a sentence and a 2 s pause per voice: aim 20 s short
    speech, blocks = build_speech((seconds - OFFSET - 20.0) / 60)
    speech = speech[: round((seconds - OFFSET - 0.5) * 48000)]
    if files == 1:
        longs = [folder / "long" / "talk.mp4"]
    else:
        longs = [folder / f"long-{files}" / f"talk-{i}.mp4" for i in range(files)]
    each = len(speech) // len(longs)
    for i, long in enumerate(longs):
        if not long.is_file():
            write_speech_video(long, speech[i * each:(i + 1) * each], offset=OFFSET, seconds=seconds / len(longs))
    if not short.is_file():
        write_speech_video(short, speak("The quick brown fox."), offset=0.2, seconds=2.0)
    return longs, short, len(speech) / 48000, sum(len(words) for _, words, _ in blocks)


def run_index(video: Path, index: Path, model: str, *, speech: bool, workers: int | None) -> dict:
    """One `vidsearch index` run into a fresh index: wall s, CPU s (the process and its workers), transcript lines."""
    shutil.rmtree(index, ignore_errors=True)
    waited = wait_quiet()
    command = [VIDSEARCH, "index", str(video), "--index", str(index), "--model", model, "--device", "cpu"]
    command += ["--speech", ENGINE] if speech else []
    command += ["--workers", str(workers)] if workers is not None else []
    for _attempt in range(3):  # the machine is shared: a run stopped by someone else's SIGTERM is run again
        cpu, busy, started = children_cpu(), busy_seconds(), time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, env=ENV)
        wall, cpu, busy = time.perf_counter() - started, children_cpu() - cpu, busy_seconds() - busy
        if proc.returncode not in (143, -15):
            break
        print(f"  (stopped by SIGTERM after {wall:.0f} s; run again)", flush=True)
        shutil.rmtree(index, ignore_errors=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    with sqlite3.connect(index / "vidsearch.db") as db:
        lines = db.execute("SELECT count(*) FROM transcripts").fetchone()[0]
    return {"wall": wall, "cpu": cpu, "lines": lines, "load": load(), "others": max(0.0, busy - cpu), "waited": waited}


def decode_encode(videos: list[Path], model: str, repeat: int) -> dict:
    """Best (wall, CPU) of decoding the files alone and of encoding their windows alone, as `index` cuts them."""
    import logging

    import torch

    from vidsearch import registry
    from vidsearch.config import IndexSettings
    from vidsearch.decode_workers import DecodeJob, Window, job_events
    from vidsearch.encoder import Encoder

    config, _ = registry.resolve(model)
    logging.disable(logging.WARNING)  # open_clip's "no pretrained weights loaded": random weights cost the same
    encoder = Encoder(config, registry.build_model(config, load_pretrained=False), torch.device("cpu"))
    logging.disable(logging.NOTSET)
    jobs = [DecodeJob(0, video, config.fps, encoder.image_size, config.window, IndexSettings().deblock)
            for video in videos]
    decodes, encodes, windows = [], [], []
    encoder.encode_clips([np.zeros((2, encoder.image_size, encoder.image_size, 3), np.uint8)])  # warm-up
    for _ in range(repeat):
        wall, cpu, events = timed(lambda: [event for job in jobs for event in job_events(job)])
        decodes.append((wall, cpu))
        windows = [e.frames for e in events if isinstance(e, Window)]
        wall, cpu, _ = timed(lambda: [encoder.encode_clips([w]) for w in windows])  # noqa: B023 (called at once)
        encodes.append((wall, cpu))
    return {"decode": min(decodes), "encode": min(encodes), "windows": [len(w) for w in windows],
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300.0, help="length of the video")
    parser.add_argument("--files", type=int, default=1, help="cut the long video into this many files (a library)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each; the best wall time is reported")
    parser.add_argument("--models", nargs="+", default=["tiny", "clip-b32"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 0], help="--workers values (1 is the default)")
    parser.add_argument("--out", type=Path, default=Path("bench-out/speech-index"))
    parser.add_argument("--patience", type=float, default=180.0, help="seconds to wait at most for a quiet moment")
    parser.add_argument("--report", type=Path, help="print the tables of an earlier run's results.json and stop")
    args = parser.parse_args()
    PATIENCE[0] = args.patience
    if args.report:
        report(json.loads(args.report.read_text()))
        return
    out = args.out.resolve()
    ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    ENV.update(PYTHONPYCACHEPREFIX=str(out / "pycache"), HF_HOME=str(out / "hf"), HF_HUB_OFFLINE="1")
    os.environ.update(HF_HOME=ENV["HF_HOME"], HF_HUB_OFFLINE="1")
    began, load_before, uptime = time.perf_counter(), load(), subprocess.run(["uptime"], capture_output=True,
                                                                             text=True).stdout.strip()
    if "clip-b32" in args.models:
        fill_hf_cache(out / "hf")
    longs, short, speech_seconds, words = make_videos(out / "videos", args.seconds, args.files)
    long = longs[0] if len(longs) == 1 else longs[0].parent  # what `index` is given
    print(f"video: {long} ({sum(f.stat().st_size for f in longs) / 2**20:.1f} MiB in {len(longs)} files), "
          f"{args.seconds:.0f} s, {speech_seconds:.0f} s of "
          f"espeak-ng speech ({words} words) from {OFFSET} s; clip {short} (2 s); load {load_before}", flush=True)

    from vidsearch import text_sources as ts

    runs: dict[tuple, list[dict]] = {}
    asr: list[tuple[float, float]] = []
    engine_load = []
    configs = [(model, workers, speech) for model in args.models for workers in args.workers for speech in (False, True)]
    for model in args.models:  # warm-up, not counted: bytecode, page cache, the index's first-run work
        run_index(short, out / "index", model, speech=True, workers=None)
    for r in range(args.repeat):
        for model, workers, speech in configs if r % 2 == 0 else configs[::-1]:
            for name, video in (("short", short), ("long", long)):
                if name == "short" and workers != args.workers[0]:
                    continue  # the fixed cost does not depend on --workers
                run = run_index(video, out / "index", model, speech=speech, workers=workers)
                runs.setdefault((name, model, workers, speech), []).append(run)
                print(f"  {name} {model} --workers {workers} {'--speech ' + ENGINE if speech else 'no speech'}: "
                      f"{run['wall']:.1f} s, CPU {run['cpu']:.1f} s, {run['lines']} lines, others' CPU {run['others']:.1f} s "
                      f"(waited {run['waited']:.0f} s; load {run['load']})", flush=True)
        wait_quiet()
        wall, _, engine = timed(lambda: ts.speech_engine(ENGINE))
        engine_load.append(wall)
        busy = busy_seconds()
        wall, cpu, texts = timed(lambda: [ts.read_speech(f, engine) for f in longs])  # noqa: B023 (called at once)
        others = max(0.0, busy_seconds() - busy - cpu)
        assert not any(text.problems for text in texts), [text.problems for text in texts]
        asr.append((wall, cpu, others))
        print(f"  {ENGINE} alone, one file after the other: {wall:.1f} s, CPU {cpu:.1f} s, "
              f"{sum(len(text.lines) for text in texts)} lines, others' CPU {others:.1f} s "
              f"(load {load()})", flush=True)
    refs = {}
    for model in args.models:
        wait_quiet()
        refs[model] = decode_encode(longs, model, args.repeat)
        print(f"  {model}: decode alone {refs[model]['decode'][0]:.1f} s, encode alone {refs[model]['encode'][0]:.1f} s "
              f"(windows {refs[model]['windows']})", flush=True)
    import torch

    import vidsearch

    data = {"seconds": args.seconds, "files": args.files, "repeat": args.repeat, "models": args.models, "workers": args.workers,
            "speech_seconds": speech_seconds, "words": words, "uptime": uptime, "load_before": load_before,
            "load_after": load(), "total": time.perf_counter() - began,
            "machine": f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
                       f"torch {torch.__version__} ({torch.get_num_threads()} threads), pocketsphinx "
                       f"{importlib.metadata.version('pocketsphinx')}, espeak-ng voices {', '.join(VOICES)} "
                       f"({GAP_SECONDS} s between sentences); vidsearch from {Path(vidsearch.__file__).parent}",
            "runs": [[list(k), v] for k, v in runs.items()], "asr": asr, "engine_load": engine_load, "refs": refs}
    (out / "results.json").write_text(json.dumps(data))
    report(data)


def report(data: dict) -> None:
    """The tables, from what main() measured (also saved as results.json: `--report FILE` prints them again)."""
    runs = {tuple(k): v for k, v in data["runs"]}
    models, workers_list, seconds, refs = data["models"], data["workers"], data["seconds"], data["refs"]
    engine_load, asr = data["engine_load"], [tuple(x) for x in data["asr"]]

    def best(key):
        return min(runs[key], key=lambda run: run["wall"])

    print(f"\nmachine: {data['machine']}")
    print(f"uptime before: {data['uptime']}\nload average {data['load_before']} before, {data['load_after']} after; "
          f"whole run {data['total']:.0f} s")
    files = data.get("files", 1)
    print(f"video: {seconds:.0f} s{f' in {files} files' if files > 1 else ''}, h264 160x120 at 10 fps + AAC 48 kHz "
          f"mono, {data['speech_seconds']:.0f} s of speech "
          f"({data['words']} script words); best of {data['repeat']} by wall time (all runs listed); a fresh index each "
          "run\n")
    best_asr = min(asr)
    asr_wall, asr_cpu = best_asr[:2]
    asr_others = best_asr[2] if len(best_asr) > 2 else float("nan")
    print("| in-process reference (alone) | wall s | CPU s |")
    print("|---|---|---|")
    print(f"| pocketsphinx engine load | {min(engine_load):.2f} | |")
    print(f"| pocketsphinx transcription (`read_speech`), {seconds:.0f} s (others' CPU {asr_others:.0f} s) | {asr_wall:.2f} | "
          f"{asr_cpu:.2f} |")
    for model in models:
        ref = refs[model]
        print(f"| {model}: decode ({len(ref['windows'])} windows, {sum(ref['windows'])} frames) | {ref['decode'][0]:.2f} | "
              f"{ref['decode'][1]:.2f} |")
        print(f"| {model}: encode ({ref['threads']} torch threads) | {ref['encode'][0]:.2f} | {ref['encode'][1]:.2f} |")

    print("\n`vidsearch index` (a subprocess, fresh index):\n")
    print("| model | video | --workers | speech | wall s (best) | all runs s (others' CPU s) | CPU s | transcript lines | "
          "with / without speech |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model in models:
        for name in ("short", "long"):
            for workers in workers_list:
                if name == "short" and workers != workers_list[0]:
                    continue
                for speech in (False, True):
                    key = (name, model, workers, speech)
                    run, ratio = best(key), best(key)["wall"] / best((name, model, workers, False))["wall"]
                    label = "2 s clip (fixed cost)" if name == "short" else f"{seconds:.0f} s talk"
                    label += f" in {files} files" if name != "short" and files > 1 else ""
                    walls = " ".join(f"{x['wall']:.1f} ({x.get('others', float('nan')):.0f})" for x in runs[key])
                    print(f"| {model} | {label} | {workers} | {ENGINE if speech else 'off'} | {run['wall']:.1f} | "
                          f"{walls} | {run['cpu']:.1f} | {run['lines']} | "
                          f"{ratio:.2f}x |")

    print(f"\nOverlap, from the in-process references: A = {ENGINE} alone ({asr_wall:.1f} s), L = its engine load "
          f"({min(engine_load):.1f} s, before any frame is decoded), W = decode + encode alone (the work speech can hide "
          "behind); serial = without + L + A, ideal = serial - min(A, W), hidden = (serial - with) / min(A, W):\n")
    print("| model | --workers | without s | with s | overhead s | with / without | W s | serial s | ideal s | "
          "with / ideal | hidden s | hidden share |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    summary = []
    for model in models:
        work = refs[model]["decode"][0] + refs[model]["encode"][0]
        for workers in workers_list:
            off, on = best(("long", model, workers, False))["wall"], best(("long", model, workers, True))["wall"]
            serial = off + min(engine_load) + asr_wall
            hideable = min(asr_wall, work)
            ideal, hidden = serial - hideable, serial - on
            share = f"{hidden / hideable:.0%}" if hideable >= 2.0 else "- (too little to hide behind)"
            print(f"| {model} | {workers} | {off:.1f} | {on:.1f} | {on - off:.1f} | {on / off:.2f}x | {work:.1f} | "
                  f"{serial:.1f} | {ideal:.1f} | {on / ideal:.2f}x | {hidden:.1f} | {share} |")
            summary.append(f"{model} --workers {workers}: {on / off:.2f}x without speech, {on / ideal:.2f}x ideal, "
                           f"{share.split(' ')[0]} hidden")
    print(f"\nCPU seconds (best run by wall time; the process and its decode workers): what speech adds against "
          f"{ENGINE} alone ({asr_cpu:.1f} CPU s + engine load):\n")
    print("| model | --workers | without CPU s | with CPU s | added CPU s | added / transcription alone | "
          "with: CPU s per wall s |")
    print("|---|---|---|---|---|---|---|")
    for model in models:
        for workers in workers_list:
            off, on = best(("long", model, workers, False)), best(("long", model, workers, True))
            print(f"| {model} | {workers} | {off['cpu']:.1f} | {on['cpu']:.1f} | {on['cpu'] - off['cpu']:.1f} | "
                  f"{(on['cpu'] - off['cpu']) / asr_cpu:.2f}x | {on['cpu'] / on['wall']:.2f} |")
    print("\nsummary: " + "; ".join(summary))

if __name__ == "__main__":
    main()
