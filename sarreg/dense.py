"""Area-based matching on the network's dense descriptors: window offsets that check the correlation's.

Why: on single-look speckle, strong temporal change or unlike radiometry the phase correlation of a 64 px window
often peaks on noise, while the network's descriptors, trained to match across exactly these changes, averaged over
the same window still find the offset (``benchmarks/window_accuracy.py``: windows within 1 px, correlation vs
descriptors, 0.16 vs 0.46 on single-look looks, 0.27 vs 0.62 on strong change). Where the correlation holds it is
the more precise (a sub-pixel Gaussian fit), so the descriptors *check* its windows (``verified``): when they
confirm most of them the correlation's windows stand as they are; when they do not, the correlation is the weak
measure on this image and the descriptors' offsets stand in where the two disagree.

The similarity of a window at offset o is the mean over the window of the cosine similarity between the reference
descriptor at p and the moving descriptor at p + o, searched on the network's own grid (half resolution for the
Fast network: the descriptors' spatial detail; a full-resolution step around the peak measured no more precise on
known shifts, stop 39) and refined by a 3-point parabola per axis.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from sarreg.correlate import MIN_TEXTURE, Offsets

if TYPE_CHECKING:
    from sarreg.model.weights import Model

VERIFY_PX = 1.0  # a correlation window is verified when the descriptors' offset lies this close (px) to its own
RELIABLE = 0.6  # share of the windows both measured that agree, from which the correlation's windows are kept as
# they are (windows of `register`'s refinement on the training-split check sets: 0.64-0.90 on clean pairs, 0.16-0.59
# on single-look or strongly changed looks, stop 39)
CONFIRMED = 0.1  # ... and under which the descriptors confirm too little to stand in: two unrelated offsets within
# the search radius (6-8 px) agree within 1 px by chance for 2-3 % of the windows (a start far from the answer)
DISTINCT = 1.02  # a window's best similarity over the best one > 2 px away: under it the window is ambiguous
CACHE_MB = 256  # reference tiles' descriptor maps kept between passes (float16: 64 B per tile px, Fast network)


class DenseDescriber:
    """L2-normalised dense descriptors of a [0, 1] image from the network's trunk (``descriptor_map``): (C x h x w
    map, its step in image px: 2 for the Fast network's half-resolution map, else 1).

    ``cached=True`` keeps the map of that very array (the reference tiles, described again on every pass and start
    of the refinement), in float16, up to CACHE_MB in all."""

    def __init__(self, model: Model, device: torch.device | str = "cpu", precision: str = "fp32"):
        self.model, self.device, self.precision = model, device, precision
        self._cache: dict[int, tuple[np.ndarray, torch.Tensor, int]] = {}
        self._bytes = 0

    def __call__(self, unit: np.ndarray, valid: np.ndarray, cached: bool = False) -> tuple[torch.Tensor, int]:
        from sarreg.network import descriptor_map

        hit = self._cache.get(id(unit)) if cached else None
        if hit is not None and hit[0] is unit:
            return hit[1].float(), hit[2]
        img = np.where(valid, np.nan_to_num(unit), 0).astype(np.float32)
        raw, step = descriptor_map(self.model, img, self.device, self.precision)
        d = F.normalize(raw, dim=0)
        if cached and self._bytes + d.numel() * 2 <= CACHE_MB * 2 ** 20:
            self._cache[id(unit)] = (unit, d.half(), step)  # the array itself is held: its id stays its own
            self._bytes += d.numel() * 2
        return d, step


def _window_means(a: torch.Tensor, b: torch.Tensor, m: int, offsets: np.ndarray, rows: np.ndarray,
                  cols: np.ndarray, half: int, block: int = 16) -> np.ndarray:
    """For each (dx, dy) in ``offsets`` (|dx|, |dy| <= m): the mean over each window (centre ``rows`` / ``cols``,
    side 2 * half) of the dot product a(p) . b(p + offset) -> (len(offsets), len(rows)); b is 0 outside the image.

    The products are taken ``block`` rows at a time, channels last, for every offset of one dy in turn: the rows of
    both maps stay in the processor's cache across the offsets instead of streaming both whole maps from memory
    once per offset (3x faster on the 192² maps of the refinement's 384 px tiles, 7x on 512², the same values to
    2e-9; stop 45). Temporary memory: both maps once more (channels last) and one product image per offset of a dy."""
    C, H, W = a.shape
    al = a.permute(1, 2, 0).contiguous()
    bl = torch.zeros(H + 2 * m, W + 2 * m, C)
    bl[m:m + H, m:m + W] = b.permute(1, 2, 0)
    out = np.empty((len(offsets), len(rows)), np.float32)
    for oy in np.unique(offsets[:, 1]):
        ks = np.flatnonzero(offsets[:, 1] == oy)
        prod = torch.empty(len(ks), H, W)
        for y in range(0, H, block):
            h = min(block, H - y)
            ab, bb = al[y:y + h], bl[m + oy + y:m + oy + y + h]
            for j, k in enumerate(ks):
                ox = int(offsets[k, 0])
                torch.sum(ab * bb[:, m + ox:m + ox + W], -1, out=prod[j, y:y + h])
        for j, k in enumerate(ks):
            box = cv2.boxFilter(prod[j].numpy(), -1, (2 * half, 2 * half), anchor=(half, half), normalize=True,
                                borderType=cv2.BORDER_CONSTANT)
            out[k] = box[rows, cols]
    return out


def _peak_fit(s: np.ndarray, iy: int, ix: int) -> tuple[float, float]:
    """Sub-pixel (dx, dy) of the maximum at (iy, ix) of a surface by a 3-point parabola per axis (0 at borders)."""
    e = [0.0, 0.0]
    for ax, (i, n) in enumerate(((ix, s.shape[1]), (iy, s.shape[0]))):
        if 0 < i < n - 1:
            lo, mid, hi = s[iy, i - 1:i + 2] if ax == 0 else s[i - 1:i + 2, ix]
            den = lo - 2 * mid + hi
            if den < 0:
                e[ax] = float(np.clip(0.5 * (lo - hi) / den, -0.5, 0.5))
    return e[0], e[1]


def descriptor_offsets(dense: DenseDescriber, ru: np.ndarray, rv: np.ndarray, wu: np.ndarray, wv: np.ndarray,
                       centres: np.ndarray, size: int, radius: float) -> Offsets:
    """Per-window offsets (``Offsets``, as ``correlate``: the moving content at xy lies at xy + d in the reference)
    from the dense descriptors of the reference image and the moving image resampled onto its grid, searched
    within ``radius`` px. peak: the mean cosine similarity at the offset; ratio: over the best one > 2 px away;
    ok: a positive, distinct peak inside the search region, on a textured window."""
    c = np.asarray(centres, int).reshape(-1, 2)
    n = len(c)
    if not n:
        return Offsets.empty()
    half = size // 2
    (ra, step), (ma, _) = dense(ru, rv, cached=True), dense(wu, wv)
    # every offset within the radius on the network's grid, the peak refined by a parabola per axis
    R = max(1, int(math.ceil(radius / step)))
    grid = np.array([(ox, oy) for oy in range(-R, R + 1) for ox in range(-R, R + 1)])
    hr = np.clip(c[:, 1] // step, 0, ra.shape[1] - 1)
    hc = np.clip(c[:, 0] // step, 0, ra.shape[2] - 1)
    S = _window_means(ra, ma, R, grid, hr, hc, max(1, half // step))
    S = S.T.reshape(n, 2 * R + 1, 2 * R + 1)
    flat = S.reshape(n, -1)
    best_i = flat.argmax(1)
    iy, ix = np.divmod(best_i, 2 * R + 1)
    best = flat[np.arange(n), best_i]
    yy, xx = np.mgrid[-R:R + 1, -R:R + 1]
    near = (np.abs(yy[None] - (iy - R)[:, None, None]) * step <= 2) & (np.abs(xx[None] - (ix - R)[:, None, None])
                                                                         * step <= 2)
    second = np.where(near, -np.inf, S).reshape(n, -1).max(1)
    o = np.zeros((n, 2))
    for k in range(n):
        fx, fy = _peak_fit(S[k], iy[k], ix[k])
        o[k] = ((ix[k] - R + fx) * step, (iy[k] - R + fy) * step)
    textured = np.array([_textured(ru, rv, x, y, half, size) for x, y in c])
    # a peak on the search region's edge is no peak: the offset may lie beyond it (a start farther than the
    # radius from the answer), and such clipped offsets agree with each other on a wrong answer
    inside = (np.abs(ix - R) < R) & (np.abs(iy - R) < R)
    ok = (best > 0) & (best >= DISTINCT * second) & textured & inside & (np.hypot(*o.T) <= radius)
    ratio = np.where(second > 0, best / np.maximum(second, 1e-9), np.inf)
    return Offsets(c.astype(float), -o, best.astype(np.float64), ratio, ok)


def _textured(ru: np.ndarray, rv: np.ndarray, x: int, y: int, half: int, size: int) -> bool:
    """A window mostly valid (half its pixels) whose reference values vary (``MIN_TEXTURE``)."""
    y0, x0 = y - half, x - half
    if y0 < 0 or x0 < 0 or y0 + size > ru.shape[0] or x0 + size > ru.shape[1]:
        return False
    v = rv[y0:y0 + size, x0:x0 + size]
    return bool(v.mean() >= 0.5 and np.std(ru[y0:y0 + size, x0:x0 + size][v]) >= MIN_TEXTURE)


def verified(corr: Offsets, desc: Offsets) -> tuple[Offsets, np.ndarray]:
    """The area stage's windows given the correlation's and the descriptors' offsets of the same windows.

    When the descriptors confirm (within ``VERIFY_PX``) at least ``RELIABLE`` of the windows both measured, the
    correlation is reliable on this image: its windows as they are (peak: the correlation's), the robust fit
    rejecting the few off. Otherwise it mostly locked onto speckle or change: the windows the descriptors
    measured, with the correlation's (sub-pixel) offset where the two agree and the descriptors' elsewhere (peak:
    the descriptors' similarity); unless they agree on fewer than ``CONFIRMED`` (about chance: the search started
    too far from the answer), where the correlation's windows are left to fail the fit on their own.
    Why not only the confirmed windows: on clean pairs the descriptors' own scatter (a fifth of them > 1 px off,
    ``benchmarks/window_accuracy.py``) drops good windows and costs precision (stop 39).

    -> (the windows, a bool per window: its offset is the descriptors' alone, unconfirmed by the correlation)."""
    both = desc.ok & corr.ok
    agree = both & np.all(np.isfinite(corr.d), 1) & (np.hypot(*(corr.d - desc.d).T) <= VERIFY_PX) \
        if len(corr) == len(desc) else np.zeros_like(both)
    if not both.any() or agree.sum() >= RELIABLE * both.sum() or agree.sum() < CONFIRMED * both.sum():
        return corr.subset(corr.ok), np.zeros(int(corr.ok.sum()), bool)
    d = np.where(agree[:, None], corr.d, desc.d)
    return Offsets(desc.xy, d, desc.peak, desc.ratio, desc.ok).subset(desc.ok), ~agree[desc.ok]
