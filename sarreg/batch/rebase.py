"""``--chain``: a scene's tie point sidecars moved from its link (the predecessor's grid, under the predecessor's own
uncorrected georeferencing) onto the reference grid, through the predecessor's composed matrix. The link's files put
every point off by the predecessor's correction (a `.points` file loaded in QGIS's georeferencer placed the scene
there)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sarreg.export import sidecar, write_qgis_points
from sarreg.grid import Grid

SIDECARS = (".points", ".tiepoints.gpkg", ".tiepoints.geojson")


def _affine(g: dict[str, Any] | None) -> Grid | None:
    """The grid when it is placed by a geotransform in a CRS (the only frame a link's map coordinates are rebased
    from), else None."""
    return Grid.from_dict(g) if g and g.get("crs_wkt") and not g.get("gcps") else None


def _to_reference(pred_map: np.ndarray, pred: Grid, t_pred: np.ndarray, ref: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Predecessor map coordinates -> (reference pixels, reference map coordinates)."""
    from sarreg.estimate import apply_matrix

    ref_px = apply_matrix(t_pred, pred.map_to_px(pred_map))
    return ref_px, ref.px_to_map(ref_px)


def rebase_sidecars(outdir: Path, stage: Path, out_name: str, t_pred: np.ndarray, pred_grid: dict[str, Any] | None,
                    ref_grid: dict[str, Any]) -> list[str]:
    """Rewrite the link's ``.points`` / ``.tiepoints.gpkg`` / ``.geojson`` of ``out_name`` (in ``outdir``: held with it)
    into ``stage`` on the reference grid (published over them with the warp). Only between grids placed by
    geotransforms in a CRS; returns the names written."""
    import pyogrio
    import shapely

    from sarreg.io.vector import write_points

    pred, ref = _affine(pred_grid), _affine(ref_grid)
    if pred is None or ref is None:
        return []
    t_pred = np.asarray(t_pred, dtype=np.float64)
    done = []
    for suffix in SIDECARS:
        src = sidecar(outdir / out_name, suffix)
        if not src.is_file():
            continue
        dst = stage / src.name
        if suffix == ".points":
            rows = [ln.split(",") for ln in src.read_text(encoding="utf-8").splitlines()
                    if ln and not ln.startswith(("#", "mapX"))]
            a = np.asarray(rows, dtype=np.float64).reshape(-1, 8)
            _, xy = _to_reference(a[:, :2], pred, t_pred, ref)
            write_qgis_points(dst, xy, a[:, 2:4], a[:, 4] > 0, a[:, 5:7], ref.crs_wkt)
        else:
            meta, _, geom, data = pyogrio.raw.read(src)
            cols = {f: np.asarray(v) for f, v in zip(meta["fields"], data)}
            pts = shapely.from_wkb(geom) if len(geom) else np.zeros(0, dtype=object)
            ref_px, xy = _to_reference(shapely.get_coordinates(pts).reshape(-1, 2), pred, t_pred, ref)
            cols.update(ref_col=ref_px[:, 0], ref_row=ref_px[:, 1], ref_x=xy[:, 0], ref_y=xy[:, 1])
            write_points(dst, xy, cols, ref.crs_wkt, layer="tiepoints")
        done.append(dst.name)
    return done
