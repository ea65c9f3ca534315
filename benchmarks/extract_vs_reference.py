"""Inference backends and ``sarreg`` multiscale extraction against R2D2's reference algorithm, same weights, side
by side in one process.

The reference is R2D2's extract algorithm re-implemented plainly in torch (``sarreg.model.reference.
extract_multiscale_reference``: chained bilinear pyramid, whole image per level, fp32); ours is
``extract_array`` with the same level rule, thresholds and top-k, once per inference backend. Rounds rotate the
order; the median wall time of each is divided by the reference's. The same rounds also time one whole network
forward (trunk in the backend + heads in torch) per backend, against torch's, with the largest difference of the
raw descriptor map. Input: a speckled synthetic 1024² scene; conversion / compilation are cached, not timed.

    python benchmarks/extract_vs_reference.py [--size 1024] [--rounds 3] [--weights PATH] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    import numpy as np
    import torch

    from sarreg.config import ExtractConfig
    from sarreg.extract import extract_array, run_network
    from sarreg.model.reference import extract_multiscale_reference
    from sarreg.io.raster import image_to_unit
    from sarreg.model.backend import onnxruntime_available, openvino_available
    from sarreg.model.weights import load_model
    from sarreg.synth import reflectivity, speckle

    torch.set_num_threads(a.threads)
    model = load_model(a.weights, torch.device("cpu"))
    unit, valid = image_to_unit(speckle(reflectivity(a.size, a.size, seed=3), 4.0, np.random.default_rng(0)))
    thr = dict(rel_thr=model.rel_thr, rep_thr=model.rep_thr)  # the model's own thresholds, in both
    x = model.normalise(torch.from_numpy(unit)[None, None])

    def reference() -> int:
        with torch.inference_mode():
            kp, _, _, _ = extract_multiscale_reference(model.net.eval(), x, top_k=5000, **thr)
        return len(kp)

    runs = {"reference (R2D2 algorithm, torch fp32)": reference}
    backends = ["torch"] + (["openvino"] if openvino_available() else []) + \
        (["onnxruntime"] if onnxruntime_available() else [])
    for b in backends:
        cfg = ExtractConfig(top_k=5000, device="cpu", backend=b, min_size=256, **thr)  # R2D2's levels
        runs[f"sarreg extract_array [{b}]"] = (lambda cfg=cfg: len(extract_array(model, unit, valid, cfg)))
    for b in backends:
        runs[f"forward [{b}]"] = (lambda b=b: run_network(model, unit, backend=b).raw)
    raw_torch = run_network(model, unit, backend="torch").raw
    for b in backends:
        diff = float((run_network(model, unit, backend=b).raw - raw_torch).abs().max())
        print(f"forward [{b}]: max |raw - torch| = {diff:.2e}")
    for f in runs.values():  # warm-up (conversion / compilation are cached, not timed)
        f()
    times: dict[str, list[float]] = {k: [] for k in runs}
    counts: dict[str, int] = {}
    names = list(runs)
    for r in range(a.rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            counts[k] = runs[k]()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"multiscale extraction of a {a.size}² image, {a.threads} threads, median of {a.rounds} rounds:")
    for k in (n for n in names if not n.startswith("forward")):
        print(f"  {k:42s} {med[k]:6.2f} s  {med[k] / med[names[0]]:5.2f}x reference  ({counts[k]} keypoints)")
    print("one whole forward (trunk in the backend, heads in torch):")
    for k in (n for n in names if n.startswith("forward")):
        print(f"  {k:42s} {med[k]:6.2f} s  {med[k] / med['forward [torch]']:5.2f}x torch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
