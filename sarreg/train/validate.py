"""Validation of a training run on fixed held-out pairs (loop's ``val_log.csv`` and ``best.pt``): single-scale
keypoints of the network outputs, mutual nearest neighbours, MMA@3 and M-score against the pairs' known flow."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sarreg.errors import InputError
from sarreg.model.weights import Model
from sarreg.train.pairs import PairConfig, Source, make_pair


def make_validation_set(sources: Sequence[Source], size: int = 256, n: int = 8, seed: int = 987654) -> list[dict]:
    """A fixed list of ``n`` pairs (size x size) drawn round-robin from ``sources`` with a fixed seed."""
    cfg = PairConfig(crop=size, cutout=0.0, blur=0.0)
    out: list[dict] = []
    rng = np.random.default_rng(seed)
    i = 0
    while len(out) < n and i < 20 * n:
        src = sources[i % len(sources)]
        i += 1
        v1, v2, syn = src.views(rng)
        try:
            out.append(make_pair(v1, v2, rng, cfg, synthetic=syn))
        except InputError:
            continue
    return out


def detect(out: dict[str, torch.Tensor], top_k: int, border: int = 8,
           use_reliability: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Single-scale keypoints from network outputs of one image: (xy K x 2 long, descriptors K x D).

    Local maxima (3x3) of repeatability, ranked by repeatability x reliability (or repeatability alone, as a
    model exported with a constant reliability ranks them), ``border`` px from the edge.
    """
    rep, desc = out["repeatability"][0, 0], out["descriptors"][0]
    rel = out["reliability"][0, 0] if use_reliability else torch.ones_like(rep)
    h, w = rep.shape
    peak = rep == F.max_pool2d(rep[None, None], 3, stride=1, padding=1)[0, 0]
    peak[:border], peak[-border:], peak[:, :border], peak[:, -border:] = False, False, False, False
    score = torch.where(peak, rep * rel, torch.full_like(rep, -1.0)).flatten()
    k = min(top_k, int(peak.sum()))
    idx = torch.topk(score, k).indices
    xy = torch.stack([idx % w, idx // w], 1)
    return xy, desc.flatten(1)[:, idx].t()


@torch.no_grad()
def evaluate(net: torch.nn.Module, model: Model, pairs: Sequence[dict], device: torch.device,
             top_k: int = 500, thresh: float = 3.0, use_reliability: bool = True) -> dict[str, float]:
    """Mean over pairs of: MMA@thresh of mutual-nearest-neighbour matches and M-score = correct / top_k."""
    was_training = net.training
    net.eval()
    mma, mscore, nmatch = [], [], []
    for p in pairs:
        outs = []
        for img in (p["img1"], p["img2"]):
            x = model.normalise(torch.from_numpy(img)[None, None].to(device))
            outs.append(net(x))
        xy1, d1 = detect(outs[0], top_k, use_reliability=use_reliability)
        xy2, d2 = detect(outs[1], top_k, use_reliability=use_reliability)
        if len(xy1) == 0 or len(xy2) == 0:
            mma.append(0.0), mscore.append(0.0), nmatch.append(0)
            continue
        sim = d1 @ d2.t()
        nn12 = sim.argmax(1)
        nn21 = sim.argmax(0)
        mutual = nn21[nn12] == torch.arange(len(xy1), device=sim.device)
        i1 = torch.nonzero(mutual)[:, 0].cpu().numpy()
        i2 = nn12[mutual].cpu().numpy()
        k1 = xy1.cpu().numpy()[i1]
        gt = p["aflow"][:, k1[:, 1], k1[:, 0]].T  # M x 2
        ok = np.isfinite(gt).all(1)
        err = np.linalg.norm(gt[ok] - xy2.cpu().numpy()[i2][ok], axis=1)
        correct = int((err <= thresh).sum())
        mma.append(correct / max(1, int(ok.sum())))
        mscore.append(correct / top_k)
        nmatch.append(int(ok.sum()))
    net.train(was_training)
    return {"mma3": float(np.mean(mma)), "mscore": float(np.mean(mscore)), "matches": float(np.mean(nmatch))}
