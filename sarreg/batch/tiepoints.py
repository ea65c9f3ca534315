"""``tiepoints.gpkg`` of a batch: every scene's tie points in one layer, at their reference map positions."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sarreg.batch.results import BatchSummary, reference_grid


def merge_tiepoints(summary: BatchSummary, outdir: Path, path: Path,
                    chain_matrices: dict[str, list[list[float]] | None] | None = None) -> int | None:
    """One GeoPackage with every scene's tie points (from ``<scene>_reg.tiepoints.gpkg``) plus a ``scene`` column.

    Points sit at their reference map position; in a chain they are placed through the scene's composed matrix
    (the per-scene files of a chain hold positions in the predecessor's grid). Returns the number of points, or
    None when no scene has tie points.
    """
    import pyogrio

    from sarreg.io.vector import write_points
    from sarreg.grid import Grid

    xy_all, attrs_all, crs = [], [], None
    grid = None
    for r in summary.scenes:
        name = next((n for n in r.outputs if n.endswith(".tiepoints.gpkg")), None)
        if name is None or not (outdir / name).is_file():
            continue
        meta, _, geom, data = pyogrio.raw.read(outdir / name)
        fields = list(meta["fields"])
        cols = {f: np.asarray(v) for f, v in zip(fields, data)}
        if chain_matrices is not None and chain_matrices.get(r.scene) is not None and "moving_col" in cols:
            if grid is None:
                grid = Grid.from_dict(reference_grid(summary.reference))
                crs = grid.crs_wkt
            from sarreg.estimate import apply_matrix

            mov = np.c_[cols["moving_col"], cols["moving_row"]].astype(np.float64)
            ref_px = apply_matrix(np.asarray(chain_matrices[r.scene]), mov)
            xy = grid.px_to_map(ref_px)
            cols["ref_col"], cols["ref_row"] = ref_px[:, 0], ref_px[:, 1]
            cols["ref_x"], cols["ref_y"] = xy[:, 0], xy[:, 1]
        else:
            import shapely

            pts = shapely.from_wkb(geom) if len(geom) else np.zeros(0, dtype=object)
            xy = shapely.get_coordinates(pts) if len(pts) else np.zeros((0, 2))
            crs = crs or meta.get("crs")
        n = len(xy)
        attrs_all.append({"scene": np.array([r.scene] * n, dtype=object), "date": np.array([r.date or ""] * n,
                          dtype=object), "status": np.array([r.status] * n, dtype=object), **cols})
        xy_all.append(np.asarray(xy, dtype=np.float64).reshape(-1, 2))
    if not xy_all:
        return None
    names: list[str] = []
    for a in attrs_all:
        names += [k for k in a if k not in names]
    merged: dict[str, np.ndarray] = {}
    for k in names:
        parts = []
        for a, xy in zip(attrs_all, xy_all):
            if k in a:
                parts.append(np.asarray(a[k]))
            else:
                parts.append(np.full(len(xy), np.nan) if k not in ("scene", "date", "status")
                             else np.array([""] * len(xy), dtype=object))
        merged[k] = np.concatenate(parts) if parts else np.zeros(0)
    xy = np.concatenate(xy_all)
    if crs and not isinstance(crs, str):
        crs = str(crs)
    write_points(path, xy, merged, crs, layer="tiepoints")
    return int(len(xy))
