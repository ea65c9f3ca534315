"""The area stage's descriptor check (sarreg.dense): known offsets on project-generated speckled scenes with the
shipped network, the rule that picks the windows, the reference maps kept between passes."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sarreg import synth
from sarreg.config import RegisterConfig
from sarreg.correlate import Offsets, correlate, window_grid
from sarreg.dense import CONFIRMED, RELIABLE, VERIFY_PX, DenseDescriber, descriptor_offsets, verified
from sarreg.io.raster import image_to_unit
from sarreg.model.weights import load_model


@pytest.fixture(scope="module")
def dense() -> DenseDescriber:
    return DenseDescriber(load_model(None))


def _pair(d: tuple[float, float], seed: int, looks: float, change: float = 0.0, n: int = 320):
    """Reference = date 1; moving = date 2 whose content sits at -d (the moving window at c matches the reference
    at c + d), resampled with Lanczos."""
    _, a, b = synth.make_pair(n, n, seed, looks=looks, change=change)
    H = np.array([[1, 0, d[0]], [0, 1, d[1]], [0, 0, 1]], dtype=np.float64)
    bw = synth.warp_image(b, H, (n, n), interpolation=cv2.INTER_LANCZOS4)
    ua, va = image_to_unit(a)
    ub, vb = image_to_unit(bw, valid=np.isfinite(bw))
    return ua, va, ub, vb


@pytest.mark.parametrize("d", [(0.0, 0.0), (0.4, -0.35), (2.71, 1.18), (-5.5, 3.25)])
def test_descriptor_offsets_find_known_shifts(dense, d):
    ua, va, ub, vb = _pair(d, seed=5, looks=4.0)
    c = window_grid(va & vb, 64, 32)
    o = descriptor_offsets(dense, ua, va, ub, vb, c, 64, 8.0)
    assert len(o) == len(c) and o.ok.mean() > 0.5
    err = np.hypot(*(o.d[o.ok] - np.array(d)).T)
    assert np.median(err) < 0.5  # sub-pixel, not the half-resolution grid's 2 px
    assert (err < 1.0).mean() > 0.8


def test_window_means_are_the_windows_mean_dot_products():
    """The blocked window search against the definition, window by window: mean over the 2h x 2h window of
    a(p) . b(p + offset), b zero outside the map; odd sizes, windows at the borders, block smaller than the map."""
    import torch

    from sarreg.dense import _window_means

    rng = np.random.default_rng(3)
    C, H, W, m, half = 8, 37, 29, 3, 4
    a, b = (torch.from_numpy(rng.standard_normal((C, H, W)).astype(np.float32)) for _ in range(2))
    offsets = np.array([(ox, oy) for oy in range(-m, m + 1) for ox in range(-m, m + 1)])
    rows, cols = np.array([0, 5, 18, 36, 20]), np.array([0, 28, 14, 3, 27])
    got = _window_means(a, b, m, offsets, rows, cols, half, block=5)
    an, bn = a.numpy(), b.numpy()
    for k, (ox, oy) in enumerate(offsets):
        for i, (r, c) in enumerate(zip(rows, cols)):
            total = 0.0
            for y in range(r - half, r + half):
                for x in range(c - half, c + half):
                    if 0 <= y < H and 0 <= x < W and 0 <= y + oy < H and 0 <= x + ox < W:
                        total += float(an[:, y, x] @ bn[:, y + oy, x + ox])
            assert got[k, i] == pytest.approx(total / (2 * half) ** 2, abs=1e-4), (ox, oy, r, c)


def test_descriptors_hold_where_single_look_correlation_does_not(dense):
    """Single-look speckle with temporal change: more windows within 1 px than the phase correlation's."""
    d = (1.3, -2.2)
    ua, va, ub, vb = _pair(d, seed=8, looks=1.0, change=0.3, n=384)
    c = window_grid(va & vb, 64, 32)
    o = descriptor_offsets(dense, ua, va, ub, vb, c, 64, 8.0)
    oc = correlate(ua, ub, va, vb, c, 64, 8.0)

    def good(x: Offsets) -> int:
        return int((x.ok & (np.hypot(*(x.d - np.array(d)).T) < 1.0)).sum())

    assert good(o) > good(oc)


def test_verified_keeps_a_reliable_correlation_and_replaces_an_unreliable_one():
    xy = np.arange(20, dtype=float).reshape(10, 2)
    truth = np.tile([1.0, -2.0], (10, 1))
    desc = Offsets(xy, truth + 0.3, np.full(10, 0.5), np.full(10, 1.2), np.ones(10, bool))
    cd = truth.copy()
    cd[:3] += 5.0  # three correlation windows on noise: 7 of 10 confirmed, the correlation is reliable here
    corr = Offsets(xy, cd.copy(), np.full(10, 0.3), np.full(10, 2.0), np.ones(10, bool))
    assert 0.7 >= RELIABLE
    v, alone = verified(corr, desc)
    assert len(v) == 10 and np.allclose(v.d, cd) and np.allclose(v.peak, 0.3)  # as they are: the fit rejects 3
    assert not alone.any()
    # 2 of 10 confirmed: the descriptors' offsets stand in where the two disagree, the correlation's where they agree
    cd[:8] += 5.0
    v, alone = verified(Offsets(xy, cd, corr.peak, corr.ratio, corr.ok), desc)
    assert 0.2 < RELIABLE and len(v) == 10 and np.allclose(v.peak, 0.5)
    assert np.allclose(v.d[:8], truth[:8] + 0.3) and np.allclose(v.d[8:], truth[8:])
    assert alone.tolist() == [True] * 8 + [False] * 2
    # windows the descriptors find ambiguous are dropped then, whatever the correlation says
    desc.ok[9] = False
    v, alone = verified(Offsets(xy, cd, corr.peak, corr.ratio, corr.ok), desc)
    assert len(v) == 9 and len(alone) == 9 and not np.any(np.all(v.xy == xy[9], 1))
    assert VERIFY_PX <= 1.0
    # none confirmed (a start beyond the search radius): no stand-in, the correlation's windows as they are
    cd[:] = truth + 5.0
    v, alone = verified(Offsets(xy, cd, corr.peak, corr.ratio, corr.ok), desc)
    assert 0.0 < CONFIRMED and len(v) == 10 and np.allclose(v.d, truth + 5.0) and not alone.any()


def test_register_checks_the_refinement_windows_with_descriptors(tmp_path):
    """Through ``register`` (real GeoTIFFs): a single-look pair with temporal change, the shipped network; the
    refinement's windows are checked by the descriptors (``stages.refine.descriptor_check``) with "always", not
    with "never", and with "auto" only when the correlation alone was not ok (then the report says so); the
    result is within a pixel every time."""
    from sarreg import register
    from sarreg.estimate import apply_matrix

    n, d = 384, (3.4, -2.6)
    rng = np.random.default_rng(3)
    refl = synth.reflectivity(n, n, seed=21)
    later = synth.temporal_change(refl, rng, 0.2)
    H = np.array([[1, 0, -d[0]], [0, 1, -d[1]], [0, 0, 1]], dtype=np.float64)  # moving px -> reference px: + d
    mov = synth.warp_image(synth.speckle(later, 1.0, rng), np.linalg.inv(H), (n, n))
    ref = synth.write_geotiff(tmp_path / "ref.tif", synth.speckle(refl, 1.0, rng))
    mv = synth.write_geotiff(tmp_path / "mov.tif", np.nan_to_num(mov, nan=0.0), nodata=0.0)
    g = np.stack(np.meshgrid(np.linspace(0, n - 1, 8), np.linspace(0, n - 1, 8)), -1).reshape(-1, 2)
    truth = np.linalg.inv(H)
    status = {}
    for mode in ("never", "always", "auto"):
        cfg = RegisterConfig(keypoints="always", model="shift", device="cpu", area_descriptors=mode, warp=False)
        rep = register(ref, mv, tmp_path / f"o{mode}.tif", cfg)
        status[mode] = rep.status
        fallback = rep.stages["refine"].get("descriptor_fallback")
        if mode == "auto":  # the first refinement is the one of "never"; the descriptors only after a non-ok one
            assert (fallback is None) == (status["never"] == "ok")
            assert rep.stages["refine"]["descriptor_check"] is (fallback is not None)
        else:
            assert fallback is None and rep.stages["refine"]["descriptor_check"] is (mode == "always")
        assert rep.matrix is not None
        err = np.hypot(*(apply_matrix(np.asarray(rep.matrix), g) - apply_matrix(truth, g)).T).mean()
        assert err < 1.0, (mode, err, rep.message)
    # gates no refinement can pass: with "auto" the descriptors' refinement follows the correlation's, and stands
    # (the fallback records the first refinement's verdict: the one "never" gives under the same gates)
    strict = RegisterConfig(keypoints="always", model="shift", device="cpu", warp=False, min_inliers=100000)
    rep = register(ref, mv, tmp_path / "strict.tif", strict)
    alone = register(ref, mv, tmp_path / "strict_never.tif", strict.with_(area_descriptors="never"))
    fallback = rep.stages["refine"]["descriptor_fallback"]
    assert strict.area_descriptors == "auto" and rep.stages["refine"]["descriptor_check"] is True
    assert fallback == {"status": alone.status, "message": alone.message} and "inliers" in alone.message
    assert rep.status == "low_quality"


def test_reference_maps_are_kept_for_that_array_only(dense):
    ua, va, ub, vb = _pair((1.0, 0.5), seed=2, looks=4.0, n=128)
    d1, step = dense(ua, va, cached=True)
    d2, _ = dense(ua, va, cached=True)
    assert step == 2 and d1.shape[1:] == (64, 64)
    assert float((d1 - d2).abs().max()) < 2e-3  # the kept map (float16)
    d3, _ = dense(ub, vb, cached=True)  # another array: its own map
    assert float((d3 - d1).abs().max()) > 0.1


def test_an_estimate_resting_on_descriptors_alone_needs_agreeing_keypoints():
    """Windows measured by the dense descriptors alone (the correlation confirmed few of them) can agree with each
    other on a wrong answer (unlike radiometry): an estimate mostly on them is not ok unless the keypoints' own
    fit passes the gates and agrees; the same estimate on confirmed windows is ok."""
    import shapely

    from sarreg.estimate import fit_model
    from sarreg.features import Features
    from sarreg.quality import DESCRIPTORS_ALONE, cross_check, judge
    from sarreg.stage import StageResult

    rng = np.random.default_rng(2)
    area = shapely.box(0, 0, 1000, 1000)
    cfg = RegisterConfig(model="auto")
    eye = np.eye(3)
    src = rng.uniform(0, 1000, (80, 2))
    est = fit_model(src, src + [3.0, -2.0] + rng.normal(0, 0.3, (80, 2)), "shift", threshold=cfg.threshold,
                    area=area)
    alone = int(0.8 * est.n_inliers)
    assert alone > DESCRIPTORS_ALONE * est.n_inliers
    status, reasons = judge(est, eye, cfg, matches_info={"inliers_descriptors_alone": alone})
    assert status == "low_quality" and any("descriptors alone" in r for r in reasons), reasons
    assert judge(est, eye, cfg, matches_info={"inliers_descriptors_alone": 3})[0] == "ok"
    # keypoints whose own fit passes the gates and agrees: a second source, ok
    k_src = rng.uniform(0, 1000, (60, 2))
    k_dst = k_src + [3.0, -2.0] + rng.normal(0, 0.5, (60, 2))
    e = Features.empty((1000, 1000))
    kp = StageResult(k_src, k_dst, np.ones(60, np.float32), e, e, np.arange(60), np.arange(60))
    cross = cross_check(est, fit_model(k_src, k_dst, "shift", threshold=cfg.threshold, area=area), kp, area, eye,
                        cfg)
    assert cross["other_passes"] and judge(est, eye, cfg, matches_info={"inliers_descriptors_alone": alone},
                                           cross=cross)[0] == "ok"


def test_starts_are_compared_by_windows_not_resting_on_descriptors_alone():
    """``area.support``: an answer most of whose agreeing windows the descriptors alone measured ranks below one
    whose windows the correlation confirmed, however many they are."""
    import shapely

    from sarreg.area import support
    from sarreg.estimate import fit_model
    from sarreg.features import Features
    from sarreg.stage import StageResult

    rng = np.random.default_rng(4)
    area = shapely.box(0, 0, 500, 500)
    src = rng.uniform(0, 500, (60, 2))
    e = fit_model(src, src + [2.0, 1.0] + rng.normal(0, 0.2, (60, 2)), "shift", threshold=1.5, area=area)
    f = Features.empty((500, 500))
    r = StageResult(src, src, np.ones(60, np.float32), f, f, np.zeros(60, np.int64), np.zeros(60, np.int64))
    assert support(e, r) == e.n_inliers and support(None, r) == 0  # no descriptor check: every inlier counts
    alone = np.zeros(60, bool)
    alone[:45] = True
    r2 = StageResult(src, src, np.ones(60, np.float32), f, f, np.zeros(60, np.int64), np.zeros(60, np.int64),
                     alone=alone)
    assert support(e, r2) == int(e.inliers[45:].sum()) <= 15


def test_rests_on_descriptors_and_confirms():
    """The helpers behind the fallback to the correlation alone: an area estimate mostly on descriptor-only windows,
    and a second source that passes the gates and agrees."""
    import shapely

    from sarreg.estimate import fit_model
    from sarreg.features import Features
    from sarreg.quality import confirms, rests_on_descriptors
    from sarreg.stage import StageResult

    rng = np.random.default_rng(6)
    src = rng.uniform(0, 400, (40, 2))
    e = fit_model(src, src + 1.0 + rng.normal(0, 0.2, (40, 2)), "shift", threshold=1.5,
                  area=shapely.box(0, 0, 400, 400))
    f = Features.empty((400, 400))
    z = np.zeros(40, np.int64)
    mostly = StageResult(src, src, np.ones(40, np.float32), f, f, z, z, alone=np.arange(40) < 30)
    few = StageResult(src, src, np.ones(40, np.float32), f, f, z, z, alone=np.arange(40) < 10)
    assert rests_on_descriptors(e, mostly) and not rests_on_descriptors(e, few)
    assert not rests_on_descriptors(None, mostly) and not rests_on_descriptors(e, StageResult(src, src, z, f, f, z, z))
    assert confirms({"other_passes": True, "within_threshold": 0.9})
    assert not confirms({"other_passes": False, "within_threshold": 0.9}) and not confirms(None)
    assert not confirms({"other_passes": True, "within_threshold": 0.2})
