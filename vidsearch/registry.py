"""Model names (models/*.json), config files and checkpoint folders -> ready VideoTextModels, and fingerprints."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .checkpoint import CONFIG_FILE, WEIGHTS_FILE, old_path
from .checkpoint import save_checkpoint as save_checkpoint  # re-exported: it used to live here
from .config import ModelConfig
from .errors import ModelUnavailable, UsageError

if TYPE_CHECKING:  # torch loads only when a model is built: `vidsearch models` and no-op runs stay light
    import torch

    from .model import VideoTextModel

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def registry_dir() -> Path:
    """`models/` as shipped inside the installed package (or beside it in a source checkout)."""
    packaged = Path(str(resources.files("vidsearch") / "models"))
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "models"


def list_models() -> list[ModelConfig]:
    return [ModelConfig.load(p) for p in sorted(registry_dir().glob("*.json"))]


def resolve(spec: str) -> tuple[ModelConfig, Path | None]:
    """A registry name, a model config JSON file or a checkpoint folder -> (config, checkpoint folder or None)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
            raise ModelUnavailable(f"{path}: not a checkpoint folder (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
        return _load_config(path / CONFIG_FILE), path.resolve()
    if not os.path.lexists(path) and old_path(path).is_dir():
        raise ModelUnavailable(f"{path}: missing because saving a checkpoint there was interrupted; the last checkpoint "
                               f"is in {old_path(path)} (the next `vidsearch train --out {path}` puts it back)")
    if path.suffix == ".json" and path.is_file():
        return _load_config(path), None
    entry = registry_dir() / f"{spec}.json"
    if entry.is_file():
        return _load_config(entry), None
    names = ", ".join(c.name for c in list_models())
    raise UsageError(f"--model {spec!r} is not a registry name ({names}), a model JSON file or a checkpoint folder")


def canonical_spec(spec: str) -> str:
    """What an index records to find the model again: a registry name or an absolute path."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def fingerprint(spec: str, *, weights: dict | None = None) -> str:
    """Identifies the exact weights: the recipe digest (what changes the vectors), plus the weights file's hash for
    checkpoints.

    `weights` (a weights_stamp recorded earlier) saves re-reading a weights file whose size and mtime still match.
    """
    return _fingerprints(spec, weights=weights)[0]


def fingerprint_matches(recorded: str, spec: str, *, weights: dict | None = None) -> str | None:
    """The current fingerprint of `spec` when `recorded` names the same weights, by this formula or by the first one
    (which hashed every config field), so the caller can record the current one; None when it names other weights."""
    current, first = _fingerprints(spec, weights=weights)
    return current if recorded in (current, first) else None


def _fingerprints(spec: str, *, weights: dict | None) -> tuple[str, str]:
    """(current formula, first formula) fingerprints of `spec`; they differ only in the recipe digest."""
    config, folder = resolve(spec)
    weights_hash = weights_stamp(spec, known=weights)["sha256"] if folder is not None else None

    def combine(recipe: str) -> str:
        digest = hashlib.sha256(recipe.encode())
        if weights_hash is not None:
            digest.update(weights_hash.encode())
        return digest.hexdigest()[:16]

    return combine(config.digest()), combine(config.digest_v1())


def weights_stamp(spec: str, *, known: dict | None = None) -> dict | None:
    """{"size", "mtime_ns", "sha256"} of a checkpoint folder's weights file (None for other models); `known` is
    returned as is when size and mtime match it, so a query does not hash hundreds of megabytes."""
    _, folder = resolve(spec)
    if folder is None:
        return None
    path = folder / WEIGHTS_FILE
    stat = path.stat()
    if known and (known.get("size"), known.get("mtime_ns")) == (stat.st_size, stat.st_mtime_ns):
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}


def _load_config(path: Path) -> ModelConfig:
    try:
        return ModelConfig.load(path)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelUnavailable(f"{path}: bad model config ({exc})") from exc


def embedding_dim(config: ModelConfig) -> int:
    """The joint embedding size, read from the architecture without building the model."""
    if isinstance(config.clip_arch, dict):
        return int(config.clip_arch["embed_dim"])
    import open_clip

    arch = open_clip.get_model_config(config.clip_arch)
    if arch is None:
        raise ModelUnavailable(f"open_clip has no architecture named {config.clip_arch!r} (model {config.name})")
    return int(arch["embed_dim"])


def build_clip(config: ModelConfig, *, load_pretrained: bool = True) -> torch.nn.Module:
    """The open_clip CLIP model: a named architecture with a pretrained tag or local file, or an inline config."""
    import open_clip
    import torch

    pretrained = config.pretrained if load_pretrained else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.init_seed)  # random-init models are identical on every load
        try:
            if isinstance(config.clip_arch, dict):
                clip = open_clip.CLIP(**config.clip_arch)
                if pretrained:
                    open_clip.load_checkpoint(clip, pretrained)
            else:
                clip = open_clip.create_model(config.clip_arch, pretrained=pretrained and weights_source(config.clip_arch, pretrained))
        except (RuntimeError, OSError, ValueError, KeyError) as exc:
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise ModelUnavailable(
                f"cannot load weights {pretrained!r} for {config.name} ({reason}); put the weights file on disk "
                f"and point \"pretrained\" at it in a copy of models/{config.name}.json passed as --model, "
                f"or use --model tiny") from exc
    return clip


def weights_source(arch: str, pretrained: str) -> str:
    """What to hand open_clip: the cached file of a pretrained tag when it was downloaded before (no network
    round-trip on every start), the tag itself when the hub is reachable, and a clear error when it is not."""
    import socket
    from urllib.parse import urlparse

    import open_clip
    from huggingface_hub import constants, try_to_load_from_cache

    hub = (open_clip.get_pretrained_cfg(arch, pretrained) or {}).get("hf_hub")
    if not hub:
        return pretrained  # a local file, or a tag open_clip will reject with its own message
    repo, filename = os.path.split(hub)
    for name in [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]:
        cached = try_to_load_from_cache(repo, name)
        if isinstance(cached, str):
            return cached
    try:
        socket.getaddrinfo(urlparse(constants.ENDPOINT).hostname, 443)
    except OSError as exc:
        raise RuntimeError(f"weights are not in the local cache and the model hub cannot be reached: {exc}") from None
    return pretrained


def build_model(config: ModelConfig, *, load_pretrained: bool = True) -> VideoTextModel:
    from .model import VideoTextModel

    clip = build_clip(config, load_pretrained=load_pretrained)
    visual = clip.visual
    return VideoTextModel(
        clip=clip,
        temporal_mixing=config.temporal_mixing,
        pooling=config.pooling,
        tubelet_size=config.tubelet_size,
        max_frames=config.max_frames,
        image_mean=tuple(getattr(visual, "image_mean", None) or OPENAI_MEAN),
        image_std=tuple(getattr(visual, "image_std", None) or OPENAI_STD),
    )


def build_tokenizer(config: ModelConfig):
    import open_clip

    if isinstance(config.clip_arch, dict):
        return open_clip.tokenizer.SimpleTokenizer(context_length=config.clip_arch["text_cfg"]["context_length"])
    return open_clip.get_tokenizer(config.clip_arch)


def load_model(spec: str, **overrides) -> tuple[ModelConfig, VideoTextModel]:
    """Build the model named by `spec` (config fields overridden by `overrides`), with checkpoint weights
    when `spec` is a checkpoint folder."""
    config, folder = resolve(spec)
    config = replace(config, **overrides)
    if folder is None:
        return config, build_model(config)
    from safetensors.torch import load_file

    model = build_model(config, load_pretrained=False)
    model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    return config, model


TEXT_PARAMETERS = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")


def pretrained_file(config: ModelConfig) -> str | None:
    """The weights file a pretrained model loads from, once it is on disk (cached download or local file)."""
    if not config.pretrained:
        return None
    source = config.pretrained if isinstance(config.clip_arch, dict) else weights_source(config.clip_arch, config.pretrained)
    return os.path.abspath(source) if os.path.isfile(source) else None


def load_text_tower(spec: str, *, weights_file: str | None = None):
    """(config, TextTower, tokenizer) built from the text weights alone, without importing open_clip: a checkpoint
    folder's, or a pretrained model's `weights_file` (see pretrained_file). None when the model needs the full path
    (random init, weights not on disk, custom text towers)."""
    from .text_tower import TextTower, load_tokenizer, text_architecture

    config, folder = resolve(spec)
    arch = text_architecture(config.clip_arch)
    if arch is None:
        return None
    if folder is not None:
        state = _text_weights(folder / WEIGHTS_FILE, prefix="clip.")
    elif config.pretrained and weights_file and os.path.isfile(weights_file):
        state = _text_weights(Path(weights_file), prefix="")
    else:
        return None
    tower = TextTower(**arch)
    tower.load_state_dict(state)
    return config, tower, load_tokenizer(arch["context_length"])


def _text_weights(path: Path, *, prefix: str) -> dict:
    """The text-tower tensors of a safetensors file (read alone) or of a torch pickle (memory-mapped), unprefixed."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as weights:
            return {key.removeprefix(prefix): weights.get_tensor(key) for key in weights.keys() if _is_text(key, prefix)}
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    state = state.get("state_dict", state)
    state = {key.removeprefix("module."): value for key, value in state.items()}
    return {key.removeprefix(prefix): value for key, value in state.items() if _is_text(key, prefix)}


def _is_text(key: str, prefix: str) -> bool:
    return key.startswith(prefix) and key.removeprefix(prefix).split(".")[0] in TEXT_PARAMETERS
