"""The typer command-line app: parse, call the library, format. The only module that prints."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import UsageError, VidsearchError

app = typer.Typer(
    help="Index folders of videos and search them with plain-language queries.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

@app.callback()
def options(verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Also show the log lines of the libraries underneath (open_clip, PyTorch, FFmpeg).")]
        = False) -> None:
    """Index folders of videos and search them with plain-language queries."""
    import logging

    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR, format="%(name)s: %(message)s")


IndexOption = Annotated[Optional[Path], typer.Option(
    "--index", help="Index folder [default: $VIDSEARCH_HOME, else the platform's user data folder].",
    show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Mode(str, Enum):
    auto = "auto"
    visual = "visual"
    speech = "speech"
    both = "both"


class Scale(str, Enum):
    segment = "segment"
    window = "window"
    auto = "auto"


class GroupBy(str, Enum):
    moment = "moment"
    video = "video"


DeviceOption = Annotated[Device, typer.Option("--device", help="auto (CUDA when present, else CPU), cpu or cuda.")]


def user_errors(command: Callable) -> Callable:
    """Turn library errors, and SQLite and file-system failures of the index, into one line on stderr and the
    error's exit code (2 for bad arguments); Ctrl-C and SIGTERM into one line and 130 / 143."""

    @wraps(command)
    def run(*args, **kwargs):
        from .errors import storage_error
        from .interrupts import Terminated

        try:
            return command(*args, **kwargs)
        except VidsearchError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            how = "terminated" if isinstance(exc, Terminated) else "interrupted"
            typer.echo(f"{how}; everything committed so far is kept", err=True)
            raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
        except (OSError, sqlite3.Error) as exc:
            problem = storage_error(exc, _opened.get("path"))
            if problem is None:
                raise
            typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(problem.exit_code) from None

    return run


_finished_read_only = threading.Event()  # set by a command that changed nothing, so main() may exit at once
_opened: dict[str, Path] = {}  # the index folder this command opened, named in storage errors


def note(line: str) -> None:
    typer.echo(f"note: {line}", err=True)


def open_index(path: Optional[Path], *, create: bool = False):
    from .indexdir import IndexDir, default_index_dir

    _opened["path"] = Path(path or default_index_dir())
    return IndexDir(_opened["path"], create=create, note=note)


@app.command()
@user_errors
def index(
    paths: Annotated[list[Path], typer.Argument(help="Video files or folders (searched recursively).", show_default=False)],
    index_dir: IndexOption = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", help="Registry name (see `vidsearch models`), model JSON file or checkpoint folder "
                        "[default: the index's model, else clip-b32].", show_default=False)] = None,
    device: DeviceOption = Device.auto,
    fps: Annotated[Optional[float], typer.Option(help="Frames sampled per second of video [default: the model's, 1.0].",
                                                 show_default=False)] = None,
    window: Annotated[Optional[int], typer.Option(
        help="Frames encoded together in one pass [default: what the model was trained on; 256 = 4.3 min at 1 fps].",
        show_default=False)] = None,
    segment: Annotated[Optional[float], typer.Option(help="Seconds per searchable segment [default: 4].",
                                                     show_default=False)] = None,
    keep_ratio: Annotated[Optional[float], typer.Option(
        help="Share of video tokens kept at inference with joint mixing; below 1 it is faster but less exact "
             "(see bench/RESULTS.md) [default: 1.0].", show_default=False)] = None,
    deblock: Annotated[Optional[bool], typer.Option(
        "--deblock/--no-deblock", help="Run H.264/HEVC's in-loop deblocking filter while decoding. --no-deblock "
        "decodes about a fifth faster, but frames drift from the exact ones: 37-54 dB PSNR at usual bitrates, 23 dB "
        "on heavily compressed video (see bench/RESULTS.md) [default: --deblock].", show_default=False)] = None,
    cuts: Annotated[Optional[bool], typer.Option(
        "--cuts/--no-cuts", help="Also end a window at each scene cut (two frames in a row whose colours differ "
        "sharply, after a shot of at least 2 s), so no window mixes two shots: on footage that cuts every few seconds, "
        "segment vectors no longer carry the next scene (see bench/RESULTS.md) [default: --cuts; an index built "
        "before this option: --no-cuts].", show_default=False)] = None,
    speech: Annotated[Optional[str], typer.Option(
        "--speech", metavar="ENGINE", help="Also transcribe what is said, from now on for this index: pocketsphinx "
        "(offline, ships with `pip install 'vidsearch[speech]'`), whisper or whisper-SIZE (faster-whisper, weights "
        "downloaded on first use; `vidsearch[whisper]`), or off. Subtitle streams and sidecar files (NAME.srt, "
        "NAME.en.vtt, NAME.ass) are always read [default: the index's choice, else off].", show_default=False)] = None,
    workers: Annotated[int, typer.Option(help="Decoding processes feeding the encoder (0: a thread).")] = 1,
    compile: Annotated[bool, typer.Option(help="torch.compile the video encoder (worth it on a GPU for long runs).")]
        = False,
    batch: Annotated[Optional[int], typer.Option(
        help="Windows encoded in one forward pass, across files (shorter ones padded to the longest, the padding "
             "masked) [default: 1 on the CPU; on a GPU as many full-length windows as fit in 85% of its free "
             "memory].", show_default=False)] = None,
    reindex: Annotated[bool, typer.Option(help="Rebuild the index when --model or the settings differ from "
                                               "what it was built with (otherwise that is refused).")] = False,
    retry_failed: Annotated[bool, typer.Option(help="Try again files that failed before and have not changed.")]
        = False,
    ray: Annotated[Optional[str], typer.Option(
        "--ray", metavar="[ADDRESS]",
        help="Decode and encode on a Ray cluster (`pip install 'vidsearch[ray]'`); this process still does all the "
             "writing. Alone (after the paths, or --ray=local) it starts a local Ray; `auto` joins the cluster "
             "`ray start --head` runs on this machine; HOST:PORT (its head node) another one. See README: "
             "Indexing on a cluster.", show_default=False)] = None,
    ray_unit: Annotated[float, typer.Option(
        "--ray-unit", metavar="SECONDS", help="With --ray: seconds of video per work unit (rounded to whole "
        "windows; with scene cuts, to whole cells of about 64 frames), so a long file spreads over many workers.")] = 120.0,
    as_json: JsonOption = False,
) -> None:
    """Index videos: decode, encode and store them with their subtitles (and, with --speech, what is said).
    Unchanged files are skipped, changed ones re-encoded, renamed or copied ones reuse their vectors, and deleted
    ones are dropped; a changed subtitle file re-reads that video's text without re-encoding it.

    Exit code 0 when every file is indexed (or skipped as unchanged), 1 when files failed in this run (one
    `failed:` line each; files that failed in earlier runs are only counted) or no video was found, 2 for bad
    arguments. A file that stopped decoding part-way is indexed up to there, with a `partial:` line. A text
    source that cannot be read (a broken subtitle file or stream, a damaged audio track) gets a `text failed:`
    line, and its video is still indexed.
    """
    from tqdm import tqdm

    from .indexdir import DB_FILE, default_index_dir
    from .indexer import VIDEO_EXTENSIONS, Indexer, check_options, find_videos

    started = time.perf_counter()
    files = find_videos(paths)
    where = ", ".join(str(p) for p in paths)
    check_options(model=model, fps=fps, window=window, segment=segment, keep_ratio=keep_ratio, workers=workers,
                  batch=batch, speech=speech)
    if ray is not None and importlib.util.find_spec("ray") is None:
        raise UsageError("--ray needs Ray: pip install 'vidsearch[ray]'")
    if ray is not None and (Path(ray).expanduser().exists() or ray_unit <= 0):
        raise UsageError(f"--ray took {ray!r} as its address; put --ray after the paths, or write --ray=ADDRESS"
                         if ray_unit > 0 else "--ray-unit must be more than 0 seconds")
    if not files and not (Path(index_dir or default_index_dir()) / DB_FILE).is_file():
        raise VidsearchError(f"no videos found under {where} (looked for {' '.join(sorted(VIDEO_EXTENSIONS))})")
    idx = open_index(index_dir, create=True)
    idx.lock_for_writing()
    options = dict(model=model, device=device.value, fps=fps, window=window, segment=segment, keep_ratio=keep_ratio,
                   deblock=deblock, cuts=cuts, speech=speech, reindex=reindex, workers=workers, compile=compile,
                   batch=batch)
    if ray is None:
        indexer = Indexer(idx, **options)
    else:
        from .ray_index import RayIndexer

        indexer = RayIndexer(idx, address=None if ray == "local" else ray, unit_seconds=ray_unit, **options)
    results = []
    with tqdm(total=len(files), unit="video", desc="indexing", file=sys.stderr, disable=None) as bar:
        for result in indexer.run(paths, files=files, retry_failed=retry_failed):
            results.append(result)
            if result.status in ("failed", "partial"):
                bar.write(f"{result.status}: {result.path}: {result.reason}", file=sys.stderr)
            for problem in result.text_problems:
                bar.write(f"text failed: {result.path}: {problem} (the video is indexed without it)", file=sys.stderr)
            for line in result.text_notes:
                bar.write(f"note: {result.path}: {line}", file=sys.stderr)
            video_seconds = sum(r.seconds for r in results)
            bar.set_postfix_str(f"{video_seconds / (time.perf_counter() - started):.1f} video-s/s")
            if result.status != "removed":
                bar.update()
    idx.close()
    statuses = ("indexed", "partial", "reused", "text_updated", "unchanged", "failed", "earlier_failure", "removed")
    counts = {s: sum(r.status == s for r in results) for s in statuses}
    wall = time.perf_counter() - started
    listed = {s: [{"path": r.path, "reason": r.reason} for r in results if r.status == s]
              for s in ("failed", "partial", "earlier_failure")}
    summary = {**{s: n for s, n in counts.items() if s != "earlier_failure"}, "files": len(results),
               "video_seconds": round(sum(r.seconds for r in results), 3), "frames": sum(r.frames for r in results),
               "wall_seconds": round(wall, 3), "video_seconds_per_second": round(sum(r.seconds for r in results) / wall, 3),
               "failures": listed["failed"], "partials": listed["partial"], "earlier_failures": listed["earlier_failure"],
               "text_failures": [{"path": r.path, "reason": p} for r in results for p in r.text_problems]}
    if ray is not None:  # how the cluster run went: work units sent, files redone as one unit, encoder actors
        summary["ray"] = indexer.stats
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        retexted = f"{counts['text_updated']} text re-read, " if counts["text_updated"] else ""
        typer.echo(f"{counts['indexed']} indexed, {counts['partial']} partial, {counts['reused']} reused, {retexted}"
                   f"{counts['unchanged']} unchanged, {counts['failed']} failed, {counts['removed']} removed "
                   f"({summary['video_seconds']:.0f} s of video in {summary['wall_seconds']:.1f} s) -> {idx.path}")
    if counts["earlier_failure"]:
        typer.echo(f"{counts['earlier_failure']} file(s) failed in an earlier run and have not changed "
                       f"(`vidsearch ls --state failed` lists them; --retry-failed tries them again)", err=True)
    empty = [p for p in paths if p.is_dir() and not any(Path(os.path.abspath(p.expanduser())) in f.parents for f in files)]
    for folder in empty if files else []:  # an unmounted disk, say: nothing indexed under it is dropped
        note(f"no videos found under {folder}; what was indexed under it is kept (`vidsearch remove {folder}` drops it)")
    if not files:
        typer.echo(f"error: no videos found under {where} (looked for {' '.join(sorted(VIDEO_EXTENSIONS))}); what was "
                   f"indexed under it is kept", err=True)
    if counts["failed"] or not files:
        raise typer.Exit(1)


@app.command()
@user_errors
def query(
    text: Annotated[Optional[list[str]], typer.Argument(
        metavar="TEXT", help='What to look for, in plain words. Combine terms with lone + and -, and weight one with W: '
             '"2:dog on a beach" + sunset - people. "A then B" (also ", then", "followed by", "->") finds A followed by B '
             'in the same video.', show_default=False)] = None,
    image: Annotated[Optional[list[Path]], typer.Option(
        "--image", metavar="PATH", help="Find moments that look like this image (a query by example; repeatable, adds to TEXT).",
        show_default=False)] = None,
    index_dir: IndexOption = None,
    k: Annotated[int, typer.Option("-k", "--top", help="Number of moments (or, with --group-by video, videos) to return.")] = 10,
    group_by: Annotated[GroupBy, typer.Option(
        "--group-by", help="moment: every matching moment; video: only the best moment of each video.")] = GroupBy.moment,
    scale: Annotated[Scale, typer.Option(
        "--scale", help="segment: moments grown from matching segments (seconds); window: spans inside the best-matching "
                        "windows; auto (multi-scale): spans of one segment to two windows around both, scored by their "
                        "segments, the best window they touch and their length (README: Long queries).")]
        = Scale.segment,
    mode: Annotated[Mode, typer.Option(
        "--mode", help='visual: what is seen (the vectors); speech: what is said or subtitled (full-text search; '
                       '"a quoted phrase" matches exactly, - terms exclude lines); both: the two fused into one ranking '
                       '(0.2 x the calibrated cosine + 0.8 x the squared share of a query term\'s words the line says, see '
                       'README); auto: both when the index has any text, else visual.')]
        = Mode.auto,
    path: Annotated[Optional[list[str]], typer.Option(
        "--path", metavar="GLOB", help="Only files matching this glob, tried on the full path, the path from here, and the file "
                       "name (repeatable: any may match). Quote it: --path '*/holidays/*'.", show_default=False)] = None,
    min_score: Annotated[Optional[float], typer.Option(
        "--min-score", metavar="SCORE", help="Drop visual matches scoring below this (cosine similarity, -1 to 1); "
        "matching text lines always count.", show_default=False)] = None,
    html: Annotated[Optional[Path], typer.Option(
        "--html", metavar="FILE", help="Also write a self-contained HTML report here: a card per moment with a thumbnail strip and "
                       "a video player at the moment.", show_default=False)] = None,
    thumbnails: Annotated[Optional[Path], typer.Option(
        "--thumbnails", metavar="DIR", help="Also save a JPEG of each moment's middle frame in this folder (named MOMENT_ID.jpg; "
                             "--json gives its path).", show_default=False)] = None,
    open_hit: Annotated[Optional[int], typer.Option(
        "--open", metavar="N", help="Play moment N (1 = best) from its start in mpv or ffplay; without either, print the command.",
        show_default=False)] = None,
    device: DeviceOption = Device.auto,
    as_json: JsonOption = False,
) -> None:
    """Search the index and print the best-matching moments (file, start-end, score), best first."""
    from .answers import check_query_options, search_moments
    from .report import as_json as json_result
    from .report import table
    from .search import Searcher
    from .terms import parse_sequence

    words = " ".join(text or [])
    terms = parse_sequence(words, image or [])
    check_query_options(k=k, min_score=min_score)
    if open_hit is not None and not 1 <= open_hit <= k:
        raise UsageError(f"--open must be between 1 and -k ({k})")
    for picture in image or []:
        _check_image(picture)
    if html is not None and (html.is_dir() or not html.parent.is_dir()):
        raise UsageError(f"--html {html}: {'is a folder' if html.is_dir() else 'its folder does not exist'}; give a file path")
    if thumbnails is not None and thumbnails.exists() and not thumbnails.is_dir():
        raise UsageError(f"--thumbnails {thumbnails}: is a file; give a folder (it is made if missing)")
    idx = open_index(index_dir)
    searcher = Searcher(idx, device=device.value)
    moments = search_moments(searcher, terms, k=k, group_by=group_by.value, paths=path or [], min_score=min_score,
                             mode=mode.value, scale=scale.value)
    written: dict[str, str] = {}
    if thumbnails is not None:
        from .thumbnails import write_thumbnails

        written, problems = write_thumbnails(moments, thumbnails)
        for problem in problems:
            typer.echo(f"no thumbnail: {problem}", err=True)
    if html is not None:
        from .report import html_report

        recorded = idx.db.get_setting("model")
        title = words or ", ".join(str(p) for p in image or [])
        html.write_text(html_report(title, moments, index=str(idx.path), model=recorded["name"]), encoding="utf-8")
        typer.echo(f"report: {html.resolve()}", err=True)
    typer.echo(json.dumps(json_result(words, moments, written)) if as_json else table(moments))
    if open_hit is not None:
        if open_hit > len(moments):
            raise UsageError(f"--open {open_hit}: only {len(moments)} moment(s) found")
        from .player import play

        chosen = moments[open_hit - 1]
        command = play(chosen.path, chosen.start)
        if command is not None:
            typer.echo(f"no player found (mpv or ffplay); to watch moment {open_hit}, run:\n  {command}", err=True)
    _finished_read_only.set()


def _check_image(path: Path) -> None:
    """Refuse an --image that is missing, a folder, or not a picture, before any model loads."""
    from .errors import BadVideo
    from .frames import read_image

    if not path.exists():
        raise UsageError(f"--image {path}: no such file")
    if path.is_dir():
        raise UsageError(f"--image {path}: is a folder, not an image")
    try:
        read_image(path, size=16)
    except BadVideo as exc:
        raise UsageError(f"--image {path}: not an image or video ({exc.reason})") from None


@app.command()
@user_errors
def pairs(
    sources: Annotated[list[Path], typer.Argument(
        metavar="SOURCE", help="An index folder (its stored subtitles and transcripts), or video files and folders "
                               "(their subtitle streams and files, and with --speech what is said).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", metavar="FILE", help="The JSONL manifest to write, for `vidsearch train`.")],
    min_seconds: Annotated[Optional[float], typer.Option(
        "--min-seconds", help="Merge consecutive lines until a pair spans at least this long, as HowTo100M's ~4 s "
                              "clips [default: 4].", show_default=False)] = None,
    min_words: Annotated[Optional[int], typer.Option(
        "--min-words", help="...and has at least this many words [default: 4].", show_default=False)] = None,
    speech: Annotated[Optional[str], typer.Option(
        "--speech", metavar="ENGINE", help="For video files without subtitles: transcribe them with pocketsphinx, "
        "whisper or whisper-SIZE.", show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Turn what is said into training pairs: each subtitle or speech line, merged to a minimum length, with its
    time span (one source per video: sidecar files, then embedded subtitles, then speech). Train on them with
    `vidsearch train FILE`."""
    from .pairs import PairSettings, make_manifest

    given = {"min_seconds": min_seconds, "min_words": min_words}
    settings = PairSettings(**{name: value for name, value in given.items() if value is not None})
    summary = make_manifest(sources, out, settings=settings, speech=speech)
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        for item in summary["skipped"]:
            typer.echo(f"skipped: {item['path']}: {item['reason']}", err=True)
        for item in summary["problems"]:
            typer.echo(f"text failed: {item['path']}: {item['reason']}", err=True)
        if summary["pairs"]:
            typer.echo(f"wrote {summary['pairs']} pairs from {summary['videos']} videos to {summary['out']}")
    if not summary["pairs"]:
        typer.echo(f"error: no pairs: no video gave a subtitle or speech line long enough (--min-seconds "
                   f"{settings.min_seconds}, --min-words {settings.min_words}); {out} was not written", err=True)
        raise typer.Exit(1)
    _finished_read_only.set()


@app.command()
@user_errors
def remove(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to drop from the index (the files stay on disk).",
                                                show_default=False)],
    index_dir: IndexOption = None,
    as_json: JsonOption = False,
) -> None:
    """Drop files, or everything under folders, from the index."""
    idx = open_index(index_dir)
    idx.lock_for_writing()
    removed = idx.remove([os.path.abspath(p.expanduser()) for p in paths])
    idx.close()
    if as_json:
        typer.echo(json.dumps({"removed": removed}))
    else:
        typer.echo(f"{len(removed)} removed" + "".join(f"\n  {p}" for p in removed))


@app.command()
@user_errors
def verify(
    repair: Annotated[bool, typer.Option(help="Fix what can be fixed: rebuild FAISS from SQLite, drop vanished "
                                              "files and orphan rows, delete leftover temporary files.")] = False,
    index_dir: IndexOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check every invariant of an index and say what was found. Exit code 1 when something is wrong
    (and, with --repair, was not fixed)."""
    from .errors import IndexProblem
    from .verify import Finding
    from .verify import verify as check

    try:
        idx = open_index(index_dir)
    except IndexProblem as exc:
        if not isinstance(exc.__cause__, sqlite3.DatabaseError):
            raise
        findings = [Finding("sqlite integrity", False, str(exc))]  # too damaged to open: that is the finding
    else:
        if repair:
            idx.lock_for_writing()
        findings = check(idx, repair=repair)
        idx.close()
    if as_json:
        typer.echo(json.dumps([f.__dict__ for f in findings]))
    else:
        for f in findings:
            state = "ok" if f.ok else ("repaired" if f.repaired else "PROBLEM")
            typer.echo(f"{state:<9} {f.check}" + ("" if f.ok else f": {f.detail}"))
    if any(not f.ok and not f.repaired for f in findings):
        raise typer.Exit(1)


@app.command()
@user_errors
def models(as_json: JsonOption = False) -> None:
    """List the models in the registry (use a name with --model)."""
    from .registry import list_models

    entries = list_models()
    rows = [{"name": c.name, "arch": c.clip_arch if isinstance(c.clip_arch, str) else "custom",
             "pretrained": c.pretrained, "mixing": c.temporal_mixing, "description": c.description} for c in entries]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        typer.echo(f"{row['name']:<15} {row['arch']:<9} {row['mixing']:<6} {row['description']}")


@app.command()
@user_errors
def status(index_dir: IndexOption = None, as_json: JsonOption = False) -> None:
    """Show what an index holds: videos (indexed, partial, failed), segments, text (subtitle and transcript
    lines, by kind of source), model, index type and size on disk. `vidsearch ls` lists the files."""
    from .answers import status_info
    from .report import clock

    idx = open_index(index_dir)
    info = status_info(idx)
    if as_json:
        typer.echo(json.dumps(info))
        return
    stats, store_kind, size = info, info["index_type"], info["bytes"]  # the totals are at the top level
    model, text = info["model"] or {}, info["text"]
    kinds = ", ".join(f"{kind} {count}" for kind, count in text["sources"].items())
    typer.echo(f"index     {info['index']}\n"
               f"videos    {stats['indexed']} indexed, {stats['partial']} partial, {stats['failed']} failed "
               f"({clock(stats['seconds'])} of video)\n"
               f"segments  {stats['segments']} ({stats['windows']} windows), {store_kind} with {info['vectors']} vectors\n"
               f"text      {text['lines']} lines in {text['videos']} videos ({kinds or 'no subtitles or speech'}); "
               f"speech {text['speech'] or 'off'}\n"
               f"model     {model.get('spec', '-')} ({model.get('fingerprint', '-')})\n"
               f"settings  {info['settings']}\n"
               f"size      {size / 1e6:.1f} MB")
    for partial in info["partials"]:
        typer.echo(f"partial: {partial['path']}: {partial['error']}")
    for failure in info["failures"]:
        typer.echo(f"failed: {failure['path']}: {failure['error']}")
    for failure in text["failures"]:
        typer.echo(f"text failed: {failure['path']}: {failure['source']}: {failure['problem']}")


class State(str, Enum):
    ok = "ok"
    partial = "partial"
    failed = "failed"


@app.command(name="ls")
@user_errors
def list_files(
    glob: Annotated[Optional[list[str]], typer.Argument(
        metavar="[GLOB]...", help="Only files matching a glob (tried on the full path, the path from here and the file "
        "name), or named literally: an indexed file, or a folder for everything under it.", show_default=False)] = None,
    state: Annotated[Optional[State], typer.Option(
        "--state", help="Only files in this state: ok, partial (indexed up to where decoding stopped) or failed.",
        show_default=False)] = None,
    index_dir: IndexOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the indexed files, sorted by path: state (and why), duration, segments, when indexed and the kinds of
    text found (sidecar, embedded, speech; a trailing ! when one failed)."""
    from .report import clock
    from .search import select_paths

    idx = open_index(index_dir)
    rows = idx.db.listing()
    if glob:
        chosen = set(select_paths([r["path"] for r in rows], glob))
        rows = [r for r in rows if r["path"] in chosen]
    if state is not None:
        rows = [r for r in rows if r["state"] == state.value]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    lines = []
    for r in rows:
        length = "-" if r["duration"] is None else clock(r["duration"])
        why = f"  ({r['reason']})" if r["reason"] else ""
        kinds = sorted({s["source"].split(":")[0] + ("!" if s["problem"] else "") for s in r["text"]
                        if s["lines"] or s["problem"]})
        text = ",".join(kinds) or "-"
        lines.append(f"{r['state']:<8} {length:>8} {r['segments']:>6}  {r['indexed_at'] or '-':<25}  {text:<16}  "
                     f"{r['path']}{why}")
    if lines:
        typer.echo("\n".join(lines))


@app.command()
@user_errors
def train(
    ctx: typer.Context,
    manifest: Annotated[Path, typer.Argument(help="JSONL (or CSV) of {video, start?, end?, caption} lines; "
                                                  "video paths may be relative to the manifest; a JSON caption may "
                                                  "be a list of phrasings, one drawn each time.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Checkpoint folder to write (usable as `--model DIR`).",
                                      show_default=False)],
    val: Annotated[Optional[Path], typer.Option("--val", help="Held-out manifest: recall@K is reported on it at the end.",
                                                show_default=False)] = None,
    model: Annotated[str, typer.Option("--model", help="Where to start: registry name, model JSON or checkpoint.")]
        = "longvivit-b32",
    frames: Annotated[int, typer.Option(help="Frames per training clip (16 = the paper's short-clip stage).")] = 16,
    fps: Annotated[float, typer.Option(help="Frames sampled per second of video.")] = 1.0,
    sampling: Annotated[str, typer.Option(
        help="A clip of a span longer than it: spread (frames evenly over the whole span, for captions that "
             "describe all of it) or contiguous (a random window of consecutive frames).")] = "spread",
    mask_ratio: Annotated[float, typer.Option(help="Share of video tokens dropped at random in training.")] = 0.75,
    steps: Annotated[Optional[int], typer.Option(help="Optimiser steps [default: one epoch].", show_default=False)] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Passes over the manifest (instead of --steps).",
                                                    show_default=False)] = None,
    batch_size: Annotated[int, typer.Option(help="Global batch size (split across torchrun processes).")] = 32,
    lr: Annotated[float, typer.Option(help="Peak AdamW learning rate (warmup, then cosine decay).")] = 1e-4,
    warmup: Annotated[Optional[int], typer.Option(help="Warmup steps [default: 5% of the run].", show_default=False)] = None,
    train_last: Annotated[Optional[int], typer.Option(
        help="Train only the last K video blocks, the temporal embedding and the heads (the paper's long-video "
             "stage) [default: train everything].", show_default=False)] = None,
    mixing: Annotated[str, typer.Option(help="joint (video-first, space-time attention) or frame (ImageViT baseline).")]
        = "joint",
    group_by_video: Annotated[bool, typer.Option(
        help="Keep clips of one video in the same batch, as hard negatives for each other.")] = False,
    grad_checkpointing: Annotated[bool, typer.Option(help="Recompute activations in backward to save GPU memory.")] = False,
    checkpoint_every: Annotated[int, typer.Option(help="Write a checkpoint every N steps (and at the end).")] = 200,
    resume: Annotated[bool, typer.Option(help="Continue from the checkpoint in --out (optimizer, step, data order).")]
        = False,
    seed: Annotated[int, typer.Option(help="Seed for data order, crops and masks.")] = 0,
    workers: Annotated[Optional[int], typer.Option(
        help="Decoding processes per training process (0: a thread) [default: the cores left over, 1 to 8].",
        show_default=False)] = None,
    log_every: Annotated[int, typer.Option(help="Report the loss (progress bar and train_log.jsonl) every N steps "
                                                "and at the last; each report waits for the GPU.")] = 10,
    device: DeviceOption = Device.auto,
    as_json: JsonOption = False,
) -> None:
    """Contrastive video-text training with input masking (LongViViT recipe). Runs under torchrun for DDP."""
    from tqdm import tqdm

    from .train import TrainSettings
    from .train import train as run_training

    settings = TrainSettings(
        manifest=str(manifest), out=os.path.abspath(out), model=model, val=str(val) if val else None, frames=frames, fps=fps,
        sampling=sampling, mask_ratio=mask_ratio, steps=steps, epochs=epochs, batch_size=batch_size, lr=lr, warmup=warmup,
        train_last=train_last, mixing=mixing, group_by_video=group_by_video, grad_checkpointing=grad_checkpointing,
        checkpoint_every=checkpoint_every, device=device.value, seed=seed, workers=workers, log_every=log_every)
    from .device import fallback_note

    if os.environ.get("RANK", "0") == "0" and (line := fallback_note(device.value)):
        note(line)
    bar = tqdm(unit="step", desc="training", file=sys.stderr, disable=None)
    last = {}

    def on_step(report) -> None:
        bar.total = report.steps
        bar.n = report.step
        bar.set_postfix(loss=f"{report.loss:.4f}", clips_per_s=f"{report.clips_per_second:.1f}", lr=f"{report.lr:.2e}")
        last.update(step=report.step, loss=report.loss)

    # what the user typed (not what defaulted): on --resume the rest comes from the saved run
    given = {name for name in ctx.params if ctx.get_parameter_source(name).name not in ("DEFAULT", "DEFAULT_MAP")}
    ran = run_training(settings, resume=resume, given=given, on_step=on_step,
                       on_problem=lambda line: bar.write(f"skipped: {line}", file=sys.stderr))
    bar.close()
    if os.environ.get("RANK", "0") != "0":
        return
    result = {"checkpoint": str(Path(ran.out).resolve()), **last}
    if ran.val is not None:
        result["val"] = _evaluate(ran.out, Path(ran.val), frames=None, fps=None, device=ran.device)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"checkpoint {result['checkpoint']} (step {last.get('step')}, loss {last.get('loss', float('nan')):.4f})")
        if ran.val is not None:
            typer.echo(_format_metrics(result["val"]))


def _evaluate(model: str, manifest: Path, *, frames: Optional[int], fps: Optional[float], device: str) -> dict:
    from .data import load_pairs
    from .device import fallback_note
    from .encoder import Encoder
    from .evaluate import evaluate

    pairs, problems = load_pairs(str(manifest))
    for problem in problems:
        typer.echo(f"skipped: {problem}", err=True)
    if len(pairs) < 2:
        raise UsageError(f"{manifest}: fewer than 2 usable pairs to evaluate on")
    if line := fallback_note(device):
        note(line)
    encoder = Encoder.load(model, device)
    return evaluate(encoder, pairs, frames=frames or encoder.config.window, fps=fps or encoder.config.fps)


def _format_metrics(metrics: dict) -> str:
    return "\n".join(
        f"{name}  R@1 {metrics[f'{name}_r1']:.3f}  R@5 {metrics[f'{name}_r5']:.3f}  R@10 {metrics[f'{name}_r10']:.3f}  "
        f"median rank {metrics[f'{name}_median_rank']:.1f}" for name in ("t2v", "v2t")) + f"\n({int(metrics['pairs'])} pairs)"


@app.command(name="eval")
@user_errors
def evaluate_command(
    manifest: Annotated[Path, typer.Argument(help="JSONL (or CSV) manifest of held-out {video, start?, end?, caption}.",
                                             show_default=False)],
    model: Annotated[str, typer.Option("--model", help="Registry name, model JSON or checkpoint folder.")] = "clip-b32",
    frames: Annotated[Optional[int], typer.Option(help="Frames per clip [default: what the model was trained on].",
                                                  show_default=False)] = None,
    fps: Annotated[Optional[float], typer.Option(help="Frames per second [default: the model's].", show_default=False)] = None,
    device: DeviceOption = Device.auto,
    as_json: JsonOption = False,
) -> None:
    """Text-to-video and video-to-text recall@1/5/10 and median rank over a manifest's clips."""
    metrics = _evaluate(model, manifest, frames=frames, fps=fps, device=device.value)
    typer.echo(json.dumps(metrics) if as_json else _format_metrics(metrics))


@app.command(name="eval-moments")
@user_errors
def eval_moments(
    queries: Annotated[Path, typer.Argument(
        metavar="QUERIES", help="JSONL of {query, video, start, end[, kind]}: several lines with one query are several "
                                "correct spans; video paths may be relative to the file.", show_default=False)],
    index_dir: IndexOption = None,
    mode: Annotated[Mode, typer.Option("--mode", help="As `query --mode`.")] = Mode.auto,
    scale: Annotated[Scale, typer.Option("--scale", help="As `query --scale`.")] = Scale.segment,
    device: DeviceOption = Device.auto,
    as_json: JsonOption = False,
) -> None:
    """Moment retrieval as the field measures it (Charades-STA, QVHighlights): R@1 and R@5 at temporal IoU 0.5
    and 0.7, mAP@0.5 and @0.75 (top 10 hits), and the mean IoU of the top hit, over all queries and per `kind`,
    all searched in this one process."""
    from .moment_eval import HITS_USED, METRIC_KEYS, evaluate, read_queries
    from .search import Searcher
    from .terms import parse_sequence

    labelled, problems = read_queries(queries)
    for problem in problems:
        typer.echo(f"skipped: {problem}", err=True)
    if not labelled:
        raise UsageError(f"{queries}: no usable query line")
    idx = open_index(index_dir)
    searcher = Searcher(idx, device=device.value)
    indexed = {v["path"] for v in idx.db.videos() if v["status"] != "failed"}
    for path in sorted({t.path for q in labelled for t in q.truths} - indexed):
        note(f"{path} is not in the index: its spans cannot be found")
    result = evaluate(labelled, lambda text: searcher.search(parse_sequence(text), k=HITS_USED, mode=mode.value,
                                                             scale=scale.value))
    if as_json:
        typer.echo(json.dumps(result))
    else:
        rows = [("all", result["queries"], result["all"])]
        rows += [(kind, None, values) for kind, values in result["by_kind"].items()]
        width = max(8, *(len(name) for name, _, _ in rows))
        typer.echo(f"{'':<{width}}  " + "  ".join(f"{key:>8}" for key in METRIC_KEYS))
        for name, _, values in rows:
            typer.echo(f"{name:<{width}}  " + "  ".join(f"{values[key]:8.3f}" for key in METRIC_KEYS))
        typer.echo(f"{result['queries']} queries")
    _finished_read_only.set()


@app.command()
@user_errors
def serve(
    index_dir: IndexOption = None,
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on. Any other than loopback (127.0.0.1, ::1, localhost) needs a token.")]
        = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: any free one).")] = 8765,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
    token: Annotated[Optional[str], typer.Option(
        "--token", metavar="TOKEN", envvar="VIDSEARCH_TOKEN", help="Require this token on every request (header "
        "`Authorization: Bearer TOKEN`, or the cookie the printed login URL sets) [default: none on loopback; "
        "off loopback, a random one, printed].", show_default=False)] = None,
    device: DeviceOption = Device.auto,
) -> None:
    """Serve a search page and a JSON API over the index, with the model kept loaded: the page searches as `query`
    does and plays moments in place; `GET /api/search?q=...` answers with `query --json`'s JSON and `GET /api/status`
    with `status --json`'s. An `index` run meanwhile is picked up by the next search. Stop with Ctrl-C."""
    import secrets
    import socket

    from .serve import create_app, is_loopback, run

    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {port}")
    if token is not None and len(token) < 16:
        raise UsageError("--token must be at least 16 characters (or leave it out to get a random one)")
    generated = token is None and not is_loopback(host)
    token = secrets.token_urlsafe(24) if generated else token
    login = secrets.token_urlsafe(16) if token else None
    _opened["path"] = Path(index_dir or _default_index())
    application = create_app(_opened["path"], token=token, login_code=login, device=device.value, note=note, warm=True)
    shown = host if host not in ("0.0.0.0", "::", "[::]") else socket.gethostname()
    shown = f"[{shown}]" if ":" in shown and not shown.startswith("[") else shown

    def ready(bound: int) -> None:
        url = f"http://{shown}:{bound}/"
        typer.echo(f"serving {application.app.state.live.path} at {url}")
        if token:
            typer.echo(f"open {url}?login={login} (works once: it sets a cookie in that browser)")
            if generated:
                typer.echo(f"token {token} (API clients send the header `Authorization: Bearer TOKEN`)")
        sys.stdout.flush()
        if open_browser:
            import webbrowser

            webbrowser.open(f"{url}?login={login}" if token else url)

    run(application, host=host, port=port, ready=ready)


def _default_index() -> Path:
    from .indexdir import default_index_dir

    return default_index_dir()


def bare_ray(args: list[str]) -> list[str]:
    """`index ... --ray` with no address (last, or before another option) means a local Ray: `--ray=local` (typer's
    click has no options whose value may be left out)."""
    if "index" not in args:
        return args
    return [f"{a}=local" if a == "--ray" and (i + 1 == len(args) or args[i + 1].startswith("-")) else a
            for i, a in enumerate(args)]


def main() -> None:
    """Entry point: bad arguments become one line on stderr and exit code 2."""
    from .interrupts import install

    install()
    sys.argv[1:] = bare_ray(sys.argv[1:])
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        typer.echo("aborted", err=True)
        code = 130
    except Exception as exc:
        if not callable(getattr(exc, "format_message", None)):  # not one of click's usage errors (typer vendors click)
            raise
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx else ""
        if exc.format_message():  # empty when no arguments were given and the help was shown
            typer.echo(f"error: {exc.format_message()}{hint}", err=True)
        code = getattr(exc, "exit_code", 2)
    if _finished_read_only.is_set():  # all is written and nothing was changed: skip the interpreter's teardown
        sys.stdout.flush()  # (about 0.4 s once torch is loaded)
        sys.stderr.flush()
        os._exit(code or 0)
    sys.exit(code or 0)
