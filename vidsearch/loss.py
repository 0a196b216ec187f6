"""Symmetric InfoNCE over video and text embeddings; global under torch.distributed (gather-with-grad + local loss)."""

from __future__ import annotations

import math

import torch
import torch.distributed.nn as distributed_nn
import torch.nn.functional as F
from torch import nn

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp: temperature never below 0.01


class ContrastiveLoss(nn.Module):
    """Each rank scores its own videos against every rank's texts (and vice versa), so with DDP's gradient
    averaging the result equals the single-process loss over the global batch.

    With `captions` (one id per pair, equal ids for pairs captioned alike), a pair is not scored as a negative of
    another with the same caption: in a batch holding two clips of "a red circle moving left", pushing each clip
    away from the other's (identical) caption would teach the model what tells the two clips apart, not what the
    caption says."""

    def forward(self, video: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
                captions: torch.Tensor | None = None) -> torch.Tensor:
        video = F.normalize(video.float(), dim=-1)
        text = F.normalize(text.float(), dim=-1)
        all_video, all_text, offset = gather_with_grad(video), gather_with_grad(text), 0
        if all_video is not video:
            offset = torch.distributed.get_rank() * video.shape[0]
        scale = logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
        labels = torch.arange(video.shape[0], device=video.device) + offset
        video_to_text = scale * video @ all_text.T
        text_to_video = scale * text @ all_video.T
        if captions is not None:
            alike = captions[:, None] == gather(captions)[None, :]
            alike[torch.arange(len(labels), device=labels.device), labels] = False  # a pair stays its own positive
            video_to_text = video_to_text.masked_fill(alike, -torch.inf)
            text_to_video = text_to_video.masked_fill(alike, -torch.inf)
        return (F.cross_entropy(video_to_text, labels) + F.cross_entropy(text_to_video, labels)) / 2


def ranks() -> int:
    """How many processes share the batch (1 without torch.distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every rank, without gradients (ids)."""
    if ranks() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(ranks())]
    torch.distributed.all_gather(parts, x)
    return torch.cat(parts, dim=0)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every rank, keeping gradients flowing back to each rank's own slice."""
    if ranks() == 1:
        return x
    return torch.cat(distributed_nn.all_gather(x), dim=0)
