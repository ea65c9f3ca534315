"""Geolocation by ground control points: rasters without a geotransform but with GCPs (Sentinel-1 GRD
measurements, GCP-only GeoTIFFs), mapped between pixels and the GCPs' coordinates with GDAL's GCP transformers.

GCPs are kept as tuples ``(pixel, line, x, y)`` in GDAL's convention: pixel / line on the pixel-edge grid (the centre
of the top-left pixel is (0.5, 0.5)); ``pixel_to_map`` / ``map_to_pixel`` take and give sarreg's pixel-centre
coordinates. The transformer is GDAL's thin-plate spline (``GCP_TPS``: exact at every GCP and smooth between them, as
a Sentinel-1 geolocation grid needs), a polynomial (``GCP_POLYNOMIAL``) when the spline cannot be built (fewer than
six or collinear GCPs).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

Gcps = tuple[tuple[float, float, float, float], ...]
MIN_GCPS = 3


def read_gcps(ds: Any) -> tuple[Gcps | None, Any]:
    """GCPs of an open rasterio dataset as ``Gcps`` and their CRS (rasterio CRS or None); (None, None) without."""
    try:
        gcps, crs = ds.gcps
    except Exception:  # noqa: BLE001 - drivers without GCP support
        return None, None
    if not gcps or len(gcps) < MIN_GCPS:
        return None, None
    return tuple((float(g.col), float(g.row), float(g.x), float(g.y)) for g in gcps), crs


def gdal_gcps(gcps: Gcps) -> list:
    """``Gcps`` -> a list of ``osgeo.gdal.GCP`` (z = 0)."""
    from osgeo import gdal

    return [gdal.GCP(x, y, 0.0, p, l) for p, l, x, y in gcps]


@lru_cache(maxsize=32)
def _transformer(gcps: Gcps) -> tuple[Any, Any, str]:
    """(GDAL transformer, the MEM dataset it was made from, method) for a set of GCPs; cached per GCP set."""
    from osgeo import gdal

    gdal.UseExceptions()
    mem = gdal.GetDriverByName("MEM").Create("", 1, 1, 0)
    mem.SetGCPs(gdal_gcps(gcps), "")
    if len(gcps) >= 6:
        try:
            return gdal.Transformer(mem, None, ["METHOD=GCP_TPS"]), mem, "GCP_TPS"
        except RuntimeError:
            pass
    return gdal.Transformer(mem, None, ["METHOD=GCP_POLYNOMIAL"]), mem, "GCP_POLYNOMIAL"


def method(gcps: Gcps) -> str:
    """The GDAL transformer method used for these GCPs (``GCP_TPS`` or ``GCP_POLYNOMIAL``)."""
    return _transformer(gcps)[2]


def _run(gcps: Gcps, pts: np.ndarray, inverse: bool) -> np.ndarray:
    t = _transformer(gcps)[0]
    if not len(pts):
        return np.zeros((0, 2))
    out, ok = t.TransformPoints(int(inverse), [(float(x), float(y)) for x, y in pts])
    res = np.asarray(out, dtype=np.float64)[:, :2]
    res[~np.asarray(ok, dtype=bool)] = np.nan
    return res


def pixel_to_map(gcps: Gcps, xy: np.ndarray) -> np.ndarray:
    """N x 2 pixel-centre coordinates -> N x 2 coordinates of the GCPs' CRS (NaN where the transform fails)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    return _run(gcps, xy + 0.5, inverse=False)


def map_to_pixel(gcps: Gcps, m: np.ndarray) -> np.ndarray:
    """N x 2 coordinates of the GCPs' CRS -> N x 2 pixel-centre coordinates (NaN where the transform fails)."""
    m = np.asarray(m, dtype=np.float64).reshape(-1, 2)
    return _run(gcps, m, inverse=True) - 0.5
