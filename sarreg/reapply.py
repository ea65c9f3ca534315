"""Re-apply a saved registration (a ``.report.json``) to a raster: ``sarreg apply``.

The report's transform maps pixels of the moving raster it was estimated on to reference pixels. A target raster
on another grid (another resolution, a crop, the other polarisation on its own grid) is related to that moving
raster through the georeferencings, as ``register`` relates its inputs:

    target px --(target and reference georeferencing)--> reference px under the old georeferencing
              --(inverse of the report's prior)--> moving px --(estimated transform)--> reference px

so ``M_target = M . prior_moving^-1 . prior_target``. Georeferencing is a geotransform or, for GCP-only
rasters (Sentinel-1 GRD measurements), the GCPs (``sarreg.relate.prior_matrix``). A target whose grid cannot be
related (pixel-space rasters of another size, an unrelated CRS) or that does not reach the reference grid is refused
in one line.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from sarreg.errors import CRSError, InputError, OverlapError
from sarreg.grid import Grid, Native, PixelTransform, edge_to_centre

log = logging.getLogger(__name__)


def _scene_like(path: Path, width: int, height: int, transform: Affine, crs: Any, georef: bool,
                gcps: tuple | None = None):
    """A ``Scene`` holding only the geometry (what ``pipeline.prior_matrix`` reads); ``gcps`` for GCP-only rasters
    (``crs`` is then the GCPs' CRS)."""
    from sarreg.io.raster import Scene

    return Scene(path=path, width=width, height=height, count=1, dtype="float32", band=1, kind="linear",
                 nodata=None, crs=crs, transform=transform, georeferenced=georef, lo=0.0, hi=1.0, fill=0.0,
                 gcps=None if georef else gcps)


def target_transform(data: dict[str, Any], report: Path, target: Path) -> tuple[PixelTransform, Grid]:
    """The report's transform expressed for ``target``'s own pixels, and the reference grid."""
    from rasterio.crs import CRS

    from sarreg.io.gcps import read_gcps
    from sarreg.io.raster import _is_georeferenced, open_dataset
    from sarreg.relate import NONLINEAR_PX, prior_fit

    import pyproj

    from sarreg.config import MODELS

    relate = (data.get("stages") or {}).get("relate") or {}
    try:
        tr = PixelTransform.from_dict(data["transform"])
        if tr.model not in MODELS:
            raise ValueError(f"unknown model {tr.model!r}")
        grid = Grid.from_dict(data["reference_grid"])
        for name, g in (("reference_grid", data["reference_grid"]), ("moving_grid", relate.get("moving_grid"))):
            if g and g.get("crs_wkt"):
                pyproj.CRS.from_wkt(g["crs_wkt"])  # pyproj's CRSError when it does not parse (GDAL would print)
            gt = (g or {}).get("geotransform")
            if gt is not None and not abs(Affine.from_gdal(*gt).determinant) > 0:
                raise ValueError(f"{name}: degenerate geotransform {g['geotransform']}")
    except (KeyError, TypeError, ValueError, pyproj.exceptions.CRSError) as e:
        raise InputError(f"{report}: malformed transform ({e})") from None
    mgrid = relate.get("moving_grid")
    with open_dataset(target) as ds:
        t_size, t_aff, t_crs, t_geo = (ds.width, ds.height), ds.transform, ds.crs, _is_georeferenced(ds)
        t_gcps, t_gcp_crs = (None, None) if t_geo else read_gcps(ds)
    same_size = mgrid is None or (int(mgrid["width"]), int(mgrid["height"])) == t_size
    if mgrid is not None and mgrid.get("crs_wkt") and t_geo:
        same_grid = same_size and np.allclose(Affine.from_gdal(*mgrid["geotransform"]), t_aff, rtol=0, atol=1e-9) \
            and CRS.from_wkt(mgrid["crs_wkt"]) == t_crs
    elif mgrid is not None and mgrid.get("gcps") and t_gcps:  # GCP-only rasters: the same GCPs
        same_grid = same_size and np.shape(mgrid["gcps"]) == np.shape(t_gcps) \
            and np.allclose(mgrid["gcps"], t_gcps, rtol=0, atol=1e-9)
    else:
        same_grid = same_size
    if same_grid and not (grid.georeferenced and t_geo):
        return tr, grid
    if not ((grid.georeferenced or grid.gcps) and (t_geo or t_gcps)):
        if not same_grid:
            raise CRSError(f"{target}: cannot be related to the registered moving raster ({data.get('moving')}): "
                           f"{'pixel-space reference' if t_geo or t_gcps else 'no georeferencing'} and another size "
                           f"({t_size[0]}x{t_size[1]} instead of {mgrid['width']}x{mgrid['height']})")
        return tr, grid
    prior_mov = np.asarray(relate.get("prior") if relate.get("prior") is not None else np.eye(3), dtype=np.float64)
    ref_wkt = grid.crs_wkt or grid.gcp_crs_wkt
    ref = _scene_like(report, grid.width, grid.height, grid.transform, CRS.from_wkt(ref_wkt) if ref_wkt else None,
                      grid.georeferenced, grid.gcps)
    tgt = _scene_like(target, t_size[0], t_size[1], t_aff, t_crs if t_geo else t_gcp_crs, t_geo, t_gcps)
    prior_t, bend = prior_fit(ref, tgt)  # target px -> reference px (old georeferencing); CRSError when unrelated
    c = np.linalg.inv(prior_mov) @ prior_t  # target px -> moving px
    corners = np.array([[0, 0], [t_size[0] - 1, 0], [0, t_size[1] - 1], [t_size[0] - 1, t_size[1] - 1]], float)
    moved = np.c_[corners, np.ones(4)] @ c.T
    if np.abs(moved[:, :2] / moved[:, 2:] - corners).max() < 1e-3:
        out = tr  # the target is on the moving raster's grid
    elif tr.model == "tps" and tr.tiepoints is not None:
        tp = tr.tiepoints.copy()
        inv = np.linalg.inv(c)
        q = np.c_[tp[:, :2], np.ones(len(tp))] @ inv.T
        tp[:, :2] = q[:, :2] / q[:, 2:]
        out = PixelTransform("tps", tr.matrix @ c, None, tp)
    elif tr.model == "poly2":
        raise InputError(f"{target}: is on another grid than the registered moving raster; a poly2 transform can "
                         "only be re-applied to a raster on that grid")
    else:
        native = None
        if tr.native is not None and tr.native.grid.georeferenced and t_geo \
                and CRS.from_wkt(tr.native.grid.crs_wkt) == t_crs:  # exact: through one CRS
            edge = np.linalg.inv(np.reshape(tr.native.grid.transform, (3, 3))) @ np.reshape(t_aff, (3, 3))
            c_own = edge_to_centre(edge)  # target px -> moving px, through the map: exact
            native = Native(tr.native.matrix @ c_own, tr.native.grid)
        elif bend > NONLINEAR_PX:  # composed through an affine stand-in for the CRSs' mapping: that far off
            raise CRSError(f"{target}: its CRS maps onto the reference's non-linearly over the scene (up to "
                           f"{bend:.1f} px from an affine): re-applied through the georeferencing it would be that far "
                           f"off; reproject it to the registered raster's CRS first (gdalwarp -t_srs)")
        out = PixelTransform(tr.model, tr.matrix @ c, native=native)
        log.info("%s: on another grid than %s; transform composed through the georeferencing", target,
                 data.get("moving"))
    _check_reaches(out, grid, t_size, target)
    return out, grid


def _check_reaches(tr: PixelTransform, grid: Grid, size: tuple[int, int], target: Path) -> None:
    """OverlapError when the target's extent, moved by ``tr``, misses the reference grid."""
    import shapely

    w, h = size
    edge = np.array([[x, -0.5] for x in np.linspace(-0.5, w - 0.5, 9)] +
                    [[w - 0.5, y] for y in np.linspace(-0.5, h - 0.5, 9)] +
                    [[x, h - 0.5] for x in np.linspace(w - 0.5, -0.5, 9)] +
                    [[-0.5, y] for y in np.linspace(h - 0.5, -0.5, 9)])
    p = tr.apply(edge)
    if not np.isfinite(p).all():
        raise OverlapError(f"{target}: the transform maps it outside the reference grid (degenerate transform)")
    poly = shapely.Polygon(p).buffer(0)
    box = shapely.box(-0.5, -0.5, grid.width - 0.5, grid.height - 0.5)
    if poly.intersection(box).area < 1:
        raise OverlapError(f"{target}: the transform puts it entirely outside the reference grid; an output would "
                           "be all nodata")


def grid_of(path: Path) -> dict[str, Any]:
    """Size, GDAL geotransform and CRS WKT (None in pixel space) of a raster; GCPs and their CRS when it has no
    geotransform but GCPs. ``register`` records the moving raster's (``stages.relate.moving_grid``) so that
    ``apply`` can relate a raster on another grid to it."""
    from sarreg.io.gcps import read_gcps
    from sarreg.io.raster import _is_georeferenced, open_dataset

    with open_dataset(path) as ds:
        geo = _is_georeferenced(ds)
        d = {"width": ds.width, "height": ds.height, "geotransform": list(ds.transform.to_gdal()),
             "crs_wkt": ds.crs.to_wkt() if geo else None}
        gcps, crs = (None, None) if geo else read_gcps(ds)
        if gcps:
            d.update(gcps=[list(g) for g in gcps], gcp_crs_wkt=crs.to_wkt() if crs is not None else None)
        return d


def registered_nodata(data: dict[str, Any], target: str | Path) -> float | str | tuple[float, float]:
    """``apply``'s nodata for ``target`` when none is given: the value ``register`` read as nodata in its moving raster
    (a fill value found in the data, or ``--moving-nodata`` / ``--nodata``; (tag, fill) for a second fill value
    beside the file's tag) when ``target`` is that raster, its own tag ("auto") when register read only the tag there.
    Another raster (the other polarisation, another product or crop) is read as ``register`` reads any raster
    (``open_scene``: its tag, a second fill value beside it, or a fill value in a file that declares nothing; one
    decimated read), whatever register found in its own: a tag can hide a fill value in one file and not another."""
    relate = (data.get("stages") or {}).get("relate") or {}
    moving = (relate.get("nodata") or {}).get("moving") or {}
    second = (relate.get("undeclared_nodata") or {}).get("moving") if moving.get("from") == "file" else None
    a, b = str(data.get("moving") or ""), str(target)
    if not a:
        return "auto"
    if a != b and not (Path(a).exists() and Path(b).exists() and Path(a).samefile(b)):
        from sarreg.io.raster import open_scene

        return open_scene(target).warp_nodata
    if moving.get("from") not in ("found", "option") and second is None:
        return "auto"
    if second is not None and moving.get("value") is not None:
        return float(moving["value"]), float(second)
    return "none" if moving.get("value") is None else moving["value"]
