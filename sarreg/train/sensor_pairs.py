"""Validation pairs for "other sensors": an evaluation-pair folder with each moving image given another sensor's
look (``sarreg.train.pairs.sensor_look``: resolution, noise floor, 8/16-bit storage), the geometry unchanged.

Why: the training-split validation pairs come from the training sensors; models are also chosen on how they hold
up when the moving image looks like another product. Built from pairs of ``sarreg evaluate make-pairs`` made from
training-split data only (never from evaluation data).

    python -m sarreg.train.sensor_pairs PAIRS_DIR OUT_DIR [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from sarreg.synth import write_geotiff
from sarreg.train.pairs import load_power, sensor_look


def make_sensor_pairs(src: Path, out: Path, seed: int = 0) -> list[Path]:
    """Copy every pair folder of ``src`` (``gt.json`` + ref + moving) to ``out`` with a sensor-looked moving image
    (float32 linear power GeoTIFF, NaN nodata); pair i uses seed ``[seed, i]``. Returns the new folders."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    folders = sorted(p.parent for p in src.glob("*/gt.json"))
    for i, d in enumerate(folders):
        gt = json.loads((d / "gt.json").read_text())
        dst = out / d.name
        dst.mkdir(exist_ok=True)
        shutil.copy2(d / gt["ref"], dst / gt["ref"])
        power = load_power(d / gt["moving"])
        look = sensor_look(power, np.random.default_rng([seed, i]))
        write_geotiff(dst / "moving.tif", look.astype(np.float32), nodata=float("nan"))
        gt.update(moving="moving.tif", source=f"sensor_look:{gt.get('source', d.name)}")
        (dst / "gt.json").write_text(json.dumps(gt, indent=1))
        written.append(dst)
    if (src / "index.json").is_file():
        shutil.copy2(src / "index.json", out / "index.json")
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(f"wrote {len(make_sensor_pairs(a.src, a.out, a.seed))} pairs to {a.out}")


if __name__ == "__main__":
    main()
