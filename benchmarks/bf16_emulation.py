"""bfloat16 autocast vs float32 for the network trunk on this machine: is bf16 native here, and what it costs.

Why: ``--precision bf16`` and ``sarreg train --amp`` run in float32 where the device has no native bfloat16
(``sarreg.network.native_bf16``). This script measures both precisions side by side in one run, forcing
autocast past that fallback, so the ratio that justifies it is reproducible on any machine.

    .venv/bin/python benchmarks/bf16_emulation.py [--size 512] [--repeats 3] [--threads 2]

Prints the median wall time of one ``run_network`` call (shipped model, inference) and of one training
forward + backward of the full-resolution network (batch 8, 128 px crops) in each precision, and their ratios.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN primitive creation)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    import sarreg.network as network
    from sarreg.model.r2d2 import build_network
    from sarreg.model.weights import load_model
    from sarreg.train.loop import _forward

    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"native bf16: {network.native_bf16('cpu')}, {a.threads} threads")
    model = load_model(None, "cpu")
    img = np.random.default_rng(0).random((a.size, a.size), dtype=np.float32)
    forced = {"fp32": "fp32", "bf16": "bf16"}
    real = network.usable_precision
    network.usable_precision = lambda p, d: forced[p]  # past the fallback: measure emulated bf16 too
    try:
        inf = {p: _median_time(lambda p=p: network.run_network(model, img, precision=p), a.repeats)
               for p in ("fp32", "bf16")}
    finally:
        network.usable_precision = real
    net = build_network("Quad_L2Net_ConfCFS", in_channels=1, mchan=3).train()
    x = torch.randn(8, 1, 128, 128)

    def step(amp: bool) -> None:
        out = _forward(net.to(memory_format=torch.channels_last) if amp else net, x, amp)
        sum(v.float().mean() for v in out.values()).backward()

    tr = {p: _median_time(lambda p=p: step(p == "bf16"), a.repeats) for p in ("fp32", "bf16")}
    print(f"inference run_network {a.size}^2 (shipped model): fp32 {inf['fp32']:.2f} s, bf16 {inf['bf16']:.2f} s, "
          f"bf16 / fp32 = {inf['bf16'] / inf['fp32']:.2f}x")
    print(f"training forward + backward (full-resolution net, batch 8, 128 px): fp32 {tr['fp32']:.2f} s, "
          f"bf16 {tr['bf16']:.2f} s, bf16 / fp32 = {tr['bf16'] / tr['fp32']:.2f}x")


if __name__ == "__main__":
    main()
