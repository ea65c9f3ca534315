"""Learned descriptor whitening (``sarreg.train.whiten``): fitted on matching rows, stored in the checkpoint,
applied by ``Model.describe`` at extraction."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sarreg.config import ExtractConfig
from sarreg.errors import WeightsError
from sarreg.extract import extract_array, extract_batch
from sarreg.network import context_levels, raw_descriptors_at, run_network
from sarreg.model.weights import load_model, random_model, save_checkpoint
from sarreg.synth import reflectivity, speckle
from sarreg.train.pairs import Source
from sarreg.train.whiten import collect, fit_whitening, matching_scores, reduce_whitening, write_whitened


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _nuisance_data(rng: np.random.Generator, pairs: int = 40, per: int = 50, d: int = 16) -> dict[str, np.ndarray]:
    """Descriptors whose matches differ mostly along two nuisance directions (large noise there, small elsewhere),
    plus a common offset every descriptor shares."""
    common = np.zeros(d)
    common[0] = 3.0
    a, b, g = [], [], []
    for k in range(pairs):
        x = rng.normal(0, 1, (per, d)) + common
        noise = rng.normal(0, 0.05, (per, d))
        noise[:, 1:3] = rng.normal(0, 3.0, (per, 2))
        a.append(_unit(x))
        b.append(_unit(x + noise))
        g.append(np.full(per, k))
    a, b, g = np.concatenate(a), np.concatenate(b), np.concatenate(g)
    return {"a": a, "b": b, "others": b[::-1].copy(), "group": g, "group_others": g[::-1].copy()}


def test_fitted_whitening_finds_the_matches_that_raw_descriptors_miss(rng) -> None:
    data = _nuisance_data(rng)
    fit, held = data["group"] < 20, np.arange(20, 40)
    m = random_model(mchan=1)
    before = matching_scores(data, m, held)
    m.whitening = fit_whitening(data["a"][fit], data["b"][fit], shrink=0.1)
    after = matching_scores(data, m, held)
    assert after["nn_accuracy"] > before["nn_accuracy"] + 0.2
    assert after["mnn_correct"] > before["mnn_correct"]
    out = m.describe(data["a"][:5])
    assert out.dtype == np.float32 and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


def test_whitening_round_trips_through_the_checkpoint_and_the_extractor(tmp_path, rng) -> None:
    m = random_model(mchan=2, seed=3)
    src = save_checkpoint(tmp_path / "m.pt", m.net, m.arch, 2, 1, training={"iteration": 1})
    q, _ = np.linalg.qr(rng.normal(size=(128, 128)))
    mean = rng.normal(0, 0.05, 128).astype(np.float32)
    dst = write_whitened(src, tmp_path / "w.pt", mean, q.astype(np.float32), {"pairs": 1})
    plain, white = load_model(src), load_model(dst)
    assert plain.whitening is None and white.whitening is not None
    assert white.training["whitening"] == {"pairs": 1}
    assert np.allclose(white.whitening[1], q, atol=1e-6)
    img = speckle(reflectivity(96, 96, seed=1), 4, rng).astype(np.float32)
    unit = (np.log(img) - np.log(img).min()) / np.ptp(np.log(img))
    cfg = ExtractConfig(min_scale=1.0, max_size=0, rel_thr=0.0, rep_thr=0.0, top_k=200, border=0)
    fp, fw = extract_array(plain, unit, None, cfg), extract_array(white, unit, None, cfg)
    assert np.array_equal(fp.keypoints, fw.keypoints)
    assert np.allclose(fw.descriptors, white.describe(fp.descriptors), atol=1e-5)
    assert not np.allclose(fw.descriptors, fp.descriptors, atol=1e-3)
    with pytest.raises(WeightsError, match="overwrite"):
        write_whitened(dst, dst, mean, q.astype(np.float32))


def test_malformed_whitening_is_refused(tmp_path) -> None:
    m = random_model(mchan=1)
    bad = save_checkpoint(tmp_path / "bad.pt", m.net, m.arch, 1, 1,
                          extra={"whitening": {"mean": torch.zeros(128), "matrix": torch.zeros(128, 64)}})
    with pytest.raises(WeightsError, match="128 x D"):
        load_model(bad)
    small = save_checkpoint(tmp_path / "small.pt", m.net, m.arch, 1, 1,
                            extra={"whitening": {"mean": torch.zeros(64), "matrix": torch.eye(64)}})
    with pytest.raises(WeightsError, match="D = 128"):
        load_model(small)


def test_collect_gives_matching_rows_from_training_views() -> None:
    m = random_model(mchan=1, seed=2)
    data = collect(m, [Source("synthetic", 1.0, size=192)], n_pairs=2, crop=96, per_pair=40, seed=5, log_every=0)
    assert data["a"].shape == data["b"].shape and data["a"].shape[1] == 128
    assert len(data["group"]) == len(data["a"]) and len(data["group_others"]) == len(data["others"])
    assert 20 <= len(data["a"]) <= 80


def _speckled_unit(rng: np.random.Generator, n: int = 96, seed: int = 1) -> np.ndarray:
    img = speckle(reflectivity(n, n, seed=seed), 4, rng).astype(np.float32)
    return ((np.log(img) - np.log(img).min()) / np.ptp(np.log(img))).astype(np.float32)


def test_context_descriptors_sample_the_coarser_views_at_the_same_place(rng) -> None:
    m = random_model(mchan=2, seed=4)
    m.context = (2, 4)
    unit = _speckled_unit(rng)
    out = run_network(m, unit)
    ys, xs = np.array([10, 30, 51]), np.array([20, 45, 70])
    d = raw_descriptors_at(m, out, ys, xs, unit)
    assert d.shape == (3, 384)
    assert np.allclose(np.linalg.norm(d.reshape(3, 3, 128), axis=2), 1, atol=1e-5)
    assert np.allclose(d[:, :128], out.descriptors_at(ys, xs))
    # pixel-centre rule: full-resolution (2i + 0.5, 2j + 0.5) is the centre of pixel (i, j) of the x2 view
    (f, half), _ = context_levels(unit, m.context)
    assert f == 2 and half.shape == (48, 48)
    i, j = np.array([5, 20]), np.array([7, 30])
    d2 = raw_descriptors_at(m, out, 2 * i + 0.5, 2 * j + 0.5, unit)[:, 128:256]
    assert np.allclose(d2, run_network(m, half).descriptors_at(i, j), atol=1e-6)
    with pytest.raises(Exception, match="context"):
        raw_descriptors_at(m, out, ys, xs, None)


def test_context_whitening_round_trips_and_keeps_descriptors_at_128(tmp_path, rng) -> None:
    m = random_model(mchan=2, seed=3)
    src = save_checkpoint(tmp_path / "m.pt", m.net, m.arch, 2, 1, training={"iteration": 1})
    mat = rng.normal(size=(128, 384)).astype(np.float32)
    mean = rng.normal(0, 0.05, 384).astype(np.float32)
    dst = write_whitened(src, tmp_path / "c.pt", mean, mat, {"context": [2, 4]})
    ctx = load_model(dst)
    assert ctx.context == (2, 4) and ctx.whitening[1].shape == (128, 384) and load_model(src).context == ()
    unit = _speckled_unit(rng)
    cfg = ExtractConfig(min_scale=1.0, max_scale=1.0, max_size=0, rel_thr=0.0, rep_thr=0.0, top_k=100, border=0)
    f = extract_array(ctx, unit, None, cfg)
    assert f.descriptors.shape == (len(f.keypoints), 128) and len(f.keypoints) > 20
    assert np.allclose(np.linalg.norm(f.descriptors, axis=1), 1, atol=1e-5)
    (fb,) = extract_batch(ctx, [(unit, np.ones_like(unit, bool))], cfg)  # the fine stage's batched path
    assert np.array_equal(fb.keypoints, f.keypoints) and np.allclose(fb.descriptors, f.descriptors, atol=1e-5)
    bad = save_checkpoint(tmp_path / "bad.pt", m.net, m.arch, 2, 1, extra={"whitening": {
        "mean": torch.zeros(384), "matrix": torch.zeros(128, 384), "context": [1, 4]}})
    with pytest.raises(WeightsError, match="context"):
        load_model(bad)
    short = save_checkpoint(tmp_path / "short.pt", m.net, m.arch, 2, 1, extra={"whitening": {
        "mean": torch.zeros(128), "matrix": torch.eye(128), "context": [2]}})
    with pytest.raises(WeightsError, match="D = 256"):
        load_model(short)


def test_collect_with_context_and_the_reduction_to_128(rng) -> None:
    m = random_model(mchan=1, seed=2)
    m.context = (2,)
    data = collect(m, [Source("synthetic", 1.0, size=192)], n_pairs=4, crop=96, per_pair=80, seed=5, log_every=0)
    assert data["a"].shape[1] == data["b"].shape[1] == data["others"].shape[1] == 256 and len(data["a"]) >= 64
    mean, mat = fit_whitening(data["a"], data["b"], data["others"], 0.1)
    red = reduce_whitening(data["a"], data["b"], mean, mat)
    assert mat.shape == (256, 256) and red.shape == (128, 256)
    # the kept directions are orthonormal combinations of the whitened ones
    y = (data["a"] - mean) @ red.T
    assert np.isfinite(y).all() and np.linalg.matrix_rank(red) == 128
    sq = mat[:128, :128]
    assert reduce_whitening(data["a"], data["b"], mean[:128], sq) is sq  # D = 128: as is
    with pytest.raises(ValueError, match="too few"):
        reduce_whitening(data["a"][:10], data["b"][:10], mean, mat)
