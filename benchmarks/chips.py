"""``sarreg register`` on image chips: two dates of one scene cut to n x n px (machine-learning datasets' patches),
the georeferencing a few pixels off.

Pairs from ``sarreg.synth.chip_pair`` (``--looks`` speckle, ``--change`` share changed, the second date's content
moved by up to 6 px that its georeferencing does not carry; float32 linear power, DEFLATE, nodata 0, UTM 10 m, the
same geotransform for both; ``--pixel-space``: no georeferencing). Per size and seed, ``sarreg register`` (defaults,
no warp) in a fresh process: status, how far the georeferencing is off, the error of the result at the chip centre
(px), whether the georeferencing was kept in place of the estimate, the refinement's window size. What matters: chips
``ok`` within a pixel, and no ``ok`` result more than a pixel off (before stop 64: 96 px chips 0 of 10 ``ok``, the
georeferencing 2-6 px off kept for most).

Usage::

    python benchmarks/chips.py WORK_DIR [--sizes 80,96,112,128] [--seeds 0-9] [--looks 4] [--change 0.15]
        [--code CHECKOUT,CHECKOUT]   # other checkouts of sarreg side by side on the same pairs (default: this one)
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from sarreg.synth import chip_pair  # noqa: E402


def write(path: Path, arr: np.ndarray, georeferenced: bool) -> None:
    """A user-shaped GeoTIFF: float32, DEFLATE, nodata 0, UTM 10 m (or no georeferencing)."""
    prof = dict(driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1, dtype="float32", nodata=0,
                compress="deflate", **(dict(crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 5000000))
                                       if georeferenced else {}))
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(arr, 1)


def centre_error(matrix: list | None, n: int, shift: tuple[float, float]) -> float:
    """Distance (px) of the chip centre mapped by the result from where it belongs."""
    if matrix is None:
        return float("inf")
    p = np.asarray(matrix, float) @ [n / 2, n / 2, 1.0]
    return float(np.hypot(p[0] / p[2] - (n / 2 - shift[0]), p[1] / p[2] - (n / 2 - shift[1])))


def seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi) + 1)) if hi else [int(s) for s in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--sizes", default="80,96,112,128")
    ap.add_argument("--seeds", default="0-9")
    ap.add_argument("--looks", type=float, default=4.0)
    ap.add_argument("--change", type=float, default=0.15)
    ap.add_argument("--pixel-space", action="store_true")
    ap.add_argument("--code", default=str(HERE.parent))
    a = ap.parse_args()
    rows = []
    for n, seed, code in ((int(s), seed, c) for s in a.sizes.split(",") for seed in seeds(a.seeds)
                          for c in a.code.split(",")):
        d = a.work / f"chip_{n}_{seed}" / Path(code).name
        d.mkdir(parents=True, exist_ok=True)
        first, second, shift = chip_pair(n, seed, a.looks, a.change)
        for name, arr in (("ref.tif", first), ("moving.tif", second)):
            write(d / name, arr, not a.pixel_space)
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "sarreg.cli", "register", str(d / "ref.tif"),
                            str(d / "moving.tif"), str(d / "out.tif"), "--no-warp", "--overwrite"],
                           capture_output=True, text=True, cwd=code)  # (rc 2: low_quality)
        dt = time.perf_counter() - t0
        rep_path = d / "out.report.json"
        rep = json.loads(rep_path.read_text()) if rep_path.exists() else {"status": "error", "stages": {}}
        row = dict(code=Path(code).name, n=n, seed=seed, status=rep["status"], rc=p.returncode,
                   off=round(float(np.hypot(*shift)), 2), err=round(centre_error(rep.get("matrix"), n, shift), 2),
                   kept="georeferencing_kept" in rep["stages"],
                   window=(rep["stages"].get("refine") or {}).get("window_px"), time_s=round(dt, 1),
                   peak_mb=rep.get("peak_memory_mb"))
        rows.append(row)
        print(json.dumps(row), flush=True)
    for code, n in sorted({(r["code"], r["n"]) for r in rows}):
        r = [x for x in rows if x["n"] == n and x["code"] == code]
        ok = [x for x in r if x["status"] == "ok"]
        print(f"SUMMARY {code} {n} px: pairs {len(r)} ok {len(ok)} ok_within_1px {sum(x['err'] <= 1 for x in ok)} "
              f"ok_over_1px {sum(x['err'] > 1 for x in ok)} estimates_within_1px {sum(x['err'] <= 1 for x in r)} "
              f"within_3px {sum(x['err'] <= 3 for x in r)} georeferencing_kept {sum(x['kept'] for x in r)}")


if __name__ == "__main__":
    main()
