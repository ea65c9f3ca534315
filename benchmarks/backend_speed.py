"""Speed of the inference backends on the network trunk, side by side in one process (ratios to torch).

Each round runs every backend once on the same 1024 x 1024 input, in rotating order, after one warm-up call
(conversion / export and compilation are not timed; they are cached). Also prints the largest difference of the
raw descriptor map against torch.

    python benchmarks/backend_speed.py [--size 1024] [--rounds 3] [--weights PATH]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--weights", default=None)
    a = ap.parse_args()

    import numpy as np
    import torch

    from sarreg.extract import run_network
    from sarreg.model.backend import onnxruntime_available, openvino_available
    from sarreg.model.weights import load_model

    backends = ["torch"] + (["openvino"] if openvino_available() else []) + \
        (["onnxruntime"] if onnxruntime_available() else [])
    model = load_model(a.weights, torch.device("cpu"))
    unit = np.random.default_rng(0).uniform(0, 1, (a.size, a.size)).astype(np.float32)
    ref = run_network(model, unit, backend="torch").raw
    times: dict[str, list[float]] = {b: [] for b in backends}
    for b in backends:  # warm-up: conversion, compilation, first-call allocations
        diff = float((run_network(model, unit, backend=b).raw - ref).abs().max())
        print(f"{b:12s} max |raw - torch| = {diff:.2e}")
    for r in range(a.rounds):
        for b in backends[r % len(backends):] + backends[:r % len(backends)]:
            t0 = time.perf_counter()
            run_network(model, unit, backend=b)
            times[b].append(time.perf_counter() - t0)
    base = float(np.median(times["torch"]))
    print(f"whole forward (trunk + heads) on {a.size}x{a.size}, {torch.get_num_threads()} threads, "
          f"median of {a.rounds}:")
    for b in backends:
        m = float(np.median(times[b]))
        print(f"  {b:12s} {m:6.2f} s   {m / base:5.2f}x torch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
