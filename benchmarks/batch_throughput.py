"""Throughput of ``sarreg batch`` on a real Dask LocalCluster: 1 vs 2 worker processes, with and without the
reference-feature cache, on a generated series of georeferenced scenes (default 8 x 4096 x 4096 float32).

Per configuration: a fresh LocalCluster (its start-up is reported apart), a fresh output folder, ``sarreg.batch``
over all scenes; wall time, scenes per minute, mean task wall and CPU time (CPU seconds do not depend on what else
runs on the machine), and peak resident memory of every worker process
(``ru_maxrss`` read on the workers after the run). Runs without the cache first, then with one cache folder: the
first cache run is "cold" (its first task extracts the reference and writes the cache), the next ones "warm" (the
folder exists, as in a rerun or a second batch on the same reference).

Usage (from the repository root; ~10 min on 2 idle cores, writes ~1.5 GB into --data):

    nice .venv/bin/python benchmarks/batch_throughput.py --data /tmp/sarreg_batch_bench [--features r2d2 --weights W]

Prints a Markdown table (paste into benchmarks/RESULTS.md) and writes the raw numbers as JSON next to --data.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from affine import Affine

from sarreg import synth
from sarreg.batch import batch
from sarreg.config import RegisterConfig

CRS = "EPSG:32631"
MARGIN = 32


def make_series(folder: Path, n: int, size: int, seed: int = 3) -> tuple[Path, list[Path]]:
    """Reference + n scenes cut from one reflectivity map, each off by a known sub-pixel shift (reused if present)."""
    folder.mkdir(parents=True, exist_ok=True)
    ref = folder / "reference.tif"
    scenes = [folder / f"S1A_IW_GRDH_1SDV_202403{i + 1:02d}T054012_bench.tif" for i in range(n)]
    if ref.exists() and all(p.exists() for p in scenes):
        return ref, scenes
    t0 = time.perf_counter()
    big = synth.reflectivity(size + 2 * MARGIN, size + 2 * MARGIN, seed=seed)
    rng = np.random.default_rng(seed)
    tr = Affine(10.0, 0.0, 600_000.0, 0.0, -10.0, 5_100_000.0)

    def cut(dx: float, dy: float, change: float) -> np.ndarray:
        refl = synth.temporal_change(big, rng, change) if change else big
        h = np.array([[1, 0, MARGIN + dx], [0, 1, MARGIN + dy], [0, 0, 1.0]])
        return synth.speckle(synth.warp_image(refl, h, (size, size)), 4.0, rng)

    synth.write_geotiff(ref, cut(0, 0, 0), tr, CRS, compress="deflate")
    for p in scenes:
        dx, dy = rng.uniform(-8, 8, 2)
        synth.write_geotiff(p, cut(float(dx), float(dy), 0.1), tr, CRS, compress="deflate")
    print(f"generated {n} scenes of {size} x {size} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return ref, scenes


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# register stages as the scene reports time them: relate = opening and decimated reads of both scenes; coarse and
# fine = correlation and (when needed) the network on decimated images / full-resolution tiles (tile reads in fine);
# estimate / refine = robust fits and sub-pixel correlation; warp = resampling and writing; publish = moving the
# outputs into place
STAGES = ("relate", "load_model", "coarse", "fine", "estimate", "refine", "warp", "sidecars", "publish")


def run_one(ref: Path, scenes: list[Path], out: Path, cfg: RegisterConfig, workers: int, cache: bool,
            cache_dir: Path | None) -> dict:
    from distributed import Client, LocalCluster

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    inner = str(max(1, (os.cpu_count() or 1) // workers))
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=40, env={"OMP_NUM_THREADS": inner, "MKL_NUM_THREADS": inner}) as cluster, \
            Client(cluster) as client:
        startup = time.perf_counter() - t0
        load0 = os.getloadavg()[0]
        t1 = time.perf_counter()
        s = batch(ref, scenes, out, cfg, client=client, reference_cache=cache, cache_dir=cache_dir)
        wall = time.perf_counter() - t1
        peaks = sorted(client.run(_peak_rss_mb).values())
    statuses = [r.status for r in s.scenes]
    # where a task's time goes: the register stages summed over the scenes, as shares of their total
    stage_s: dict[str, float] = {}
    for r in s.scenes:
        for k, v in (r.timings or {}).items():
            if k in STAGES and isinstance(v, (int, float)):
                stage_s[k] = stage_s.get(k, 0.0) + float(v)
    total = sum(stage_s.values()) or 1.0
    shares = {k: round(stage_s[k] / total, 3) for k in STAGES if k in stage_s}
    task = [r.time_s for r in s.scenes if r.time_s]
    cpu = [r.timings["cpu"] for r in s.scenes if r.timings.get("cpu")]
    return {"workers": workers, "cache": cache, "cache_hit": bool(s.reference_cache.get("cache_hit")),
            "reference_prep_s": s.reference_cache.get("time_s"), "cluster_startup_s": round(startup, 1),
            "wall_s": round(wall, 1), "scenes_per_min": round(60 * len(scenes) / wall, 2),
            "mean_task_s": round(float(np.mean(task)), 1) if task else None,
            "mean_task_cpu_s": round(float(np.mean(cpu)), 1) if cpu else None,
            "peak_rss_mb_per_worker": [round(p) for p in peaks], "ok": statuses.count("ok"),
            "failed": statuses.count("failed"), "low_quality": statuses.count("low_quality"),
            "ref_cache_hits_per_scene": sorted({r.ref_cache_hits for r in s.scenes}, key=lambda v: (v is None, v)),
            "loadavg_start": round(load0, 1), "loadavg_end": round(os.getloadavg()[0], 1), "shares": shares}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder for the generated scenes and outputs")
    ap.add_argument("--n", type=int, default=8, help="scenes in the series")
    ap.add_argument("--size", type=int, default=4096, help="scene side (px)")
    ap.add_argument("--features", default="r2d2", choices=["sift", "r2d2"])
    ap.add_argument("--weights", default=None, help="checkpoint for --features r2d2")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    args = ap.parse_args()

    ref, scenes = make_series(args.data / "series", args.n, args.size)
    cfg = RegisterConfig(features=args.features, weights=args.weights, model="affine", device="cpu")
    rows = []
    counts = [int(v) for v in args.workers.split(",")]
    for w in counts:
        rows.append(run_one(ref, scenes, args.data / f"out-w{w}-nocache", cfg, w, False, None))
        print(json.dumps(rows[-1]), file=sys.stderr)
    cache_dir = args.data / "cache"  # one cache for all: the first run fills it (cold), the others reuse it (warm)
    shutil.rmtree(cache_dir, ignore_errors=True)
    for w in counts:
        rows.append(run_one(ref, scenes, args.data / f"out-w{w}-cache", cfg, w, True, cache_dir))
        print(json.dumps(rows[-1]), file=sys.stderr)
    meta = {"n": args.n, "size": args.size, "features": args.features, "weights": args.weights,
            "cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}
    (args.data / "batch_throughput.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=2))

    print(f"\n{args.n} scenes of {args.size} x {args.size} float32, features {args.features}, model affine, "
          f"{os.cpu_count()} CPUs\n")
    print("| workers | reference features | wall (s) | scenes/min | mean task wall / CPU (s) | reference prep (s) "
          "| peak RSS per worker (MB) | ok/low/failed | load avg |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        how = "extracted per scene" if not r["cache"] else ("cache, warm" if r["cache_hit"] else "cache, cold")
        print(f"| {r['workers']} | {how} | {r['wall_s']} | {r['scenes_per_min']} | {r['mean_task_s']} / "
              f"{r['mean_task_cpu_s']} | "
              f"{r['reference_prep_s'] if r['cache'] else '-'} | {', '.join(map(str, r['peak_rss_mb_per_worker']))} | "
              f"{r['ok']}/{r['low_quality']}/{r['failed']} | {r['loadavg_start']}-{r['loadavg_end']} |")
    print("\nShare of the register stages in the tasks' time (summed over the scenes):\n")
    print("| workers | reference features | " + " | ".join(STAGES) + " |")
    print("|---|---|" + "---:|" * len(STAGES))
    for r in rows:
        how = "extracted per scene" if not r["cache"] else ("cache, warm" if r["cache_hit"] else "cache, cold")
        print(f"| {r['workers']} | {how} | " + " | ".join(f"{100 * r['shares'].get(k, 0):.0f} %" for k in STAGES) + " |")


if __name__ == "__main__":
    main()
