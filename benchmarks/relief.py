"""``sarreg register`` on scenes displaced by relief: how far off each output pixel is, globally and with
``--model local``.

Pairs from ``sarreg.synth.relief_pair`` (1024 px ``terrain`` scenes, 4 looks; the second date seen from another
incidence angle: its pixel p shows the first's p + (13 + k z(p), -9), the height-dependent part up to DMAX px; float32
linear power, DEFLATE, 256 px tiles, nodata 0, one geotransform for both). Per pair and option set, in fresh
processes: ``sarreg register`` (no warp), then ``sarreg apply`` of its report (``--force``: a ``low_quality`` result
is measured too) to a two-band raster holding each moving pixel's own coordinates, bilinear: the output holds, per
reference pixel q, the moving position g(q) the warp took it from, and the error at q is |f(g(q)) - q| with f the
true moving -> reference map. Printed per pair: status, model, error mean / p90 / max over the output's valid pixels
(px), wall time of ``register``, the peak memory its report states. Stop 62's measurements (default shift 0.84-1.20 px
mean and up to 6.2 px at DMAX 6, ``--model local`` 0.63-0.75 / 4.3-5.3 px, ``low_quality``) are in
``benchmarks/RESULTS.md``.

Usage::

    python benchmarks/relief.py WORK_DIR [--seeds 1,2,3] [--dmax 3,6] [--options="--model local"]
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import rasterio
from affine import Affine

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from sarreg.synth import relief_pair, write_geotiff  # noqa: E402

SHIFT = (13.0, -9.0)
T = Affine(10, 0, 500000, 0, -10, 5000000)
OFFSET = 1000.0  # coordinates stored + OFFSET: no valid coordinate equals the nodata value


def make(d: Path, seed: int, dmax: float, n: int = 1024) -> None:
    """ref.tif, moving.tif, coords.tif (moving x, y + OFFSET) and d.npy (the height-dependent offset), once."""
    if (d / "d.npy").exists():
        return
    d.mkdir(parents=True, exist_ok=True)
    ref, mov, off = relief_pair(n, seed, dmax, SHIFT)
    for name, arr in (("ref.tif", ref), ("moving.tif", mov)):
        write_geotiff(d / name, arr, T, "EPSG:32631", nodata=0, compress="deflate")
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    write_geotiff(d / "coords.tif", np.stack([xx + OFFSET, yy + OFFSET]), T, "EPSG:32631", nodata=-1)
    np.save(d / "d.npy", off)


def errors(d: Path, out_coords: Path) -> tuple[float, float, float]:
    """(mean, p90, max) of |f(g(q)) - q| over the valid output pixels, px."""
    with rasterio.open(out_coords) as ds:
        g = ds.read().astype(np.float64) - OFFSET
        valid = ds.read_masks(1) > 0
    off = np.load(d / "d.npy")
    n = off.shape[0]
    gx, gy = g
    valid &= (gx >= 0) & (gy >= 0) & (gx <= n - 1) & (gy <= n - 1)
    k = cv2.remap(off, gx.astype(np.float32), gy.astype(np.float32), cv2.INTER_LINEAR)
    qy, qx = np.mgrid[0:n, 0:n]
    e = np.hypot(gx + SHIFT[0] + k - qx, gy + SHIFT[1] - qy)[valid]
    return float(e.mean()), float(np.quantile(e, 0.9)), float(e.max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--dmax", default="3,6")
    ap.add_argument("--options", default="", help='register options, e.g. "--model local"')
    a = ap.parse_args()
    opts = shlex.split(a.options)
    tag = "_".join(o.lstrip("-") for o in opts) or "default"
    cli = [sys.executable, "-m", "sarreg.cli"]
    rows = []
    for dmax in (float(x) for x in a.dmax.split(",")):
        for seed in (int(x) for x in a.seeds.split(",")):
            d = a.work / f"relief_{dmax:g}_{seed}"
            make(d, seed, dmax)
            t0 = time.perf_counter()
            subprocess.run(cli + ["register", str(d / "ref.tif"), str(d / "moving.tif"), str(d / f"{tag}.tif"),
                                  "--no-warp", "--overwrite", *opts], capture_output=True, cwd=HERE.parent)
            dt = time.perf_counter() - t0
            rep = json.loads((d / f"{tag}.report.json").read_text())
            row = dict(dmax=dmax, seed=seed, options=a.options, status=rep["status"], model=rep.get("model"))
            if rep.get("matrix") is not None:
                subprocess.run(cli + ["apply", str(d / f"{tag}.report.json"), str(d / "coords.tif"),
                                      str(d / f"{tag}.coords.tif"), "--overwrite", "--force", "--resampling",
                                      "bilinear", "--format", "GTiff"], capture_output=True, cwd=HERE.parent)
                row.update(zip(("mean_px", "p90_px", "max_px"),
                               (round(v, 2) for v in errors(d, d / f"{tag}.coords.tif"))))
            row.update(time_s=round(dt, 1), peak_mb=rep.get("peak_memory_mb"))
            rows.append(row)
            print(json.dumps(row), flush=True)
    ok = [r for r in rows if r["status"] == "ok"]
    print(f"SUMMARY pairs {len(rows)} ok {len(ok)} ok_mean_over_1px {sum(r.get('mean_px', 99) > 1 for r in ok)} "
          f"ok_max_over_3px {sum(r.get('max_px', 99) > 3 for r in ok)}")


if __name__ == "__main__":
    main()
