"""Accuracy of ``sarreg.register`` on georeferenced pairs of turned footprints stored the ways users' files are.

Each pair: one synthetic landscape (``sarreg.synth``), two dates (independent 4-look speckle, temporal change over
15 % of the second), 600² crops offset by up to 40 px, each inside its own footprint turned by 8-14 deg (the
wedges outside it are fill), the moving georeference off by 2-10 px. Every pair is written in each encoding below
(float32 linear power / dB, uint16 amplitude, int16 dB x 100; the fill declared as nodata or not, 0 / NaN / -9999 /
-32768 / 65535, or tagged wrongly, with and without ``--nodata``; or the tag 0 marking a strip of holes beside the
fill: two nodata values in one file; or no wedges but untagged fill over lakes inside the scene) and registered with
the defaults (no warp); the mean grid error (moving px -> reference px, over a 10 x 10 grid) is printed per pair,
then per encoding: mean error of the usable estimates, ok results, ok results more than 3 px off, estimates within
1 / 3 px.

Usage::

    python benchmarks/fill_encodings.py [--pairs 6] [--encodings db_m9999_undeclared,...]
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from affine import Affine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sarreg import synth  # noqa: E402
from sarreg.config import RegisterConfig  # noqa: E402
from sarreg.evaluate import Method, homography_error, register_config, register_pair  # noqa: E402

# name -> (stored values from linear power p and its dB, the fill, the nodata tag written, dtype[, --nodata given])
ENCODINGS = {
    "linear_nodata0": (lambda p, db: p, 0.0, 0.0, "float32"),
    "linear_0_undeclared": (lambda p, db: p, 0.0, None, "float32"),
    "db_nan": (lambda p, db: db, float("nan"), float("nan"), "float32"),
    "db_0_undeclared": (lambda p, db: db, 0.0, None, "float32"),
    "db_m9999_declared": (lambda p, db: db, -9999.0, -9999.0, "float32"),
    "db_m9999_undeclared": (lambda p, db: db, -9999.0, None, "float32"),
    "linear_m9999_undeclared": (lambda p, db: p, -9999.0, None, "float32"),
    "uint16amp_0_undeclared": (lambda p, db: np.clip(np.sqrt(p) * 300, 1, 65534), 0.0, None, "uint16"),
    "uint16amp_65535_undeclared": (lambda p, db: np.clip(np.sqrt(p) * 300, 1, 65534), 65535.0, None, "uint16"),
    "int16db100_m32768_undeclared": (lambda p, db: np.round(db * 100), -32768.0, None, "int16"),
    "db_neginf_undeclared": (lambda p, db: db, -np.inf, None, "float32"),
    "float64db_nan_undeclared": (lambda p, db: db, float("nan"), None, "float64"),
    "complex64_0_undeclared": (lambda p, db: np.sqrt(p) * np.exp(2j * np.pi * np.random.default_rng(0).random(p.shape)),
                               0.0, None, "complex64"),
    # a wrong tag (0, as a default profile writes it) on -9999-filled files, without and with --nodata -9999
    "db_m9999_tagged0": (lambda p, db: db, -9999.0, 0.0, "float32"),
    "db_m9999_tagged0_option": (lambda p, db: db, -9999.0, 0.0, "float32", "-9999"),
    "linear_m9999_tagged0": (lambda p, db: p, -9999.0, 0.0, "float32"),
    "linear_m9999_tagged0_option": (lambda p, db: p, -9999.0, 0.0, "float32", "-9999"),
    "db_m9999_taggednan": (lambda p, db: db, -9999.0, float("nan"), "float32"),
    # two fill values: the tag 0 marks a strip of holes (a tenth of the width) and -9999 / -32768 fill the wedges
    "db_m9999_strip0": (lambda p, db: db, -9999.0, 0.0, "float32"),
    "linear_m9999_strip0": (lambda p, db: p, -9999.0, 0.0, "float32"),
    "int16db100_m32768_strip0": (lambda p, db: np.round(db * 100), -32768.0, 0.0, "int16"),
    # fill inside the scene, no tag: water / shadow masked in map geometry (the same map areas in both images, placed
    # by each one's georeference: its edges sit where the georeference says), no footprint wedges
    "db_m9999_lakes": (lambda p, db: db, -9999.0, None, "float32"),
    "int16db100_m32768_lakes": (lambda p, db: np.round(db * 100), -32768.0, None, "int16"),
    "linear_netcdf_lakes": (lambda p, db: p, float(np.float32(9.96921e36)), None, "float32"),
}


def lakes(rng: np.random.Generator, n: int = 900) -> np.ndarray:
    """3-6 ellipses of 15-40 px over an ``n``² landscape: True inside (about 1-7 % of a 600² crop)."""
    y, x = np.mgrid[0:n, 0:n]
    out = np.zeros((n, n), bool)
    for _ in range(int(rng.integers(3, 7))):
        cy, cx, r = rng.uniform(150, n - 150), rng.uniform(150, n - 150), rng.uniform(15, 40)
        out |= ((y - cy) / r) ** 2 + ((x - cx) / (r * rng.uniform(0.5, 2))) ** 2 < 1
    return out


def footprint(h: int, w: int, rng: np.random.Generator, deg: float) -> np.ndarray:
    """A rectangle turned by ``deg`` about a point near the centre, covering most of the image: True inside."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    cx, cy = w / 2 + rng.uniform(-0.25, 0.25) * w, h / 2 + rng.uniform(-0.25, 0.25) * h
    u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    return (np.abs(u) < rng.uniform(0.45, 0.6) * w) & (np.abs(v) < rng.uniform(0.5, 0.7) * h)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--encodings", default=",".join(ENCODINGS))
    a = ap.parse_args()
    names = a.encodings.split(",")
    cfg = register_config(Method("shipped", "register", None), RegisterConfig(device="cpu"))  # (no outputs)
    res: dict[str, list[tuple[str, float]]] = {n: [] for n in names}
    size = 600
    for i in range(a.pairs):
        rng = np.random.default_rng([47, i])
        refl = synth.reflectivity(900, 900, seed=100 + i)
        p1 = synth.speckle(refl, 4.0, rng)
        p2 = synth.speckle(synth.temporal_change(refl, rng, 0.15), 4.0, rng)
        ox, oy = int(rng.integers(-40, 41)), int(rng.integers(-40, 41))
        ref, mov = p1[150:150 + size, 150:150 + size], p2[150 + oy:150 + oy + size, 150 + ox:150 + ox + size]
        deg = rng.uniform(8, 14) * rng.choice([-1, 1])
        inside = (footprint(size, size, rng, deg), footprint(size, size, rng, deg))
        ex, ey = (rng.uniform(2, 10) * rng.choice([-1, 1]) for _ in range(2))
        t_ref = Affine(10, 0, 500000, 0, -10, 5000000)
        t_mov = Affine(10, 0, 500000 + (ox + ex) * 10, 0, -10, 5000000 - (oy + ey) * 10)
        truth = np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1.0]])
        water, gx, gy = lakes(np.random.default_rng([48, i])), int(round(ox + ex)), int(round(oy + ey))
        wet = (water[150:150 + size, 150:150 + size], water[150 + gy:150 + gy + size, 150 + gx:150 + gx + size])
        with tempfile.TemporaryDirectory() as td:
            for n in names:
                enc, fill, tag, dtype, *given = ENCODINGS[n]
                paths = []
                for j, (tag_name, p, ok, t) in enumerate((("ref", ref, inside[0], t_ref),
                                                          ("moving", mov, inside[1], t_mov))):
                    ok = ~wet[j] if n.endswith("_lakes") else ok
                    v = np.where(ok, enc(p, 10 * np.log10(np.maximum(p, 1e-6))), fill).astype(dtype)
                    if n.endswith("_strip0"):
                        v[:, : size // 10] = 0
                    paths.append(synth.write_geotiff(Path(td) / f"{tag_name}_{n}.tif", v, t, "EPSG:32633",
                                                     nodata=tag, compress="deflate"))
                run = register_pair(*paths, cfg.with_(preprocess=replace(cfg.preprocess, nodata=given[0]))
                                    if given else cfg)
                err = homography_error(truth, np.array(run.matrix) if run.usable else None, (size, size),
                                       (size, size))
                res[n].append((run.status, err))
                print(f"pair {i} {n}: {run.status} {err:.3f} px {run.message[:100]}", flush=True)
    print("\n| encoding | mean error px | ok | ok > 3 px | within 1 px | within 3 px |")
    print("|---|---:|---:|---:|---:|---:|")
    for n in names:
        r = res[n]
        fin = [e for _, e in r if math.isfinite(e)]
        print(f"| {n} | {np.mean(fin) if fin else float('inf'):.3f} | {sum(s == 'ok' for s, _ in r)} | "
              f"{sum(s == 'ok' and e > 3 for s, e in r)} | {sum(e <= 1 for _, e in r)} | "
              f"{sum(e <= 3 for _, e in r)} | of {len(r)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
