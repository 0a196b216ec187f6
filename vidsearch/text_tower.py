"""A torch-only CLIP text tower, loaded from a checkpoint's text weights alone: queries skip open_clip's imports
and the video tower."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED_TEXT_KEYS = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"}


class TextTower(nn.Module):
    """open_clip's default CLIP text transformer (causal, argmax pooling, projection matrix), same parameter names."""

    def __init__(self, *, embed_dim: int, context_length: int, vocab_size: int, width: int, heads: int, layers: int,
                 mlp_ratio: float = 4.0, quick_gelu: bool = False):
        super().__init__()
        self.heads, self.quick_gelu = heads, quick_gelu
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        hidden = int(width * mlp_ratio)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList(_block(width, hidden) for _ in range(layers))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, embed_dim))
        mask = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """The texts' embeddings. Attention is causal and the output is read at the end-of-text token, so the padding
        after the longest text's end changes nothing and is cut off: a short query costs a few tokens, not 77."""
        ends = tokens.argmax(dim=-1)  # the end-of-text token has the largest id
        length = int(ends.max()) + 1
        tokens = tokens[:, :length]
        x = self.token_embedding(tokens) + self.positional_embedding[:length]
        for block in self.transformer.resblocks:
            x = x + self._attend(block, block.ln_1(x))
            h = block.mlp.c_fc(block.ln_2(x))
            h = h * torch.sigmoid(1.702 * h) if self.quick_gelu else F.gelu(h)
            x = x + block.mlp.c_proj(h)
        x = self.ln_final(x)
        pooled = x[torch.arange(x.shape[0]), ends]
        return pooled @ self.text_projection

    def _attend(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        qkv = F.linear(x, block.attn.in_proj_weight, block.attn.in_proj_bias)
        q, k, v = qkv.view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.attn_mask[:length, :length])
        return block.attn.out_proj(out.transpose(1, 2).reshape(batch, length, width))


def _block(width: int, hidden: int) -> nn.Module:
    block = nn.Module()
    block.ln_1, block.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
    block.attn = nn.Module()
    block.attn.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
    block.attn.in_proj_bias = nn.Parameter(torch.empty(3 * width))
    block.attn.out_proj = nn.Linear(width, width)
    block.mlp = nn.Module()
    block.mlp.c_fc, block.mlp.c_proj = nn.Linear(width, hidden), nn.Linear(hidden, width)
    return block


def text_architecture(clip_arch: str | dict[str, Any]) -> dict[str, Any] | None:
    """The text tower's settings, read from the config (or open_clip's config file, without importing open_clip);
    None when it uses options this tower does not implement."""
    if isinstance(clip_arch, dict):
        config = clip_arch
    else:
        path = _open_clip_dir() / "model_configs" / f"{clip_arch}.json"
        if not path.is_file():
            return None
        config = json.loads(path.read_text())
    text = config.get("text_cfg", {})
    if set(text) - SUPPORTED_TEXT_KEYS or config.get("custom_text"):
        return None
    defaults = {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12, "mlp_ratio": 4.0}
    return {"embed_dim": config["embed_dim"], "quick_gelu": bool(config.get("quick_gelu", False)),
            **{key: text.get(key, default) for key, default in defaults.items()}}


def load_tokenizer(context_length: int):
    """open_clip's BPE tokenizer, loaded from its own file so the rest of open_clip (and torchvision) stays unimported."""
    spec = importlib.util.spec_from_file_location("vidsearch_clip_tokenizer", _open_clip_dir() / "tokenizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SimpleTokenizer(context_length=context_length)


def _open_clip_dir() -> Path:
    return Path(importlib.util.find_spec("open_clip").submodule_search_locations[0])
