"""R2D2's reference multiscale extractor, reproduced exactly: the yardstick of equivalence tests (against R2D2's
published outputs) and of ``benchmarks/extract_vs_reference.py``; ``sarreg.extract`` is what sarreg runs."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.inference_mode()
def extract_multiscale_reference(net: torch.nn.Module, img: torch.Tensor, scale_f: float = 2 ** 0.25,
                                 min_scale: float = 0.0, max_scale: float = 1.0, min_size: int = 256,
                                 max_size: int = 1024, rel_thr: float = 0.7, rep_thr: float = 0.7,
                                 top_k: int = 5000) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple]]:
    """R2D2's reference multiscale extractor, reproduced exactly (chained bilinear pyramid, ``x * W / nw``).

    img: 1 x C x H x W normalised tensor. Returns (keypoints K x 3, scores K, descriptors K x 128, levels) in the
    reference's ascending-score order; levels = [(s, in_h, in_w, out_h, out_w, n_detections)].
    """
    _, _, H, W = img.shape
    s, cur = 1.0, img
    L = max(H, W)
    xs_all, ys_all, ss_all, cs_all, qs_all, ds_all, levels = [], [], [], [], [], [], []
    while s + 0.001 >= max(min_scale, min_size / L):
        if s - 0.001 <= min(max_scale, max_size / L):
            nh, nw = cur.shape[2:]
            out = net(cur)
            rel, rep, desc = out["reliability"][0, 0], out["repeatability"][0, 0], out["descriptors"][0]
            maxima = rep == F.max_pool2d(rep[None, None], 3, stride=1, padding=1)[0, 0]
            y, x = torch.nonzero(maxima & (rep >= rep_thr) & (rel >= rel_thr), as_tuple=True)
            levels.append((s, nh, nw, rep.shape[0], rep.shape[1], int(len(x))))
            xs_all.append(x.float() * W / nw)
            ys_all.append(y.float() * H / nh)
            ss_all.append(torch.full_like(x, 32 / s, dtype=torch.float32))
            cs_all.append(rel[y, x])
            qs_all.append(rep[y, x])
            ds_all.append(desc[:, y, x].T)
        s /= scale_f
        cur = F.interpolate(cur, size=(round(H * s), round(W * s)), mode="bilinear",
                            align_corners=False)
    if not xs_all:
        return np.zeros((0, 3), np.float32), np.zeros(0, np.float32), np.zeros((0, 128), np.float32), levels
    kp = torch.stack([torch.cat(xs_all), torch.cat(ys_all), torch.cat(ss_all)], 1).numpy()
    scores = (torch.cat(cs_all) * torch.cat(qs_all)).numpy()
    desc = torch.cat(ds_all).numpy()
    order = scores.argsort()[-top_k or None:]
    return kp[order], scores[order], desc[order], levels
