"""Frozen option sets for each stage, passed down whole (never copied field by field)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class PreprocessConfig:
    """How a SAR raster becomes the network's [0, 1] input (identical in training and inference).

    band: 1-based band index; None = the band described as VV if any, else band 1.
    kind: "auto" | "linear" (power) | "amplitude" | "db" | "display" (8-bit image used as is).
    lo_pct / hi_pct: per-scene percentiles (of the log values) mapped to 0 and 1.
    despeckle: box filter size in pixels applied to log values (0 = off).
    """

    band: int | None = None
    kind: str = "auto"
    lo_pct: float = 1.0
    hi_pct: float = 99.0
    despeckle: int = 0


@dataclass(frozen=True)
class ExtractConfig:
    """Keypoint extraction options; defaults follow R2D2's reference extractor.

    Scales are relative to the full-resolution scene; a level runs when its longer side is within
    [min_size, max_size] (max_size 0 = no limit) and its scale within [min_scale, max_scale].
    tile_size / halo are in pixels of the level being processed; halo >= the network receptive field.
    border: keypoints closer than this (level pixels) to nodata or the scene edge are dropped.
    """

    top_k: int = 5000
    scale_f: float = 2 ** 0.25
    min_size: int = 256
    max_size: int = 1024
    min_scale: float = 0.0
    max_scale: float = 1.0
    rel_thr: float = 0.7
    rep_thr: float = 0.7
    tile_size: int = 1024
    halo: int = 64
    border: int = 4
    device: str = "auto"
    precision: str = "fp32"
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    def with_(self, **kw: Any) -> "ExtractConfig":
        return replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
