"""``sarreg register --oversampling 1`` against ``auto`` (the default) on oversampled products, side by side.

Generates pairs in the shape of users' files (``register_vs_gdalwarp.make_pair``: float32, DEFLATE, 256 px tiles,
nodata 0 with a nodata border, no overviews; the moving scene shifted by (37.25, -18.5) px and rotated by 0.2 deg)
at ``--size`` px, in two kinds (4-look and unchanged; single-look with a fifth of the landscape changed), then each
up-sampled by the ``--factors`` with GDAL's cubic resampling (``gdal_translate -outsize -r cubic``, same encoding):
a product resampled finer than its resolution, whose true transform is the native one in the finer pixels. Per pair
and value of ``--oversampling``, in a fresh process each (interleaved, ``--repeat`` times): wall time of the whole
process, the child's peak RSS, the status, the factor the report says it read at, and the error of the recovered
transform (mean over a 10 x 10 grid of moving pixels) in the file's pixels and in the native ones.

Usage::

    python benchmarks/oversampling.py WORK_DIR [--size 768] [--factors 1,2,3] [--repeat 1] [--flags 1,auto]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import register_speed as rs  # noqa: E402
import register_vs_gdalwarp as rg  # noqa: E402

KINDS = {"4look": (4.0, 0.0), "1look_change": (1.0, 0.2)}


def up_sampled(src: Path, factor: int) -> Path:
    """``src`` up-sampled ``factor`` x by GDAL's cubic resampling, in the same encoding (written once)."""
    if factor == 1:
        return src
    dst = src.with_name(f"{src.stem}_x{factor}.tif")
    if not dst.exists():
        import rasterio

        with rasterio.open(src) as ds:
            w, h = ds.width * factor, ds.height * factor
        tmp = dst.with_name(dst.name + ".tmp.tif")
        subprocess.run(["gdal_translate", "-q", "-outsize", str(w), str(h), "-r", "cubic", "-co", "TILED=YES",
                        "-co", "COMPRESS=DEFLATE", str(src), str(tmp)], check=True)
        tmp.replace(dst)
    return dst


def error_px(matrix: list | None, size: int, factor: int) -> float | None:
    """Mean distance (file px) between the recovered and the true transform over a 10 x 10 grid of moving pixels."""
    from sarreg.estimate import apply_matrix
    from sarreg.oversample import scaled

    if not matrix:
        return None
    n = size * factor
    g = np.stack(np.meshgrid(np.linspace(0, n - 1, 10), np.linspace(0, n - 1, 10)), -1).reshape(-1, 2)
    d = apply_matrix(np.array(matrix), g) - apply_matrix(scaled(rs.truth(size), factor), g)
    return float(np.hypot(*d.T).mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--size", type=int, default=768, help="native side of the generated pairs (px)")
    ap.add_argument("--factors", default="1,2,3")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--flags", default="1,auto", help="the --oversampling values run")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    flags = a.flags.split(",")
    print("| pair | factor | --oversampling | wall s | peak RSS MB | status | read at | error file px | "
          "error native px |")
    print("|---|---:|---|---:|---:|---|---:|---:|---:|")
    walls: dict[str, list[float]] = {f: [] for f in flags}
    for kind, (looks, change) in KINDS.items():
        ref0, mov0 = rg.make_pair(a.work, a.size, looks=looks, change=change, name=f"os_{kind}")
        for factor in [int(f) for f in a.factors.split(",")]:
            ref, mov = up_sampled(ref0, factor), up_sampled(mov0, factor)
            for rep in range(a.repeat):
                for flag in flags:
                    out = a.work / f"out_{kind}_x{factor}_{flag}.tif"
                    r = rg.register(REPO, ref, mov, out, None, ["--oversampling", flag],
                                    a.work / f"log_{kind}_x{factor}_{flag}_{rep}.txt")
                    rp = json.loads(out.with_name(out.stem + ".report.json").read_text())
                    read = (rp.get("stages", {}).get("oversampling") or {}).get("factor", 1)
                    e = error_px(r["matrix"] if r["status"] in ("ok", "low_quality") else None, a.size, factor)
                    walls[flag].append(r["wall_s"])
                    print(f"| {kind} | {factor} | {flag} | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | "
                          f"{r['status']} | {read} | {'' if e is None else f'{e:.3f}'} | "
                          f"{'' if e is None else f'{e / factor:.3f}'} |", flush=True)
    for flag in flags[1:]:
        on, off = sum(walls[flag]), sum(walls[flags[0]])
        print(f"total wall --oversampling {flag} / {flags[0]}: {on:.1f} / {off:.1f} s = {on / off:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
