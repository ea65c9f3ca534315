"""Per-window accuracy of area-based matching: register's correlation vs the network's dense descriptors.

The moving image of each pair is resampled onto the reference by its ground truth composed with a random sub-pixel
shift (uniform in +-0.5 px per axis), so every window's true offset is that shift. On a grid of 64 px windows (32 px
apart, textured, fully valid), the offset searched within +-8 px is measured by three scores side by side:
``sarreg.correlate.correlate`` (what ``register``'s area stage runs, sub-pixel), plain normalised cross-correlation
of the log image (OpenCV ``matchTemplate``, integer), and the mean cosine similarity of the model's dense
descriptors over the window (sub-pixel by a parabola through the peak and its neighbours). Printed per set: the
fraction of windows within 0.5 / 1 / 2 px of the truth, and for the correlation also the fraction its own quality
thresholds keep.

Pairs: the training-split validation sets of ``python -m sarreg.train.choose build DIR`` (allowed data only).

Usage::

    python benchmarks/window_accuracy.py SETS_DIR [--sets A,XA,HA,LA,PL,KA] [--pairs 5] [--weights PATH]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sarreg.config import PreprocessConfig  # noqa: E402
from sarreg.correlate import correlate  # noqa: E402
from sarreg.evaluate import load_pairs  # noqa: E402
from sarreg.io.raster import open_scene, read_unit  # noqa: E402
from sarreg.model.weights import load_model  # noqa: E402
from sarreg.network import run_network  # noqa: E402

WIN, SPACING, RADIUS = 64, 32, 8


def dense_descriptors(model, unit: np.ndarray) -> torch.Tensor:
    """128 x H x W L2-normalised descriptor map at full resolution (bilinear from the Fast network's half grid)."""
    out = run_network(model, np.nan_to_num(unit))
    raw = out.raw[None].float()
    if out.upsampled:
        raw = F.interpolate(raw, scale_factor=2, mode="bilinear", align_corners=False)
    return F.normalize(raw[:, :, :unit.shape[0], :unit.shape[1]], dim=1)[0]


def descriptor_offset(dr: torch.Tensor, dm: torch.Tensor, cx: int, cy: int) -> np.ndarray:
    """(dx, dy) of the best mean cosine similarity of the window at (cx, cy), parabola-refined per axis."""
    h = WIN // 2
    t = dr[:, cy - h:cy + h, cx - h:cx + h][None]
    s = dm[:, cy - h - RADIUS:cy + h + RADIUS, cx - h - RADIUS:cx + h + RADIUS][None]
    c = F.conv2d(s, t)[0, 0].numpy() / (WIN * WIN)
    iy, ix = np.unravel_index(int(np.argmax(c)), c.shape)
    d = np.array([ix, iy], float)
    rows = (c[iy, ix - 1:ix + 2], c[iy - 1:iy + 2, ix])  # the peak and its neighbours along x, along y
    for axis, (i, n) in enumerate(((ix, c.shape[1]), (iy, c.shape[0]))):
        if 0 < i < n - 1:
            lo, mid, hi = rows[axis]
            den = lo - 2 * mid + hi
            if den < 0:
                d[axis] += 0.5 * (lo - hi) / den
    return d - RADIUS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets_dir", type=Path)
    ap.add_argument("--sets", default="A,XA,HA,LA,PL,KA")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--weights", default=None)
    a = ap.parse_args()
    model, pre = load_model(a.weights), PreprocessConfig()
    rng = np.random.default_rng(0)
    print(f"{'set':4s} {'windows':>7s}  within 0.5 / 1 / 2 px: correlation (kept)  |  NCC  |  descriptors (integer)")
    for name in a.sets.split(","):
        err: dict[str, list[float]] = {"corr": [], "ncc": [], "desc": [], "desc_int": []}
        kept = 0
        for p in load_pairs(a.sets_dir / name)[:a.pairs]:
            ur, vr = read_unit(open_scene(p.ref, pre), pre=pre)
            um, vm = read_unit(open_scene(p.moving, pre), pre=pre)
            h, w = ur.shape
            t_true = rng.uniform(-0.5, 0.5, 2)  # reference content at x shows in the resampled moving at x + t_true
            H = np.array([[1, 0, t_true[0]], [0, 1, t_true[1]], [0, 0, 1]]) @ np.asarray(p.H, float)
            mw = cv2.warpPerspective(np.nan_to_num(um).astype(np.float32), H, (w, h), flags=cv2.INTER_LINEAR)
            mv = cv2.warpPerspective(vm.astype(np.uint8), H, (w, h), flags=cv2.INTER_NEAREST) > 0
            ok = vr & mv
            dr, dm = dense_descriptors(model, ur), dense_descriptors(model, mw)
            m = WIN // 2 + RADIUS
            centres = [(cx, cy) for cy in range(m, h - m, SPACING) for cx in range(m, w - m, SPACING)
                       if ok[cy - m:cy + m, cx - m:cx + m].mean() >= 0.95
                       and ur[cy - WIN // 2:cy + WIN // 2, cx - WIN // 2:cx + WIN // 2].std() >= 1e-3]
            if not centres:
                continue
            # one call: correlate estimates the peak width from the speckle level of the whole images
            o = correlate(ur, mw, vr, ok, np.array(centres), size=WIN, radius=RADIUS)
            kept += int(o.ok.sum())
            for (cx, cy), dc in zip(centres, o.d):
                # correlate's d: the moving content at xy lies at xy + d in the reference, so d = -t_true
                err["corr"].append(float(np.hypot(*(dc + t_true))) if np.all(np.isfinite(dc)) else np.inf)
                t = ur[cy - WIN // 2:cy + WIN // 2, cx - WIN // 2:cx + WIN // 2].astype(np.float32)
                c = cv2.matchTemplate(mw[cy - m:cy + m, cx - m:cx + m].astype(np.float32), t, cv2.TM_CCOEFF_NORMED)
                iy, ix = np.unravel_index(int(np.argmax(c)), c.shape)
                err["ncc"].append(float(np.hypot(*(np.array([ix, iy]) - RADIUS - t_true))))
                d = descriptor_offset(dr, dm, cx, cy)
                err["desc"].append(float(np.hypot(*(d - t_true))))
                err["desc_int"].append(float(np.hypot(*(np.rint(d) - t_true))))
        n = len(err["desc"])

        def frac(e: list[float]) -> str:
            v = np.asarray(e)
            return " / ".join(f"{np.mean(v <= t):.2f}" for t in (0.5, 1.0, 2.0))

        print(f"{name:4s} {n:7d}  {frac(err['corr'])} ({kept / max(n, 1):.2f})  |  {frac(err['ncc'])}  |  "
              f"{frac(err['desc'])}  (integer peak {frac(err['desc_int'])})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
