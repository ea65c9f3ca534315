"""Frozen option sets for each stage, passed down whole (never copied field by field)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

# Choices of the command-line options, kept here (no heavy imports) so that building the CLI (``sarreg --help``)
# does not import numpy, OpenCV or GDAL; the modules that implement them import these names from here.
MODELS = ("shift", "similarity", "affine", "homography", "poly2", "tps")  # sarreg.estimate
ROBUST_NAMES = ("magsac", "ransac", "lmeds", "usac", "accurate", "prosac", "fast")  # keys of estimate.ROBUST
RESAMPLING = ("nearest", "bilinear", "cubic", "cubicspline", "lanczos", "average", "mode")  # sarreg.warp
FORMATS = ("COG", "GTiff")
COMPRESSION = ("DEFLATE", "LZW", "ZSTD", "NONE")
BACKENDS = ("auto", "torch", "openvino", "onnxruntime")  # sarreg.model.backend


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
    rel_thr: float | None = None  # None: the model's own (0.7 for R2D2 checkpoints, stored in ours)
    rep_thr: float | None = None
    tile_size: int = 1024
    halo: int = 64
    border: int = 4
    device: str = "auto"
    precision: str = "fp32"
    backend: str = "auto"  # network trunk: auto (OpenVINO on the CPU when installed, else torch) | torch | openvino
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    def with_(self, **kw: Any) -> "ExtractConfig":
        return replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RegisterConfig:
    """Options of ``sarreg.register`` (one object passed down whole; the CLI builds it from its options).

    features: "r2d2" (network, ``weights`` = checkpoint path or None for the shipped model) or "sift" (OpenCV SIFT
    on the same log-scaled images, classical fallback). model: auto (affine, or homography when it clearly fits better) | shift | similarity | affine | homography | poly2 | tps
    | local (affine plus a correlation offsets field on a grid every ``grid_spacing`` px, 0 = auto).
    robust: OpenCV robust estimator name (see ``sarreg.estimate.ROBUST``). threshold: inlier distance (reference px).
    max_shift: largest displacement from the georeferencing prior accepted at the coarse stage (reference px;
    None = no limit). coarse_size: longer side (px) of the decimated coarse-stage images; coarse_min_scale: smallest
    pyramid level there (relative scale range the coarse stage handles: about 1/x to x). tile_size / n_tiles /
    fine_top_k: fine stage tiles (reference px), how many, keypoints per tile. ratio: optional Lowe ratio on MNN.
    Gates: min_inliers, max_rmse (px), min_coverage (0..1) decide ok / low_quality; fewer matches -> failed.
    Outputs: warp (False = --no-warp), update_georef, fmt COG|GTiff, compress, resampling, warp_mem_mb, sidecar
    switches. ``moving_band`` (1-based, None = same rule as the reference) picks the moving band to match on.
    """

    features: str = "r2d2"
    weights: str | None = None
    model: str = "auto"
    robust: str = "magsac"
    threshold: float = 1.5
    max_shift: float | None = None
    coarse_size: int = 768
    coarse_min_scale: float = 0.7
    coarse_top_k: int = 4000
    rotation_search: bool = True
    tile_size: int = 384
    n_tiles: int = 9
    fine_top_k: int = 1500
    ratio: float | None = None
    min_inliers: int = 12
    max_rmse: float = 1.5
    min_coverage: float = 0.15
    min_overlap: float = 0.02
    warp: bool = True
    update_georef: bool = False
    force: bool = False
    overwrite: bool = False
    fmt: str = "COG"
    compress: str = "DEFLATE"
    resampling: str = "bilinear"
    warp_mem_mb: int = 128
    tiepoints: bool = True
    geojson: bool = False
    points: bool = True
    matches_npz: bool = True
    quicklook: str | None = None
    device: str = "auto"
    seed: int = 0
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    moving_band: int | None = None
    grid_spacing: int = 0  # --model local: px between offsets-field nodes (0 = auto)
    backend: str = "auto"  # network inference, as ExtractConfig.backend

    def with_(self, **kw: Any) -> "RegisterConfig":
        return replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
