"""Hybrid registration: correlation beside the keypoints (fallback, sub-pixel refinement, honest gates).

All inputs are generated here as real GeoTIFFs in ``tmp_path``.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from affine import Affine

from sarreg.config import RegisterConfig
from sarreg.estimate import apply_matrix, bootstrap_spread, fit_model
from sarreg.pipeline import register
from sarreg.synth import reflectivity, speckle, temporal_change, warp_image, write_geotiff

UTM = "EPSG:32631"
REF_T = Affine(10.0, 0, 500000.0, 0, -10.0, 5000000.0)
SIFT = RegisterConfig(features="sift", warp=False)


def _grid_error(matrix, d, n) -> float:
    g = np.stack(np.meshgrid(np.linspace(0, n - 1, 10), np.linspace(0, n - 1, 10)), -1).reshape(-1, 2)
    return float(np.hypot(*(apply_matrix(np.asarray(matrix), g) - (g + d)).T).mean())


def _write_pair(tmp, ref, mov, d, georef_error=(0.0, 0.0)):
    """Moving pixel u shows the reference's content at u + d; its geotransform is off by ``georef_error`` px."""
    r = write_geotiff(tmp / "ref.tif", ref, REF_T, UTM)
    e = np.asarray(d) + np.asarray(georef_error)
    m = write_geotiff(tmp / "moving.tif", np.nan_to_num(mov, nan=0.0), REF_T * Affine.translation(*e), UTM,
                      nodata=0.0)
    return r, m


def test_low_texture_speckled_pair_with_right_georeference_is_not_failed(tmp_path):
    """1-look speckle, smooth texture, 25 % temporal change: too few consistent keypoints (SIFT finds ~6 at the
    coarse stage), but correlation from the georeferencing prior registers it."""
    n, pad = 384, 100
    rng = np.random.default_rng(3)
    f = cv2.GaussianBlur(rng.normal(0, 1, (n + 2 * pad, n + 2 * pad)).astype(np.float32), (0, 0), 3)
    f = 10 ** ((f / f.std() * 3 - 10) / 10)
    f2 = temporal_change(f, rng, 0.25)
    d = (7.3, -4.6)
    ref = speckle(f, 1.0, rng)[pad:pad + n, pad:pad + n]
    to_field = np.array([[1, 0, pad + d[0]], [0, 1, pad + d[1]], [0, 0, 1]])
    mov = warp_image(speckle(f2, 1.0, rng), to_field, (n, n), interpolation=cv2.INTER_LANCZOS4)
    r, m = _write_pair(tmp_path, ref, mov, d)
    rep = register(r, m, tmp_path / "o.tif", SIFT)
    assert rep.status == "ok", rep.message
    assert rep.stages["refine"]["chosen"] == "correlation"
    assert _grid_error(rep.matrix, d, n) < 0.75
    assert rep.quality["overlap_spread_px"] is not None and rep.quality["overlap_spread_px"] < 0.75
    held = rep.quality["heldout_blocks_px"]  # the extrapolation gate's measure, as parsimony saw it
    assert held is not None and held == rep.stages["parsimony"]["cv_median_px"][rep.model]  # 108 tie points: blocks


def test_an_estimate_failing_the_inlier_gate_gives_way_to_the_georeferencing(tmp_path):
    """Between georeferenced rasters, a low_quality estimate with fewer than --min-inliers tie points is not
    reported in place of the georeferencing: the result is the georeferencing (no correction), the estimate is
    kept in the report. In pixel space there is no georeferencing to keep: the estimate stands, flagged."""
    n, pad, d, err = 320, 48, (3.6, -2.2), (-6.0, 9.0)
    field = reflectivity(n + 2 * pad, n + 2 * pad, seed=8)
    rng = np.random.default_rng(2)
    ref = speckle(field, 4.0, rng)[pad:pad + n, pad:pad + n]
    to_field = np.array([[1, 0, pad + d[0]], [0, 1, pad + d[1]], [0, 0, 1]])
    mov = speckle(10 ** (warp_image(10 * np.log10(field), to_field, (n, n), interpolation=cv2.INTER_LANCZOS4) / 10),
                  4.0, rng)
    r, m = _write_pair(tmp_path, ref, mov, d, georef_error=err)
    found = register(r, m, tmp_path / "a.tif", SIFT)
    assert found.status == "ok", found.message
    assert _grid_error(found.matrix, d, n) < 0.2
    k = found.quality["inliers"]
    cfg = RegisterConfig(features="sift", warp=False, min_inliers=k + 1)
    kept = register(r, m, tmp_path / "b.tif", cfg)
    assert kept.status == "low_quality"
    assert kept.message.startswith("kept the georeferencing") and f"{k} inliers < {k + 1}" in kept.message
    prior = np.asarray(kept.stages["relate"]["prior"])
    np.testing.assert_allclose(kept.matrix, prior, atol=1e-9)
    assert _grid_error(kept.matrix, np.add(d, err), n) < 1e-6  # where the geotransforms put the moving raster
    assert kept.correction["shift_px"] < 1e-9 and kept.model == "shift"
    gk = kept.stages["georeferencing_kept"]
    assert gk["estimate"]["inliers"] == k and _grid_error(gk["estimate_matrix"], d, n) < 0.2
    assert abs(gk["distance_px"] - np.hypot(*err)) < 0.3
    assert kept.quality["inliers"] == 0  # the estimate's tie points lie ~11 px from the georeferencing
    local = register(r, m, tmp_path / "l.tif", RegisterConfig(features="sift", warp=False, min_inliers=k + 1,
                                                              model="local"))
    assert "georeferencing_kept" in local.stages and local.model != "local"  # no offsets field on top of it
    assert "offsets" not in local.outputs and not (tmp_path / "l.offsets.tif").exists()
    write_geotiff(tmp_path / "ref_px.tif", ref)
    write_geotiff(tmp_path / "mov_px.tif", mov)
    plain = register(tmp_path / "ref_px.tif", tmp_path / "mov_px.tif", tmp_path / "c.tif", cfg)
    assert plain.status == "low_quality" and "georeferencing_kept" not in plain.stages
    assert _grid_error(plain.matrix, d, n) < 0.2


@pytest.mark.parametrize("d", [(2.4, -1.7), (-0.35, 0.8)])
def test_subpixel_shift_with_wrong_georeference(tmp_path, d):
    """Georeference off by several px; the refined estimate lands within 0.1 px. The pair is made as two
    acquisitions: the landscape shifted (dB, Lanczos), then speckle drawn on each grid (resampling speckled power
    is not a pure shift and would blur the truth itself by up to ~0.1 px)."""
    n, pad = 448, 64
    field = reflectivity(n + 2 * pad, n + 2 * pad, seed=21)
    rng = np.random.default_rng(5)
    ref = speckle(field, 4.0, rng)[pad:pad + n, pad:pad + n]
    to_field = np.array([[1, 0, pad + d[0]], [0, 1, pad + d[1]], [0, 0, 1]])
    moved = warp_image(10 * np.log10(field), to_field, (n, n), interpolation=cv2.INTER_LANCZOS4)
    mov = speckle(10 ** (moved / 10), 4.0, rng)  # the landscape moves; each date has its own speckle
    r, m = _write_pair(tmp_path, ref, mov, d, georef_error=(-6.0, 9.0))
    rep = register(r, m, tmp_path / "o.tif", SIFT)
    assert rep.status == "ok", rep.message
    assert rep.stages["refine"]["chosen"] == "correlation"
    assert _grid_error(rep.matrix, d, n) < 0.1
    assert rep.stages["refine"]["passes"] == 2 and rep.stages["refine"]["inliers"] >= 50
    starts = rep.stages["refine"]["starts"]  # each start tried: its agreeing windows, distance from the kept answer
    kept = starts[rep.stages["refine"]["start"]]
    assert kept["inliers"] == rep.stages["refine"]["inliers"] and kept["distance_px"] == 0.0
    assert all(v["inliers"] <= kept["inliers"] for v in starts.values())


def test_bootstrap_spread_flags_clustered_tie_points():
    """An affine fitted to tie points clustered in one corner extrapolates badly: its spread over the whole
    overlap is large; the same number of points spread over the overlap pins it down."""
    import shapely

    rng = np.random.default_rng(0)
    area = shapely.box(0, 0, 1000, 1000)
    corners = np.array([[0, 0], [1000, 0], [0, 1000], [1000, 1000], [500, 500]], float)
    spreads = []
    for lo, hi in ((0, 150), (0, 1000)):
        src = rng.uniform(lo, hi, (20, 2))
        dst = src + [3.0, -2.0] + rng.normal(0, 0.3, (20, 2))
        est = fit_model(src, dst, "affine", threshold=2.0, area=area)
        spreads.append(bootstrap_spread(est, src, dst, corners))
    clustered, spread_out = spreads
    assert clustered > 1.0 > 0.5 > spread_out
    shift = fit_model(src, dst, "shift", threshold=2.0, area=area)
    assert bootstrap_spread(shift, src, dst, corners) < spread_out  # fewer parameters, tighter


def test_model_choice_by_extrapolation_takes_the_model_that_carries_over():
    """--model auto keeps the model that best predicts held-out blocks of the tie points: the homography for a
    perspective scene (a similarity would be constrained but ~2 px off at the far side), the shift for a shifted
    one (richer models fit the noise, not the blocks), and no choice at all from too few points."""
    import shapely

    from sarreg.features import Features
    from sarreg.choice import choose_by_extrapolation
    from sarreg.stage import StageResult

    rng = np.random.default_rng(3)
    area = shapely.box(0, 0, 1000, 1000)
    cfg = RegisterConfig(model="auto")

    def matches(src, dst):
        e = Features.empty((1000, 1000))
        return StageResult(src, dst, np.ones(len(src), np.float32), e, e, np.arange(len(src)), np.arange(len(src)))

    def grid_error(m, truth):
        g = np.stack(np.meshgrid(np.linspace(0, 1000, 11), np.linspace(0, 1000, 11)), -1).reshape(-1, 2)
        return float(np.hypot(*(apply_matrix(m, g) - apply_matrix(truth, g)).T).mean())

    src = rng.uniform(0, 1000, (150, 2))
    noise = rng.normal(0, 0.3, (150, 2))
    H = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, -3.0], [8e-6, 6e-6, 1.0]])
    est, info = choose_by_extrapolation(matches(src, apply_matrix(H, src) + noise), area, cfg, 8)
    assert info["chosen"] == est.model == "homography", info
    assert grid_error(est.matrix, H) < 0.3
    sim = fit_model(src, apply_matrix(H, src) + noise, "similarity", threshold=cfg.threshold, area=area)
    assert grid_error(sim.matrix, H) > 1.0  # what the simpler model would have cost
    S = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, -3.0], [0.0, 0.0, 1.0]])
    est, info = choose_by_extrapolation(matches(src, apply_matrix(S, src) + noise), area, cfg, 8)
    assert info["chosen"] == "shift", info
    assert choose_by_extrapolation(matches(src[:10], src[:10] + 2.0), area, cfg, 8) is None
    # a similarity kept for a perspective scene is inadequate: a homography explains clearly more tie points,
    # predicts the held-out blocks better and differs from it by more than --max-rmse; a shift scene's is not
    from sarreg.quality import model_adequacy

    P = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, -3.0], [1.5e-5, 1e-5, 1.0]])
    dst = apply_matrix(P, src) + noise
    sim = fit_model(src, dst, "similarity", threshold=cfg.threshold, area=area)
    assert model_adequacy(sim, src, dst, area, cfg) > cfg.max_rmse
    shift_dst = apply_matrix(S, src) + noise
    shift = fit_model(src, shift_dst, "shift", threshold=cfg.threshold, area=area)
    assert model_adequacy(shift, src, shift_dst, area, cfg) == 0.0


def test_cross_check_flags_an_estimate_the_other_tie_points_disagree_with():
    """A similarity fitted to correlation tie points clustered in one corner of a perspective scene fits them and is
    constrained there, but keypoint tie points spread over the overlap (whose own homography passes the gates)
    mostly lie beyond --threshold of it: not ok. An estimate that agrees with them, or a second source that does
    not pass the gates itself, leaves the status alone."""
    import shapely

    from sarreg.features import Features
    from sarreg.quality import cross_check, judge
    from sarreg.stage import StageResult

    rng = np.random.default_rng(5)
    area = shapely.box(0, 0, 1000, 1000)
    cfg = RegisterConfig(model="auto")
    P = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, -3.0], [2e-5, 1.5e-5, 1.0]])
    corner = rng.uniform(0, 300, (40, 2))
    sim = fit_model(corner, apply_matrix(P, corner) + rng.normal(0, 0.2, (40, 2)), "similarity",
                    threshold=cfg.threshold, area=area)
    assert sim.n_inliers >= 36  # the corner alone cannot tell the similarity is wrong
    src = rng.uniform(0, 1000, (120, 2))
    dst = apply_matrix(P, src) + rng.normal(0, 0.5, (120, 2))
    e = Features.empty((1000, 1000))
    kp = StageResult(src, dst, np.ones(120, np.float32), e, e, np.arange(120), np.arange(120))
    kp_est = fit_model(src, dst, "homography", threshold=cfg.threshold, area=area)
    eye = np.eye(3)
    cross = cross_check(sim, kp_est, kp, area, eye, cfg)
    assert cross["source"] == "keypoints" and cross["within_threshold"] < 0.5 < cross["median_px"], cross
    status, reasons = judge(sim, eye, cfg, cross=cross)
    assert status == "low_quality" and any("keypoints tie points disagree" in r for r in reasons), reasons
    good = cross_check(kp_est, kp_est, kp, area, eye, cfg)
    assert good["within_threshold"] == 1.0 and judge(kp_est, eye, cfg, cross=good)[0] == "ok"
    few = fit_model(src[:10], dst[:10], "homography", threshold=cfg.threshold, area=area)
    assert cross_check(sim, few, kp, area, eye, cfg) is None  # 10 inliers < --min-inliers: no second opinion
    near = np.flatnonzero((src < 350).all(1))  # keypoints of one corner only: coverage too small to pass alone
    assert len(near) >= cfg.min_inliers
    kp_near = StageResult(src[near], dst[near], np.ones(len(near), np.float32), e, e, np.arange(len(near)),
                          np.arange(len(near)))
    weak = cross_check(sim, fit_model(src[near], dst[near], "homography", threshold=cfg.threshold, area=area),
                       kp_near, area, eye, cfg)
    assert weak["other_passes"] is False and weak["other_spread_px"] is not None, weak
    assert not any("tie points" in r for r in judge(sim, eye, cfg, cross=weak)[1])  # and not grossly apart


def test_an_estimate_grossly_apart_from_the_other_sources_untrusted_fit_is_not_ok():
    """Correlation windows locked onto a wrong solution (all tie points agree on a shift 60 px off the truth) pass
    every gate of their own; the keypoints' fit does not pass the gates (clustered: coverage too small) but sits
    tens of pixels away, far beyond its own bootstrap spread: not ok. Keypoints that agree within their
    uncertainty leave the status alone."""
    import shapely

    from sarreg.features import Features
    from sarreg.quality import cross_check, judge
    from sarreg.stage import StageResult

    rng = np.random.default_rng(11)
    area = shapely.box(0, 0, 1000, 1000)
    cfg = RegisterConfig(model="auto")
    eye = np.eye(3)
    truth = np.array([[1.0, 0.0, 4.0], [0.0, 1.0, 54.0], [0.0, 0.0, 1.0]])
    src = rng.uniform(0, 1000, (80, 2))
    wrong = fit_model(src, src + [6.0, -8.0] + rng.normal(0, 0.3, (80, 2)), "shift", threshold=cfg.threshold,
                      area=area)
    assert judge(wrong, eye, cfg)[0] == "ok"  # on its own it looks fine
    k_src = rng.uniform(0, 120, (20, 2))  # keypoint tie points in one corner only
    k_dst = apply_matrix(truth, k_src) + rng.normal(0, 0.5, (20, 2))
    e = Features.empty((1000, 1000))
    kp = StageResult(k_src, k_dst, np.ones(20, np.float32), e, e, np.arange(20), np.arange(20))
    kp_est = fit_model(k_src, k_dst, "shift", threshold=cfg.threshold, area=area)
    assert judge(kp_est, eye, cfg)[0] == "low_quality"  # not trusted alone
    cross = cross_check(wrong, kp_est, kp, area, eye, cfg)
    assert cross["other_passes"] is False and cross["distance_px"] > 50, cross
    status, reasons = judge(wrong, eye, cfg, cross=cross)
    assert status == "low_quality" and any("grossly wrong" in r for r in reasons), reasons
    right = fit_model(src, apply_matrix(truth, src) + rng.normal(0, 0.3, (80, 2)), "shift", threshold=cfg.threshold,
                      area=area)
    agree = cross_check(right, kp_est, kp, area, eye, cfg)
    assert agree["distance_px"] < 2 and judge(right, eye, cfg, cross=agree)[0] == "ok", agree


def test_an_estimate_that_extrapolates_poorly_is_not_ok():
    """Tie points that pin an estimate down only loosely away from them (bootstrap spread between a quarter of and half
    --max-rmse: not enough alone) whose held-out spatial blocks are also predicted poorly (median 1.4 px): the model
    does not carry over to the rest of the overlap, not ok. Either signal alone leaves the status alone."""
    import shapely

    from sarreg.choice import EXTRAP_HELDOUT, EXTRAP_SPREAD
    from sarreg.quality import judge

    rng = np.random.default_rng(2)
    cfg = RegisterConfig(model="auto")
    src = rng.uniform(0, 1000, (80, 2))
    est = fit_model(src, src + [3.0, -1.0] + rng.normal(0, 0.3, (80, 2)), "similarity", threshold=cfg.threshold,
                    area=shapely.box(0, 0, 1000, 1000))
    eye = np.eye(3)
    spread, held = 0.6, 1.4
    assert EXTRAP_SPREAD * cfg.max_rmse < spread <= 0.5 * cfg.max_rmse < EXTRAP_HELDOUT * cfg.max_rmse < held
    assert judge(est, eye, cfg, spread=spread) == ("ok", [])  # the spread alone is within the bootstrap gate
    status, reasons = judge(est, eye, cfg, spread=spread, extrapolation=held)
    assert status == "low_quality" and reasons[0].startswith("extrapolates poorly"), reasons
    # an affine for a scene with perspective, 3.55 px off over the overlap (a training-split contrast pair, stop 31)
    assert judge(est, eye, cfg, spread=0.48, extrapolation=1.48)[0] == "low_quality"
    assert judge(est, eye, cfg, spread=0.3, extrapolation=held)[0] == "ok"  # tie points pin it down
    assert judge(est, eye, cfg, spread=spread, extrapolation=0.9)[0] == "ok"  # held-out blocks predicted well
    assert judge(est, eye, cfg.with_(max_rmse=3.0), spread=spread, extrapolation=held)[0] == "ok"  # x --max-rmse


def test_georeferenced_pair_keeps_a_constrained_shift_over_a_loose_block_choice():
    """18 noisy tie points in a band of a pair that differs by a shift: the held-out blocks prefer an affine that
    they cannot pin down (bootstrap spread > 0.75 px) and that is 1.7 px off over the overlap. When both rasters
    are located on the ground (what is left after the georeferencing is near a shift), the constrained shift is
    kept instead; without a georeferencing the blocks' choice stands."""
    import shapely

    from sarreg.features import Features
    from sarreg.choice import prefer_simpler
    from sarreg.stage import StageResult

    cfg = RegisterConfig(model="auto")
    area = shapely.box(0, 0, 511, 511)
    rng = np.random.default_rng(20)
    src = rng.uniform(0, 511, (18, 2)) * [1, 0.35] + [0, 150]
    dst = src + [2.5, -1.5] + rng.normal(0, 0.7, (18, 2))
    e = Features.empty((512, 512))
    m = StageResult(src, dst, np.ones(18, np.float32), e, e, np.arange(18), np.arange(18))
    est = fit_model(src, dst, "affine", threshold=cfg.threshold, area=area, seed=cfg.seed)
    grid = np.stack(np.meshgrid(np.linspace(0, 511, 10), np.linspace(0, 511, 10)), -1).reshape(-1, 2)

    def error(x):
        return float(np.hypot(*(x.apply(grid) - grid - [2.5, -1.5]).T).mean())

    loose, info = prefer_simpler(est, m, area, cfg, 8, located=False)
    assert loose.model != "shift" and info["spread_px"] > 0.75 and error(loose) > 1.0, info
    kept, info = prefer_simpler(est, m, area, cfg, 8, located=True)
    assert kept.model == "shift" and info["chosen"] == "shift" and info["shift_spread_px"] <= 0.75, info
    assert error(kept) < 0.5


def _biased_clusters(seed: int, clusters: int, lo: float, hi: float, spread: float, bias: float):
    """Tie points of a 256 px pair that differs by a shift of (2.5, -1.5) px, in ``clusters`` clusters of 10 whose
    centres lie in [lo, hi]; each cluster biased by ``bias`` px (sd; temporal change biases correlation windows
    region by region), each point by 0.5 px. -> (matches, affine fit, overlap, config, mean error over the overlap)."""
    import shapely

    from sarreg.features import Features
    from sarreg.stage import StageResult

    cfg = RegisterConfig(model="auto")
    area = shapely.box(0, 0, 255, 255)
    rng = np.random.default_rng(seed)
    centres = rng.uniform(lo, hi, (clusters, 2))
    src = np.concatenate([c + rng.normal(0, spread, (10, 2)) for c in centres])
    dst = src + [2.5, -1.5] + np.repeat(rng.normal(0, bias, (clusters, 2)), 10, axis=0) + rng.normal(0, 0.5, src.shape)
    e = Features.empty((256, 256))
    n = len(src)
    m = StageResult(src, dst, np.ones(n, np.float32), e, e, np.arange(n), np.arange(n))
    est = fit_model(src, dst, "affine", threshold=cfg.threshold, area=area, seed=cfg.seed)
    grid = np.stack(np.meshgrid(np.linspace(0, 255, 10), np.linspace(0, 255, 10)), -1).reshape(-1, 2)

    def error(x):
        return float(np.hypot(*(x.apply(grid) - grid - [2.5, -1.5]).T).mean())

    return m, est, area, cfg, error


def test_georeferenced_pair_tries_the_shift_before_a_similarity():
    """Tie points in three clusters in one corner of a pair located by geotransforms that differs by a shift: the
    blocks choose a model they cannot pin down, and the shift, what the georeferencing leaves, is kept; a similarity
    fitted to the clusters (the loose-spread fallback's first choice) would be constrained too but turns the scene
    about them."""
    from sarreg.choice import _constrained_simpler, choose_by_extrapolation, overlap_points, prefer_simpler

    m, est, area, cfg, error = _biased_clusters(104, 3, 20, 110, 12, 0.3)
    kept, info = prefer_simpler(est, m, area, cfg, 8, located=True, shift_left=True)
    assert info["spread_px"] > 0.75 and kept.model == "shift" and error(kept) < 0.4, info
    blocks, _ = choose_by_extrapolation(m, area, cfg, 8)
    turned, t_info = _constrained_simpler(blocks, m, area, cfg, 8, overlap_points(area), {}, {})  # similarity first
    assert t_info["chosen"] == "similarity" and error(turned) > 0.6, t_info


def test_georeferenced_pair_keeps_a_shift_that_explains_its_tie_points_over_a_constrained_block_choice():
    """Four biased clusters of tie points of a pair that differs by a shift: the held-out blocks choose an affine
    that is constrained (bootstrap spread under the gate) yet 1.1 px off over the overlap. Between rasters located by
    geotransforms the shift, which explains nearly as many tie points, is kept; in pixel space or between rasters
    located by GCPs the blocks' choice stands."""
    from sarreg.choice import prefer_simpler

    m, est, area, cfg, error = _biased_clusters(53, 4, 30, 220, 15, 0.4)
    blocks, info = prefer_simpler(est, m, area, cfg, 8, located=False)
    assert blocks.model == "affine" and info["spread_px"] <= 0.75 and error(blocks) > 1.0, info
    kept, info = prefer_simpler(est, m, area, cfg, 8, located=True, shift_left=True)
    assert kept.model == "shift" and info["chosen"] == "shift" and error(kept) < 0.4, info
    by_gcps, info = prefer_simpler(est, m, area, cfg, 8, located=True)  # GCP interpolation leaves more than a shift
    assert by_gcps.model == "affine", info


def test_global_start_answer_needs_enough_agreeing_windows():
    """A correlation answer started from the global phase correlation alone (no coarse estimate held) that few of
    the correlation windows agree on is not ok; the same support from another start, or more windows, is."""
    import shapely

    from sarreg.quality import judge

    rng = np.random.default_rng(1)
    src = rng.uniform(0, 500, (40, 2))
    est = fit_model(src, src + [3.0, -2.0] + rng.normal(0, 0.2, (40, 2)), "shift", threshold=1.5,
                    area=shapely.box(0, 0, 500, 500))
    assert est.n_inliers == 40
    eye = np.eye(3)
    status, reasons = judge(est, eye, SIFT, matches_info={"method": "correlation", "windows": 400, "start": "global"})
    assert status == "low_quality" and "only 40 of 400 correlation windows agree" in reasons[0], reasons
    for info in ({"windows": 400, "start": "coarse"}, {"windows": 300, "start": "global"}, None):
        assert judge(est, eye, SIFT, matches_info=info) == ("ok", []), info


def test_near_tie_between_refinement_starts_is_ambiguous():
    """Two starts of the refinement that converge to answers far apart (> 3 x --threshold) with nearly the same
    number of agreeing windows: the kept one is a coin toss, so not ok; a clear winner or a near answer is."""
    import shapely

    from sarreg.quality import judge

    rng = np.random.default_rng(1)
    src = rng.uniform(0, 500, (40, 2))
    est = fit_model(src, src + [3.0, -2.0] + rng.normal(0, 0.2, (40, 2)), "shift", threshold=1.5,
                    area=shapely.box(0, 0, 500, 500))
    eye = np.eye(3)

    def info(rival_inliers, rival_px):
        return {"method": "correlation", "windows": 100, "start": "global",
                "starts": {"coarse": {"inliers": rival_inliers, "distance_px": rival_px},
                           "global": {"inliers": 40, "distance_px": 0.0}}}

    status, reasons = judge(est, eye, SIFT, matches_info=info(39, 11.0))
    assert status == "low_quality" and reasons[0].startswith("ambiguous: from the coarse start 39"), reasons
    for rival in ((30, 11.0), (39, 2.0)):
        assert judge(est, eye, SIFT, matches_info=info(*rival)) == ("ok", []), rival
    # beyond three search radii, windows agree with a wrong answer only on a repeating scene: 3/4 of the support
    # is already a tie there
    status, reasons = judge(est, eye, SIFT, matches_info=info(31, 30.0))
    assert status == "low_quality" and "30.0 px from this one" in reasons[0], reasons
    assert judge(est, eye, SIFT, matches_info=info(28, 30.0)) == ("ok", [])


def _lattice(n: int, period: float, angle: float, rng: np.random.Generator) -> np.ndarray:
    """Linear reflectivity of a lattice of bright cells (4 dB), with a weak smooth texture on top."""
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    a = np.radians(angle)
    u, v = x * np.cos(a) + y * np.sin(a), -x * np.sin(a) + y * np.cos(a)
    f = np.sin(2 * np.pi / period * u) + np.sin(2 * np.pi / period * v)
    f += 1.2 * cv2.GaussianBlur(rng.normal(0, 1, (n, n)).astype(np.float32), (0, 0), 8)
    return 10 ** ((f / f.std() * 4 - 10) / 10)


@pytest.mark.parametrize("seed", [15, 25, 26])
def test_repeating_scene_is_not_ok_one_period_off(tmp_path, seed):
    """A lattice (period 10-16 px), 1-look speckle, georeference off by up to 9 px: the coarse stage locks on a
    lattice node periods away and most windows agree with it. The scene repeats (``correlate.repeat_period``) and
    another start reaches another node with nearly as many windows: the result must not be ok unless it is right
    (it was ok 11-122 px off)."""
    n, pad = 320, 60
    rng = np.random.default_rng(seed)
    period, angle = rng.uniform(10, 16), rng.uniform(0, 90)
    d, georef_error = tuple(np.round(rng.uniform(-8, 8, 2), 2)), tuple(np.round(rng.uniform(-9, 9, 2), 2))
    f = _lattice(n + 2 * pad, period, angle, rng)
    f2 = temporal_change(f, rng, 0.1)
    ref = speckle(f, 1.0, rng)[pad:pad + n, pad:pad + n]
    to_field = np.array([[1, 0, pad + d[0]], [0, 1, pad + d[1]], [0, 0, 1]])
    mov = speckle(warp_image(f2, to_field, (n, n), interpolation=cv2.INTER_LANCZOS4), 1.0, rng)
    r, m = _write_pair(tmp_path, ref, mov, d, georef_error=georef_error)
    rep = register(r, m, tmp_path / "o.tif", SIFT)
    assert rep.status != "ok" or _grid_error(rep.matrix, d, n) < 3.0, (rep.status, _grid_error(rep.matrix, d, n))


def test_single_look_low_texture_pairs_with_wrong_georeference(tmp_path):
    """1-look speckle on both dates, weak texture (2 dB), 30 % change, 256 px, georeference 3.8 px off: the
    correlation peak widened to the speckle level (``correlate.peak_sigma``) registers most such pairs within
    0.5 px (a 1 px peak: 2 of these 6, two failing outright)."""
    n, pad, d = 256, 40, (7.3, -4.6)
    good = []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        f = cv2.GaussianBlur(rng.normal(0, 1, (n + 2 * pad, n + 2 * pad)).astype(np.float32), (0, 0), 3)
        f = 10 ** ((f / f.std() * 2 - 10) / 10)
        f2 = temporal_change(f, rng, 0.3)
        ref = speckle(f, 1.0, rng)[pad:pad + n, pad:pad + n]
        to_field = np.array([[1, 0, pad + d[0]], [0, 1, pad + d[1]], [0, 0, 1]])
        mov = warp_image(speckle(f2, 1.0, rng), to_field, (n, n), interpolation=cv2.INTER_LANCZOS4)
        sub = tmp_path / str(seed)
        sub.mkdir()
        r, m = _write_pair(sub, ref, mov, d, georef_error=(-3.2, 2.1))
        rep = register(r, m, sub / "o.tif", SIFT)
        good.append(rep.status == "ok" and _grid_error(rep.matrix, d, n) < 0.5)
    assert sum(good) >= 4, good


def test_unrelated_scenes_are_not_ok(tmp_path):
    """Two different scenes with right-looking georeferencing: correlation must not invent a registration."""
    n = 320
    rng = np.random.default_rng(9)
    a = speckle(reflectivity(n, n, seed=31), 4.0, rng)
    b = speckle(reflectivity(n, n, seed=32), 4.0, rng)
    r, m = _write_pair(tmp_path, a, b, (0.0, 0.0))
    rep = register(r, m, tmp_path / "o.tif", SIFT)
    assert rep.status != "ok", rep.message


def test_repeat_match_tells_a_lattice_from_fields_of_different_crops():
    """Both repeat in the spectrum (4 looks); only the lattice matches one cell away nearly as well as at the
    truth, so only the lattice's answer can be whole periods off."""
    from sarreg.area import repeat_match
    from sarreg.io.raster import image_to_unit
    from sarreg.stage import TilePair

    n, q = 384, 24
    rng = np.random.default_rng(6)
    yy, xx = np.mgrid[:n, :n]
    lattice = 10 ** ((np.sin(2 * np.pi / q * xx) + np.sin(2 * np.pi / q * yy)) * 2 / 10 - 1)
    fields = np.kron(np.exp(0.8 * rng.standard_normal((n // q, n // q))), np.ones((q, q)))
    fields[(xx % q < 2) | (yy % q < 2)] = 4.0
    ok = np.ones((n, n), bool)
    ratios = []
    for f in (lattice, fields):
        a, b = (image_to_unit(speckle(f, 4.0, rng))[0] for _ in range(2))
        ratios.append(repeat_match([TilePair(0, 0, a, ok, b, ok, np.eye(3))], np.eye(3), 4.5)[0])
    assert ratios[0] >= 0.8 and ratios[1] < 0.2, ratios


def test_repeat_match_reaches_the_next_cell_of_a_field_grid():
    """A checkerboard of 28 px fields (2 px darker borders, 4 looks) repeats 28 * sqrt(2) = 39.6 px away along the
    diagonal: beyond the reach of 128 px windows (a quarter of them), within that of the 256 px windows tried first.
    The step is reported, so an answer can be compared with half of it."""
    from sarreg.area import repeat_match
    from sarreg.io.raster import image_to_unit
    from sarreg.stage import TilePair

    n, q = 640, 28
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:n, :n]
    db = -12 + 5 * (((xx // q) % 2) ^ ((yy // q) % 2)) - 4 * ((xx % q < 2) | (yy % q < 2))
    a, b = (image_to_unit(speckle(10 ** (db / 10), 4.0, rng))[0] for _ in range(2))
    ok = np.ones((n, n), bool)
    tiles = [TilePair(0, 0, a, ok, b, ok, np.eye(3))]
    ratio, step, size = repeat_match(tiles, np.eye(3), 4.5)
    assert ratio >= 0.6 and abs(step - q * np.sqrt(2)) < 1.5 and size == 256, (ratio, step, size)
    near = repeat_match(tiles, np.eye(3), 4.5, sizes=(128,))
    assert near[0] < 0.3, near  # the 128 px windows see no other cell


def test_repass_resamples_through_the_model_chosen_after_affine_passes(tmp_path):
    """A perspective pair refined with affine passes, then a homography chosen (as ``--model auto`` does): one more
    pass through the homography gives windows that agree at least as well and an estimate at least as close; with
    the passes' own model nothing is repeated."""
    from shapely.geometry import box

    from sarreg.area import area_stage, repass
    from sarreg.io.raster import open_scene
    from sarreg.keypoints import read_tiles
    from sarreg.synth import make_pair

    n = 448
    _, a, b = make_pair(n, n, seed=5, looks=4.0, change=0.1)
    H = np.array([[1.01, 0.02, 3.3], [-0.015, 0.99, -2.2], [4e-5, -3e-5, 1.0]])  # moving px -> reference px
    r = write_geotiff(tmp_path / "ref.tif", a)
    m = write_geotiff(tmp_path / "moving.tif", np.nan_to_num(warp_image(b, H, (n, n)), nan=0.0), nodata=0.0)
    rs, ms = open_scene(r), open_scene(m)
    cfg, area = RegisterConfig(features="sift", warp=False), box(0, 0, n - 1, n - 1)
    start = H @ np.array([[1, 0, 1.5], [0, 1, -1.0], [0, 0, 1]])
    tiles, _ = read_tiles(rs, ms, start, cfg, area)
    est_aff, res = area_stage(rs, ms, tiles, start, 8.0, "affine", cfg, area)
    assert est_aff is not None
    assert repass(rs, ms, tiles, est_aff, res, "affine", cfg, area) == (est_aff, res)  # nothing to repeat

    est_h = fit_model(res.src, res.dst, "homography", cfg.robust, cfg.threshold, area=area, scores=res.similarity,
                      seed=0)
    res.info["start"] = "coarse"  # (refine_from_starts names it; the report keeps it through the repass)
    e2, r2 = repass(rs, ms, tiles, est_h, res, "affine", cfg, area)
    assert r2.info["start"] == "coarse"
    assert r2.info.get("repassed_as") == "homography" and e2.model == "homography"
    assert e2.n_inliers >= est_h.n_inliers

    def err(mat):
        g = np.stack(np.meshgrid(np.linspace(40, n - 40, 10), np.linspace(40, n - 40, 10)), -1).reshape(-1, 2)
        return float(np.hypot(*(apply_matrix(np.asarray(mat), g) - apply_matrix(H, g)).T).mean())

    assert err(e2.matrix) <= err(est_h.matrix) + 0.05 and err(e2.matrix) < 0.5, (err(est_h.matrix), err(e2.matrix))


def test_the_spread_gate_widens_only_when_the_other_tie_points_confirm():
    """``judge``: a bootstrap spread over the overlap between ``spread_limit`` and its confirmed value makes an
    estimate low_quality unless the other source of tie points passes the gates itself and agrees (a real
    ``cross_check``); beyond the confirmed limit it stays low_quality either way."""
    import shapely

    from sarreg.choice import spread_limit
    from sarreg.estimate import fit_model
    from sarreg.features import Features
    from sarreg.quality import cross_check, judge
    from sarreg.stage import StageResult

    rng = np.random.default_rng(8)
    area, eye, cfg = shapely.box(0, 0, 1000, 1000), np.eye(3), RegisterConfig(model="auto")
    src = rng.uniform(0, 1000, (80, 2))
    est = fit_model(src, src + [3.0, -2.0] + rng.normal(0, 0.3, (80, 2)), "shift", threshold=cfg.threshold,
                    area=area)
    lo, hi = spread_limit(cfg), spread_limit(cfg, confirmed=True)
    assert lo < hi
    f = Features.empty((1000, 1000))

    def other(offset: tuple[float, float]) -> dict:
        k_src = rng.uniform(0, 1000, (60, 2))
        k_dst = k_src + offset + rng.normal(0, 0.5, (60, 2))
        kp = StageResult(k_src, k_dst, np.ones(60, np.float32), f, f, np.arange(60), np.arange(60))
        return cross_check(est, fit_model(k_src, k_dst, "shift", threshold=cfg.threshold, area=area), kp, area,
                           eye, cfg)

    agree, disagree = other((3.0, -2.0)), other((9.0, -2.0))
    mid = 0.5 * (lo + hi)
    status, reasons = judge(est, eye, cfg, spread=mid)
    assert status == "low_quality" and any("uncertain away" in r for r in reasons), reasons
    assert judge(est, eye, cfg, spread=mid, cross=agree) == ("ok", [])
    assert judge(est, eye, cfg, spread=mid, cross=disagree)[0] == "low_quality"
    status, reasons = judge(est, eye, cfg, spread=hi + 0.1, cross=agree)
    assert status == "low_quality" and any("uncertain away" in r for r in reasons), reasons


@pytest.mark.parametrize("n", [48, 64, 160])
def test_a_scene_too_small_for_the_correlation_windows_is_not_ok(tmp_path, n):
    """A 64 px pair holds no refinement window of 64 px (stop 53: keypoint fits unchecked were up to 9 px off and
    `ok`); since stop 64 such a chip is refined with 32 px windows, nine of them, fewer than --min-inliers: the
    estimate is `low_quality` and says why. At 48 px four fit: too few to check anything. At 160 px the 64 px
    windows check it and it is `ok`."""
    rng = np.random.default_rng(21)
    pad, d = 30, (3.4, -2.7)
    field = reflectivity(n + 2 * pad, n + 2 * pad, seed=21)
    ref = speckle(field, 4, rng)[pad:pad + n, pad:pad + n]
    mov = warp_image(speckle(field, 4, rng), np.array([[1, 0, pad + d[0]], [0, 1, pad + d[1]], [0, 0, 1.0]]), (n, n))
    r = write_geotiff(tmp_path / "ref.tif", ref, REF_T, UTM)
    m = write_geotiff(tmp_path / "moving.tif", mov, REF_T, UTM)
    rep = register(r, m, tmp_path / "out.tif", RegisterConfig(warp=False))
    windows = rep.stages["refine"]["windows"]
    if n == 48:
        assert windows < 8 and rep.status != "ok", rep.message
        assert "too small to check the keypoints' fit" in rep.message
    elif n == 64:
        assert rep.stages["refine"]["window_px"] == 32 and windows == 9
        assert rep.status == "low_quality" and "inliers < 12" in rep.message, rep.message
        assert _grid_error(rep.matrix, d, n) < 0.5
    else:
        assert windows >= 8 and rep.status == "ok", rep.message
        assert _grid_error(rep.matrix, d, n) < 0.5


def test_a_real_small_turn_between_georeferenced_rasters_is_not_fitted_as_a_shift(tmp_path):
    """Same grid, content turned 0.3 deg and shifted (4.3, -2.7) px: the shift that georeferenced pairs prefer
    predicts held-out blocks of the tie points ~1 px worse than a similarity, so the similarity stays (stop 53: the
    shift was `ok` and 2 px off in the corners)."""
    n, pad = 512, 64
    rng = np.random.default_rng(8)
    field = reflectivity(n + 2 * pad, n + 2 * pad, seed=8)
    a = np.radians(0.3)
    c = n / 2
    m = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
    m[:2, 2] = [c, c] - m[:2, :2] @ [c, c] + [4.3, -2.7]  # moving px -> reference px
    ref = speckle(field, 4, rng)[pad:pad + n, pad:pad + n]
    mov = warp_image(speckle(field, 4, rng), np.array([[1, 0, pad], [0, 1, pad], [0, 0, 1.0]]) @ m, (n, n))
    r = write_geotiff(tmp_path / "ref.tif", ref, REF_T, UTM)
    mv = write_geotiff(tmp_path / "moving.tif", np.nan_to_num(mov, nan=0.0), REF_T, UTM, nodata=0.0)
    rep = register(r, mv, tmp_path / "out.tif", RegisterConfig(warp=False))
    cv = rep.stages["parsimony"]["cv_median_px"]
    assert cv["shift"] > cv["similarity"] + 0.5, cv
    assert rep.status == "ok" and rep.model != "shift", (rep.model, rep.message)
    g = np.stack(np.meshgrid(np.linspace(0, n - 1, 10), np.linspace(0, n - 1, 10)), -1).reshape(-1, 2)
    assert np.hypot(*(apply_matrix(np.asarray(rep.matrix), g) - apply_matrix(m, g)).T).max() < 0.5


@pytest.mark.parametrize("width,height", [(2000, 30000), (30000, 1500), (1024, 1024), (10240, 10240)])
def test_fine_tiles_span_a_strip_across(width: int, height: int) -> None:
    """The fine stage's tiles over a long strip (a burst: 2000 x 30000) lie in two lines along it, not one: one
    line left an affine's cross-strip terms to one tile's width (0.39 px off at the edges, 0.10 px with two);
    square scenes keep their grid."""
    from types import SimpleNamespace

    import shapely

    from sarreg.keypoints import plan_tiles

    area = shapely.box(-0.5, -0.5, width - 0.5, height - 0.5)
    tiles = plan_tiles(SimpleNamespace(width=width, height=height), area, 384, 9)
    assert len(tiles) == 9
    cols, rows = {c0 for c0, _, _, _ in tiles}, {r0 for _, r0, _, _ in tiles}
    assert len(cols) >= 2 and len(rows) >= 2, tiles
    if width * height <= 1024 * 1024:  # (up to 1024 px the grid is 3 x 3 as before)
        assert len(cols) == 3 and len(rows) == 3


def test_local_distortion_counts_windows_that_follow_their_neighbours():
    """Tie points on a 16 px grid: a smooth 5 px bulge over part of the scene makes its windows miss a shift while
    agreeing with their independent neighbours (counted); as many windows off by random offsets (temporal change)
    agree with nothing (not counted)."""
    from sarreg.estimate import Estimate
    from sarreg.quality import distorted_locally, local_distortion

    rng = np.random.default_rng(0)
    g = np.stack(np.meshgrid(np.arange(32, 800, 16.0), np.arange(32, 800, 16.0)), -1).reshape(-1, 2)
    bulge = 5.0 * np.exp(-((g - 400) ** 2).sum(1) / (2 * 180.0 ** 2))[:, None] * np.array([0.6, 0.8])
    noise = np.where(rng.random((len(g), 1)) < 0.3, rng.uniform(-6, 6, (len(g), 2)), 0.0)
    n = len(g)
    shift = Estimate("shift", np.eye(3), np.ones(n, bool), np.zeros(n), 0.0, 0.0, 1.0, 1.0, 1.5)
    cfg = RegisterConfig()
    for dst, counted in ((g + bulge, True), (g + noise, False)):
        m = local_distortion(shift, g, dst, cfg, 64)
        assert distorted_locally({**m, "tie_points": len(g)}, cfg) is counted, m
