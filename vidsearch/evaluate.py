"""Retrieval evaluation on a manifest: text->video and video->text recall@K and median rank."""

from __future__ import annotations

import numpy as np
import torch

from .data import ClipDataset, Pair
from .encoder import Encoder, l2_normalize

RECALL_AT = (1, 5, 10)


def embed_pairs(encoder: Encoder, pairs: list[Pair], *, frames: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """(clip vectors, caption vectors), L2-normalised, using the centre clip of each span and no masking."""
    dataset = ClipDataset(pairs, frames=frames, fps=fps, size=encoder.image_size, cache=False)
    videos = np.stack([l2_normalize(encoder.encode_clip(dataset.clip(i))[1]) for i in range(len(pairs))])
    texts = np.concatenate([encoder.encode_text([p.caption for p in pairs[i:i + 256]]) for i in range(0, len(pairs), 256)])
    return videos, texts


def retrieval_metrics(similarity: np.ndarray, captions: list[str]) -> dict[str, float]:
    """`similarity[i, j]` = text i against clip j. A hit is any clip whose caption equals the query's, so
    manifests that repeat a caption are scored fairly; with unique captions this is the usual recall@K."""
    same = np.array([[a.lower() == b.lower() for b in captions] for a in captions])
    metrics: dict[str, float] = {"pairs": float(len(captions))}
    for name, scores in (("t2v", similarity), ("v2t", similarity.T)):
        order = np.argsort(-scores, axis=1, kind="stable")
        first_hit = np.array([np.flatnonzero(same[i][order[i]])[0] + 1 for i in range(len(captions))])
        for k in RECALL_AT:
            metrics[f"{name}_r{k}"] = float(np.mean(first_hit <= k))
        metrics[f"{name}_median_rank"] = float(np.median(first_hit))
    return metrics


@torch.inference_mode()
def evaluate(encoder: Encoder, pairs: list[Pair], *, frames: int, fps: float) -> dict[str, float]:
    videos, texts = embed_pairs(encoder, pairs, frames=frames, fps=fps)
    return retrieval_metrics(texts @ videos.T, [p.caption for p in pairs])
