"""Checkpoint folders: check where one may be written, write one and swap it in, recover an interrupted swap."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ModelConfig
from .errors import UsageError
from .faults import crash_point

if TYPE_CHECKING:  # torch and safetensors load only when a checkpoint is written
    from .model import VideoTextModel

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "train_state.pt"
LOG_FILE = "train_log.jsonl"
CHECKPOINT_FILES = frozenset({CONFIG_FILE, WEIGHTS_FILE, STATE_FILE, LOG_FILE})


def old_path(folder: Path) -> Path:
    """Where the previous checkpoint waits while a new one is swapped in: `.NAME.old` beside it."""
    return folder.with_name(f".{folder.name}.old")


def temp_folders(folder: Path) -> list[Path]:
    """Leftover `.NAME.tmp-XXXXXXXX` folders beside `folder` (new checkpoints a killed run did not finish)."""
    pattern = re.compile(rf"\.{re.escape(folder.name)}\.tmp-[a-z0-9_]{{8}}")
    try:
        return sorted(p for p in folder.parent.iterdir() if pattern.fullmatch(p.name))
    except FileNotFoundError:
        return []


def is_checkpoint(folder: Path) -> bool:
    """A real folder (not a link) holding only checkpoint files, among them a readable config and the weights."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    if _foreign(folder) or not (folder / WEIGHTS_FILE).is_file():
        return False
    try:
        ModelConfig.load(folder / CONFIG_FILE)
    except (OSError, ValueError, TypeError):
        return False
    return True


def check_target(folder: Path) -> None:
    """Refuse, with one line, an --out that is not missing, an empty folder or a vidsearch checkpoint: nothing else
    is ever replaced."""
    folder = Path(folder)
    if folder.is_symlink():
        raise UsageError(f"--out {folder}: is a symbolic link; give the folder it points to")
    if not folder.exists():
        return
    if not folder.is_dir():
        raise UsageError(f"--out {folder}: is a file, not a checkpoint folder; give a new or empty folder")
    if not any(folder.iterdir()) or is_checkpoint(folder):
        return
    foreign = _foreign(folder)
    if foreign:
        what = f"it holds {foreign[0]!r}" + (f" and {len(foreign) - 1} more" if len(foreign) > 1 else "")
    else:
        what = f"its {CONFIG_FILE} or {WEIGHTS_FILE} is missing or unreadable"
    raise UsageError(f"--out {folder}: is not a vidsearch checkpoint ({what}); give a new or empty folder")


def recover(folder: Path) -> None:
    """Finish what a killed save left: put `.NAME.old` back when NAME is missing, else delete it, and delete
    unfinished temporary folders. Only folders holding nothing but checkpoint files are renamed or deleted."""
    folder = Path(folder)
    old = old_path(folder)
    if old.is_dir() and not old.is_symlink() and not _foreign(old):
        if not os.path.lexists(folder):
            os.replace(old, folder)  # killed between the two renames of a swap: the last checkpoint comes back
            _fsync(folder.parent)
        else:
            _discard(old)  # killed after the new checkpoint was in place: the old one is no longer needed
    for tmp in temp_folders(folder):
        _discard(tmp)


def save_checkpoint(model: VideoTextModel, config: ModelConfig, folder: Path, *, extra_files: dict[str, bytes] | None = None,
                    step: int | None = None) -> None:
    """Write `config.json` + `model.safetensors` (+ extras) to `.NAME.tmp-XXXXXXXX`, flush them to disk, then swap
    the folder in: NAME -> `.NAME.old`, temp -> NAME, delete `.NAME.old`. Killed anywhere, the old or the new
    checkpoint survives (see recover)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    unknown = sorted(set(extra_files or {}) - CHECKPOINT_FILES)
    if unknown:
        raise ValueError(f"not checkpoint files: {', '.join(unknown)}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    check_target(folder)
    recover(folder)
    old = old_path(folder)
    if os.path.lexists(old):
        raise UsageError(f"{old}: holds files vidsearch did not write; move it away so {folder} can be replaced")
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    try:
        replace(config, pretrained=None).save(tmp / CONFIG_FILE)
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE))
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a checkpoint is an ordinary folder
        for file in tmp.iterdir():
            os.chmod(file, 0o666 & ~umask)
            _fsync(file)
        _fsync(tmp)
        if folder.exists():
            os.replace(folder, old)
        crash_point(f"checkpoint-swap@{step}")
        os.replace(tmp, folder)
        _fsync(folder.parent)  # both renames are on disk before the old checkpoint goes
        _discard(old)
    finally:
        _discard(tmp)


def _foreign(folder: Path) -> list[str]:
    """Entries of `folder` that are not checkpoint files (regular files with a checkpoint file's name)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in CHECKPOINT_FILES or p.is_symlink() or not p.is_file())


def _discard(folder: Path) -> bool:
    """Delete `folder` if it is a real folder holding nothing but checkpoint files; say whether it is gone."""
    if not os.path.lexists(folder):
        return True
    if folder.is_symlink() or not folder.is_dir() or _foreign(folder):
        return False
    for file in folder.iterdir():
        file.unlink()
    folder.rmdir()
    return True


def _fsync(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
