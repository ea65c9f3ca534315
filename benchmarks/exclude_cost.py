"""What ``sarreg register --exclude`` costs, side by side in one run, on inputs shaped like users' products
(float32, DEFLATE, 256 px tiles, nodata border, no overviews: ``register_vs_gdalwarp.make_pair``).

The exclusion is a water-like mask: a smooth random field at 1/32 resolution thresholded to about 15 % of the
scene, given two ways a user would have it:

* ``polygons``: its outlines as a GeoPackage in EPSG:4326 (so the polygons are reprojected and densified), many
  polygons with many vertices;
* ``raster``: a uint8 mask on the scene's own grid (DEFLATE, tiled), read window by window with every image read.

Per run, each in a fresh process (``register_vs_gdalwarp.run_child``): wall time, the child's peak RSS, the error of
the recovered transform against the truth, the share of the reference the report says was excluded; then the ratio
of each exclusion run to the plain run.

Usage::

    python benchmarks/exclude_cost.py WORK_DIR [--sizes 4096,10240] [--weights PATH]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import register_vs_gdalwarp as rv  # noqa: E402

COARSE = 32  # the mask is drawn at 1/32 resolution


def _coarse_mask(size: int) -> np.ndarray:
    """About 15 % of the cells, in smooth blobs (lakes, rivers) of a low-resolution random field."""
    import cv2

    n = size // COARSE + 1
    f = cv2.GaussianBlur(np.random.default_rng(size).normal(size=(n, n)).astype(np.float32), (0, 0), 4.0)
    return f > np.quantile(f, 0.85)


def make_exclusions(work: Path, ref: Path, size: int) -> tuple[Path, Path, dict]:
    """The mask as a GeoPackage of polygons (EPSG:4326) and as a raster on the reference's grid."""
    import pyogrio
    import rasterio
    import shapely
    from affine import Affine
    from pyproj import Transformer
    from rasterio.features import shapes

    gpkg, tif = work / f"water_{size}.gpkg", work / f"water_{size}.tif"
    bad = _coarse_mask(size)
    with rasterio.open(ref) as ds:
        t, crs, prof = ds.transform, ds.crs, dict(ds.profile)
    geoms = [shapely.geometry.shape(g) for g, _ in
             shapes(bad.astype(np.uint8), mask=bad, transform=t @ Affine.scale(COARSE))]
    geoms = shapely.segmentize(np.asarray(geoms, dtype=object), 4 * COARSE * t.a)  # vertices along the edges
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    ll = shapely.transform(geoms, lambda xy: np.stack(to_ll.transform(*xy.T), axis=1))
    if not gpkg.exists():
        pyogrio.raw.write(gpkg, geometry=shapely.to_wkb(ll), field_data=[], fields=[], crs="EPSG:4326",
                          driver="GPKG", geometry_type="Polygon")
    if not tif.exists():
        prof.update(dtype="uint8", nodata=None, count=1)
        tmp = tif.with_name(tif.name + ".tmp.tif")
        with rasterio.open(tmp, "w", **prof) as dst:
            for _, w in dst.block_windows(1):
                rows = (np.arange(w.row_off, w.row_off + w.height) // COARSE)[:, None]
                cols = (np.arange(w.col_off, w.col_off + w.width) // COARSE)[None, :]
                dst.write(bad[rows, cols].astype(np.uint8), 1, window=w)
        tmp.replace(tif)
    info = {"polygons": len(geoms), "vertices": int(shapely.get_num_coordinates(geoms).sum()),
            "masked_fraction": round(float(bad.mean()), 3)}
    return gpkg, tif, info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--sizes", default="4096,10240")
    ap.add_argument("--weights", default=None)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    for size in [int(s) for s in a.sizes.split(",")]:
        ref, mov = rv.make_pair(a.work, size)
        gpkg, tif, info = make_exclusions(a.work, ref, size)
        print(json.dumps({"size": size, "exclusion": info}), flush=True)
        runs = {}
        for name, extra in (("plain", []), ("polygons", ["--exclude", str(gpkg)]),
                            ("raster", ["--exclude", str(tif)])):
            out = a.work / f"ex_{name}_{size}.tif"
            r = rv.register(rv.REPO, ref, mov, out, a.weights, extra, a.work / f"ex_{name}_{size}.log")
            rep = json.loads(out.with_name(out.stem + ".report.json").read_text())
            ex = (rep.get("stages", {}).get("relate") or {}).get("excluded") or {}
            runs[name] = r
            print(json.dumps({"size": size, "run": name, "exit": r["exit"], "status": r["status"],
                              "wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"],
                              "grid_error_px": rv.grid_error(r["matrix"], size),
                              "excluded_reference": ex.get("reference"), "load_before": r["load_before"],
                              "timings_s": r["timings_s"]}), flush=True)
        for name in ("polygons", "raster"):
            print(json.dumps({"size": size, "ratio": f"{name} / plain",
                              "wall": round(runs[name]["wall_s"] / runs["plain"]["wall_s"], 2),
                              "peak_rss": round(runs[name]["peak_rss_mb"] / runs["plain"]["peak_rss_mb"], 2)}),
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
