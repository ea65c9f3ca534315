"""Cost of a stored descriptor whitening at extraction: ``sarreg extract`` with a weights file and with the same
file whitened (``sarreg.train.whiten``), side by side in one run, alternating, each in a fresh subprocess.

Why: the whitening is a 128 x 128 product per keypoint, negligible by itself; the first version ran it in numpy and
made extraction ~25 % slower on 2 cores (BLAS threads spinning into the next network pass). This script keeps
that measurable. Scene: a generated float32 GeoTIFF shaped like users' files (DEFLATE, 256 px tiles, nodata 0).

    .venv/bin/python benchmarks/whitening_speed.py [--size 2048] [--repeats 3] [--weights W.pt] [--whitened WW.pt]

Without --whitened, the shipped weights get an identity whitening (same network; only the projection differs).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from extract_speed import make_scene, run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--weights", default=None, help="plain weights (default: the shipped model)")
    ap.add_argument("--whitened", default=None, help="whitened weights (default: --weights + identity whitening)")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "sarreg_bench"))
    a = ap.parse_args()
    from sarreg.model.weights import weights_path
    from sarreg.train.whiten import write_whitened

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    plain = str(weights_path(a.weights))
    white = a.whitened or str(write_whitened(plain, work / "identity_whitened.pt", np.zeros(128, np.float32),
                                             np.eye(128, dtype=np.float32)))
    scene = make_scene(work / f"scene_{a.size}.tif", a.size)
    times: dict[str, list[float]] = {"plain": [], "whitened": []}
    rss: dict[str, float] = {"plain": 0.0, "whitened": 0.0}
    both = (("plain", plain), ("whitened", white))
    for i in range(a.repeats):
        for label, w in both if i % 2 == 0 else both[::-1]:
            res = run([sys.executable, "-m", "sarreg.cli", "extract", "--no-progress", "--weights", w, "-o",
                       str(work), "--overwrite", "--top-k", "5000", str(scene)])
            times[label].append(res["wall_s"])
            rss[label] = max(rss[label], res["peak_rss_mb"])
            print(f"{label:<9} run {i + 1}: {res['wall_s']:.2f} s, peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    mp, mw = statistics.median(times["plain"]), statistics.median(times["whitened"])
    print(f"\n| weights | median wall s ({a.repeats} runs, {a.size}²) | peak RSS MB |\n|---|---:|---:|")
    print(f"| {Path(plain).name} | {mp:.2f} | {rss['plain']:.0f} |")
    print(f"| {Path(white).name} | {mw:.2f} | {rss['whitened']:.0f} |")
    print(f"\nwhitened / plain wall time: {mw / mp:.3f}")


if __name__ == "__main__":
    main()
