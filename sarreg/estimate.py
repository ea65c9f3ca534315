"""Robust geometric model fitting on matched points (pure functions on N x 2 arrays).

``fit_model(src, dst, model, ...)`` fits a moving -> reference pixel transform with OpenCV's USAC
(MAGSAC++ by default), then re-checks the result independently of OpenCV's inlier mask: residuals are recomputed
from the matrix, inliers re-thresholded, the model refitted on them by least squares, and quality numbers computed
(RMSE, k-fold held-out RMSE, coverage of the inliers over the overlap).

Models: ``shift`` (robust translation), ``similarity``, ``affine``, ``homography``, ``poly2`` (second-order
polynomial, as GDAL's ``polynomialOrder=2``) and ``tps`` (thin-plate spline, as GDAL's ``tps=True``). For poly2 and
tps, ``Estimate.matrix`` is the best affine approximation of the inliers (what a 3 x 3 can say); the warp uses the
inlier tie points as GCPs.

Pixel convention: x = column, y = row, (0, 0) = centre of the top-left pixel; all numbers are in pixels.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from sarreg.config import MODELS, RegisterConfig  # noqa: F401 - MODELS re-exported
from sarreg.errors import RegistrationFailed

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry
    from sarreg.grid import PixelTransform

log = logging.getLogger(__name__)

ROBUST = {"magsac": cv2.USAC_MAGSAC, "ransac": cv2.RANSAC, "lmeds": cv2.LMEDS, "usac": cv2.USAC_DEFAULT,
          "accurate": cv2.USAC_ACCURATE, "prosac": cv2.USAC_PROSAC, "fast": cv2.USAC_FAST}
BASED = ("shift", "similarity")  # the models ``fit_model`` fits over a ``base``
MIN_POINTS = {"shift": 1, "similarity": 2, "affine": 3, "homography": 4, "poly2": 6, "tps": 6}
TPS_MAX_POINTS = 1000  # GDAL's TPS transformer and our check are O(N^2..N^3); thin spatially beyond this


@dataclass(frozen=True)
class Estimate:
    """A fitted moving -> reference pixel transform and its quality.

    matrix: 3 x 3 float64, ``[x_ref, y_ref, 1] ~ matrix @ [x_mov, y_mov, 1]`` (affine approximation for poly2/tps).
    inliers: N bool; residuals: N float64 pixels (|model(src) - dst|; held-out residuals for tps).
    rmse: over inliers (px); heldout_rmse: k-fold, each inlier predicted by a fit without it (px).
    coverage: fraction of grid cells over the overlap area holding at least one inlier (0..1).
    poly: 2 x 6 coefficients (poly2) of x', y' over [1, x, y, x^2, x*y, y^2], else None.
    base: the fixed 3 x 3 linear transform a shift / similarity was fitted over (``fit_model``), else None.
    """

    model: str
    matrix: np.ndarray
    inliers: np.ndarray
    residuals: np.ndarray
    rmse: float
    heldout_rmse: float
    coverage: float
    hull_ratio: float
    threshold: float
    poly: np.ndarray | None = None
    tps: Any = field(default=None, repr=False)
    base: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_matches(self) -> int:
        return int(self.inliers.size)

    @property
    def n_inliers(self) -> int:
        return int(self.inliers.sum())

    @property
    def inlier_ratio(self) -> float:
        return self.n_inliers / self.n_matches if self.n_matches else 0.0

    def apply(self, xy: np.ndarray) -> np.ndarray:
        """Moving pixel coords N x 2 -> reference pixel coords N x 2 with the full model."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        if self.model == "poly2" and self.poly is not None:
            return _poly_apply(self.poly, xy)
        if self.model == "tps" and self.tps is not None:
            return self.tps.apply(xy)
        return apply_matrix(self.matrix, xy)

    def summary(self) -> dict[str, Any]:
        """JSON-ready quality numbers (pixels); the geometry is the report's ``matrix`` and ``correction``."""
        return {
            "model": self.model, "matches": self.n_matches, "inliers": self.n_inliers,
            "inlier_ratio": round(self.inlier_ratio, 4), "rmse_px": finite_round(self.rmse),
            "heldout_rmse_px": finite_round(self.heldout_rmse), "coverage": round(float(self.coverage), 4),
            "hull_ratio": round(float(self.hull_ratio), 4), "threshold_px": float(self.threshold),
        }


def finite_round(v: float | None) -> float | None:
    """``v`` rounded to 4 decimals, or None when missing or not finite (JSON-safe quality numbers)."""
    return None if v is None or not math.isfinite(v) else round(float(v), 4)


def apply_matrix(m: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Apply a 3 x 3 projective matrix to N x 2 points (float64)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    p = np.c_[xy, np.ones(len(xy))] @ np.asarray(m, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return p[:, :2] / p[:, 2:3]


def decompose(m: np.ndarray) -> dict[str, float]:
    """Shift (px, of the origin), rotation (degrees), scale and shear of the affine part of a 3 x 3 matrix."""
    m = np.asarray(m, dtype=np.float64)
    a = m[:2, :2] / m[2, 2]
    sx = math.hypot(a[0, 0], a[1, 0])
    rot = math.degrees(math.atan2(a[1, 0], a[0, 0]))
    det = float(np.linalg.det(a))
    sy = det / sx if sx > 0 else 0.0
    shear = (a[0, 0] * a[0, 1] + a[1, 0] * a[1, 1]) / (sx * sx) if sx > 0 else 0.0
    return {"shift_x_px": round(float(m[0, 2] / m[2, 2]), 4), "shift_y_px": round(float(m[1, 2] / m[2, 2]), 4),
            "rotation_deg": round(rot, 5), "scale_x": round(sx, 6), "scale_y": round(sy, 6),
            "shear": round(float(shear), 6), "perspective": [float(m[2, 0] / m[2, 2]), float(m[2, 1] / m[2, 2])]}


# --------------------------------------------------------------------------------------------- least squares
def _lsq(src: np.ndarray, dst: np.ndarray, model: str) -> np.ndarray:
    """Non-robust least-squares 3 x 3 for shift / similarity / affine / homography (and affine for poly2/tps)."""
    n = len(src)
    if model == "shift":
        t = np.median(dst - src, axis=0) if n < 3 else np.mean(dst - src, axis=0)
        return np.array([[1, 0, t[0]], [0, 1, t[1]], [0, 0, 1]], dtype=np.float64)
    if model == "similarity":
        # x' = a x - b y + tx ; y' = b x + a y + ty
        A = np.zeros((2 * n, 4))
        A[0::2] = np.c_[src[:, 0], -src[:, 1], np.ones(n), np.zeros(n)]
        A[1::2] = np.c_[src[:, 1], src[:, 0], np.zeros(n), np.ones(n)]
        p = np.linalg.lstsq(A, dst.reshape(-1), rcond=None)[0]
        return np.array([[p[0], -p[1], p[2]], [p[1], p[0], p[3]], [0, 0, 1]], dtype=np.float64)
    if model == "homography" and n >= 4:
        h, _ = cv2.findHomography(src.astype(np.float64), dst.astype(np.float64), 0)
        if h is not None:
            return h / h[2, 2]
    A = np.c_[src, np.ones(n)]
    p = np.linalg.lstsq(A, dst, rcond=None)[0]  # 3 x 2
    return np.r_[p.T, [[0, 0, 1]]].astype(np.float64)


def _poly_terms(xy: np.ndarray, centre: np.ndarray, scale: float) -> np.ndarray:
    u = (xy[:, 0] - centre[0]) / scale
    v = (xy[:, 1] - centre[1]) / scale
    return np.c_[np.ones(len(xy)), u, v, u * u, u * v, v * v]


class _Poly2:
    """Second-order polynomial x', y' = f(x, y), normalised coordinates for conditioning."""

    def __init__(self, src: np.ndarray, dst: np.ndarray):
        self.centre = src.mean(axis=0)
        self.scale = float(max(np.ptp(src, axis=0).max(), 1.0))
        self.coef = np.linalg.lstsq(_poly_terms(src, self.centre, self.scale), dst, rcond=None)[0].T  # 2 x 6

    def apply(self, xy: np.ndarray) -> np.ndarray:
        return _poly_terms(xy, self.centre, self.scale) @ self.coef.T

    def pixel_coef(self) -> np.ndarray:
        """Coefficients over raw pixel terms [1, x, y, x^2, xy, y^2] (2 x 6)."""
        cx, cy, s = self.centre[0], self.centre[1], self.scale
        out = np.zeros((2, 6))
        for k in range(2):
            c0, cu, cv, cuu, cuv, cvv = self.coef[k]
            out[k, 3] = cuu / s ** 2
            out[k, 4] = cuv / s ** 2
            out[k, 5] = cvv / s ** 2
            out[k, 1] = cu / s - 2 * cuu * cx / s ** 2 - cuv * cy / s ** 2
            out[k, 2] = cv / s - 2 * cvv * cy / s ** 2 - cuv * cx / s ** 2
            out[k, 0] = (c0 - cu * cx / s - cv * cy / s + cuu * cx * cx / s ** 2 + cuv * cx * cy / s ** 2
                         + cvv * cy * cy / s ** 2)
        return out


def _poly_apply(coef: np.ndarray, xy: np.ndarray) -> np.ndarray:
    x, y = xy[:, 0], xy[:, 1]
    t = np.c_[np.ones(len(xy)), x, y, x * x, x * y, y * y]
    return t @ np.asarray(coef).T


class ThinPlateSpline:
    """2-D thin-plate spline interpolating dst = f(src) exactly (as GDAL's TPS transformer), numpy only."""

    def __init__(self, src: np.ndarray, dst: np.ndarray):
        self.centre = src.mean(axis=0)
        self.scale = float(max(np.ptp(src, axis=0).max(), 1.0))
        p = (src - self.centre) / self.scale
        n = len(p)
        K = _tps_kernel(p, p)
        P = np.c_[np.ones(n), p]
        L = np.zeros((n + 3, n + 3))
        L[:n, :n] = K + 1e-9 * np.eye(n)
        L[:n, n:] = P
        L[n:, :n] = P.T
        rhs = np.zeros((n + 3, 2))
        rhs[:n] = dst
        self.ctrl = p
        self.w = np.linalg.lstsq(L, rhs, rcond=None)[0]

    def apply(self, xy: np.ndarray) -> np.ndarray:
        q = (np.asarray(xy, dtype=np.float64).reshape(-1, 2) - self.centre) / self.scale
        out = np.empty((len(q), 2))
        for i in range(0, len(q), 4096):  # bounded memory for long point lists
            qq = q[i:i + 4096]
            out[i:i + 4096] = _tps_kernel(qq, self.ctrl) @ self.w[:-3] + np.c_[np.ones(len(qq)), qq] @ self.w[-3:]
        return out


def _tps_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = d2 * np.log(np.where(d2 > 0, d2, 1.0)) * 0.5
    return k


# --------------------------------------------------------------------------------------------- robust part
def _robust_shift(src: np.ndarray, dst: np.ndarray, thr: float, rng: np.random.Generator,
                  n_hyp: int = 500) -> np.ndarray:
    """Translation hypothesis with most inliers among single-match hypotheses (RANSAC with 1-point samples)."""
    d = dst - src
    cand = d if len(d) <= n_hyp else d[rng.choice(len(d), n_hyp, replace=False)]
    best, best_n = np.median(d, axis=0), -1
    for c in cand:
        n = int((np.hypot(*(d - c).T) < thr).sum())
        if n > best_n:
            best, best_n = c, n
    inl = np.hypot(*(d - best).T) < thr
    best = np.median(d[inl], axis=0)
    return np.array([[1, 0, best[0]], [0, 1, best[1]], [0, 0, 1]], dtype=np.float64)


def _robust_matrix(src: np.ndarray, dst: np.ndarray, model: str, method: int, thr: float, confidence: float,
                   max_iters: int, rng: np.random.Generator) -> np.ndarray | None:
    s, d = src.astype(np.float64), dst.astype(np.float64)
    if model == "shift":
        return _robust_shift(s, d, thr, rng)
    if model == "homography":
        h, _ = cv2.findHomography(s, d, method, thr, maxIters=max_iters, confidence=confidence)
        return None if h is None else h / h[2, 2]
    # OpenCV's partial-affine estimator knows only RANSAC / LMEDS: with USAC methods a similarity starts from a
    # USAC affine hypothesis and is refined as a similarity by our least squares.
    partial = model == "similarity" and method in (cv2.RANSAC, cv2.LMEDS)
    fn = cv2.estimateAffinePartial2D if partial else cv2.estimateAffine2D
    m, _ = fn(s, d, method=method, ransacReprojThreshold=thr, maxIters=max_iters, confidence=confidence)
    return None if m is None else np.r_[m, [[0, 0, 1]]]


def _residuals(fn, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    r = np.hypot(*(fn(src) - dst).T)
    r[~np.isfinite(r)] = np.inf
    return r


def _fit_points(src: np.ndarray, dst: np.ndarray, model: str):
    """Least-squares fit of the full model; returns a callable N x 2 -> N x 2 and the object."""
    if model == "poly2":
        p = _Poly2(src, dst)
        return p.apply, p
    if model == "tps":
        t = ThinPlateSpline(src, dst)
        return t.apply, t
    m = _lsq(src, dst, model)
    return (lambda xy: apply_matrix(m, xy)), m


def _kfold_residuals(src: np.ndarray, dst: np.ndarray, model: str, k: int, rng: np.random.Generator) -> np.ndarray:
    """Each point's residual under a least-squares fit made without it (k random folds)."""
    return fold_residuals(src, dst, model, rng.permutation(len(src)) % max(1, min(k, len(src))))


def fold_residuals(src: np.ndarray, dst: np.ndarray, model: str, folds: np.ndarray) -> np.ndarray:
    """Each point's residual (reference px) under a least-squares ``model`` fitted to the points of the other folds
    (NaN: too few of them). With ``spatial_folds`` this measures how well the model carries over to where it has no
    tie points, which is what an output warped over the whole overlap needs (random folds hide the extrapolation
    error of clustered points)."""
    n = len(src)
    out = np.full(n, np.nan)
    need = MIN_POINTS[model] + (2 if model in ("poly2", "tps") else 1)
    if n < need + 2:
        return out
    for f in np.unique(folds):
        test = folds == f
        if (~test).sum() < need:
            continue
        fn, _ = _fit_points(src[~test], dst[~test], model)
        out[test] = _residuals(fn, src[test], dst[test])
    return out


def spatial_folds(xy: np.ndarray, k: int = 5, seed: int = 0) -> np.ndarray | None:
    """k spatial blocks of the points ``xy`` (N x 2; k-means of their positions) -> N fold labels, None with
    fewer than 3 k points."""
    if len(xy) < 3 * k:
        return None
    cv2.setRNGSeed(seed)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 0.1)
    _, labels, _ = cv2.kmeans(np.asarray(xy, np.float32), k, None, crit, 3, cv2.KMEANS_PP_CENTERS)
    return labels.ravel()


def thin_spatially(xy: np.ndarray, n_max: int, scores: np.ndarray | None = None) -> np.ndarray:
    """Indices of at most ``n_max`` points spread over space (best score per grid cell first)."""
    n = len(xy)
    if n <= n_max:
        return np.arange(n)
    order = np.argsort(-scores) if scores is not None else np.arange(n)
    lo, hi = xy.min(0), xy.max(0)
    g = max(1, int(math.sqrt(n_max)))
    cell = np.floor((xy - lo) / np.maximum(hi - lo, 1e-9) * (g - 1e-9)).astype(int)
    key = cell[:, 1] * g + cell[:, 0]
    _, first = np.unique(key[order], return_index=True)
    chosen = order[first]
    if len(chosen) < n_max:
        rest = np.setdiff1d(order, chosen, assume_unique=False)
        chosen = np.r_[chosen, rest[: n_max - len(chosen)]]
    return np.sort(chosen[:n_max])


def coverage(points: np.ndarray, area: BaseGeometry | None = None, grid: int = 8) -> tuple[float, float]:
    """(fraction of grid x grid cells over ``area`` holding a point, convex-hull area / area).

    ``area``: shapely geometry in the same pixel coordinates (None = bounding box of the points).
    """
    from shapely import MultiPoint, box, prepared, points as shp_points  # local: shapely is slow to import

    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return 0.0, 0.0
    if area is None:
        area = box(*pts.min(0), *pts.max(0))
    if area.is_empty or area.area <= 0:
        return 0.0, 0.0
    x0, y0, x1, y1 = area.bounds
    cw, ch = (x1 - x0) / grid, (y1 - y0) / grid
    prep = prepared.prep(area)
    occupied = np.zeros((grid, grid), bool)
    ix = np.clip(((pts[:, 0] - x0) / max(cw, 1e-9)).astype(int), 0, grid - 1)
    iy = np.clip(((pts[:, 1] - y0) / max(ch, 1e-9)).astype(int), 0, grid - 1)
    occupied[iy, ix] = True
    avail = 0
    occ = 0
    for j in range(grid):
        for i in range(grid):
            cell = box(x0 + i * cw, y0 + j * ch, x0 + (i + 1) * cw, y0 + (j + 1) * ch)
            # a cell counts when at least half of it is inside the area
            if prep.intersects(cell) and area.intersection(cell).area >= 0.5 * cell.area:
                avail += 1
                occ += bool(occupied[j, i])
    cov = occ / avail if avail else float(occupied.mean())
    hull = MultiPoint(shp_points(pts)).convex_hull if len(pts) >= 3 else None
    hull_ratio = float(hull.intersection(area).area / area.area) if hull is not None else 0.0
    return float(cov), hull_ratio


def fit_model(src: np.ndarray, dst: np.ndarray, model: str = "affine", robust: str = "magsac",
              threshold: float = RegisterConfig.threshold, confidence: float = 0.9999, max_iters: int = 10000,
              area: BaseGeometry | None = None, scores: np.ndarray | None = None, kfold: int = 5, seed: int = 0,
              coverage_grid: int = 8, base: np.ndarray | None = None) -> Estimate:
    """Fit ``model`` robustly to matches src (moving px, N x 2) -> dst (reference px, N x 2).

    threshold: inlier distance in reference pixels. area: shapely geometry of the overlap in reference pixels
    (for coverage). base: a fixed linear 3 x 3 a shift or similarity may also be fitted over (matrix = fit @ base;
    other models ignore it): between rasters of other pixel sizes or grid orientations a shift on the ground is the
    georeferencing's linear part and a translation (``sarreg.geometry.georef_base``), while a georeference that is
    itself wrong by a turn or scale leaves a shift in pixel space; both are fitted and the one with more inliers
    (then the lower RMSE) is returned. Raises RegistrationFailed when there are too few points or no model can be
    found.
    """
    if base is not None and model in BASED:
        args = (robust, threshold, confidence, max_iters, area, scores, kfold, seed, coverage_grid)
        plain = based = None
        try:
            plain = fit_model(src, dst, model, *args)
        except RegistrationFailed as e:
            failed = e
        try:
            e = fit_model(apply_matrix(base, np.asarray(src, dtype=np.float64).reshape(-1, 2)), dst, model, *args)
            based = replace(e, matrix=e.matrix @ base, base=np.asarray(base, dtype=np.float64))
        except RegistrationFailed as e:
            failed = e
        if plain is None and based is None:
            raise failed
        if plain is None or based is None:
            return plain if plain is not None else based  # type: ignore[return-value]
        return based if (based.n_inliers, -based.rmse) > (plain.n_inliers, -plain.rmse) else plain
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    if robust not in ROBUST:
        raise ValueError(f"unknown robust method {robust!r}; choose from {', '.join(ROBUST)}")
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if len(src) != len(dst):
        raise ValueError(f"src and dst differ in length ({len(src)} vs {len(dst)})")
    ok = np.isfinite(src).all(1) & np.isfinite(dst).all(1)
    n = len(src)
    need = max(MIN_POINTS[model], 3) + 1
    if ok.sum() < need:
        article = "an" if model[:1] in "aeiou" else "a"
        raise RegistrationFailed(f"too few matches to fit {article} {model} model ({int(ok.sum())}, need {need})")
    rng = np.random.default_rng(seed)

    # 1. robust hypothesis from OpenCV (poly2/tps start from an affine with a looser threshold)
    base = {"poly2": "affine", "tps": "affine"}.get(model, model)
    base_thr = threshold * (2.0 if base != model else 1.0)
    m0 = _robust_matrix(src[ok], dst[ok], base, ROBUST[robust], base_thr, confidence, max_iters, rng)
    if m0 is None or not np.isfinite(m0).all():
        raise RegistrationFailed(f"no {base} model found among {int(ok.sum())} matches")

    # 2. our own inlier check and least-squares refinement (independent of OpenCV's mask)
    inl = ok & (_residuals(lambda xy: apply_matrix(m0, xy), src, dst) < base_thr)
    fn, obj = (lambda xy: apply_matrix(m0, xy)), m0
    for it in range(4):
        if inl.sum() < need:
            break
        idx = np.flatnonzero(inl)
        if model == "tps" and len(idx) > TPS_MAX_POINTS:
            idx = idx[thin_spatially(dst[idx], TPS_MAX_POINTS, None if scores is None else scores[idx])]
        fit_as = "poly2" if model == "tps" else model  # tps interpolates exactly: select inliers with poly2
        fn, obj = _fit_points(src[idx], dst[idx], fit_as)
        new = ok & (_residuals(fn, src, dst) < threshold)
        if np.array_equal(new, inl):
            break
        inl = new
    if inl.sum() < need:
        raise RegistrationFailed(f"too few inliers for a {model} model ({int(inl.sum())} of {n} matches, "
                                 f"threshold {threshold:g} px)")
    idx = np.flatnonzero(inl)
    residuals = _residuals(fn, src, dst)
    poly = tps = None
    if model == "tps":
        if len(idx) > TPS_MAX_POINTS:
            idx = idx[thin_spatially(dst[idx], TPS_MAX_POINTS, None if scores is None else scores[idx])]
            inl = np.zeros(n, bool)
            inl[idx] = True
        tps = ThinPlateSpline(src[idx], dst[idx])
        matrix = _lsq(src[idx], dst[idx], "affine")
    elif model == "poly2":
        poly = obj.pixel_coef()
        matrix = _lsq(src[idx], dst[idx], "affine")
    else:
        matrix = obj

    held = _kfold_residuals(src[idx], dst[idx], model, kfold, rng)
    if model == "tps":
        residuals[idx] = held  # an exact interpolator has zero residual at its nodes: report held-out ones
    rmse = float(np.sqrt(np.mean(residuals[idx] ** 2)))
    heldout = float(np.sqrt(np.nanmean(held ** 2))) if np.isfinite(held).any() else float("nan")
    cov, hull_ratio = coverage(dst[idx], area, grid=coverage_grid)
    est = Estimate(model=model, matrix=np.asarray(matrix, dtype=np.float64), inliers=inl, residuals=residuals,
                   rmse=rmse, heldout_rmse=heldout, coverage=cov, hull_ratio=hull_ratio, threshold=float(threshold),
                   poly=poly, tps=tps)
    log.debug("fit %s: %d/%d inliers, rmse %.3f px, held-out %.3f px, coverage %.2f", model, est.n_inliers, n,
              rmse, heldout, cov)
    return est


def bootstrap_spread(est: Estimate, src: np.ndarray, dst: np.ndarray, points: np.ndarray, n_boot: int = 40,
                     seed: int = 0) -> float | None:
    """Largest 1-sigma spread (reference px) of the model's prediction at ``points`` (reference px, N x 2) over
    bootstrap refits of its inliers: how far an estimate fitted to few or clustered tie points may be off away from
    them (extrapolation over the overlap). None for models without a 3 x 3 matrix (poly2, tps)."""
    if est.model not in ("shift", "similarity", "affine", "homography"):
        return None
    idx = np.flatnonzero(est.inliers)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(idx) < MIN_POINTS[est.model] + 2 or not len(pts):
        return None
    mov = apply_matrix(np.linalg.inv(est.matrix), pts)
    if est.base is not None:  # refitted over the same base as the estimate
        src, mov = apply_matrix(est.base, src), apply_matrix(est.base, mov)
    rng = np.random.default_rng(seed)
    preds = []
    for _ in range(n_boot):
        take = rng.choice(idx, len(idx), replace=True)
        if len(np.unique(take)) < MIN_POINTS[est.model] + 1:
            continue
        preds.append(apply_matrix(_lsq(src[take], dst[take], est.model), mov))
    if len(preds) < 10:
        return None
    p = np.stack(preds)  # B x N x 2
    with np.errstate(invalid="ignore"):
        sd = np.sqrt(np.nanvar(p[..., 0], axis=0) + np.nanvar(p[..., 1], axis=0))
    return float(np.nanmax(sd)) if np.isfinite(sd).any() else None


def to_pixel_transform(est: Estimate, src: np.ndarray, dst: np.ndarray) -> PixelTransform:
    """What the warp needs from an estimate (tps: its inlier tie points, moving px -> reference px)."""
    from sarreg.grid import PixelTransform

    tp = None
    if est.model == "tps":
        idx = np.flatnonzero(est.inliers)
        tp = np.c_[src[idx], dst[idx]]
    return PixelTransform(est.model, est.matrix, poly=est.poly, tiepoints=tp)
