"""Local offsets field (``--model local``): correlation on a regular grid over the whole overlap.

After a global model ``T`` (moving px -> reference px) is fitted, what is left are local deviations (terrain-induced
offsets in ground-range products, residual orbit errors): not affine. The reference is walked in blocks (rasterio
windows, bounded memory); for each block the moving raster is read around it, resampled through ``T`` (Lanczos)
and correlated at the grid nodes that fall in the block (``sarreg.correlate``). The raw offsets are filtered
(neighbour consistency: a node far from the median of its neighbours is an outlier), then smoothed and gap-filled
by normalised Gaussian convolution over the valid nodes; nodes far from any measurement stay unknown (NaN).

Field convention: at reference pixel ``p`` (a grid node), the moving content that ``T`` puts at ``p`` truly lies at
``p + d(p)`` (reference px, x = column, y = row, (0, 0) = centre of the top-left pixel).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from rasterio.windows import Window

from sarreg.config import MIN_GRID_SPACING, PreprocessConfig, RegisterConfig
from sarreg.correlate import correlate
from sarreg.estimate import TPS_MAX_POINTS, Estimate, apply_matrix, thin_spatially
from sarreg.geometry import resample, resample_valid, translate
from sarreg.io.raster import Scene, open_dataset, read_unit
from sarreg.relate import moving_pre, read_moving_around
from sarreg.grid import PixelTransform

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

log = logging.getLogger(__name__)

WINDOW = 64  # correlation window (px)
RADIUS = 8.0  # largest local deviation searched (px)
BLOCK = 1024  # reference block read at once (px)
OUTLIER_PX = 1.0  # a node farther than this from the median of its neighbours is dropped


@dataclass
class OffsetsField:
    """Offsets on a regular grid of reference pixels.

    x0, y0: reference px of node (0, 0); spacing: px between nodes; raw: ny x nx x 2 measured offsets (NaN where the
    window did not correlate or was an outlier); smooth: ny x nx x 2 filtered field (NaN where unknown);
    quality: ny x nx correlation peak heights (0 where not measured).
    """

    x0: float
    y0: float
    spacing: int
    raw: np.ndarray
    smooth: np.ndarray
    quality: np.ndarray

    @property
    def nodes(self) -> np.ndarray:
        """ny x nx x 2 reference px of the nodes."""
        ny, nx = self.quality.shape
        return np.stack(np.meshgrid(self.x0 + self.spacing * np.arange(nx), self.y0 + self.spacing * np.arange(ny)),
                        -1).astype(np.float64)

    def tiepoints(self, T: np.ndarray) -> np.ndarray:
        """N x 4 (x_mov, y_mov, x_ref, y_ref) of the known nodes: moving px ``T^-1(p)`` lies at ``p + d(p)``."""
        p = self.nodes.reshape(-1, 2)
        d = self.smooth.reshape(-1, 2)
        ok = np.isfinite(d).all(1)
        mov = apply_matrix(np.linalg.inv(T), p[ok])
        return np.c_[mov, p[ok] + d[ok]]

    def stats(self) -> dict[str, Any]:
        """JSON-ready statistics of the smoothed deviation from the global model (px) and of the raw residuals."""
        d = self.smooth.reshape(-1, 2)
        ok = np.isfinite(d).all(1)
        mag = np.hypot(*d[ok].T) if ok.any() else np.zeros(0)
        raw = self.raw.reshape(-1, 2)
        both = ok & np.isfinite(raw).all(1)
        res = np.hypot(*(raw[both] - d[both]).T) if both.any() else np.zeros(0)
        r = (lambda v: None if not np.isfinite(v) else round(float(v), 4))
        return {
            "nodes": int(d.shape[0]), "measured": int(np.isfinite(raw).all(1).sum()), "known": int(ok.sum()),
            "spacing_px": int(self.spacing),
            "median_px": r(np.median(mag)) if mag.size else None,
            "mad_px": r(np.median(np.abs(mag - np.median(mag)))) if mag.size else None,
            "max_px": r(mag.max()) if mag.size else None,
            "raw_vs_smooth_rmse_px": r(math.sqrt(float(np.mean(res ** 2)))) if res.size else None,
        }


def estimate_field(ref: Scene, mov: Scene, T: np.ndarray, area: BaseGeometry, spacing: int, ref_pre: PreprocessConfig,
                   mov_pre: PreprocessConfig, radius: float = RADIUS, size: int = WINDOW) -> OffsetsField:
    """Correlate ``mov`` (resampled through ``T``) with ``ref`` at grid nodes every ``spacing`` px over ``area``'s
    bounding box; returns the raw and filtered field."""

    x0, y0, x1, y1 = (max(0.0, area.bounds[0]), max(0.0, area.bounds[1]),
                      min(ref.width - 1.0, area.bounds[2]), min(ref.height - 1.0, area.bounds[3]))
    nx = max(1, int((x1 - x0) // spacing) + 1)
    ny = max(1, int((y1 - y0) // spacing) + 1)
    gx0 = x0 + ((x1 - x0) - (nx - 1) * spacing) / 2
    gy0 = y0 + ((y1 - y0) - (ny - 1) * spacing) / 2
    raw = np.full((ny, nx, 2), np.nan)
    quality = np.zeros((ny, nx))
    half = size // 2
    margin = half + 2
    block = max(BLOCK, 4 * size)
    with open_dataset(ref.path) as dr, open_dataset(mov.path) as dm:
        for by in range(0, ny, max(1, block // spacing)):
            for bx in range(0, nx, max(1, block // spacing)):
                jx = np.arange(bx, min(nx, bx + max(1, block // spacing)))
                jy = np.arange(by, min(ny, by + max(1, block // spacing)))
                cx = np.rint(gx0 + spacing * jx).astype(int)
                cy = np.rint(gy0 + spacing * jy).astype(int)
                c0 = int(max(0, cx.min() - margin))
                r0 = int(max(0, cy.min() - margin))
                c1 = int(min(ref.width, cx.max() + margin + 1))
                r1 = int(min(ref.height, cy.max() + margin + 1))
                if c1 - c0 < size or r1 - r0 < size:
                    continue
                ru, rv = read_unit(ref, Window(c0, r0, c1 - c0, r1 - r0), None, ref_pre, ds=dr)
                if not rv.any():
                    continue
                got = read_moving_around(mov, T, c0, r0, c1, r1, radius + 4, mov_pre, ds=dm)
                if got is None:
                    continue
                mu, mv, Dm, _ = got
                Ft = translate(-c0, -r0) @ T @ Dm
                wu = resample(mu, Ft, ru.shape, flags=cv2.INTER_LANCZOS4)
                wv = resample_valid(mv, Ft, ru.shape)
                gxx, gyy = np.meshgrid(cx - c0, cy - r0)
                jxx, jyy = np.meshgrid(jx, jy)
                cen = np.c_[gxx.ravel(), gyy.ravel()]
                idx = np.c_[jxx.ravel(), jyy.ravel()]
                inside = ((cen[:, 0] >= half) & (cen[:, 0] + size - half <= ru.shape[1]) & (cen[:, 1] >= half)
                          & (cen[:, 1] + size - half <= ru.shape[0]))
                cen, idx = cen[inside], idx[inside]
                # windows at least 90 % valid in both images
                both = (rv & wv).astype(np.float32)
                frac = cv2.boxFilter(both, -1, (size, size), normalize=True, borderType=cv2.BORDER_CONSTANT)
                keep = frac[np.clip(cen[:, 1], 0, ru.shape[0] - 1), np.clip(cen[:, 0], 0, ru.shape[1] - 1)] >= 0.9
                cen, idx = cen[keep], idx[keep]
                if not len(cen):
                    continue
                o = correlate(ru, wu, rv, wv, cen, size, radius)
                ok = o.ok
                raw[idx[ok, 1], idx[ok, 0]] = o.d[ok]
                quality[idx[:, 1], idx[:, 0]] = o.peak
    raw = _drop_outliers(raw)
    smooth = _smooth(raw)
    return OffsetsField(gx0, gy0, spacing, raw, smooth, quality)


def _nanmedian_neighbours(a: np.ndarray) -> np.ndarray:
    """Median of the 8 neighbours of every node (NaN-aware), ny x nx."""
    ny, nx = a.shape
    p = np.pad(a, 1, constant_values=np.nan)
    stack = [p[1 + dy:1 + dy + ny, 1 + dx:1 + dx + nx] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmedian(np.stack(stack), axis=0)


def _drop_outliers(raw: np.ndarray) -> np.ndarray:
    """NaN where a node disagrees with the median of its neighbours by more than OUTLIER_PX, or has < 2 neighbours."""
    out = raw.copy()
    mx, my = _nanmedian_neighbours(raw[..., 0]), _nanmedian_neighbours(raw[..., 1])
    bad = np.hypot(raw[..., 0] - mx, raw[..., 1] - my) > OUTLIER_PX
    nb = cv2.boxFilter(np.isfinite(raw[..., 0]).astype(np.float32), -1, (3, 3), normalize=False,
                       borderType=cv2.BORDER_CONSTANT) - np.isfinite(raw[..., 0])
    bad |= nb < 2
    bad &= np.isfinite(raw[..., 0])
    out[bad] = np.nan
    return out


def _smooth(raw: np.ndarray, sigma: float = 1.0, reach: float = 2.0) -> np.ndarray:
    """Normalised Gaussian convolution over the known nodes; unknown beyond ``reach`` sigmas of any measurement."""
    w = np.isfinite(raw[..., 0]).astype(np.float32)
    if not w.any():
        return np.full_like(raw, np.nan)
    ks = int(2 * math.ceil(3 * sigma) + 1)
    den = cv2.GaussianBlur(w, (ks, ks), sigma, borderType=cv2.BORDER_CONSTANT)
    out = np.empty_like(raw)
    for k in range(2):
        num = cv2.GaussianBlur(np.where(w > 0, raw[..., k], 0).astype(np.float32), (ks, ks), sigma,
                               borderType=cv2.BORDER_CONSTANT)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[..., k] = num / den
    floor = math.exp(-0.5 * reach ** 2) / (2 * math.pi * sigma ** 2)  # one measurement at ``reach`` sigmas
    out[den < floor] = np.nan
    return out


FIELD_GAIN = 0.8  # the field is kept when it predicts held-out nodes within this share of the global model's error
# a kept field that predicts its own nodes (each from its neighbours) worse than this RMS (px) is uncertain between
# them: layover over 150 m of relief 0.62-0.72 (the output 5-6.5 px off at places), 40-80 m 0.28-0.39; the kept fields
# of real training-split pairs 0.29-0.37 (stop 56)
FIELD_LOO_PX = 0.5


def field_gain(raw: np.ndarray, sigma: float = 1.0) -> float | None:
    """Leave-one-out test of the field (``field_loo``): its held-out error over the global model's. Near or above 1:
    the field follows noise (speckle, temporal change), not a distortion. None with fewer than 8 nodes predicted."""
    return _gain(field_loo(raw, sigma))


def _gain(loo: tuple[float, float] | None) -> float | None:
    return None if loo is None else loo[0] / max(loo[1], 1e-6)


def field_loo(raw: np.ndarray, sigma: float = 1.0) -> tuple[float, float] | None:
    """(RMS error of each measured node, a deviation from the global model, predicted by the smoothing of its
    neighbours alone; RMS of the deviations themselves, the global model's error at the same nodes) in px, or None
    with fewer than 8 nodes predicted."""
    w = np.isfinite(raw[..., 0]).astype(np.float32)
    ks = int(2 * math.ceil(3 * sigma) + 1)
    g = cv2.getGaussianKernel(ks, sigma)
    k = (g @ g.T).astype(np.float32)
    k[ks // 2, ks // 2] = 0.0  # each node predicted without itself
    den = cv2.filter2D(w, -1, k, borderType=cv2.BORDER_CONSTANT)
    err = np.empty_like(raw, dtype=np.float64)
    for c in range(2):
        num = cv2.filter2D(np.where(w > 0, raw[..., c], 0).astype(np.float32), -1, k, borderType=cv2.BORDER_CONSTANT)
        with np.errstate(invalid="ignore", divide="ignore"):
            err[..., c] = num / den - raw[..., c]
    ok = (w > 0) & (den >= float(k.max())) & np.isfinite(err).all(-1)
    if ok.sum() < 8:
        return None
    return float(np.sqrt(np.mean((err[ok] ** 2).sum(-1)))), float(np.sqrt(np.mean((raw[ok] ** 2).sum(-1))))


def _field_georef(field: OffsetsField, ref: Scene) -> dict[str, Any]:
    """The node grid placed as the reference is: through its geotransform (with or without a CRS), through its GCPs
    (scaled to the grid) or, in pixel space, with y = -row as QGIS shows a raster without georeferencing (the
    reference, the output and the tie points; an unflipped grid was drawn mirrored, off the scene)."""
    from affine import Affine
    from rasterio.control import GroundControlPoint

    s = field.spacing
    gx, gy = field.x0 + 0.5 - s / 2, field.y0 + 0.5 - s / 2  # the grid's top-left corner in reference px edges
    if ref.georeferenced or ref.placed:  # (a stored identity too)
        return {"transform": ref.transform * Affine.translation(gx, gy) * Affine.scale(s),
                **({"crs": ref.crs} if ref.georeferenced else {})}
    if ref.gcps is not None:
        return {"gcps": [GroundControlPoint(row=(line - gy) / s, col=(px - gx) / s, x=x, y=y)
                         for px, line, x, y in ref.gcps], "crs": ref.crs}
    return {"transform": Affine(s, 0.0, gx, 0.0, -s, -gy)}


def write_field(path: str | Path, field: OffsetsField, ref: Scene) -> None:
    """``OUT.offsets.tif``: float32 bands dx, dy (reference px) and quality, nodata NaN, on the node grid,
    placed as the reference is (``_field_georef``). Written atomically."""
    import os
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    from sarreg.errors import SarregError
    from sarreg.outputs import temp_path, write_error

    ny, nx = field.quality.shape
    data = np.stack([field.smooth[..., 0], field.smooth[..., 1],
                     np.where(np.isfinite(field.smooth[..., 0]), field.quality, np.nan)]).astype(np.float32)
    tmp = temp_path(path)
    profile = {"driver": "GTiff", "width": nx, "height": ny, "count": 3, "dtype": "float32", "nodata": float("nan"),
               "compress": "deflate", **_field_georef(field, ref)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(tmp, "w", **profile)
        with ds:
            ds.write(data)
            ds.set_band_description(1, "dx_px")
            ds.set_band_description(2, "dy_px")
            ds.set_band_description(3, "quality")
            ds.update_tags(convention="reference px; the content put at p by the global model lies at p + (dx, dy)")
        os.replace(tmp, path)
    except SarregError:
        raise
    except Exception as e:  # noqa: BLE001 - rasterio / GDAL errors (a full disk) as one line
        raise write_error(path, e) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def local_transform(ref: Scene, mov: Scene, est: Estimate, area: BaseGeometry, cfg: RegisterConfig, path: str | Path
                    ) -> tuple[PixelTransform, dict[str, Any], list[str]]:
    """``--model local``: the offsets field over the overlap through the global estimate, written to ``path``
    (OUT.offsets.tif). -> (warp transform: global model + field nodes as GCPs, field statistics, gate reasons)."""
    spacing = cfg.grid_spacing or max(MIN_GRID_SPACING, int(round(max(ref.width, ref.height) / 96 / 16)) * 16)
    field = estimate_field(ref, mov, est.matrix, area, spacing, cfg.preprocess, moving_pre(cfg))
    stats = field.stats()
    reasons = []
    if stats["known"] < max(4, 0.3 * stats["nodes"]):
        reasons.append(f"offsets field known at {stats['known']} of {stats['nodes']} nodes")
    if stats["raw_vs_smooth_rmse_px"] is not None and stats["raw_vs_smooth_rmse_px"] > cfg.max_rmse / 2:
        reasons.append(f"offsets field inconsistent: raw vs smoothed RMSE {stats['raw_vs_smooth_rmse_px']:.2f} px "
                       f"> {cfg.max_rmse / 2:g}")
    if stats["max_px"] is not None and stats["max_px"] > RADIUS - 1:
        reasons.append(f"local offsets up to {stats['max_px']:.1f} px: at the edge of the search radius")
    loo = field_loo(field.raw)
    gain = _gain(loo)
    stats["field_gain"] = None if gain is None else round(gain, 3)
    stats["field_loo_px"] = None if loo is None else round(loo[0], 3)
    if gain is not None and gain > FIELD_GAIN:  # the field explains no more than noise: the global model, exactly
        stats["field"] = "not kept: it predicts held-out nodes no better than the global model"
        field = replace(field, smooth=np.where(np.isfinite(field.smooth), 0.0, np.nan))
        write_field(path, field, ref)  # (the gates on the field's own coverage and consistency no longer apply)
        return PixelTransform(est.model, est.matrix), stats, [r for r in reasons if r.startswith("local offsets up")]
    if loo is not None and loo[0] > FIELD_LOO_PX:
        reasons.append(f"the offsets field predicts its own nodes only to {loo[0]:.2f} px (RMS, each from its "
                       f"neighbours) > {FIELD_LOO_PX:g}: it varies faster than its {spacing} px grid (steep relief) "
                       f"or is noisy; pixels off between nodes")
    write_field(path, field, ref)
    tp = field.tiepoints(est.matrix)
    if len(tp) > TPS_MAX_POINTS:
        tp = tp[thin_spatially(tp[:, 2:], TPS_MAX_POINTS)]
    if len(tp) < 3:
        return PixelTransform(est.model, est.matrix), stats, reasons
    return PixelTransform("tps", est.matrix, tiepoints=tp), stats, reasons
