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
    averaging the result equals the single-process loss over the global batch."""

    def forward(self, video: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
        video = F.normalize(video.float(), dim=-1)
        text = F.normalize(text.float(), dim=-1)
        all_video, all_text, offset = gather_with_grad(video), gather_with_grad(text), 0
        if all_video is not video:
            offset = torch.distributed.get_rank() * video.shape[0]
        scale = logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
        labels = torch.arange(video.shape[0], device=video.device) + offset
        video_to_text = scale * video @ all_text.T
        text_to_video = scale * text @ all_video.T
        return (F.cross_entropy(video_to_text, labels) + F.cross_entropy(text_to_video, labels)) / 2


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every rank, keeping gradients flowing back to each rank's own slice."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return x
    if torch.distributed.get_world_size() == 1:
        return x
    return torch.cat(distributed_nn.all_gather(x), dim=0)
