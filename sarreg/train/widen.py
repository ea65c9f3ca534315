"""Function-preserving widening of a trained network (Net2WiderNet), to give a fine-tuning run more capacity.

Why: fine-tuning the shipped width-3 network with more view diversity stayed flat for thousands of iterations;
training a wider network from scratch costs days on a CPU. Widening copies the trained network into a wider one
that computes the same outputs (each new channel replicates an old one, and the next layer's weights on a
replicated channel are shared among its copies), so the run starts where the narrow one ended and can use the
extra channels from there. Chen, Goodfellow & Shlens, "Net2Net", ICLR 2016.

Works for our R2D2 stacks: Conv2d -> BatchNorm2d(affine=False) -> [ReLU], max-pool and up-sampling in between.
Affine-free batch norm and per-channel max-pool commute with replicating a channel, so replicas stay identical.
"""
from __future__ import annotations

import torch
from torch import nn

from sarreg.model.r2d2 import _R2D2Base

__all__ = ["widen_network"]


def widen_network(small: _R2D2Base, wide: _R2D2Base, noise: float = 0.01, seed: int = 0) -> None:
    """Load ``small``'s weights into the wider ``wide`` (same architecture, larger mchan) in place.

    ``noise`` (relative to each layer's weight spread) is added to the incoming weights of replicated channels
    so that replicas can drift apart in training; 0 gives outputs identical to ``small``'s.
    """
    if type(small) is not type(wide) or small.in_channels != wide.in_channels:
        raise ValueError("widen_network: both networks must have the same architecture and input channels")
    if wide.mchan < small.mchan:
        raise ValueError(f"widen_network: mchan {wide.mchan} is narrower than {small.mchan}")
    gen = torch.Generator().manual_seed(seed)
    s_ops, w_ops = list(small.ops), list(wide.ops)
    mapping: torch.Tensor | None = None  # wide input channel -> small channel, for the current layer's input
    with torch.no_grad():
        for s_op, w_op in zip(s_ops, w_ops, strict=True):
            if isinstance(s_op, nn.Conv2d):
                cin_map = mapping if mapping is not None else torch.arange(s_op.in_channels)
                counts = torch.bincount(cin_map, minlength=s_op.in_channels).float()
                weight = s_op.weight[:, cin_map] / counts[cin_map].view(1, -1, 1, 1)
                c_small, c_wide = s_op.out_channels, w_op.out_channels
                extra = torch.randint(0, c_small, (c_wide - c_small,), generator=gen)
                mapping = torch.cat([torch.arange(c_small), extra])
                new_w, new_b = weight[mapping].clone(), s_op.bias[mapping].clone()
                if noise > 0 and len(extra):
                    scale = noise * float(s_op.weight.std())
                    shape = new_w[c_small:].shape
                    new_w[c_small:] += scale * torch.randn(shape, generator=gen)
                w_op.weight.copy_(new_w)
                w_op.bias.copy_(new_b)
            elif isinstance(s_op, nn.BatchNorm2d):
                assert mapping is not None
                w_op.running_mean.copy_(s_op.running_mean[mapping])
                w_op.running_var.copy_(s_op.running_var[mapping])
                w_op.num_batches_tracked.copy_(s_op.num_batches_tracked)
        wide.clf.load_state_dict(small.clf.state_dict())
        wide.sal.load_state_dict(small.sal.state_dict())
