"""Keypoint extraction: image or scene -> ``Features`` (keypoints, descriptors, scores).

Multiscale as R2D2 does it (levels s = 1, 1/f, 1/f^2, ... within [min_size, max_size] and
[min_scale, max_scale]; 3x3 non-maximum suppression on repeatability; reliability/repeatability thresholds;
score = reliability x repeatability; top-k), with three deliberate differences from the reference extractor
(``sarreg.model.reference.extract_multiscale_reference`` keeps the exact reference behaviour for equivalence
tests):

* each level is resampled from the full-resolution data with area averaging (no chained, aliased bilinear),
* keypoints map back with the pixel-centre rule ``X = (x + 0.5) / s - 0.5`` (the reference's ``x / s`` is biased
  by up to 1.5 px at coarse levels),
* levels are processed in tiles with a halo >= the receptive field, read window by window through rasterio, so
  peak memory does not grow with the scene size; each tile keeps at most its share of top-k (x2) so keypoints
  spread over the scene, then a global top-k is taken.

Keypoints: x = column, y = row, (0, 0) = centre of the top-left pixel of the full-resolution scene.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from sarreg.config import ExtractConfig
from sarreg.errors import InputError, OptionError
from sarreg.features import Features  # noqa: F401  (re-exported: the .r2d2 layout lives in a torch-free module)
from sarreg.io.raster import Scene, open_dataset, open_scene, read_unit
from sarreg.io.tiling import tile_grid
from sarreg.model.backend import resolve_backend
from sarreg.model.weights import EXTRACT_MODEL_NAME, Model, load_model
from sarreg.network import (  # noqa: F401  (re-exported: network execution lives in sarreg.network)
    DenseOutput, resolve_device, run_network, run_network_batch)

log = logging.getLogger(__name__)
MAX_LEVELS = 32  # pyramid levels per scene at most (see pyramid_scales)


def thresholds(cfg: ExtractConfig, model: Model) -> tuple[float, float]:
    """(rel_thr, rep_thr): the configured ones, else those the model was calibrated for."""
    return (model.rel_thr if cfg.rel_thr is None else cfg.rel_thr,
            model.rep_thr if cfg.rep_thr is None else cfg.rep_thr)


def detect(rel: torch.Tensor, rep: torch.Tensor, rel_thr: float, rep_thr: float,
           allowed: np.ndarray | None = None, nms: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """nms x nms maxima of repeatability above both thresholds (inclusive), inside ``allowed`` -> (rows, cols)."""
    if nms < 1 or nms % 2 == 0:
        raise InputError(f"non-maximum suppression window must be odd and >= 1, got {nms}")
    maxima = rep == F.max_pool2d(rep[None, None], nms, stride=1, padding=nms // 2)[0, 0]
    keep = maxima & (rep >= rep_thr) & (rel >= rel_thr)
    if allowed is not None:
        keep &= torch.from_numpy(allowed)
    ys, xs = torch.nonzero(keep, as_tuple=True)
    return ys.numpy(), xs.numpy()


def pyramid_scales(width: int, height: int, cfg: ExtractConfig) -> list[float]:
    """Scales of the levels that run (R2D2's loop); never empty: falls back to scale 1 for tiny images.

    An image smaller than ``upsample_to`` (longer side) also gets up-sampled levels s = f, f^2, ... up to where
    its longer side reaches ``upsample_to`` (never above ``max_scale`` or ``max_size``), above R2D2's, which
    starts at 1. At most ``MAX_LEVELS`` levels (a scale factor close to 1 would otherwise make thousands).
    """
    if not (math.isfinite(cfg.scale_f) and cfg.scale_f > 1):
        raise InputError(f"scale factor between pyramid levels must be > 1, got {cfg.scale_f:g}")
    if cfg.min_scale > cfg.max_scale:
        raise OptionError(f"--min-scale {cfg.min_scale:g} > --max-scale {cfg.max_scale:g}: no pyramid level")
    if cfg.max_size and 0 < cfg.max_size < cfg.min_size:  # (the fallback below would run the full, dearest level)
        raise OptionError(f"--max-size {cfg.max_size:g} < --min-size {cfg.min_size:g}: no pyramid level")
    L = max(width, height)
    max_size = cfg.max_size if cfg.max_size and cfg.max_size > 0 else math.inf
    scales, s = [], 1.0
    while s + 0.001 >= max(cfg.min_scale, cfg.min_size / L):
        if s - 0.001 <= min(cfg.max_scale, max_size / L):
            scales.append(s)
        s /= cfg.scale_f
        if s < 1e-4 or len(scales) >= MAX_LEVELS:
            break
    scales = scales or [min(1.0, cfg.max_scale) if cfg.max_scale > 0 else 1.0]
    top = min(cfg.max_scale, max(1.0, cfg.upsample_to / L))  # levels above 1: small images only
    up, s = [], cfg.scale_f
    while s - 0.001 <= min(top, max_size / L) and len(up) + len(scales) < MAX_LEVELS:
        up.insert(0, s)
        s *= cfg.scale_f
    return up + scales


def _allowed_mask(valid: np.ndarray, border: int) -> np.ndarray:
    """Valid pixels at least ``border`` pixels away from nodata and from the image edge."""
    m = valid.astype(np.uint8)
    if border > 0:
        m = cv2.erode(m, np.ones((2 * border + 1, 2 * border + 1), np.uint8), borderType=cv2.BORDER_CONSTANT,
                      borderValue=0)
    return m.astype(bool)


def _extract_tile(model: Model, unit: np.ndarray, valid: np.ndarray, cfg: ExtractConfig, device: torch.device,
                  core: tuple[int, int, int, int], quota: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Detections inside ``core`` (tile-local rows/cols) -> (rows, cols, scores, descriptors), best ``quota``."""
    if not valid.any():
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32), np.zeros((0, 128), np.float32)
    out = run_network(model, unit, device, cfg.precision, backend=resolve_backend(cfg.backend, device))
    return _detections(out, valid, model, cfg, core, quota)


def _detections(out: DenseOutput, valid: np.ndarray, model: Model, cfg: ExtractConfig,
                core: tuple[int, int, int, int], quota: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Keypoints of one network output inside ``core`` -> (rows, cols, scores, descriptors), best ``quota``."""
    rel, rep = out.reliability, out.repeatability
    allowed = _allowed_mask(valid, cfg.border)
    r0, r1, c0, c1 = core
    inside = np.zeros_like(allowed)
    inside[r0:r1, c0:c1] = True
    ys, xs = detect(rel, rep, *thresholds(cfg, model), allowed & inside, cfg.nms)
    scores = (rel[ys, xs] * rep[ys, xs]).numpy().astype(np.float32)
    if quota > 0 and scores.size > quota:
        best = np.argpartition(scores, -quota)[-quota:]
        ys, xs, scores = ys[best], xs[best], scores[best]
    desc = model.describe(out.descriptors_at(ys, xs))
    if cfg.subpixel and len(ys):
        dy, dx = _peak_offsets(rep, ys, xs)
        return ys + dy, xs + dx, scores, desc
    return ys, xs, scores, desc


def _peak_offsets(rep: torch.Tensor, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel offsets (rows, cols), each within +-0.5, of 3 x 3 maxima of ``rep``: the vertex of a parabola
    through the maximum and its two neighbours, per axis (0 where the peak is flat or at the map's edge).

    Why: maxima at integer pixels of a pyramid level are up to half a level pixel (2 px at scale 1/4) from the
    true peak; homographies fitted to such points miss 1 px accuracy."""
    r = rep.numpy()
    h, w = r.shape

    def axis(prev: np.ndarray, mid: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        den = prev - 2 * mid + nxt
        off = np.where(den < -1e-6, 0.5 * (prev - nxt) / np.where(den < -1e-6, den, -1.0), 0.0)
        return np.clip(off, -0.5, 0.5)

    c = r[ys, xs]
    dx = axis(r[ys, np.maximum(xs - 1, 0)], c, r[ys, np.minimum(xs + 1, w - 1)])
    dy = axis(r[np.maximum(ys - 1, 0), xs], c, r[np.minimum(ys + 1, h - 1), xs])
    dx[(xs == 0) | (xs == w - 1)] = 0.0
    dy[(ys == 0) | (ys == h - 1)] = 0.0
    return dy, dx


def _quota(cfg: ExtractConfig, core_area: int, total_area: float) -> int:
    if cfg.top_k <= 0:
        return 0
    return max(16, int(math.ceil(2.0 * cfg.top_k * core_area / max(total_area, 1.0))))


def _local(edge: float, origin: int, factor: float, limit: int) -> int:
    """First output pixel (of a read starting at full-res ``origin`` with decimation ``factor``) whose centre
    lies at or after the full-resolution edge coordinate ``edge``."""
    return int(np.clip(math.ceil((edge - origin) * factor - 0.5 - 1e-9), 0, limit))


def extract_array(model: Model, unit: np.ndarray, valid: np.ndarray | None = None,
                  cfg: ExtractConfig = ExtractConfig()) -> Features:
    """Multiscale extraction on an in-memory H x W image already scaled to [0, 1] (see ``sarreg.io.raster``).

    Large images are still processed tile by tile (bounded activation memory). ``valid`` masks nodata.
    """
    unit = np.asarray(unit, dtype=np.float32)
    if unit.ndim != 2 or unit.size == 0:
        raise InputError(f"expected a non-empty 2-D image, got shape {unit.shape}")
    H, W = unit.shape
    valid = np.isfinite(unit) if valid is None else np.asarray(valid, bool)
    device = resolve_device(cfg.device)
    scales = pyramid_scales(W, H, cfg)
    total = sum(round(H * s) * round(W * s) for s in scales)
    parts: list[Features] = []
    for s in scales:
        lh, lw = max(1, round(H * s)), max(1, round(W * s))
        if (lh, lw) == (H, W):
            lu, lv = unit, valid
        else:
            lu = cv2.resize(unit, (lw, lh), interpolation=cv2.INTER_AREA)
            lv = cv2.resize(valid.astype(np.float32), (lw, lh), interpolation=cv2.INTER_AREA) > 0.999
        for t in tile_grid(lh, lw, cfg.tile_size, cfg.halo):
            r0, r1, c0, c1 = t.read
            cr0, cr1, cc0, cc1 = t.core
            ys, xs, sc, de = _extract_tile(model, lu[r0:r1, c0:c1], lv[r0:r1, c0:c1], cfg, device,
                                           (cr0 - r0, cr1 - r0, cc0 - c0, cc1 - c0), _quota(cfg, t.core_area, total))
            X = (xs + c0 + 0.5) * (W / lw) - 0.5
            Y = (ys + r0 + 0.5) * (H / lh) - 0.5
            kp = np.stack([X, Y, np.full_like(X, 32.0 / s, dtype=np.float64)], 1).astype(np.float32)
            parts.append(Features(kp, de, sc, (W, H)))
    return Features.concat(parts, (W, H)).top_k(cfg.top_k)


def extract_batch(model: Model, images: list[tuple[np.ndarray, np.ndarray]], cfg: ExtractConfig = ExtractConfig(),
                  batch: int = 8) -> list[Features]:
    """Single-scale keypoints of several small images (the fine stage's tiles): images of one size go through the
    network ``batch`` at a time (``run_network_batch``); each result equals ``extract_array`` with
    ``min_scale = max_scale = 1`` on that image. Images larger than ``cfg.tile_size`` take ``extract_array``."""
    single = cfg.with_(min_scale=1.0, max_scale=1.0, max_size=0)
    device = resolve_device(cfg.device)
    backend = resolve_backend(cfg.backend, device)
    out: list[Features | None] = [None] * len(images)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (u, v) in enumerate(images):
        h, w = np.shape(u)
        if (cfg.tile_size and max(h, w) > cfg.tile_size) or not np.asarray(v).any():
            out[i] = extract_array(model, u, v, single)
        else:
            groups.setdefault((h, w), []).append(i)
    for (h, w), idx in groups.items():
        for k in range(0, len(idx), max(1, batch)):
            part = idx[k:k + max(1, batch)]
            dense = run_network_batch(model, np.stack([np.asarray(images[i][0], np.float32) for i in part]),
                                      device, cfg.precision, backend=backend)
            for i, d in zip(part, dense):
                ys, xs, scores, desc = _detections(d, np.asarray(images[i][1], bool), model, single, (0, h, 0, w),
                                                   _quota(single, h * w, h * w))
                kp = np.stack([xs, ys, np.full(len(xs), 32.0)], 1).astype(np.float32)
                out[i] = Features(kp, desc, scores, (w, h)).top_k(cfg.top_k)
    return [f for f in out if f is not None]


def extract_scene(scene: Scene, model: Model, cfg: ExtractConfig = ExtractConfig(),
                  window: tuple[int, int, int, int] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> Features:
    """Tiled multiscale extraction reading ``scene`` window by window (never the whole scene at once).

    window: optional (row0, row1, col0, col1) region of the scene to process; keypoints stay in scene pixel
    coordinates. Levels are decided by the size of that region. ``progress``: optional callable(n_done, n_total).
    """
    from rasterio.windows import Window

    R0, R1, C0, C1 = window or (0, scene.height, 0, scene.width)
    H, W = R1 - R0, C1 - C0
    if H <= 0 or W <= 0:
        raise InputError(f"{scene.path}: empty extraction window {window}")
    device = resolve_device(cfg.device)
    scales = pyramid_scales(W, H, cfg)
    total = sum(round(H * s) * round(W * s) for s in scales)
    plan = []
    for s in scales:
        lh, lw = max(1, round(H * s)), max(1, round(W * s))
        plan += [(s, lh, lw, t) for t in tile_grid(lh, lw, cfg.tile_size, cfg.halo)]
    parts: list[Features] = []
    with open_dataset(scene.path) as ds:
        for n, (s, lh, lw, t) in enumerate(plan):
            sy, sx = lh / H, lw / W
            r0, r1, c0, c1 = t.read
            # integer full-resolution window covering this level region; its own exact decimation factor
            fr0, fr1 = int(math.floor(r0 / sy)), min(H, int(math.ceil(r1 / sy)))
            fc0, fc1 = int(math.floor(c0 / sx)), min(W, int(math.ceil(c1 / sx)))
            oh, ow = max(1, round((fr1 - fr0) * sy)), max(1, round((fc1 - fc0) * sx))
            unit, valid = read_unit(scene, Window(C0 + fc0, R0 + fr0, fc1 - fc0, fr1 - fr0), (oh, ow),
                                    cfg.preprocess, ds=ds)
            ay, ax = oh / (fr1 - fr0), ow / (fc1 - fc0)
            # core in tile-local output pixels: those whose full-res centre falls in this tile's core
            cr0, cr1, cc0, cc1 = t.core
            core = (_local(cr0 / sy, fr0, ay, oh), _local(cr1 / sy, fr0, ay, oh),
                    _local(cc0 / sx, fc0, ax, ow), _local(cc1 / sx, fc0, ax, ow))
            ys, xs, sc, de = _extract_tile(model, unit, valid, cfg, device, core, _quota(cfg, t.core_area, total))
            X = C0 + fc0 + (xs + 0.5) / ax - 0.5
            Y = R0 + fr0 + (ys + 0.5) / ay - 0.5
            kp = np.stack([X, Y, np.full(len(xs), 32.0 / s)], 1).astype(np.float32)
            parts.append(Features(kp, de, sc, (scene.width, scene.height)))
            if progress is not None:
                progress(n + 1, len(plan))
    return Features.concat(parts, (scene.width, scene.height)).top_k(cfg.top_k)


def extract_file(path: str | Path, model: Model | None = None, cfg: ExtractConfig = ExtractConfig(),
                 progress: Callable[[int, int], None] | None = None) -> Features:
    """Open a raster (GeoTIFF, PNG, ...) and extract its keypoints; ``model=None`` uses the shipped extraction
    model (``EXTRACT_MODEL_NAME``)."""
    scene = open_scene(path, cfg.preprocess)
    if model is None:
        model = load_model(None, resolve_device(cfg.device), default=EXTRACT_MODEL_NAME)
    return extract_scene(scene, model, cfg, progress=progress)
