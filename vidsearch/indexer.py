"""Walk -> decode -> windows -> encode (beside: subtitles, speech) -> SQLite + FAISS, one transaction per video,
skipping unchanged files."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import IndexSettings
from .db import Segment, VideoTextRecord
from .errors import IndexProblem, UsageError
from .faults import crash_point
from .indexdir import IndexDir
from .text_index import KINDS, Sidecars, TextReader, kind, kinds_to_read, load_engine, record, speech_name, stamp_of
from .windows import group_segments, slice_spans

if TYPE_CHECKING:
    from .decode_workers import Finished, Window

DEFAULT_MODEL = "default_model"  # the settings key of a --model given before any video was committed
SPEECH = "speech"  # the settings key of the speech engine the index transcribes with (--speech), if any
MAX_HASH_THREADS = 8  # threads hashing new files' content ahead of the checks (at most one per core)
VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .ts .mts .m2ts .wmv .flv .3gp .ogv".split())


@dataclass(frozen=True)
class FileResult:
    """What happened to one file in an indexing run."""

    path: str
    status: str  # "indexed", "partial", "reused" (same content elsewhere), "text_updated" (only its text was read again),
    # "unchanged", "failed", "earlier_failure" (failed in an earlier run, unchanged since) or "removed"
    reason: str | None = None
    seconds: float = 0.0  # seconds of video encoded in this run
    frames: int = 0  # frames decoded and encoded in this run
    text_problems: tuple[str, ...] = ()  # "SOURCE: reason" of each text source read in this run that failed
    text_notes: tuple[str, ...] = ()  # "SOURCE: note" of each text source skipped on purpose


def check_options(*, model: str | None = None, fps: float | None = None, window: int | None = None,
                  segment: float | None = None, keep_ratio: float | None = None, workers: int = 1,
                  batch: int | None = None, speech: str | None = None) -> None:
    """Refuse bad option values (UsageError, exit 2) before anything is opened, created or loaded."""
    from . import registry

    if speech is not None:
        speech_name(speech)
    if model:
        registry.resolve(registry.canonical_spec(model))
    given = {"fps": fps, "window": window, "segment": segment, "keep_ratio": keep_ratio}
    try:
        IndexSettings(**{k: v for k, v in given.items() if v is not None}).validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if workers < 0:
        raise UsageError("--workers must be 0 (decode in a thread) or more")
    if batch is not None and batch < 1:
        raise UsageError("--batch must be at least 1")


def find_videos(paths: Iterable[Path]) -> list[Path]:
    """Video files under `paths` (recursively, hidden folders skipped); files named directly are always taken."""
    found: list[Path] = []
    for root in paths:
        root = Path(root).expanduser()
        if root.is_dir():
            for folder, dirs, files in os.walk(root):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [Path(folder, f) for f in sorted(files) if Path(f).suffix.lower() in VIDEO_EXTENSIONS]
        elif root.exists() or root.is_symlink():
            found.append(root)
        else:
            raise UsageError(f"{root}: no such file or folder")
    return sorted({Path(os.path.abspath(p)) for p in found})


def file_hash(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Indexer:
    """Indexes files into one index folder with one model; the model loads only when a file needs encoding."""

    def __init__(self, index: IndexDir, *, model: str | None = None, device: str = "auto", fps: float | None = None,
                 window: int | None = None, segment: float | None = None, keep_ratio: float | None = None,
                 deblock: bool | None = None, cuts: bool | None = None, speech: str | None = None,
                 reindex: bool = False, workers: int = 1, compile: bool = False, batch: int | None = None):
        """`speech` (a --speech value) turns speech recognition on or `off` for this index, from this run on; the
        engine loads here, so a missing one fails before any work."""
        from . import registry

        self.index = index
        recorded = index.db.get_setting("model")
        # The model and settings are bound by the first committed video: an index with none takes any model.
        self.bound = recorded is not None and index.db.segment_count() > 0
        check_options(model=model, fps=fps, window=window, segment=segment, keep_ratio=keep_ratio, workers=workers,
                      batch=batch, speech=speech)
        chosen = recorded["spec"] if self.bound else (index.db.get_setting(DEFAULT_MODEL) or (recorded or {}).get("spec"))
        spec = registry.canonical_spec(model) if model else (chosen or "clip-b32")
        if model and not self.bound and index.writable:  # remembered for the next run, even if this one commits nothing
            index.db.set_setting(DEFAULT_MODEL, spec)
        config, _ = registry.resolve(spec)
        weights = registry.weights_stamp(spec)
        self.fingerprint = registry.fingerprint(spec, weights=weights)
        # also true for a record made by the first fingerprint formula; the current one replaces it below
        same_model = recorded is not None and registry.fingerprint_matches(recorded["fingerprint"], spec, weights=weights) is not None
        stored = index.db.get_setting("settings") if self.bound else None
        base = IndexSettings.stored(stored) if stored and not reindex else IndexSettings(fps=config.fps, window=config.window)
        settings = IndexSettings(fps=base.fps if fps is None else fps, window=base.window if window is None else window,
                                 segment=base.segment if segment is None else segment,
                                 keep_ratio=base.keep_ratio if keep_ratio is None else keep_ratio,
                                 deblock=base.deblock if deblock is None else deblock,
                                 cuts=base.cuts if cuts is None else cuts)
        if self.bound and not same_model and not reindex:
            raise IndexProblem(f"{index.path}: this index was built with model {recorded['spec']!r}; use that model, "
                               f"another --index folder, or --reindex to rebuild it with {spec!r}")
        if stored and base != settings and not reindex:
            raise IndexProblem(f"{index.path}: this index was built with --fps {base.fps} --window {base.window} "
                               f"--segment {base.segment} --keep-ratio {base.keep_ratio} "
                               f"--{'' if base.deblock else 'no-'}deblock --{'' if base.cuts else 'no-'}cuts; use those, "
                               "another --index folder, or --reindex")
        rebuild = reindex and self.bound and (not same_model or IndexSettings.stored(stored) != settings)
        self.bound = self.bound and not rebuild
        if self.bound and recorded["fingerprint"] != self.fingerprint and index.writable:
            index.db.set_setting("model", {**recorded, "fingerprint": self.fingerprint})
        self.model_record = {"spec": spec, "fingerprint": self.fingerprint, "name": config.name,
                             "dim": registry.embedding_dim(config), "weights": weights}
        self.spec, self.config, self.settings, self.device, self.workers = spec, config, settings, device, workers
        self.compile, self.batch = compile, batch
        self._encoder = None
        if rebuild:
            _ = self.encoder  # the new model must load before the old index is emptied
            default = index.db.get_setting(DEFAULT_MODEL)
            speech = speech or index.db.get_setting(SPEECH) or "off"
            index.reset()
            if default:
                index.db.set_setting(DEFAULT_MODEL, default)
        if speech is not None:
            engine_name = speech_name(speech)
            if engine_name:
                load_engine(engine_name)  # a missing package or weights fail here, before any work (the worker loads its own)
            if index.writable:
                index.db.set_setting(SPEECH, engine_name)
        else:
            engine_name = index.db.get_setting(SPEECH)
        self.text = TextReader(engine_name)
        self.sidecars = Sidecars()

    @property
    def encoder(self):
        if self._encoder is None:
            from .device import fallback_note
            from .encoder import Encoder

            if line := fallback_note(self.device):  # a GPU is there but CUDA is not usable: say why, once
                self.index.note(line)
            self._encoder = Encoder.load(self.spec, self.device, compile=self.compile)
            self._record_weights_file()
        return self._encoder

    def _record_weights_file(self) -> None:
        """Note where a pretrained model's weights are on disk, so queries can load its text tower from them."""
        from . import registry

        weights = registry.pretrained_file(self.config)
        if weights and self.model_record.get("weights_file") != weights:
            self.model_record["weights_file"] = weights
            if self.bound:
                self.index.db.set_setting("model", self.model_record)

    def _bind(self) -> None:
        """Record the model and settings, in the transaction of the first video committed with them."""
        if not self.bound:
            self.index.db.set_setting("model", self.model_record)
            self.index.db.set_setting("settings", self.settings.to_dict())

    def run(self, paths: Iterable[Path], *, files: list[Path] | None = None,
            retry_failed: bool = False) -> Iterator[FileResult]:
        """Index every video under `paths` (`files`, when the caller already walked them), then drop indexed
        files under them that no longer exist; yields one result per file as it finishes."""
        roots = [Path(os.path.abspath(Path(p).expanduser())) for p in paths]
        files = find_videos(roots) if files is None else files
        try:
            # Two passes: a file whose content is already queued in this run (a copy) waits for the first pass,
            # then reuses its vectors.
            later = files
            while later:
                to_encode, queued, waiting = [], set(), []
                for path, outcome in zip(later, self.check_files(later, retry_failed=retry_failed)):
                    if isinstance(outcome, FileResult):
                        yield outcome
                        crash_point("between-videos")
                    elif outcome[2] in queued:
                        waiting.append(path)
                    else:
                        to_encode.append(outcome)
                        queued.add(outcome[2])
                for result in self.encode_files(to_encode):
                    yield result
                    crash_point("between-videos")
                later = waiting
            present = {str(f) for f in files}
            # a folder that gave no video at all may be an unmounted disk: what was indexed under it is kept
            searched = [root for root in roots if root.is_file() or any(_under(f, [root]) for f in files)]
            gone = [v["path"] for v in self.index.db.videos()
                    if v["path"] not in present and _under(Path(v["path"]), searched) and _vanished(v["path"])]
            if gone:
                self.index.remove(gone)  # one commit and one FAISS write, however many files went
            yield from (FileResult(path, "removed") for path in gone)
            self.text.close()
        finally:
            self.index.sync_vectors()

    def check_files(self, paths: list[Path], *,
                    retry_failed: bool = False) -> Iterator[FileResult | tuple[Path, os.stat_result, str]]:
        """check_file for each path, in order, with each file looked at (record and stat) a few files ahead and the
        content of new and changed ones hashed there in threads (hashlib lets go of the GIL): one thread hashed at
        570 MB/s, the ceiling of a cluster run's driver (bench/RESULTS.md). A check writes only its own file's row,
        so a look taken ahead is still the file's when its turn comes."""
        from concurrent.futures import ThreadPoolExecutor

        threads = min(MAX_HASH_THREADS, os.cpu_count() or 1)
        pool = ThreadPoolExecutor(threads, thread_name_prefix="vidsearch-hash")
        try:
            looks, hashes, looked = {}, {}, 0
            for at, path in enumerate(paths):
                while looked < min(len(paths), at + 2 * threads):
                    looks[looked] = self._look(paths[looked])
                    if _changed(*looks[looked]):
                        hashes[looked] = pool.submit(file_hash, paths[looked])
                    looked += 1
                digest = hashes.pop(at, None)
                yield self.check_file(path, retry_failed=retry_failed, look=looks.pop(at),
                                      content_hash=digest.result if digest else None)
        finally:
            pool.shutdown(cancel_futures=True)  # a caller that stops early waits only for the hashes under way

    def _look(self, path: Path) -> tuple[dict | None, os.stat_result | OSError]:
        """The file's indexed row (None if it has none or its name is not UTF-8) and its stat now (or why not)."""
        name = str(path)
        previous = self.index.db.video(name) if _is_utf8(name) else None
        try:
            return previous, path.stat()
        except OSError as exc:
            return previous, exc

    def check_file(self, path: Path, *, retry_failed: bool = False, look: tuple | None = None,
                   content_hash: Callable[[], str] | None = None) -> FileResult | tuple[Path, os.stat_result, str]:
        """Settle a file without decoding it when possible (unchanged, failed, renamed); otherwise return
        (path, stat, content hash) for encoding. `look` (from _look) and `content_hash` (the hash read ahead) are
        given when check_files took them ahead."""
        name = str(path)
        if not _is_utf8(name):  # SQLite stores text as UTF-8: such a name cannot be recorded
            return FileResult(printable(name), "failed", "file name is not valid UTF-8; rename the file to index it")
        previous, stat = look or self._look(path)
        if isinstance(stat, OSError):
            reason = f"cannot read: {stat.strerror or stat}"
            if previous and previous["status"] == "failed" and previous["error"] == reason and not retry_failed:
                return FileResult(name, "earlier_failure", reason)
            return self._fail(name, 0, 0.0, reason)
        if not _changed(previous, stat):
            if previous["status"] == "ok" or (previous["status"] == "partial" and not retry_failed):
                return self._check_text(path, retry_failed=retry_failed)
            if not retry_failed:
                return FileResult(name, "earlier_failure", previous["error"])
        try:
            digest = content_hash() if content_hash else file_hash(path)
        except OSError as exc:
            return self._fail(name, stat.st_size, stat.st_mtime, f"cannot read: {exc.strerror or exc}")
        if previous and previous["status"] == "ok" and previous["hash"] == digest:
            self.index.db.touch_video(name, size=stat.st_size, mtime=stat.st_mtime)
            return self._check_text(path, retry_failed=retry_failed)
        donor = self.index.db.video_with_hash(digest, other_than=name)
        if donor is not None:
            return self._reuse(path, donor["path"], stat)
        return path, stat, digest

    def _check_text(self, path: Path, *, retry_failed: bool = False) -> FileResult:
        """An unchanged video: read again the text sources whose files or engine changed (or that failed, with
        `retry_failed`), in one transaction that leaves its frames and vectors alone."""
        name = str(path)
        stamp = stamp_of(path, self.text.speech, self.sidecars)
        kinds = kinds_to_read(self.index.db.text_of(name, lines=False), stamp, retry_failed=retry_failed)
        if not kinds:
            return FileResult(name, "unchanged")
        text = record(self.text.read(path, kinds), stamp)
        self.index.db.replace_text(name, text, sources=lambda source: kind(source) in kinds)
        return FileResult(name, "text_updated", **_text_outcome(text))

    def encode_files(self, files: list[tuple[Path, os.stat_result, str]]) -> Iterator[FileResult]:
        """Decode (in worker processes) and encode (here) overlapped; commit each video when its last window is in."""
        if not files:
            return
        from .decode_workers import DecodeJob, Finished, Started, Window, decode_all

        stamps = [stamp_of(path, self.text.speech, self.sidecars) for path, _, _ in files]
        texts = [self.text.submit(path, KINDS) for path, _, _ in files]  # read beside loading, decoding and encoding
        encoder, settings = self.encoder, self.settings
        jobs = [DecodeJob(key, path, settings.fps, encoder.image_size, settings.window, settings.deblock, settings.cuts)
                for key, (path, _, _) in enumerate(files)]
        infos: dict[int, Started] = {}
        segments: dict[int, list[Segment]] = {}
        batch: list[Window] = []  # windows waiting to be encoded together (of any length up to the window)
        finished: list[Finished] = []  # files whose last window is still in `batch`

        def encode_batch() -> Iterator[FileResult]:
            if batch:
                durations = [infos[w.key].duration for w in batch]
                for window, found in zip(batch, self.encode_windows(batch, durations)):
                    segments[window.key] += found
                batch.clear()
            for event in finished:
                info = infos.get(event.key)
                yield self.finish_file(files[event.key], info.duration if info else 0.0, info.fps if info else 0.0,
                                       event, segments.pop(event.key, None) or [], lambda key=event.key: texts[key].result(),
                                       stamps[event.key])
            finished.clear()

        for event in decode_all(jobs, workers=self.workers, depth=2 + self.workers):
            if isinstance(event, Started):
                infos[event.key], segments[event.key] = event, []
            elif isinstance(event, Window):
                crash_point("decode")
                batch.append(event)
                if len(batch) >= self.batch_size(settings.window):
                    yield from encode_batch()
            elif isinstance(event, Finished):
                finished.append(event)
                if not any(w.key == event.key for w in batch):
                    yield from encode_batch()
        yield from encode_batch()

    def finish_file(self, file: tuple[Path, os.stat_result, str], duration: float, fps: float, end: Finished,
                    segments: list[Segment], text: Callable[[], object], stamp: dict) -> FileResult:
        """Record one file once all its windows are encoded (here or on a cluster): failed when decoding gave
        nothing, else committed with its segments and text (`text()` waits for the text read beside), marked
        partial when decoding stopped early."""
        path, stat, digest = file
        if end.error and not segments:
            return self._fail(str(path), stat.st_size, stat.st_mtime, end.error)
        # decoding that stopped part-way keeps what it got, marked partial
        return self._commit(path, stat, digest, duration, fps, end.frames, segments, record(text(), stamp),
                            partial=end.error, covered=end.covered if end.error else None)

    def batch_size(self, frames: int) -> int:
        return windows_per_batch(self.encoder, self.settings, frames, self.batch)

    def encode_windows(self, windows: list[Window], durations: list[float]) -> list[list[Segment]]:
        return encode_windows(self.encoder, self.config, self.settings, windows, durations)

    def _fail(self, path: str, size: int, mtime: float, reason: str) -> FileResult:
        db = self.index.db

        def write():
            old_ids = db.segment_ids(path)
            db.save_failure(path=path, size=size, mtime=mtime, error=reason)
            return old_ids, []

        self.index.commit(write)
        return FileResult(path, "failed", reason)

    def _reuse(self, path: Path, source: str, stat: os.stat_result) -> FileResult:
        """A renamed or copied file: take the vectors and the embedded and spoken text of the same content, no
        decoding or encoding; read its own sidecar files."""
        name, db = str(path), self.index.db
        stamp = stamp_of(path, self.text.speech, self.sidecars)
        donor = db.text_of(source, sources=lambda s: kind(s) != "sidecar")
        sidecars = record(self.text.read(path, ["sidecar"]), stamp)
        text = VideoTextRecord(donor.lines + sidecars.lines, donor.sources + sidecars.sources,
                               {**stamp, "speech": donor.stamp.get("speech")} if donor.stamp else {})

        def write():
            with db.db.atomic():
                old_ids = db.segment_ids(name)
                return old_ids, db.copy_video(source, path=name, size=stat.st_size, mtime=stat.st_mtime, text=text)

        self.index.commit(write)
        refreshed = self._check_text(path)  # the donor's text may be older than this run's speech engine
        read = _text_outcome(sidecars)
        return FileResult(name, "reused", text_problems=read["text_problems"] + refreshed.text_problems,
                          text_notes=read["text_notes"] + refreshed.text_notes)

    def _commit(self, path: Path, stat: os.stat_result, digest: str, duration: float, fps: float, frames: int,
                segments: list[Segment], text: VideoTextRecord, *, partial: str | None = None,
                covered: float | None = None) -> FileResult:
        """One transaction for the video's row, segments, vectors and text (and, for the first video, the model);
        then FAISS."""
        name, db = str(path), self.index.db

        def write():
            with db.db.atomic():
                self._bind()
                old_ids = db.segment_ids(name)
                return old_ids, db.save_video(path=name, size=stat.st_size, mtime=stat.st_mtime, hash=digest,
                                              duration=duration, fps=fps, frames=frames, segments=segments,
                                              partial=partial, covered=covered, text=text)

        self.index.commit(write)
        self.bound = True
        if partial:
            return FileResult(name, "partial", partial, seconds=covered or 0.0, frames=frames, **_text_outcome(text))
        return FileResult(name, "indexed", seconds=duration, frames=frames, **_text_outcome(text))


def windows_per_batch(encoder, settings: IndexSettings, frames: int, batch: int | None) -> int:
    """Windows per forward pass: --batch, else the encoder's choice; 1 with token dropping, whose random
    draw is seeded per window so that every window is encoded the same way on every run."""
    if settings.keep_ratio < 1.0:
        return 1
    return batch or encoder.windows_per_batch(frames)


def encode_windows(encoder, config, settings: IndexSettings, windows: list[Window], durations: list[float]) -> list[list[Segment]]:
    """Each window's segment vectors (on the fixed time grid) and its window vector, L2-normalised: the same
    wherever it runs (this process, or an encoder actor on a cluster)."""
    if settings.keep_ratio < 1.0:
        import torch

        torch.manual_seed(round(windows[0].times[0] * 1000))  # dropped tokens depend only on the window
    encoded = encoder.encode_clips([w.frames for w in windows], keep_ratio=settings.keep_ratio)
    return [window_segments(w.times, slices, whole, duration, tubelet=config.tubelet_size, settings=settings)
            for w, (slices, whole), duration in zip(windows, encoded, durations)]


def window_segments(times: list[float], slices: np.ndarray, whole: np.ndarray, duration: float, *, tubelet: int,
                    settings: IndexSettings) -> list[Segment]:
    from .encoder import l2_normalize

    spans = slice_spans(times, tubelet=tubelet, frame_seconds=1.0 / settings.fps, duration=duration)
    found = [Segment("segment", spans[g.start][0], spans[g.stop - 1][1], l2_normalize(slices[g.start:g.stop].mean(axis=0)))
             for g in group_segments(spans, settings.segment)]
    return [*found, Segment("window", spans[0][0], spans[-1][1], l2_normalize(whole))]


def _text_outcome(text: VideoTextRecord) -> dict[str, tuple[str, ...]]:
    """A FileResult's text problems and notes, from the source rows read in this run: "SOURCE: reason", one for
    the sources that share a reason ("embedded, sidecar: decoder crashed: ...")."""
    def joined(pairs) -> tuple[str, ...]:
        sources: dict[str, list[str]] = {}
        for source, reason in pairs:
            sources.setdefault(reason, []).append(source)
        return tuple(f"{', '.join(names)}: {reason}" for reason, names in sources.items())

    return {"text_problems": joined((source, problem) for source, _, _, problem, _ in text.sources if problem),
            "text_notes": joined((source, note) for source, _, _, _, note in text.sources if note)}


def _changed(previous: dict | None, stat: os.stat_result | OSError) -> bool:
    """Whether a looked-at file (Indexer._look) differs from its indexed row by size or time, or was never indexed:
    then its content is hashed (an unreadable file is settled without it)."""
    if isinstance(stat, OSError):
        return False
    return not (previous and previous["size"] == stat.st_size and previous["mtime"] == stat.st_mtime)


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def printable(name: str) -> str:
    """A path that can always be printed: undecodable bytes of the file name shown as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _vanished(path: str) -> bool:
    """Is the file gone? A file that cannot be looked at (a folder without permission) is not."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False
