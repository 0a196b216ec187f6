"""Inference wrapper: numpy frames and strings in, L2-normalisable numpy vectors out, on the chosen device."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .config import ModelConfig
from .device import autocast, cpu_runs_bf16, fused_attention, precision, resolve_device
from .model import VideoTextModel
from .registry import build_tokenizer, load_model

# Sizing GPU batches (`windows_per_batch`): the share of the GPU's free memory a batch may take by `encode_bytes` (the
# rest stays free for what the estimate cannot see, such as other processes on the GPU), and the most windows at once.
GPU_MEMORY_SHARE = 0.85
MAX_WINDOWS_PER_BATCH = 64


class Encoder:
    """A loaded model in eval mode on one device, with its tokenizer."""

    def __init__(self, config: ModelConfig, model: VideoTextModel, device: torch.device, *, compile: bool = False):
        self.config = config
        self.device = device
        self.model = model.to(device).eval()
        self.tokenizer = build_tokenizer(config)
        # torch.compile pays off on long runs on a GPU; it recompiles per clip length, so it is opt-in.
        self._encode_video = torch.compile(self.model.encode_video, dynamic=True) if compile else self.model.encode_video
        self.shape = TowerShape.of(self.model)
        self._batch_sizes: dict[int, int] = {}  # frames -> windows per batch, sized once per run

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
        """Several clips in one forward pass, as encode_clip gives each alone. Clips of different lengths (windows
        ended early at scene cuts) are padded to the longest and the padding masked (VideoTextModel.encode_video)."""
        tubelet = self.model.tubelet_size
        lengths = [-(-len(c) // tubelet) for c in clips]  # slices per clip
        frames = max(lengths) * tubelet
        batch = np.stack([np.concatenate([c, np.repeat(c[-1:], frames - len(c), axis=0)]) if len(c) < frames else c
                          for c in clips])
        video = torch.from_numpy(batch).to(self.device)
        with autocast(self.device):
            out = self._encode_video(self.model.normalize_frames(video), keep_ratio=keep_ratio,
                                     lengths=None if len(set(lengths)) == 1 else lengths)
        slices, windows = out.slices.float().cpu().numpy(), out.window.float().cpu().numpy()
        return [(s[:n], w) for s, w, n in zip(slices, windows, lengths)]

    def windows_per_batch(self, frames: int) -> int:
        """How many windows of `frames` frames to encode at once: 1 on the CPU (no gain there was shown; `--batch`
        overrides it); on a GPU as many as `encode_bytes` says fit in GPU_MEMORY_SHARE of its free memory.

        Sized once per window length and run: the memory PyTorch's allocator caches after the first batch is free
        for the next one, so it is counted as free here too."""
        if self.device.type != "cuda":
            return 1
        if frames not in self._batch_sizes:
            free, _ = torch.cuda.mem_get_info(self.device)
            free += torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
            fused = fused_attention(self.device, precision(self.device))
            self._batch_sizes[frames] = windows_that_fit(self.shape, frames, int(free * GPU_MEMORY_SHARE), fused_attention=fused)
        return self._batch_sizes[frames]

    def encode_image(self, image: np.ndarray, *, frames: int) -> np.ndarray:
        """uint8 image (H, W, 3) shown still for `frames` frames -> L2-normalised (E,), as a segment is pooled."""
        slices, _ = self.encode_clip(np.repeat(image[None], max(frames, 1), axis=0))
        return l2_normalize(slices.mean(axis=0))


@dataclass(frozen=True)
class TowerShape:
    """What the video tower's memory use depends on."""

    image_size: int
    patch: int
    tubelet: int
    width: int
    mlp_width: int
    heads: int
    joint: bool  # joint space-time attention (else attention within each time slice)

    @classmethod
    def of(cls, model: VideoTextModel) -> TowerShape:
        block = model.blocks[0]
        return cls(image_size=model.image_size, patch=model.tubelet.kernel_size[1], tubelet=model.tubelet_size,
                   width=model.width, mlp_width=block.mlp.c_fc.out_features, heads=block.attn.num_heads,
                   joint=model.temporal_mixing == "joint")


# The terms of `encode_bytes`, fitted to the peaks `bench/gpu_memory.py` measures (bench/RESULTS.md).
INPUT_BYTES_NORMALIZING = 13  # per frame value: the uint8 frames, their float32 copy, (x - mean) and its / std
INPUT_BYTES_KEPT = 5  # per frame value, through the whole pass: the uint8 frames and the normalised float32 video
# Per token, in half-precision values, at a block's MLP (the peak): the embedded tokens, the block's input, its
# q/k/v, the attention output, the residual after attention, ln_2's output (8 x width), and QuickGELU's three
# MLP-wide tensors (its input, 1.702 x, and the sigmoid or the product).
TOKEN_WIDTHS, TOKEN_MLP_WIDTHS, HALF_BYTES = 8, 3, 2
# Per attention-matrix entry when SDPA has no fused kernel and takes its math path: float32 scores, their float32
# softmax and a boolean mask (9.3 measured, with the math path's float32 copies of q, k and v).
MATH_ATTENTION_BYTES = 10
# On top of the measured terms: the CUDA caching allocator's rounding (large blocks in 2 MiB steps) and
# fragmentation, not measured here (no GPU).
ESTIMATE_MARGIN = 1.2
# Once per pass, whatever its size: kernels' workspaces. The CPU's oneDNN tubelet convolution takes 28 MiB of scratch
# for ViT-B/32 (the peak of short windows); cuBLAS's are a few MiB per stream, and cuDNN falls back to another
# algorithm when its workspace cannot be allocated.
KERNEL_WORKSPACE_BYTES = 64 * 2 ** 20


def encode_bytes(shape: TowerShape, *, frames: int, windows: int = 1, fused_attention: bool = True) -> int:
    """Peak GPU memory of one `Encoder.encode_clips` pass over `windows` windows of `frames` frames under
    half-precision autocast, beyond the model's weights, with room to spare: `fitted_peak_bytes` with a margin, plus
    kernels' workspaces."""
    fitted = fitted_peak_bytes(shape, frames=frames, windows=windows, fused_attention=fused_attention)
    return KERNEL_WORKSPACE_BYTES + math.ceil(ESTIMATE_MARGIN * fitted)


def fitted_peak_bytes(shape: TowerShape, *, frames: int, windows: int = 1, fused_attention: bool = True) -> int:
    """The peak the terms above predict: the larger of normalising the uint8 frames to float32 and running the
    transformer blocks while the frames and their float32 copy are still held. Without a fused attention kernel the
    blocks also hold heads x tokens^2 attention entries per sequence (in joint mixing a window's every token, which
    is what makes long windows expensive there)."""
    frames += -frames % shape.tubelet  # encode_clips pads to a whole tubelet
    values = windows * frames * shape.image_size ** 2 * 3
    slices = frames // shape.tubelet
    per_slice = (shape.image_size // shape.patch) ** 2 + 1
    tokens = windows * slices * per_slice
    blocks = INPUT_BYTES_KEPT * values + tokens * HALF_BYTES * (TOKEN_WIDTHS * shape.width + TOKEN_MLP_WIDTHS * shape.mlp_width)
    if not fused_attention:
        entries = slices ** 2 * per_slice ** 2 if shape.joint else slices * per_slice ** 2
        blocks += MATH_ATTENTION_BYTES * windows * shape.heads * entries
    return max(INPUT_BYTES_NORMALIZING * values, blocks)


def windows_that_fit(shape: TowerShape, frames: int, budget: int, *, fused_attention: bool = True) -> int:
    """The most windows (1 to MAX_WINDOWS_PER_BATCH) whose `encode_bytes` fits in `budget` bytes; 1 when even one
    does not."""
    one = encode_bytes(shape, frames=frames, fused_attention=fused_attention) - KERNEL_WORKSPACE_BYTES  # per window
    return int(max(1, min(MAX_WINDOWS_PER_BATCH, (budget - KERNEL_WORKSPACE_BYTES) // one)))


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class TextEncoder:
    """Only the text side, for queries: the torch-only text tower when the model allows it (with bf16 weights on a
    CPU that runs bf16 natively), else the full model."""

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
            if self.device.type == "cpu" and cpu_runs_bf16():
                self._tower.to(torch.bfloat16)

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        """(n, E) L2-normalised text vectors."""
        tokens = self.tokenizer(texts).to(self.device)
        with autocast(self.device):
            vectors = self._tower(tokens)
        return l2_normalize(vectors.float().cpu().numpy())
