"""`index --ray`: (file, time range) units decoded in Ray Data tasks and encoded in an actor pool; this process writes."""

from __future__ import annotations

import logging
import math
import os
import signal
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .db import Segment
from .decode_workers import DecodeJob, Finished, Started, Window, decode_job
from .errors import BadVideo, UsageError, VidsearchError
from .faults import KILL_AT, crash_point
from .indexer import FileResult, Indexer, encode_windows, windows_per_batch
from .text_index import KINDS, stamp_of
from .windows import chunked, cut_cell

UNIT_SECONDS = 120.0  # video per work unit, rounded to whole windows (cells, with cuts): a long file spreads over workers
RETRIES = 2  # Ray retries a unit whose worker died this many times (so three tries in all)
EPS = 1e-3  # frames.py's tolerance: a frame this close before a unit's end belongs to the next unit
NO_ERROR, NOT_COVERED = "", -1.0  # Arrow columns hold no None


@dataclass
class _File:
    """The driver's view of one file sent to the cluster: its units as they come back."""

    file: tuple  # (path, stat, hash), as Indexer.check_file gave it
    duration: float
    fps: float
    units: int
    unit_frames: int  # frames in every unit but the last (whole windows)
    text: object  # the text read beside (a future)
    stamp: dict
    windows: dict[tuple[int, int], list[Segment]] = field(default_factory=dict)  # (unit, window) -> segments
    ends: dict[int, dict] = field(default_factory=dict)  # unit -> its end row
    round: int = 0  # 1 once it is redone as one unit: rows of the first round arriving late are ignored

    def complete(self) -> bool:
        return len(self.ends) == self.units and len(self.windows) == sum(e["windows"] for e in self.ends.values())

    def aligned(self) -> bool:
        """Did the units cut the file exactly where one continuous decode cuts it into windows? True when every unit
        but the last got exactly its frames without error, and the last got some (or the file is one unit)."""
        if self.units == 1:
            return True
        inner = [self.ends[u] for u in range(self.units - 1)]
        return (all(e["frames"] == self.unit_frames and e["error"] == NO_ERROR for e in inner)
                and self.ends[self.units - 1]["frames"] > 0)

    def finished(self) -> Finished:
        """The whole file's end, as a single decode would have reported it."""
        last = self.ends[self.units - 1]
        frames = sum(e["frames"] for e in self.ends.values())
        error = last["error"] or None
        if not frames and not error:
            error = "no decodable frames"
        covered = last["covered"] if last["covered"] != NOT_COVERED and frames else None
        return Finished(0, frames, error, covered)

    def segments(self) -> list[Segment]:
        return [s for key in sorted(self.windows) for s in self.windows[key]]


def unit_frames(fps: float, window: int, unit_seconds: float | None, *, cuts: bool = False) -> int:
    """Frames per unit: whole windows of about `unit_seconds`, whole cells of them with `cuts` (windows.cut_cell: at
    least one); 0: the whole file is one unit."""
    whole = cut_cell(window) if cuts else window
    return max(1, round(unit_seconds * fps / whole)) * whole if unit_seconds else 0


def unit_rows(key: int, path: Path, *, duration: float, video_fps: float, fps: float, size: int, window: int,
              deblock: bool, unit_seconds: float | None, lap: int = 0, cuts: bool = False) -> list[dict]:
    """A file's work units: about `unit_seconds` each (unit_frames), the last open-ended; one unit when
    `unit_seconds` is None (or the file is short). `duration` and `video_fps` are the probe's (-1 and 0 for a whole
    file not probed here: its decode task probes it)."""
    per_unit = unit_frames(fps, window, unit_seconds, cuts=cuts)
    count = max(1, math.ceil(duration * fps / per_unit - 1e-9)) if per_unit else 1
    length = per_unit / fps if per_unit else 0.0
    return [{"key": key, "round": lap, "path": str(path), "unit": u, "units": count, "start": u * length,
             "end": (u + 1) * length if u + 1 < count else -1.0, "fps": fps, "size": size, "window": window,
             "deblock": deblock, "cuts": cuts, "duration": duration, "video_fps": video_fps} for u in range(count)]


def header_seconds(path: Path) -> float | None:
    """The duration a file's header declares, without decoding anything (None when it declares none or cannot be
    opened): enough to tell a file that fits in one unit."""
    import av

    try:
        with av.open(str(path)) as container:
            return container.duration / av.time_base if container.duration else None
    except (av.FFmpegError, OSError, ValueError):
        return None


def crash_once(name: str) -> None:
    """faults.crash_point, but only on the first try in this Ray job: the worker dies, and Ray's retry gets through."""
    wanted = os.environ.get(KILL_AT, "")
    if wanted != name and not wanted.startswith(f"{name}:SIG"):
        return
    import ray

    context = ray.get_runtime_context()
    marker = Path(context.get_temp_dir(),
                  f"vidsearch-fault-{context.get_session_name()}-{context.get_job_id()}-{name.encode().hex()}")
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    crash_point(name)


def decode_unit(unit: dict) -> Iterator[dict]:
    """A unit's windows, then its end row (frames, error, covered). A whole file is decoded by decode_workers'
    decode_job; a time range by frames.sample_frames from `start`, stopping before `end`."""
    from .frames import Coverage, sample_frames
    from .windows import frame_windows

    name, number = Path(unit["path"]).name, unit["unit"]
    crash_point(f"ray-decode@{name}#{number}")
    common = {"key": unit["key"], "round": unit["round"], "unit": number}
    info = {"duration": unit["duration"], "video_fps": unit["video_fps"]}  # a whole file's come from decode_job's probe

    def window_row(index: int, times, frames) -> dict:
        if index == 1:
            crash_once(f"ray-decode-once@{name}#{number}")  # one window of the unit is already out
        return {**common, "index": index, "times": np.asarray(times, np.float64), "frames": frames,
                **info, "frames_count": 0, "windows": 0, "error": NO_ERROR, "covered": NOT_COVERED}

    def end_row(windows: int, frames: int, error: str | None, covered: float | None) -> dict:
        size = unit["size"]
        return {**common, "index": -1, "times": np.zeros(0, np.float64), "frames": np.zeros((0, size, size, 3), np.uint8),
                **info, "frames_count": frames, "windows": windows, "error": error or NO_ERROR,
                "covered": NOT_COVERED if covered is None else covered}

    index = 0
    if unit["units"] == 1:
        job = DecodeJob(unit["key"], Path(unit["path"]), unit["fps"], unit["size"], unit["window"], unit["deblock"],
                        unit["cuts"])
        for event in decode_job(job):
            if isinstance(event, Started):
                info.update(duration=event.duration, video_fps=event.fps)
            elif isinstance(event, Window):
                yield window_row(index, event.times, event.frames)
                index += 1
            elif isinstance(event, Finished):
                yield end_row(index, event.frames, event.error, event.covered)
        return
    last = unit["end"] < 0
    coverage, count = Coverage(), 0
    frames = sample_frames(unit["path"], fps=unit["fps"], size=unit["size"], start=unit["start"],
                           end=None if last else unit["end"] - EPS, deblock=unit["deblock"], coverage=coverage)
    try:
        for chunk in frame_windows(frames, unit["window"], cuts=unit["cuts"]):
            count += len(chunk)
            yield window_row(index, [t for t, _ in chunk], np.stack([f for _, f in chunk]))
            index += 1
    except BadVideo as exc:
        yield end_row(index, count, exc.reason, coverage.decoded if count else None)
        return
    except OSError as exc:
        yield end_row(index, count, f"cannot read: {exc.strerror or exc}", coverage.decoded if count else None)
        return
    yield end_row(index, count, coverage.shortfall() if last else None, coverage.decoded if count else None)


class EncodeActor:
    """One encoder per actor, loaded once: windows in, their segments (kinds, spans, L2-normalised vectors) out."""

    def __init__(self, spec: str, device: str, settings: dict, batch: int | None, threads: int | None = None,
                 compile: bool = False):
        from .config import IndexSettings
        from .encoder import Encoder

        if threads:  # Ray sets one thread per CPU the actor holds; a CPU actor may use more, as a local run does
            import torch

            torch.set_num_threads(threads)
        self.encoder = Encoder.load(spec, device, compile=compile)
        self.config = self.encoder.config
        self.settings = IndexSettings(**settings)
        self.batch = batch

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, list]:
        crash_point("ray-encode")
        out: dict[str, list] = {k: [] for k in ("key", "round", "unit", "index", "frames_count", "windows", "error", "covered",
                                                "duration", "video_fps", "levels", "spans", "vectors")}
        windows = [i for i, index in enumerate(rows["index"]) if index >= 0]
        found: dict[int, list[Segment]] = {}
        per_pass = windows_per_batch(self.encoder, self.settings, self.settings.window, self.batch)
        for chosen in chunked(windows, per_pass):  # a forward pass at a time, windows of any length together
            batch = [Window(0, list(rows["times"][i]), rows["frames"][i]) for i in chosen]
            for i, segments in zip(chosen, encode_windows(self.encoder, self.config, self.settings, batch,
                                                           [float(rows["duration"][i]) for i in chosen])):
                found[i] = segments
        from .registry import embedding_dim

        dim = embedding_dim(self.config)
        for i in range(len(rows["index"])):
            segments = found.get(i, [])
            for column in ("key", "round", "unit", "index", "frames_count", "error", "covered", "duration", "video_fps"):
                out[column].append(rows[column][i])
            out["windows"].append(rows["windows"][i])
            out["levels"].append(np.array([s.level == "window" for s in segments], np.bool_))
            out["spans"].append(np.array([(s.start, s.end) for s in segments], np.float64).reshape(-1, 2))
            vectors = [np.asarray(s.vector, np.float32) for s in segments]
            out["vectors"].append(np.stack(vectors) if vectors else np.zeros((0, dim), np.float32))
        return out


@dataclass(frozen=True)
class EncoderPlan:
    """How the encoder actor pool uses the cluster (encoder_plan)."""

    device: str
    actors: int
    gpus_per_actor: int
    cpus_per_actor: int
    threads: int | None  # torch threads of a CPU actor (None: Ray's default, a GPU actor's)
    batch_size: int  # rows (windows) handed to an actor at a time


def encoder_plan(resources: dict, device: str, batch: int | None) -> EncoderPlan:
    """One actor per GPU when the cluster has GPUs (unless --device cpu), each holding one GPU and no CPU (the decode
    tasks take those); otherwise one actor per two CPUs, each running torch on its two threads as a local run does."""
    gpus = 0 if device == "cpu" else int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    if gpus:
        return EncoderPlan("cuda", gpus, 1, 0, None, batch or 8)
    actors = max(1, cpus // 2)
    return EncoderPlan("cpu", actors, 0, 1, max(1, cpus // actors), batch or 1)


def encoder_class(spec: str, device: str, settings: dict, batch: int | None, threads: int | None,
                  compile: bool = False) -> type:
    """EncodeActor with its arguments built in: Ray ships the class itself, so a restarted actor needs nothing from
    the object store."""

    class Encoder(EncodeActor):
        def __init__(self):
            super().__init__(spec, device, settings, batch, threads, compile)

    return Encoder


def connect(address: str | None) -> dict:
    """Join the Ray cluster at `address` (`auto`: the one `ray start --head` runs here), or start a local one when
    None; the fault-injection variable goes to every worker. Returns the cluster's resources."""
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'vidsearch[ray]'") from None
    env = {KILL_AT: os.environ[KILL_AT]} if os.environ.get(KILL_AT) else {}
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # Ray's C++ notes on stderr (set it to see them)
    options = dict(runtime_env={"env_vars": env}, log_to_driver=False, logging_level="ERROR")
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        if address is None:
            # Ray runs workers at nice 15; on a machine busy with other work that starves them, while a local run
            # decodes and encodes at the usual priority. The Ray started here does the same (set it to change that).
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(include_dashboard=False, **options)
        else:
            ray.init(address=address, **options)
    except ConnectionError as exc:
        raise VidsearchError(f"cannot join the Ray cluster at {address}: {exc} (a cluster from `ray start` wants its "
                             f"token: RAY_AUTH_MODE=token, or --ray auto on its head node)") from None
    finally:  # ray.init takes SIGTERM (it dumps stacks and exits): give Ctrl-C and SIGTERM back to the indexer
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)
    import ray._private.worker as ray_worker
    import ray.data

    # Ray prints the cluster's error notes ("(raylet) A worker died ...") on stdout, where `--json` goes: to stderr.
    # (A private function: if a Ray release renames it, the notes simply stay on stdout.)
    to_stream = getattr(ray_worker, "print_to_stdstream", None)
    if to_stream is not None and not getattr(to_stream, "vidsearch", False):
        def to_stderr(data, ignore_prefix):
            to_stream({**data, "is_err": True}, ignore_prefix)

        to_stderr.vidsearch = True
        ray_worker.print_to_stdstream = to_stderr
    for handler in logging.getLogger("ray.data").handlers:  # vidsearch reports progress and failures; Ray Data still
        if not isinstance(handler, logging.FileHandler):  # logs everything to its file (ray-data.log in the session)
            handler.setLevel(logging.CRITICAL)
    return ray.cluster_resources()


class RayIndexer(Indexer):
    """An Indexer whose files are decoded and encoded on a Ray cluster. Everything else is the Indexer's, here on the
    driver: finding files, skipping unchanged ones, renames, removals, text, and every write to SQLite and FAISS."""

    def __init__(self, index, *, address: str | None = None, unit_seconds: float = UNIT_SECONDS, **options):
        super().__init__(index, **options)
        self.address, self.unit_seconds = address, unit_seconds
        self.resources: dict | None = None
        self.stats = {"units": 0, "redone": 0, "encoders": 0}  # work units sent; files redone as one unit

    def encode_files(self, files: list[tuple[Path, os.stat_result, str]]) -> Iterator[FileResult]:
        """Plan units (probing each file here), stream them through the cluster, commit each file once all its units
        are back. A file whose units do not line up with one continuous decode (a variable frame rate, a gap, an error
        inside) goes round again as one unit, so the result always equals a local run's."""
        if not files:
            return
        from .frames import probe

        size = self._image_size()
        todo: dict[int, _File] = {}
        units: list[dict] = []
        settings = self.settings
        per_unit = unit_frames(settings.fps, settings.window, self.unit_seconds, cuts=settings.cuts)
        for key, (path, stat, digest) in enumerate(files):
            # A file that may not fit in one unit is probed here to be cut; the others are probed by their decode task.
            declared = header_seconds(path)
            duration, video_fps = -1.0, 0.0
            if declared is None or declared * settings.fps > per_unit:
                try:
                    info = probe(path)
                except BadVideo as exc:
                    yield self._fail(str(path), stat.st_size, stat.st_mtime, exc.reason)
                    continue
                except OSError as exc:
                    yield self._fail(str(path), stat.st_size, stat.st_mtime, f"cannot read: {exc.strerror or exc}")
                    continue
                duration, video_fps = info.duration, info.fps
            rows = unit_rows(key, path, duration=duration, video_fps=video_fps, fps=settings.fps, size=size,
                             window=settings.window, deblock=settings.deblock, unit_seconds=self.unit_seconds,
                             cuts=settings.cuts)
            todo[key] = _File((path, stat, digest), duration, video_fps, len(rows), per_unit if len(rows) > 1 else 0,
                              self.text.submit(path, KINDS), stamp_of(path, self.text.speech, self.sidecars))
            units += rows
        while units:
            again: list[dict] = []
            yield from self._stream(units, todo, again)
            units = again

    def _image_size(self) -> int:
        """The model's frame size, read from its architecture: the driver never loads the model."""
        arch = self.config.clip_arch
        if not isinstance(arch, dict):
            import open_clip

            arch = open_clip.get_model_config(arch)
        size = arch["vision_cfg"]["image_size"]
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    def _stream(self, units: list[dict], todo: dict[int, _File], again: list[dict]) -> Iterator[FileResult]:
        import ray

        if self.resources is None:
            self.resources = connect(self.address)
        data = ray.data.DataContext.get_current()
        data.enable_progress_bars = False
        data.max_errored_blocks = -1  # a unit that fails every try costs its file only (found missing below)
        plan = encoder_plan(self.resources, self.device, self.batch)
        self.stats["units"] += len(units)
        self.stats["encoders"] = plan.actors
        dataset = ray.data.from_items(units, override_num_blocks=len(units))  # a block (so a task) per unit
        with warnings.catch_warnings():  # Ray 2.60 deprecates retry settings as arguments, and has no other way yet
            warnings.simplefilter("ignore")
            dataset = dataset.flat_map(decode_unit, num_cpus=1, max_retries=RETRIES)
            dataset = dataset.map_batches(
                encoder_class(self.spec, plan.device, self.settings.to_dict(), self.batch, plan.threads, self.compile),
                batch_size=plan.batch_size, compute=ray.data.ActorPoolStrategy(min_size=1, max_size=plan.actors),
                num_gpus=plan.gpus_per_actor, num_cpus=plan.cpus_per_actor, batch_format="numpy",
                max_restarts=-1, max_task_retries=RETRIES)  # a dead actor is replaced and its batch retried
        for row in dataset.iter_rows():
            file = todo.get(int(row["key"]))
            if file is None or int(row["round"]) != file.round:
                continue  # already settled, or redone (a retried task may send its rows again)
            unit, index = int(row["unit"]), int(row["index"])
            if index < 0:
                if file.units == 1:  # probed by its decode task
                    file.duration, file.fps = float(row["duration"]), float(row["video_fps"])
                file.ends[unit] = {"frames": int(row["frames_count"]), "windows": int(row["windows"]),
                                   "error": str(row["error"]), "covered": float(row["covered"])}
            else:
                file.windows[(unit, index)] = [Segment("window" if level else "segment", float(a), float(b), v)
                                               for level, (a, b), v in zip(row["levels"], row["spans"], row["vectors"])]
            if file.complete():
                yield from self._settle(int(row["key"]), todo, again)
        sent, retold = {u["key"] for u in units}, {u["key"] for u in again}
        for key in [k for k in todo if k in sent and k not in retold]:  # units lost: their tasks failed every try
            file = todo.pop(key)
            path, stat, _ = file.file
            tries = RETRIES + 1
            yield self._fail(str(path), stat.st_size, stat.st_mtime,
                             f"decoder crashed: the Ray worker failed on all {tries} tries (see the Ray logs)")

    def _settle(self, key: int, todo: dict[int, _File], again: list[dict]) -> Iterator[FileResult]:
        file = todo.pop(key)
        if not file.aligned():
            path = file.file[0]
            file.units, file.windows, file.ends, file.round = 1, {}, {}, file.round + 1
            self.stats["redone"] += 1
            todo[key] = file
            again += unit_rows(key, path, duration=file.duration, video_fps=file.fps, fps=self.settings.fps,
                               size=self._image_size(),
                               window=self.settings.window, deblock=self.settings.deblock, unit_seconds=None,
                               lap=file.round, cuts=self.settings.cuts)
            return
        yield self.finish_file(file.file, file.duration, file.fps, file.finished(), file.segments(),
                               file.text.result, file.stamp)
