"""Stage 1, relate: how the two scenes sit on each other before any matching.

A prior moving -> reference pixel transform from the georeferencing (pyproj through both affines; identity for
pixel-space images), decimated reads of both scenes, valid-data footprints and their overlap (shapely).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
from rasterio.windows import Window

from sarreg.config import PreprocessConfig, RegisterConfig
from sarreg.errors import BandError, CRSError, InputError, OverlapError, RegistrationFailed
from sarreg.estimate import Estimate, apply_matrix, fit_model
from sarreg.geometry import apply_geom, box_around, decimation, edge_corners, local_scale, translate
from sarreg.io.raster import Scene, both, decimated_shape, open_scene, read_unit

NONLINEAR_PX = 0.5  # the georeferencings' mapping may depart from an affine by this much (reference px)

if TYPE_CHECKING:
    from rasterio.io import DatasetReader
    from shapely.geometry.base import BaseGeometry

    from sarreg.io.source import Source


def prior_matrix(ref: Scene, mov: Scene) -> np.ndarray:
    """Moving px -> reference px implied by the two georeferencings (affine least-squares fit over a grid).

    A raster is located by its geotransform and CRS or, without a geotransform, by its GCPs (GDAL's GCP
    transformer, ``sarreg.io.gcps``): the grid of moving pixels goes to the ground through the moving raster's own
    location and back into reference pixels through the reference's, so GCP <-> map and GCP <-> GCP pairs get a
    prior like map <-> map ones; the stages then estimate what the fit leaves."""
    return prior_fit(ref, mov)[0]


def pixels_in(src: Scene, dst: Scene, xy: np.ndarray) -> np.ndarray:
    """Pixels (N x 2) of ``src`` -> the pixels of ``dst`` at the same place on the ground, through both
    georeferencings and, between CRSs, pyproj's exact transform (NaN where it fails)."""
    m = src.xy_to_map(xy)
    if src.crs != dst.crs:
        from pyproj import Transformer

        try:
            x, y = Transformer.from_crs(src.crs, dst.crs, always_xy=True).transform(m[:, 0], m[:, 1], errcheck=False)
        except Exception as e:  # pyproj raises several types
            raise CRSError(f"{src.path}: cannot transform from its CRS to that of {dst.path} ({e})") from None
        m = np.c_[x, y]
        if getattr(dst.crs, "is_geographic", False):  # longitudes on the raster's own side of +-180 degrees
            c = dst.xy_to_map(np.array([[(dst.width - 1) / 2, (dst.height - 1) / 2]]))[0, 0]
            m[:, 0] = c + (m[:, 0] - c + 180.0) % 360.0 - 180.0
    return dst.map_to_xy(m)


def prior_fit(ref: Scene, mov: Scene) -> tuple[np.ndarray, float]:
    """``prior_matrix`` and how far the georeferencings' own mapping departs from it over the moving raster (largest
    distance on the grid, reference px): 0 for rasters in one CRS; between CRSs such as UTM and geographic
    coordinates it grows with the scene (about 16 m at 20 km, 400 m at 100 km), and an affine estimate on top of
    the prior cannot follow it (``nonlinear_reason``)."""
    if not ref.geolocated and not mov.geolocated and not (ref.local and mov.local):
        return np.eye(3), 0.0  # (two geotransforms without a CRS: taken to be in one frame)
    if ref.geolocated != mov.geolocated:
        which, other = (mov, ref) if ref.geolocated else (ref, mov)
        if which.local:
            raise CRSError(f"{which.path}: has a geotransform but no CRS, and {other.path} has one: set its CRS first "
                           f"(gdal_edit.py -a_srs EPSG:...)")
        if which.crs is not None:  # (a geotransform lost in an export: the identity, which GDAL reads as none)
            raise CRSError(f"{which.path}: has a CRS but nothing that places it (no geotransform, GCPs, RPCs or "
                           f"geolocation arrays) while {other.path} is georeferenced; both or neither must be")
        raise CRSError(f"{which.path}: has no CRS/georeferencing (geotransform, GCPs, RPCs or geolocation arrays) but "
                       f"{other.path} has; both or neither must be georeferenced")
    g, r = _crs_grid(ref, mov)
    a = np.c_[g, np.ones(len(g))]
    p = np.linalg.lstsq(a, r, rcond=None)[0]
    return np.r_[p.T, [[0, 0, 1]]], float(np.hypot(*(a @ p - r).T).max())


def _crs_grid(ref: Scene, mov: Scene) -> tuple[np.ndarray, np.ndarray]:
    """A grid over the moving raster (its pixels) and where the georeferencings put it in reference pixels."""
    n = 11 if mov.georeferenced and ref.georeferenced else 21
    # the grid spans the raster's extent (pixel edges, -0.5 .. size - 0.5): a one-pixel-wide raster still has one
    g = np.stack(np.meshgrid(np.linspace(-0.5, mov.width - 0.5, n), np.linspace(-0.5, mov.height - 0.5, n)),
                 -1).reshape(-1, 2)
    r = pixels_in(mov, ref, g)
    ok = np.isfinite(r).all(1)
    if ok.sum() < 3:
        raise CRSError(f"{mov.path}: its footprint cannot be expressed in the reference CRS ({ref.path})")
    return g[ok], r[ok]


def poly2_departure(ref: Scene, mov: Scene) -> float:
    """How far the georeferencings' mapping departs from a second-order polynomial over the moving raster (largest
    distance on ``prior_fit``'s grid, reference px): what a poly2 estimate on top of the prior cannot follow."""
    g, r = _crs_grid(ref, mov)
    x, y = ((g - g.mean(0)) / max(float(np.ptp(g)), 1.0)).T
    a = np.c_[np.ones(len(g)), x, y, x * x, x * y, y * y]
    p = np.linalg.lstsq(a, r, rcond=None)[0]
    return float(np.hypot(*(a @ p - r).T).max())


def nonlinear_reason(nonlinear_px: float, model: str, poly2_px: float | None = None) -> str | None:
    """The quality gate for a georeferencing mapping that no affine follows (``prior_fit``): more than half a pixel
    off somewhere under a shift ... homography estimate, whose warp is that model, so the output is off there too
    (a local offsets field follows it; a poly2 follows what a second-order polynomial does, ``poly2_px`` from
    ``poly2_departure``). None when it holds."""
    px, shape = (poly2_px, "a second-order polynomial") if model == "poly2" and poly2_px is not None \
        else (nonlinear_px, "an affine")
    if px <= NONLINEAR_PX or model in ("local", "tps"):
        return None
    return (f"the two CRSs map onto each other non-linearly over this scene (up to {px:.1f} px from {shape}): "
            f"a {model} cannot follow it; reproject MOVING to the reference CRS first (gdalwarp -t_srs) "
            f"or use --model local")


NATIVE_MODELS = ("shift", "similarity", "affine", "homography")  # what a native correction refits


def native_fit(ref: Scene, mov: Scene, est: Estimate, src: np.ndarray, dst: np.ndarray, nonlinear_px: float,
               cfg: RegisterConfig, kept: bool = False) -> tuple[np.ndarray, dict] | None:
    """Between CRSs that no affine relates over the scene (``prior_fit``), ``est`` refitted where the CRSs play no
    part: each tie point's reference px -> reference map -> moving CRS (pyproj, exact) -> moving px through the
    moving raster's own georeferencing; the fit, moving px -> those px, is the correction of that georeferencing
    (``sarreg.grid.Native``), and the warp leaves the reprojection to GDAL. Returns (matrix, its fit's summary), or
    None when the CRSs relate affinely, the reference is located by GCPs or the model is not a single matrix (a
    GCP-located moving raster: the correction moves its GCPs, the GCP transformer does the rest). kept: the
    georeferencing was kept (``sarreg.decide.keep_georeferencing``): no correction, the identity."""
    if nonlinear_px <= NONLINEAR_PX or est.model not in NATIVE_MODELS or not (ref.georeferenced and mov.geolocated):
        return None
    if kept:
        return np.eye(3), {"model": "georeferencing"}
    own = pixels_in(ref, mov, dst)
    ok = np.isfinite(own).all(1)
    scale = math.sqrt(abs(np.linalg.det(est.matrix[:2, :2]))) or 1.0  # reference px per moving px
    try:
        fit = fit_model(src[ok], own[ok], est.model, cfg.robust, est.threshold / scale, seed=cfg.seed)
    except RegistrationFailed:
        return None
    if fit.n_inliers < est.n_inliers // 2:  # the CRSs were not what held the estimate back: keep the gate
        return None
    return fit.matrix, {"model": fit.model, "inliers": fit.n_inliers, "rmse_px": round(fit.rmse * scale, 4)}


def located_by(scene: Scene) -> str | None:
    """How a scene sits on the ground: "geotransform", "gcps (N, METHOD)", "rpcs (...)" or None (pixel space)."""
    if scene.georeferenced:
        return "geotransform"
    if scene.gcps is not None:
        from sarreg.io.gcps import located

        return located(scene.gcps)
    return None


def reading(ref: Scene, mov: Scene) -> dict[str, dict]:
    """The report's record of how each raster was read (``stages.relate``): the kind, and the band registered (its
    1-based index, description and a declared scale / offset / unit), so a report says which band it is about."""
    def band(s: Scene) -> dict:
        d = {"index": s.band, "of": s.count, "description": s.description or None}
        if s.alpha is not None:
            d["alpha"] = s.alpha  # (the validity mask, not a data band)
        return d | ({"scaling": s.scaling.to_dict()} if s.scaling.scaled or s.scaling.unit else {})

    return {"kind": {"reference": ref.kind, "moving": mov.kind},
            "band": {"reference": band(ref), "moving": band(mov)}}


def mask_polygon(valid: np.ndarray, D: np.ndarray) -> BaseGeometry:
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
    m = D @ translate(-0.5, -0.5)  # mask pixel edges -> mask pixel centres -> full-scene pixels
    geom = shapely.affinity.affine_transform(geom, [m[0, 0], m[0, 1], m[1, 0], m[1, 1], m[0, 2], m[1, 2]])
    return geom.simplify(max(abs(D[0, 0]), abs(D[1, 1]))).buffer(0)


# the smallest side (px) an image to register may have: the coarse stage's smaller correlation window
# (``area.AREA_SIZE`` / 2). Measured (stop 58, 3 seeds each): chips of 12-32 px in a 300 px reference and pairs of
# 12-32 px all failed (below 40 px no correlation window fits), each with a message about matches, never the size;
# chips of 48-64 px are low_quality at best
MIN_SIDE = 32


def check_bounds(ref: Scene, mov: Scene, prior: np.ndarray) -> None:
    """InputError when a raster is smaller than MIN_SIDE px on a side; OverlapError when the raster extents do not
    intersect at all under the prior (before any pixel read)."""
    import shapely

    for s in (mov, ref):
        if min(s.width, s.height) < MIN_SIDE:
            raise InputError(f"{s.path}: too small to register ({s.width} x {s.height} px; at least {MIN_SIDE} x "
                             f"{MIN_SIDE} px are needed, one correlation window)")

    box_r = shapely.box(-0.5, -0.5, ref.width - 0.5, ref.height - 0.5)
    box_m = apply_geom(shapely.box(-0.5, -0.5, mov.width - 0.5, mov.height - 0.5), prior)
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


CROP_PAD_PX = 64  # smallest margin around a small moving raster's footprint in the coarse reference (reference px)


def coarse_window(ref: Scene, mov: Scene, prior: np.ndarray, cfg: RegisterConfig) -> Window | None:
    """The part of the reference the coarse stage reads: all of it (None), or, between rasters placed by their
    georeferencing where the moving one covers under half of the reference, its footprint under the prior with a
    margin (its size, at least ``CROP_PAD_PX`` and ``--max-shift``: a georeferencing farther off needs --max-shift
    to say so, else the search stays near). Why: decimated as a whole, a large
    reference shrinks a small moving raster to a few coarse pixels (a 100 px chip in a 1024 px scene was "no
    overlap on the coarse grid"; a 1000 px chip in a 10k² scene the same)."""
    if not (ref.geolocated and mov.geolocated) and not (ref.local and mov.local):
        return None  # (pixel space: the prior says nothing about where the moving raster lies)
    xy = apply_matrix(prior, edge_corners(0, 0, mov.width, mov.height))
    pad = max(CROP_PAD_PX, float((xy.max(0) - xy.min(0)).max()), cfg.max_shift or 0.0)
    c0, r0, c1, r1 = box_around(xy + 0.5, pad, ref.width, ref.height)
    if c1 <= c0 or r1 <= r0 or (c1 - c0) * (r1 - r0) > 0.5 * ref.width * ref.height:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def read_coarse(ref: Scene, mov: Scene, prior: np.ndarray, cfg: RegisterConfig) -> CoarseImages:
    """Reference (``coarse_window``) at longer side ``coarse_size``; moving window around it at about the same
    pixel size."""
    win = coarse_window(ref, mov, prior, cfg)
    rc0, rr0, rw, rh = (0, 0, ref.width, ref.height) if win is None else (win.col_off, win.row_off, win.width,
                                                                          win.height)
    s = min(1.0, cfg.coarse_size / max(rw, rh))
    rshape = (max(1, round(rh * s)), max(1, round(rw * s)))
    corners = apply_matrix(np.linalg.inv(prior), edge_corners(rc0, rr0, rc0 + rw, rr0 + rh))
    pad = 4.0 / max(s * local_scale(prior, (mov.width / 2, mov.height / 2)), 1e-6)
    c0, r0, c1, r1 = box_around(corners, pad, mov.width, mov.height)
    if c1 <= c0 or r1 <= r0:
        raise OverlapError(f"{mov.path}: does not overlap {ref.path}")
    k = min(1.0, s * local_scale(prior, ((c0 + c1) / 2, (r0 + r1) / 2)))
    k = min(k, 2.0 * cfg.coarse_size / max(c1 - c0, r1 - r0))
    mshape = (max(1, round((r1 - r0) * k)), max(1, round((c1 - c0) * k)))
    full = (r1 - r0, c1 - c0)
    (ru, rv), (mu, mv) = both(  # the two files decoded at the same time
        lambda: read_unit(ref, win, rshape if s < 1 else None, cfg.preprocess),
        lambda: read_unit(mov, Window(c0, r0, c1 - c0, r1 - r0), mshape if mshape != full else None, moving_pre(cfg)))
    Dr = translate(rc0, rr0) @ decimation((rh, rw), ru.shape)
    Dm = translate(c0, r0) @ decimation(full, mu.shape)
    return CoarseImages(ru, rv, Dr, s, mu, mv, Dm)


def overlap_area(ref: Scene, mov: Scene, prior: np.ndarray, cfg: RegisterConfig, ci: CoarseImages
                 ) -> tuple[BaseGeometry, float, tuple[BaseGeometry, BaseGeometry]]:
    """Overlap of the valid footprints in reference pixels; OverlapError when none or too small.

    The fraction is the overlap area over the smaller of the two whole valid footprints (the moving one from a
    low-resolution read of the whole scene: the coarse read is clipped to the reference and would make any
    overlap look large). -> (overlap, fraction, (reference footprint in reference px, moving footprint in moving
    px)): the footprints give the registered result's overlap (``registered_overlap``).
    """
    fr = mask_polygon(ci.rv, ci.Dr)
    own = full_footprint(mov, moving_pre(cfg))
    fm = apply_geom(own, prior)
    ov = fr.intersection(fm)
    if ov.is_empty or ov.area < 1:
        raise OverlapError(f"{mov.path}: no valid data in the overlap with {ref.path} (all nodata there)")
    frac = ov.area / max(min(fr.area, fm.area), 1e-9)
    if frac < cfg.min_overlap * (1 - 1e-3):  # a hair of tolerance: an overlap of exactly the minimum passes
        raise OverlapError(f"{mov.path}: overlap with {ref.path} is too small ({100 * frac:.2f}% of the smaller "
                           f"valid footprint, minimum {100 * cfg.min_overlap:g}%)")
    return ov, frac, (fr, own)


def registered_overlap(footprints: tuple[BaseGeometry, BaseGeometry], est: Estimate
                       ) -> tuple[BaseGeometry, float] | None:
    """Overlap of the registered result: the moving valid footprint (moving px) mapped through the final estimate,
    intersected with the reference's (reference px), and its area over the smaller of the two (as ``overlap_area``).
    Why: the overlap before registration (under the prior) is not where the result has data (a pixel-space pair
    offset by (50, 60) px in a 400 px scene: 1.0 before, 0.744 after). From the footprint polygons (decimated reads),
    edges densified so a poly2 / tps / homography bends them; None when the mapping folds the polygon."""
    import shapely

    ref_fp, mov_fp = footprints
    x0, y0, x1, y1 = mov_fp.bounds
    try:
        moved = shapely.transform(shapely.segmentize(mov_fp, max(1.0, max(x1 - x0, y1 - y0) / 64)), est.apply)
        ov = ref_fp.intersection(moved if moved.is_valid else moved.buffer(0))
    except shapely.errors.GEOSException:
        return None
    if not np.isfinite(ov.area):
        return None
    return ov, ov.area / max(min(ref_fp.area, moved.area), 1e-9)


def full_footprint(scene: Scene, pre: PreprocessConfig, max_side: int = 512) -> BaseGeometry:
    """Valid-data footprint of the whole scene (polygon, full-scene pixel-centre coordinates) from one decimated
    read (longer side ``max_side``)."""
    s = min(1.0, max_side / max(scene.width, scene.height))
    _, valid = read_unit(scene, None, decimated_shape(scene, s) if s < 1 else None, pre)
    return mask_polygon(valid, decimation(scene.shape, valid.shape))


def moving_pre(cfg: RegisterConfig) -> PreprocessConfig:
    """The moving scene's preprocessing: the reference's, on ``moving_band`` and with ``moving_nodata`` when set (band
    order and fill values differ by sensor and by producer)."""
    from dataclasses import replace

    pre = cfg.preprocess if cfg.moving_band is None else replace(cfg.preprocess, band=cfg.moving_band)
    return pre if cfg.moving_nodata is None else replace(pre, nodata=cfg.moving_nodata)


def open_moving(path: Source, cfg: RegisterConfig) -> Scene:
    """The moving scene opened with ``moving_pre``; a band it does not have names the option that chose it (MOVING's
    band follows --band unless --moving-band is given: a --band meant for REF said "band 2 out of range" alone)."""
    try:
        return open_scene(path, moving_pre(cfg))
    except BandError as e:
        if cfg.moving_band is not None:
            raise BandError(e.path, e.band, e.count, "--moving-band") from None
        raise BandError(e.path, e.band, e.count, hint=", which MOVING follows: give its band with --moving-band N"
                        ) from None


def read_moving_around(mov: Scene, T: np.ndarray, c0: int, r0: int, c1: int, r1: int, pad: float,
                       pre: PreprocessConfig, ds: DatasetReader | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """The moving raster read around the reference window [c0, c1) x [r0, r1) mapped through ``T^-1`` (moving
    px -> reference px ``T``), ``pad`` reference px wider on each side; moving pixels finer than the reference's
    are read decimated to about the reference pixel size. -> (unit, valid, Dm: read px -> full moving px,
    local scale of ``T``) or None when the window falls (almost) outside the moving raster."""
    corners = apply_matrix(np.linalg.inv(T), edge_corners(c0, r0, c1, r1))
    k = local_scale(T, tuple(corners.mean(0)))
    mc0, mr0, mc1, mr1 = box_around(corners, pad / max(min(k, 1.0), 1e-6), mov.width, mov.height)
    if mc1 - mc0 < 16 or mr1 - mr0 < 16:
        return None
    f = min(1.0, k * 1.25)
    mshape = (max(1, round((mr1 - mr0) * f)), max(1, round((mc1 - mc0) * f)))
    mu, mv = read_unit(mov, Window(mc0, mr0, mc1 - mc0, mr1 - mr0), mshape if f < 1 else None, pre, ds=ds)
    Dm = translate(mc0, mr0) @ decimation((mr1 - mr0, mc1 - mc0), mu.shape)
    return mu, mv, Dm, k
