"""Area-based matching stage: tie points by correlation (``sarreg.correlate``) on resampled image pairs.

* ``coarse_area``: on the decimated images, one global phase correlation from the prior, then a grid of windows;
* ``area_stage``: on the fine-stage tiles, the moving tile resampled (Lanczos) through the current estimate,
  windows correlated, the model refitted and the correlation repeated through it.
Windows of AREA_SIZE px, twice that when too few agree (weak correlation).
"""
from __future__ import annotations

import math

from typing import TYPE_CHECKING, Any, Iterator

import cv2
import numpy as np

from sarreg.config import RegisterConfig
from sarreg.correlate import window_count
from sarreg.errors import RegistrationFailed
from sarreg.estimate import Estimate, apply_matrix, coverage, decompose, finite_round, fit_model
from sarreg.features import Features
from sarreg.geometry import georef_base, matrix_distance, resample, resample_valid, rotation, translate
from sarreg.io.raster import Scene
from sarreg.relate import CoarseImages
from sarreg.stage import StageResult, TilePair

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from sarreg.dense import DenseDescriber


AREA_SIZE = 64  # correlation window (px) at full resolution
AREA_SPACING = 32  # grid spacing of window centres (px)
AREA_MIN_WINDOWS = 8  # consistent windows needed for an area-based estimate
AREA_MIN_RATIO = 0.3  # ... and their fraction among the windows that correlated
SMALL_OVERLAP = 3  # an overlap under this many windows across: their half-window margins leave much of it unreached
# windows of a chip: an overlap where fewer AREA_SIZE windows fit than CHIP_WINDOWS (--min-inliers' default; under
# ~112 px across) gets windows of CHIP_SIZE px, at AREA_SIZE's spacing, first: with AREA_SIZE windows its estimate could
# never pass the default inlier gate (generated 96 px georeferenced chips: 0 -> 10 of 10 ok, stop 64)
CHIP_SIZE = AREA_SIZE // 2
CHIP_WINDOWS = 12
AREA_RADIUS = 8.0  # search radius (px) once a keypoint or correlation estimate exists: wide enough that a wrong
# model (an affine on a perspective pair) shows as inconsistent windows rather than as missing ones


def _area_points(ru: np.ndarray, rv: np.ndarray, wu: np.ndarray, wv: np.ndarray, to_ref: np.ndarray,
                 to_mov: np.ndarray, size: int, spacing: int, radius: float, dense: DenseDescriber | None = None,
                 alone: list[np.ndarray] | None = None, tried: list[np.ndarray] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Tie points from correlating a reference image with the moving image resampled onto its grid.

    to_ref / to_mov: image px -> full reference px / full moving px. Returns (src moving px, dst reference px,
    peak heights, number of windows tried); only windows whose correlation peak passed the quality checks, or with
    ``dense`` (AREA_SIZE windows searched within AREA_RADIUS) those the network's dense descriptors verify
    (``sarreg.dense.verified``); ``alone`` gets a bool per returned point: its offset is the descriptors' alone.
    """
    from sarreg.correlate import correlate, window_grid

    c = window_grid(rv & wv, size, spacing)
    o = correlate(ru, wu, rv, wv, c, size, radius)
    if checked(dense, size, radius) and len(c):
        from sarreg.dense import descriptor_offsets, verified

        o, by_desc = verified(o, descriptor_offsets(dense, ru, rv, wu, wv, c, size, radius))
    else:
        o, by_desc = o.subset(o.ok), np.zeros(int(o.ok.sum()), bool)
    if alone is not None:
        alone.append(by_desc)
    if tried is not None:
        tried.append(apply_matrix(to_ref, c.astype(np.float64)))
    return apply_matrix(to_mov, o.xy), apply_matrix(to_ref, o.xy + o.d), o.peak, len(c)


def checked(dense: DenseDescriber | None, size: int, radius: float) -> bool:
    """Whether windows of ``size`` px searched within ``radius`` px are checked by the dense descriptors: the
    refinement's AREA_SIZE windows once an estimate exists (the descriptors' search is measured there,
    ``benchmarks/window_accuracy.py``), not the coarse grid's, second-motion or repeat windows."""
    return dense is not None and size == AREA_SIZE and radius <= AREA_RADIUS + 0.5


def _area_result(src: np.ndarray, dst: np.ndarray, q: np.ndarray, ref: Scene, mov: Scene,
                 info: dict[str, Any], alone: np.ndarray | None = None) -> StageResult:
    n = len(src)
    return StageResult(src, dst, q.astype(np.float32), Features.empty((ref.width, ref.height)),
                       Features.empty((mov.width, mov.height)), np.zeros(n, np.int64), np.zeros(n, np.int64), info,
                       alone=alone)


def _fit_area(src: np.ndarray, dst: np.ndarray, q: np.ndarray, model: str, thr: float, cfg: RegisterConfig,
              area: BaseGeometry, coverage_grid: int = 8, base: np.ndarray | None = None) -> Estimate:
    """Robust fit to correlation tie points (a shift / similarity over ``base``, ``fit_model``); RegistrationFailed
    unless enough of them agree."""
    est = fit_model(src, dst, model, cfg.robust, thr, area=area, scores=q, seed=cfg.seed, coverage_grid=coverage_grid,
                    base=base)
    if est.n_inliers < AREA_MIN_WINDOWS or est.n_inliers < AREA_MIN_RATIO * len(src):
        raise RegistrationFailed(f"{est.n_inliers} consistent of {len(src)} correlated windows")
    return est


def global_start(ci: CoarseImages, prior: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Moving px -> reference px: the prior corrected by one phase correlation of the coarse images (a shift).

    A start for the refinement only (its windows decide whether it holds). -> (matrix, peak, peak ratio)."""
    from sarreg.correlate import global_offset

    G = np.linalg.inv(ci.Dr) @ prior
    rshape = ci.ru.shape
    wv = resample_valid(ci.mv, G @ ci.Dm, rshape)
    d0, peak, ratio = global_offset(ci.ru, resample(ci.mu, G @ ci.Dm, rshape), ci.rv, wv)
    return ci.Dr @ translate(*d0) @ G, float(peak), float(ratio)


def strong_area(est: Estimate, res: StageResult) -> bool:
    """A correlation estimate most of whose windows agree, over much of the overlap: enough on its own."""
    n = res.info.get("windows", 0)
    return est.n_inliers >= max(2 * AREA_MIN_WINDOWS, 0.5 * n) and est.coverage >= 0.3


# held-out RMSE (px) below which no keypoint fit can be preferred (see ``settles``), by feature type: R2D2
# keypoints sit at integer pixels, so their held-out error cannot fall below ~0.58 px (uniform rounding in x and y
# of both images); SIFT's are sub-pixel
SETTLED_HELDOUT_PX = {"r2d2": 0.6, "sift": 0.4}


def settles(est: Estimate | None, res: StageResult, features: str = "r2d2") -> bool:
    """A fine correlation estimate that keypoints could not improve, so the network need not run.

    ``choose_estimate`` keeps the correlation over a keypoint fit unless it covers less than half the overlap or
    predicts held-out points clearly worse (> 1.25 x + 0.05 px than the keypoints); an estimate that covers half
    the overlap, agrees with most correlated windows and predicts held-out windows within
    ``SETTLED_HELDOUT_PX[features]`` (under what keypoints can reach) is final."""
    if est is None or est.n_inliers < 2 * AREA_MIN_WINDOWS:
        return False
    held = est.heldout_rmse if math.isfinite(est.heldout_rmse) else math.inf
    return est.coverage >= 0.5 and est.n_inliers >= 0.5 * res.info.get("matches", len(res.src)) \
        and held <= SETTLED_HELDOUT_PX.get(features, 0.4)


def check_overlap(ref: Scene, mov: Scene, wv: np.ndarray, rv: np.ndarray) -> None:
    """RegistrationFailed when MOVING placed on the coarse reference (validity ``wv``) covers under 1 % of its valid
    pixels ``rv``; between rasters not both georeferenced the line says why (a 200 px chip of a 2048 px image was
    "no overlap on the coarse grid": MOVING is placed at the reference's origin, never searched for inside it)."""
    frac = float((wv & rv).mean())
    if frac >= 0.01:
        return
    msg = f"no overlap on the coarse grid (MOVING covers {100 * frac:.2f} % of the reference where it is placed)"
    if not (ref.geolocated and mov.geolocated):
        msg += ("; without georeferencing a smaller image is placed at the reference's origin, not searched for "
                "inside it: crop the reference to the area, or georeference both")
    raise RegistrationFailed(msg)


def coarse_area(ref: Scene, mov: Scene, prior: np.ndarray, ci: CoarseImages, cfg: RegisterConfig,
                area: BaseGeometry) -> tuple[Estimate, StageResult]:
    """Coarse estimate by correlation on the decimated images: one global phase correlation (shift) from the
    prior, then a grid of windows fitted robustly. Raises RegistrationFailed when the windows do not agree."""
    from sarreg.correlate import global_offset

    ru, rv, Dr, s, mu, mv, Dm = ci.ru, ci.rv, ci.Dr, ci.s, ci.mu, ci.mv, ci.Dm
    rshape = ru.shape
    G = np.linalg.inv(Dr) @ prior  # moving full px -> coarse reference grid
    wv = resample_valid(mv, G @ Dm, rshape)
    check_overlap(ref, mov, wv, rv)
    d0, peak, ratio = global_offset(ru, resample(mu, G @ Dm, rshape), rv, wv)
    G1 = translate(*d0) @ G
    wu, wv = resample(mu, G1 @ Dm, rshape), resample_valid(mv, G1 @ Dm, rshape)
    model = {"shift": "shift", "similarity": "similarity"}.get(cfg.model, "affine")
    base = georef_base(prior, ref.geolocated and mov.geolocated)
    thr = cfg.coarse_threshold(s)
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
            est = _fit_area(src, dst, q, model, thr, cfg, area, base=base)
            break
        except RegistrationFailed as e:
            errors.append(f"{size} px windows: {e}")
    if est is None:
        raise RegistrationFailed("; ".join(errors) or "images too small for correlation windows")
    res = _area_result(src, dst, q, ref, mov, info)
    res.info.update({"inliers": est.n_inliers, "rmse_px": est.rmse, "threshold_px": thr,
                     "rotation_deg": decompose(np.linalg.inv(prior) @ est.matrix)["rotation_deg"]})
    return est, res


FM_MIN_TURN = 1.5  # deg: a Fourier-Mellin start closer than this (and FM_MIN_SCALE) to the prior adds nothing
FM_MIN_SCALE = 0.02  # |ln scale|


def turned_area(ref: Scene, mov: Scene, prior: np.ndarray, ci: CoarseImages, cfg: RegisterConfig,
                area: BaseGeometry) -> tuple[Estimate, StageResult]:
    """``coarse_area`` started from the prior turned and scaled by a Fourier-Mellin estimate (``rotation_scale``).

    Why: correlation from the prior measures shifts only; a moving image turned or scaled against the reference
    (pixel-space pairs, a wrong georeference) defeats it, and where keypoints also fail (speckle, strong change)
    nothing else starts the refinement. Each candidate rotation (and its + 180 deg twin) is tried; the windows
    decide, as for the prior itself. Raises RegistrationFailed when no candidate's windows agree."""
    from sarreg.correlate import rotation_scale

    G = np.linalg.inv(ci.Dr) @ prior
    rshape = ci.ru.shape
    wv = resample_valid(ci.mv, G @ ci.Dm, rshape)
    check_overlap(ref, mov, wv, ci.rv)
    cx, cy = rshape[1] / 2 - 0.5, rshape[0] / 2 - 0.5
    best: tuple[Estimate, StageResult] | None = None
    errors = []
    for ang, scale, peak in rotation_scale(ci.ru, resample(ci.mu, G @ ci.Dm, rshape), ci.rv, wv):
        for turn in (ang, ang + 180.0):
            if abs(turn) < FM_MIN_TURN and abs(math.log(scale)) < FM_MIN_SCALE:
                continue
            S = rotation(turn, cx, cy) @ translate(cx, cy) @ np.diag([scale, scale, 1.0]) @ translate(-cx, -cy)
            try:
                est, res = coarse_area(ref, mov, ci.Dr @ S @ G, ci, cfg, area)
            except RegistrationFailed as e:
                errors.append(f"{turn:+.0f} deg x {scale:.2f}: {e}")
                continue
            res.info.update({"start": "fourier-mellin", "start_rotation_deg": round(turn, 1),
                             "start_scale": round(scale, 3), "start_peak": round(peak, 4),
                             "rotation_deg": decompose(np.linalg.inv(prior) @ est.matrix)["rotation_deg"]})
            if best is None or est.n_inliers > best[0].n_inliers:
                best = (est, res)
    if best is None:
        raise RegistrationFailed("turned starts: " + ("; ".join(errors) or "none away from the prior"))
    return best


def _area_spacing(n_tiles: int, size: int) -> int:
    """Window spacing: a small scene in one tile gets denser windows so that enough of them vote."""
    spacing = AREA_SPACING if n_tiles > 1 else AREA_SPACING // 2
    return max(spacing, size // 4) if size > AREA_SIZE else spacing


def _resampled(tiles: list[TilePair], T: np.ndarray, size: int
               ) -> Iterator[tuple[TilePair, np.ndarray, np.ndarray]]:
    """Each tile big enough for ``size`` px windows with its moving read resampled through ``T`` (Lanczos) onto the
    reference tile: (tile, image, validity). A tile as tall (or wide) as a window holds a row of them: a strip of
    64-71 px had none (the tile had to be 8 px larger), so its right keypoint fit (0.12 px off on 1100 x 70 px) was
    low_quality, unchecked."""
    for t in tiles:
        shape = t.ru.shape
        if min(shape) < size:
            continue
        Ft = translate(-t.c0, -t.r0) @ T @ t.Dm
        yield t, resample(t.mu, Ft, shape, flags=cv2.INTER_LANCZOS4), resample_valid(t.mv, Ft, shape)


def _area_pass(tiles: list[TilePair], T: np.ndarray, size: int, radius: float, spacing: int | None = None,
               dense: DenseDescriber | None = None, alone: list[np.ndarray] | None = None,
               tried: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Correlation tie points of all tiles, the moving tiles resampled through ``T`` (Lanczos); windows every
    ``spacing`` px (default ``_area_spacing``); ``dense`` / ``alone``: checked by the descriptors; ``tried``: the
    windows' centres (``_area_points``)."""
    srcs, dsts, qs, n = [np.zeros((0, 2))], [np.zeros((0, 2))], [np.zeros(0)], 0
    inv = np.linalg.inv(T)
    spacing = spacing or _area_spacing(len(tiles), size)
    for t, wu, wv in _resampled(tiles, T, size):
        off = translate(t.c0, t.r0)
        src, dst, q, k = _area_points(t.ru, t.rv, wu, wv, off, inv @ off, size, spacing, radius, dense, alone, tried)
        srcs.append(src), dsts.append(dst), qs.append(q)
        n += k
    return np.concatenate(srcs), np.concatenate(dsts), np.concatenate(qs), n


def area_stage(ref: Scene, mov: Scene, tiles: list[TilePair], T: np.ndarray, radius: float, model: str,
               cfg: RegisterConfig, area: BaseGeometry, coverage_grid: int = 8, iterations: int = 2,
               dense: DenseDescriber | None = None, base: np.ndarray | None = None
               ) -> tuple[Estimate | None, StageResult]:
    """Sub-pixel tie points by correlation on the fine-stage tiles, the moving tile resampled through the current
    transform ``T``; the model refitted and the correlation repeated through it (``iterations`` passes). Windows of
    AREA_SIZE px; twice that when too few of them agree (weak correlation: strong speckle or temporal change).
    ``dense``: the AREA_SIZE windows verified by the network's dense descriptors (``sarreg.dense``). ``base``: the
    georeferencing's linear part a shift or similarity ``model`` is fitted over (``fit_model``).

    Returns (estimate or None when the windows do not agree, the last successful pass's tie points)."""
    est = None
    res = best = _area_result(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), ref, mov,
                              {"method": "correlation", "windows": 0, "matches": 0})
    if not tiles:
        res.info["error"] = "no usable tile"
        return None, res
    x0, y0, x1, y1 = area.bounds
    sizes = [AREA_SIZE, 2 * AREA_SIZE]
    if math.prod(window_count(x1 - x0, y1 - y0, AREA_SIZE, _area_spacing(len(tiles), AREA_SIZE))) < CHIP_WINDOWS:
        sizes = [CHIP_SIZE, AREA_SIZE]
    first = None  # a smaller size's pass that gave no estimate (the report and the too-small gate say so)
    for it in range(iterations):
        e = None
        for size in sizes:
            by_desc: list[np.ndarray] = []
            tried: list[np.ndarray] = [np.zeros((0, 2))]
            src, dst, q, n = _area_pass(tiles, T, size, radius, dense=dense, alone=by_desc, tried=tried)
            spacing = _area_spacing(len(tiles), size)
            res = _area_result(src, dst, q, ref, mov, {"method": "correlation", "windows": n, "matches": len(src),
                                                       "window_px": size, "spacing_px": spacing,
                                                       "search_radius_px": radius, "passes": it + 1,
                                                       "descriptor_check": checked(dense, size, radius)},
                               np.concatenate(by_desc) if by_desc else None)
            if first is not None and first["window_px"] < size:
                res.info["first_windows"] = first
            if min(x1 - x0, y1 - y0) < SMALL_OVERLAP * size:
                # the coverage all windows tried would have: windows keep half their size from the overlap's edge,
                # which leaves the outer cells of a small chip's coverage grid empty (``choice.choose_estimate``)
                res.info["windows_reach"] = round(coverage(np.concatenate(tried), area, coverage_grid)[0], 4)
            if res.alone is not None and res.alone.any():  # windows whose offset is the descriptors' alone
                res.info["descriptors_alone"] = int(res.alone.sum())
            try:
                e = _fit_area(src, dst, q, model, cfg.threshold, cfg, area, coverage_grid, base)
                sizes = [size]  # the next pass keeps the window size that worked
                break
            except RegistrationFailed as err:
                res.info["error"] = str(err)
                first = first or {"window_px": size, "windows": n, "error": str(err)}
        if e is None:
            break
        est, best, T, radius = e, res, e.matrix, min(radius, AREA_RADIUS)
        res.info.update({"inliers": e.n_inliers, "rmse_px": finite_round(e.rmse),
                         "heldout_rmse_px": finite_round(e.heldout_rmse)})
    if est is None:
        return None, res
    return est, best


def refine_from_starts(ref: Scene, mov: Scene, tiles: list[TilePair], starts: list[tuple[np.ndarray, float, str]],
                       model: str, cfg: RegisterConfig, area: BaseGeometry, coverage_grid: int = 8,
                       done: tuple[np.ndarray, tuple[Estimate | None, StageResult]] | None = None,
                       dense: DenseDescriber | None = None, base: np.ndarray | None = None
                       ) -> tuple[Estimate | None, StageResult | None]:
    """``area_stage`` from each distinct start (matrix, search radius, name: keypoint, coarse, georeferencing
    estimates...), keeping the result most windows agree with. Why several: a weak keypoint fit can be a few px off
    where the correlation from the coarse estimate or the georeferencing still finds the truth. Starts within 1 px
    of one tried are skipped; the search stops once most (70 %) windows agree. ``done``: (start matrix, result) of a
    run already made with ``model`` (not repeated). The kept result's ``info["start"]`` names its start; starts are
    compared by their ``support`` (inliers not measured by the descriptors alone; ``info["starts"]``)."""
    est = res = None
    tried: list[np.ndarray] = []
    results: list[tuple[str, Estimate | None]] = []
    for T0, radius, name in starts:
        if any(matrix_distance(T0, T1, area) < 1.0 for T1 in tried):
            continue
        tried.append(T0)
        if done is not None and T0 is done[0]:
            e, r = done[1]
        else:
            e, r = area_stage(ref, mov, tiles, T0, radius, model, cfg, area, coverage_grid, dense=dense, base=base)
        r.info["start"] = name
        results.append((name, e, support(e, r)))
        if res is None or (e is not None and (est is None or results[-1][2] > support(est, res))):
            est, res = e, r
        if e is not None and results[-1][2] >= 0.7 * r.info["windows"]:
            break
    if res is not None and est is not None:  # each start's answer: windows agreeing, distance from the kept one
        res.info["starts"] = {name: {"inliers": n, "distance_px": None if e is None else finite_round(
                                     matrix_distance(e.matrix, est.matrix, area))}
                              for name, e, n in results}
    return est, res


def repass(ref: Scene, mov: Scene, tiles: list[TilePair], est: Estimate, res: StageResult, passed_as: str,
           cfg: RegisterConfig, area: BaseGeometry, coverage_grid: int = 8, dense: DenseDescriber | None = None
           ) -> tuple[Estimate, StageResult]:
    """One more correlation pass through ``est`` when the model chosen after the refinement is not the one its
    passes resampled the moving tiles through (``passed_as``; e.g. affine passes, then a homography chosen): windows
    resampled through the model that will warp the output agree more closely. Kept when that pass fits at least
    as many inliers; else (est, res) unchanged. ``dense`` is not used when the refinement had
    dropped the descriptors' stand-ins (``descriptors_unconfirmed``)."""
    if est.model == passed_as:
        return est, res
    dense = None if res.info.get("descriptors_unconfirmed") else dense
    e, r = area_stage(ref, mov, tiles, est.matrix, AREA_RADIUS, est.model, cfg, area, coverage_grid, 1, dense,
                      est.base)
    if e is None or e.n_inliers < est.n_inliers:
        return est, res
    r.info.update({k: res.info[k] for k in ("start", "starts", "descriptors_unconfirmed") if k in res.info})
    r.info["repassed_as"] = est.model
    return e, r


def support(e: Estimate | None, r: StageResult) -> int:
    """Inliers of an area estimate not measured by the dense descriptors alone: what starts are compared by.

    Why: windows the descriptors stood in for are weaker evidence; from a wrong start (the global phase correlation
    of a pair with unlike radiometry) they can agree with each other on an answer tens of px off and outnumber the
    right start's windows (stop 39)."""
    return 0 if e is None else int(e.n_inliers) - r.alone_inliers(e.inliers)


SECOND_SIZE = 2 * AREA_SIZE  # windows of ``second_motion``: offsets up to a quarter of this are searched
SECOND_APART = 2.0  # x --threshold: a window whose peak lies this far from the estimate disagrees with it


def second_motion(tiles: list[TilePair], est: Estimate, cfg: RegisterConfig, area: BaseGeometry,
                  size: int = SECOND_SIZE, base: np.ndarray | None = None
                  ) -> tuple[dict[str, Any] | None, BaseGeometry | None]:
    """Whether part of the scene moved on its own (a glacier, a landslide, a mosaic of two dates): the windows
    (every ``size / 2`` px) that disagree with ``est``, searched up to a quarter of ``size`` px around it, fitted
    with a shift of their own (over ``base``, the georeferencing's linear part). Temporal change gives disagreeing
    windows too, but their peaks are scattered; a second motion's agree.

    -> ({"windows": textured windows, "agree": windows agreeing with ``est``, "second": windows agreeing on one
    other shift, "distance_px": that shift's distance from ``est`` over the overlap, "bounds_px": the reference
    px bounds of those windows}, their outline in reference px: the windows widened by the distance, an area to
    ``--exclude``); (None, None) without windows."""
    import shapely

    src, dst, q, _ = _area_pass(tiles, est.matrix, size, size / 4, size // 2)  # windows overlapping by half
    if not len(src):
        return None, None
    off = np.hypot(*(est.apply(src) - dst).T) > SECOND_APART * cfg.threshold
    out = {"windows": int(len(src)), "agree": int(len(src) - off.sum()), "second": 0, "distance_px": None}
    if off.sum() < AREA_MIN_WINDOWS:
        return out, None
    try:
        e2 = fit_model(src[off], dst[off], "shift", cfg.robust, cfg.threshold, area=area, scores=q[off], seed=cfg.seed,
                       base=base)
    except RegistrationFailed:
        return out, None
    d = matrix_distance(e2.matrix, est.matrix, area)
    out.update(second=int(e2.n_inliers), distance_px=finite_round(d))
    c = dst[off][e2.inliers]
    half = size / 2 + (d if math.isfinite(d) else 0.0)
    outline = shapely.union_all(shapely.box(c[:, 0] - half, c[:, 1] - half, c[:, 0] + half, c[:, 1] + half))
    out["bounds_px"] = [round(float(v), 1) for v in outline.bounds]
    return out, outline


# windows of ``repeat_match``: the largest that fits a tile (offsets up to a quarter of it are searched, so 256 px
# windows reach the neighbouring cell of fields up to about 45 px across, diagonally 64 px away)
REPEAT_SIZES = (4 * AREA_SIZE, 2 * AREA_SIZE)


def repeat_match(tiles: list[TilePair], T: np.ndarray, min_px: float, sizes: tuple[int, ...] = REPEAT_SIZES
                 ) -> tuple[float, float | None, int] | None:
    """How well the pair also matches one step away from ``T`` (moving px -> reference px): (the highest local
    maximum of the windows' summed correlation surface farther than ``min_px`` from offset 0 over the peak at 0,
    that maximum's distance from offset 0 in px or None when no other peak is in reach, the window size). Near 1 or
    above when the moving image fits a repeating reference equally well a period away (a lattice); low when the
    content inside the pattern differs from cell to cell (fields of different crops), which pins the answer down.
    Windows of the first of ``sizes`` that fits a tile; None when none fits or the windows do not match at ``T``."""
    from sarreg.correlate import mean_surface, peak_sigma, window_grid

    for size in sizes:
        total, n = np.zeros((size, size)), 0
        spacing = _area_spacing(len(tiles), size)
        for t, wu, wv in _resampled(tiles, T, size):
            c = window_grid(t.rv & wv, size, spacing)
            if len(c):
                s, k = mean_surface(t.ru, wu, t.rv, wv, c, size, peak_sigma(t.ru, wu, t.rv, wv))
                total, n = total + s, n + k
        if n:
            break
    else:
        return None
    yy, xx = np.mgrid[:size, :size] - size // 2
    r = np.hypot(xx, yy)
    t32 = total.astype(np.float32)
    peaks = t32 >= cv2.dilate(t32, np.ones((5, 5), np.uint8))  # local maxima: the main peak's flank is no repeat
    far = np.where(peaks & (r > min_px) & (r <= size / 4), total, -np.inf)
    k, peak = int(far.argmax()), float(total[r <= 2.0].max())
    if not peak > 0:
        return None  # the windows do not match at T itself: no ratio to speak of
    if not far.flat[k] > 0:
        return 0.0, None, size  # no other peak in reach
    return float(far.flat[k]) / peak, float(r.flat[k]), size
