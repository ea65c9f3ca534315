"""Sensor and scene diversity for training views: another season, the cross-polarised channel, another sensor's
product, a JPEG file, smooth terrain distortion. Each takes a linear-power crop (NaN = invalid) and keeps its geometry and
nodata (except ``smooth_distortion``, which makes the displacement field ``make_pair`` applies).
"""
from __future__ import annotations

import cv2
import numpy as np

from sarreg import synth


def seasonal_change(power: np.ndarray, rng: np.random.Generator, fraction: float) -> np.ndarray:
    """``power`` as at another season: the level changes of ``temporal_change`` over ``fraction`` of the scene
    (applied as gains, so the speckle stays), then a smooth regional gain (correlation length ~1/3 of the image,
    up to about +-6 dB). Invalid pixels (NaN, <= 0) stay invalid."""
    ok = np.isfinite(power) & (power > 0)
    h, w = power.shape
    gain = synth.temporal_change(np.ones((h, w), np.float32), rng, fraction)
    gain *= np.power(10.0, 3.0 * synth.smooth_noise(rng, h, w, max(h, w) / 3.0) / 10.0)
    return np.where(ok, power * gain, np.nan).astype(np.float32)


def cross_pol_look(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A co-polarised (VV/HH) power crop as the cross-polarised channel (VH/HV) would show it; NaN stays NaN.

    Why: users register VH scenes, or VV to VH, and no allowed training scene has both channels on a large scale.
    Cross-pol backscatter is volume scattering: 6-10 dB below co-pol over vegetation, with a ratio that changes
    with land cover (a smooth random field at field scale, 20-50 % of the scene's contrast, at most 3 dB), much
    lower for bright double-bounce and point targets (their excess over the local median is compressed by
    30-70 %), and near the noise floor over water and smooth soil (an additive thermal noise a few dB below the scene's median cross-pol level).
    """
    ok = np.isfinite(p) & (p > 0)
    if ok.mean() < 0.05:
        return p
    h, w = p.shape
    q = np.where(ok, p, np.median(p[ok])).astype(np.float32)
    db = 10 * np.log10(np.maximum(q, 1e-12))
    local = 10 * np.log10(np.maximum(cv2.blur(q, (5, 5)), 1e-12))  # bright targets, not speckle peaks
    med = float(np.median(db[ok]))
    base = rng.uniform(-10.0, -6.0)
    spread = min(3.0, float(np.std(local[ok])))  # relative to the scene's own contrast (low in multilooked data)
    ratio = base + rng.uniform(0.2, 0.5) * spread * synth.smooth_noise(rng, h, w, rng.uniform(8.0, 40.0))
    ratio -= rng.uniform(0.3, 0.7) * np.maximum(local - (med + rng.uniform(4.0, 8.0)), 0.0)
    out = np.power(10.0, (db + ratio) / 10.0)
    floor = 10 ** ((med + base - rng.uniform(2.0, 8.0)) / 10.0)
    out = (out + floor * rng.exponential(1.0, out.shape)).astype(np.float32)
    out[~ok] = np.nan
    return out


def sensor_look(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same linear-power crop as another sensor / product would deliver it (NaN stays NaN).

    Why: the shipped scenes come from a few sensors; users' come from any. Each effect is drawn independently:
    coarser resolution (point-spread blur, then resampling to a 1-3x coarser pixel spacing and back), a thermal
    noise floor (additive exponential noise power, -15 to -3 dB below the median), and the storage of the product:
    8-bit dB display stretches with clipping, or integer amplitude (8/16-bit) with saturation and its dark
    quantisation. Amplitude vs intensity and dB vs linear need no simulation: the input preprocessing
    (log, then per-scene percentiles) maps them to the same network input.
    """
    ok = np.isfinite(p) & (p > 0)
    if ok.mean() < 0.05:
        return p
    q = np.where(ok, p, np.median(p[ok])).astype(np.float32)
    h, w = q.shape
    if rng.random() < 0.5:  # resolution: PSF + coarser pixel spacing
        f = rng.uniform(1.0, 3.0)
        q = cv2.GaussianBlur(q, (0, 0), 0.45 * f)
        if f > 1.3:
            small = cv2.resize(q, (max(8, round(w / f)), max(8, round(h / f))), interpolation=cv2.INTER_AREA)
            q = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        q = np.maximum(q, 1e-4 * float(np.median(q)))  # cubic overshoot stays a (dark) measurement
    if rng.random() < 0.3:  # thermal noise floor
        floor = float(np.median(q)) * 10 ** (rng.uniform(-15, -3) / 10)
        q = q + floor * rng.exponential(1.0, q.shape).astype(np.float32)
    r = rng.random()
    if r < 0.25:  # 8-bit dB display with a clipped stretch
        v, lo, hi = _db_to_8bit(q, rng)
        q = _8bit_to_power(v, lo, hi)
    elif r < 0.45:  # integer amplitude with saturation, 8 or 16 bit
        top = 255 if rng.random() < 0.5 else 65535
        a = np.sqrt(q)
        scale = rng.uniform(0.3, 1.0) * top / max(float(np.percentile(a, 99)), 1e-12)
        if top == 65535:
            scale = min(scale, rng.uniform(50, 3000) / max(float(np.median(a)), 1e-12))
        a = np.clip(np.round(a * scale), 0, top)
        q = (np.maximum(a, 0.5) / scale) ** 2  # zeros are dark measurements, as io.raster keeps them
    out = q.astype(np.float32)
    out[~ok] = np.nan
    return out


def _db_to_8bit(q: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """Positive power -> 8-bit dB display values 1..255 with a clipped percentile stretch, and the stretch (dB)."""
    db = 10 * np.log10(np.maximum(q, 1e-12))
    lo, hi = np.percentile(db, [rng.uniform(0.2, 5), rng.uniform(95, 99.9)])
    return np.round(np.clip((db - lo) / max(hi - lo, 1e-6), 0, 1) * 254) + 1, float(lo), float(hi)


def _8bit_to_power(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.power(10.0, (lo + (v - 1) / 254 * (hi - lo)) / 10)


def jpeg_look(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The crop as delivered in an 8-bit JPEG (a dB display stretch, quality 40-95); NaN stays NaN.

    Why: archives, quicklooks and many published SAR registration pairs come as JPEG. Its 8 x 8 block edges and
    ringing are structures of the file grid, not of the scene: keypoints must not lock onto them."""
    ok = np.isfinite(p) & (p > 0)
    if ok.mean() < 0.05:
        return p
    v, lo, hi = _db_to_8bit(np.where(ok, p, np.median(p[ok])), rng)
    _, buf = cv2.imencode(".jpg", v.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 96))])
    v = np.maximum(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32), 1.0)  # 0 would read as nodata
    out = _8bit_to_power(v, lo, hi).astype(np.float32)
    out[~ok] = np.nan
    return out


def smooth_distortion(rng: np.random.Generator, size: int, max_px: float) -> np.ndarray:
    """2 x size x size smooth displacement field (px) of random amplitude up to ``max_px``.

    Why: terrain and ground-range resampling bend real products away from any homography; tie points must still
    be found where the local geometry deviates by a pixel or two.
    """
    n = int(rng.integers(2, 5))
    coarse = rng.normal(0, 1, (2, n, n)).astype(np.float32)
    if rng.random() < 0.5:  # range-dependent (column-wise) stretch, as in ground-range products
        coarse[:, :, :] = coarse[:, :1, :]
    d = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_CUBIC) for c in coarse])
    return d * (rng.uniform(0.3, 1.0) * max_px / max(float(np.abs(d).max()), 1e-6))


def contrast_look(u: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A [0, 1] network-input image through a random intensity transfer curve (``valid`` pixels only).

    Why: unseen sensors and seasons change the radiometry far more than a gamma / offset (wet snow darkens
    fields by several dB, cross-pol and other bands reorder land covers, display products stretch non-linearly),
    while the scene's shapes stay. Training on random transfer curves (as SynthMorph does with random contrasts
    across modalities) asks the descriptors for shapes, not grey levels. The curve is piecewise linear through
    4-8 knots: monotone (random positive steps) or, half the time, free (any level at each knot: contrast
    reversals). Half the time two curves are blended by a smooth random mask (a regional change of radiometry,
    correlation length 1/4-1/2 of the image). The result is stretched again to the 1 / 99 percentiles, as
    ``image_to_unit`` does for a scene.
    """
    if valid.mean() < 0.05:
        return u
    h, w = u.shape

    def curve() -> np.ndarray:
        k = int(rng.integers(4, 9))
        if rng.random() < 0.5:
            lv = np.concatenate([[0.0], np.cumsum(rng.gamma(1.0, 1.0, k - 1))])
            lv /= lv[-1]
            if rng.random() < 0.5:
                lv = 1.0 - lv
        else:
            lv = rng.uniform(0.0, 1.0, k)
        return np.interp(u, np.linspace(0.0, 1.0, k), lv).astype(np.float32)

    v = curve()
    if rng.random() < 0.5:
        m = 1.0 / (1.0 + np.exp(-3.0 * synth.smooth_noise(rng, h, w, max(h, w) * rng.uniform(0.25, 0.5))))
        v = (m * v + (1.0 - m) * curve()).astype(np.float32)
    lo, hi = np.percentile(v[valid], [1, 99])
    if hi - lo < 1e-3:
        return u
    v = np.clip((v - lo) / (hi - lo), 0.0, 1.0)
    return np.where(valid, v, u).astype(np.float32)


def featureless_part(p: np.ndarray, rng: np.random.Generator, share: tuple[float, float] = (0.4, 0.6)
                     ) -> np.ndarray:
    """``p`` with the valid pixels beyond a random straight line (``share`` of them, uniform in the range) replaced
    by texture-free speckle at the local mean level (a Gaussian blur of a twelfth of the image): a lake, a forest
    or bare fields where nothing can be matched, so the tie points cover only the rest. Why: a model fitted to tie
    points in half the scene is trusted there and extrapolated elsewhere; validation pairs of this kind measure
    whether ``register`` says so. NaN stays NaN."""
    ok = np.isfinite(p) & (p > 0)
    if ok.mean() < 0.05:
        return p
    h, w = p.shape
    th = rng.uniform(0.0, 2.0 * np.pi)
    y, x = np.mgrid[0:h, 0:w]
    d = x * np.cos(th) + y * np.sin(th)
    part = ok & (d > np.quantile(d[ok], 1.0 - rng.uniform(*share)))
    q = np.where(ok, p, np.median(p[ok])).astype(np.float32)
    level = cv2.GaussianBlur(q, (0, 0), max(h, w) / 12.0, borderType=cv2.BORDER_REFLECT)
    flat = synth.speckle(level, rng.uniform(3.0, 6.0), rng)
    return np.where(part, flat, np.where(ok, p, np.nan)).astype(np.float32)
