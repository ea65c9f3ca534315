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


LATTICE = 21  # RPC / geolocation-array rasters: GCPs on a LATTICE x LATTICE grid over the image (edges to edges)
_MADE: dict[Gcps, str] = {}  # GCP sets made from RPCs or geolocation arrays -> how (for ``located``)
MADE_KEPT = 256


def read_gcps(ds: Any) -> tuple[Gcps | None, Any]:
    """GCPs of an open rasterio dataset as ``Gcps`` and their CRS (rasterio CRS or None); (None, None) without.

    A raster with neither a geotransform nor GCPs but RPCs (``ds.rpcs``: SAR ground-range products that ship them,
    optical level-1 scenes) or geolocation arrays (GDAL's ``GEOLOCATION`` metadata: a netCDF / HDF5 swath with
    2-D longitude / latitude variables) gets GCPs made from them: ``rpc_gcps``, ``geolocation_gcps``."""
    try:
        gcps, crs = ds.gcps
    except Exception:  # noqa: BLE001 - drivers without GCP support
        return None, None
    if not gcps or len(gcps) < MIN_GCPS:
        rpcs = getattr(ds, "rpcs", None)
        if rpcs is not None:
            return rpc_gcps(rpcs.to_gdal(), ds.width, ds.height)
        geoloc = ds.tags(ns="GEOLOCATION")
        return geolocation_gcps(ds.name, geoloc, ds.width, ds.height) if geoloc else (None, None)
    return tuple((float(g.col), float(g.row), float(g.x), float(g.y)) for g in gcps), crs


def _lattice(t: Any, width: int, height: int, how: str) -> Gcps | None:
    """GCPs at LATTICE x LATTICE pixel-edge points of the image through GDAL transformer ``t`` (pixel -> ground);
    None when fewer than MIN_GCPS of them transform. ``how`` is what ``located`` says of them ({n}: their count)."""
    px, ln = np.meshgrid(np.linspace(0, width, LATTICE), np.linspace(0, height, LATTICE))
    out, ok = t.TransformPoints(0, [(float(a), float(b)) for a, b in zip(px.ravel(), ln.ravel())])
    ok = np.asarray(ok, dtype=bool)
    if ok.sum() < MIN_GCPS:
        return None
    gcps = tuple((float(a), float(b), float(o[0]), float(o[1]))
                 for a, b, o, k in zip(px.ravel(), ln.ravel(), out, ok) if k)
    _MADE[gcps] = how.format(n=len(gcps))
    while len(_MADE) > MADE_KEPT:  # (a batch of many scenes: the oldest sets are forgotten, ``located`` says gcps)
        _MADE.pop(next(iter(_MADE)))
    return gcps


def rpc_gcps(rpc: dict[str, str], width: int, height: int) -> tuple[Gcps | None, Any]:
    """GCPs (WGS 84 longitude / latitude) of a ``width`` x ``height`` raster located by the RPCs ``rpc`` (GDAL's
    RPC metadata domain), and their CRS; (None, None) when GDAL cannot evaluate them.

    Why GCPs: everything that relates, warps and reports GCP-located rasters then serves RPC-located ones. The
    RPCs are evaluated by GDAL's RPC transformer at their own height offset (``HEIGHT_OFF``, the scene's mean
    height; without a DEM GDAL would take 0 m, which shifts a ground-range image of high terrain by kilometres);
    the thin-plate spline through the lattice follows the smooth RPC polynomials closely (``located``)."""
    from osgeo import gdal
    from rasterio.crs import CRS

    gdal.UseExceptions()
    mem = gdal.GetDriverByName("MEM").Create("", 1, 1, 0)
    mem.SetMetadata({k: str(v) for k, v in rpc.items()}, "RPC")
    h = float(str(rpc.get("HEIGHT_OFF", "0")).split()[0])
    try:
        # (pixel -> ground is GDAL's iterative inverse of the RPCs: to 0.1 px by default, here to 0.001 px)
        t = gdal.Transformer(mem, None, ["METHOD=RPC", f"RPC_HEIGHT={h:.17g}", "RPC_PIXEL_ERROR_THRESHOLD=0.001"])
    except RuntimeError:
        return None, None
    gcps = _lattice(t, width, height, f"rpcs ({{n}} GCPs at {h:g} m")
    return (gcps, CRS.from_epsg(4326)) if gcps is not None else (None, None)


def geolocation_gcps(name: Any, md: dict[str, str], width: int, height: int) -> tuple[Gcps | None, Any]:
    """GCPs of a raster located by geolocation arrays (GDAL's ``GEOLOCATION`` metadata ``md``: the longitude /
    latitude rasters, their offset and step in the image), in the arrays' CRS (``SRS``, else WGS 84); (None, None)
    when GDAL cannot read them. GDAL's transformer interpolates the arrays bilinearly (pixel -> ground)."""
    from osgeo import gdal
    from rasterio.crs import CRS

    gdal.UseExceptions()
    try:
        ds = gdal.Open(str(name))
        t = gdal.Transformer(ds, None, ["METHOD=GEOLOC_ARRAY"])
        crs = CRS.from_user_input(md["SRS"]) if md.get("SRS") else CRS.from_epsg(4326)
    except Exception:  # noqa: BLE001 - unreadable arrays, an unknown SRS
        return None, None
    gcps = _lattice(t, width, height, "geolocation arrays ({n} GCPs")
    return (gcps, crs) if gcps is not None else (None, None)


def located(gcps: Gcps) -> str:
    """How a GCP-located raster is located, for reports and ``sarreg info``: "gcps (N, METHOD)"; for GCPs made
    from RPCs "rpcs (N GCPs at H m, METHOD)", from geolocation arrays "geolocation arrays (N GCPs, METHOD)"."""
    if gcps in _MADE:
        return f"{_MADE[gcps]}, {method(gcps)})"
    return f"gcps ({len(gcps)}, {method(gcps)})"


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
