"""Cost of the area stage's descriptor check (``RegisterConfig.area_descriptors``) on pairs it runs on.

The check runs only when the correlation does not settle the estimate on its own, i.e. on hard pairs; this
generates such a pair per size in the shape of users' files (float32, DEFLATE, 256 px tiles, nodata border, no
overviews; ``register_vs_gdalwarp.make_pair``'s landscape and warp) but single-look, the moving date with
temporal change over a fifth of the scene. Then, in one run and each in a fresh process, ``sarreg register``
with ``--area-descriptors never``, ``auto`` (the default: the check only when the correlation alone is not ok)
and ``always`` (in turn, ``--repeat`` times): wall time of the
whole process, the refine stage's time, the child's peak RSS, the status, whether the check ran and the mean
error of the recovered transform over a 10 x 10 grid. ``--code DIR,DIR``: the same runs once per sarreg source
tree (e.g. a git worktree of the old code beside this one), interleaved, to measure a change side by side.

Usage::

    python benchmarks/descriptor_check_cost.py WORK_DIR [--sizes 2048,4096] [--repeat 2] [--change 0.2]
        [--unreachable-gates] [--flags never,auto,always] [--code DIR,DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import register_vs_gdalwarp as rg  # noqa: E402


def make_pair(work: Path, size: int, change: float = 0.2) -> tuple[Path, Path]:
    """Single-look reference and moving scene with temporal change (reused when present)."""
    return rg.make_pair(work, size, looks=1.0, change=change, name=f"hard{change:g}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--sizes", default="2048,4096")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--change", type=float, default=0.2, help="fraction of the moving date's landscape changed")
    ap.add_argument("--unreachable-gates", action="store_true",
                    help="--min-inliers 100000: no result is ok, so auto always makes its second refinement (the "
                         "cost of the fallback on a pair the correlation alone cannot register); between these "
                         "georeferenced rasters the report then keeps the georeferencing (stop 44), so the error "
                         "column shows the written georeference's")
    ap.add_argument("--flags", default="never,auto,always", help="the --area-descriptors values run")
    ap.add_argument("--code", default=str(REPO), help="comma-separated sarreg source trees, each run in turn")
    a = ap.parse_args()
    extra = ["--min-inliers", "100000"] if a.unreachable_gates else []
    flags = a.flags.split(",")
    codes = [Path(c).resolve() for c in a.code.split(",")]
    for code in codes:
        rg.check_code(code)
    a.work.mkdir(parents=True, exist_ok=True)
    print("| size | code | run | wall s | refine s | peak RSS MB | status | check ran | error px |")
    print("|---|---|---|---:|---:|---:|---|---|---:|")
    for size in [int(s) for s in a.sizes.split(",")]:
        ref, mov = make_pair(a.work, size, a.change)
        walls: dict[tuple[int, str], list[float]] = {}
        for rep in range(a.repeat):
            for flag in flags:
                for i, code in enumerate(codes):
                    out = a.work / f"out_{size}.tif"
                    r = rg.register(code, ref, mov, out, None, ["--area-descriptors", flag, *extra],
                                    a.work / f"log_{size}_{flag}_{i}_{rep}.txt")
                    rp = json.loads(out.with_name(out.stem + ".report.json").read_text())
                    refine = rp.get("stages", {}).get("refine") or {}
                    ran = refine.get("descriptor_check") or ("(yes, unconfirmed)" if refine.get(
                        "descriptors_unconfirmed") else False)
                    err = rg.grid_error(r["matrix"], size)
                    walls.setdefault((i, flag), []).append(r["wall_s"])
                    print(f"| {size}² | {code.name} | {flag} | {r['wall_s']:.1f} | "
                          f"{(r['timings_s'] or {}).get('refine', 0):.1f} | {r['peak_rss_mb']:.0f} | {r['status']} | "
                          f"{ran} | {'' if err is None else f'{err:.3f}'} |", flush=True)
        med = {k: float(np.median(v)) for k, v in walls.items()}
        for i, code in enumerate(codes if "never" in flags else []):
            for flag in (f for f in flags if f != "never"):
                on, off = med[(i, flag)], med[(i, "never")]
                print(f"{size}² {code.name}: median wall {flag} / never: {on:.1f} / {off:.1f} s = {on / off:.2f}x",
                      flush=True)
        for flag in flags:
            for i in range(1, len(codes)):
                w, first = med[(i, flag)], med[(0, flag)]
                print(f"{size}² {flag}: median wall {codes[i].name} / {codes[0].name}: {w:.1f} / {first:.1f} s "
                      f"= {w / first:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
