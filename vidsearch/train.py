"""Contrastive pre-training with input masking: the loop, the schedule, checkpoints, resume and torchrun."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import pickle
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from . import checkpoint, registry
from .checkpoint import LOG_FILE, STATE_FILE
from .data import SAMPLINGS, ClipDataset, epoch_batches, load_pairs, span_bytes
from .device import autocast, grad_scaler, resolve_device
from .errors import ModelUnavailable, UsageError
from .faults import crash_point
from .loss import ContrastiveLoss
from .prefetch import prefetch

CACHE_LIMIT_BYTES = 2 << 30  # decode every pair's span once and keep it in memory when all of them fit in this


@dataclass
class TrainSettings:
    """Everything `vidsearch train` takes; saved in the checkpoint so a resumed run continues identically."""

    manifest: str
    out: str
    model: str = "longvivit-b32"
    val: str | None = None
    frames: int = 16
    fps: float = 1.0
    sampling: str = "spread"  # data.take_clip: frames over the whole span (spans that fit in the clip: the same either way)
    mask_ratio: float = 0.75
    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.1
    warmup: int | None = None  # steps; default 5% of the run
    train_last: int | None = None
    mixing: str = "joint"
    group_by_video: bool = False
    grad_checkpointing: bool = False
    checkpoint_every: int = 200
    device: str = "auto"
    seed: int = 0
    workers: int | None = None  # decode processes per training process; None: default_workers
    log_every: int = 10

    def validate(self) -> None:
        if not 0 <= self.mask_ratio < 1:
            raise UsageError("--mask-ratio must be in [0, 1)")
        if self.frames < 1 or self.batch_size < 2:
            raise UsageError("--frames must be >= 1 and --batch-size >= 2 (contrastive needs negatives)")
        if self.steps is not None and self.epochs is not None:
            raise UsageError("give --steps or --epochs, not both")
        if self.lr <= 0:
            raise UsageError("--lr must be positive")
        if self.sampling not in SAMPLINGS:
            raise UsageError(f"--sampling must be {' or '.join(SAMPLINGS)}")
        if self.mixing not in ("frame", "joint"):
            raise UsageError("--mixing must be frame or joint")
        if self.checkpoint_every < 1:
            raise UsageError("--checkpoint-every must be at least 1")
        if self.workers is not None and self.workers < 0:
            raise UsageError("--workers must be 0 (decode in a thread) or more")
        if self.log_every < 1:
            raise UsageError("--log-every must be at least 1")


# the rest of a run is fixed at its start; these change neither the batches nor the updates
RESUME_MAY_CHANGE = ("steps", "epochs", "checkpoint_every", "device", "val", "workers", "log_every")
# what a run saved before a setting existed did, so that resuming it goes on doing that (not the new default)
SAVED_BEFORE = {"sampling": "contiguous"}


def resumed_settings(saved: dict, settings: TrainSettings, given: Collection[str]) -> TrainSettings:
    """The saved run's settings, with the `given` ones (flags the user typed) that may change on --resume; a given
    flag that may not change and differs from the saved run is refused by name."""
    given, saved = set(given), {**SAVED_BEFORE, **saved}
    if given & {"steps", "epochs"}:  # one choice of run length: what was typed replaces both
        given |= {"steps", "epochs"}
    merged, conflicts = {}, []
    for spec in fields(TrainSettings):
        name, mine = spec.name, getattr(settings, spec.name)
        if name == "out" or name not in saved:  # the folder may have moved; a setting newer than the checkpoint
            merged[name] = mine
        elif name not in given or name in RESUME_MAY_CHANGE:
            merged[name] = mine if name in given else saved[name]
        elif _same_setting(name, mine, saved[name]):
            merged[name] = saved[name]
        else:
            conflicts.append((_flag(name, mine), _flag(name, saved[name])))
    if conflicts:
        allowed = [f"--{n.replace('_', '-')}" for n in RESUME_MAY_CHANGE]
        raise UsageError(f"--resume: {_and([c[0] for c in conflicts])} differ{'s' if len(conflicts) == 1 else ''} from the run "
                         f"saved in {settings.out} ({', '.join(c[1] for c in conflicts)}); only {_and(allowed)} may change: "
                         f"drop the others, or train into a new --out")
    return TrainSettings(**merged)


def _same_setting(name: str, given, saved) -> bool:
    if name in ("manifest", "model") and isinstance(given, str) and isinstance(saved, str):
        return given == saved or registry.canonical_spec(given) == registry.canonical_spec(saved)
    return given == saved


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _flag(name: str, value) -> str:
    if name == "manifest":
        return f"MANIFEST {value}"
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else f"--no-{flag[2:]}"
    return f"{flag} {value}"


@dataclass
class StepReport:
    step: int
    steps: int
    loss: float
    lr: float
    clips_per_second: float


def default_workers(world: int) -> int:
    """Decode processes per training process when --workers is not given: the cores left once each training
    process has one, shared among those processes; at least 1 and at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores // world - 1))


def page_locked(device: torch.device) -> bool:
    """Put batches for `device` in page-locked memory? On CUDA only: the copies to the GPU then run asynchronously,
    next to the previous step's kernels (and pinning needs a CUDA driver)."""
    return device.type == "cuda"


def get_lr(step: int, *, base: float, warmup: int, total: int) -> float:
    """Linear warmup to `base`, then cosine decay to 0 at `total`."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class Distributed:
    """torchrun's environment: rank, world size, and the process group (gloo on CPU, NCCL on GPU)."""

    def __init__(self, device_name: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        device = resolve_device(device_name)
        if self.world > 1:
            if device.type == "cuda":
                device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(device)
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
        self.device = device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, value: torch.Tensor) -> float:
        """The mean over ranks (a sync point: only call it when reporting)."""
        value = value.detach()
        if self.world > 1:
            value = value.clone()
            torch.distributed.all_reduce(value)
            value /= self.world
        return float(value)

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.world > 1:
            torch.distributed.destroy_process_group()


def load_state(folder: Path, *, peek: bool = False) -> dict:
    """A checkpoint's train_state.pt, loaded onto the CPU as tensors and plain values only: a file holding any other
    Python object is refused, since unpickling it could run code. `peek` maps the file instead of reading it."""
    path = Path(folder) / STATE_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=peek)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError:
        raise ModelUnavailable(f"{path}: refused: it holds Python objects other than tensors and plain values, and "
                               f"loading it could run code; resume only from checkpoints you trust") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ModelUnavailable(f"{path}: cannot be read ({reason})") from None
    if not (isinstance(state, dict) and isinstance(state.get("step"), int) and isinstance(state.get("optimizer"), dict)
            and isinstance(state.get("settings"), dict)):
        raise ModelUnavailable(f"{path}: not a vidsearch training state (needs step, optimizer and settings)")
    return state


def _saved_settings(out: Path, *, main: bool) -> dict | None:
    """The settings saved in `out`, or None. Only the main process recovers an interrupted swap (before this), so
    the others also look in `.NAME.old`, then in `out` again in case it was just moved back."""
    places = [out] if main else [out, checkpoint.old_path(out), out]
    for folder in places:
        try:
            return load_state(folder, peek=True)["settings"]
        except FileNotFoundError:
            continue
    return None


def train(settings: TrainSettings, *, resume: bool = False, given: Collection[str] | None = None,
          on_problem: Callable[[str], None] = print, on_step: Callable[[StepReport], None] | None = None) -> TrainSettings:
    """Train into `settings.out` and return the settings the run used. Step s always sees the same batch, crops and
    masks, so a resumed run retraces an uninterrupted one exactly.

    With `resume`, settings not in `given` (the flags the user typed; default: those not at their default) come
    from the saved run, and given ones that may not change must match it.
    """
    out = Path(os.path.abspath(settings.out))  # `--out .` names the folder it is in, which a swap can rename
    checkpoint.check_target(out)  # before any work: --out must be new, empty or a checkpoint, so nothing else is lost
    main = int(os.environ.get("RANK", "0")) == 0
    if main:
        checkpoint.recover(out)
    if resume:
        saved = _saved_settings(out, main=main)
        if saved is None:
            raise UsageError(f"--resume: there is no run to continue in {out} (no {STATE_FILE}); drop --resume to start one")
        if given is None:
            given = {f.name for f in fields(TrainSettings) if f.default is MISSING or getattr(settings, f.name) != f.default}
        settings = resumed_settings(saved, settings, given)
    settings.validate()
    dist = Distributed(settings.device)
    dist.barrier()  # the main process has put back an interrupted checkpoint before anyone reads it
    state = load_state(out) if resume else None
    pairs, problems = load_pairs(settings.manifest)
    if dist.main:
        for problem in problems:
            on_problem(str(problem))
    if len(pairs) < settings.batch_size:
        raise UsageError(f"{settings.manifest}: {len(pairs)} usable pairs, fewer than --batch-size {settings.batch_size}")
    if settings.batch_size % dist.world:
        raise UsageError(f"--batch-size {settings.batch_size} must be divisible by the {dist.world} processes")

    config, model = registry.load_model(str(out) if state else settings.model, temporal_mixing=settings.mixing,
                                        clip_frames=settings.frames, fps=settings.fps)
    model.to(dist.device).train()
    model.grad_checkpointing = settings.grad_checkpointing and dist.device.type == "cuda"
    if settings.train_last:
        model.train_only_last(settings.train_last)
    tokenizer = registry.build_tokenizer(config)
    cache = span_bytes(pairs, fps=settings.fps, size=model.image_size) < CACHE_LIMIT_BYTES  # whole spans stay cached
    dataset = ClipDataset(pairs, frames=settings.frames, fps=settings.fps, size=model.image_size, cache=cache,
                          sampling=settings.sampling)

    per_epoch = len(epoch_batches(pairs, settings.batch_size, np.random.default_rng(0), group_by_video=settings.group_by_video))
    total = settings.steps or max(1, round((settings.epochs or 1.0) * per_epoch))
    warmup = settings.warmup if settings.warmup is not None else max(1, total // 20)
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr, betas=(0.9, 0.98), eps=1e-6)
    scaler = grad_scaler(dist.device)  # on only under fp16 (GPUs without native bf16): small gradients would underflow
    step = 0
    if state:
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step = state["step"]
    network = model
    if dist.world > 1:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        network = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    loss_fn = ContrastiveLoss()
    log = (out / LOG_FILE).read_text().splitlines() if state and (out / LOG_FILE).is_file() else []
    keep_ratio = 1.0 - settings.mask_ratio

    workers = settings.workers if settings.workers is not None else default_workers(dist.world)
    pin = page_locked(dist.device)
    batches = _batches(dataset, settings, tokenizer, dist, start=step, total=total, per_epoch=per_epoch, workers=workers,
                       pin=pin)
    started, clips = time.perf_counter(), 0
    with contextlib.closing(batches):  # however the loop ends, the decode workers stop
        for batch in batches:
            lr = get_lr(step, base=settings.lr, warmup=warmup, total=total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            torch.manual_seed(settings.seed * 1_000_003 + step * 101 + dist.rank)  # this step's token mask
            video, tokens = batch.video.to(dist.device, non_blocking=pin), batch.tokens.to(dist.device, non_blocking=pin)
            with autocast(dist.device):
                video_emb, text_emb = network(model.normalize_frames(video), tokens, keep_ratio=keep_ratio)
            loss = loss_fn(video_emb, text_emb, model.logit_scale, batch.captions.to(dist.device))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            scaler.step(optimizer)  # skipped when the fp16 gradients overflowed
            scaler.update()
            step += 1
            clips += video.shape[0] * dist.world
            if step % settings.log_every == 0 or step == total:
                # note: reading the loss is a CPU-GPU sync point and an all-reduce, hence only every --log-every steps
                report = StepReport(step, total, dist.mean(loss), lr, clips / (time.perf_counter() - started))
                if dist.main:
                    log.append(json.dumps({"step": step, "loss": round(report.loss, 6), "lr": lr}))
                    if on_step:
                        on_step(report)
            if dist.main and (step % settings.checkpoint_every == 0 or step == total):
                _save(model, config, settings, optimizer, scaler, step, out, log)
            crash_point(f"train-step@{step}")
    dist.close()
    return settings


class Batch(NamedTuple):
    """One step's share of this rank: uint8 clips, caption tokens, and the pairs' caption ids (Pair.caption_id)."""

    video: torch.Tensor
    tokens: torch.Tensor
    captions: torch.Tensor


def _batches(dataset: ClipDataset, settings: TrainSettings, tokenizer, dist: Distributed, *, start: int, total: int,
             per_epoch: int, workers: int, pin: bool) -> Iterator[Batch]:
    """This rank's batches for steps start..total-1, two batches ahead: decoded in `workers` processes (0: a thread
    of this one) and put together in a thread; clips and tokens page-locked when `pin`."""
    local = settings.batch_size // dist.world

    def requests() -> Iterator[list[tuple[int, tuple[int, int, int]]]]:
        # each clip's frames depend only on (seed, step, clip), so any split across ranks or workers sees the same data
        epoch, order = -1, []
        for step in range(start, total):
            now, position = divmod(step, per_epoch)
            if now != epoch:
                epoch, order = now, epoch_batches(dataset.pairs, settings.batch_size, np.random.default_rng([settings.seed, now]),
                                                  group_by_video=settings.group_by_video)
            mine = order[position][dist.rank * local:(dist.rank + 1) * local]
            yield [(i, (settings.seed, step, i)) for i in mine]

    def make() -> Iterator[Batch]:
        with contextlib.closing(dataset.batches(requests, workers=workers, depth=max(2, local))) as clips:
            for batch, frames in zip(requests(), clips):
                video = torch.from_numpy(frames)
                tokens = tokenizer([dataset.pairs[i].caption_for(key) for i, key in batch])
                if pin:  # here, off the training thread
                    video, tokens = video.pin_memory(), tokens.pin_memory()
                yield Batch(video, tokens, torch.tensor([dataset.pairs[i].caption_id for i, _ in batch], dtype=torch.int64))

    return prefetch(make(), depth=2)


def _save(model, config, settings: TrainSettings, optimizer, scaler, step: int, out: Path, log: list[str]) -> None:
    """One checkpoint folder, swapped in whole: weights, config, optimizer, loss scaler + step, and the loss log so
    far. The state holds only tensors and plain values, so load_state reads it back with weights_only."""
    buffer = io.BytesIO()
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "settings": asdict(settings)}, buffer)
    extra = {STATE_FILE: buffer.getvalue(), LOG_FILE: "".join(line + "\n" for line in log).encode()}
    checkpoint.save_checkpoint(model, config, out, extra_files=extra, step=step)
