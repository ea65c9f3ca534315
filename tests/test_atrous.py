"""Fast -> full-resolution conversion (sarreg.train.atrous) and its use by the training loop (--arch)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sarreg.errors import WeightsError
from sarreg.model.files import MODELS_DIR
from sarreg.model.r2d2 import Quad_L2Net_ConfCFS, build_network
from sarreg.model.weights import load_model, random_model, save_checkpoint
from sarreg.train.atrous import full_resolution_copy, reestimate_batchnorm
from sarreg.train.loop import TrainConfig, train
from sarreg.train.pairs import Source


def _smooth_image(seed: int = 0, size: int = 128, blur: int = 5) -> torch.Tensor:
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((1, 1, size, size)).astype(np.float32))
    return F.avg_pool2d(x, blur, 1, blur // 2)


def test_full_resolution_copy_computes_nearly_the_fast_descriptors() -> None:
    """On an image smooth at the 2 px scale, max-pool ~ sub-sampling, so both networks describe each pixel alike;
    a copy that kept the Fast dilations (the layer mapping wrong) does not."""
    torch.set_num_threads(1)
    path = MODELS_DIR / "training" / "v4_last.pt"  # a trained Fast network (the checkout's, not packaged)
    if not path.is_file():
        pytest.skip(f"{path} absent")
    fast = load_model(path).net.eval()
    full = full_resolution_copy(fast).eval()
    assert isinstance(full, Quad_L2Net_ConfCFS) and full.mchan == fast.mchan
    x = _smooth_image()
    with torch.no_grad():
        a, b = fast(x), full(x)
    assert b["descriptors"].shape == a["descriptors"].shape == (1, 128, 128, 128)
    cos = float((a["descriptors"] * b["descriptors"]).sum(1).mean())
    assert cos > 0.8, cos
    wrong = full_resolution_copy(fast).eval()
    fast_convs = [op for op in fast.ops if isinstance(op, torch.nn.Conv2d)]
    for q, f in zip([op for op in wrong.ops if isinstance(op, torch.nn.Conv2d)], fast_convs):
        q.dilation, q.padding = f.dilation, f.padding
    with torch.no_grad():
        c = wrong(x)
    assert float((a["descriptors"] * c["descriptors"]).sum(1).mean()) < cos - 0.3
    with pytest.raises(ValueError, match="Fast_Quad"):
        full_resolution_copy(full)


def test_reestimate_batchnorm_uses_the_batch_statistics() -> None:
    torch.set_num_threads(1)
    net = build_network("Quad_L2Net_ConfCFS", in_channels=1, mchan=1)
    x = _smooth_image(1, 48, 3) * 3 + 2
    assert reestimate_batchnorm(net, [x]) == 1 and not net.training
    with torch.no_grad():
        pre = net.ops[0](x)  # first conv, before its BatchNorm
    bn = net.ops[1]
    assert isinstance(bn, torch.nn.BatchNorm2d) and bn.momentum == 0.1  # momentum restored
    np.testing.assert_allclose(bn.running_mean.numpy(), pre.mean((0, 2, 3)).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), pre.var((0, 2, 3)).numpy(), rtol=1e-3, atol=1e-5)
    with pytest.raises(ValueError, match="no batches"):
        reestimate_batchnorm(net, [])


def test_train_full_resolution_from_a_fast_checkpoint(tmp_path) -> None:
    m = random_model(mchan=2, seed=3)
    init = save_checkpoint(tmp_path / "fast.pt", m.net, m.arch, 2, 1, training={"iteration": 5})
    cfg = TrainConfig(iterations=1, batch=2, crop=64, mchan=2, workers=0, threads=1, val_every=1, val_size=64,
                      val_top_k=50, val_pairs=2, init=str(init), arch="Quad_L2Net_ConfCFS", bn_batches=2)
    src = [Source("synthetic", 1.0, size=128)]
    assert train(src, tmp_path / "run", cfg, progress=False).iteration == 1
    got = load_model(tmp_path / "run" / "last.pt")
    assert isinstance(got.net, Quad_L2Net_ConfCFS) and got.mchan == 2
    bn = got.net.ops[1]
    assert bn.num_batches_tracked > 2  # re-estimated (2 batches), then one training step
    conv = [op for op in got.net.ops if isinstance(op, torch.nn.Conv2d)]
    assert [c.dilation[0] for c in conv] == [1, 1, 1, 2, 2, 4, 4, 8, 16]
    with pytest.raises(WeightsError, match="resume it with --arch Quad_L2Net_ConfCFS"):
        train(src, tmp_path / "run", TrainConfig(**{**cfg.__dict__, "arch": "Fast_Quad_L2Net_ConfCFS",
                                                      "iterations": 2}), resume=True, progress=False)
    torch.save({"net": "Quad_L2Net_ConfCFS()", "state_dict": {}}, tmp_path / "naver.pt")
    with pytest.raises(WeightsError, match="not a sarreg checkpoint"):
        train(src, tmp_path / "run3", TrainConfig(**{**cfg.__dict__, "init": str(tmp_path / "naver.pt")}),
              progress=False)
    with pytest.raises(WeightsError, match="cannot initialise"):  # full -> Fast is not a conversion we offer
        train(src, tmp_path / "run2", TrainConfig(**{**cfg.__dict__, "arch": "Fast_Quad_L2Net_ConfCFS",
                                                       "init": str(tmp_path / "run" / "last.pt")}), progress=False)
