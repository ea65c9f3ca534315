"""Compare a ``sarreg register`` report on the sample pair with the truth written by ``make_samples.py``.

    python samples/check_result.py demo_out/samples/truth.json demo_out/scene_b_coreg.report.json

Prints the georeference error that sarreg found and the true one, and the residual error of the estimated
pixel transform over a 10 x 10 grid of the moving scene (mean distance in pixels). Exit 1 above 1 px.
"""
from __future__ import annotations

import json
import sys

import numpy as np


def main(truth_path: str, report_path: str) -> int:
    truth = json.loads(open(truth_path).read())
    rep = json.loads(open(report_path).read())
    if rep.get("matrix") is None:
        print(f"registration status {rep.get('status')}: {rep.get('message')}")
        return 1
    w, h = truth["size"]
    # truth: moving (B) pixel (x, y) shows reference (A) pixel (x + dx, y + dy)
    dx, dy = truth["b_footprint_offset_px"]["dx"], truth["b_footprint_offset_px"]["dy"]
    gx, gy = np.meshgrid(np.linspace(0, w - 1, 10), np.linspace(0, h - 1, 10))
    pts = np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size)])
    est = np.asarray(rep["matrix"], dtype=float) @ pts
    est = est[:2] / est[2]
    err = np.hypot(est[0] - (pts[0] + dx), est[1] - (pts[1] + dy))
    q = rep.get("quality", {})
    print(f"status {rep['status']}: {q.get('inliers')} inliers, RMSE {q.get('rmse_px')} px")
    print(f"true offset of B on A: ({dx:+.2f}, {dy:+.2f}) px; sarreg: mean error {err.mean():.3f} px, "
          f"max {err.max():.3f} px over a 10 x 10 grid")
    return 0 if err.mean() <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
