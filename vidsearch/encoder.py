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

    @torch.inference_mode()
    def encode_clip(self, frames: np.ndarray, *, keep_ratio: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """uint8 frames (T, H, W, 3) -> unnormalised (slice vectors (T', E), window vector (E,)).

        T is padded with copies of the last frame up to a multiple of the tubelet size.
        """
        tubelet = self.model.tubelet_size
        pad = -len(frames) % tubelet
        if pad:
            frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
        batch = torch.from_numpy(np.ascontiguousarray(frames)).unsqueeze(0).to(self.device)
        with autocast(self.device):
            out = self._encode_video(self.model.normalize_frames(batch), keep_ratio=keep_ratio)
        return out.slices[0].float().cpu().numpy(), out.window[0].float().cpu().numpy()

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
