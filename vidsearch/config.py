"""Settings as dataclasses: the model recipe and the index's windowing, with JSON load/save."""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

NOT_IN_DIGEST = {"digest": False}  # field metadata: this field does not change the vectors a model computes

# The fields the first digest formula hashed (all but name and description), frozen so later fields do not change it.
DIGEST_V1_FIELDS = ("clip_arch", "pretrained", "temporal_mixing", "pooling", "tubelet_size", "max_frames", "fps",
                    "clip_frames", "init_seed")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a video–text encoder (a registry entry or a checkpoint's config.json).

    A field added later needs a default that keeps the old behaviour: the digest leaves out fields at their default.
    """

    name: str = field(metadata=NOT_IN_DIGEST)
    clip_arch: str | dict[str, Any]  # an open_clip model name ("ViT-B-32") or an inline CLIP config
    pretrained: str | None = None  # an open_clip pretrained tag or a local weights file; None = random init
    temporal_mixing: str = "frame"  # "frame" (ImageViT: per-frame CLIP + mean) or "joint" (space-time)
    pooling: str = "cls"  # "cls": one CLS per time slice; "mean": spatio-temporal mean of tokens
    tubelet_size: int = 1  # frames per tubelet (time slice)
    max_frames: int = 256  # frames covered by the temporal embedding before interpolation
    fps: float = field(default=1.0, metadata=NOT_IN_DIGEST)  # the frame rate clips are sampled at (the index records its own)
    clip_frames: int | None = field(default=None, metadata=NOT_IN_DIGEST)  # frames per training clip: the default index window
    init_seed: int = 0  # seed for random-init weights, so a random model is the same every time
    description: str = field(default="", metadata=NOT_IN_DIGEST)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> ModelConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @property
    def window(self) -> int:
        """Frames to encode in one pass by default."""
        return self.clip_frames or self.max_frames

    def digest(self) -> str:
        """A stable hash of what changes the vectors: fields marked NOT_IN_DIGEST and fields at their default are left
        out, so adding a field with a default keeps every existing digest."""
        recipe = {f.name: getattr(self, f.name) for f in fields(self)
                  if f.metadata.get("digest", True) and getattr(self, f.name) != _default(f)}
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()

    def digest_v1(self) -> str:
        """The first formula, which hashed every field but name and description (indexes made with it still open)."""
        recipe = {k: getattr(self, k) for k in DIGEST_V1_FIELDS}
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _default(spec: Field) -> Any:
    """A dataclass field's default value (MISSING when it has none)."""
    if spec.default_factory is not MISSING:
        return spec.default_factory()
    return spec.default


@dataclass
class IndexSettings:
    """How videos are cut before encoding; fixed per index."""

    fps: float = 1.0  # frames sampled per second of video
    window: int = 256  # frames encoded together in one pass (256 at 1 fps = 4.3 minutes)
    segment: float = 4.0  # seconds per searchable segment
    keep_ratio: float = 1.0  # share of video tokens kept at inference (joint mixing; 1.0 = all)
    deblock: bool = True  # run H.264/HEVC's in-loop deblocking filter (exact frames; off is about a fifth faster)
    cuts: bool = True  # end a window at each scene cut too (windows.frame_windows), so none holds two shots

    @classmethod
    def stored(cls, recorded: dict[str, Any]) -> IndexSettings:
        """The settings an index recorded; one recorded before windows ended at scene cuts was built without."""
        return cls(**{"cuts": False, **recorded})

    def validate(self) -> None:
        if not self.fps > 0:
            raise ValueError("--fps must be positive")
        if self.window < 1:
            raise ValueError("--window must be at least 1 frame")
        if not self.segment > 0:
            raise ValueError("--segment must be positive")
        if not 0 < self.keep_ratio <= 1:
            raise ValueError("--keep-ratio must be in (0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
