"""Descriptor matching: mutual nearest neighbours (optionally with Lowe's ratio test) -> ``Matches``."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Matches:
    """Index pairs into two feature sets. idx1, idx2: M int64; similarity: M float32 (cosine)."""

    idx1: np.ndarray
    idx2: np.ndarray
    similarity: np.ndarray

    def __len__(self) -> int:
        return int(self.idx1.shape[0])


@torch.inference_mode()
def match_mnn(desc1: np.ndarray, desc2: np.ndarray, ratio: float | None = None, min_similarity: float = -1.0,
              device: str | torch.device = "cpu", block: int = 4096) -> Matches:
    """Mutual nearest neighbours by cosine similarity of L2-normalised descriptors (N1 x D, N2 x D).

    Empty input gives empty matches. ``ratio``: keep a match only when its descriptor distance is below
    ratio x the distance to the second-best candidate (Lowe). Computed in row blocks to bound memory.
    """
    n1, n2 = len(desc1), len(desc2)
    if n1 == 0 or n2 == 0:
        return Matches(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    d1 = torch.as_tensor(np.ascontiguousarray(desc1, dtype=np.float32), device=device)
    d2 = torch.as_tensor(np.ascontiguousarray(desc2, dtype=np.float32), device=device)
    best12 = torch.empty(n1, dtype=torch.long, device=device)
    sim12 = torch.empty(n1, device=device)
    second12 = torch.full((n1,), -1.0, device=device)
    best21_val = torch.full((n2,), -2.0, device=device)
    best21 = torch.zeros(n2, dtype=torch.long, device=device)
    for a in range(0, n1, block):
        s = d1[a:a + block] @ d2.T
        k = min(2, n2)
        top = s.topk(k, dim=1)
        best12[a:a + block] = top.indices[:, 0]
        sim12[a:a + block] = top.values[:, 0]
        if k > 1:
            second12[a:a + block] = top.values[:, 1]
        colmax = s.max(dim=0)
        upd = colmax.values > best21_val
        best21_val = torch.where(upd, colmax.values, best21_val)
        best21 = torch.where(upd, colmax.indices + a, best21)
    i1 = torch.arange(n1, device=device)
    keep = (best21[best12] == i1) & (sim12 >= min_similarity)
    if ratio is not None and n2 > 1:
        dist1 = torch.sqrt(torch.clamp(2 - 2 * sim12, min=0))
        dist2 = torch.sqrt(torch.clamp(2 - 2 * second12, min=0))
        keep &= dist1 < ratio * dist2
    idx1 = i1[keep]
    return Matches(idx1.cpu().numpy().astype(np.int64), best12[keep].cpu().numpy().astype(np.int64),
                   sim12[keep].cpu().numpy().astype(np.float32))
