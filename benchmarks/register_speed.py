"""End-to-end speed and peak memory of ``sarreg register`` on large generated scenes.

Generates (once, by windows, never a whole scene in memory) a reference and a moving float32 GeoTIFF of
SIZE x SIZE pixels showing the same speckled synthetic landscape, the moving one shifted by (37.25, -18.5) px and
rotated by 0.2 degrees; then runs ``python -m sarreg.cli register`` in a fresh process per size and reads wall time,
peak RSS (``ru_maxrss`` of the child) and the recovered transform.

Usage::

    python benchmarks/register_speed.py WORK_DIR [--sizes 4096,10240] [--features r2d2|sift] [--weights PATH]

Targets (spec): 10k x 10k in < 90 s and < 1.5 GB, peak RSS about flat from 4k to 10k.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))

SHIFT = (37.25, -18.5)
ANGLE = 0.2
BASE_FACTOR = 4  # the landscape is drawn at 1/4 resolution, then resampled per window
WIN = 1024


def truth(size: int) -> np.ndarray:
    """Moving px -> reference px of the generated pair (rotation about the centre, then shift)."""
    a = math.radians(ANGLE)
    c = size / 2
    R = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    t = np.array([c, c]) - R @ [c, c] + SHIFT
    return np.array([[R[0, 0], R[0, 1], t[0]], [R[1, 0], R[1, 1], t[1]], [0, 0, 1]])


def _points(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bright point scatterers in reference pixel coordinates (sharp full-resolution features)."""
    rng = np.random.default_rng(seed)
    n = size * size // 1500
    return rng.uniform(-64, size + 64, (n, 2)), rng.uniform(20, 300, n).astype(np.float32)


def generate(path: Path, size: int, m: np.ndarray, base: np.ndarray, pts, looks_seed: int,
             profile: dict | None = None, border: int = 0, looks: float = 4.0) -> None:
    """Write one scene window by window: pixel (u, v) shows the landscape at reference pixel m(u, v).

    ``profile`` overrides the rasterio creation profile (tiling, compression, nodata); ``border`` > 0 writes 0
    (nodata) outside a footprint inset by ``border`` px with a slanted left edge, as in SAR products; ``looks``:
    of the speckle (1 = single-look).
    """
    import cv2
    import rasterio
    from affine import Affine

    xy, amp = pts
    rng = np.random.default_rng(looks_seed)
    prof = dict(driver="GTiff", width=size, height=size, count=1, dtype="float32", tiled=True, blockxsize=512,
                blockysize=512, transform=Affine(10.0, 0, 400000.0, 0, -10.0, 5200000.0), crs="EPSG:32631",
                BIGTIFF="IF_SAFER")
    prof.update(profile or {})
    tmp = path.with_name(path.name + ".tmp")
    with rasterio.open(tmp, "w", **prof) as ds:
        for r0 in range(0, size, WIN):
            for c0 in range(0, size, WIN):
                h, w = min(WIN, size - r0), min(WIN, size - c0)
                vv, uu = np.mgrid[r0:r0 + h, c0:c0 + w].astype(np.float64)
                X = m[0, 0] * uu + m[0, 1] * vv + m[0, 2]
                Y = m[1, 0] * uu + m[1, 1] * vv + m[1, 2]
                bx = ((X + 0.5) / BASE_FACTOR - 0.5).astype(np.float32)
                by = ((Y + 0.5) / BASE_FACTOR - 0.5).astype(np.float32)
                refl = cv2.remap(base, bx, by, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
                # point scatterers: nearest moving pixel of each reference point inside this window
                inv = np.linalg.inv(m)
                p = xy @ inv[:2, :2].T + inv[:2, 2]
                ins = (p[:, 0] >= c0 - 0.5) & (p[:, 0] < c0 + w - 0.5) & (p[:, 1] >= r0 - 0.5) & (p[:, 1] < r0 + h - 0.5)
                pi = np.round(p[ins]).astype(int)
                refl[np.clip(pi[:, 1] - r0, 0, h - 1), np.clip(pi[:, 0] - c0, 0, w - 1)] += amp[ins]
                refl = np.maximum(refl, 1e-4) * rng.gamma(looks, 1.0 / looks, refl.shape).astype(np.float32)
                if border:
                    out = (vv < border) | (vv >= size - border) | (uu >= size - border) | (uu < border + 0.08 * vv)
                    refl[out] = 0.0
                ds.write(refl.astype(np.float32), 1, window=rasterio.windows.Window(c0, r0, w, h))
    tmp.replace(path)


def make_pair(work: Path, size: int) -> tuple[Path, Path]:
    from sarreg.synth import reflectivity

    ref, mov = work / f"ref_{size}.tif", work / f"moving_{size}.tif"
    if ref.exists() and mov.exists():
        return ref, mov
    t0 = time.perf_counter()
    nb = size // BASE_FACTOR + 4
    base = reflectivity(nb, nb, seed=size)  # 1/4-resolution landscape (<= 10 MB at 10k)
    pts = _points(size, seed=1)
    generate(ref, size, np.eye(3), base, pts, 10)
    generate(mov, size, truth(size), base, pts, 20)
    print(f"generated {size}^2 pair in {time.perf_counter() - t0:.1f}s", flush=True)
    return ref, mov


def pick_weights(arg: str | None) -> str | None:
    """The given checkpoint, else the shipped model, else the reference faster2d2 in ../shared (speed only)."""
    if arg:
        return arg
    from sarreg.model.weights import default_weights_path

    p = default_weights_path()
    if p is not None:
        return str(p)
    r = SHARED / "reference" / "r2d2-naver" / "faster2d2_WASF_N16.pt"
    return str(r) if r.is_file() else None


def run(ref: Path, mov: Path, out: Path, features: str, weights: str | None, extra: list[str]) -> dict:
    for p in out.parent.glob(out.stem + "*"):
        p.unlink()
    cmd = [sys.executable, "-m", "sarreg.cli", "register", str(ref), str(mov), str(out), "--features", features,
           "--device", "cpu", *extra]
    if weights and features == "r2d2":
        cmd += ["--weights", weights]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    rep = json.loads(out.with_name(out.stem + ".report.json").read_text())
    return {"exit": proc.returncode, "wall_s": round(wall, 1), "peak_rss_mb": round(max(peak, before) / 1024, 1),
            "report": rep, "stderr": proc.stderr.strip().splitlines()[-1:] if proc.stderr.strip() else []}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--sizes", default="4096,10240")
    ap.add_argument("--features", default="r2d2", choices=["r2d2", "sift"])
    ap.add_argument("--weights", default=None)
    ap.add_argument("extra", nargs="*", help="extra register options after --")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    weights = pick_weights(a.weights)
    from sarreg.estimate import apply_matrix

    for size in [int(s) for s in a.sizes.split(",")]:
        ref, mov = make_pair(a.work, size)
        r = run(ref, mov, a.work / f"out_{size}.tif", a.features, weights, a.extra)
        rep = r["report"]
        err = None
        if rep.get("matrix"):
            g = np.stack(np.meshgrid(np.linspace(0, size - 1, 10), np.linspace(0, size - 1, 10)), -1).reshape(-1, 2)
            err = float(np.hypot(*(apply_matrix(np.array(rep["matrix"]), g) - apply_matrix(truth(size), g)).T).mean())
        print(json.dumps({"size": size, "features": a.features, "exit": r["exit"], "status": rep["status"],
                          "wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"],
                          "report_peak_mb": rep.get("peak_memory_mb"), "grid_error_px": err,
                          "inliers": rep.get("quality", {}).get("inliers"), "timings_s": rep.get("timings_s"),
                          "stderr": r["stderr"]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
