"""Learned descriptor whitening (``sarreg.train.whiten``): fitted on matching rows, stored in the checkpoint,
applied by ``Model.describe`` at extraction."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sarreg.config import ExtractConfig
from sarreg.errors import WeightsError
from sarreg.extract import extract_array
from sarreg.model.weights import load_model, random_model, save_checkpoint
from sarreg.synth import reflectivity, speckle
from sarreg.train.pairs import Source
from sarreg.train.precision import measure
from sarreg.train.whiten import (NEAR, collect, fit_whitening, matching_scores, precision_scores, training_views,
                                 write_whitened)


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
    with pytest.raises(WeightsError, match="D x D"):
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


def test_precision_counts_true_positions_that_beat_every_nearby_one(rng) -> None:
    """A near position (1.5 px away) identical to the query beats the true one at 1.5 px and not from 2 px on."""
    n, d = 30, 16
    a = _unit(rng.normal(size=(n, d)))
    b = _unit(a + rng.normal(0, 0.05, (n, d)))
    near = _unit(rng.normal(size=(n * len(NEAR), d))).reshape(n, len(NEAR), d)
    data = {"a": a, "b": b, "group": np.zeros(n, int), "near": near.copy(), "near_index": np.arange(n)}
    m = random_model(mchan=1)
    assert precision_scores(data, m, np.array([0])) == {"beats_1.5px": 1.0, "beats_2px": 1.0, "beats_3px": 1.0}
    closest = [i for i, (dx, dy) in enumerate(NEAR) if np.hypot(dx, dy) < 1.6]
    assert len(closest) == 4
    data["near"][:, closest] = a[:, None]
    got = precision_scores(data, m, np.array([0]))
    assert got["beats_1.5px"] == 0.0 and got["beats_2px"] == 1.0 and got["beats_3px"] == 1.0


def test_measure_gives_matching_and_precision_figures_of_a_weights_file(tmp_path) -> None:
    m = random_model(mchan=1, seed=2)
    w = save_checkpoint(tmp_path / "m.pt", m.net, m.arch, 1, 1)
    data = collect(m, [Source("synthetic", 1.0, size=192)], n_pairs=2, crop=96, per_pair=40, seed=5, log_every=0,
                   near=NEAR, near_per_pair=10)
    assert data["near"].shape[1:] == (len(NEAR), 128) and len(data["near"]) == len(data["near_index"]) <= 20
    assert (data["near_index"] < len(data["a"])).all()
    figures = measure(str(w), [Source("synthetic", 1.0, size=192)], pairs=2, crop=96, seed=5)
    assert set(figures) >= {"nn_accuracy", "mnn_precision", "beats_1.5px", "beats_2px", "beats_3px"}
    assert 0.0 <= figures["beats_1.5px"] <= figures["beats_2px"] <= figures["beats_3px"] <= 1.0


def test_training_views_are_read_from_the_checkpoints_training_record(tmp_path) -> None:
    m = random_model(mchan=1, seed=2)
    config = {"iterations": 5, "sensor": 0.7, "contrast": 0.3, "near_identity": 0.3, "lr": 3e-5}
    src = save_checkpoint(tmp_path / "m.pt", m.net, m.arch, 1, 1, training={"config": config})
    assert training_views(src) == {"sensor": 0.7, "contrast": 0.3, "near_identity": 0.3}
    bare = save_checkpoint(tmp_path / "bare.pt", m.net, m.arch, 1, 1, training={"iteration": 1})
    with pytest.raises(WeightsError, match="no training record"):
        training_views(bare)
