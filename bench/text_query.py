"""Query latency with FTS plus vectors at 100k segments and 100k transcript lines (issue 13).

The index: bench/query.py's `build_index` (a real `vidsearch index` of one 2 s video with the default model,
`clip-b32`, whose Hugging Face cache is filled with random ViT-B/32 weights, then --videos x --segments random 512-d
unit vectors through `Database.save_video`), plus --lines transcript lines per video inserted in one transaction
(the FTS5 triggers index them as `index` does): line j of a video spans 4j + 0.5 to 4j + 3.5 s (inside segment j,
so a line can fuse with a visual moment), 6-16 words drawn from a Zipf-like distribution (p ~ 1/rank) over a
vocabulary whose head is spoken English's function words (the, and, to, i, you, ... like, know, going), then the
content words of bench/asr.py's sentences, then made-up words; "preheat the oven" is planted in 50 lines.

Timed, in-process and warm (after one search of each kind), median of --runs, interleaved: `Searcher.search(terms,
k=10, mode=visual|speech|both)` on the same index with torch at one thread (as `vidsearch query` runs it), for a rare
word, a mid-frequency word, a common word, a query of only common words, a quoted phrase holding a stop word, and a
phrase of two common words; with the parts of the speech side: the count of matching lines, bm25 of every matching
line (no sort), the FTS5 top 200 by rank alone, `search_text` (top 200 by bm25, joined to the videos, with highlight())
and, for a query of several words, the FTS5 top 200 of lines holding all of them (a possible fix). Then the CLI end to end: `vidsearch
query WORDS --json --index DIR --device cpu --mode M` as a subprocess (a cold process, page cache warm, bytecode
cached), median of --cli-runs after a warm-up, to the printed JSON. The machine is shared: each block starts in a quiet
moment (bench/speech_index.py's `wait_quiet`), and the CPU seconds the rest of the machine used meanwhile are shown.

usage: python bench/text_query.py [--videos 1000] [--segments 100] [--lines 100] [--runs 30] [--cli-runs 5]
                                  [--out bench-out/text-query]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asr import SENTENCES, cpu_model, script_words  # noqa: E402  (bench/asr.py)
from query import build_clip_index, load  # noqa: E402  (bench/query.py)
from speech_index import busy_seconds, children_cpu, wait_quiet  # noqa: E402  (bench/speech_index.py)

VIDSEARCH = str(Path(sys.executable).with_name("vidsearch"))
ENV = dict(os.environ)  # set in main(): bytecode cached outside the checkout, the Hugging Face cache offline
# Spoken English's most frequent words, most frequent first (the function words a transcript is full of).
HEAD = ("the and to i you a of it that in is we so this like know was just what for they on do have but with be not "
        "are can if going think at really people one there about get all my me right well out or your now go see then "
        "time from because when more them how want make some good here an as by has were will its").split()
PHRASE = "preheat the oven"
SOURCE = "speech:pocketsphinx"


def vocabulary(size: int) -> list[str]:
    """HEAD, then the content words of bench/asr.py's sentences, then made-up words (vowels a, i, o, u only, so the
    porter stemmer leaves them whole), `size` in all, by rank."""
    words = list(dict.fromkeys(HEAD + [w for s in SENTENCES for w in script_words(s)]))
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aiou"]
    rng = np.random.default_rng(7)
    made = set(words)
    while len(words) < size:
        word = "".join(rng.choice(syllables, rng.integers(2, 4)))
        if word not in made:
            made.add(word)
            words.append(word)
    return words[:size]


def add_transcripts(index: Path, *, lines: int, vocab: list[str], seed: int = 0) -> dict:
    """Transcript lines for every video of the index, in one transaction; returns the words picked per rank."""
    from vidsearch.db import Database

    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    db = Database(index / "vidsearch.db")
    videos = [row[0] for row in db.db.execute("SELECT id FROM videos WHERE path LIKE '/videos/%' ORDER BY id")]
    lengths = rng.integers(6, 17, size=len(videos) * lines)
    tokens = rng.choice(len(vocab), size=int(lengths.sum()), p=p)
    texts, at = [], 0
    for n in lengths:
        texts.append(" ".join(vocab[t] for t in tokens[at : at + n]))
        at += n
    for i in rng.choice(len(texts), 50, replace=False):  # a distinctive phrase, said now and then
        words = texts[i].split()
        words[rng.integers(0, len(words))] = PHRASE
        texts[i] = " ".join(words)
    started = time.perf_counter()
    stamp = json.dumps({"sidecars": [], "speech": "pocketsphinx"})
    with db.db.atomic():
        db.db.conn.executemany(
            "INSERT INTO transcripts (video_id, start, end, source, language, text) VALUES (?, ?, ?, ?, ?, ?)",
            ((video, 4.0 * j + 0.5, 4.0 * j + 3.5, SOURCE, "en", texts[v * lines + j])
             for v, video in enumerate(videos) for j in range(lines)))
        db.db.conn.executemany("INSERT INTO text_sources (video_id, source, language, lines, problem, note) "
                               "VALUES (?, ?, 'en', ?, NULL, NULL)", ((video, SOURCE, lines) for video in videos))
        db.db.conn.executemany("UPDATE videos SET text_stamp = ? WHERE id = ?", ((stamp, video) for video in videos))
    seconds = time.perf_counter() - started
    db.close()
    return {"seconds": seconds, "lines": len(texts), "tokens": int(lengths.sum())}


def queries(vocab: list[str]) -> list[tuple[str, str]]:
    """(label, query text) in the order of the tables."""
    return [
        ("rare word", vocab[5000]),
        ("mid-frequency word", vocab[300]),
        ("common word", "know"),
        ("only common words", "what do you think"),
        ("phrase with a stop word", f'"{PHRASE}"'),
        ("phrase of common words", '"you know"'),
    ]


def median_ms(values: list[float]) -> float:
    return 1000 * statistics.median(values)


def in_process(index: Path, cases: list[tuple[str, str]], runs: int) -> dict:
    """Median seconds of each (query, mode) search and of the speech side's parts, warm, interleaved."""
    import torch

    from vidsearch.indexdir import IndexDir
    from vidsearch.search import Searcher
    from vidsearch.terms import parse_query
    from vidsearch.text_search import fts_query, search_text

    torch.set_num_threads(1)  # as `vidsearch query` runs a text query
    searcher = Searcher(IndexDir(index), device="cpu")
    db = searcher.index.db.db
    parts = {
        "count": lambda q: db.execute("SELECT count(*) FROM transcripts_fts WHERE transcripts_fts MATCH ?", [q]).fetchone(),
        "bm25 of all": lambda q: db.execute("SELECT max(rank) FROM transcripts_fts WHERE transcripts_fts MATCH ?",
                                            [q]).fetchone(),
        "fts top 200": lambda q: db.execute("SELECT rowid FROM transcripts_fts WHERE transcripts_fts MATCH ? ORDER BY rank "
                                            "LIMIT 200", [q]).fetchall(),
        # a possible fix when every word is common: lines with all the words (bm25 ranks them first anyway)
        "all words top 200": lambda q: db.execute("SELECT rowid FROM transcripts_fts WHERE transcripts_fts MATCH ? ORDER "
                                                  "BY rank LIMIT 200", [q.replace(" OR ", " AND ")]).fetchall(),
    }
    times: dict[tuple[str, str], list[float]] = {}
    found: dict[str, dict] = {}
    for label, text in cases:  # warm-up: the text tower, FAISS, SQLite's pages
        terms = parse_query(text)
        query = fts_query(terms)
        every = query.replace(" OR ", " AND ")
        found[label] = {"fts": query, "matches": parts["count"](query)[0], "all words": every,
                        "all words matches": parts["count"](every)[0],
                        "moments": {m: len(searcher.search(terms, k=10, mode=m)) for m in ("visual", "speech", "both")}}
    for _ in range(runs):
        for label, text in cases:
            terms = parse_query(text)
            query = fts_query(terms)
            for mode in ("visual", "speech", "both"):
                started = time.perf_counter()
                searcher.search(terms, k=10, mode=mode)
                times.setdefault((label, mode), []).append(time.perf_counter() - started)
            for name, run in parts.items():
                started = time.perf_counter()
                run(query)
                times.setdefault((label, name), []).append(time.perf_counter() - started)
            started = time.perf_counter()
            search_text(searcher.index.db, terms, limit=200)
            times.setdefault((label, "search_text"), []).append(time.perf_counter() - started)
            started = time.perf_counter()
            searcher.query_vector(terms)
            times.setdefault((label, "encode text"), []).append(time.perf_counter() - started)
    return {"times": times, "found": found}


def cli_wall(index: Path, text: str, mode: str, runs: int) -> list[float]:
    """Seconds to the printed JSON of `runs` `vidsearch query` processes after a warm-up."""
    command = [VIDSEARCH, "query", text, "--json", "--index", str(index), "--device", "cpu", "--mode", mode]
    walls = []
    for i in range(runs + 1):
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        line = proc.stdout.readline()
        printed = time.perf_counter() - started
        rest, errors = proc.communicate()
        if proc.returncode or "hits" not in json.loads(line):
            raise SystemExit(f"query failed ({proc.returncode}): {errors.strip() or line + rest}")
        if i:
            walls.append(printed)
    return walls


def imports_torch(index: Path, text: str, mode: str) -> bool:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "vidsearch", "query", text, "--json", "--index",
                           str(index), "--device", "cpu", "--mode", mode], check=True, capture_output=True, text=True,
                          env=ENV)
    return any(re.search(r"\|\s+torch$", line) for line in proc.stderr.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--segments", type=int, default=100, help="segments per video")
    parser.add_argument("--lines", type=int, default=100, help="transcript lines per video")
    parser.add_argument("--vocabulary", type=int, default=30000, help="distinct words")
    parser.add_argument("--runs", type=int, default=30, help="in-process searches of each kind (after a warm-up)")
    parser.add_argument("--cli-runs", type=int, default=5, help="CLI runs of each kind (after a warm-up)")
    parser.add_argument("--out", type=Path, default=Path("bench-out/text-query"))
    args = parser.parse_args()
    out = args.out.resolve()
    ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    ENV.update(PYTHONPYCACHEPREFIX=str(out / "pycache"), HF_HOME=str(out / "hf"), HF_HUB_OFFLINE="1")
    os.environ.update(HF_HOME=ENV["HF_HOME"], HF_HUB_OFFLINE="1")
    began, load_before = time.perf_counter(), load()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()

    index, built = build_clip_index(out, ENV, videos=args.videos, segments=args.segments)
    vocab = vocabulary(args.vocabulary)
    text = add_transcripts(index, lines=args.lines, vocab=vocab)
    size = sum(f.stat().st_size for f in index.iterdir() if f.is_file())
    print(f"built: {args.videos * args.segments} segments in {built:.1f} s; {text['lines']} transcript lines "
          f"({text['tokens']} words) in {text['seconds']:.1f} s (one transaction); index {size / 2**20:.0f} MiB "
          f"(load {load()})", flush=True)

    cases = queries(vocab)
    wait_quiet()
    busy, own, started = busy_seconds(), time.process_time(), time.perf_counter()
    measured = in_process(index, cases, args.runs)
    times, found = measured["times"], measured["found"]
    others = {"in-process": (max(0.0, busy_seconds() - busy - (time.process_time() - own)),
                             time.perf_counter() - started)}
    print(f"in-process done (load {load()})", flush=True)
    cli_cases = [cases[0], cases[2], cases[3]]
    cli = {}
    for label, text_ in cli_cases:
        wait_quiet()
        busy, own, started = busy_seconds(), children_cpu(), time.perf_counter()
        for mode in ("visual", "speech", "both"):
            cli[label, mode] = cli_wall(index, text_, mode, args.cli_runs)
        others[label] = (max(0.0, busy_seconds() - busy - (children_cpu() - own)), time.perf_counter() - started)
    torch_in = {mode: imports_torch(index, cases[2][1], mode) for mode in ("visual", "speech", "both")}
    load_after, total = load(), time.perf_counter() - began

    import sqlite3

    import torch

    import vidsearch

    print(f"\nmachine: {platform.machine()}, {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}, torch {torch.__version__}; vidsearch from {Path(vidsearch.__file__).parent}")
    print(f"uptime before: {uptime}\nload average {load_before} before, {load_after} after; whole run {total:.0f} s")
    print(f"index: {args.videos} videos x {args.segments} segments = {args.videos * args.segments} random 512-d unit "
          f"vectors (clip-b32, random weights; IDMap2,Flat), {text['lines']} transcript lines of 6-16 words "
          f"(Zipf p ~ 1/rank over {len(vocab)} words); k=10\n")
    print(f"In-process, warm, median of {args.runs} (ms); ratios to the visual-only search of the same words. Other "
          f"work on the machine used {others['in-process'][0]:.0f} CPU s in these {others['in-process'][1]:.0f} s:\n")
    print("| query | words | FTS5 query | lines matched | visual ms | speech ms | both ms | speech / visual | "
          "both / visual |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, words in cases:
        visual, speech, both = (median_ms(times[label, m]) for m in ("visual", "speech", "both"))
        print(f"| {label} | `{words}` | `{found[label]['fts']}` | {found[label]['matches']} | {visual:.1f} | {speech:.1f} | "
              f"{both:.1f} | {speech / visual:.2f}x | {both / visual:.2f}x |")
    print("\nParts (ms, medians of the same runs): the visual side's text encoding (one torch thread) and the speech "
          "side's SQL:\n")
    print("| query | lines matched | encode text | count(*) of matches | bm25 of every match (no sort) | FTS5 top 200 by "
          "rank | search_text (top 200 by bm25, joins, highlight) | bm25 / search_text |")
    print("|---|---|---|---|---|---|---|---|")
    for label, _ in cases:
        t = {name: median_ms(times[label, name]) for name in ("encode text", "count", "bm25 of all", "fts top 200",
                                                               "search_text")}
        print(f"| {label} | {found[label]['matches']} | {t['encode text']:.1f} | {t['count']:.1f} | {t['bm25 of all']:.1f} | "
              f"{t['fts top 200']:.1f} | {t['search_text']:.1f} | {t['bm25 of all'] / t['search_text']:.0%} |")
    print("\nA possible fix for queries of only common words, measured: require all the words (AND) instead of any:\n")
    print("| query | FTS5 query | lines matched | FTS5 top 200 by rank ms | any of the words: lines | ms | ratio |")
    print("|---|---|---|---|---|---|---|")
    for label, _ in cases:
        if " OR " in found[label]["fts"]:
            every, anyof = median_ms(times[label, "all words top 200"]), median_ms(times[label, "fts top 200"])
            print(f"| {label} | `{found[label]['all words']}` | {found[label]['all words matches']} | {every:.1f} | "
                  f"{found[label]['matches']} | {anyof:.1f} | {anyof / every:.0f}x faster |")
    print(f"\n`vidsearch query WORDS --json --mode M` end to end, s to the printed JSON (median of {args.cli_runs} "
          f"after a warm-up); torch imported with --mode visual/speech/both: "
          f"{'/'.join('yes' if torch_in[m] else 'no' for m in ('visual', 'speech', 'both'))}\n")
    print("| query | visual s | speech s | both s | speech / visual | both / visual | range (all modes) s | "
          "others' CPU s / wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for label, _ in cli_cases:
        visual, speech, both = (statistics.median(cli[label, m]) for m in ("visual", "speech", "both"))
        every = [x for m in ("visual", "speech", "both") for x in cli[label, m]]
        print(f"| {label} | {visual:.2f} | {speech:.2f} | {both:.2f} | {speech / visual:.2f}x | {both / visual:.2f}x | "
              f"{min(every):.2f}-{max(every):.2f} | {others[label][0]:.0f} / {others[label][1]:.0f} |")
    (out / "results.json").write_text(json.dumps({
        "times": {" / ".join(k): v for k, v in times.items()}, "found": found,
        "cli": {" / ".join(k): v for k, v in cli.items()}, "torch": torch_in}))


if __name__ == "__main__":
    main()
