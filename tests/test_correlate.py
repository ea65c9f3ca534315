"""Area-based matcher: known-answer sub-pixel offsets on synthetic speckled scenes (project-generated data).

Shifted images are made with Lanczos resampling: bilinear resampling of speckle is not a pure shift (its phase
response is not linear) and would itself move the content by up to ~0.06 px."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sarreg import synth
from sarreg.correlate import Offsets, correlate, global_offset, rotation_scale, window_grid
from sarreg.geometry import rotation, translate
from sarreg.io.raster import image_to_unit


def _pair(d: tuple[float, float], seed: int, looks: float = 4.0, change: float = 0.0, n: int = 384):
    """Reference = date 1; moving = date 2 whose content sits at -d relative to the reference (so the moving
    window centred at c matches the reference at c + d)."""
    _, a, b = synth.make_pair(n, n, seed, looks=looks, change=change)
    H = np.array([[1, 0, d[0]], [0, 1, d[1]], [0, 0, 1]], dtype=np.float64)  # out px samples b at x + d
    bw = synth.warp_image(b, H, (n, n), interpolation=cv2.INTER_LANCZOS4)
    ua, va = image_to_unit(a)
    ub, vb = image_to_unit(bw, valid=np.isfinite(bw))
    return ua, va, ub, vb


@pytest.mark.parametrize("d", [(0.0, 0.0), (0.3, -0.45), (-0.5, 0.5), (2.71, 1.18), (-5.5, 3.25)])
def test_known_subpixel_offsets(d):
    ua, va, ub, vb = _pair(d, seed=11)
    c = window_grid(va & vb, 64, 16)
    o = correlate(ua, ub, va, vb, c, size=64, radius=12)
    assert len(o) == len(c) and o.ok.mean() > 0.3
    err = o.d[o.ok] - np.array(d)
    assert np.median(np.hypot(*err.T)) < 0.65  # single windows: speckle-limited (4 looks)
    # no pixel locking toward integers; the shared taper pulls large offsets slightly toward 0 (a few %), which
    # is why the pipeline correlates again through its first estimate (residual offsets near 0)
    assert np.abs(np.median(err, axis=0)).max() < 0.1 + 0.03 * np.abs(d).max()


def test_two_passes_recover_the_shift_to_a_few_hundredths():
    """What the pipeline does: correlate, resample the moving image through the estimate, correlate again; the
    robust mean over windows recovers the shift to <= 0.05 px."""
    errs = []
    n = 512
    for seed, d in enumerate([(0.25, 0.5), (-1.4, 0.8), (3.9, -2.35)]):
        _, a, b = synth.make_pair(n, n, seed, looks=4.0)
        ua, va = image_to_unit(a)
        est = np.zeros(2)
        for _ in range(2):
            H = np.array([[1, 0, d[0] - est[0]], [0, 1, d[1] - est[1]], [0, 0, 1]], dtype=np.float64)
            bw = synth.warp_image(b, H, (n, n), interpolation=cv2.INTER_LANCZOS4)
            ub, vb = image_to_unit(bw, valid=np.isfinite(bw))
            o = correlate(ua, ub, va, vb, window_grid(va & vb, 64, 16), size=64, radius=8)
            good = o.d[o.ok]
            med = np.median(good, axis=0)
            est = est + good[np.hypot(*(good - med).T) < 1.0].mean(0)
        errs.append(np.hypot(*(est - d)))
    assert np.mean(errs) <= 0.05, errs


def test_temporal_change_and_single_look():
    ua, va, ub, vb = _pair((1.3, -0.7), seed=5, looks=1.0, change=0.3, n=512)
    o = correlate(ua, ub, va, vb, window_grid(va & vb, 64, 16), size=64, radius=12)
    good = o.d[o.ok]
    assert len(good) >= 30
    med = np.median(good, axis=0)
    robust = good[np.hypot(*(good - med).T) < 1.0].mean(0)  # what the robust fit does, in short
    assert np.hypot(*(robust - (1.3, -0.7))) < 0.2


def test_textureless_and_unrelated_windows_are_rejected():
    rng = np.random.default_rng(0)
    flat = np.full((256, 256), 0.5, np.float32)
    v = np.ones_like(flat, bool)
    c = window_grid(v, 64, 32)
    o = correlate(flat, flat + rng.normal(0, 1e-4, flat.shape).astype(np.float32), v, v, c)
    assert not o.ok.any()  # textureless
    a = rng.random((256, 256), dtype=np.float32)
    b = rng.random((256, 256), dtype=np.float32)
    o = correlate(cv_blur(a), cv_blur(b), v, v, c, radius=12)
    assert o.ok.mean() < 0.3  # unrelated images: at most a few chance peaks, no common offset
    assert np.hypot(*o.d[o.ok].T).std() > 2 if o.ok.sum() > 2 else True


def cv_blur(x: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(x, (0, 0), 2.0)


def test_nodata_windows_skipped_and_offsets_empty():
    ua, va, ub, vb = _pair((0.0, 0.0), seed=2, n=256)
    vb = vb.copy()
    vb[:, 128:] = False  # right half of the moving image is nodata
    c = window_grid(va & vb, 64, 32)
    assert len(c) and (c[:, 0] + 32 <= 128 + 6).all()  # windows at least 90 % valid
    assert len(correlate(ua, ub, va, vb, np.zeros((0, 2), int))) == 0
    assert len(Offsets.concat([])) == 0
    assert len(window_grid(np.ones((32, 32), bool), 64, 32)) == 0


def test_global_offset_large_shift():
    ua, va, ub, vb = _pair((-23.4, 17.8), seed=8, n=384)
    d, peak, ratio = global_offset(ua, ub, va, vb)
    assert np.hypot(*(d - (-23.4, 17.8))) < 0.3
    assert peak > 0.1 and ratio > 2


@pytest.mark.parametrize("deg, scale, looks, change, shift", [
    (12.0, 1.15, 4.0, 0.0, (0, 0)), (-8.0, 0.85, 2.0, 0.3, (17, -9)), (15.0, 1.2, 2.0, 0.0, (-30, 22)),
    (-14.0, 1.25, 2.0, 0.4, (5, 40)), (7.0, 0.8, 1.0, 0.4, (0, -25)), (90.0, 1.0, 4.0, 0.2, (11, 3))])
def test_rotation_scale_whatever_the_shift(deg, scale, looks, change, shift):
    """Fourier-Mellin: the turn and scale of a speckled, changed, shifted moving image, without knowing the shift;
    a turn is found up to half a turn (the caller tries both). Its limit: with 30-40 % of the scene changed some
    draws are missed (2 of 7 here, single-look or not), which the caller's correlation windows then reject."""
    _, a, b = synth.make_pair(512, 512, seed=int(abs(deg) * 7 + looks), looks=looks, change=change)
    c = 255.5
    m = translate(*shift) @ rotation(deg, c, c) @ translate(c, c) @ np.diag([scale, scale, 1.0]) @ translate(-c, -c)
    bw = synth.warp_image(b, m, (512, 512))  # moving px u shows date 2 at m(u): moving -> reference is m
    ua, va = image_to_unit(a[64:448, 40:470])
    ub, vb = image_to_unit(bw[64:448, 40:470], valid=np.isfinite(bw[64:448, 40:470]))
    (ang, s, peak), *_ = rotation_scale(ua, ub, va, vb)
    assert abs((ang - deg + 90) % 180 - 90) < 1.5 and abs(s / scale - 1) < 0.03, (ang, s, peak)


def test_speed_is_vectorised():
    """1,000 windows of 64 px in one call (timing lives in benchmarks/, here only that the batch path works)."""
    ua, va, ub, vb = _pair((0.5, 0.5), seed=1, n=512)
    c = window_grid(va & vb, 64, 14)
    assert len(c) >= 600
    o = correlate(ua, ub, va, vb, c, size=64, radius=8, batch=256)
    assert len(o) == len(c) and o.ok.sum() > 100


def test_peak_width_follows_the_speckle_level():
    """Single-look speckle (independent at every pixel) widens the correlation peak; multi-look keeps 1 px."""
    from sarreg.correlate import SIGMA_RANGE, peak_sigma

    one = _pair((1.3, -0.7), seed=5, looks=1.0)
    many = _pair((1.3, -0.7), seed=5, looks=8.0)
    assert peak_sigma(*one[::2], *one[1::2]) == SIGMA_RANGE[1]
    assert peak_sigma(*many[::2], *many[1::2]) == SIGMA_RANGE[0]


def test_single_look_windows_agree_more_with_the_wide_peak():
    """On single-look pairs with change, more windows find the true offset (within 0.5 px) with the peak width
    chosen from the speckle level than with the 1 px peak that suits multi-look images."""
    d = (1.3, -0.7)
    hits = {1.0: 0, None: 0}
    for seed in range(4):
        ua, va, ub, vb = _pair(d, seed=seed, looks=1.0, change=0.3)
        c = window_grid(va & vb, 64, 32)
        for sigma in hits:
            o = correlate(ua, ub, va, vb, c, size=64, radius=8, sigma=sigma)
            hits[sigma] += int((o.ok & (np.hypot(*(o.d - d).T) < 0.5)).sum())
    assert hits[None] >= 1.1 * hits[1.0], hits


@pytest.mark.parametrize("looks", [1.0, 4.0])
def test_repeat_period_finds_a_lattice_and_not_natural_texture(looks):
    """A lattice of bright cells (period 13 px, turned 20 deg) under speckle stands far out of its spectral ring;
    the synthetic landscape texture (fields, roads, speckle) of the same size does not."""
    from sarreg.correlate import repeat_period
    from sarreg.quality import REPEAT_STRENGTH

    n = 384
    rng = np.random.default_rng(4)
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    a = np.radians(20.0)
    u, v = x * np.cos(a) + y * np.sin(a), -x * np.sin(a) + y * np.cos(a)
    f = np.sin(2 * np.pi / 13 * u) + np.sin(2 * np.pi / 13 * v)
    lattice = synth.speckle(10 ** ((f / f.std() * 3 - 10) / 10), looks, rng)
    land = synth.speckle(synth.reflectivity(n, n, seed=7), looks, rng)
    ok = np.ones((n, n), bool)
    period, strength = repeat_period(image_to_unit(lattice)[0], ok)
    assert strength >= REPEAT_STRENGTH and abs(period - 13) < 1.0, (period, strength)
    assert repeat_period(image_to_unit(land)[0], ok)[1] < REPEAT_STRENGTH / 2
    assert repeat_period(np.zeros((20, 20), np.float32), np.ones((20, 20), bool)) is None
