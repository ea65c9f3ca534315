"""Sanity check of checkpoints with the real inference path (``extract_array`` + ``match_mnn``).

On synthetic pairs with a known homography (seeds disjoint from training, which draws random seeds < 2^31
from its own generator) it reports keypoints per image, mutual-NN matches, matches within 3 px of the truth
and their ratio (MMA@3), with the default extraction settings (multiscale, reliability/repeatability 0.7).

``python -m sarreg.train.check CKPT [CKPT ...] --pairs 6 --size 384``   ("random" = random initialisation)
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from sarreg.config import ExtractConfig
from sarreg.model.weights import Model, load_model, random_model
from sarreg.train.pairs import PairConfig, Source, make_pair


def check(model: Model, n_pairs: int = 6, size: int = 384, cfg: ExtractConfig | None = None, seed: int = 4242) -> dict:
    """Mean numbers over ``n_pairs`` synthetic pairs (see module docstring)."""
    from sarreg.extract import extract_array
    from sarreg.match import match_mnn

    cfg = cfg or ExtractConfig(top_k=2000, min_size=128, device="cpu")
    rng = np.random.default_rng(seed)
    src = Source("synthetic", 1.0, size=int(size * 1.5))
    rows = []
    for _ in range(n_pairs):
        v1, v2, syn = src.views(rng)
        p = make_pair(v1, v2, rng, PairConfig(crop=size, cutout=0.0), synthetic=syn)
        f1 = extract_array(model, p["img1"], cfg=cfg)
        f2 = extract_array(model, p["img2"], cfg=cfg)
        row = {"kp1": len(f1.keypoints), "kp2": len(f2.keypoints), "matches": 0, "correct": 0}
        if len(f1.keypoints) and len(f2.keypoints):
            m = match_mnn(f1.descriptors, f2.descriptors)
            xy1 = f1.keypoints[m.idx1, :2].astype(np.float64)
            xy2 = f2.keypoints[m.idx2, :2].astype(np.float64)
            H = p["H"]
            d = H[2, 0] * xy1[:, 0] + H[2, 1] * xy1[:, 1] + H[2, 2]
            gt = np.stack([(H[0, 0] * xy1[:, 0] + H[0, 1] * xy1[:, 1] + H[0, 2]) / d,
                           (H[1, 0] * xy1[:, 0] + H[1, 1] * xy1[:, 1] + H[1, 2]) / d], 1)
            row["matches"] = len(m.idx1)
            row["correct"] = int((np.linalg.norm(gt - xy2, axis=1) <= 3.0).sum())
        rows.append(row)
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["mma3"] = out["correct"] / max(out["matches"], 1e-9)
    return out


def main() -> None:
    """Command line: one line of numbers per checkpoint, to compare candidates on the real inference path."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--mchan", type=int, default=3, help="width of the 'random' baseline")
    ap.add_argument("--rel-thr", type=float, default=0.7)
    ap.add_argument("--rep-thr", type=float, default=0.7)
    a = ap.parse_args()
    torch.set_num_threads(2)
    cfg = ExtractConfig(top_k=2000, min_size=128, device="cpu", rel_thr=a.rel_thr, rep_thr=a.rep_thr)
    for c in a.checkpoints:
        model = random_model(mchan=a.mchan) if c == "random" else load_model(c)
        r = check(model, a.pairs, a.size, cfg)
        print(f"{c}: kp {r['kp1']:.0f}/{r['kp2']:.0f}, matches {r['matches']:.0f}, correct@3px {r['correct']:.0f}, "
              f"MMA@3 {r['mma3']:.3f}", flush=True)


if __name__ == "__main__":
    main()
