"""Extraction speed and peak memory of ``sarreg extract`` vs scene size, tiled vs whole-image.

Each measurement runs ``sarreg extract`` in a fresh subprocess on a generated GeoTIFF and reads the child's
wall time and peak RSS (``resource.getrusage(RUSAGE_CHILDREN)`` via a tiny wrapper), so the numbers are what a
user sees. Ratios are printed side by side from the same run.

    .venv/bin/python benchmarks/extract_speed.py [--sizes 1024,4096,8192] [--weights PATH] [--quick]

Without --weights a randomly initialised Fast network (same architecture and cost as the shipped model) is used;
thresholds are set to 0 so detection/NMS/top-k run at full load.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WRAP = r"""
import resource, subprocess, sys, time, json
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], capture_output=True, text=True, env=None)
dt = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": p.returncode, "wall_s": dt, "peak_rss_mb": ru.ru_maxrss / 1024, "user_s": ru.ru_utime,
                  "sys_s": ru.ru_stime, "stderr": p.stderr[-400:], "stdout": p.stdout[-200:]}))
"""


def make_scene(path: Path, size: int, block: int = 1024) -> Path:
    """Speckled synthetic scene written block by block (never whole in memory)."""
    from sarreg.synth import reflectivity, speckle

    if path.exists():
        return path
    prof = dict(driver="GTiff", width=size, height=size, count=1, dtype="float32", crs="EPSG:32631",
                transform=Affine(10, 0, 500000, 0, -10, 5000000), tiled=True, blockxsize=256, blockysize=256,
                nodata=0, compress="deflate", predictor=3, BIGTIFF="IF_SAFER")
    rng = np.random.default_rng(0)
    tmp = path.with_suffix(".part.tif")
    with rasterio.open(tmp, "w", **prof) as dst:
        for r in range(0, size, block):
            for c in range(0, size, block):
                h, w = min(block, size - r), min(block, size - c)
                refl = reflectivity(h, w, seed=r * 7 + c + 1)
                dst.write(speckle(refl, 4, rng).astype("float32"), 1, window=((r, r + h), (c, c + w)))
    tmp.replace(path)
    return path


def run(cmd: list[str], env_extra: dict[str, str] | None = None) -> dict:
    env = dict(os.environ)
    env.pop("THP_MEM_ALLOC_ENABLE", None)
    env.update(env_extra or {})
    out = subprocess.run([sys.executable, "-c", WRAP, *cmd], capture_output=True, text=True, env=env, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res['stderr']}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1024,4096,8192")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "sarreg_bench"))
    ap.add_argument("--quick", action="store_true", help="only the 1024^2 rows")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    weights = a.weights
    if weights is None:
        from sarreg.model.weights import default_weights_path, random_model, save_checkpoint

        d = default_weights_path()
        if d is not None:
            weights = str(d)
        else:
            m = random_model("Fast_Quad_L2Net_ConfCFS", 1, mchan=4)
            weights = str(save_checkpoint(work / "random_fast.pt", m.net, m.arch, 4, 1))
    exe = [sys.executable, "-m", "sarreg.cli", "extract", "--no-progress", "--weights", weights, "-o", str(work),
           "--top-k", "5000"]
    sizes = [int(s) for s in a.sizes.split(",")] if not a.quick else [1024]
    rows = []

    def record(label: str, size: int, res: dict) -> None:
        mpix = size * size / 1e6
        rows.append((label, size, res["wall_s"], mpix / res["wall_s"], res["peak_rss_mb"], res["user_s"], res["sys_s"]))
        print(f"{label:<48} {size:>6}^2 {res['wall_s']:8.1f} s {mpix / res['wall_s']:7.3f} MPix/s "
              f"peak RSS {res['peak_rss_mb']:7.0f} MB  (user {res['user_s']:.1f} s, sys {res['sys_s']:.1f} s)",
              flush=True)

    s1 = make_scene(work / "scene_1024.tif", 1024)
    # R2D2 defaults (multiscale 1024..256, thresholds 0.7) on 1024^2: the reference takes 10.5 s per image here
    for thp in ("0", "1"):
        for prec in ("fp32", "bf16"):
            res = run(exe + [str(s1), "--precision", prec], {"THP_MEM_ALLOC_ENABLE": thp})
            record(f"multiscale R2D2 defaults, THP={thp}, {prec}", 1024, res)
    for size in sizes:
        p = make_scene(work / f"scene_{size}.tif", size)
        single = ["--min-scale", "1", "--max-size", "0", "--rel-thr", "0", "--rep-thr", "0"]
        record("single scale full-res, tiled 1024", size, run(exe + [str(p), *single, "--tile-size", "1024"],
                                                               {"THP_MEM_ALLOC_ENABLE": "1"}))
        if size <= 4096:
            record("single scale full-res, whole image", size, run(exe + [str(p), *single, "--tile-size", "0"],
                                                                   {"THP_MEM_ALLOC_ENABLE": "1"}))
    print("\n| run | size | wall s | MPix/s | peak RSS MB | user s | sys s |\n|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]}² | {r[2]:.1f} | {r[3]:.3f} | {r[4]:.0f} | {r[5]:.1f} | {r[6]:.1f} |")


if __name__ == "__main__":
    main()
