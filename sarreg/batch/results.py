"""What a batch returns and records: ``SceneResult`` per scene, ``BatchSummary`` per run, the summary numbers
derived from a pipeline ``Report`` (shift / rotation of the correction at the reference centre), and the warnings a
worker collects for a scene (``SceneWarnings``)."""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sarreg.pipeline import Report

OUT_SUFFIX = "_reg.tif"
CHAIN_SUFFIX = "_reg.chain.json"  # --chain: the composed transform of a scene, a report ``apply`` takes
STATUSES = ("ok", "low_quality", "failed")
CSV_COLUMNS = ("scene", "date", "status", "shift_x_m", "shift_y_m", "shift_x_px", "shift_y_px", "rotation_deg",
               "rmse_px", "inliers", "coverage", "time_s", "resumed", "via", "error", "path", "stac_item",
               "stac_datetime", "stac_asset")


def scene_output_names(key: str) -> list[str]:
    """Every file name in OUTDIR a scene's tasks may publish: the raster, register's sidecars, the chain's report."""
    from sarreg.export import ALL_OUTPUTS, register_outputs

    names = [p.name for p in register_outputs(Path(key + OUT_SUFFIX), ALL_OUTPUTS).values()]
    return [*names, *(key + OUT_SUFFIX.removesuffix(".tif") + s for s in (".report.json", ".chain.json"))]


@dataclass
class SceneResult:
    """One scene of a batch: what ``summary.csv`` holds per row, plus where its outputs are.

    shift_x_px / shift_y_px: correction of the scene's georeferencing at the reference centre, in reference pixels
    (where the scene pixel its georeferencing puts at the centre really lies, minus the centre); shift_x_m /
    shift_y_m: the same in the reference's map units, in metres east and north for a geographic CRS (None for
    pixel-space references); rotation_deg: rotation
    relative to the georeferencing; rmse_px: inlier RMSE (chained: root-sum-square along the chain); inliers;
    coverage (0..1); time_s: wall time of this scene's task(s); resumed: True when taken from the manifest without
    recomputation. via: chain predecessor the scene was registered to. ref_cache_hits: reference extractions
    served from the cache. outputs: file name (in OUTDIR) -> sha256; timings: per-stage wall seconds (the
    pipeline's, plus ``publish``) and ``cpu`` (CPU seconds of the task); matrix: 3 x 3 moving px -> reference px.
    warnings: problems that did not fail the scene (e.g. unreadable date metadata), one line each.
    stac_item / stac_datetime / stac_asset: for a scene given as a STAC Item (an ItemCollection's, a list's line), the
    item's id, its datetime as the item says it (ISO 8601; ``start_datetime`` for items with a range) and the asset
    read; None otherwise.
    """

    scene: str
    path: str
    date: str | None = None
    status: str = "failed"
    shift_x_m: float | None = None
    shift_y_m: float | None = None
    shift_x_px: float | None = None
    shift_y_px: float | None = None
    rotation_deg: float | None = None
    rmse_px: float | None = None
    inliers: int | None = None
    coverage: float | None = None
    time_s: float | None = None
    error: str | None = None
    resumed: bool = False
    via: str | None = None
    ref_cache_hits: int | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    matrix: list[list[float]] | None = None
    warnings: list[str] = field(default_factory=list)
    stac_item: str | None = None
    stac_datetime: str | None = None
    stac_asset: str | None = None

    @property
    def output(self) -> str | None:
        """File name of the warped raster in OUTDIR (None when the scene failed)."""
        name = self.scene + OUT_SUFFIX
        return name if name in self.outputs else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "SceneResult":
        """Tolerant of unknown keys (manifests of other versions)."""
        known = SceneResult.__dataclass_fields__
        return SceneResult(**{k: v for k, v in d.items() if k in known})


@dataclass
class BatchSummary:
    """Result of ``batch``: one ``SceneResult`` per scene (in time order when all dates are known).

    warnings: run-level problems that cost no scene (reference cache not built, plot or tie point layer not
    written), one line each; also in ``summary.json``.
    """

    reference: str
    outdir: str
    mode: str
    scenes: list[SceneResult]
    wall_s: float = 0.0
    dashboard: str | None = None
    workers: int = 0
    files: dict[str, str] = field(default_factory=dict)
    reference_cache: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    stac_item: str | None = None
    stac_datetime: str | None = None
    stac_asset: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        c = {s: 0 for s in STATUSES}
        for r in self.scenes:
            c[r.status] = c.get(r.status, 0) + 1
        c["resumed"] = sum(r.resumed for r in self.scenes)
        return c

    @property
    def exit_code(self) -> int:
        """0 when every scene is ok, 2 when some are low quality (none failed), 3 when some failed."""
        c = self.counts
        return 3 if c["failed"] else 2 if c["low_quality"] else 0

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "outdir": self.outdir, "mode": self.mode, "wall_s": self.wall_s,
                "workers": self.workers, "dashboard": self.dashboard, "reference_cache": self.reference_cache,
                "counts": self.counts, "exit_code": self.exit_code, "files": self.files,
                "warnings": self.warnings, "scenes": [r.to_dict() for r in self.scenes]}


def worst(a: str, b: str) -> str:
    """The worse of two statuses (a chain is as good as its weakest link)."""
    return a if STATUSES.index(a) >= STATUSES.index(b) else b


def result_fields(rep: "Report", grid: dict[str, Any] | None, prior: np.ndarray | None) -> dict[str, Any]:
    """Summary numbers from a pipeline ``Report``: its quality block, and the correction its matrix makes to the
    georeferencing ``prior`` (``sarreg.relate.prior_matrix`` of the pair; None = identity)."""
    q = rep.quality or {}
    out: dict[str, Any] = {"rmse_px": num(q.get("rmse_px")), "inliers": integer(q.get("inliers")),
                           "coverage": num(q.get("coverage"))}
    if rep.matrix is not None:
        out.update(matrix_fields(np.asarray(rep.matrix, dtype=np.float64), grid, prior))
    return out


def matrix_fields(m: np.ndarray, grid: dict[str, Any] | None, prior: np.ndarray | None) -> dict[str, Any]:
    """Correction of the georeferencing implied by ``m`` (moving px -> reference px), at the reference centre.

    ``prior`` is where the georeferencing alone puts the moving pixels (identity in pixel space). The shift is
    d = m(p) - c for the moving pixel p = prior^-1(c) that the georeferencing puts at the reference centre c:
    how far that pixel really is from where its georeferencing says (reference px; map units through the
    reference affine). rotation_deg: rotation of prior^-1 . m.
    """
    from sarreg.estimate import apply_matrix, decompose

    out: dict[str, Any] = {"matrix": m.tolist()}
    prior = np.eye(3) if prior is None else prior
    w, h = (grid["width"], grid["height"]) if grid else (1, 1)
    c = np.array([[(w - 1) / 2.0, (h - 1) / 2.0]])
    p = apply_matrix(np.linalg.inv(prior), c)
    d = (apply_matrix(m, p) - c)[0]
    out["shift_x_px"], out["shift_y_px"] = round(float(d[0]), 4), round(float(d[1]), 4)
    out["rotation_deg"] = round(float(decompose(np.linalg.inv(prior) @ m)["rotation_deg"]), 5)
    if grid and grid.get("crs_wkt"):
        g = grid["geotransform"]  # GDAL order: c, a, b, f, d, e
        dx, dy = g[1] * d[0] + g[2] * d[1], g[4] * d[0] + g[5] * d[1]
        out["shift_x_m"], out["shift_y_m"] = round(dx, 4), round(dy, 4)
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            crs = CRS.from_wkt(grid["crs_wkt"])
        except CRSError:
            crs = None
        if crs is not None and crs.is_geographic:  # (degrees rounded to 1e-4, ~10 m): metres east and north
            lon = g[0] + g[1] * (c[0, 0] + 0.5) + g[2] * (c[0, 1] + 0.5)
            lat = g[3] + g[4] * (c[0, 0] + 0.5) + g[5] * (c[0, 1] + 0.5)
            geod = crs.get_geod()
            out["shift_x_m"] = round(math.copysign(geod.inv(lon, lat, lon + dx, lat)[2], dx), 4)
            out["shift_y_m"] = round(math.copysign(geod.inv(lon, lat, lon, lat + dy)[2], dy), 4)
    return out


def num(v: Any) -> float | None:
    """A finite float rounded to 4 decimals, else None."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return round(f, 4) if math.isfinite(f) else None


def integer(v: Any) -> int | None:
    """An int, else None: report fields may be missing or not numbers, and a summary row must still be written."""
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def reference_grid(path: str | Path) -> dict[str, Any]:
    """Size, GDAL geotransform and CRS WKT (None in pixel space) of the reference: the grid of every output."""
    import rasterio

    from sarreg.grid import Grid

    from sarreg.io.raster import open_dataset

    with open_dataset(path) as ds:
        geo = ds.crs is not None and ds.transform != rasterio.Affine.identity()
        return Grid(ds.width, ds.height, ds.transform if geo else rasterio.Affine.identity(),
                    ds.crs.to_wkt() if geo else None).to_dict()


class SceneWarnings(logging.Handler):
    """Warnings sarreg logs about one scene's inputs (a fill value read as nodata, ...) while a worker runs it, kept
    for the scene's result (``SceneResult.warnings``, the summary) instead of the worker's stderr, where Python's
    last-resort handler printed them bare, once per scene and read. A context manager on the ``sarreg`` logger; a
    warning that names neither input (another scene's, in a worker with several threads) and errors go on to
    stderr as before."""

    def __init__(self, *inputs: Any) -> None:
        super().__init__(logging.WARNING)
        self.names = [str(p) for p in inputs]
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage().splitlines()[0]
        if record.levelno != logging.WARNING or not any(line.startswith(n) for n in self.names):
            logging.lastResort.handle(record)  # (as without this handler: errors with their traceback)
        elif line not in self.lines:
            self.lines.append(line)

    def __enter__(self) -> "SceneWarnings":
        logging.getLogger("sarreg").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("sarreg").removeHandler(self)
