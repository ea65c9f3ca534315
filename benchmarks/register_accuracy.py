"""Accuracy of ``sarreg.register`` on the evaluation pairs in ../shared/eval (evaluation only, never tuning).

For each pair, runs the pipeline (no warp) and writes ``<id>.json`` = ``{"matrix": ..., "time_s": ...,
"status": ...}`` or ``{"failed": true}`` into PRED_DIR, plus ``PRED_DIR_ok/`` where only ``status == "ok"``
results count (low-quality ones become failures: what a user gets without ``--force``). Then runs the scorer:
``python ../shared/eval/score.py PRED_DIR --bench ../shared/eval``.

Usage::

    python benchmarks/register_accuracy.py OUT_DIR [--features r2d2|sift] [--weights PATH] [--model affine]
        [--skip-large] [--ids a,b,...] [--limit N] [--bench ../shared/eval/geo_dev]

R2D2 weights: ``--weights``, else the shipped model (models/), else the reference checkpoint in ../shared
(comparison only).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
EVAL = SHARED / "eval"
sys.path.insert(0, str(REPO))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))
from register_speed import pick_weights  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--features", default="r2d2", choices=["r2d2", "sift"])
    ap.add_argument("--weights", default=None)
    ap.add_argument("--model", default="auto")
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--ids", default=None, help="comma-separated pair ids")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--bench", type=Path, default=EVAL,
                    help="benchmark folder with index.json (default ../shared/eval; e.g. ../shared/eval/geo_dev)")
    a = ap.parse_args()
    bench = a.bench
    if not bench.is_dir():
        print(f"evaluation data {bench} absent; nothing to do", file=sys.stderr)
        return 0

    from sarreg.config import RegisterConfig
    from sarreg.errors import SarregError
    from sarreg.pipeline import register

    index = json.loads((bench / "index.json").read_text())
    if a.ids:
        keep = set(a.ids.split(","))
        index = [e for e in index if e["id"] in keep]
    if a.skip_large:
        index = [e for e in index if not e.get("large")]
    if a.limit:
        index = index[: a.limit]
    weights = pick_weights(a.weights) if a.features == "r2d2" else None
    cfg = RegisterConfig(features=a.features, weights=weights, model=a.model, warp=False, tiepoints=False,
                         points=False, matches_npz=False, overwrite=True, device="cpu")
    pred, pred_ok = a.out_dir, Path(str(a.out_dir).rstrip("/") + "_ok")
    pred.mkdir(parents=True, exist_ok=True)
    pred_ok.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, e in enumerate(index):
            d = bench / ("geo_pairs" if e["set"] == "geo" else "pairs") / e["id"]
            ref = next(d.glob("ref.*"))
            mov = next(d.glob("moving.*"))
            t0 = time.perf_counter()
            try:
                rep = register(ref, mov, Path(tmp) / f"{e['id']}.tif", cfg)
                status, matrix, msg = rep.status, rep.matrix, rep.message
            except SarregError as err:
                status, matrix, msg = "error", None, str(err)
            dt = time.perf_counter() - t0
            counts[status] = counts.get(status, 0) + 1
            usable = matrix and status in ("ok", "low_quality")  # a "failed" estimate is not a result
            res = {"matrix": matrix, "time_s": round(dt, 3), "status": status} if usable else {"failed": True,
                                                                                                "status": status}
            (pred / f"{e['id']}.json").write_text(json.dumps(res))
            ok = res if status == "ok" else {"failed": True, "status": status}
            (pred_ok / f"{e['id']}.json").write_text(json.dumps(ok))
            print(f"[{i + 1}/{len(index)}] {e['id']}: {status} {dt:.1f}s {msg[:100]}", flush=True)
    print("status counts:", counts)
    ids = pred / "ids.txt"
    ids.write_text("\n".join(e["id"] for e in index) + "\n")
    for p in (pred, pred_ok):
        print(f"== {p.name} ==", flush=True)
        subprocess.run([sys.executable, str(EVAL / "score.py"), str(p), "--bench", str(bench), "--ids", str(ids)],
                       check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
