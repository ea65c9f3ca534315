"""Measure training iterations/s for network widths and crop sizes (forward + losses + backward + Adam step).

``python -m sarreg.train.speed --mchan 4 3 --crop 128 192 --batch 8 --iters 2`` prints one line per setting.
Pairs are generated once up front so only the network/loss cost is timed. Results depend on machine load.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from sarreg.model.r2d2 import build_network
from sarreg.model.weights import SAR_MEAN, SAR_STD, Model
from sarreg.train.loop import _forward
from sarreg.train.losses import R2D2Loss
from sarreg.train.pairs import PairConfig, Source, sample_pair


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(mchan: int, crop: int, batch: int, iters: int, threads: int = 2,
            amp: bool = False) -> tuple[float, float]:
    """Median (wall seconds, process CPU seconds) per training iteration (after one warm-up iteration).

    CPU seconds are less sensitive than wall time to other processes on a shared machine.
    """
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    src = [Source("synthetic", 1.0, size=2 * crop)]
    ps = [sample_pair(src, rng, PairConfig(crop=crop)) for _ in range(batch)]
    img1 = torch.from_numpy(np.stack([p["img1"] for p in ps]))[:, None]
    img2 = torch.from_numpy(np.stack([p["img2"] for p in ps]))[:, None]
    aflow = torch.from_numpy(np.stack([p["aflow"] for p in ps]))
    torch.set_flush_denormal(True)
    net = build_network("Fast_Quad_L2Net_ConfCFS", 1, mchan).train()
    if amp:
        net = net.to(memory_format=torch.channels_last)
    model = Model(net, "Fast_Quad_L2Net_ConfCFS", mchan, 1, list(SAR_MEAN), list(SAR_STD))
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    crit = R2D2Loss()
    times, cpus = [], []
    for i in range(iters + 1):
        t, c = time.perf_counter(), _cpu()
        loss, _ = crit(_forward(net, model.normalise(img1), amp), _forward(net, model.normalise(img2), amp), aflow)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t)
            cpus.append(_cpu() - c)
    return float(np.median(times)), float(np.median(cpus))


def main() -> None:
    """Command line: time each width x crop setting, to pick a training configuration this machine can run."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mchan", type=int, nargs="+", default=[4, 3])
    ap.add_argument("--crop", type=int, nargs="+", default=[128, 192])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--amp", action="store_true", help="bfloat16 trunk (as train --amp)")
    a = ap.parse_args()
    for m in a.mchan:
        for c in a.crop:
            s, cpu = measure(m, c, a.batch, a.iters, a.threads, a.amp)
            n = sum(p.numel() for p in build_network("Fast_Quad_L2Net_ConfCFS", 1, m).parameters())
            print(f"mchan={m} crop={c} batch={a.batch} amp={a.amp}: {s:.2f} s/it ({1 / s:.3f} it/s, "
                  f"{a.batch * c * c / s / 1e3:.1f} kpx/s), {cpu:.2f} CPU s/it, {n} parameters", flush=True)


if __name__ == "__main__":
    main()
