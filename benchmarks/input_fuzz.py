"""Random input shapes through ``sarreg info`` and ``sarreg register`` (each a fresh CLI process): a traceback, an
exit code other than 0 / 1 / 2 / 3, a GDAL warning line or more than two stderr lines is a bug (``"bad": true``).

Cases: image sides from 40 to 1500 px, seven encodings (float32 linear / dB, uint16 amplitude, int16 dB x 100,
complex64, uint8, float64 dB), fill wedges (none, -9999 or NaN untagged, 0 tagged, -9999 tagged 0, -9999 / -32768 /
65535 beside a strip the tag 0 marks), untagged fill over lakes inside the image (-9999, -32768, 65535, 0),
georeferencing (UTM, pixel space, the moving raster reprojected to EPSG:4326 or to 30 m), half of them with a
random ``--nodata``. Small images are expected to fail as registrations (exit 2 / 3); what is checked is how.

Usage::

    python benchmarks/input_fuzz.py WORKDIR [--seed 1] [--cases 30]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sarreg import synth  # noqa: E402

SARREG = [sys.executable, "-m", "sarreg.cli"]
ENCODINGS = ("f32lin", "f32db", "u16amp", "i16db", "c64", "u8", "f64db")
FILLS = ("none", "tag0", "m9999", "nan", "m9999tag0", "strip0", "lakes")
GEOS = ("utm", "pixel", "utm_vs_4326", "utm_res3")


def encode(p: np.ndarray, enc: str, rng: np.random.Generator) -> np.ndarray:
    """Linear power ``p`` stored as ``enc``."""
    db = 10 * np.log10(np.maximum(p, 1e-6))
    if enc == "f32lin":
        return p.astype("float32")
    if enc in ("f32db", "f64db"):
        return db.astype("float32" if enc == "f32db" else "float64")
    if enc == "u16amp":
        return np.clip(np.sqrt(p) * 300, 1, 65000).astype("uint16")
    if enc == "i16db":
        return np.round(db * 100).astype("int16")
    if enc == "c64":
        return (np.sqrt(p) * np.exp(2j * np.pi * rng.random(p.shape))).astype("complex64")
    return np.clip((db + 25) * 6, 1, 255).astype("uint8")


def add_fill(a: np.ndarray, fill: str) -> None:
    """A wedge of fill in place: -9999 where the type holds it, NaN in floats, else 0; "strip0": -9999 (-32768 in
    int16, 65535 in uint16) beside a strip of 0 (the tag); "lakes": that value in discs inside the image."""
    h, w = a.shape
    if fill == "none" or min(h, w) <= 60:
        return
    y, x = np.mgrid[0:h, 0:w]
    wedge = y < 0.25 * (w - x) - 0.1 * h
    if fill in ("strip0", "lakes"):
        big = {"int16": -32768, "uint16": 65535, "uint8": 0}.get(a.dtype.name, 0 if a.dtype.kind == "c" else -9999)
        if fill == "lakes":
            wedge = ((y - 0.4 * h) ** 2 + (x - 0.3 * w) ** 2 < (0.12 * min(h, w)) ** 2) | \
                    ((y - 0.7 * h) ** 2 + (x - 0.7 * w) ** 2 < (0.08 * min(h, w)) ** 2)
        a[wedge] = big
        if fill == "strip0":
            a[:, :max(4, w // 12)] = 0
        return
    if fill in ("m9999", "m9999tag0") and a.dtype.kind in "fi" and a.dtype != np.uint16:
        a[wedge] = -9999
    elif fill == "nan" and a.dtype.kind == "f":
        a[wedge] = np.nan
    else:
        a[wedge] = 0


def reprojected(src_path: Path, dst_path: Path, crs: str, res: float | None, nodata: float | None) -> Path:
    with rasterio.open(src_path) as src:
        tr, w, h = calculate_default_transform(src.crs, crs, src.width, src.height, *src.bounds, resolution=res)
        prof = dict(src.profile, crs=crs, transform=tr, width=w, height=h)
        with rasterio.open(dst_path, "w", **prof) as dst:
            reproject(rasterio.band(src, 1), rasterio.band(dst, 1), resampling=Resampling.bilinear, dst_nodata=nodata)
    return dst_path


def case(k: int, rng: np.random.Generator, work: Path) -> dict:
    h, w = int(rng.choice([48, 97, 300, 640, 1200])), int(rng.choice([40, 130, 300, 700, 1500]))
    refl = synth.reflectivity(h + 80, w + 80, seed=int(rng.integers(1000)))
    dx, dy = (int(v) for v in rng.integers(-15, 16, 2))
    enc, fill, geo = str(rng.choice(ENCODINGS)), str(rng.choice(FILLS)), str(rng.choice(GEOS))
    a1 = encode(synth.speckle(refl, 4, rng)[40:40 + h, 40:40 + w], enc, rng)
    a2 = encode(synth.speckle(refl, 4, rng)[40 + dy:40 + dy + h, 40 + dx:40 + dx + w], enc, rng)
    add_fill(a1, fill)
    add_fill(a2, fill)
    tag = 0 if fill in ("tag0", "m9999tag0", "strip0") else None
    crs = None if geo == "pixel" else "EPSG:32633"
    t1 = Affine(10, 0, 500000, 0, -10, 5000000)
    t2 = Affine(10, 0, 500000 + (dx + rng.uniform(-3, 3)) * 10, 0, -10, 5000000 - (dy + rng.uniform(-3, 3)) * 10)
    r = synth.write_geotiff(work / f"r{k}.tif", a1, t1 if crs else None, crs, nodata=tag, compress="deflate")
    m = synth.write_geotiff(work / f"m{k}.tif", a2, t2 if crs else None, crs, nodata=tag, compress="deflate")
    if geo in ("utm_vs_4326", "utm_res3") and a2.dtype.kind != "c":
        m = reprojected(m, work / f"m{k}b.tif", "EPSG:4326" if geo == "utm_vs_4326" else "EPSG:32633",
                        None if geo == "utm_vs_4326" else 30, tag)
    extra = [] if rng.random() < 0.5 else ["--nodata", str(rng.choice(["-9999", "0", "nan", "none"]))]
    doc = dict(case=k, shape=[h, w], encoding=enc, fill=fill, geo=geo, options=extra)
    for name, cmd in (("info", [*SARREG, "-q", "info", "--json", str(r), str(m), *extra]),
                      ("register", [*SARREG, "-q", "register", str(r), str(m), str(work / f"o{k}.tif"),
                                    "--overwrite", *extra])):
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        err = p.stderr.strip()
        bad = (p.returncode not in (0, 1, 2, 3) or "Traceback" in err or "Warning 1:" in err  # (GDAL's own)
               or len(err.splitlines()) > 2)
        doc[name] = dict(rc=p.returncode, bad=bad, stderr=err[-300:])
    doc["bad"] = doc["info"]["bad"] or doc["register"]["bad"]
    return doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cases", type=int, default=30)
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    bad = 0
    for k in range(a.cases):
        d = case(k, rng, a.workdir)
        bad += d["bad"]
        print(json.dumps(d), flush=True)
    print(f"{bad} bad of {a.cases}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
