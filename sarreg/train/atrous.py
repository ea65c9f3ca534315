"""Full-resolution ("a trous") copy of a Fast network, to fine-tune a more precise one from trained weights.

Why: the Fast network computes its last six layers at half resolution (max-pool 2x2, then bilinear x2
up-sampling), so its descriptors vary smoothly over 2 px and single-stage matches land +-1 px around the truth.
R2D2's full network (``Quad_L2Net_ConfCFS``) has the same layers without the pool and the up-sampling, each later
convolution dilated twice as much: the same filters evaluated at every pixel (the "algorithme a trous",
Holschneider et al. 1989). Copying the trained Fast weights gives a network that already works (the max-pool
becomes a plain sub-sampling of an almost equal signal), and fine-tuning from there costs hours instead of the
days of a training from scratch. Only the BatchNorm statistics need re-estimating: without the max-pool, the
activations after layer 3 are no longer per-block maxima and their mean is lower.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from sarreg.model.r2d2 import Fast_Quad_L2Net_ConfCFS, Quad_L2Net_ConfCFS, _R2D2Base

__all__ = ["full_resolution_copy", "reestimate_batchnorm"]


def full_resolution_copy(fast: _R2D2Base) -> Quad_L2Net_ConfCFS:
    """A ``Quad_L2Net_ConfCFS`` with the weights of ``fast`` (a ``Fast_Quad_L2Net_ConfCFS``), layer for layer.

    The BatchNorm statistics are copied too; re-estimate them (:func:`reestimate_batchnorm`) before use.
    """
    if not isinstance(fast, Fast_Quad_L2Net_ConfCFS):
        raise ValueError(f"full_resolution_copy: expected a Fast_Quad_L2Net_ConfCFS, got {type(fast).__name__}")
    full = Quad_L2Net_ConfCFS(in_channels=fast.in_channels, mchan=fast.mchan)
    src = [op for op in fast.ops if not isinstance(op, (nn.MaxPool2d, nn.Upsample))]
    dst = list(full.ops)
    if len(src) != len(dst):  # the two architectures' layer lists must stay in step
        raise ValueError(f"full_resolution_copy: {len(src)} layers vs {len(dst)}")
    for a, b in zip(src, dst):
        if type(a) is not type(b):
            raise ValueError(f"full_resolution_copy: layer {type(a).__name__} vs {type(b).__name__}")
        b.load_state_dict(a.state_dict())
    full.clf.load_state_dict(fast.clf.state_dict())
    full.sal.load_state_dict(fast.sal.state_dict())
    return full.train(fast.training)


@torch.no_grad()
def reestimate_batchnorm(net: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace every BatchNorm's running mean / variance by their averages over ``batches`` (normalised input
    tensors B x C x H x W); returns the number of batches used. The network is left in eval mode."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    net.train()
    n = 0
    try:
        for x in batches:
            net(x)
            n += 1
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        net.eval()
    if n == 0:
        raise ValueError("reestimate_batchnorm: no batches")
    return n
