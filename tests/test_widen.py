"""Widening a trained network keeps its outputs (Net2WiderNet), so a wider run starts where the narrow one ended."""
from __future__ import annotations

import pytest
import torch

from sarreg.model.r2d2 import build_network
from sarreg.train.widen import widen_network

ARCH = "Fast_Quad_L2Net_ConfCFS"


def _trained_like(mchan: int) -> torch.nn.Module:
    """A width-``mchan`` network with non-trivial weights and batch-norm statistics (a few train-mode passes)."""
    torch.manual_seed(0)
    net = build_network(ARCH, in_channels=1, mchan=mchan).train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(2, 1, 48, 48) * 2 + 0.5)
    return net


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_widened_network_computes_the_same_outputs(mode: str) -> None:
    small = _trained_like(2)
    wide = build_network(ARCH, in_channels=1, mchan=3)
    widen_network(small, wide, noise=0.0)
    x = torch.randn(2, 1, 64, 64)
    getattr(small, mode)()
    getattr(wide, mode)()
    with torch.no_grad():
        a, b = small(x), wide(x)
    for key in ("descriptors", "reliability", "repeatability"):
        assert torch.allclose(a[key], b[key], atol=1e-5), key
    assert sum(p.numel() for p in wide.parameters()) > 1.5 * sum(p.numel() for p in small.parameters())


def test_noise_breaks_the_symmetry_of_replicas_only_slightly() -> None:
    small = _trained_like(2).eval()
    wide = build_network(ARCH, in_channels=1, mchan=3)
    widen_network(small, wide, noise=0.01)
    wide.eval()
    first = wide.ops[0]
    replicas = first.weight[16:]  # channels 16..23 copy some of the first 16
    assert not any(torch.equal(r, first.weight[j]) for r in replicas for j in range(16))
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        d = (small(x)["descriptors"] - wide(x)["descriptors"]).abs()
    assert 0 < float(d.max()) < 0.1


def test_narrowing_is_refused() -> None:
    with pytest.raises(ValueError, match="narrower"):
        widen_network(_trained_like(3), build_network(ARCH, in_channels=1, mchan=2))


def test_train_from_a_narrower_checkpoint_widens_it(tmp_path) -> None:
    from sarreg.errors import WeightsError
    from sarreg.model.weights import load_model, random_model, save_checkpoint
    from sarreg.train.loop import TrainConfig, train
    from sarreg.train.pairs import Source

    m = random_model(mchan=2, seed=1)
    init = save_checkpoint(tmp_path / "narrow.pt", m.net, m.arch, 2, 1, training={"iteration": 5})
    cfg = TrainConfig(iterations=1, batch=2, crop=64, mchan=3, workers=0, threads=1, val_every=1, val_size=64,
                      val_top_k=50, val_pairs=2, init=str(init))
    assert train([Source("synthetic", 1.0, size=128)], tmp_path / "run", cfg, progress=False).iteration == 1
    assert load_model(tmp_path / "run" / "last.pt").mchan == 3
    with pytest.raises(WeightsError, match="wider"):
        train([Source("synthetic", 1.0, size=128)], tmp_path / "run1",
              TrainConfig(**{**cfg.__dict__, "mchan": 1}), progress=False)
