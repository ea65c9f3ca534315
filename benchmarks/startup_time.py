"""Start-up cost of the ``sarreg`` command, side by side for several source trees in one run.

Per tree (``--code DIR,DIR``; e.g. the main branch and a work branch), in fresh processes, alternating trees so
that machine load hits them alike: ``sarreg --help`` (wall time, median of ``--repeat``), ``sarreg register`` of a
generated 256² georeferenced pair (wall time, median), and the import time of ``sarreg.cli`` from
``python -X importtime`` with the heaviest third-party packages it pulls in.

Usage::

    python benchmarks/startup_time.py WORK_DIR --code /path/to/main,/path/to/branch [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "cv2", "rasterio", "numpy", "dask", "distributed", "matplotlib", "pyogrio", "shapely", "pyproj",
         "osgeo", "scipy", "tqdm")


def make_pair(work: Path) -> tuple[Path, Path]:
    """A 256² reference and a moving scene shifted by (3.4, -2.2) px (same georeferencing)."""
    sys.path.insert(0, str(REPO))
    from affine import Affine

    from sarreg import synth

    ref, mov = work / "ref_256.tif", work / "mov_256.tif"
    if ref.exists() and mov.exists():
        return ref, mov
    rng = np.random.default_rng(5)
    big = synth.reflectivity(320, 320, seed=5)
    tr = Affine(10.0, 0, 500000.0, 0, -10.0, 5000000.0)
    for path, (dx, dy) in ((ref, (0.0, 0.0)), (mov, (3.4, -2.2))):
        h = np.array([[1, 0, 32 + dx], [0, 1, 32 + dy], [0, 0, 1.0]])
        img = synth.speckle(synth.warp_image(big, h, (256, 256)), 4.0, rng)
        synth.write_geotiff(path, img, tr, "EPSG:32631")
    return ref, mov


def timed(cmd: list[str], code: Path) -> float:
    """Wall seconds of ``cmd`` run from source tree ``code`` (cwd and PYTHONPATH: ``python -m`` puts cwd first)."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=code, env={**os.environ, "PYTHONPATH": str(code)}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode not in (0, 2):  # 2: low quality is still a full run
        raise SystemExit(f"{cmd} failed in {code}: {r.stderr[-500:]}")
    return wall


def import_profile(code: Path) -> tuple[float, dict[str, float]]:
    """(import seconds of sarreg + sarreg.cli, {heavy top-level package: cumulative seconds}) for ``--help``."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "sarreg.cli", "--help"], cwd=code,
                       env={**os.environ, "PYTHONPATH": str(code)}, capture_output=True, text=True)
    total, heavy = 0.0, {}
    for line in r.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if not m:
            continue
        us, indent, name = int(m.group(1)), len(m.group(2)), m.group(3)
        if name in ("sarreg", "sarreg.cli") and indent == 1:  # both top-level under ``python -m sarreg.cli``
            total += us / 1e6
        top = name.split(".")[0]
        if top in HEAVY and name == top:
            heavy[top] = heavy.get(top, 0.0) + us / 1e6
    return total, heavy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--code", default=str(REPO))
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    ref, mov = make_pair(a.work)
    codes = [Path(c).resolve() for c in a.code.split(",")]
    helps: dict[Path, list[float]] = {c: [] for c in codes}
    regs: dict[Path, list[float]] = {c: [] for c in codes}
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load {os.getloadavg()}", flush=True)
    for i in range(a.repeat):
        for c in codes:
            helps[c].append(timed([sys.executable, "-m", "sarreg.cli", "--help"], c))
            out = a.work / f"out_{c.name}.tif"
            regs[c].append(timed([sys.executable, "-m", "sarreg.cli", "register", str(ref), str(mov), str(out),
                                  "--device", "cpu", "--overwrite"], c))
    print("\n| tree | `sarreg --help` s (median) | 256² register s (median) | import sarreg + sarreg.cli s | heavy packages "
          "imported by `--help` (cumulative s) |")
    print("|---|---:|---:|---:|---|")
    for c in codes:
        total, heavy = import_profile(c)
        hv = ", ".join(f"{k} {v:.2f}" for k, v in sorted(heavy.items(), key=lambda kv: -kv[1])) or "none"
        print(f"| {c.name} | {statistics.median(helps[c]):.2f} | {statistics.median(regs[c]):.2f} | {total:.2f} | "
              f"{hv} |", flush=True)
    print(f"\nload after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
