"""Frozen option sets for each stage, passed down whole (never copied field by field).

One source for every option: a field's default, its allowed values (``choices``) and its range (``min`` / ``max``)
are declared here once, in the field's metadata (``_opt``). The command line reads them from here
(``sarreg.cli.options.config_option``: click defaults, choices and ranges) and ``RegisterConfig.validate()`` /
``check_config`` check a config built in Python against the same declarations.
"""
from __future__ import annotations

import math
from dataclasses import MISSING, InitVar, asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any

# Choices of the command-line options, kept here (no heavy imports) so that building the CLI (``sarreg --help``)
# does not import numpy, OpenCV or GDAL; the modules that implement them import these names from here.
MODELS = ("shift", "similarity", "affine", "homography", "poly2", "tps")  # sarreg.estimate
AFFINE_MODELS = MODELS[:3]  # the models a geotransform holds (``--update-georef``)
MIN_GRID_SPACING = 32  # px between --model local's nodes (sarreg.offsets)
REGISTER_MODELS = ("auto",) + MODELS + ("local",)  # sarreg register --model (auto: selection, local: offsets field)
ROBUST_NAMES = ("magsac", "ransac", "lmeds", "usac", "accurate", "prosac", "fast")  # keys of estimate.ROBUST
# auto: nearest for complex (SLC) data, whose phases an interpolation mixes, bilinear otherwise (sarreg.warp)
RESAMPLING = ("auto", "nearest", "bilinear", "cubic", "cubicspline", "lanczos", "average", "mode")
FORMATS = ("auto", "COG", "GTiff")  # auto: COG, but --update-georef keeps a local GeoTIFF's encoding
COMPRESSION = ("DEFLATE", "LZW", "ZSTD", "NONE")
BACKENDS = ("auto", "torch", "openvino", "onnxruntime")  # sarreg.model.backend
FEATURES = ("r2d2", "sift")  # sarreg.keypoints.Extractor
OVERSAMPLING = ("auto", "1", "2", "3", "4")  # sarreg.oversample: read both scenes decimated by N
KEYPOINTS = ("auto", "always")  # fine-stage keypoints: when correlation cannot settle the estimate / every time
# the refinement's windows checked by the dense descriptors: when the correlation alone is not ok / always / never
AREA_DESCRIPTORS = ("auto", "always", "never")
KINDS = ("auto", "linear", "amplitude", "db", "display")  # sarreg.io.raster
DEVICES = ("auto", "cpu", "cuda")  # the CLI's --device choices (the library also takes "cuda:N")
PRECISIONS = ("fp32", "bf16")


def nodata_value(v: Any) -> float | str | None:
    """A nodata option as stored: None (unset), "auto" (the file's own: its tag, else a fill value found in its
    data), "none" (the raster has no nodata value: its tag ignored, nothing searched) or a number ("nan", "inf" and
    "-inf" stored as text); numbers and words may come as text (command line, config files). ValueError otherwise."""
    if v is None:
        return None
    if isinstance(v, str) and v.strip().lower() in ("none", "auto"):
        return v.strip().lower()
    try:
        if isinstance(v, bool):
            raise TypeError
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"not a nodata value: {v!r} (a number, nan or none)") from None
    return f if math.isfinite(f) else repr(f)  # NaN / inf as text: JSON has no NaN, and null means unset


def _opt(default: Any, *, choices: tuple[str, ...] | None = None, min: float | None = None,
         max: float | None = None, min_open: bool = False, type: type | None = None,
         case_sensitive: bool = True) -> Any:
    """A config field with its default and, in its metadata, what values it accepts (read by ``check_config``
    and by the CLI's ``config_option``). ``type``: int or float, for fields whose default is None."""
    meta: dict[str, Any] = {}
    if choices is not None:
        meta["choices"] = choices
        meta["case_sensitive"] = case_sensitive
    if min is not None or max is not None:
        meta.update(min=min, max=max, min_open=min_open,
                    type=type or (int if isinstance(default, int) and not isinstance(default, bool) else float))
    return field(default=default, metadata=meta)


def default(cls: type, name: str) -> Any:
    """The default of field ``name`` of config dataclass ``cls`` (the one place defaults are written)."""
    f = cls.__dataclass_fields__[name]
    return f.default_factory() if f.default is MISSING else f.default


def _range_text(m: dict[str, Any]) -> str:
    lo, hi = (v if v is None or m["type"] is not int else int(v) for v in (m["min"], m["max"]))
    if hi is None:
        return f"{'>' if m['min_open'] else '>='} {lo:g}"
    if lo is None:
        return f"<= {hi:g}"
    return f"within [{lo}, {hi}]" if m["type"] is int else f"within [{lo:g}, {hi:g}]"


def check_config(cfg: Any) -> None:
    """Check every field of a config dataclass (nested ones too) against its declared choices and range;
    OptionError (an InputError) naming the field and the allowed values otherwise. None passes where the default
    is None."""
    from sarreg.errors import OptionError

    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if is_dataclass(v):
            check_config(v)
            continue
        m = f.metadata
        if not m or (v is None and f.default is None):
            continue
        if "choices" in m and v not in m["choices"]:
            raise OptionError(f"unknown {f.name} {v!r}; choose from {', '.join(m['choices'])}")
        if "min" in m:
            lo, hi = m["min"], m["max"]
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)
            ok = ok and (lo is None or (v > lo if m["min_open"] else v >= lo)) and (hi is None or v <= hi)
            if not ok:
                raise OptionError(f"{f.name} must be {_range_text(m)} (got {v!r})")


@dataclass(frozen=True)
class PreprocessConfig:
    """How a SAR raster becomes the network's [0, 1] input (identical in training and inference).

    band: 1-based band index; None = the band described as VV if any, else band 1.
    kind: "auto" | "linear" (power) | "amplitude" | "db" | "display" (8-bit image used as is).
    lo_pct / hi_pct: per-scene percentiles (of the log values) mapped to 0 and 1.
    despeckle: box filter size in pixels applied to log values (0 = off).
    exclude: vector files (polygons, any CRS) or mask rasters (non-zero = excluded) of areas not to match in
    (water, changed fields, layover): nodata for matching, still warped (``sarreg.io.exclude``).
    nodata: the value that marks no data, over the file's own tag: None = the file's (or a fill value found in a file
    without a tag or with one that marks almost no pixel, ``sarreg.io.fill``; "auto" too), a number (NaN too), or
    "none" = the raster has no nodata value (a wrong tag ignored, nothing searched). Text is parsed ("-9999", "nan").
    """

    band: int | None = _opt(None, min=1, type=int)
    kind: str = _opt("auto", choices=KINDS)
    lo_pct: float = _opt(1.0, min=0.0, max=100.0)
    hi_pct: float = _opt(99.0, min=0.0, max=100.0)
    despeckle: int = _opt(0, min=0)
    exclude: tuple[str, ...] = ()
    nodata: float | str | None = None

    def __post_init__(self) -> None:
        # paths from the command line (Path), a config file (list) or Python (str): one hashable form
        ex = (self.exclude,) if isinstance(self.exclude, (str, bytes)) or hasattr(self.exclude, "__fspath__") \
            else self.exclude
        object.__setattr__(self, "exclude", tuple(str(p) for p in (ex or ())))
        try:
            nodata = nodata_value(self.nodata)
            object.__setattr__(self, "nodata", None if nodata == "auto" else nodata)
        except ValueError as e:
            from sarreg.errors import InputError

            raise InputError(f"nodata: {e}") from None


@dataclass(frozen=True)
class ExtractConfig:
    """Keypoint extraction options; defaults follow R2D2's reference extractor, except the pyramid (down to 128 px,
    up-sampled levels for small images; chosen on training-split validation pairs, see models/HISTORY.md).

    Scales are relative to the full-resolution scene; a level runs when its longer side is within
    [min_size, max_size] (max_size 0 = no limit) and its scale within [min_scale, max_scale]. Levels above scale 1
    (up-sampled: scale_f, scale_f^2, ...) run only for an image whose longer side is below ``upsample_to`` (0 =
    off), up to where it reaches ``upsample_to`` and at most ``max_scale``: small patches (e.g. 120 px) otherwise
    give too few keypoints.
    tile_size / halo: the extractor's processing tiles (0 = no tiling), in pixels of the pyramid level being
    processed (not the registration's fine-stage tiles, ``RegisterConfig.fine_tile``); halo >= the network
    receptive field.
    border: keypoints closer than this (level pixels) to nodata or the scene edge are dropped.
    nms: a keypoint is the repeatability maximum of its nms x nms window (R2D2: 3).
    """

    top_k: int = _opt(5000, min=0)
    scale_f: float = _opt(2 ** 0.25, min=1.0, max=16.0, min_open=True)
    min_size: int = _opt(128, min=1)
    max_size: int = _opt(1024, min=0)
    min_scale: float = _opt(0.0, min=0.0)
    max_scale: float = _opt(4.0, min=0.0, min_open=True)
    upsample_to: int = _opt(256, min=0)  # images smaller than this (longer side) also get up-sampled levels
    rel_thr: float | None = None  # None: the model's own (0.7 for R2D2 checkpoints, stored in ours)
    rep_thr: float | None = None
    tile_size: int = _opt(1024, min=0)  # 0 = no tiling, else at least 64 (checked by ``extract_scene``' tiling)
    halo: int = _opt(64, min=0)
    border: int = _opt(4, min=0)
    nms: int = _opt(3, min=1)  # side of the non-maximum suppression window on repeatability (odd, pixels of a level)
    subpixel: bool = False  # refine keypoints to sub-pixel by a parabola through the repeatability peak
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = _opt("fp32", choices=PRECISIONS)
    backend: str = _opt("auto", choices=BACKENDS)  # network trunk, see sarreg.model.backend.resolve_backend
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    def with_(self, **kw: Any) -> "ExtractConfig":
        return replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RegisterConfig:
    """Options of ``sarreg.register`` (one object passed down whole; the CLI builds it from its options).

    features: "r2d2" (network, ``weights`` = checkpoint path or None for the shipped model) or "sift" (OpenCV SIFT
    on the same log-scaled images, classical fallback). model: auto (affine, or homography when it clearly fits
    better) | shift | similarity | affine | homography | poly2 | tps | local (affine plus a correlation offsets field
    on a grid every ``grid_spacing`` px, 0 = auto).
    robust: OpenCV robust estimator name (see ``sarreg.estimate.ROBUST``). threshold: inlier distance (reference px)
    of the fine estimate; the coarse stage, on decimated images, uses ``coarse_threshold(s)`` derived from it.
    max_shift: largest displacement from the georeferencing prior accepted (reference px; None = no limit): the
    coarse stage keeps only keypoint matches within it, and a final correction beyond it makes an ok result
    low_quality. coarse_size: longer side (px) of the decimated coarse-stage images; coarse_min_scale: smallest
    pyramid level there (relative scale range the coarse stage handles: about 1/x to x); rotation_search: when
    nothing fits at the prior's orientation, the coarse stage correlates from the prior turned and scaled by a
    Fourier-Mellin estimate, then retries the keypoints with the moving image turned by 45, 90, ... degrees (R2D2
    features only). fine_tile / n_tiles / fine_top_k: fine stage tiles (side in reference
    px at full resolution, how many, keypoints per tile; ``tile_size`` is the old, still accepted keyword of
    ``fine_tile``). keypoints: "auto" runs the fine-stage keypoints only when the fine correlation does not settle
    the estimate on its own (``sarreg.area.settles``); "always" runs them every time (their matches in
    OUT.matches.npz). area_descriptors: the refinement's correlation windows checked by the network's dense
    descriptors, whose offsets stand in when the correlation confirms few of them and the keypoints confirm the
    answer (``sarreg.dense``; R2D2 only): "auto" only when the refinement by the correlation alone is not ok
    (``sarreg.decide``), "always", "never" (True / False: "always" / "never"). oversampling: "N" reads both
    scenes decimated by N (a product resampled finer than its resolution) and maps the result back; "auto" does so
    (2, then 4) only when the pair registers low_quality as it is; "1" never (``sarreg.oversample``).
    ratio: optional Lowe ratio on MNN.
    Gates: min_inliers, max_rmse (px), min_coverage (0..1) decide ok / low_quality; fewer matches -> failed.
    Outputs: warp (False = --no-warp), update_georef, fmt auto|COG|GTiff (auto: a COG, or with update_georef the
    moving GeoTIFF's own encoding, its bytes kept), compress, resampling ("auto": nearest for complex data, else
    bilinear), resolution (the output's pixel size on the reference's extent and CRS: "reference", "moving" = the
    moving raster's, or a number in map units; ``sarreg.grid.output_grid``), warp_mem_mb, sidecar switches.
    ``moving_band`` (1-based, None = same rule as the reference) picks the moving band to match on;
    ``moving_nodata`` is the moving raster's nodata value (None = as ``preprocess.nodata``, "auto" = the file's own).
    Allowed values and ranges are declared with each field; ``validate()`` checks them.
    """

    features: str = _opt("r2d2", choices=FEATURES)
    weights: str | None = None
    model: str = _opt("auto", choices=REGISTER_MODELS)
    robust: str = _opt("magsac", choices=ROBUST_NAMES)
    threshold: float = _opt(1.5, min=0.0, min_open=True)
    max_shift: float | None = _opt(None, min=0.0, type=float)
    coarse_size: int = _opt(768, min=128)
    coarse_min_scale: float = _opt(0.7, min=0.0, max=1.0, min_open=True)
    coarse_top_k: int = _opt(4000, min=1)
    rotation_search: bool = True
    fine_tile: int = _opt(384, min=64)
    n_tiles: int = _opt(9, min=1)
    fine_top_k: int = _opt(1500, min=1)
    keypoints: str = _opt("auto", choices=KEYPOINTS)
    area_descriptors: str = _opt("auto", choices=AREA_DESCRIPTORS)
    oversampling: str = _opt("auto", choices=OVERSAMPLING)
    ratio: float | None = _opt(None, min=0.0, max=1.0, type=float)
    min_inliers: int = _opt(12, min=3)
    max_rmse: float = _opt(1.5, min=0.0, min_open=True)
    min_coverage: float = _opt(0.15, min=0.0, max=1.0)
    min_overlap: float = _opt(0.02, min=0.0, max=1.0)
    warp: bool = True
    update_georef: bool = False
    force: bool = False
    overwrite: bool = False
    fmt: str = _opt("auto", choices=FORMATS)
    compress: str = _opt("DEFLATE", choices=COMPRESSION, case_sensitive=False)
    resampling: str = _opt("auto", choices=RESAMPLING)
    resolution: str = "reference"  # output pixel size: "reference", "moving" or map units ("5", "2.5")
    warp_mem_mb: int = _opt(128, min=16, max=65536)
    tiepoints: bool = True
    geojson: bool = False
    points: bool = True
    matches_npz: bool = True
    quicklook: str | None = None
    device: str = "auto"  # as ExtractConfig.device
    seed: int = _opt(0, min=0, max=2 ** 31 - 1)  # (numpy takes no negative seed, OpenCV none above 32 bits)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    moving_band: int | None = _opt(None, min=1, type=int)
    moving_nodata: float | str | None = None  # the moving raster's PreprocessConfig.nodata; None: the same; "auto"
    grid_spacing: int = _opt(0, min=0)  # --model local: px between offsets-field nodes (0 = auto)
    backend: str = _opt("auto", choices=BACKENDS)  # network inference, as ExtractConfig.backend
    tile_size: InitVar[int | None] = None  # old name of fine_tile (accepted, not stored)

    def __post_init__(self, tile_size: int | None) -> None:
        try:
            object.__setattr__(self, "moving_nodata", nodata_value(self.moving_nodata))
        except ValueError as e:
            from sarreg.errors import InputError

            raise InputError(f"moving_nodata: {e}") from None
        if tile_size is not None:  # ``RegisterConfig(tile_size=...)`` / ``with_(tile_size=...)`` of older code
            object.__setattr__(self, "fine_tile", tile_size)
        if isinstance(self.area_descriptors, bool):  # the on / off switch of sarreg <= 0.1 (stop 39)
            object.__setattr__(self, "area_descriptors", "always" if self.area_descriptors else "never")

    def with_(self, **kw: Any) -> "RegisterConfig":
        return replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> "RegisterConfig":
        """Check the options (choices, ranges, combinations); OptionError (an InputError) for the first bad one.
        -> self.

        Used by ``sarreg.register`` before any work and by ``sarreg.batch.check_run`` before a run starts."""
        from sarreg.errors import OptionError

        check_config(self)
        if self.update_georef and self.model not in (*AFFINE_MODELS, "auto"):
            raise OptionError(f"--update-georef needs a shift, similarity, affine or auto model, not {self.model}")
        if self.update_georef and not self.warp:
            raise OptionError("--update-georef writes OUT, --no-warp writes no raster: give one of them")
        if 0 < self.grid_spacing < MIN_GRID_SPACING:  # (auto never goes below it either)
            raise OptionError(f"--grid-spacing must be 0 (auto) or >= {MIN_GRID_SPACING} px: closer nodes share their "
                              "64 px windows' pixels, and the field's leave-one-out check agrees with itself")
        if self.resolution not in ("reference", "moving"):
            try:
                ok = math.isfinite(float(self.resolution)) and float(self.resolution) > 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise OptionError(f"--resolution must be reference, moving or a pixel size > 0 in the reference's "
                                  f"map units, not {self.resolution!r}")
        if self.oversampling not in ("auto", "1") and self.model in ("poly2", "tps", "local"):  # (not one matrix)
            raise OptionError(f"--oversampling {self.oversampling}: not available for --model {self.model}")
        if self.update_georef and self.resolution != "reference":
            raise OptionError("--update-georef keeps MOVING's own grid; --resolution applies to a resampled output")
        return self

    def coarse_threshold(self, scale: float) -> float:
        """Inlier distance (full-resolution reference px) of the coarse stage, whose images are decimated by
        ``scale`` (< 1): twice ``threshold``, and at least 2.5 px of the decimated grid. Recorded in the report
        as ``stages.coarse.threshold_px``."""
        return max(2.0 * self.threshold, 2.5 / scale)


# ``cfg.tile_size`` of older code reads the fine-stage tile side (the InitVar default above is not an attribute)
RegisterConfig.tile_size = property(lambda self: self.fine_tile,  # type: ignore[assignment]
                                    doc="Old name of ``fine_tile`` (read only).")
