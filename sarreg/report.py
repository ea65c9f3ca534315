"""The report of a ``register`` run and its sidecars: the ``Report`` (``<out>.report.json``), the measures it states
(correction at the overlap centre, ``--max-shift``, versions, peak memory) and the tie point sidecars (GPKG /
GeoJSON, QGIS ``.points``, matches npz) written from the estimate's tie points (``sarreg.pipeline`` chains them)."""
from __future__ import annotations

import platform
import resource
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from sarreg import __version__
from sarreg.config import RegisterConfig
from sarreg.estimate import Estimate, apply_matrix, decompose
from sarreg.grid import Grid
from sarreg.io.raster import Scene
from sarreg.quality import mirrored
from sarreg.stage import StageResult

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

STATUS_EXIT = {"ok": 0, "low_quality": 2, "failed": 3}


@dataclass
class Report:
    """Result of one registration; ``to_dict()`` is the JSON written to ``<out>.report.json``.

    matrix: 3 x 3 moving pixel -> reference pixel (pixel-centre convention), None when failed.
    geotransform: corrected GDAL geotransform of the moving raster in the reference CRS (affine models).
    quality: inliers, ratios, RMSE (px and map units), coverage and the gates' measures.
    correction: how far the estimate moves the moving raster from its georeferencing (overlap centre).
    """

    status: str
    message: str
    ref: str
    moving: str
    output: str | None
    model: str
    matrix: list[list[float]] | None = None
    transform: dict[str, Any] | None = None
    geotransform: list[float] | None = None
    map_matrix: list[list[float]] | None = None
    reference_grid: dict[str, Any] | None = None
    quality: dict[str, Any] = field(default_factory=dict)
    correction: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return STATUS_EXIT.get(self.status, 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        import json

        from sarreg.export import to_jsonable

        return json.dumps(to_jsonable(self.to_dict()), indent=2)


# --------------------------------------------------------------------------------------------- helpers
def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def correction_at_centre(ref: Scene, prior: np.ndarray, est: Estimate, area: BaseGeometry) -> dict[str, Any]:
    """How far the estimate moves the moving raster from where its georeferencing put it (overlap centre); a
    mirrored estimate (``quality.mirrored``) says so, and its rotation is the turn after reversing the columns."""
    c = area.centroid
    centre_ref = np.array([[c.x, c.y]])
    mov_c = apply_matrix(np.linalg.inv(prior), centre_ref)
    d = (est.apply(mov_c) - centre_ref)[0]
    flip = mirrored(prior, est.matrix)  # (then the turn and scale after reversing the moving image's columns)
    rel = decompose(np.linalg.inv(prior) @ est.matrix @ (np.diag([-1.0, 1.0, 1.0]) if flip else np.eye(3)))
    out = {"at_ref_px": [round(c.x, 3), round(c.y, 3)], "dx_px": float(d[0]), "dy_px": float(d[1]),
           "shift_px": float(np.hypot(*d)), "rotation_deg": rel["rotation_deg"], "scale": rel["scale_x"]}
    if flip:
        out["mirrored"] = True
    if ref.georeferenced:
        a = ref.transform
        dm = np.array([a.a * d[0] + a.b * d[1], a.d * d[0] + a.e * d[1]])
        out.update({"dx_map": float(dm[0]), "dy_map": float(dm[1]), "shift_map": float(np.hypot(*dm)),
                    "map_units": _units(ref)})
    return out


def enforce_max_shift(rep: Report, cfg: RegisterConfig) -> None:
    """``--max-shift`` on the final correction (reference px at the overlap centre): a larger one makes an ok
    result low_quality, with the reason in the message (the coarse stage only filtered matches by it)."""
    shift = rep.correction.get("shift_px")
    if cfg.max_shift is None or shift is None or not shift > cfg.max_shift:
        return
    why = f"correction of {shift:.2f} px exceeds --max-shift {cfg.max_shift:g} px"
    rep.status, rep.message = ("low_quality", why) if rep.status == "ok" else (rep.status, f"{rep.message}; {why}")


def _units(scene: Scene) -> str:
    try:
        return "degree" if scene.crs.is_geographic else str(scene.crs.linear_units or "unknown")
    except Exception:
        return "unknown"


def versions_of_libraries() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import rasterio
    import shapely
    from osgeo import gdal

    try:  # from the installed metadata: importing torch costs a second and the run may not need it
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "not installed"
    return {"sarreg": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "opencv": cv2.__version__, "gdal": gdal.__version__, "rasterio": rasterio.__version__,
            "torch": torch_version, "shapely": shapely.__version__}


def write_match_sidecars(rep: Report, rs: Scene, ms: Scene, fine: StageResult, kp: StageResult,
                          est: Estimate | None, cfg: RegisterConfig, out: Path, prior: np.ndarray) -> None:
    """Tie points (GPKG/GeoJSON, QGIS .points) of the matches the estimate was fitted to (``fine``: keypoint or
    correlation tie points); the keypoint matches ``kp`` with their features in the npz."""
    from sarreg import export

    n = len(fine.src)
    inl = est.inliers if est is not None and est.inliers.size == n else np.zeros(n, bool)
    resid = est.residuals if est is not None and est.residuals.size == n else np.full(n, np.nan)
    pred = est.apply(fine.src) if est is not None else np.full((n, 2), np.nan)
    grid = Grid.from_scene(rs)
    ref_map = grid.px_to_map(fine.dst)
    # where QGIS places the pixels (``Scene.layer_xy``): ground coordinates through a geotransform or GCPs (QGIS opens
    # a GCP-only raster warped by them); a geotransform without a CRS (``local``, or a stored identity) places a
    # raster in its frame; pixel space: QGIS shows non-georeferenced rasters with y = -row (pixel edges)
    mov_map = ms.layer_xy(fine.src)
    crs = rs.crs if rs.geolocated else None
    if not rs.georeferenced:  # GCP-only reference: ground coordinates through its GCPs
        ref_map = rs.layer_xy(fine.dst)
    if cfg.tiepoints:
        p = export.sidecar(out, ".tiepoints.gpkg")
        export.write_tiepoints(p, ref_map, mov_map, fine.dst, fine.src, resid, fine.similarity, inl, crs)
        rep.outputs["tiepoints"] = str(p)
        if cfg.geojson:
            p = export.sidecar(out, ".tiepoints.geojson")
            export.write_tiepoints(p, ref_map, mov_map, fine.dst, fine.src, resid, fine.similarity, inl, crs)
            rep.outputs["tiepoints_geojson"] = str(p)
    if cfg.points:
        p = export.sidecar(out, ".points")
        export.write_qgis_points(p, ref_map, mov_map, inl, pred - fine.dst, crs.to_wkt() if crs else None)
        rep.outputs["points"] = str(p)
    if cfg.matches_npz and len(kp.src):
        p = export.sidecar(out, ".matches.npz")
        kp_resid = np.hypot(*(est.apply(kp.src) - kp.dst).T) if est is not None else np.full(len(kp.src), np.nan)
        kp_inl = kp_resid < (est.threshold if est is not None else 0)
        export.write_matches_npz(p, kp.ref_feats, kp.mov_feats, kp.idx1, kp.idx2, kp.similarity, kp_inl,
                                 kp_resid, model=(rep.weights.get("name", ""), rep.weights.get("sha256", "")))
        rep.outputs["matches"] = str(p)
