"""Training losses of the R2D2 family (written from the description in our spec, sections 6.1-6.6).

* ``ap_quantized``: differentiable average precision with ``nq`` linear-interpolation bins on [0, 1].
* ``NeighbourhoodSampler`` + ``reliability_loss``: each query pixel of img1 is scored against img2 descriptors
  around its ground-truth position (positives within ``pos_d`` px, negatives on a ring ``neg_d..ngh``) and
  against random distractors; loss = 1 - AP * r - base * (1 - r) with reliability r.
  An optional ungated ``1 - AP`` term (our addition, weight ``ap``) avoids a dead start on speckled SAR
  pairs: when the initial AP is below ``base`` everywhere, the reliability loss alone drives r to 0, which
  also removes the gradient to the descriptors.
* ``cosim_loss``: repeatability maps must agree once img2's map is sampled at the flow (exactly at aflow,
  i.e. align_corners=True; pixels without valid flow are masked out).
* ``peaky_loss``: repeatability must be locally peaky; ``sharpen_loss``: push local maxima to 1, rest to 0.

All functions work on batches: descriptors B x D x H x W (L2-normalised), maps B x 1 x H x W, aflow B x 2 x H x W.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def ap_quantized(scores: torch.Tensor, labels: torch.Tensor, nq: int = 20) -> torch.Tensor:
    """Average precision per row of ``scores`` (Q x M similarities) with binary ``labels`` (Q x M) -> Q.

    Bin k (centre 1 - k/(nq-1)) receives weight max(0, 1 - (nq-1)|x - c_k|); values >= 1 go to the first bin,
    values <= 0 to the last, so every score contributes a total weight of 1.
    """
    t = ((1.0 - scores) * (nq - 1)).clamp(0, nq - 1)
    lo = t.detach().floor().clamp(max=nq - 2)
    frac = t - lo
    lo = lo.long()
    q = scores.shape[0]
    zeros = scores.new_zeros(q, nq)
    n = zeros.scatter_add(1, lo, 1 - frac).scatter_add(1, lo + 1, frac)
    lab = labels.to(scores.dtype)
    p = zeros.scatter_add(1, lo, (1 - frac) * lab).scatter_add(1, lo + 1, frac * lab)
    prec = p.cumsum(1) / (1e-16 + n.cumsum(1))
    rec = p / p.sum(1, keepdim=True).clamp_min(1e-16)
    return (prec * rec).sum(1)


def _ring_offsets(r_min: float, r_max: float) -> torch.Tensor:
    r = int(r_max)
    ys, xs = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
    d2 = xs ** 2 + ys ** 2
    keep = (d2 >= r_min ** 2) & (d2 <= r_max ** 2)
    return torch.stack([xs[keep], ys[keep]], 1)  # K x 2 (dx, dy)


def _gather_pixels(maps: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """maps B x C x H x W, integer x, y of shape B x ... -> B x ... x C."""
    b, c, h, w = maps.shape
    idx = (y * w + x).reshape(b, -1)
    flat = maps.reshape(b, c, h * w).transpose(1, 2)  # B x HW x C
    out = torch.gather(flat, 1, idx.unsqueeze(-1).expand(-1, -1, c))
    return out.reshape(*x.shape, c)


@dataclass
class NeighbourhoodSampler:
    """Query/positive/negative/distractor sampling (spec 6.1). ``subq``: one query per subq^2 pixels."""

    ngh: int = 7
    subq: int = 8
    pos_d: int = 3
    neg_d: int = 5
    border: int = 16
    maxpool_pos: bool = True

    def __call__(self, desc1: torch.Tensor, desc2: torch.Tensor, rel1: torch.Tensor, rel2: torch.Tensor,
                 aflow: torch.Tensor, gen: torch.Generator | None = None):
        """-> scores Q x M, labels Q x M (bool), mask Q (valid queries), confidence Q."""
        b, d, h, w = desc1.shape
        dev = desc1.device
        bd = min(self.border, (h - 1) // 2, (w - 1) // 2)
        n = max(1, ((h - 2 * bd) * (w - 2 * bd)) // (self.subq ** 2))

        def rand_xy() -> tuple[torch.Tensor, torch.Tensor]:
            x = torch.randint(bd, w - bd, (b, n), generator=gen, device="cpu").to(dev)
            y = torch.randint(bd, h - bd, (b, n), generator=gen, device="cpu").to(dev)
            return x, y

        qx, qy = rand_xy()
        flow = _gather_pixels(aflow, qx, qy)  # B x n x 2
        finite = torch.isfinite(flow).all(-1)
        tgt = torch.floor(torch.nan_to_num(flow, nan=-1e6) + 0.5)
        mask = finite & (tgt[..., 0] >= 0) & (tgt[..., 0] < w) & (tgt[..., 1] >= 0) & (tgt[..., 1] < h)
        tx = tgt[..., 0].clamp(0, w - 1).long()
        ty = tgt[..., 1].clamp(0, h - 1).long()

        qd = _gather_pixels(desc1, qx, qy)  # B x n x D
        pos_off = _ring_offsets(0, self.pos_d).to(dev)
        neg_off = _ring_offsets(self.neg_d, self.ngh).to(dev)
        offs = torch.cat([pos_off, neg_off], 0)
        px = (tx.unsqueeze(-1) + offs[:, 0]).clamp(0, w - 1)  # B x n x K
        py = (ty.unsqueeze(-1) + offs[:, 1]).clamp(0, h - 1)
        nd = _gather_pixels(desc2, px, py)  # B x n x K x D
        local = (nd * qd.unsqueeze(2)).sum(-1)  # B x n x K
        npos = pos_off.shape[0]
        pos, neg = local[..., :npos], local[..., npos:]
        conf1 = _gather_pixels(rel1, qx, qy)[..., 0]
        if self.maxpool_pos:
            pos, arg = pos.max(-1, keepdim=True)
            ax = torch.gather(px[..., :npos], -1, arg)[..., 0]
            ay = torch.gather(py[..., :npos], -1, arg)[..., 0]
            conf = (conf1 + _gather_pixels(rel2, ax, ay)[..., 0]) / 2
        else:
            conf = conf1

        dx, dy = rand_xy()
        dd = _gather_pixels(desc2, dx, dy).reshape(b * n, d)  # (B n) x D
        dscores = qd.reshape(b * n, d) @ dd.t()  # (B n) x (B n)
        same = torch.arange(b, device=dev).repeat_interleave(n)
        close = ((tx.reshape(-1, 1) - dx.reshape(1, -1)) ** 2 + (ty.reshape(-1, 1) - dy.reshape(1, -1)) ** 2) < self.neg_d ** 2
        dscores = torch.where(close & (same.view(-1, 1) == same.view(1, -1)), torch.zeros_like(dscores), dscores)

        scores = torch.cat([pos.reshape(b * n, -1), neg.reshape(b * n, -1), dscores], 1)
        labels = torch.zeros_like(scores, dtype=torch.bool)
        labels[:, :pos.shape[-1]] = True
        return scores, labels, mask.reshape(-1), conf.reshape(-1)


def reliability_loss(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, conf: torch.Tensor,
                     base: float = 0.5, nq: int = 20) -> torch.Tensor:
    """mean over valid queries of 1 - AP * r - base * (1 - r) (0 when no query is valid)."""
    if not bool(mask.any()):
        return scores.sum() * 0.0
    ap = ap_quantized(scores[mask], labels[mask], nq)
    r = conf[mask]
    return (1 - ap * r - base * (1 - r)).mean()


def warp_by_flow(img2_map: torch.Tensor, aflow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample a B x C x H2 x W2 map of img2 at aflow (exact positions, align_corners=True) -> (map, valid)."""
    h2, w2 = img2_map.shape[-2:]
    valid = torch.isfinite(aflow).all(1, keepdim=True)
    f = torch.nan_to_num(aflow, nan=0.0)
    gx = 2 * f[:, 0] / max(w2 - 1, 1) - 1
    gy = 2 * f[:, 1] / max(h2 - 1, 1) - 1
    grid = torch.stack([gx, gy], -1)
    out = F.grid_sample(img2_map, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out, valid


def cosim_loss(rep1: torch.Tensor, rep2: torch.Tensor, aflow: torch.Tensor, n: int = 16,
               min_valid: float = 0.5) -> torch.Tensor:
    """1 - mean cosine similarity of N x N patches (stride N/2) of rep1 and rep2 warped into img1's frame."""
    rep2w, valid = warp_by_flow(rep2, aflow)
    v = valid.to(rep1.dtype)
    p1 = F.unfold(rep1 * v, n, stride=n // 2)  # B x N^2 x L
    p2 = F.unfold(rep2w * v, n, stride=n // 2)
    frac = F.unfold(v, n, stride=n // 2).mean(1)  # B x L
    cos = (F.normalize(p1, dim=1) * F.normalize(p2, dim=1)).sum(1)
    keep = frac >= min_valid
    if not bool(keep.any()):
        return rep1.sum() * 0.0
    return 1 - cos[keep].mean()


def peaky_loss(rep: torch.Tensor, n: int = 16) -> torch.Tensor:
    """1 - mean(local max - local mean) of the 3x3-smoothed map over (N+1) x (N+1) windows."""
    s = F.avg_pool2d(rep, 3, stride=1, padding=1, count_include_pad=True)
    mx = F.max_pool2d(s, n + 1, stride=1, padding=n // 2)
    av = F.avg_pool2d(s, n + 1, stride=1, padding=n // 2, count_include_pad=True)
    return 1 - (mx - av).mean()


def sharpen_loss(rep1: torch.Tensor, rep2: torch.Tensor, n: int = 17) -> torch.Tensor:
    """Sum over both images of mean((M - rep)^2), M = 1 at n x n local maxima of rep (constant target)."""
    total = rep1.new_zeros(())
    for rep in (rep1, rep2):
        with torch.no_grad():
            m = (rep == F.max_pool2d(rep, n, stride=1, padding=n // 2)).to(rep.dtype)
        total = total + ((m - rep) ** 2).mean()
    return total


@dataclass
class LossWeights:
    reliability: float = 1.0
    cosim: float = 1.0
    peaky: float = 1.0
    sharpen: float = 0.0
    ap: float = 0.0  # ungated 1 - AP term: keeps descriptors learning while reliability is still low


class R2D2Loss:
    """Weighted sum of the losses above; returns (total, dict of float components)."""

    def __init__(self, weights: LossWeights = LossWeights(), sampler: NeighbourhoodSampler | None = None,
                 n: int = 16, nq: int = 20, base: float = 0.5) -> None:
        self.w = weights
        self.sampler = sampler or NeighbourhoodSampler()
        self.n, self.nq, self.base = n, nq, base

    def __call__(self, out1: dict[str, torch.Tensor], out2: dict[str, torch.Tensor], aflow: torch.Tensor,
                 gen: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        parts: dict[str, torch.Tensor] = {}
        scores, labels, mask, conf = self.sampler(out1["descriptors"], out2["descriptors"], out1["reliability"],
                                                  out2["reliability"], aflow, gen)
        parts["reliability"] = reliability_loss(scores, labels, mask, conf, self.base, self.nq)
        if self.w.ap:
            parts["ap"] = (1 - ap_quantized(scores[mask], labels[mask], self.nq).mean()) if bool(mask.any()) \
                else scores.sum() * 0.0
        if self.w.cosim:
            parts["cosim"] = cosim_loss(out1["repeatability"], out2["repeatability"], aflow, self.n)
        if self.w.peaky:
            parts["peaky"] = (peaky_loss(out1["repeatability"], self.n) + peaky_loss(out2["repeatability"], self.n)) / 2
        if self.w.sharpen:
            parts["sharpen"] = sharpen_loss(out1["repeatability"], out2["repeatability"])
        total = sum(getattr(self.w, k) * v for k, v in parts.items())
        return total, {k: float(v.detach()) for k, v in parts.items()}
