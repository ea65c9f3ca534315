#!/usr/bin/env python3
"""Generate the sample scenes used by ``make demo`` (and handy for trying sarreg by hand).

Two speckled SAR-like acquisitions of the same synthetic ground (``sarreg.synth``), as real GeoTIFFs:

* ``scene_a.tif``  reference, date 1: float32 linear power, UTM 31N (EPSG:32631), 10 m pixels, nodata 0.
* ``scene_b.tif``  target, date 2: independent speckle, ~10 % of the ground changed (flooding, crops), a
  footprint shifted by a known sub-pixel offset, a no-data swath edge in one corner, and a georeference that
  is wrong by a known amount (as in a scene with poor orbit data) - the misregistration to recover.
* ``scene_b.png``  the same target as an 8-bit dB image without georeference (pixel-space input).
* ``truth.json``   the true offsets (pixels and metres) and the transform A pixel -> B pixel.

Pixel convention: x = column, y = row, (0, 0) = centre of the top-left pixel. Usage::

    python samples/make_samples.py --out demo_out/samples [--size 1024] [--seed 7]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from affine import Affine

from sarreg import synth

CRS = "EPSG:32631"
PIXEL_M = 10.0
GRID_ORIGIN = (500_000.0, 4_800_000.0)  # top-left corner of the big synthetic ground grid (easting, northing)
MARGIN = 96                              # pixels of ground around scene A, so that B can be shifted
SHIFT_PX = (37.4, -21.7)                 # B's footprint relative to A's, pixels (dx = columns, dy = rows)
GEOREF_ERROR_M = (55.0, -35.0)           # error written into B's geotransform (easting, northing), metres
LOOKS_A, LOOKS_B = 4.0, 3.0
CHANGE_FRACTION = 0.10


def _translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], dtype=np.float64)


def _corner_transform(col0: float, row0: float, error_m: tuple[float, float] = (0.0, 0.0)) -> Affine:
    """Geotransform of a raster whose top-left pixel CORNER sits at (col0, row0) of the big grid's corners."""
    e = GRID_ORIGIN[0] + col0 * PIXEL_M + error_m[0]
    n = GRID_ORIGIN[1] - row0 * PIXEL_M + error_m[1]
    return Affine(PIXEL_M, 0.0, e, 0.0, -PIXEL_M, n)


def _write_png(path: Path, linear: np.ndarray, valid: np.ndarray) -> None:
    """8-bit grey image of 10*log10(power), 1-99 percentile stretch, written atomically."""
    db = 10.0 * np.log10(np.where(valid, linear, 1.0))
    lo, hi = np.percentile(db[valid], [1, 99])
    img = np.clip((db - lo) / (hi - lo) * 254.0 + 1.0, 1, 255).astype(np.uint8)
    img[~valid] = 0
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    try:
        if not cv2.imwrite(str(tmp), img):
            raise OSError(f"{path}: could not write PNG")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def make_samples(out: Path, size: int = 1024, seed: int = 7) -> dict:
    """Write the sample files into ``out`` (created if needed); returns the truth dictionary."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    big = size + 2 * MARGIN
    refl1 = synth.reflectivity(big, big, seed)
    refl2 = synth.temporal_change(refl1, rng, CHANGE_FRACTION)

    # Output pixel (x, y) of a scene samples big-grid pixel (x + ox, y + oy) (pixel-centre convention).
    ax, ay = float(MARGIN), float(MARGIN)
    bx, by = MARGIN + SHIFT_PX[0], MARGIN + SHIFT_PX[1]
    a = synth.speckle(synth.warp_image(refl1, _translation(ax, ay), (size, size)), LOOKS_A, rng)
    b = synth.speckle(synth.warp_image(refl2, _translation(bx, by), (size, size)), LOOKS_B, rng)

    # swath edge: B has no data beyond a slanted line in its lower-right corner
    yy, xx = np.mgrid[0:size, 0:size]
    valid_b = xx + 0.6 * yy < 1.3 * size
    b = np.where(valid_b, b, 0.0).astype(np.float32)

    a_path = synth.write_geotiff(out / "scene_a.tif", a, _corner_transform(ax, ay), CRS, nodata=0.0)
    b_true = _corner_transform(bx, by)
    b_written = _corner_transform(bx, by, GEOREF_ERROR_M)
    b_path = synth.write_geotiff(out / "scene_b.tif", b, b_written, CRS, nodata=0.0)
    png_path = out / "scene_b.png"
    _write_png(png_path, b, valid_b)

    # B pixel (x, y) shows the ground of A pixel (x + dx, y + dy):  x_b = x_a - dx, y_b = y_a - dy
    a_to_b = _translation(-SHIFT_PX[0], -SHIFT_PX[1])
    truth = {
        "description": "sarreg sample pair made by samples/make_samples.py (synthetic, deterministic)",
        "seed": seed,
        "size": [size, size],
        "crs": CRS,
        "pixel_size_m": PIXEL_M,
        "files": {"reference": a_path.name, "target": b_path.name, "target_png": png_path.name},
        "pixel_convention": "x = column, y = row, (0, 0) = centre of the top-left pixel",
        "b_footprint_offset_px": {"dx": SHIFT_PX[0], "dy": SHIFT_PX[1],
                                  "meaning": "pixel (x, y) of B images the ground of pixel (x + dx, y + dy) of A"},
        "homography_a_to_b_px": a_to_b.tolist(),
        "b_georef_error_m": {"easting": GEOREF_ERROR_M[0], "northing": GEOREF_ERROR_M[1],
                             "meaning": "B's geotransform is displaced by this much; the correction moves B by "
                                        "the opposite amount"},
        "b_geotransform_written": list(b_written)[:6],
        "b_geotransform_true": list(b_true)[:6],
        "looks": {"reference": LOOKS_A, "target": LOOKS_B},
        "changed_fraction": CHANGE_FRACTION,
        "nodata": 0.0,
    }
    tmp = out / f".truth.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(truth, indent=2) + "\n")
    tmp.replace(out / "truth.json")
    return truth


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("demo_out/samples"), help="output folder")
    ap.add_argument("--size", type=int, default=1024, help="scene width = height in pixels (>= 64)")
    ap.add_argument("--seed", type=int, default=7, help="random seed (same seed, same files)")
    args = ap.parse_args(argv)
    if args.size < 64:
        ap.error("--size must be at least 64")
    truth = make_samples(args.out, args.size, args.seed)
    for name in (*truth["files"].values(), "truth.json"):
        print(args.out / name)
    dx, dy = truth["b_footprint_offset_px"]["dx"], truth["b_footprint_offset_px"]["dy"]
    ee, en = GEOREF_ERROR_M
    print(f"B footprint offset vs A: dx={dx} px, dy={dy} px; B georeference error: {ee:+} m E, {en:+} m N",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
