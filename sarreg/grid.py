"""The grids and the transform a registration produces: the reference pixel grid (``Grid``), the output grid of
``--resolution`` (``output_grid``) and the estimated moving -> reference pixel transform (``PixelTransform``), in the
one pixel convention (x = column, y = row, (0, 0) = centre of the top-left pixel) with its pixel-edge form for GDAL."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine

from sarreg.errors import InputError

if TYPE_CHECKING:
    from sarreg.io.raster import Scene


@dataclass(frozen=True)
class Grid:
    """A target pixel grid: size, GDAL-order affine (pixel-edge -> map) and CRS WKT (None = pixel space).

    A GCP-only reference (a Sentinel-1 GRD measurement) is a pixel-space grid that also carries the reference's
    GCPs (``sarreg.io.gcps`` tuples) and their CRS: the output is warped in the reference's pixels and gets them."""

    width: int
    height: int
    transform: Affine
    crs_wkt: str | None
    gcps: tuple | None = None
    gcp_crs_wkt: str | None = None
    local: Affine | None = None  # a pixel-space reference's geotransform without a CRS (maybe the identity):
    # the output carries it

    @property
    def georeferenced(self) -> bool:
        return self.crs_wkt is not None

    @staticmethod
    def from_scene(scene: Scene) -> "Grid":
        wkt = scene.crs.to_wkt() if scene.georeferenced and scene.crs is not None else None
        gcps = None if wkt else getattr(scene, "gcps", None)
        gcp_wkt = scene.crs.to_wkt() if gcps and scene.crs is not None else None
        # a geotransform without a CRS, even a stored identity (rasterio writes one for a plain array), places the
        # reference in GDAL and QGIS (y = row): the output carries it, or it would be drawn at y = -row beside it
        local = scene.placed
        return Grid(scene.width, scene.height, scene.transform if wkt else Affine.identity(), wkt, gcps, gcp_wkt,
                    scene.transform if local else None)

    def to_dict(self) -> dict[str, Any]:
        d = {"width": self.width, "height": self.height, "geotransform": list(self.transform.to_gdal()),
             "crs_wkt": self.crs_wkt}
        if self.gcps:
            d.update(gcps=[list(g) for g in self.gcps], gcp_crs_wkt=self.gcp_crs_wkt)
        if self.local is not None:
            d["local_geotransform"] = list(self.local.to_gdal())
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Grid":
        gcps = tuple(tuple(float(v) for v in g) for g in d["gcps"]) if d.get("gcps") else None
        local = Affine.from_gdal(*d["local_geotransform"]) if d.get("local_geotransform") else None
        return Grid(int(d["width"]), int(d["height"]), Affine.from_gdal(*d["geotransform"]), d.get("crs_wkt"),
                    gcps, d.get("gcp_crs_wkt") if gcps else None, local)

    def map_to_px(self, xy_map: np.ndarray) -> np.ndarray:
        """Target coordinates (N x 2) -> pixel centres: the inverse of ``px_to_map``."""
        return map_to_px(self.transform, xy_map)

    def px_to_map(self, xy: np.ndarray) -> np.ndarray:
        """Pixel centres (N x 2) -> target coordinates: map coords, or pixel-edge coords in pixel space."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2) + 0.5
        a = self.transform
        return np.stack([a.a * xy[:, 0] + a.b * xy[:, 1] + a.c, a.d * xy[:, 0] + a.e * xy[:, 1] + a.f], 1)


def map_to_px(transform: Affine, xy_map: np.ndarray) -> np.ndarray:
    """N x 2 coordinates of an affine ``transform``'s frame -> pixel (x = col, y = row, (0, 0) = centre of the
    top-left pixel)."""
    inv = ~transform
    m = np.asarray(xy_map, dtype=np.float64).reshape(-1, 2)
    return np.stack([inv.a * m[:, 0] + inv.b * m[:, 1] + inv.c - 0.5,
                     inv.d * m[:, 0] + inv.e * m[:, 1] + inv.f - 0.5], axis=1)


def output_grid(grid: Grid, resolution: str | float, matrix: np.ndarray | None = None,
                moving: Grid | None = None) -> Grid:
    """The output grid for ``--resolution``: ``grid`` itself ("reference"), or the same extent, CRS and orientation
    with square pixels of ``resolution`` map units. "moving": the pixel size of the moving raster's grid ``moving``
    when it is in the reference's CRS, else from the linear part of ``matrix`` (moving px -> reference px) to 3
    significant digits. Registering a 1 m scene onto a 10 m reference keeps its 1 m."""
    if resolution in ("reference", None):
        return grid
    if not grid.georeferenced:
        raise InputError("--resolution needs a reference with a geotransform (this one is in pixel space or located "
                         "by GCPs: its output stays on its pixel grid)")
    t = grid.transform
    px, py = math.hypot(t.a, t.d), math.hypot(t.b, t.e)
    if resolution == "moving" and moving is not None and moving.georeferenced and moving.crs_wkt == grid.crs_wkt:
        res = pixel_size(moving)
    elif resolution == "moving":
        if matrix is None:
            raise ValueError("--resolution moving needs the transform")
        res = float(f"{math.sqrt(abs(np.linalg.det(np.asarray(matrix, dtype=np.float64)[:2, :2])) * px * py):.3g}")
    else:
        res = float(resolution)
    kx, ky = res / px, res / py
    width, height = max(1, math.ceil(grid.width / kx - 1e-6)), max(1, math.ceil(grid.height / ky - 1e-6))
    if width * height > 2 ** 34:
        raise InputError(f"--resolution {res:g}: the output would be {width} x {height} pixels")
    return Grid(width, height, t @ Affine.scale(kx, ky), grid.crs_wkt)


@dataclass(frozen=True)
class Native:
    """Between CRSs that no affine relates over the scene (``sarreg.relate.prior_fit``): the estimate refitted in
    the moving raster's own georeferenced pixels. matrix: moving px -> moving px as its georeferencing should have
    placed them (near identity); grid: that georeferencing (a geotransform, or GCPs whose pixel positions the warp
    moves by it). The warp sets it on the moving raster and GDAL reprojects to the reference CRS exactly, where an
    affine from moving to reference pixels is pixels off at the edges."""

    matrix: np.ndarray
    grid: Grid


@dataclass
class PixelTransform:
    """What the warp needs: model name, 3 x 3 matrix (moving px -> reference px, centre convention) and, for
    poly2 / tps, the polynomial coefficients (2 x 6) or tie points (N x 4: x_mov, y_mov, x_ref, y_ref); between
    CRSs that no affine relates, the same estimate in the moving raster's own georeferencing (``native``)."""

    model: str
    matrix: np.ndarray
    poly: np.ndarray | None = None
    tiepoints: np.ndarray | None = None
    native: Native | None = None

    def apply(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        if self.model == "poly2" and self.poly is not None:
            x, y = xy[:, 0], xy[:, 1]
            return np.c_[np.ones(len(xy)), x, y, x * x, x * y, y * y] @ np.asarray(self.poly).T
        p = np.c_[xy, np.ones(len(xy))] @ np.asarray(self.matrix, dtype=np.float64).T
        return p[:, :2] / p[:, 2:3]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"model": self.model, "matrix": np.asarray(self.matrix).tolist()}
        if self.poly is not None:
            d["poly2"] = np.asarray(self.poly).tolist()
        if self.tiepoints is not None:
            d["tiepoints"] = np.round(np.asarray(self.tiepoints), 4).tolist()
        if self.native is not None:
            d["native"] = {"matrix": np.asarray(self.native.matrix).tolist(), "grid": self.native.grid.to_dict()}
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "PixelTransform":
        m = np.asarray(d["matrix"], dtype=np.float64)
        if m.shape != (3, 3) or not np.isfinite(m).all():
            raise InputError(f"transform matrix must be a finite 3 x 3, got shape {m.shape}")
        poly = np.asarray(d["poly2"], dtype=np.float64) if d.get("poly2") is not None else None
        tp = np.asarray(d["tiepoints"], dtype=np.float64).reshape(-1, 4) if d.get("tiepoints") else None
        n = d.get("native")
        native = None
        if n:
            nm = np.asarray(n["matrix"], dtype=np.float64)
            if nm.shape != (3, 3) or not np.isfinite(nm).all():
                raise InputError(f"native transform matrix must be a finite 3 x 3, got shape {nm.shape}")
            native = Native(nm, Grid.from_dict(n["grid"]))
        return PixelTransform(str(d.get("model", "affine")), m, poly, tp, native)

    def for_warp(self, grid: Grid) -> tuple["PixelTransform", Grid]:
        """The transform and target grid the warp composes: the native correction in the moving raster's own
        georeferencing when there is one (GDAL then reprojects exactly), else this one onto ``grid``."""
        if self.native is None:
            return self, grid
        return PixelTransform(self.model, self.native.matrix), self.native.grid


_HALF = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])  # S: pixel centre -> pixel edge coordinates
_HALF_INV = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])


def centre_to_edge(m: np.ndarray) -> np.ndarray:
    """Pixel-centre matrix -> the same map in pixel-edge coordinates (GDAL's convention): S M S^-1."""
    return _HALF @ np.asarray(m, dtype=np.float64) @ _HALF_INV


def edge_to_centre(m: np.ndarray) -> np.ndarray:
    """A pixel-edge matrix (GDAL's convention, a geotransform's composition) -> the same map between pixel centres:
    S^-1 M S, the inverse of ``centre_to_edge``."""
    return _HALF_INV @ np.asarray(m, dtype=np.float64) @ _HALF


def corrected_geotransform(matrix: np.ndarray, grid: Grid) -> Affine:
    """Affine (pixel edge -> reference map) of the moving raster implied by an affine pixel matrix."""
    e = centre_to_edge(matrix)
    if abs(e[2, 0]) > 1e-12 or abs(e[2, 1]) > 1e-12:
        raise ValueError("a projective matrix has no equivalent geotransform; use GCPs")
    e = e / e[2, 2]
    return grid.transform @ Affine(e[0, 0], e[0, 1], e[0, 2], e[1, 0], e[1, 1], e[1, 2])


def pixel_size(grid: Grid) -> float:
    """Mean pixel size of a grid in map units (1 in pixel space)."""
    a = grid.transform
    return math.sqrt(abs(a.a * a.e - a.b * a.d)) if grid.georeferenced else 1.0
