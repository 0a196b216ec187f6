"""The video-first video–text encoder: open_clip towers plus tubelets, time and joint attention."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

TEMPORAL_MIXING = ("frame", "joint")
POOLING = ("cls", "mean")


@dataclass
class VideoEmbedding:
    """Projected, unnormalised embeddings of one batch of clips."""

    slices: torch.Tensor  # (B, T', E): one contextual embedding per time slice
    window: torch.Tensor  # (B, E): the whole clip


class VideoTextModel(nn.Module):
    """Dual encoder over an open_clip CLIP model whose image tower is turned into a video tower.

    `temporal_mixing="frame"` restricts attention to each time slice, which makes the video
    tower exactly CLIP's image tower applied per frame (the ImageViT baseline).
    `temporal_mixing="joint"` lets every token attend across space and time (ViViT-style).
    """

    def __init__(
        self,
        *,
        clip: nn.Module,
        temporal_mixing: str = "frame",
        pooling: str = "cls",
        tubelet_size: int = 1,
        max_frames: int = 256,
        image_mean: tuple[float, float, float],
        image_std: tuple[float, float, float],
    ):
        super().__init__()
        if temporal_mixing not in TEMPORAL_MIXING:
            raise ValueError(f"temporal_mixing must be one of {TEMPORAL_MIXING}, got {temporal_mixing!r}")
        if pooling not in POOLING:
            raise ValueError(f"pooling must be one of {POOLING}, got {pooling!r}")
        visual = clip.visual
        if getattr(visual, "attn_pool", None) is not None or visual.transformer.resblocks[0].__class__.__name__ != "ResidualAttentionBlock":
            raise ValueError("only plain open_clip ViT image towers are supported (no attentional pooling or custom blocks)")
        self.clip = clip
        self.temporal_mixing = temporal_mixing
        self.pooling = pooling
        self.tubelet_size = tubelet_size
        self.grad_checkpointing = False

        width = visual.conv1.out_channels
        patch = visual.conv1.kernel_size
        # Tubelet kernel = 2-D patch kernel repeated over time / t: a static clip embeds like the image.
        self.tubelet = nn.Conv3d(3, width, kernel_size=(tubelet_size, *patch), stride=(tubelet_size, *patch), bias=False)
        with torch.no_grad():
            kernel = visual.conv1.weight.unsqueeze(2).repeat(1, 1, tubelet_size, 1, 1) / tubelet_size
            self.tubelet.weight.copy_(kernel)
        visual.conv1.requires_grad_(False)  # replaced by the tubelet embedding; kept so CLIP weights still load
        # Zero-initialised, so an untrained model starts exactly at the image model. Frame mixing never uses
        # it: the ImageViT baseline stays CLIP per frame plus an order-blind mean, trained or not.
        self.temporal_embedding = nn.Parameter(torch.zeros(max(1, max_frames // tubelet_size), width),
                                               requires_grad=temporal_mixing == "joint")
        self.register_buffer("image_mean", torch.tensor(image_mean).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(image_std).view(1, 1, 3, 1, 1), persistent=False)

    @property
    def image_size(self) -> int:
        size = self.clip.visual.image_size
        return size[0] if isinstance(size, (tuple, list)) else int(size)

    @property
    def width(self) -> int:
        return self.tubelet.out_channels

    @property
    def tokens_per_slice(self) -> int:
        """Patch tokens of one time slice, plus its CLS token."""
        grid = self.image_size // self.tubelet.kernel_size[1]
        return grid * grid + 1

    @property
    def blocks(self) -> nn.ModuleList:
        return self.clip.visual.transformer.resblocks

    def normalize_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, H, W, 3) -> normalised float (B, T, 3, H, W)."""
        video = frames.permute(0, 1, 4, 2, 3).float().div_(255.0)
        return (video - self.image_mean) / self.image_std

    def temporal_positions(self, slices: int) -> torch.Tensor:
        """The temporal embedding for `slices` time slices, linearly interpolated past its length."""
        table = self.temporal_embedding
        if slices <= table.shape[0]:
            return table[:slices]
        stretched = F.interpolate(table.T.unsqueeze(0), size=slices, mode="linear", align_corners=True)
        return stretched.squeeze(0).T

    def embed_tokens(self, video: torch.Tensor, lengths: list[int] | None = None) -> torch.Tensor:
        """Normalised video (B, T, 3, H, W) -> tokens (B, T', 1 + N, D), CLS first in every slice; with `lengths`
        (each window's real slices, the rest padding) each window takes the temporal positions of its own length."""
        visual = self.clip.visual
        x = self.tubelet(video.transpose(1, 2))  # (B, D, T', gh, gw)
        batch, width, slices = x.shape[:3]
        x = x.flatten(3).permute(0, 2, 3, 1)  # (B, T', N, D)
        cls = visual.class_embedding.to(x.dtype).expand(batch, slices, 1, width)
        x = torch.cat([cls, x], dim=2) + visual.positional_embedding.to(x.dtype)
        if self.temporal_mixing == "frame":
            return x
        if lengths is None:
            return x + self.temporal_positions(slices).to(x.dtype)[None, :, None, :]
        positions = torch.stack([F.pad(self.temporal_positions(n), (0, 0, 0, slices - n)) for n in lengths])
        return x + positions.to(x.dtype)[:, :, None, :]

    def drop_tokens(self, tokens: torch.Tensor, keep_ratio: float) -> torch.Tensor:
        """Keep a random `keep_ratio` of the patch tokens of every slice; CLS tokens always stay."""
        batch, slices, n_tokens, width = tokens.shape
        patches = n_tokens - 1
        keep = max(1, round(patches * keep_ratio))
        if keep >= patches:
            return tokens
        order = torch.rand(batch, slices, patches, device=tokens.device).argsort(dim=-1)[..., :keep]
        kept = tokens[:, :, 1:].gather(2, order.unsqueeze(-1).expand(-1, -1, -1, width))
        return torch.cat([tokens[:, :, :1], kept], dim=2)

    def attend(self, tokens: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """Run the CLIP blocks with frame-local or joint space-time attention; with `real` ((B, T') bool: which slices
        are not padding), no token attends to a window's padding slices (frame-local attention never crosses slices,
        so there nothing needs hiding)."""
        batch, slices, n_tokens, width = tokens.shape
        mask = None
        if self.temporal_mixing == "joint":
            x = tokens.reshape(batch, slices * n_tokens, width)
            if real is not None:
                mask = real.repeat_interleave(n_tokens, dim=1)[:, None, None, :]  # (B, 1, 1, keys): True = attend
        else:
            x = tokens.reshape(batch * slices, n_tokens, width)
        x = self.clip.visual.ln_pre(x)
        for block in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(run_block, block, x, mask, use_reentrant=False)
            else:
                x = run_block(block, x, mask)
        return x.reshape(batch, slices, n_tokens, width)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        visual = self.clip.visual
        return visual.ln_post(x) @ visual.proj

    def encode_video(self, video: torch.Tensor, *, keep_ratio: float = 1.0, lengths: list[int] | None = None) -> VideoEmbedding:
        """Normalised video (B, T, 3, H, W), T a multiple of the tubelet size -> slice and window embeddings.

        `lengths` batches windows of different lengths: window b's first lengths[b] slices are real and the rest
        padding, which nothing real attends to and no window vector pools; its padding slices' vectors mean nothing.
        """
        tokens = self.embed_tokens(video, lengths)
        if keep_ratio < 1.0:
            tokens = self.drop_tokens(tokens, keep_ratio)
        real = None if lengths is None else (
            torch.arange(tokens.shape[1], device=tokens.device) < torch.tensor(lengths, device=tokens.device)[:, None])
        x = self.attend(tokens, real)
        weights = None if real is None else (real / real.sum(dim=1, keepdim=True)).to(x.dtype)  # means of real slices
        if self.pooling == "cls":
            slices = self.project(x[:, :, 0])
            window = slices.mean(dim=1) if weights is None else torch.einsum("bs,bse->be", weights.to(slices.dtype), slices)
            return VideoEmbedding(slices=slices, window=window)
        patches = x[:, :, 1:].mean(dim=2)
        whole = patches.mean(dim=1) if weights is None else torch.einsum("bs,bsd->bd", weights, patches)
        return VideoEmbedding(slices=self.project(patches), window=self.project(whole))

    def forward(self, video: torch.Tensor, tokens: torch.Tensor, *, keep_ratio: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """The contrastive pair: (video window embeddings (B, E), text embeddings (B, E)), unnormalised."""
        return self.encode_video(video, keep_ratio=keep_ratio).window, self.encode_text(tokens)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (B, L) -> projected, unnormalised text embeddings (B, E)."""
        return self.clip.encode_text(tokens)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale

    def train_only_last(self, blocks: int) -> None:
        """Freeze everything but the last `blocks` video blocks, the temporal embedding, the heads and the temperature."""
        for parameter in self.parameters():
            parameter.requires_grad = False
        trainable = [self.clip.visual.proj, self.clip.logit_scale]
        if self.temporal_mixing == "joint":
            trainable.append(self.temporal_embedding)
        if getattr(self.clip, "text_projection", None) is not None:
            trainable.append(self.clip.text_projection)
        for parameter in trainable:
            parameter.requires_grad = True
        for module in [*self.blocks[len(self.blocks) - blocks:], self.clip.visual.ln_post]:
            for parameter in module.parameters():
                parameter.requires_grad = True


def run_block(block: nn.Module, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """One open_clip ResidualAttentionBlock, with attention through scaled_dot_product_attention
    so that GPUs take the flash / memory-efficient kernels (the memory-efficient one when a key `mask` is given)."""
    attn = block.attn
    batch, length, width = x.shape
    heads = attn.num_heads
    h = block.ln_1(x)
    qkv = F.linear(h, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.view(batch, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    h = attn.out_proj(h.transpose(1, 2).reshape(batch, length, width))
    x = x + block.ls_1(h)
    return x + block.ls_2(block.mlp(block.ln_2(x)))
