"""AROSICS global co-registration of one pair, for ``register_vs_gdalwarp.py --arosics PYTHON`` (side by side).

Runs with the Python of a separate environment that has AROSICS (``pip install arosics`` plus GDAL bindings that
match the system libgdal); nothing of AROSICS is imported by sarreg. Settings as a user runs it on a
georeferenced pair: one 256 px matching window, nodata 0 in both, a georeference-corrected copy of the target
(no resampling, ``align_grids=False``), GeoTIFF output. Prints one JSON line with AROSICS's shift and success.

    PYTHON benchmarks/arosics_global.py REF TARGET OUT
"""
import json
import sys

from arosics import COREG


def main() -> int:
    ref, tgt, out = sys.argv[1:4]
    cr = COREG(ref, tgt, path_out=out, fmt_out="GTIFF", ws=(256, 256), nodata=(0.0, 0.0), max_shift=100,
               q=True, align_grids=False)
    cr.calculate_spatial_shifts()
    cr.correct_shifts()
    print(json.dumps({"success": bool(cr.success), "x_shift_px": float(cr.x_shift_px),
                      "y_shift_px": float(cr.y_shift_px)}))
    return 0 if cr.success else 3


if __name__ == "__main__":
    raise SystemExit(main())
