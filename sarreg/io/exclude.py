"""Areas not to match in (``--exclude``): polygons or mask rasters, applied to the valid mask of every read.

Users often know where matching must not look: water, the flooded or harvested fields of a change study, a moving
glacier, layover. AROSICS takes bad-data mask rasters; sarreg takes either, as many as given:

* a vector file that OGR reads (GeoPackage, GeoJSON, shapefile, ...): the polygons of every layer, in any CRS
  (reprojected with pyproj; a layer without a CRS is taken in the image's CRS);
* a mask raster: its non-zero pixels (not nodata) are excluded, as AROSICS's ``mask_baddata`` (True = bad).
  On the image's own grid it is read window by window like the image; on another grid (CRS, resolution, extent)
  a decimated read of it is turned into polygons first.

Excluded pixels are nodata for matching only (keypoints, correlation windows, statistics of the overlap); the
warp still carries their values. The polygons go to the image's pixel space once, through its affine transform
or its GCPs (``Scene.map_to_xy``), in centre-convention pixel coordinates, and each read rasterises them for its
own window: memory stays bounded by the window, whatever the size of the scene.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine
from rasterio.windows import Window

from sarreg.errors import InputError

if TYPE_CHECKING:
    from sarreg.io.raster import Scene

log = logging.getLogger(__name__)

POLYGONISE_MAX_SIDE = 2048  # a mask raster on another grid is turned into polygons at most this many px a side
DENSIFY_STEPS = 256  # polygon edges are cut into at most 1/256 of the layer's extent before a reprojection


@dataclass(frozen=True)
class Exclusion:
    """What ``--exclude`` removes from one scene: polygons in its pixel space and mask rasters on its grid."""

    sources: tuple[str, ...]
    fraction: float = 0.0  # share of the scene's valid pixels excluded (from the decimated statistics read)
    polygons: Any = None  # shapely geometry, scene pixel coordinates (centre convention), or None
    rasters: tuple[str, ...] = ()  # mask rasters on the scene's own grid (same size and georeferencing)

    def mask(self, window: Window | None, shape: tuple[int, int], full: tuple[int, int]) -> np.ndarray:
        """Excluded pixels (True) of a read of ``window`` (None: the whole scene of size ``full`` = (rows, cols))
        decimated to ``shape`` = (rows, cols)."""
        if window is None:
            c0, r0, w, h = 0, 0, full[1], full[0]
        else:
            c0, r0, w, h = int(window.col_off), int(window.row_off), int(window.width), int(window.height)
        out = np.zeros(shape, dtype=bool)
        if self.polygons is not None:
            from rasterio.features import rasterize
            import shapely

            box = shapely.box(c0 - 0.5, r0 - 0.5, c0 + w - 0.5, r0 + h - 0.5)
            if shapely.intersects(self.polygons, box):
                # output pixel edges -> scene pixel-centre coordinates; a pixel is excluded when its centre is
                t = Affine(w / shape[1], 0.0, c0 - 0.5, 0.0, h / shape[0], r0 - 0.5)
                out |= rasterize([(self.polygons, 1)], out_shape=shape, transform=t, fill=0, dtype="uint8") > 0
        for path in self.rasters:
            out |= _read_mask(path, Window(c0, r0, w, h), shape)
        return out


def _read_mask(path: str, window: Window, shape: tuple[int, int]) -> np.ndarray:
    """Non-zero, non-nodata pixels of band 1 of a mask raster; a decimated cell is excluded when any of it is."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(path) as ds:
        full = (int(window.height), int(window.width)) == shape
        v = ds.read(1, window=window, out_shape=None if full else shape, out_dtype="float32",
                    resampling=Resampling.average)
        nodata = ds.nodata
    bad = np.isfinite(v) & (v != 0)
    if nodata is not None and not np.isnan(nodata):
        bad &= v != np.float32(nodata)
    return bad


def load_exclusion(paths: tuple[str, ...] | list[str], scene: Scene) -> Exclusion | None:
    """The exclusion of ``paths`` (vector files or mask rasters) for ``scene``; None when there is nothing.

    InputError naming the file for unreadable files, files without polygons, and polygons or masks that cannot be
    placed on the image (no georeferencing on either side)."""
    import shapely

    if not paths:
        return None
    polygons: list[Any] = []
    rasters: list[str] = []
    for p in paths:
        p = str(p)
        if not Path(p).exists() and "://" not in p and not p.startswith("/vsi"):
            raise InputError(f"{p}: exclusion file not found")
        kind = _file_kind(p)
        if kind == "raster":
            same, geoms = _raster_exclusion(p, scene)
            if same:
                rasters.append(p)
            else:
                polygons.extend(geoms)
        else:
            polygons.extend(_vector_exclusion(p, scene))
    merged = None
    if polygons:
        h, w = scene.height, scene.width
        clipped = [shapely.clip_by_rect(g, -1.0, -1.0, w, h) for g in polygons]
        clipped = [g for g in clipped if not g.is_empty]
        if clipped:
            merged = shapely.union_all(shapely.make_valid(np.asarray(clipped, dtype=object)))
            merged = None if merged.is_empty else merged
    if merged is None and not rasters:
        log.warning("%s: the exclusion (%s) does not reach this image", scene.path, ", ".join(map(str, paths)))
    return Exclusion(sources=tuple(str(p) for p in paths), polygons=merged, rasters=tuple(rasters))


def _file_kind(path: str) -> str:
    """"vector" (OGR layers, read with pyogrio) or "raster" (rasterio); InputError when neither. pyogrio first: its
    GDAL reads the GeoPackage versions newer QGIS writes without a warning."""
    import pyogrio
    import rasterio

    try:
        if len(pyogrio.list_layers(path)):
            return "vector"
    except Exception:  # noqa: BLE001 - not a vector file (pyogrio / GDAL errors of several types)
        pass
    try:
        with rasterio.open(path):
            return "raster"
    except Exception as e:  # noqa: BLE001 - rasterio / GDAL errors of several types
        raise InputError(f"{path}: unreadable exclusion file ({str(e).splitlines()[0][:160]})") from None


def _vector_exclusion(path: str, scene: Scene) -> list[Any]:
    """The polygons of every layer of a vector file, in the scene's pixel coordinates."""
    import pyogrio
    import shapely

    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
    except Exception as e:  # noqa: BLE001 - pyogrio / GDAL errors of several types
        raise InputError(f"{path}: unreadable exclusion file ({str(e).splitlines()[0][:160]})") from None
    out: list[Any] = []
    found: set[str] = set()
    polygonal = False  # a layer declared as polygons: none near this image is not an error (a scene without water)
    for layer in layers:
        info = pyogrio.read_info(path, layer=layer)
        polygonal |= "polygon" in str(info.get("geometry_type") or "").lower()
        crs = info.get("crs")
        b = info.get("total_bounds")
        if crs == "EPSG:4326" and b is not None and not (-180 <= b[0] <= b[2] <= 360 and -90 <= b[1] <= b[3] <= 90):
            crs = None  # a GeoJSON without a "crs" member is WGS84 to OGR; these numbers cannot be: no CRS given
        # only the features near the image: a water layer of a whole country is read for one scene's area
        bbox = _scene_bounds(scene, crs)
        meta, _, wkb, _ = pyogrio.raw.read(path, layer=layer, read_geometry=True, columns=[], bbox=bbox)
        if wkb is None or not len(wkb):
            continue
        geoms = shapely.from_wkb(wkb)
        geoms = shapely.get_parts(geoms[~shapely.is_missing(geoms)])
        found.update(shapely.get_type_id(geoms).tolist())
        polys = geoms[np.isin(shapely.get_type_id(geoms), (3, 6))]  # Polygon, MultiPolygon
        if len(polys):
            out.extend(_to_pixels(polys, crs, scene, path))
    if not out and not polygonal:
        what = ", ".join(sorted({shapely.GeometryType(t).name.lower() for t in found})) or "no features"
        raise InputError(f"{path}: no polygons to exclude (found {what})")
    return out


def _scene_bounds(scene: Scene, crs: Any) -> tuple[float, float, float, float] | None:
    """The scene's bounds in ``crs`` (its outline densified, then transformed), a tenth wider on each side; None
    when the scene is not located on the ground or cannot be transformed (everything is read then)."""
    from pyproj import CRS, Transformer

    if not scene.geolocated or scene.crs is None:
        return None
    w, h = scene.width, scene.height
    t = np.linspace(0.0, 1.0, 33)
    edge = np.concatenate([np.c_[t * w, 0 * t], np.c_[w + 0 * t, t * h], np.c_[t * w, h + 0 * t], np.c_[0 * t, t * h]])
    try:
        xy = scene.xy_to_map(edge - 0.5)  # pixel-centre coordinates of the outline's edges
        if crs:
            to = Transformer.from_crs(CRS.from_user_input(scene.crs.to_wkt()), CRS.from_user_input(crs), always_xy=True)
            xy = np.stack(to.transform(xy[:, 0], xy[:, 1]), axis=1)
    except Exception:  # noqa: BLE001 - pyproj / GCP transformer errors: no filter, read everything
        return None
    if not np.isfinite(xy).all():
        return None
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    mx, my = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
    return float(x0 - mx), float(y0 - my), float(x1 + mx), float(y1 + my)


def _to_pixels(geoms: np.ndarray, crs: Any, scene: Scene, path: str) -> list[Any]:
    """Polygons in ``crs`` (None: the scene's) -> the scene's pixel-centre coordinates, densified first so that a
    reprojection or a GCP transformer bends their edges as it bends the ground."""
    import shapely
    from pyproj import CRS, Transformer

    if not scene.geolocated or scene.crs is None:
        raise InputError(f"{path}: exclusion polygons need a georeferenced image; {scene.path} has no "
                         "georeferencing (give a mask raster of its size instead)")
    dst = CRS.from_user_input(scene.crs.to_wkt())
    if crs:
        src = CRS.from_user_input(crs)
    else:
        log.warning("%s: no CRS; its polygons are taken in the CRS of %s", path, scene.path)
        src = dst
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    step = max(x1 - x0, y1 - y0) / DENSIFY_STEPS
    if step > 0 and (src != dst or not scene.georeferenced):
        geoms = shapely.segmentize(geoms, step)
    to_dst = None if src == dst else Transformer.from_crs(src, dst, always_xy=True)

    def pixels(xy: np.ndarray) -> np.ndarray:
        if to_dst is not None:
            xy = np.stack(to_dst.transform(xy[:, 0], xy[:, 1]), axis=1)
        return scene.map_to_xy(xy)

    return list(shapely.transform(geoms, pixels))


def _raster_exclusion(path: str, scene: Scene) -> tuple[bool, list[Any]]:
    """(True, []) for a mask raster on the scene's grid, read per window later; else (False, its excluded areas as
    polygons in the scene's pixel coordinates, from a decimated read)."""
    import rasterio
    from rasterio.features import shapes

    with rasterio.open(path) as ds:
        geo = ds.crs is not None and not ds.transform.is_identity
        same_size = (ds.height, ds.width) == scene.shape
        if same_size and (not geo or not scene.georeferenced):
            return True, []  # a mask of the image's size, in pixel space or along the image's GCPs
        if same_size and ds.crs == scene.crs and ds.transform.almost_equals(scene.transform):
            return True, []
        if not geo:
            raise InputError(f"{path}: mask raster is {ds.width}x{ds.height} without georeferencing; it must have "
                             f"the size of {scene.path} ({scene.width}x{scene.height}) or a georeferencing")
        s = min(1.0, POLYGONISE_MAX_SIDE / max(ds.width, ds.height))
        shape = (max(1, round(ds.height * s)), max(1, round(ds.width * s)))
        bad = _read_mask(path, Window(0, 0, ds.width, ds.height), shape)
        t = ds.transform @ Affine.scale(ds.width / shape[1], ds.height / shape[0])
        crs = ds.crs.to_wkt()
    import shapely

    geoms = [shapely.geometry.shape(g) for g, _ in shapes(bad.astype(np.uint8), mask=bad, transform=t)]
    if not geoms:
        return False, []
    return False, _to_pixels(np.asarray(geoms, dtype=object), crs, scene, path)
