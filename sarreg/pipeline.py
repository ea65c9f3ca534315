"""``register(ref, moving, out, config) -> Report``: the registration pipeline as a chain of stage calls.

1. relate: open both rasters, a prior moving -> reference pixel transform from the georeferencing (pyproj
   through both affines; identity for pixel-space images), valid-data footprints and their overlap (shapely);
2. coarse: both scenes read decimated (longer side ~``coarse_size``), the moving one resampled onto the
   reference's coarse grid by the prior, multiscale keypoints, mutual nearest neighbours, robust fit (with a
   rotation search when nothing fits);
3. fine: tiles spread over the overlap; each reference tile read at full resolution, the moving raster read
   around the window predicted by the coarse transform and resampled onto the tile grid, single-scale keypoints,
   matches mapped back to full-scene pixels;
4. estimate on all fine matches, quality gates -> status ok / low_quality / failed;
5. outputs: warped raster (GDAL) and sidecars (report, tie points, QGIS .points, matches npz, quicklook).

Peak memory is bounded by the coarse images and one tile pair at a time: no full-resolution scene is ever read.
All matrices map moving pixels to reference pixels (x = column, y = row, (0, 0) = centre of top-left pixel).
"""
from __future__ import annotations

import logging
import math
import platform
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from rasterio.windows import Window

from sarreg import __version__
from sarreg.config import RegisterConfig
from sarreg.errors import CRSError, InputError, OverlapError, RegistrationFailed
from sarreg.estimate import MODELS, TPS_MAX_POINTS, Estimate, apply_matrix, decompose, finite_round, fit_model
from sarreg.extract import Features
from sarreg.io.raster import Scene, decimated_shape, open_dataset, open_scene, read_unit
from sarreg.warp import Grid, PixelTransform, check_output, corrected_geotransform, pixel_size

log = logging.getLogger(__name__)

STATUS_EXIT = {"ok": 0, "low_quality": 2, "failed": 3}
# Rotation search of the coarse stage when nothing fits at 0 (R2D2 tolerates roughly +-25 degrees; SIFT is
# rotation invariant and skips it).
ROTATIONS = (45.0, -45.0, 90.0, -90.0, 135.0, -135.0, 180.0)
COARSE_GOOD = 10  # coarse inliers that end the rotation search
FAIL_INLIERS = 8  # fewer final inliers: status "failed" (no usable transform)


@dataclass
class Report:
    """Result of one registration; ``to_dict()`` is the JSON written to ``<out>.report.json``.

    matrix: 3 x 3 moving pixel -> reference pixel (pixel-centre convention), None when failed.
    geotransform: corrected GDAL geotransform of the moving raster in the reference CRS (affine models).
    quality: inliers, ratios, RMSE (px and map units), coverage, shift / rotation of the correction.
    """

    status: str
    message: str
    ref: str
    moving: str
    output: str | None
    model: str
    matrix: list[list[float]] | None = None
    transform: dict[str, Any] | None = None
    geotransform: list[float] | None = None
    map_matrix: list[list[float]] | None = None
    reference_grid: dict[str, Any] | None = None
    quality: dict[str, Any] = field(default_factory=dict)
    correction: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return STATUS_EXIT.get(self.status, 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        import json

        from sarreg.export import to_jsonable

        return json.dumps(to_jsonable(self.to_dict()), indent=2)


# --------------------------------------------------------------------------------------------- small helpers
def _translate(tx: float, ty: float) -> np.ndarray:
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], dtype=np.float64)


def _decimation(full: tuple[int, int], small: tuple[int, int]) -> np.ndarray:
    """Matrix: pixel of a decimated read (rows, cols = ``small``) -> pixel of the full window (``full``)."""
    sy, sx = full[0] / small[0], full[1] / small[1]
    return np.array([[sx, 0, (sx - 1) / 2], [0, sy, (sy - 1) / 2], [0, 0, 1]], dtype=np.float64)


def _rotation(deg: float, cx: float, cy: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return _translate(cx, cy) @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ _translate(-cx, -cy)


def _local_scale(m: np.ndarray, xy: tuple[float, float]) -> float:
    """Linear scale (reference px per moving px) of a matrix near a moving point."""
    p = np.array([[xy[0], xy[1]], [xy[0] + 1, xy[1]], [xy[0], xy[1] + 1]])
    q = apply_matrix(m, p)
    u, v = q[1] - q[0], q[2] - q[0]
    return math.sqrt(abs(u[0] * v[1] - u[1] * v[0]))


def _warp(img: np.ndarray, m: np.ndarray, shape: tuple[int, int], nearest: bool = False,
          flags: int = cv2.INTER_LINEAR) -> np.ndarray:
    """cv2 resampling with a forward matrix (source px -> destination px), constant 0 outside.

    flags: OpenCV interpolation; correlation uses Lanczos, whose phase response keeps sub-pixel offsets unbiased
    (bilinear interpolation pulls measured offsets toward half a pixel by up to ~0.06 px on speckle)."""
    flags = cv2.INTER_NEAREST if nearest else flags
    m = np.asarray(m, dtype=np.float64)
    if np.allclose(m[2], [0, 0, 1]):
        return cv2.warpAffine(img, m[:2], (shape[1], shape[0]), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)
    return cv2.warpPerspective(img, m, (shape[1], shape[0]), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=0)


def _warp_valid(valid: np.ndarray, m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return _warp(valid.astype(np.float32), m, shape) > 0.999


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------------------------- extractors
class Extractor:
    """Keypoints of an in-memory [0, 1] image: R2D2 network or OpenCV SIFT, same interface."""

    def __init__(self, cfg: RegisterConfig):
        from sarreg.config import ExtractConfig

        self.kind = cfg.features
        self.name, self.sha256 = cfg.features, ""
        self.base = ExtractConfig(device=cfg.device, preprocess=cfg.preprocess)
        if self.kind == "r2d2":
            from sarreg.extract import resolve_device
            from sarreg.model.weights import load_model

            self.model = load_model(cfg.weights, resolve_device(cfg.device))
            self.name, self.sha256 = self.model.name, self.model.sha256
        elif self.kind == "sift":
            self.model = None
        else:
            raise InputError(f"unknown feature type {cfg.features!r} (choose r2d2 or sift)")

    def __call__(self, unit: np.ndarray, valid: np.ndarray, multiscale: bool, top_k: int,
                 min_scale: float = 0.0) -> Features:
        """Keypoints of an H x W [0, 1] image; multiscale levels down to ``min_scale`` (R2D2 only)."""
        h, w = unit.shape
        if not valid.any():
            return Features.empty((w, h))
        if self.kind == "sift":
            return self._sift(unit, valid, top_k)
        from sarreg.extract import extract_array

        cfg = self.base.with_(top_k=top_k, min_scale=min_scale)
        if not multiscale:
            cfg = cfg.with_(min_scale=1.0, max_scale=1.0, max_size=0)
        return extract_array(self.model, unit, valid, cfg)

    @staticmethod
    def _sift(unit: np.ndarray, valid: np.ndarray, top_k: int) -> Features:
        h, w = unit.shape
        img = (np.clip(unit, 0, 1) * 255).astype(np.uint8)
        mask = cv2.erode(valid.astype(np.uint8), np.ones((9, 9), np.uint8), borderType=cv2.BORDER_CONSTANT,
                         borderValue=0)
        sift = cv2.SIFT_create(nfeatures=top_k)
        kps, desc = sift.detectAndCompute(img, mask)
        if desc is None or not kps:
            return Features.empty((w, h))
        desc = desc.astype(np.float32)
        desc /= np.maximum(desc.sum(1, keepdims=True), 1e-12)  # RootSIFT: L1, sqrt -> unit L2 norm
        desc = np.sqrt(desc)
        kp = np.array([[k.pt[0], k.pt[1], k.size] for k in kps], np.float32)
        scores = np.array([k.response for k in kps], np.float32)
        order = np.argsort(scores, kind="stable")
        padded = np.zeros((len(kps), 128), np.float32)
        padded[:, :desc.shape[1]] = desc
        return Features(kp[order], padded[order], scores[order], (w, h))


def _match(f1: Features, f2: Features, ratio: float | None, device: str):
    from sarreg.extract import resolve_device
    from sarreg.match import match_mnn

    return match_mnn(f1.descriptors, f2.descriptors, ratio=ratio, device=resolve_device(device))


# --------------------------------------------------------------------------------------------- relate
def prior_matrix(ref: Scene, mov: Scene) -> np.ndarray:
    """Moving px -> reference px implied by the two georeferencings (affine least-squares fit over a grid)."""
    if not ref.georeferenced and not mov.georeferenced:
        return np.eye(3)
    if ref.georeferenced != mov.georeferenced:
        which, other = (mov, ref) if ref.georeferenced else (ref, mov)
        raise CRSError(f"{which.path}: has no CRS/georeferencing but {other.path} has; both or neither must be "
                       "georeferenced")
    from pyproj import Transformer

    n = 11
    g = np.stack(np.meshgrid(np.linspace(0, mov.width - 1, n), np.linspace(0, mov.height - 1, n)), -1).reshape(-1, 2)
    m = mov.xy_to_map(g)
    if mov.crs != ref.crs:
        try:
            t = Transformer.from_crs(mov.crs, ref.crs, always_xy=True)
            x, y = t.transform(m[:, 0], m[:, 1], errcheck=False)
        except Exception as e:  # pyproj raises several types
            raise CRSError(f"{mov.path}: cannot transform from its CRS to the reference CRS ({e})") from None
        m = np.c_[x, y]
    r = ref.map_to_xy(m)
    ok = np.isfinite(r).all(1)
    if ok.sum() < 3:
        raise CRSError(f"{mov.path}: its footprint cannot be expressed in the reference CRS ({ref.path})")
    p = np.linalg.lstsq(np.c_[g[ok], np.ones(ok.sum())], r[ok], rcond=None)[0]
    return np.r_[p.T, [[0, 0, 1]]]


def mask_polygon(valid: np.ndarray, D: np.ndarray):
    """Valid-data footprint of a (decimated) mask as a polygon in full-scene pixel-centre coordinates.

    D: 3 x 3, pixel of the mask -> full-scene pixel. Small holes (speckle zeros, NaN pixels) are closed first.
    """
    import rasterio.features
    import shapely
    from shapely.geometry import shape

    mask = cv2.morphologyEx(valid.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    if not mask.any():
        return shapely.Polygon()
    polys = [shape(g) for g, v in rasterio.features.shapes(mask, mask=mask.astype(bool)) if v == 1]
    geom = shapely.union_all([p for p in polys if p.area >= 4]) if polys else shapely.Polygon()
    if geom.is_empty:
        geom = shapely.union_all(polys)
    m = D @ _translate(-0.5, -0.5)  # mask pixel edges -> mask pixel centres -> full-scene pixels
    geom = shapely.affinity.affine_transform(geom, [m[0, 0], m[0, 1], m[1, 0], m[1, 1], m[0, 2], m[1, 2]])
    return geom.simplify(max(abs(D[0, 0]), abs(D[1, 1]))).buffer(0)


def _apply_geom(geom, m: np.ndarray):
    import shapely

    if np.allclose(m[2], [0, 0, 1]):
        return shapely.affinity.affine_transform(geom, [m[0, 0], m[0, 1], m[1, 0], m[1, 1], m[0, 2], m[1, 2]])
    return shapely.transform(geom, lambda xy: apply_matrix(m, xy))


def check_bounds(ref: Scene, mov: Scene, prior: np.ndarray) -> None:
    """OverlapError when the raster extents do not intersect at all under the prior (before any pixel read)."""
    import shapely

    box_r = shapely.box(-0.5, -0.5, ref.width - 0.5, ref.height - 0.5)
    box_m = _apply_geom(shapely.box(-0.5, -0.5, mov.width - 0.5, mov.height - 0.5), prior)
    if not box_r.intersects(box_m) or box_r.intersection(box_m).area < 1:
        raise OverlapError(f"{mov.path}: does not overlap {ref.path} (footprints are disjoint)")


@dataclass
class CoarseImages:
    """Decimated reads of both scenes (one each, reused for footprints and the coarse stage).

    ru / rv: reference [0, 1] image and validity; Dr: its pixel -> full reference pixel; s: its scale.
    mu / mv / Dm: the same for the moving window covering the reference under the prior.
    """

    ru: np.ndarray
    rv: np.ndarray
    Dr: np.ndarray
    s: float
    mu: np.ndarray
    mv: np.ndarray
    Dm: np.ndarray


def read_coarse(ref: Scene, mov: Scene, prior: np.ndarray, cfg: RegisterConfig) -> CoarseImages:
    """Reference at longer side ``coarse_size``; moving window around the reference at about the same pixel size."""
    s = min(1.0, cfg.coarse_size / max(ref.width, ref.height))
    rshape = decimated_shape(ref, s)
    ru, rv = read_unit(ref, None, rshape if s < 1 else None, cfg.preprocess)
    Dr = _decimation(ref.shape, ru.shape)
    inv = np.linalg.inv(prior)
    corners = apply_matrix(inv, [[-0.5, -0.5], [ref.width - 0.5, -0.5], [-0.5, ref.height - 0.5],
                                 [ref.width - 0.5, ref.height - 0.5]])
    pad = 4.0 / max(s * _local_scale(prior, (mov.width / 2, mov.height / 2)), 1e-6)
    c0 = int(max(0, math.floor(corners[:, 0].min() - pad)))
    r0 = int(max(0, math.floor(corners[:, 1].min() - pad)))
    c1 = int(min(mov.width, math.ceil(corners[:, 0].max() + pad)))
    r1 = int(min(mov.height, math.ceil(corners[:, 1].max() + pad)))
    if c1 <= c0 or r1 <= r0:
        raise OverlapError(f"{mov.path}: does not overlap {ref.path}")
    k = min(1.0, s * _local_scale(prior, ((c0 + c1) / 2, (r0 + r1) / 2)))
    k = min(k, 2.0 * cfg.coarse_size / max(c1 - c0, r1 - r0))
    mshape = (max(1, round((r1 - r0) * k)), max(1, round((c1 - c0) * k)))
    full = (r1 - r0, c1 - c0)
    mu, mv = read_unit(mov, Window(c0, r0, c1 - c0, r1 - r0), mshape if mshape != full else None,
                       _moving_pre(cfg))
    Dm = _translate(c0, r0) @ _decimation(full, mu.shape)
    return CoarseImages(ru, rv, Dr, s, mu, mv, Dm)


def overlap_area(ref: Scene, mov: Scene, prior: np.ndarray, cfg: RegisterConfig, ci: CoarseImages):
    """Overlap of the valid footprints in reference pixels; OverlapError when none or too small.

    The fraction is the overlap area over the smaller of the two whole valid footprints (the moving one from a
    low-resolution read of the whole scene: the coarse read is clipped to the reference and would make any
    overlap look large).
    """
    fr = mask_polygon(ci.rv, ci.Dr)
    fm = _apply_geom(full_footprint(mov, _moving_pre(cfg)), prior)
    ov = fr.intersection(fm)
    if ov.is_empty or ov.area < 1:
        raise OverlapError(f"{mov.path}: no valid data in the overlap with {ref.path} (all nodata there)")
    frac = ov.area / max(min(fr.area, fm.area), 1e-9)
    if frac < cfg.min_overlap * (1 - 1e-3):  # a hair of tolerance: an overlap of exactly the minimum passes
        raise OverlapError(f"{mov.path}: overlap with {ref.path} is too small ({100 * frac:.2f}% of the smaller "
                           f"valid footprint, minimum {100 * cfg.min_overlap:g}%)")
    return ov, frac


def full_footprint(scene: Scene, pre, max_side: int = 512):
    """Valid-data footprint of the whole scene (polygon, full-scene pixel-centre coordinates) from one decimated
    read (longer side ``max_side``)."""
    s = min(1.0, max_side / max(scene.width, scene.height))
    _, valid = read_unit(scene, None, decimated_shape(scene, s) if s < 1 else None, pre)
    return mask_polygon(valid, _decimation(scene.shape, valid.shape))


def _moving_pre(cfg: RegisterConfig):
    from dataclasses import replace

    return replace(cfg.preprocess, band=cfg.moving_band) if cfg.moving_band is not None else cfg.preprocess


# --------------------------------------------------------------------------------------------- coarse stage
@dataclass
class StageResult:
    """Matches of one stage in full-scene pixels plus the features they come from."""

    src: np.ndarray  # moving px (M x 2)
    dst: np.ndarray  # reference px (M x 2)
    similarity: np.ndarray
    ref_feats: Features
    mov_feats: Features
    idx1: np.ndarray
    idx2: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    tiles: list["TilePair"] = field(default_factory=list, repr=False)


@dataclass
class TilePair:
    """One full-resolution reference tile and the moving read covering it (kept for area-based refinement).

    ru / rv: reference [0, 1] tile and validity, at reference pixels (c0, r0) + tile px; mu / mv: the moving read;
    Dm: moving read px -> full moving px.
    """

    c0: int
    r0: int
    ru: np.ndarray
    rv: np.ndarray
    mu: np.ndarray
    mv: np.ndarray
    Dm: np.ndarray


def coarse_stage(ref: Scene, mov: Scene, prior: np.ndarray, ci: CoarseImages, ext: Extractor,
                 cfg: RegisterConfig, area) -> tuple[Estimate, StageResult]:
    """Multiscale keypoints on the decimated images, matching and a robust fit; rotation search when nothing fits."""
    ru, rv, Dr, s, mu, mv, Dm = ci.ru, ci.rv, ci.Dr, ci.s, ci.mu, ci.mv, ci.Dm
    rshape = ru.shape
    fr = ext(ru, rv, multiscale=True, top_k=cfg.coarse_top_k, min_scale=cfg.coarse_min_scale)
    fr_full = Features(np.c_[apply_matrix(Dr, fr.xy), fr.keypoints[:, 2:] / s].astype(np.float32),
                       fr.descriptors, fr.scores, (ref.width, ref.height))
    model = {"shift": "shift", "similarity": "similarity"}.get(cfg.model, "affine")
    thr = max(2.0 * cfg.threshold, 2.5 / s)
    angles = (0.0,) + (ROTATIONS if cfg.rotation_search and ext.kind != "sift" else ())
    best: tuple[Estimate, StageResult] | None = None
    tried = []
    for ang in angles:
        G = _rotation(ang, rshape[1] / 2 - 0.5, rshape[0] / 2 - 0.5) @ np.linalg.inv(Dr) @ prior  # mov full -> grid
        wu = _warp(mu, G @ Dm, rshape)
        wv = _warp_valid(mv, G @ Dm, rshape)
        if wv.mean() < 0.01:
            continue
        fm = ext(wu, wv, multiscale=True, top_k=cfg.coarse_top_k, min_scale=cfg.coarse_min_scale)
        m = _match(fr, fm, cfg.ratio, cfg.device)
        dst = apply_matrix(Dr, fr.xy[m.idx1])
        src = apply_matrix(np.linalg.inv(G), fm.xy[m.idx2])
        keep = np.ones(len(src), bool)
        if cfg.max_shift is not None and len(src):
            keep = np.hypot(*(apply_matrix(prior, src) - dst).T) <= cfg.max_shift + thr
        src, dst, sim = src[keep], dst[keep], m.similarity[keep]
        fm_full = Features(np.c_[apply_matrix(np.linalg.inv(G), fm.xy), fm.keypoints[:, 2:] / s].astype(np.float32),
                           fm.descriptors, fm.scores, (mov.width, mov.height))
        res = StageResult(src, dst, sim, fr_full, fm_full, m.idx1[keep], m.idx2[keep],
                          {"scale": s, "rotation_tried_deg": ang, "keypoints_ref": len(fr), "keypoints_moving": len(fm),
                           "matches": int(keep.sum())})
        try:
            est = fit_model(src, dst, model, cfg.robust, thr, area=area, scores=sim, seed=cfg.seed)
        except RegistrationFailed as e:
            tried.append(f"{ang:+.0f} deg: {e}")
            continue
        tried.append(f"{ang:+.0f} deg: {est.n_inliers} inliers")
        if best is None or est.n_inliers > best[0].n_inliers:
            best = (est, res)
        good = est.n_inliers >= COARSE_GOOD and est.inlier_ratio >= 0.05
        if good:
            break
        log.info("coarse stage at %+.0f deg: %d inliers of %d matches; trying other rotations", ang,
                 est.n_inliers, est.n_matches)
    if best is None or not (best[0].n_inliers >= COARSE_GOOD and best[0].inlier_ratio >= 0.05):
        # few or no keypoint matches (speckle, low texture, strong temporal change): area-based matching from
        # the georeferencing prior before trusting a weaker keypoint result
        try:
            aest, ares = coarse_area(ref, mov, prior, ci, cfg, area)
            tried.append(f"correlation: {aest.n_inliers} of {ares.info['windows']} windows")
            if best is None or aest.n_inliers >= best[0].n_inliers or best[0].n_inliers < COARSE_GOOD:
                log.info("coarse: area-based matching, %d consistent windows", aest.n_inliers)
                return aest, ares
        except RegistrationFailed as e:
            tried.append(f"correlation: {e}")
    if best is None or best[0].n_inliers < FAIL_INLIERS:
        raise RegistrationFailed(f"{mov.path}: coarse stage found no consistent matches with {ref.path} "
                                 f"({'; '.join(tried) or 'no keypoints in the overlap'})")
    est, res = best
    res.info.update({"inliers": est.n_inliers, "rmse_px": est.rmse, "threshold_px": thr,
                     "rotation_deg": decompose(np.linalg.inv(prior) @ est.matrix)["rotation_deg"]})
    log.info("coarse: %d/%d inliers at 1/%.1f scale", est.n_inliers, est.n_matches, 1 / s)
    return est, res


# --------------------------------------------------------------------------------------------- fine stage
def plan_tiles(ref: Scene, area, tile: int, n_tiles: int) -> list[tuple[int, int, int, int]]:
    """Up to ``n_tiles`` windows (col0, row0, width, height) of the reference spread over ``area``."""
    import shapely

    from sarreg.estimate import thin_spatially

    # a reference up to 1.5 tiles wide is one tile (no cropped margins on small images)
    tw = ref.width if ref.width <= 1.5 * tile else tile
    th = ref.height if ref.height <= 1.5 * tile else tile
    x0, y0, x1, y1 = area.bounds
    step = max(min(tw, th), math.sqrt(max(area.area, 1.0) / max(n_tiles, 1)))
    nx = max(1, int(round((x1 - x0) / step)))
    ny = max(1, int(round((y1 - y0) / step)))
    cands = []
    for j in range(ny):
        for i in range(nx):
            cx, cy = x0 + (i + 0.5) * (x1 - x0) / nx, y0 + (j + 0.5) * (y1 - y0) / ny
            c0 = int(np.clip(round(cx - tw / 2), 0, ref.width - tw))
            r0 = int(np.clip(round(cy - th / 2), 0, ref.height - th))
            b = shapely.box(c0 - 0.5, r0 - 0.5, c0 + tw - 0.5, r0 + th - 0.5)
            frac = area.intersection(b).area / b.area
            if frac >= 0.3:
                cands.append((c0, r0, frac))
    if not cands:
        c = area.representative_point()
        cands = [(int(np.clip(round(c.x - tw / 2), 0, ref.width - tw)),
                  int(np.clip(round(c.y - th / 2), 0, ref.height - th)), 1.0)]
    cands = list(dict.fromkeys((c0, r0) for c0, r0, _ in cands))
    if len(cands) > n_tiles:
        idx = thin_spatially(np.array(cands, dtype=np.float64), n_tiles)
        cands = [cands[i] for i in idx]
    return [(c0, r0, tw, th) for c0, r0 in cands]


def fine_stage(ref: Scene, mov: Scene, coarse: np.ndarray, coarse_err: float, ext: Extractor,
               cfg: RegisterConfig, area) -> StageResult:
    """Full-resolution tiles around the coarse prediction; matches in full-scene pixels."""
    tiles = plan_tiles(ref, area, cfg.tile_size, cfg.n_tiles)
    inv = np.linalg.inv(coarse)
    radius = max(6.0, 3.0 * coarse_err)  # true matches lie near the coarse prediction
    srcs, dsts, sims, i1s, i2s, rparts, mparts = [], [], [], [], [], [], []
    n_r = n_m = 0
    used = skipped = 0
    tiles_kept: list[TilePair] = []
    mpre = _moving_pre(cfg)
    with open_dataset(ref.path) as dr, open_dataset(mov.path) as dm:
        for c0, r0, tw, th in tiles:
            ru, rv = read_unit(ref, Window(c0, r0, tw, th), None, cfg.preprocess, ds=dr)
            if rv.mean() < 0.2 or float(np.std(ru[rv])) < 0.01:
                skipped += 1
                continue
            corners = apply_matrix(inv, [[c0 - 0.5, r0 - 0.5], [c0 + tw - 0.5, r0 - 0.5],
                                         [c0 - 0.5, r0 + th - 0.5], [c0 + tw - 0.5, r0 + th - 0.5]])
            k = _local_scale(coarse, tuple(corners.mean(0)))
            pad = 8.0 / max(min(k, 1.0), 1e-6)
            mc0 = int(max(0, math.floor(corners[:, 0].min() - pad)))
            mr0 = int(max(0, math.floor(corners[:, 1].min() - pad)))
            mc1 = int(min(mov.width, math.ceil(corners[:, 0].max() + pad)))
            mr1 = int(min(mov.height, math.ceil(corners[:, 1].max() + pad)))
            if mc1 - mc0 < 16 or mr1 - mr0 < 16:
                skipped += 1
                continue
            # moving pixels finer than the reference's: decimated read at about the reference pixel size
            f = min(1.0, k * 1.25)
            mshape = (max(1, round((mr1 - mr0) * f)), max(1, round((mc1 - mc0) * f)))
            mu, mv = read_unit(mov, Window(mc0, mr0, mc1 - mc0, mr1 - mr0), mshape if f < 1 else None, mpre, ds=dm)
            Dm = _translate(mc0, mr0) @ _decimation((mr1 - mr0, mc1 - mc0), mu.shape)
            Ft = _translate(-c0, -r0) @ coarse @ Dm  # moving read px -> tile px
            wu = _warp(mu, Ft, (th, tw))
            wv = _warp_valid(mv, Ft, (th, tw))
            if wv.mean() < 0.1:
                skipped += 1
                continue
            tiles_kept.append(TilePair(c0, r0, ru, rv, mu, mv, Dm))
            fr = ext(ru, rv, multiscale=False, top_k=cfg.fine_top_k)
            fm = ext(wu, wv, multiscale=False, top_k=cfg.fine_top_k)
            used += 1
            if not len(fr) or not len(fm):
                continue
            m = _match(fr, fm, cfg.ratio, cfg.device)
            near = np.hypot(*(fr.xy[m.idx1] - fm.xy[m.idx2]).T) <= radius
            off = np.array([c0, r0], dtype=np.float64)
            rk = fr.xy + off
            mk = apply_matrix(inv, fm.xy + off)
            srcs.append(mk[m.idx2[near]])
            dsts.append(rk[m.idx1[near]])
            sims.append(m.similarity[near])
            i1s.append(m.idx1[near] + n_r)
            i2s.append(m.idx2[near] + n_m)
            rparts.append(Features(np.c_[rk, fr.keypoints[:, 2:]].astype(np.float32), fr.descriptors, fr.scores,
                                   (ref.width, ref.height)))
            mparts.append(Features(np.c_[mk, fm.keypoints[:, 2:] / max(k, 1e-6)].astype(np.float32),
                                   fm.descriptors, fm.scores, (mov.width, mov.height)))
            n_r += len(fr)
            n_m += len(fm)
    cat = (lambda xs, shape: np.concatenate(xs) if xs else np.zeros(shape))
    res = StageResult(cat(srcs, (0, 2)), cat(dsts, (0, 2)), cat(sims, (0,)).astype(np.float32),
                      Features.concat(rparts, (ref.width, ref.height)), Features.concat(mparts, (mov.width, mov.height)),
                      cat(i1s, (0,)).astype(np.int64), cat(i2s, (0,)).astype(np.int64),
                      {"tiles_planned": len(tiles), "tiles_used": used, "tiles_skipped": skipped,
                       "keypoints_ref": n_r, "keypoints_moving": n_m, "search_radius_px": radius},
                      tiles=tiles_kept)
    res.info["matches"] = len(res.src)
    log.info("fine: %d tiles, %d matches", used, len(res.src))
    return res


# --------------------------------------------------------------------------------------------- area-based
AREA_SIZE = 64  # correlation window (px) at full resolution
AREA_SPACING = 32  # grid spacing of window centres (px)
AREA_MIN_WINDOWS = 8  # consistent windows needed for an area-based estimate
AREA_MIN_RATIO = 0.3  # ... and their fraction among the windows that correlated
AREA_RADIUS = 8.0  # search radius (px) once a keypoint or correlation estimate exists: wide enough that a wrong
# model (an affine on a perspective pair) shows as inconsistent windows rather than as missing ones


def _area_points(ru: np.ndarray, rv: np.ndarray, wu: np.ndarray, wv: np.ndarray, to_ref: np.ndarray,
                 to_mov: np.ndarray, size: int, spacing: int, radius: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Tie points from correlating a reference image with the moving image resampled onto its grid.

    to_ref / to_mov: image px -> full reference px / full moving px. Returns (src moving px, dst reference px,
    peak heights, number of windows tried); only windows whose correlation peak passed the quality checks.
    """
    from sarreg.correlate import correlate, window_grid

    c = window_grid(rv & wv, size, spacing)
    o = correlate(ru, wu, rv, wv, c, size, radius)
    o = o.subset(o.ok)
    return apply_matrix(to_mov, o.xy), apply_matrix(to_ref, o.xy + o.d), o.peak, len(c)


def _area_result(src: np.ndarray, dst: np.ndarray, q: np.ndarray, ref: Scene, mov: Scene,
                 info: dict[str, Any]) -> StageResult:
    n = len(src)
    return StageResult(src, dst, q.astype(np.float32), Features.empty((ref.width, ref.height)),
                       Features.empty((mov.width, mov.height)), np.zeros(n, np.int64), np.zeros(n, np.int64), info)


def _fit_area(src: np.ndarray, dst: np.ndarray, q: np.ndarray, model: str, thr: float, cfg: RegisterConfig, area,
              coverage_grid: int = 8) -> Estimate:
    """Robust fit to correlation tie points; RegistrationFailed unless enough of them agree."""
    est = fit_model(src, dst, model, cfg.robust, thr, area=area, scores=q, seed=cfg.seed, coverage_grid=coverage_grid)
    if est.n_inliers < AREA_MIN_WINDOWS or est.n_inliers < AREA_MIN_RATIO * len(src):
        raise RegistrationFailed(f"{est.n_inliers} consistent of {len(src)} correlated windows")
    return est


def coarse_area(ref: Scene, mov: Scene, prior: np.ndarray, ci: CoarseImages, cfg: RegisterConfig,
                area) -> tuple[Estimate, StageResult]:
    """Coarse estimate by correlation on the decimated images: one global phase correlation (shift) from the
    prior, then a grid of windows fitted robustly. Raises RegistrationFailed when the windows do not agree."""
    from sarreg.correlate import global_offset

    ru, rv, Dr, s, mu, mv, Dm = ci.ru, ci.rv, ci.Dr, ci.s, ci.mu, ci.mv, ci.Dm
    rshape = ru.shape
    G = np.linalg.inv(Dr) @ prior  # moving full px -> coarse reference grid
    wv = _warp_valid(mv, G @ Dm, rshape)
    if (wv & rv).mean() < 0.01:
        raise RegistrationFailed("no overlap on the coarse grid")
    d0, peak, ratio = global_offset(ru, _warp(mu, G @ Dm, rshape), rv, wv)
    G1 = _translate(*d0) @ G
    wu, wv = _warp(mu, G1 @ Dm, rshape), _warp_valid(mv, G1 @ Dm, rshape)
    model = {"shift": "shift", "similarity": "similarity"}.get(cfg.model, "affine")
    thr = max(2.0 * cfg.threshold, 2.5 / s)
    size = AREA_SIZE if min(rshape) >= 2.5 * AREA_SIZE else AREA_SIZE // 2
    est, errors = None, []
    # weak correlation (speckle, strong temporal change): too few windows pass; larger windows average more
    for size, spacing in ((size, size // 2), (2 * size, size // 2)):
        if min(rshape) < size + 8:
            break
        src, dst, q, n = _area_points(ru, rv, wu, wv, Dr, np.linalg.inv(G1), size, spacing, size / 4)
        info = {"method": "correlation", "scale": s, "global_shift_px": [float(d0[0] / s), float(d0[1] / s)],
                "global_peak": round(float(peak), 4), "global_peak_ratio": round(float(ratio), 3), "windows": n,
                "window_px": size, "matches": len(src)}
        try:
            est = _fit_area(src, dst, q, model, thr, cfg, area)
            break
        except RegistrationFailed as e:
            errors.append(f"{size} px windows: {e}")
    if est is None:
        raise RegistrationFailed("; ".join(errors) or "images too small for correlation windows")
    res = _area_result(src, dst, q, ref, mov, info)
    res.info.update({"inliers": est.n_inliers, "rmse_px": est.rmse, "threshold_px": thr,
                     "rotation_deg": decompose(np.linalg.inv(prior) @ est.matrix)["rotation_deg"]})
    return est, res


def _area_spacing(n_tiles: int, size: int) -> int:
    """Window spacing: a small scene in one tile gets denser windows so that enough of them vote."""
    spacing = AREA_SPACING if n_tiles > 1 else AREA_SPACING // 2
    return max(spacing, size // 4) if size > AREA_SIZE else spacing


def _area_pass(tiles: list[TilePair], T: np.ndarray, size: int, radius: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Correlation tie points of all tiles, the moving tiles resampled through ``T`` (Lanczos)."""
    srcs, dsts, qs, n = [np.zeros((0, 2))], [np.zeros((0, 2))], [np.zeros(0)], 0
    inv = np.linalg.inv(T)
    spacing = _area_spacing(len(tiles), size)
    for t in tiles:
        shape = t.ru.shape
        if min(shape) < size + 8:
            continue
        Ft = _translate(-t.c0, -t.r0) @ T @ t.Dm
        wu, wv = _warp(t.mu, Ft, shape, flags=cv2.INTER_LANCZOS4), _warp_valid(t.mv, Ft, shape)
        off = _translate(t.c0, t.r0)
        src, dst, q, k = _area_points(t.ru, t.rv, wu, wv, off, inv @ off, size, spacing, radius)
        srcs.append(src), dsts.append(dst), qs.append(q)
        n += k
    return np.concatenate(srcs), np.concatenate(dsts), np.concatenate(qs), n


def area_stage(ref: Scene, mov: Scene, tiles: list[TilePair], T: np.ndarray, radius: float, model: str,
               cfg: RegisterConfig, area, coverage_grid: int = 8, iterations: int = 2
               ) -> tuple[Estimate | None, StageResult]:
    """Sub-pixel tie points by correlation on the fine-stage tiles, the moving tile resampled through the current
    transform ``T``; the model refitted and the correlation repeated through it (``iterations`` passes). Windows of
    AREA_SIZE px; twice that when too few of them agree (weak correlation: strong speckle or temporal change).

    Returns (estimate or None when the windows do not agree, the last successful pass's tie points)."""
    est = None
    res = best = _area_result(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), ref, mov,
                              {"method": "correlation", "windows": 0, "matches": 0})
    if not tiles:
        res.info["error"] = "no usable tile"
        return None, res
    sizes = [AREA_SIZE, 2 * AREA_SIZE]
    for it in range(iterations):
        e = None
        for size in sizes:
            src, dst, q, n = _area_pass(tiles, T, size, radius)
            spacing = _area_spacing(len(tiles), size)
            res = _area_result(src, dst, q, ref, mov, {"method": "correlation", "windows": n, "matches": len(src),
                                                       "window_px": size, "spacing_px": spacing,
                                                       "search_radius_px": radius, "passes": it + 1})
            try:
                e = _fit_area(src, dst, q, model, cfg.threshold, cfg, area, coverage_grid)
                sizes = [size]  # the next pass keeps the window size that worked
                break
            except RegistrationFailed as err:
                res.info["error"] = str(err)
        if e is None:
            break
        est, best, T, radius = e, res, e.matrix, min(radius, AREA_RADIUS)
        res.info.update({"inliers": e.n_inliers, "rmse_px": finite_round(e.rmse),
                         "heldout_rmse_px": finite_round(e.heldout_rmse)})
    if est is None:
        return None, res
    return est, best


# --------------------------------------------------------------------------------------------- quality
RICHER = {"shift": "affine", "similarity": "affine", "affine": "homography"}
# what --model accepts: the estimator's models plus "auto" (affine, or homography when clearly better)
REGISTER_MODELS = ("auto",) + MODELS + ("local",)


def _model_distance(a: Estimate, b: Estimate, area) -> float | None:
    """Mean distance (reference px) between two estimates over a 12 x 12 grid on the overlap ``area``."""
    import shapely

    x0, y0, x1, y1 = area.bounds
    g = np.stack(np.meshgrid(np.linspace(x0, x1, 12), np.linspace(y0, y1, 12)), -1).reshape(-1, 2)
    g = g[shapely.contains_xy(area.buffer(1.0), g[:, 0], g[:, 1])]
    if not len(g):
        return None
    mov = apply_matrix(np.linalg.inv(b.matrix), g)
    return float(np.nanmean(np.hypot(*(a.apply(mov) - g).T)))


def _matrix_distance(a: np.ndarray, b: np.ndarray, area) -> float:
    """Largest distance (reference px) between two moving -> reference matrices at the overlap's bounding box
    corners and centre."""
    x0, y0, x1, y1 = area.bounds
    g = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1], [(x0 + x1) / 2, (y0 + y1) / 2]])
    p = apply_matrix(np.linalg.inv(b), g)
    return float(np.nanmax(np.hypot(*(apply_matrix(a, p) - g).T)))


def _clearly_better(richer: Estimate, est: Estimate) -> bool:
    """The richer model explains clearly more matches than ``est`` (10 % + 3 more inliers)."""
    return richer.n_inliers >= 1.1 * est.n_inliers + 3


def model_adequacy(est: Estimate, src: np.ndarray, dst: np.ndarray, area, cfg: RegisterConfig) -> float | None:
    """Mean distance (px, over a grid on the overlap) between the estimate and a richer model fitted to the same
    matches: a shift fitted to rotated scenes still has inliers (a band of them) but disagrees with an affine."""
    richer = RICHER.get(est.model)
    if richer is None:
        return None
    try:
        alt = fit_model(src, dst, richer, cfg.robust, est.threshold, area=None, seed=cfg.seed)
    except RegistrationFailed:
        return None
    if not _clearly_better(alt, est):
        return 0.0  # the richer model explains no more matches: the chosen one is adequate
    return _model_distance(est, alt, area)


def select_model(est: Estimate, src: np.ndarray, dst: np.ndarray, area, cfg: RegisterConfig,
                 **fit_kw: Any) -> tuple[Estimate, dict[str, Any]]:
    """``--model auto``: keep the affine ``est`` unless a homography fitted to the same matches explains clearly
    more of them, predicts held-out matches at least as well, and differs from the affine by more than a third of
    the inlier threshold over the overlap (perspective that an affine cannot absorb). -> (estimate, info)."""
    info: dict[str, Any] = {"candidates": ["affine", "homography"], "chosen": "affine"}
    try:
        alt = fit_model(src, dst, "homography", cfg.robust, cfg.threshold, area=area, seed=cfg.seed, **fit_kw)
    except RegistrationFailed as e:
        info["homography"] = str(e)
        return est, info
    dist = _model_distance(est, alt, area)
    info.update({"affine_inliers": est.n_inliers, "homography_inliers": alt.n_inliers,
                 "affine_heldout_rmse_px": finite_round(est.heldout_rmse),
                 "homography_heldout_rmse_px": finite_round(alt.heldout_rmse),
                 "distance_px": None if dist is None else round(dist, 4)})
    if (dist is not None and dist > cfg.threshold / 3 and _clearly_better(alt, est)
            and math.isfinite(alt.heldout_rmse) and alt.heldout_rmse <= est.heldout_rmse):
        info["chosen"] = "homography"
        return alt, info
    return est, info


def choose_estimate(est_kp: Estimate | None, kp: StageResult, est_area: Estimate | None, area_res: StageResult
                    ) -> tuple[Estimate | None, StageResult]:
    """Keypoint or correlation estimate -> (estimate, the matches it was fitted to).

    Correlation tie points are sub-pixel and spread over the overlap: they win unless they cover clearly less of
    it than the keypoints or predict held-out points clearly worse."""
    if est_area is None:
        return est_kp, kp
    if est_kp is None or est_kp.n_inliers < FAIL_INLIERS:
        return est_area, area_res
    h_a = est_area.heldout_rmse if math.isfinite(est_area.heldout_rmse) else math.inf
    h_k = est_kp.heldout_rmse if math.isfinite(est_kp.heldout_rmse) else math.inf
    if est_area.coverage >= min(0.6 * est_kp.coverage, 0.5) and h_a <= 1.25 * h_k + 0.05:
        return est_area, area_res
    return est_kp, kp


MAX_SPREAD = 0.5  # largest bootstrap 1-sigma spread over the overlap, as a fraction of max_rmse


def overlap_points(area, n: int = 7) -> np.ndarray:
    """An n x n grid of reference px over the overlap's bounding box, kept where inside the overlap."""
    import shapely

    x0, y0, x1, y1 = area.bounds
    g = np.stack(np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n)), -1).reshape(-1, 2)
    inside = shapely.contains_xy(area.buffer(1.0), g[:, 0], g[:, 1])
    return g[inside] if inside.any() else g


def prefer_simpler(est: Estimate, matches: StageResult, area, cfg: RegisterConfig, grid_n: int
                   ) -> tuple[Estimate, dict[str, Any]]:
    """``--model auto``: when the tie points cannot constrain the chosen model over the whole overlap (bootstrap
    spread too large: few or clustered points extrapolated), fall back to a similarity or a shift fitted to the same
    points if it explains nearly as many of them and is constrained. -> (estimate, info)."""
    from sarreg.estimate import bootstrap_spread

    pts = overlap_points(area)
    info: dict[str, Any] = {"model": est.model, "chosen": est.model}
    # 1. information criterion: the richer model must reduce the residuals by more than its extra parameters can
    #    (overlapping correlation windows are not independent: their count is scaled by the overlap)
    size, spacing = matches.info.get("window_px"), matches.info.get("spacing_px")
    indep = min(1.0, (spacing / size) ** 2) if size and spacing else 1.0
    best = bic_model(est, matches.src, matches.dst, indep)
    info["bic"] = best
    if best["chosen"] != est.model:
        try:
            alt = fit_model(matches.src, matches.dst, best["chosen"], cfg.robust, cfg.threshold, area=area,
                            scores=matches.similarity, seed=cfg.seed, coverage_grid=grid_n)
            if alt.n_inliers >= 0.9 * est.n_inliers and alt.rmse <= cfg.max_rmse:
                est = alt
                info["chosen"] = alt.model
        except RegistrationFailed:
            pass
    # 2. bootstrap spread over the overlap: few or clustered tie points extrapolated
    spread = bootstrap_spread(est, matches.src, matches.dst, pts, seed=cfg.seed)
    info["spread_px"] = finite_round(spread)
    limit = MAX_SPREAD * cfg.max_rmse
    if spread is None or spread <= limit or est.model not in ("affine", "homography"):
        return est, info
    for simpler in ("similarity", "shift"):
        try:
            alt = fit_model(matches.src, matches.dst, simpler, cfg.robust, cfg.threshold, area=area,
                            scores=matches.similarity, seed=cfg.seed, coverage_grid=grid_n)
        except RegistrationFailed:
            continue
        s_alt = bootstrap_spread(alt, matches.src, matches.dst, pts, seed=cfg.seed)
        info[f"{simpler}_spread_px"] = finite_round(s_alt)
        info[f"{simpler}_inliers"] = alt.n_inliers
        if s_alt is not None and s_alt <= limit and alt.n_inliers >= 0.8 * est.n_inliers and alt.rmse <= cfg.max_rmse:
            info["chosen"] = simpler
            return alt, info
    return est, info


BIC_MODELS = {"shift": 2, "similarity": 4, "affine": 6, "homography": 8}


def bic_model(est: Estimate, src: np.ndarray, dst: np.ndarray, independence: float = 1.0) -> dict[str, Any]:
    """Bayesian information criterion of the models up to ``est``'s, least squares on its inliers.

    independence: effective fraction of independent observations (overlapping correlation windows < 1).
    -> {"chosen": model with the lowest BIC, "<model>": BIC, ...}."""
    from sarreg.estimate import _lsq

    idx = np.flatnonzero(est.inliers)
    out: dict[str, Any] = {"chosen": est.model}
    if est.model not in BIC_MODELS or len(idx) < 6:
        return out
    n_obs = 2 * len(idx)
    n_eff = max(n_obs * independence, 2 * BIC_MODELS[est.model] + 2)
    best = math.inf
    for model, k in BIC_MODELS.items():
        if k > BIC_MODELS[est.model]:
            break
        m = _lsq(src[idx], dst[idx], model)
        rss = float(np.sum((apply_matrix(m, src[idx]) - dst[idx]) ** 2))
        bic = n_eff * math.log(max(rss / n_obs, 1e-12)) + k * math.log(n_eff)
        out[model] = round(bic, 2)
        if bic < best - 1e-9:
            best, out["chosen"] = bic, model
    return out


def judge(est: Estimate, prior: np.ndarray, cfg: RegisterConfig, adequacy: float | None = None,
          spread: float | None = None) -> tuple[str, list[str]]:
    """Quality gates -> ("ok" | "low_quality", reasons). spread: bootstrap 1-sigma spread of the estimate over the
    overlap (px): an estimate its tie points cannot pin down away from them is not trusted."""
    reasons = []
    if spread is not None and spread > MAX_SPREAD * cfg.max_rmse:
        reasons.append(f"uncertain away from the tie points: bootstrap spread {spread:.2f} px over the overlap "
                       f"> {MAX_SPREAD * cfg.max_rmse:g}")
    if adequacy is not None and adequacy > cfg.max_rmse:
        reasons.append(f"{est.model} model inadequate: a {RICHER[est.model]} fit differs by {adequacy:.2f} px "
                       f"on average over the overlap")
    if est.n_inliers < cfg.min_inliers:
        reasons.append(f"{est.n_inliers} inliers < {cfg.min_inliers}")
    if not est.rmse <= cfg.max_rmse:
        reasons.append(f"RMSE {est.rmse:.2f} px > {cfg.max_rmse:g}")
    if not (math.isfinite(est.heldout_rmse) and est.heldout_rmse <= 2.0 * cfg.max_rmse):
        reasons.append(f"held-out RMSE {est.heldout_rmse:.2f} px > {2 * cfg.max_rmse:g}")
    if est.coverage < cfg.min_coverage:
        reasons.append(f"coverage {est.coverage:.2f} < {cfg.min_coverage:g}")
    if est.inlier_ratio < 0.05:
        reasons.append(f"inlier ratio {est.inlier_ratio:.3f} < 0.05")
    rel = decompose(np.linalg.inv(prior) @ est.matrix)
    if not (0.2 < rel["scale_x"] < 5 and 0.2 < rel["scale_y"] < 5 and abs(rel["shear"]) < 0.5):
        reasons.append(f"implausible scale/shear relative to the georeferencing ({rel['scale_x']:.2f}, "
                       f"{rel['scale_y']:.2f}, shear {rel['shear']:.2f})")
    return ("ok" if not reasons else "low_quality"), reasons


def to_pixel_transform(est: Estimate, src: np.ndarray, dst: np.ndarray) -> PixelTransform:
    """What the warp needs from an estimate (tps: its inlier tie points, moving px -> reference px)."""
    tp = None
    if est.model == "tps":
        idx = np.flatnonzero(est.inliers)
        tp = np.c_[src[idx], dst[idx]]
    return PixelTransform(est.model, est.matrix, poly=est.poly, tiepoints=tp)


def _correction(ref: Scene, prior: np.ndarray, est: Estimate, area) -> dict[str, Any]:
    """How far the estimate moves the moving raster from where its georeferencing put it (overlap centre)."""
    c = area.centroid
    centre_ref = np.array([[c.x, c.y]])
    mov_c = apply_matrix(np.linalg.inv(prior), centre_ref)
    d = (est.apply(mov_c) - centre_ref)[0]
    rel = decompose(np.linalg.inv(prior) @ est.matrix)
    out = {"at_ref_px": [round(c.x, 3), round(c.y, 3)], "dx_px": float(d[0]), "dy_px": float(d[1]),
           "shift_px": float(np.hypot(*d)), "rotation_deg": rel["rotation_deg"], "scale": rel["scale_x"]}
    if ref.georeferenced:
        a = ref.transform
        dm = np.array([a.a * d[0] + a.b * d[1], a.d * d[0] + a.e * d[1]])
        out.update({"dx_map": float(dm[0]), "dy_map": float(dm[1]), "shift_map": float(np.hypot(*dm)),
                    "map_units": _units(ref)})
    return out


def enforce_max_shift(rep: Report, cfg: RegisterConfig) -> None:
    """``--max-shift`` on the final correction (reference px at the overlap centre): a larger one makes an ok
    result low_quality, with the reason in the message (the coarse stage only filtered matches by it)."""
    shift = rep.correction.get("shift_px")
    if cfg.max_shift is None or shift is None or not shift > cfg.max_shift:
        return
    why = f"correction of {shift:.2f} px exceeds --max-shift {cfg.max_shift:g} px"
    if rep.status == "ok":
        rep.status, rep.message = "low_quality", why
    else:
        rep.message = f"{rep.message}; {why}"


def _units(scene: Scene) -> str:
    try:
        return str(scene.crs.linear_units or "unknown")
    except Exception:
        return "unknown"


def _versions() -> dict[str, str]:
    import rasterio
    import shapely
    import torch
    from osgeo import gdal

    return {"sarreg": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "opencv": cv2.__version__, "gdal": gdal.__version__, "rasterio": rasterio.__version__,
            "torch": torch.__version__, "shapely": shapely.__version__}


# --------------------------------------------------------------------------------------------- main
def register(ref: str | Path, moving: str | Path, out: str | Path, config: RegisterConfig = RegisterConfig(),
             progress: Callable[[str], None] | None = None, extractor: Extractor | None = None) -> Report:
    """Register ``moving`` onto ``ref``; write ``out`` (moving on the reference grid) and sidecars.

    ``extractor``: an ``Extractor`` (or subclass) built for ``config`` to reuse across calls, e.g. to keep the
    network loaded or serve cached reference features (``sarreg.batch``); default: a new one per call.
    Returns a Report with status ok / low_quality / failed; raises InputError / CRSError / OverlapError /
    OutputError / WeightsError for bad input (then nothing is written). Inputs are never modified.
    GDAL's block cache is bounded by ``warp_mem_mb`` (its default, 5% of RAM, would dominate peak memory).
    """
    import rasterio

    from sarreg import export
    from sarreg.outputs import Staging, check_write_set, clean_stale, temp_path

    ref, moving, out = Path(ref), Path(moving), Path(out)
    finals = register_outputs(out, config)
    inputs = [ref, moving, Path(config.weights) if config.weights else None]
    check_write_set(finals.values(), inputs, config.overwrite)
    clean_stale(finals.values())
    # stage names: hidden, per process, in the same folders; the sidecars of the staged raster name keep their roles
    stage_out = temp_path(out if out.suffix else out.with_name(out.name + ".tif"), stage=True)
    cfg = config.with_(quicklook=str(temp_path(config.quicklook, stage=True))) if config.quicklook else config
    with Staging(finals, register_outputs(stage_out, cfg)) as st:
        with rasterio.Env(GDAL_CACHEMAX=max(16, config.warp_mem_mb // 2)):
            rep = _register(ref, moving, stage_out, cfg, progress, extractor)
        names = st.mapping()
        rep.output = names.get(rep.output, rep.output) if rep.output else None
        rep.outputs = {k: names.get(v, v) for k, v in rep.outputs.items()}
        rep.options["quicklook"] = config.quicklook
        if "relate" in rep.stages:  # the moving grid lets ``apply`` relate a raster on another grid to it
            rep.stages["relate"]["moving_grid"] = _grid_of(moving)
        st.commit("report", lambda p: export.write_json(p, rep.to_dict()), config.overwrite)
    return rep


def _grid_of(path: Path) -> dict[str, Any]:
    """Size, GDAL geotransform and CRS WKT (None in pixel space) of a raster."""
    from sarreg.io.raster import _is_georeferenced

    with open_dataset(path) as ds:
        geo = _is_georeferenced(ds)
        return {"width": ds.width, "height": ds.height, "geotransform": list(ds.transform.to_gdal()),
                "crs_wkt": ds.crs.to_wkt() if geo else None}


def register_outputs(out: str | Path, cfg: RegisterConfig) -> dict[str, Path]:
    """The write set of ``register``: role -> path of every file it may write (raster, sidecars, quicklook)."""
    from sarreg.export import sidecar

    out = Path(out)
    roles: dict[str, Path] = {}
    if cfg.warp:
        roles["raster"] = out
    if cfg.tiepoints:
        roles["tiepoints"] = sidecar(out, ".tiepoints.gpkg")
        if cfg.geojson:
            roles["tiepoints_geojson"] = sidecar(out, ".tiepoints.geojson")
    if cfg.points:
        roles["points"] = sidecar(out, ".points")
    if cfg.matches_npz:
        roles["matches"] = sidecar(out, ".matches.npz")
    if cfg.quicklook:
        roles["quicklook"] = Path(cfg.quicklook)
    if cfg.model == "local":
        roles["offsets"] = sidecar(out, ".offsets.tif")
    roles["report"] = sidecar(out, ".report.json")
    return roles


def _register(ref: str | Path, moving: str | Path, out: str | Path, config: RegisterConfig,
              progress: Callable[[str], None] | None, extractor: Extractor | None = None) -> Report:
    from sarreg import export
    from sarreg.warp import update_georef, warp_to_grid

    cfg = config
    ref, moving, out = Path(ref), Path(moving), Path(out)
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    step = progress or (lambda msg: None)

    peaks: dict[str, float] = {}

    def tick(name: str, t0: float) -> float:
        t1 = time.perf_counter()
        timings[name] = round(t1 - t0, 3)
        peaks[name] = round(_peak_mb(), 1)  # process peak RSS so far: shows which stage set it
        return t1

    _check_config(cfg)
    check_output(out, [ref, moving], cfg.overwrite)
    report_path = export.sidecar(out, ".report.json")
    check_output(report_path, [ref, moving], cfg.overwrite)
    if cfg.quicklook:
        check_output(Path(cfg.quicklook), [ref, moving], cfg.overwrite)
    if ref.exists() and moving.exists() and ref.resolve() == moving.resolve():
        raise InputError(f"{moving}: reference and moving are the same file")

    t = time.perf_counter()
    step("relate")
    rs = open_scene(ref, cfg.preprocess)
    ms = open_scene(moving, _moving_pre(cfg))
    prior = prior_matrix(rs, ms)
    check_bounds(rs, ms, prior)
    ci = read_coarse(rs, ms, prior, cfg)
    area, frac = overlap_area(rs, ms, prior, cfg, ci)
    grid = Grid.from_scene(rs)
    t = tick("relate", t)
    step("model")
    ext = extractor if extractor is not None else Extractor(cfg)
    t = tick("load_model", t)

    rep = Report(status="failed", message="", ref=str(ref), moving=str(moving), output=None, model=cfg.model,
                 reference_grid=grid.to_dict(), versions=_versions(),
                 weights={"features": cfg.features, "name": ext.name, "sha256": ext.sha256},
                 options=cfg.to_dict())
    rep.stages["relate"] = {"prior": prior.tolist(), "overlap_fraction": round(frac, 4),
                            "overlap_area_px": round(area.area, 1), "georeferenced": rs.georeferenced}
    rep.stages["relate"]["kind"] = {"reference": rs.kind, "moving": ms.kind}
    est = None
    fine = matches = None
    try:
        step("coarse")
        cest, coarse = coarse_stage(rs, ms, prior, ci, ext, cfg, area)
        del ci
        rep.stages["coarse"] = {**coarse.info, "matrix": cest.matrix.tolist()}
        t = tick("coarse", t)
        step("fine")
        fine = fine_stage(rs, ms, cest.matrix, max(cest.rmse, coarse.info["threshold_px"] / 2), ext, cfg, area)
        rep.stages["fine"] = dict(fine.info)
        t = tick("fine", t)
        step("estimate")
        # coverage grid: one cell per fine tile when tiles sample a large scene, else 8 x 8
        n_t = fine.info["tiles_planned"]
        grid_n = 8 if n_t <= 1 else max(2, min(8, int(round(math.sqrt(n_t)))))
        fit_as = "affine" if cfg.model in ("auto", "local") else cfg.model
        est_kp = kp_error = None
        try:
            est_kp = fit_model(fine.src, fine.dst, fit_as, cfg.robust, cfg.threshold, area=area,
                               scores=fine.similarity, seed=cfg.seed, coverage_grid=grid_n)
            if cfg.model == "auto" and not cfg.update_georef:
                est_kp, rep.stages["model_selection"] = select_model(est_kp, fine.src, fine.dst, area, cfg,
                                                                     scores=fine.similarity, coverage_grid=grid_n)
        except RegistrationFailed as e:
            kp_error = str(e)
        t = tick("estimate", t)
        step("refine")
        kp_good = est_kp is not None and est_kp.n_inliers >= FAIL_INLIERS
        area_model = est_kp.model if kp_good and est_kp.model in ("affine", "homography") else fit_as
        # start the correlation from the keypoint estimate, and also from the coarse one and the georeferencing
        # when they differ (a weak keypoint fit can be a few px off where correlation still finds the truth)
        starts = [(est_kp.matrix, AREA_RADIUS)] if kp_good else []
        starts.append((cest.matrix, max(6.0, 3.0 * cest.rmse, coarse.info["threshold_px"])))
        if rs.georeferenced:
            starts.append((prior, max(6.0, 3.0 * cest.rmse, coarse.info["threshold_px"])))
        est_area = area_res = None
        tried_starts: list[np.ndarray] = []
        for T0, radius in starts:
            if any(_matrix_distance(T0, T1, area) < 1.0 for T1 in tried_starts):
                continue
            tried_starts.append(T0)
            e, r = area_stage(rs, ms, fine.tiles, T0, radius, area_model, cfg, area, grid_n)
            if area_res is None or (e is not None and (est_area is None or e.n_inliers > est_area.n_inliers)):
                est_area, area_res = e, r
            if e is not None and e.n_inliers >= 0.7 * r.info["windows"]:
                break  # most windows agree: no need to try other starts
        if est_area is not None and cfg.model == "auto" and not cfg.update_georef and area_model == "affine":
            est_area, rep.stages["model_selection_area"] = select_model(
                est_area, area_res.src, area_res.dst, area, cfg, scores=area_res.similarity, coverage_grid=grid_n)
        est, matches = choose_estimate(est_kp, fine, est_area, area_res)
        if est is not None and cfg.model == "auto" and not cfg.update_georef:
            est, rep.stages["parsimony"] = prefer_simpler(est, matches, area, cfg, grid_n)
        rep.stages["refine"] = {**area_res.info, "chosen": "correlation" if matches is area_res else "keypoints",
                                "keypoints": None if est_kp is None else est_kp.summary(),
                                "correlation": None if est_area is None else est_area.summary()}
        if est is None:
            raise RegistrationFailed(kp_error or "no consistent tie points")
        t = tick("refine", t)
    except RegistrationFailed as e:
        rep.status, rep.message = "failed", str(e)
        t = tick("estimate", t)
    if est is not None:
        from sarreg.estimate import bootstrap_spread

        # --model local absorbs what a richer global model would (the field), so no adequacy gate there
        adequacy = model_adequacy(est, matches.src, matches.dst, area, cfg) if cfg.model != "local" else None
        spread = bootstrap_spread(est, matches.src, matches.dst, overlap_points(area), seed=cfg.seed)
        status, reasons = judge(est, prior, cfg, adequacy, spread)
        if est.n_inliers < FAIL_INLIERS:
            status = "failed"
            reasons.insert(0, f"too few inliers ({est.n_inliers} < {FAIL_INLIERS})")
        rep.status = status
        rep.message = "registered" if status == "ok" else "; ".join(reasons)
        rep.model = est.model
        rep.matrix = est.matrix.tolist()
        ptr = to_pixel_transform(est, matches.src, matches.dst)
        if cfg.model == "local" and status != "failed":
            step("offsets")
            ptr, field_reasons = _local_field(rs, ms, est, area, cfg, out, rep)
            if field_reasons and rep.status == "ok":
                rep.status = "low_quality"
                rep.message = "; ".join(field_reasons)
            elif field_reasons:
                rep.message += "; " + "; ".join(field_reasons)
            t = tick("offsets", t)
        rep.transform = ptr.to_dict()
        rep.quality = est.summary()
        psize = pixel_size(grid)
        rep.quality.update({"rmse_map": est.rmse * psize if rs.georeferenced else None,
                            "heldout_rmse_map": est.heldout_rmse * psize if rs.georeferenced else None,
                            "overlap_fraction": round(frac, 4),
                            "model_adequacy_px": None if adequacy is None else round(adequacy, 4),
                            "overlap_spread_px": finite_round(spread)})
        rep.correction = _correction(rs, prior, est, area)
        enforce_max_shift(rep, cfg)
        if est.model in ("shift", "similarity", "affine"):
            gt = corrected_geotransform(est.matrix, grid)
            rep.geotransform = list(gt.to_gdal())
            if rs.georeferenced and ms.crs == rs.crs:
                a_new = np.array([[gt.a, gt.b, gt.c], [gt.d, gt.e, gt.f], [0, 0, 1]])
                am = ms.transform
                a_old = np.array([[am.a, am.b, am.c], [am.d, am.e, am.f], [0, 0, 1]])
                rep.map_matrix = (a_new @ np.linalg.inv(a_old)).tolist()  # moving map -> corrected map
        # outputs
        write_raster = rep.status == "ok" or (cfg.force and rep.status == "low_quality")
        if write_raster and cfg.warp:
            step("warp")
            if cfg.update_georef:
                update_georef(moving, ptr, grid, out, cfg.fmt, cfg.compress, overwrite=cfg.overwrite)
            else:
                warp_to_grid(moving, ptr, grid, out, cfg.resampling, cfg.fmt, cfg.compress, cfg.warp_mem_mb,
                             overwrite=cfg.overwrite)
            rep.output = str(out)
            rep.outputs["raster"] = str(out)
            t = tick("warp", t)
    step("sidecars")
    if matches is None:
        matches = fine
    if fine is not None and (len(fine.src) or len(matches.src)):
        _write_match_sidecars(rep, rs, ms, matches, fine, est, cfg, out, prior)
    if cfg.quicklook and est is not None:
        q = Path(cfg.quicklook)
        export.write_quicklook(q, rs, ms, est, matches.src, matches.dst, est.inliers)
        rep.outputs["quicklook"] = str(q)
    t = tick("sidecars", t)
    timings["total"] = round(time.perf_counter() - t_all, 3)
    rep.timings_s = timings
    rep.peak_memory_mb = round(_peak_mb(), 1)
    rep.stages["peak_memory_mb_after"] = peaks
    rep.outputs["report"] = str(report_path)
    export.write_json(report_path, rep.to_dict())
    log.info("%s: %s (%s)", moving, rep.status, rep.message)
    return rep


def _local_field(rs: Scene, ms: Scene, est: Estimate, area, cfg: RegisterConfig, out: Path, rep: Report
                 ) -> tuple[PixelTransform, list[str]]:
    """``--model local``: offsets field over the overlap through the global estimate, written to OUT.offsets.tif;
    -> (the warp transform: global model + field nodes as GCPs, gate reasons)."""
    from sarreg import export
    from sarreg.estimate import thin_spatially
    from sarreg.offsets import RADIUS, estimate_field, write_field

    spacing = cfg.grid_spacing or max(32, int(round(max(rs.width, rs.height) / 96 / 16)) * 16)
    field = estimate_field(rs, ms, est.matrix, area, spacing, cfg.preprocess, _moving_pre(cfg))
    stats = field.stats()
    rep.stages["offsets"] = stats
    rep.model = "local"
    reasons = []
    if stats["known"] < max(4, 0.3 * stats["nodes"]):
        reasons.append(f"offsets field known at {stats['known']} of {stats['nodes']} nodes")
    if stats["raw_vs_smooth_rmse_px"] is not None and stats["raw_vs_smooth_rmse_px"] > cfg.max_rmse / 2:
        reasons.append(f"offsets field inconsistent: raw vs smoothed RMSE {stats['raw_vs_smooth_rmse_px']:.2f} px "
                       f"> {cfg.max_rmse / 2:g}")
    if stats["max_px"] is not None and stats["max_px"] > RADIUS - 1:
        reasons.append(f"local offsets up to {stats['max_px']:.1f} px: at the edge of the search radius")
    p = export.sidecar(out, ".offsets.tif")
    write_field(p, field, rs)
    rep.outputs["offsets"] = str(p)
    tp = field.tiepoints(est.matrix)
    if len(tp) > TPS_MAX_POINTS:
        tp = tp[thin_spatially(tp[:, 2:], TPS_MAX_POINTS)]
    if len(tp) < 3:
        return PixelTransform(est.model, est.matrix), reasons
    return PixelTransform("tps", est.matrix, tiepoints=tp), reasons


def _write_match_sidecars(rep: Report, rs: Scene, ms: Scene, fine: StageResult, kp: StageResult,
                          est: Estimate | None, cfg: RegisterConfig, out: Path, prior: np.ndarray) -> None:
    """Tie points (GPKG/GeoJSON, QGIS .points) of the matches the estimate was fitted to (``fine``: keypoint or
    correlation tie points); the keypoint matches ``kp`` with their features in the npz."""
    from sarreg import export

    n = len(fine.src)
    inl = est.inliers if est is not None and est.inliers.size == n else np.zeros(n, bool)
    resid = est.residuals if est is not None and est.residuals.size == n else np.full(n, np.nan)
    pred = est.apply(fine.src) if est is not None else np.full((n, 2), np.nan)
    grid = Grid.from_scene(rs)
    ref_map = grid.px_to_map(fine.dst)
    if rs.georeferenced:
        mov_map = ms.xy_to_map(fine.src)
        crs = rs.crs
    else:  # pixel space: QGIS shows non-georeferenced rasters with y = -row (pixel edges)
        ref_map = np.c_[fine.dst[:, 0] + 0.5, -(fine.dst[:, 1] + 0.5)]
        mov_map = np.c_[fine.src[:, 0] + 0.5, -(fine.src[:, 1] + 0.5)]
        crs = None
    if cfg.tiepoints:
        p = export.sidecar(out, ".tiepoints.gpkg")
        export.write_tiepoints(p, ref_map, mov_map, fine.dst, fine.src, resid, fine.similarity, inl, crs)
        rep.outputs["tiepoints"] = str(p)
        if cfg.geojson:
            p = export.sidecar(out, ".tiepoints.geojson")
            export.write_tiepoints(p, ref_map, mov_map, fine.dst, fine.src, resid, fine.similarity, inl, crs)
            rep.outputs["tiepoints_geojson"] = str(p)
    if cfg.points:
        p = export.sidecar(out, ".points")
        export.write_qgis_points(p, ref_map, mov_map, inl, pred - fine.dst, grid.crs_wkt)
        rep.outputs["points"] = str(p)
    if cfg.matches_npz and len(kp.src):
        p = export.sidecar(out, ".matches.npz")
        kp_resid = np.hypot(*(est.apply(kp.src) - kp.dst).T) if est is not None else np.full(len(kp.src), np.nan)
        kp_inl = kp_resid < (est.threshold if est is not None else 0)
        export.write_matches_npz(p, kp.ref_feats, kp.mov_feats, kp.idx1, kp.idx2, kp.similarity, kp_inl,
                                 kp_resid)
        rep.outputs["matches"] = str(p)


def _check_config(cfg: RegisterConfig) -> None:
    from sarreg.estimate import ROBUST
    from sarreg.warp import COMPRESSION, FORMATS, RESAMPLING

    for name, val, allowed in (("model", cfg.model, REGISTER_MODELS), ("robust", cfg.robust, tuple(ROBUST)),
                               ("format", cfg.fmt, FORMATS), ("resampling", cfg.resampling, RESAMPLING),
                               ("compress", cfg.compress, COMPRESSION), ("features", cfg.features, ("r2d2", "sift"))):
        if val not in allowed:
            raise InputError(f"unknown {name} {val!r}; choose from {', '.join(allowed)}")
    if cfg.update_georef and cfg.model not in ("shift", "similarity", "affine", "auto"):
        raise InputError(f"--update-georef needs a shift, similarity, affine or auto model, not {cfg.model}")
    if not cfg.threshold > 0 or not cfg.max_rmse > 0:
        raise InputError("threshold and max-rmse must be positive")
