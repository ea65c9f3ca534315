"""Area-based matching: local sub-pixel offsets between two images on the same grid.

The moving image is first resampled onto the reference grid through the current transform (georeferencing
prior, coarse or fine estimate); what is left to measure is a small local offset per window. For each window
centre on a grid over the valid overlap we take a ``size`` x ``size`` window of both images and run a
speckle-robust phase correlation on the [0, 1] log-intensity images:

* windows are mean-removed and apodised (Hann), invalid pixels replaced by the window mean;
* the normalised cross-power spectrum (phase only: insensitive to radiometric change between dates) is
  weighted by a Gaussian low-pass, so the correlation surface is a sampled Gaussian centred on the offset
  (speckle lives in the high frequencies the weight removes);
* the peak is searched within ``radius`` of zero and refined by a 3-point fit of the log surface per axis,
  which is exact for a Gaussian peak (no pixel-locking bias);
* quality: peak height (1 = identical windows, ~0 = unrelated) and its ratio to the highest secondary peak.

Everything is vectorised over windows (one batched FFT). Offsets follow the pixel convention of the package
(x = column, y = row): a window centred at ``c`` in the warped moving image matches the reference at ``c + d``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# Minimum peak height and peak-to-secondary ratio for a window to count as a match (see Offsets.ok).
MIN_PEAK = 0.08
MIN_RATIO = 1.5
WHITEN = 1.0  # detection surface: cross-power spectrum divided by |X|^WHITEN (1 = phase only)
FIT_WHITEN = 0.5  # sub-pixel fit surface: partial whitening weighs frequencies closer to their signal-to-noise
MIN_TEXTURE = 0.02  # std of a reference window ([0, 1] log-intensity units) below which it is textureless
# peak width by speckle level (``peak_sigma``): pixel noise of the [0, 1] log images (a multi-look Sentinel-1 GRD is
# about 0.025, a single-look scene 0.15) mapped linearly from NOISY[0] -> SIGMA_RANGE[0] to NOISY[1] -> SIGMA_RANGE[1]
NOISY = (0.10, 0.14)
SIGMA_RANGE = (1.0, 2.0)


@dataclass
class Offsets:
    """Per-window result of ``correlate``.

    xy: N x 2 window centres (x, y) in the pixels of the images passed in; d: N x 2 offsets (px), the moving
    content at ``xy`` lies at ``xy + d`` in the reference; peak: N peak heights (0..1); ratio: N peak / secondary
    peak; ok: N bool, windows whose peak passed the quality thresholds.
    """

    xy: np.ndarray
    d: np.ndarray
    peak: np.ndarray
    ratio: np.ndarray
    ok: np.ndarray

    def __len__(self) -> int:
        return len(self.xy)

    @classmethod
    def empty(cls) -> "Offsets":
        z = np.zeros((0, 2))
        return cls(z, z.copy(), np.zeros(0), np.zeros(0), np.zeros(0, bool))

    @classmethod
    def concat(cls, parts: list["Offsets"]) -> "Offsets":
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("xy", "d", "peak", "ratio", "ok")))

    def subset(self, keep: np.ndarray) -> "Offsets":
        return Offsets(self.xy[keep], self.d[keep], self.peak[keep], self.ratio[keep], self.ok[keep])


def window_count(width: float, height: float, size: int, spacing: int) -> tuple[int, int]:
    """Windows of ``size`` px every ``spacing`` px that fit across a ``width`` x ``height`` image: (columns, rows)."""
    return int(max(0, (width - size) // spacing + 1)), int(max(0, (height - size) // spacing + 1))


def window_grid(valid: np.ndarray, size: int, spacing: int, min_valid: float = 0.9) -> np.ndarray:
    """Integer window centres (N x 2, x/y) on a regular grid whose ``size`` window is at least ``min_valid`` valid.

    ``valid``: H x W bool mask where both images hold data. Window of centre c spans [c - size//2, c + size - size//2).
    """
    h, w = valid.shape
    half = size // 2
    if h < size or w < size:
        return np.zeros((0, 2), np.int64)
    # centre the grid in the image so both borders get the same margin
    nx, ny = window_count(w, h, size, spacing)
    ox, oy = (w - size - (nx - 1) * spacing) // 2 + half, (h - size - (ny - 1) * spacing) // 2 + half
    xs, ys = ox + spacing * np.arange(nx), oy + spacing * np.arange(ny)
    c = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    # valid fraction of each window from an integral image
    ii = np.pad(valid.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    x0, y0 = c[:, 0] - half, c[:, 1] - half
    s = ii[y0 + size, x0 + size] - ii[y0, x0 + size] - ii[y0 + size, x0] + ii[y0, x0]
    return c[s >= min_valid * size * size].astype(np.int64)


def pixel_noise(img: np.ndarray, valid: np.ndarray, max_samples: int = 200_000) -> float:
    """Robust std of the pixel-to-pixel noise of an image (MAD of horizontal neighbour differences / sqrt 2).

    On [0, 1] log-intensity images this is the speckle level relative to the scene's dynamic range: scene
    structure changes slowly from pixel to pixel, speckle does not."""
    both = valid[:, 1:] & valid[:, :-1]
    d = (img[:, 1:] - img[:, :-1])[both]
    if d.size < 100:
        return 0.0
    if d.size > max_samples:
        d = d[:: d.size // max_samples + 1]
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0))


def peak_sigma(ref: np.ndarray, mov: np.ndarray, ref_valid: np.ndarray, mov_valid: np.ndarray) -> float:
    """Width (px) of the Gaussian the correlation peak is shaped into, from the noisier image's speckle level.

    Why: the low-pass removes the frequencies where speckle dominates; for single-look images (independent
    speckle at every pixel) that is most of them, and a peak of 1 px width lets speckle decide which windows agree;
    for multi-look images a narrow peak keeps the sub-pixel precision (training-split sets, models/HISTORY.md).
    The noise is relative to the scene's dynamic range: a low-contrast multi-look scene is widened too."""
    n = max(pixel_noise(ref, ref_valid), pixel_noise(mov, mov_valid))
    t = min(max((n - NOISY[0]) / (NOISY[1] - NOISY[0]), 0.0), 1.0)
    return SIGMA_RANGE[0] + t * (SIGMA_RANGE[1] - SIGMA_RANGE[0])


def _windows(img: np.ndarray, centres: np.ndarray, size: int) -> np.ndarray:
    """N x size x size copies of the windows of ``img`` around integer ``centres``."""
    v = np.lib.stride_tricks.sliding_window_view(img, (size, size))
    half = size // 2
    return v[centres[:, 1] - half, centres[:, 0] - half]


def _taper(size: int) -> np.ndarray:
    """1 x size x size Hann window that apodises correlation windows (zero just outside the window)."""
    hann = np.hanning(size + 2)[1:-1].astype(np.float32)
    return np.outer(hann, hann)[None]


def _lowpass(size: int, sigma: float) -> np.ndarray:
    """Gaussian weight over rfft2 frequencies whose inverse is a Gaussian of ``sigma`` px (spatial)."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    return np.exp(-2.0 * (np.pi * sigma) ** 2 * (fx ** 2 + fy ** 2)).astype(np.float32)


def _prepare(win: np.ndarray, valid: np.ndarray, taper: np.ndarray) -> np.ndarray:
    """Mean-removed, invalid-filled, apodised windows."""
    v = valid.astype(np.float32)
    n = np.maximum(v.sum((1, 2), keepdims=True), 1.0)
    mean = (win * v).sum((1, 2), keepdims=True) / n
    x = np.where(valid, win, mean) - mean
    return x * taper


def _surface(a: np.ndarray, b: np.ndarray, av: np.ndarray, bv: np.ndarray, taper: np.ndarray,
             sigma: float, fit: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """N x S x S phase-correlation surfaces with a Gaussian-shaped peak, offset 0 at [S//2, S//2], scaled so that
    identical windows peak at 1; with ``fit``, also the partially whitened surface used for the sub-pixel fit."""
    size = a.shape[-1]
    A = np.fft.rfft2(_prepare(a, av, taper))
    B = np.fft.rfft2(_prepare(b, bv, taper))
    X = A * np.conj(B)
    mag = np.abs(X) + 1e-12
    g = _lowpass(size, sigma)
    f = np.fft.fftfreq(size)
    norm = float(np.exp(-2.0 * (np.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2)).mean())
    shift = (lambda x: np.fft.fftshift(np.fft.irfft2(x, s=(size, size)), axes=(1, 2)))
    s = shift(X / mag ** WHITEN * g) / norm
    return s, (shift(X / mag ** FIT_WHITEN * g) if fit else None)


def correlate(ref: np.ndarray, mov: np.ndarray, ref_valid: np.ndarray, mov_valid: np.ndarray,
              centres: np.ndarray, size: int = 64, radius: float = 12.0, sigma: float | None = None,
              min_texture: float = MIN_TEXTURE, batch: int = 512) -> Offsets:
    """Sub-pixel offsets of ``mov`` relative to ``ref`` (same grid, H x W float [0, 1]) at integer ``centres``.

    radius: largest offset searched (px; capped at size/2 - 2). sigma: spatial width (px) of the Gaussian the
    correlation peak is shaped into (larger = more robust to speckle, less detail; None = from the images' speckle
    level, ``peak_sigma``). Windows whose reference part is textureless (std < ``min_texture``) are returned with
    ok = False.
    """
    centres = np.asarray(centres, dtype=np.int64).reshape(-1, 2)
    if not len(centres):
        return Offsets.empty()
    if sigma is None:
        sigma = peak_sigma(ref, mov, ref_valid, mov_valid)
    radius = float(min(radius, size / 2 - 2))
    taper = _taper(size)
    yy, xx = np.mgrid[:size, :size] - size // 2
    rr = np.hypot(xx, yy)
    search = rr <= radius
    parts = []
    for i in range(0, len(centres), batch):
        c = centres[i:i + batch]
        a = _windows(ref, c, size).astype(np.float32)
        b = _windows(mov, c, size).astype(np.float32)
        av = _windows(ref_valid, c, size)
        bv = _windows(mov_valid, c, size)
        w = av.astype(np.float32)
        nv = np.maximum(w.sum((1, 2)), 1.0)
        m1 = (a * w).sum((1, 2)) / nv
        texture = np.sqrt(np.maximum((a * a * w).sum((1, 2)) / nv - m1 * m1, 0.0))
        s, sf = _surface(a, b, av, bv, taper, sigma, fit=True)
        sm = np.where(search[None], s, -np.inf)
        k = sm.reshape(len(c), -1).argmax(1)
        py, px = np.divmod(k, size)
        peak = s[np.arange(len(c)), py, px]
        # sub-pixel position on the partially whitened surface, at its maximum next to the detected peak
        n_idx = np.arange(len(c))
        best = np.full(len(c), -np.inf)
        fy, fx = py.copy(), px.copy()
        for oy in (-1, 0, 1):
            for ox in (-1, 0, 1):
                yy_, xx_ = np.clip(py + oy, 1, size - 2), np.clip(px + ox, 1, size - 2)
                v = sf[n_idx, yy_, xx_]
                upd = v > best
                best[upd], fy[upd], fx[upd] = v[upd], yy_[upd], xx_[upd]
        dx = fx - px + _peak_fit(sf, fy, fx, axis=2)
        dy = fy - py + _peak_fit(sf, fy, fx, axis=1)
        # secondary peak: best value farther than 3 sigma + 1 px from the main one
        far = (np.hypot(xx[None] - (px - size // 2)[:, None, None], yy[None] - (py - size // 2)[:, None, None])
               > 3 * sigma + 1.0)
        second = np.where(far & search[None], s, -np.inf).reshape(len(c), -1).max(1)
        ratio = peak / np.maximum(second, 1e-3)
        d = np.c_[px - size // 2 + dx, py - size // 2 + dy]
        ok = (peak >= MIN_PEAK) & (ratio >= MIN_RATIO) & (texture >= min_texture) & np.isfinite(d).all(1)
        ok &= np.hypot(*d.T) <= radius
        parts.append(Offsets(c.astype(np.float64), d, peak.astype(np.float64), ratio.astype(np.float64), ok))
    return Offsets.concat(parts)


def _peak_fit(s: np.ndarray, py: np.ndarray, px: np.ndarray, axis: int) -> np.ndarray:
    """Sub-pixel offset (-0.5..0.5) of the peak along ``axis`` from a 3-point fit of the log surface
    (exact for a Gaussian peak); falls back to a parabola where a neighbour is not positive."""
    n = s.shape[axis]
    idx = np.arange(len(py))
    if axis == 2:
        lo, hi = np.clip(px - 1, 0, n - 1), np.clip(px + 1, 0, n - 1)
        c, m, p = s[idx, py, px], s[idx, py, lo], s[idx, py, hi]
    else:
        lo, hi = np.clip(py - 1, 0, n - 1), np.clip(py + 1, 0, n - 1)
        c, m, p = s[idx, py, px], s[idx, lo, px], s[idx, hi, px]
    with np.errstate(divide="ignore", invalid="ignore"):
        pos = (c > 0) & (m > 0) & (p > 0)
        lc, lm, lp = np.log(np.where(pos, c, 1)), np.log(np.where(pos, m, 1)), np.log(np.where(pos, p, 1))
        den_g = lm - 2 * lc + lp
        off_g = 0.5 * (lm - lp) / den_g
        den_p = m - 2 * c + p
        off_p = 0.5 * (m - p) / den_p
    off = np.where(pos & (den_g < 0), off_g, np.where(den_p < 0, off_p, 0.0))
    return np.clip(np.nan_to_num(off), -0.5, 0.5)


def _fft_size(shape: tuple[int, ...]) -> int:
    """Side of the square power-of-two frame (at least 16) that holds an image of ``shape``."""
    return int(2 ** math.ceil(math.log2(max(*shape, 16))))


def _padded(img: np.ndarray, valid: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``img`` and ``valid`` centred in a 1 x size x size zero frame, and a Hann taper over the data's own extent
    (not the padding), so that the image borders do not correlate."""
    h, w = img.shape
    a = np.zeros((1, size, size), np.float32)
    v = np.zeros((1, size, size), bool)
    oy, ox = (size - h) // 2, (size - w) // 2
    a[0, oy:oy + h, ox:ox + w], v[0, oy:oy + h, ox:ox + w] = img, valid
    ty = np.zeros(size, np.float32)
    tx = np.zeros(size, np.float32)
    ty[oy:oy + h] = np.hanning(h + 2)[1:-1]
    tx[ox:ox + w] = np.hanning(w + 2)[1:-1]
    return a, v, np.outer(ty, tx)[None]


def global_offset(ref: np.ndarray, mov: np.ndarray, ref_valid: np.ndarray, mov_valid: np.ndarray,
                  sigma: float = 1.5) -> tuple[np.ndarray, float, float]:
    """One shift (dx, dy) for the whole of two same-grid images (search up to half the image).

    Returns (d, peak, ratio) with the conventions of ``correlate``. Images are padded to a square power of two
    (``_padded``).
    """
    size = _fft_size(ref.shape)
    (a, av, taper), (b, bv, _) = _padded(ref, ref_valid, size), _padded(mov, mov_valid, size)
    s, _ = _surface(a, b, av, bv, taper, sigma)
    k = int(s[0].argmax())
    py, px = np.divmod(np.array([k]), size)
    peak = float(s[0, py[0], px[0]])
    d = np.array([px[0] - size // 2 + _peak_fit(s, py, px, axis=2)[0],
                  py[0] - size // 2 + _peak_fit(s, py, px, axis=1)[0]])
    yy, xx = np.mgrid[:size, :size]
    far = np.hypot(xx - px[0], yy - py[0]) > 3 * sigma + 1.0
    second = float(s[0][far].max())
    return d, peak, peak / max(second, 1e-3)


def repeat_period(img: np.ndarray, valid: np.ndarray, size: int = 128) -> tuple[float, float] | None:
    """The strongest repetition in an image: (period px, strength), or None when no window fits.

    A lattice of fields, greenhouses or plantation rows puts isolated peaks in the power spectrum (averaged over
    windows of ``size`` px: speckle averages out): strength is the highest local maximum over the median power of
    its frequency ring, for periods of 5 px to 3/8 of the window. Natural SAR scenes stay well under 100 (at most
    43 over 1088 training-split images), a lattice that dominates the scene reaches hundreds to thousands."""
    size = min(size, 2 ** int(math.log2(max(min(img.shape), 2))))
    c = window_grid(valid, size, size // 2) if size >= 32 else np.zeros((0, 2), np.int64)
    if not len(c):
        return None
    taper = _taper(size)
    power = np.zeros((size, size))
    for i in range(0, len(c), 64):
        w = _windows(img, c[i:i + 64], size).astype(np.float32)
        power += (np.abs(np.fft.fft2((w - w.mean((1, 2), keepdims=True)) * taper)) ** 2).sum(0)
    power = np.fft.fftshift(power)
    fy, fx = (np.mgrid[:size, :size] - size // 2) / size
    f = np.hypot(fx, fy)
    ring = np.minimum(np.round(f * size).astype(int), size // 2)
    med = np.array([np.median(power[ring == k]) if (ring == k).any() else 0.0 for k in range(size // 2 + 1)])
    rel = power / np.maximum(med[ring], 1e-12)
    p32 = power.astype(np.float32)
    peaks = (p32 >= cv2.dilate(p32, np.ones((3, 3), np.uint8))) & (f >= 1 / (0.375 * size)) & (f <= 1 / 5)
    rel = np.where(peaks, rel, 0.0)
    k = int(rel.argmax())
    return 1.0 / max(float(f.flat[k]), 1e-9), float(rel.flat[k])


def mean_surface(ref: np.ndarray, mov: np.ndarray, ref_valid: np.ndarray, mov_valid: np.ndarray,
                 centres: np.ndarray, size: int, sigma: float, batch: int = 256) -> tuple[np.ndarray, int]:
    """Sum of the correlation surfaces of windows at ``centres`` (``correlate``'s conventions, offset 0 at
    [size//2, size//2]) and their number. Summed, speckle and change average out; what every window shares stays:
    the true offset and, for a scene that repeats, the same peak again one period away. Each offset d is divided by
    the overlap of the squared taper with itself shifted by d (1 at d = 0), so that a perfect repeat d px away
    scores about as high as offset 0 instead of lower by the shrinking overlap of the windows."""
    centres = np.asarray(centres, dtype=np.int64).reshape(-1, 2)
    taper = _taper(size)
    total = np.zeros((size, size), np.float64)
    for i in range(0, len(centres), batch):
        c = centres[i:i + batch]
        s, _ = _surface(_windows(ref, c, size).astype(np.float32), _windows(mov, c, size).astype(np.float32),
                        _windows(ref_valid, c, size), _windows(mov_valid, c, size), taper, sigma)
        total += s.sum(0)
    w = np.fft.fft2(taper[0].astype(np.float64) ** 2)
    overlap = np.fft.fftshift(np.fft.ifft2(w * np.conj(w)).real)
    return total / np.maximum(overlap / overlap.max(), 1e-3), len(centres)


# Fourier-Mellin band: the spectrum's radii used, as fractions of the Nyquist radius. Below, the taper's own
# spectrum dominates; above, speckle. Chosen on synthetic speckled pairs (1-4 looks, 0-40 % change, +-15 deg,
# scale 0.8-1.25): 0.02-0.4 and 0.02-0.6 found every rotation and scale, 0.05 as the lower end or 0.25 as the
# upper missed some.
FM_BAND = (0.02, 0.5)


def _log_polar_spectrum(img: np.ndarray, valid: np.ndarray, size: int, n_angles: int, n_radii: int) -> np.ndarray:
    """Log-polar resampling (rows: angle over 180 deg, columns: log radius) of the high-pass filtered magnitude
    spectrum of the tapered image, limited to ``FM_BAND`` and mean-removed per radius. The spectrum of a real image
    is point-symmetric: the two half turns are averaged."""
    a, v, taper = _padded(img, valid, size)
    x = _prepare(a, v, taper)[0]
    f = np.fft.fftshift(np.fft.fftfreq(size))
    c = np.cos(np.pi * f[:, None]) * np.cos(np.pi * f[None, :])
    mag = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(x))) * (1 - c) * (2 - c)).astype(np.float32)
    rmax = size / 2
    lp = cv2.warpPolar(mag, (n_radii, 2 * n_angles), (size / 2, size / 2), rmax,
                       cv2.INTER_LINEAR | cv2.WARP_POLAR_LOG | cv2.WARP_FILL_OUTLIERS)
    lp = 0.5 * (lp[:n_angles] + lp[n_angles:])
    r = np.exp(np.arange(n_radii) * math.log(rmax) / n_radii)
    band = np.flatnonzero((r >= FM_BAND[0] * rmax) & (r <= FM_BAND[1] * rmax))
    weight = np.zeros(n_radii, np.float32)
    weight[band] = np.hanning(len(band) + 2)[1:-1]
    return (lp - lp.mean(0)) * weight


def rotation_scale(ref: np.ndarray, mov: np.ndarray, ref_valid: np.ndarray, mov_valid: np.ndarray,
                   n: int = 2, n_angles: int = 180, n_radii: int = 256) -> list[tuple[float, float, float]]:
    """Rotation and scale between two images of the same grid, whatever their shift (Fourier-Mellin).

    Why: area-based matching measures shifts only; when the moving image is turned or scaled against the reference
    (and keypoints fail under speckle or change), the magnitude spectra still are, independent of the shift, and a
    phase correlation of their log-polar resamplings gives the angle and the log scale. Returns the ``n`` strongest
    candidates as (angle deg, scale, peak), strongest first: the moving image turned by ``angle`` and scaled by
    ``scale`` about its centre (``sarreg.geometry.rotation``'s sense) looks like the reference; angles in
    [-90, 90): a magnitude spectrum cannot tell a turn from the same turn + 180 deg, both are the caller's to try.
    Resolution: 180 / ``n_angles`` deg and a factor exp(ln(size / 2) / ``n_radii``) (about 2 % on 1024 px), left
    to the refinement.
    """
    size = _fft_size(ref.shape)
    la = _log_polar_spectrum(ref, ref_valid, size, n_angles, n_radii)
    lb = _log_polar_spectrum(mov, mov_valid, size, n_angles, n_radii)
    x = np.fft.fft2(la) * np.conj(np.fft.fft2(lb))
    s = np.real(np.fft.ifft2(x / (np.abs(x) + 1e-9)))
    k_log = n_radii / math.log(size / 2)
    out: list[tuple[float, float, float]] = []
    for _ in range(n):
        k = int(s.argmax())
        dy, dx = divmod(k, n_radii)
        peak = float(s.flat[k])
        ang = (dy if dy < n_angles / 2 else dy - n_angles) * 180.0 / n_angles
        out.append((ang, math.exp(-(dx if dx < n_radii / 2 else dx - n_radii) / k_log), peak))
        rows = np.arange(dy - 3, dy + 4) % n_angles
        cols = np.arange(dx - 3, dx + 4) % n_radii
        s[np.ix_(rows, cols)] = -np.inf
    return out
