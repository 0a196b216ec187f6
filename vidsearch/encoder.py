"""Inference wrapper: numpy frames and strings in, L2-normalisable numpy vectors out, on the chosen device."""

from __future__ import annotations

import numpy as np
import torch

from .config import ModelConfig
from .device import autocast, resolve_device
from .model import VideoTextModel
from .registry import build_tokenizer, load_model


class Encoder:
    """A loaded model in eval mode on one device, with its tokenizer."""

    def __init__(self, config: ModelConfig, model: VideoTextModel, device: torch.device, *, compile: bool = False):
        self.config = config
        self.device = device
        self.model = model.to(device).eval()
        self.tokenizer = build_tokenizer(config)
        # torch.compile pays off on long runs on a GPU; it recompiles per clip length, so it is opt-in.
        self._encode_video = torch.compile(self.model.encode_video, dynamic=True) if compile else self.model.encode_video

    @classmethod
    def load(cls, spec: str, device: str = "auto", *, compile: bool = False) -> Encoder:
        config, model = load_model(spec)
        return cls(config, model, resolve_device(device), compile=compile)

    @property
    def image_size(self) -> int:
        return self.model.image_size

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        """(n, E) L2-normalised text vectors."""
        tokens = self.tokenizer(texts).to(self.device)
        with autocast(self.device):
            vectors = self.model.encode_text(tokens)
        return l2_normalize(vectors.float().cpu().numpy())

    def encode_clip(self, frames: np.ndarray, *, keep_ratio: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """uint8 frames (T, H, W, 3) -> unnormalised (slice vectors (T', E), window vector (E,)).

        T is padded with copies of the last frame up to a multiple of the tubelet size.
        """
        return self.encode_clips([frames], keep_ratio=keep_ratio)[0]

    @torch.inference_mode()
    def encode_clips(self, clips: list[np.ndarray], *, keep_ratio: float = 1.0) -> list[tuple[np.ndarray, np.ndarray]]:
        """Several clips of the same length in one forward pass (as encode_clip, one result per clip)."""
        tubelet = self.model.tubelet_size
        pad = -len(clips[0]) % tubelet
        batch = np.stack([np.concatenate([c, np.repeat(c[-1:], pad, axis=0)]) if pad else c for c in clips])
        video = torch.from_numpy(batch).to(self.device)
        with autocast(self.device):
            out = self._encode_video(self.model.normalize_frames(video), keep_ratio=keep_ratio)
        slices, windows = out.slices.float().cpu().numpy(), out.window.float().cpu().numpy()
        return list(zip(slices, windows))

    def windows_per_batch(self, frames: int) -> int:
        """How many windows of `frames` frames to encode at once: 1 on the CPU (no gain there was shown; `--batch`
        overrides it); on a GPU as many as fit in half its free memory, by a bf16 activation estimate (untested)."""
        if self.device.type != "cuda":
            return 1
        free, _ = torch.cuda.mem_get_info(self.device)
        tokens = -(-frames // self.model.tubelet_size) * self.model.tokens_per_slice
        per_window = tokens * self.model.width * 12 * 2  # a block's widest activations (the MLP), 2 bytes each
        return int(max(1, min(64, free // 2 // per_window)))

    def encode_image(self, image: np.ndarray, *, frames: int) -> np.ndarray:
        """uint8 image (H, W, 3) shown still for `frames` frames -> L2-normalised (E,), as a segment is pooled."""
        slices, _ = self.encode_clip(np.repeat(image[None], max(frames, 1), axis=0))
        return l2_normalize(slices.mean(axis=0))


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class TextEncoder:
    """Only the text side, for queries: the torch-only text tower when the model allows it, else the full model."""

    def __init__(self, spec: str, device: str = "auto", *, weights_file: str | None = None):
        from .registry import load_text_tower

        self.device = resolve_device(device)
        loaded = load_text_tower(spec, weights_file=weights_file)
        if loaded is None:
            full = Encoder.load(spec, device)
            self._tower, self.tokenizer = full.model.encode_text, full.tokenizer
        else:
            _, tower, self.tokenizer = loaded
            self._tower = tower.to(self.device).eval()

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        """(n, E) L2-normalised text vectors."""
        tokens = self.tokenizer(texts).to(self.device)
        with autocast(self.device):
            vectors = self._tower(tokens)
        return l2_normalize(vectors.float().cpu().numpy())
