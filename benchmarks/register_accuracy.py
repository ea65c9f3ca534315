"""Accuracy of ``sarreg.register`` on the evaluation pairs in ../shared/eval (evaluation only, never tuning).

For each pair, runs the pipeline (no warp) through ``sarreg.evaluate.run_pair`` -- the ``register`` method of
``sarreg evaluate`` -- and writes ``<id>.json`` = ``{"matrix": ..., "time_s": ..., "status": ...}`` or
``{"failed": true}`` into PRED_DIR, plus ``PRED_DIR_ok/`` where only ``status == "ok"`` results count (low-quality
ones become failures: what a user gets without ``--force``). Then runs the scorer:
``python ../shared/eval/score.py PRED_DIR --bench ../shared/eval``. (``sarreg evaluate run ../shared/eval`` gives
the same numbers, with per-source tables of its own.)

Usage::

    python benchmarks/register_accuracy.py OUT_DIR [--features r2d2|sift] [--weights PATH] [--model affine]
        [--area-descriptors auto|always|never] [--skip-large] [--ids a,b,...] [--limit N]
        [--bench ../shared/eval/geo_dev]

R2D2 weights: ``--weights``, else the shipped model (models/), else the reference checkpoint in ../shared
(comparison only).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
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
    ap.add_argument("--area-descriptors", default=None, choices=["auto", "always", "never"],
                    help="the refinement's windows checked by the dense descriptors (default: RegisterConfig's)")
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
    from sarreg.evaluate import USABLE, EvalOptions, Method, load_pairs, make_runner, run_pair

    pairs = load_pairs(bench, a.ids.split(",") if a.ids else None, skip_large=a.skip_large)  # index.json order
    if a.limit:
        pairs = pairs[: a.limit]
    weights = pick_weights(a.weights) if a.features == "r2d2" else None
    method = Method("register", "register", weights, a.features)
    rc = RegisterConfig(model=a.model, device="cpu")
    opt = EvalOptions(register=rc if a.area_descriptors is None else rc.with_(area_descriptors=a.area_descriptors))
    extractor = make_runner(method, opt)  # the network, loaded once
    pred, pred_ok = a.out_dir, Path(str(a.out_dir).rstrip("/") + "_ok")
    pred.mkdir(parents=True, exist_ok=True)
    pred_ok.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for i, p in enumerate(pairs):
        r = run_pair(p, method, extractor, opt)
        counts[r.status] = counts.get(r.status, 0) + 1
        usable = r.matrix and r.status in USABLE  # a "failed" estimate is not a result
        res = {"matrix": r.matrix, "time_s": round(r.time_s, 3), "status": r.status} if usable else {
            "failed": True, "status": r.status}
        (pred / f"{p.id}.json").write_text(json.dumps(res))
        ok = res if r.status == "ok" else {"failed": True, "status": r.status}
        (pred_ok / f"{p.id}.json").write_text(json.dumps(ok))
        print(f"[{i + 1}/{len(pairs)}] {p.id}: {r.status} {r.time_s:.1f}s {r.message[:100]}", flush=True)
    print("status counts:", counts)
    ids = pred / "ids.txt"
    ids.write_text("\n".join(p.id for p in pairs) + "\n")
    for p in (pred, pred_ok):
        print(f"== {p.name} ==", flush=True)
        subprocess.run([sys.executable, str(EVAL / "score.py"), str(p), "--bench", str(bench), "--ids", str(ids)],
                       check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
