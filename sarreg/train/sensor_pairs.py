"""Validation pairs for "other sensors": an evaluation-pair folder with each moving image given another sensor's
look (``sarreg.train.looks.sensor_look``: resolution, noise floor, 8/16-bit storage), the geometry unchanged;
optionally (``--change F``) strong temporal change too: polygons over a fraction F of the scene change level
(``sarreg.synth.temporal_change``) under a smooth regional gain of up to +-6 dB (snow, moisture, season);
``--polar``: the moving image as the cross-polarised channel would show it (``sarreg.train.looks.cross_pol_look``);
``--jpeg``: both images as 8-bit JPEG files would store them (``sarreg.train.looks.jpeg_look``), as legacy products
and published registration pairs come; ``--contrast``: the moving image's grey levels through a random transfer
curve, contrast reversals and regional changes included (``sarreg.train.looks.contrast_look``).

Why: the training-split validation pairs come from the training sensors and dates close in time; models are also
chosen on how they hold up when the moving image looks like another product or another season. Built from pairs of
``sarreg evaluate make-pairs`` made from training-split data only (never from evaluation data).

    python -m sarreg.train.sensor_pairs PAIRS_DIR OUT_DIR [--seed 0] [--change 0.4] [--polar] [--jpeg] [--contrast]
        [--single-look] [--no-look]
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sarreg.io.raster import to_log, unit_scale
from sarreg.synth import speckle, write_geotiff
from sarreg.train.looks import (contrast_look, cross_pol_look, featureless_part, jpeg_look, seasonal_change,
                                sensor_look)
from sarreg.train.images import load_power


def _power(path: Path) -> np.ndarray:
    """Linear power of a pair image, NaN invalid (0 is the nodata of 8-bit images)."""
    power = load_power(path)
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
        power[cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) == 0] = np.nan
    return power


def _georeference(path: Path) -> tuple[Any, Any]:
    """(transform, crs) of a georeferenced raster, so a look keeps it; (None, None) for a pixel-space image."""
    from sarreg.io.raster import open_dataset

    with open_dataset(path) as ds:
        return (ds.transform, ds.crs) if ds.crs is not None else (None, None)


def _contrast_power(power: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``contrast_look`` on linear power: dB stretched to [0, 1] over its 1 / 99 percentiles, remapped, and back
    over the same dB range; invalid pixels (NaN, <= 0) stay NaN."""
    db = to_log(power, "linear")
    valid = np.isfinite(db)
    if valid.sum() < 16:
        return power
    lo, hi = (float(v) for v in np.percentile(db[valid], (1, 99)))
    hi = max(hi, lo + 1e-6)
    out = 10.0 ** ((lo + contrast_look(unit_scale(db, lo, hi, 0.5), valid, rng) * (hi - lo)) / 10.0)
    return np.where(valid, out, np.nan)


def make_sensor_pairs(src: Path, out: Path, seed: int = 0, change: float = 0.0, look: bool = True,
                      polar: bool = False, jpeg: bool = False, single_look: bool = False,
                      contrast: bool = False, featureless: bool = False) -> list[Path]:
    """Copy every pair folder of ``src`` (``gt.json`` + ref + moving) to ``out`` with a sensor-looked moving image
    (``look``) and/or one with strong temporal change (``change`` > 0: the fraction of changed polygons) and/or
    the cross-polarised channel's look (``polar``), written
    as float32 linear power GeoTIFF, NaN nodata, with the source's georeference if it has one; pair i uses seed
    ``[seed, i]``. ``jpeg``: both images then go
    through an 8-bit JPEG (the reference too, written as ``ref.tif``). ``single_look``: both images first get
    1-2-look speckle, as single-look products show (the reference then written as ``ref.tif`` too). ``contrast``:
    the moving image's grey levels through a random transfer curve (``_contrast_power``). ``featureless``: the
    moving image texture-free beyond a random line, over 40-60 % of it (``featureless_part``). Returns the new
    folders."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    folders = sorted(p.parent for p in src.glob("*/gt.json"))
    for i, d in enumerate(folders):
        gt = json.loads((d / "gt.json").read_text())
        geo_ref, geo_mov = (_georeference(d / gt[k]) for k in ("ref", "moving"))
        dst = out / d.name
        dst.mkdir(exist_ok=True)
        rng = np.random.default_rng([seed, i])
        if jpeg or single_look:
            ref = _power(d / gt["ref"])
            ref = speckle(ref, rng.uniform(1, 2), rng) if single_look else ref
            write_geotiff(dst / "ref.tif", jpeg_look(ref, rng) if jpeg else ref.astype(np.float32), *geo_ref,
                          nodata=float("nan"))
            gt["ref"] = "ref.tif"
        else:
            shutil.copy2(d / gt["ref"], dst / gt["ref"])
        power = _power(d / gt["moving"])
        if single_look:
            power = speckle(power, rng.uniform(1, 2), rng)
        if change > 0:
            power = seasonal_change(power, rng, change)
        if featureless:
            power = featureless_part(power, rng)
        if polar:
            power = cross_pol_look(power, rng)
        if look:
            power = sensor_look(power, rng)
        if contrast:
            power = _contrast_power(power, rng)
        if jpeg:
            power = jpeg_look(power, rng)
        write_geotiff(dst / "moving.tif", power.astype(np.float32), *geo_mov, nodata=float("nan"))
        tag = "+".join((["single_look"] if single_look else []) + (["change"] if change > 0 else [])
                       + (["cross_pol"] if polar else []) + (["sensor_look"] if look else [])
                       + (["contrast"] if contrast else []) + (["featureless"] if featureless else [])
                       + (["jpeg"] if jpeg else [])) or "copy"
        gt.update(moving="moving.tif", source=f"{tag}:{gt.get('source', d.name)}")
        (dst / "gt.json").write_text(json.dumps(gt, indent=1))
        written.append(dst)
    if (src / "index.json").is_file():
        shutil.copy2(src / "index.json", out / "index.json")
    return written


def main() -> None:
    """Command line: write the other-sensor look of a pair folder, to choose models for unseen products."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--change", type=float, default=0.0, help="fraction of the scene with temporal change")
    ap.add_argument("--polar", action="store_true", help="the moving image as the cross-polarised channel")
    ap.add_argument("--jpeg", action="store_true", help="both images as 8-bit JPEG files would store them")
    ap.add_argument("--single-look", action="store_true", help="both images with 1-2-look speckle first")
    ap.add_argument("--contrast", action="store_true", help="the moving image through a random transfer curve")
    ap.add_argument("--featureless", action="store_true", help="the moving image texture-free over 40-60 %%")
    ap.add_argument("--no-look", action="store_true", help="keep the sensor's look (only --change / --polar)")
    a = ap.parse_args()
    n = len(make_sensor_pairs(a.src, a.out, a.seed, a.change, not a.no_look, a.polar, a.jpeg, a.single_look,
                                a.contrast, a.featureless))
    print(f"wrote {n} pairs to {a.out}")


if __name__ == "__main__":
    main()
