"""Sidecar files of a registration, written next to the output raster (each atomically: temp file + rename).

* ``<out>.report.json``: the ``Report`` (status, transform, quality, timings, versions, options);
* ``<out>.tiepoints.gpkg`` (and ``.geojson``): one point per match at the reference position, with reference and
  moving map and pixel coordinates, residual (px), descriptor similarity and inlier flag; CRS set;
* ``<out>.points``: QGIS Georeferencer GCP file for the MOVING raster: ``#CRS: <WKT of the reference>`` then
  ``mapX,mapY,sourceX,sourceY,enable,dX,dY,residual``. QGIS stores source coordinates in the source layer's own
  coordinates: map coordinates of the moving raster when it is located (by a geotransform, or by GCPs: through
  them, or a stored geotransform without CRS, even the identity), otherwise pixel-edge coordinates with a negative y
  (``sourceY = -(row + 0.5)``; ``Scene.layer_xy``). Pixel-space references get the same conventions for mapX / mapY
  and no ``#CRS`` line. dX, dY, residual are the model
  residuals in reference pixels;
* ``<out>.matches.npz``: keypoints / descriptors / scores of both scenes in R2D2 layout with ``ref_`` and
  ``moving_`` prefixes, ``matches`` (M x 2 indices), ``similarity``, ``inliers``, ``residuals``;
* quicklook PNG: checkerboard of the reference and the moving raster resampled by the estimate, with inlier
  residual vectors (decimated reads only).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from sarreg.config import RegisterConfig
from sarreg.errors import OutputError
from sarreg.features import model_keys
from sarreg.outputs import write_atomic  # the one atomic writer (also used as export.write_atomic)

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from sarreg.estimate import Estimate
    from sarreg.features import Features
    from sarreg.io.raster import Scene
    from sarreg.grid import PixelTransform

log = logging.getLogger(__name__)


# every sidecar role ``register_outputs`` knows (the quicklook, named by the user, is not a sidecar)
ALL_OUTPUTS = RegisterConfig(warp=True, tiepoints=True, geojson=True, points=True, matches_npz=True, model="local")


def earlier_outputs(report: Path, finals: dict[str, Path], stage_out: Path) -> dict[str, tuple[Path, Path]]:
    """Files that the earlier run's report (``report``, about to be overwritten) lists among its outputs and that
    this run (``finals``) will not write: role -> (the file, a stage name no file has); with ``--overwrite`` they are
    removed, so that OUT's folder never mixes two runs: sidecar roles this run has not, and the earlier raster
    under another name beside OUT (``out.tiff`` after ``out.tif``: the sidecars' names are the same). Nothing when
    there is no readable earlier report (files sarreg did not write are left alone); only files in OUT's folder whose
    names start as OUT's do."""
    try:
        old = json.loads(report.read_text()).get("outputs") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    every = register_outputs(Path("x.tif"), ALL_OUTPUTS)
    out = finals["report"]
    stem = out.name.removesuffix(".report.json")
    found: dict[str, tuple[Path, Path]] = {}
    for role, name in old.items():
        p = out.with_name(Path(str(name)).name)
        if role not in every or role == "quicklook" or not p.name.startswith(stem + ".") or p in finals.values():
            continue
        key = role if role not in finals else f"earlier_{role}"
        found[key] = (p, stage_out.with_name(f"{stage_out.name}.{key}.none"))
    return found


def register_outputs(out: str | Path, cfg: RegisterConfig) -> dict[str, Path]:
    """The write set of ``register``: role -> path of every file it may write (raster, sidecars, quicklook);
    OutputError for an OUT without a file name ("" or "."), whose sidecars have none (it was a traceback)."""
    out = Path(out)
    if not out.name:
        raise OutputError(f"{out}: output path is a directory")
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
    roles["moved"] = sidecar(out, ".moved.gpkg")  # only when part of the scene moved on its own (area.second_motion)
    roles["report"] = sidecar(out, ".report.json")
    return roles


def sidecar(out: str | Path, suffix: str) -> Path:
    """``out.tif`` + ``.report.json`` -> ``out.report.json`` (same folder)."""
    out = Path(out)
    return out.with_name(out.stem + suffix)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write UTF-8 text via a temporary file (per process) and rename: never a partial file."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def to_jsonable(o: Any) -> Any:
    """Dicts/lists/NumPy/Path values -> plain JSON types; NaN and inf become None (null)."""
    if isinstance(o, dict):
        return {str(k): to_jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [to_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return to_jsonable(o.tolist())
    if isinstance(o, (np.floating, float)):
        v = float(o)
        return v if math.isfinite(v) else None
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.bool_,)):
        return bool(o)
    if isinstance(o, Path):
        return str(o)
    return o


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write a JSON document (NaN/inf become null) atomically."""
    return write_text_atomic(Path(path), json.dumps(to_jsonable(data), indent=2) + "\n")


def write_tiepoints(path: str | Path, ref_map: np.ndarray, mov_map: np.ndarray, ref_px: np.ndarray,
                    mov_px: np.ndarray, residual: np.ndarray, score: np.ndarray, inlier: np.ndarray,
                    crs: Any | None) -> Path:
    """One point per match at its reference map position (GPKG or GeoJSON from the suffix)."""
    from sarreg.io.vector import write_points

    attrs = {
        "ref_x": ref_map[:, 0], "ref_y": ref_map[:, 1], "moving_x": mov_map[:, 0], "moving_y": mov_map[:, 1],
        "ref_col": ref_px[:, 0], "ref_row": ref_px[:, 1], "moving_col": mov_px[:, 0], "moving_row": mov_px[:, 1],
        "residual_px": np.where(np.isfinite(residual), residual, -1.0).astype(np.float64),
        "score": np.asarray(score, dtype=np.float64), "inlier": np.asarray(inlier, dtype=np.int32),
    }
    return write_points(path, ref_map, attrs, crs, layer="tiepoints")


def write_qgis_points(path: str | Path, ref_map: np.ndarray, source_xy: np.ndarray, enable: np.ndarray,
                      dxy: np.ndarray, crs_wkt: str | None) -> Path:
    """QGIS Georeferencer ``.points`` file (see module docstring for the coordinate conventions)."""
    lines = [f"#CRS: {crs_wkt}"] if crs_wkt else []
    lines.append("mapX,mapY,sourceX,sourceY,enable,dX,dY,residual")
    for (mx, my), (sx, sy), en, (dx, dy) in zip(ref_map, source_xy, enable, dxy):
        res = math.hypot(dx, dy) if math.isfinite(dx) and math.isfinite(dy) else 0.0
        lines.append(f"{mx:.10g},{my:.10g},{sx:.10g},{sy:.10g},{int(bool(en))},"
                     f"{dx if math.isfinite(dx) else 0:.6g},{dy if math.isfinite(dy) else 0:.6g},{res:.6g}")
    return write_text_atomic(Path(path), "\n".join(lines) + "\n")


def write_matches_npz(path: str | Path, ref_feats: Features, mov_feats: Features, idx1: np.ndarray, idx2: np.ndarray,
                      similarity: np.ndarray, inliers: np.ndarray, residuals: np.ndarray,
                      model: tuple[str, str] | None = None) -> Path:
    """Both scenes' features (R2D2 layout, prefixed) plus the matches, in one npz (atomic); ``model`` (weights
    file name, sha256) adds ``model_name`` / ``model_sha256`` (``Features.save_npz``)."""
    path = Path(path)
    data: dict[str, np.ndarray] = dict(model_keys(model))
    for prefix, f in (("ref_", ref_feats), ("moving_", mov_feats)):
        data[prefix + "imsize"] = np.asarray(f.image_size, dtype=np.int64)
        data[prefix + "keypoints"] = f.keypoints.astype(np.float32)
        data[prefix + "descriptors"] = f.descriptors.astype(np.float32)
        data[prefix + "scores"] = f.scores.astype(np.float32)
    data["matches"] = np.stack([idx1, idx2], 1).astype(np.int64) if len(idx1) else np.zeros((0, 2), np.int64)
    data["similarity"] = np.asarray(similarity, dtype=np.float32)
    data["inliers"] = np.asarray(inliers, dtype=bool)
    data["residuals"] = np.asarray(residuals, dtype=np.float32)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **data)

    return write_atomic(path, save)


def write_outline(path: str | Path, outline: BaseGeometry, scene: Scene, attributes: dict[str, Any]) -> Path:
    """A polygon in ``scene``'s pixel coordinates as a one-feature layer in its map coordinates (through its
    geotransform or its GCPs; edges densified to 16 px first)."""
    import shapely

    from sarreg.io.vector import write_features

    geom = shapely.transform(shapely.segmentize(outline, 16.0), scene.xy_to_map)
    geoms = np.asarray(list(shapely.get_parts(geom)) if geom.geom_type == "MultiPolygon" else [geom], dtype=object)
    multi = shapely.multipolygons(geoms)
    return write_features(path, np.asarray([multi], dtype=object), "MultiPolygon",
                          {k: np.asarray([v]) for k, v in attributes.items()}, scene.crs, layer="moved")


def write_quicklook(path: str | Path, ref_scene: Scene, mov_scene: Scene, transform: Estimate | PixelTransform,
                    src: np.ndarray, dst: np.ndarray, inliers: np.ndarray, max_side: int = 1024, squares: int = 8,
                    magnify: float = 10.0) -> Path:
    """Checkerboard of reference / resampled moving (decimated reads) with residual vectors x ``magnify``.

    transform: object with ``apply(N x 2 moving px) -> N x 2 reference px``; src / dst: matches in moving /
    reference pixels. Inlier residuals green, outliers as small red dots.
    """
    from sarreg.io.raster import decimated_shape, read_unit
    from sarreg.quicklook import write_png

    s = min(1.0, max_side / max(ref_scene.width, ref_scene.height))
    rshape = decimated_shape(ref_scene, s)
    ru, rv = read_unit(ref_scene, None, rshape if s < 1 else None)
    sm = min(1.0, max_side / max(mov_scene.width, mov_scene.height))
    mshape = decimated_shape(mov_scene, sm)
    mu, mv = read_unit(mov_scene, None, mshape if sm < 1 else None)
    h, w = ru.shape
    # for each preview pixel of the reference: its full-res reference position -> moving position -> preview
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ref_full = np.stack([(xx + 0.5) * ref_scene.width / w - 0.5, (yy + 0.5) * ref_scene.height / h - 0.5], -1)
    mov_full = _inverse_points(transform, ref_full.reshape(-1, 2))
    mh, mw = mu.shape
    mapx = ((mov_full[:, 0] + 0.5) * mw / mov_scene.width - 0.5).reshape(h, w).astype(np.float32)
    mapy = ((mov_full[:, 1] + 0.5) * mh / mov_scene.height - 0.5).reshape(h, w).astype(np.float32)
    warped = cv2.remap(mu, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    wvalid = cv2.remap(mv.astype(np.float32), mapx, mapy, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=0) > 0.5
    cell = max(1, max(h, w) // squares)
    board = ((yy // cell + xx // cell) % 2).astype(bool)
    grey = np.where(board, np.where(wvalid, warped, 0), np.where(rv, ru, 0))
    img = cv2.cvtColor((np.clip(grey, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    if len(dst):
        pred = transform.apply(src)
        f = np.array([w / ref_scene.width, h / ref_scene.height])
        p0 = (dst + 0.5) * f - 0.5
        p1 = p0 + (pred - dst) * f * magnify
        for a, b, ok in zip(p0, p1, inliers):
            if not (np.isfinite(a).all() and np.isfinite(b).all()):
                continue
            if ok:
                cv2.arrowedLine(img, (int(round(a[0])), int(round(a[1]))), (int(round(b[0])), int(round(b[1]))),
                                (0, 220, 0), 1, cv2.LINE_AA, tipLength=0.3)
            else:
                cv2.circle(img, (int(round(a[0])), int(round(a[1]))), 1, (0, 0, 230), -1)
    return write_png(path, img)


def _inverse_points(transform: Estimate | PixelTransform, ref_xy: np.ndarray) -> np.ndarray:
    """Reference px -> moving px: exact for matrices; for poly2 / tps, Newton steps from the affine inverse."""
    m = np.asarray(transform.matrix, dtype=np.float64)
    inv = np.linalg.inv(m)
    p = np.c_[ref_xy, np.ones(len(ref_xy))] @ inv.T
    with np.errstate(divide="ignore", invalid="ignore"):
        x = p[:, :2] / p[:, 2:3]
    if getattr(transform, "model", "") in ("poly2", "tps"):
        a = inv[:2, :2]
        for _ in range(3):  # fixed-point refinement: x <- x - A^-1 (f(x) - target)
            x = x - (transform.apply(x) - ref_xy) @ a.T
    return x
