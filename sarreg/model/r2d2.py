"""R2D2-family keypoint networks (clean-room re-implementation from our spec).

Three architectures, all fully convolutional, returning per-pixel descriptors (128-D, L2-normalised),
reliability and repeatability maps at input resolution:

* ``Quad_L2Net_ConfCFS(mchan=4)``: dilated L2-Net stack, never reduces resolution.
* ``Quad_L2Net_ConfCFS(mchan=6)``: the wider "big" variant.
* ``Fast_Quad_L2Net_ConfCFS(mchan=4)``: one 2x max-pool after layer 3, bilinear up-sampling at the end
  (about 3.4x fewer multiply-adds per pixel).

Module indices inside ``ops`` follow the published checkpoints so their state dicts load unchanged.
``in_channels`` is 3 for RGB checkpoints and 1 for our SAR models.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DESCRIPTOR_DIM = 128


def _conv(cin: int, cout: int, k: int, dilation: int) -> nn.Conv2d:
    # padding floor((k-1)*d/2) keeps H x W for k=3 and for k=2 with even dilation
    return nn.Conv2d(cin, cout, kernel_size=k, dilation=dilation, padding=((k - 1) * dilation) // 2)


class _R2D2Base(nn.Module):
    """Shared heads: squared raw map -> reliability (2-way softmax) and repeatability (softplus ratio)."""

    arch: str = ""
    receptive_field: int = 51

    def __init__(self, in_channels: int, mchan: int) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.mchan = int(mchan)
        self.ops = nn.ModuleList()
        self.clf = nn.Conv2d(DESCRIPTOR_DIM, 2, kernel_size=1)
        self.sal = nn.Conv2d(DESCRIPTOR_DIM, 1, kernel_size=1)

    def _add(self, cin: int, cout: int, k: int, dilation: int, bn: bool = True, relu: bool = True) -> None:
        self.ops.append(_conv(cin, cout, k, dilation))
        if bn:
            self.ops.append(nn.BatchNorm2d(cout, affine=False))
        if relu:
            self.ops.append(nn.ReLU(inplace=True))

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        return x

    def heads(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """Turn the raw 128-channel map into descriptors, reliability and repeatability (B x C x H x W)."""
        desc = F.normalize(raw, p=2, dim=1, eps=1e-12)
        sq = raw * raw
        u_rel = self.clf(sq)
        reliability = torch.softmax(u_rel, dim=1)[:, 1:2]
        s = F.softplus(self.sal(sq))
        repeatability = s / (1 + s)
        return {"descriptors": desc, "reliability": reliability, "repeatability": repeatability}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: B x in_channels x H x W normalised image -> dict of B x {128,1,1} x H' x W' maps."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self.arch}: expected input B x {self.in_channels} x H x W, got {tuple(x.shape)}")
        return self.heads(self.backbone(x))

    @property
    def net_string(self) -> str:
        return self.arch if self.mchan == 4 else self.arch.replace("()", f"(mchan={self.mchan})")


class Quad_L2Net_ConfCFS(_R2D2Base):
    """Dilated L2-Net with 2x2 final convs; full resolution throughout (receptive field 51 px)."""

    arch = "Quad_L2Net_ConfCFS()"
    receptive_field = 51

    def __init__(self, in_channels: int = 3, mchan: int = 4) -> None:
        super().__init__(in_channels, mchan)
        m = mchan
        self._add(in_channels, 8 * m, 3, 1)
        self._add(8 * m, 8 * m, 3, 1)
        self._add(8 * m, 16 * m, 3, 1)          # "stride 2": later dilations x2
        self._add(16 * m, 16 * m, 3, 2)
        self._add(16 * m, 32 * m, 3, 2)         # "stride 2"
        self._add(32 * m, 32 * m, 3, 4)
        self._add(32 * m, 32 * m, 2, 4, relu=False)
        self._add(32 * m, 32 * m, 2, 8, relu=False)
        self._add(32 * m, DESCRIPTOR_DIM, 2, 16, bn=False, relu=False)


class Fast_Quad_L2Net_ConfCFS(_R2D2Base):
    """Fast variant: max-pool 2x2 after layer 3, half-resolution trunk, bilinear x2 up-sampling.

    Odd input sizes give a map one row/column smaller (2*floor(H/2) x 2*floor(W/2)), as the reference does.
    """

    arch = "Fast_Quad_L2Net_ConfCFS()"
    receptive_field = 54

    def __init__(self, in_channels: int = 3, mchan: int = 4) -> None:
        super().__init__(in_channels, mchan)
        m = mchan
        self._add(in_channels, 8 * m, 3, 1)
        self._add(8 * m, 8 * m, 3, 1)
        self._add(8 * m, 16 * m, 3, 1)
        self.ops.append(nn.MaxPool2d(2, stride=2))
        self._add(16 * m, 16 * m, 3, 1)
        self._add(16 * m, 32 * m, 3, 1)         # "stride 2"
        self._add(32 * m, 32 * m, 3, 2)
        self._add(32 * m, 32 * m, 2, 2, relu=False)
        self._add(32 * m, 32 * m, 2, 4, relu=False)
        self._add(32 * m, DESCRIPTOR_DIM, 2, 8, bn=False, relu=False)
        self.ops.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))


ARCHITECTURES: dict[str, type[_R2D2Base]] = {
    "Quad_L2Net_ConfCFS": Quad_L2Net_ConfCFS,
    "Fast_Quad_L2Net_ConfCFS": Fast_Quad_L2Net_ConfCFS,
}


def build_network(arch: str, in_channels: int = 1, mchan: int = 4) -> _R2D2Base:
    """Build an (untrained) network by architecture name, e.g. ``build_network("Fast_Quad_L2Net_ConfCFS", 1)``."""
    name = arch.split("(")[0].strip()
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name](in_channels=in_channels, mchan=mchan)


def fold_batchnorm(net: _R2D2Base) -> nn.Module:
    """Return an inference copy with each affine-free BN folded into the preceding conv.

    Why: removes one full-resolution pass and one buffer per layer at inference (same outputs within ~1e-6).
    """
    import copy

    net = copy.deepcopy(net).eval()
    ops = list(net.ops)
    new_ops: list[nn.Module] = []
    i = 0
    while i < len(ops):
        op = ops[i]
        if isinstance(op, nn.Conv2d) and i + 1 < len(ops) and isinstance(ops[i + 1], nn.BatchNorm2d):
            bn = ops[i + 1]
            inv = torch.rsqrt(bn.running_var + bn.eps)
            with torch.no_grad():
                op.weight.mul_(inv.view(-1, 1, 1, 1))
                op.bias.copy_((op.bias - bn.running_mean) * inv)
            new_ops.append(op)
            i += 2
        else:
            new_ops.append(op)
            i += 1
    net.ops = nn.ModuleList(new_ops)
    return net
