"""Network execution: a [0, 1] image -> dense reliability, repeatability and descriptor maps (``DenseOutput``),
from which descriptors are sampled at keypoints.

Kept apart from keypoint detection (``sarreg.extract``) so that the fine stage, training tools and benchmarks can
run the network without the pyramid and tiling logic.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sarreg.errors import InputError
from sarreg.model.r2d2 import fold_batchnorm
from sarreg.model.weights import Model

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda requested but no CUDA device is available")
    return torch.device(name)


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 natively: CUDA by its own report, a CPU with AVX512-BF16 or AMX.

    Why: elsewhere PyTorch emulates bfloat16, and autocast makes the network many times slower instead of faster
    (measured: a full-resolution training iteration 98 s with ``--amp`` against 10 s in float32 on an AVX2 CPU).
    """
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, c, lambda: False)()) for c in checks)


def usable_precision(precision: str, device: torch.device | str) -> str:
    """``precision`` for the PyTorch backend on ``device``: "bf16" falls back to "fp32" (with one warning per
    process) where bfloat16 is emulated, because it would only be slower and less accurate there."""
    if precision == "bf16" and not native_bf16(device):
        if not getattr(usable_precision, "_warned", False):
            log.warning("bf16 requested but %s has no native bfloat16 (AVX512-BF16 / AMX / CUDA): running in "
                        "fp32, which is faster here", torch.device(device))
            usable_precision._warned = True  # type: ignore[attr-defined]
        return "fp32"
    return precision


def _inference_net(model: Model, device: torch.device) -> torch.nn.Module:
    """BN folded into the convs (one fewer full-resolution pass per layer), cached on the model."""
    key = (id(model.net), str(device))
    cached = getattr(model, "_sarreg_infer", None)
    if cached is None or cached[0] != key:
        # channels-last is oneDNN's preferred layout for CPU convolutions (~10-20 % less CPU time here)
        net = fold_batchnorm(model.net).to(device).eval().to(memory_format=torch.channels_last)
        model._sarreg_infer = (key, net)  # type: ignore[attr-defined]
        cached = model._sarreg_infer  # type: ignore[attr-defined]
    return cached[1]


@dataclass
class DenseOutput:
    """Network output of one tile: full-resolution reliability/repeatability (H x W) and the raw descriptor map
    (128 x h x w; half resolution for the Fast network) from which descriptors are sampled at keypoints only.

    Why: the full-resolution 128-channel descriptor map is by far the largest buffer (512 B/px); sampling it at
    the few thousand keypoints instead keeps tile memory several times lower with identical values.
    """

    raw: torch.Tensor
    reliability: torch.Tensor
    repeatability: torch.Tensor
    upsampled: bool

    def descriptors_at(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """L2-normalised descriptors (N x 128 float32) at full-resolution pixels (rows ys, cols xs; bilinear between
        the half-resolution samples of the Fast network, the nearest pixel otherwise)."""
        if len(ys) == 0:
            return np.zeros((0, self.raw.shape[0]), np.float32)
        y = torch.as_tensor(ys, dtype=torch.float32)
        x = torch.as_tensor(xs, dtype=torch.float32)
        h, w = self.raw.shape[1:]
        if not self.upsampled:
            v = self.raw[:, y.round().long().clamp(0, h - 1), x.round().long().clamp(0, w - 1)].T
        else:
            # bilinear x2 up-sampling, align_corners=False, edge clamped: exactly what nn.Upsample computes
            sy = ((y + 0.5) / 2 - 0.5).clamp(min=0)
            sx = ((x + 0.5) / 2 - 0.5).clamp(min=0)
            y0, x0 = sy.floor().long().clamp(max=h - 1), sx.floor().long().clamp(max=w - 1)
            y1, x1 = (y0 + 1).clamp(max=h - 1), (x0 + 1).clamp(max=w - 1)
            wy, wx = (sy - y0).unsqueeze(0), (sx - x0).unsqueeze(0)
            r = self.raw
            v = ((r[:, y0, x0] * (1 - wx) + r[:, y0, x1] * wx) * (1 - wy)
                 + (r[:, y1, x0] * (1 - wx) + r[:, y1, x1] * wx) * wy).T
        return F.normalize(v.float(), p=2, dim=1, eps=1e-12).numpy().astype(np.float32)


def _head_weights(net: torch.nn.Module, c: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The reliability (2) and repeatability (1) 1x1 convolutions as one 3 x C matrix and a bias of 3."""
    wts = torch.cat([net.clf.weight.reshape(-1, c), net.sal.weight.reshape(-1, c)]).to(dtype)
    return wts, torch.cat([net.clf.bias, net.sal.bias]).to(dtype)


def _heads(net: torch.nn.Module, full: torch.Tensor, inplace: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Reliability softmax(clf(x²))[1] and repeatability r/(1+r), r = softplus(sal(x²)), of a B x 128 x H x W map.

    Both 1x1 convolutions run as one matrix product over the channels: torch's conv2d with 1-2 output channels
    is several times slower (the heads cost more than the whole trunk did). ``inplace``: ``full`` is a temporary
    the caller no longer needs; it is squared in place, saving one 128-channel buffer.
    """
    n, c, h, w = full.shape
    x = full.reshape(n, c, h * w)
    copied = x.data_ptr() != full.data_ptr()  # a non-contiguous view was copied: the copy is ours
    sq = x.square_() if inplace or copied else x.square()
    wts, bias = _head_weights(net, c, sq.dtype)
    o = torch.matmul(wts, sq).add_(bias.view(1, -1, 1)).view(n, -1, h, w)
    rel = torch.softmax(o[:, :2], dim=1)[:, 1]
    s = F.softplus(o[:, 2:3])
    return rel, (s / (1 + s))[:, 0]


@torch.inference_mode()
def run_network(model: Model, unit: np.ndarray, device: torch.device | str = "cpu", precision: str = "fp32",
                strip: int = 32, backend: str = "torch") -> DenseOutput:
    """H x W [0, 1] image -> ``DenseOutput`` (maps on the CPU, float32).

    Odd sizes are padded by edge replication to even so the Fast network's output covers every pixel. The heads
    run on the half-resolution map in strips of ``strip`` rows (``_heads_upsampled``): the 128-channel
    full-resolution map is never built.
    backend: "torch", "openvino" or "onnxruntime" (resolved, see ``sarreg.model.backend``) for the convolution trunk.
    """
    return run_network_batch(model, np.asarray(unit)[None], device, precision, strip, backend)[0]


@torch.inference_mode()
def run_network_batch(model: Model, units: np.ndarray, device: torch.device | str = "cpu", precision: str = "fp32",
                      strip: int = 32, backend: str = "torch") -> list[DenseOutput]:
    """B x H x W [0, 1] images of one size -> one ``DenseOutput`` each, the trunk run once on the whole batch.

    Why: on a GPU one call on several tiles keeps the device busy where single tiles leave it idle; the CPU
    backends (OpenVINO / ONNX Runtime models have batch 1) run the images one after the other.
    """
    units = np.asarray(units, dtype=np.float32)
    if backend in ("openvino", "onnxruntime") and len(units) > 1:
        return [run_network_batch(model, u[None], device, precision, strip, backend)[0] for u in units]
    _, h, w = units.shape
    raw, up, net = _trunk(model, units, device, precision, backend)
    if not up:
        rel, rep = _heads(net, raw)
        return [DenseOutput(raw[i, :, :h, :w].cpu(), rel[i, :h, :w].cpu(), rep[i, :h, :w].cpu(), False)
                for i in range(len(units))]
    outs = []
    for i in range(len(units)):
        rel, rep = _heads_upsampled(net, raw[i], strip)
        outs.append(DenseOutput(raw[i].cpu(), rel[:h, :w].cpu(), rep[:h, :w].cpu(), True))
    return outs


@torch.inference_mode()
def descriptor_map(model: Model, unit: np.ndarray, device: torch.device | str = "cpu", precision: str = "fp32",
                   backend: str = "torch") -> tuple[torch.Tensor, int]:
    """H x W [0, 1] image -> (the raw descriptor map C x h x w on the CPU, float32; its step in image px: 2 for
    the Fast network's half-resolution map, else 1). The trunk only: no reliability / repeatability heads."""
    unit = np.asarray(unit, dtype=np.float32)
    raw, up, _ = _trunk(model, unit[None], device, precision, backend)
    return (raw[0].cpu(), 2) if up else (raw[0, :, :unit.shape[0], :unit.shape[1]].cpu(), 1)


def _trunk(model: Model, units: np.ndarray, device: torch.device | str, precision: str, backend: str
           ) -> tuple[torch.Tensor, bool, torch.nn.Module]:
    """The convolution trunk on B x H x W images -> (raw maps B x C x h x w, float32; whether the network
    up-samples them (the Fast network: h, w = half of the even-padded H, W), the inference network)."""
    device = torch.device(device)
    _, h, w = units.shape
    ph, pw = h % 2, w % 2
    x = torch.from_numpy(np.ascontiguousarray(units))[:, None]
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    x = model.normalise(x.to(device))
    net = _inference_net(model, device)
    ops = list(net.ops)
    up = isinstance(ops[-1], torch.nn.Upsample)
    if backend == "openvino":
        from sarreg.model.backend import openvino_trunk

        x = openvino_trunk(model, net, precision)(x)
    elif backend == "onnxruntime":
        from sarreg.model.backend import onnxruntime_trunk

        x = onnxruntime_trunk(model, net)(x)
    else:
        x = x.contiguous(memory_format=torch.channels_last)
        bf16 = usable_precision(precision, device) == "bf16"
        ctx = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else _null()
        with ctx:
            for op in ops[:-1] if up else ops:
                x = op(x)
    return x.float().contiguous(), up, net


def _heads_upsampled(net: torch.nn.Module, raw: torch.Tensor, strip: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Reliability and repeatability at full resolution (2h x 2w) from the half-resolution C x h x w map, equal
    to ``_heads`` of its bilinear x2 up-sampling (align_corners=False, edges clamped) without building it.

    Why: up-sampling 128 channels to 4x the pixels and squaring them cost more than the whole trunk. The heads
    are linear in the squared map, and an up-sampled pixel is a weighted sum of a 2 x 2 block of raw pixels
    r_a..r_d, so  W (sum_k w_k r_k)^2 = sum_k w_k^2 W(r_k r_k) + 2 sum_{k<l} w_k w_l W(r_k r_l): the head
    projections of the products of neighbouring raw pixels (self, right, down, both diagonals) are computed
    once at half resolution (3 channels each) and combined per output pixel with the bilinear weights
    (0.75 / 0.25). Exact up to float rounding. Row strips of ``strip`` raw rows bound the memory.
    """
    c, hh, ww = raw.shape
    wts, bias = _head_weights(net, c, raw.dtype)
    bias = bias.view(-1, 1, 1)
    pad = F.pad(raw[None], (1, 1, 1, 1), mode="replicate")[0]  # clamped edges = replicated border
    o = torch.empty(3, 2 * hh, 2 * ww, dtype=raw.dtype)
    near, far = 0.75, 0.25

    def proj(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        n, hs, ws = a.shape
        return torch.matmul(wts, (a * b).reshape(n, hs * ws)).view(-1, hs, ws)

    for m0 in range(0, hh, max(1, strip)):
        m1 = min(hh, m0 + max(1, strip))
        p = pad[:, m0:m1 + 2]  # padded rows m0 .. m1+1 (output rows 2 m0 .. 2 m1 - 1)
        S = proj(p, p)
        Hz = proj(p[:, :, :-1], p[:, :, 1:])
        V = proj(p[:, :-1], p[:, 1:])
        D = proj(p[:, :-1, :-1], p[:, 1:, 1:])
        A = proj(p[:, :-1, 1:], p[:, 1:, :-1])
        n = m1 - m0
        for py in (0, 1):  # output row 2m + py: top padded row m + py, weight of the top row
            wt = far if py == 0 else near
            wb = 1.0 - wt
            ts = slice(py, py + n)
            tb = slice(py + 1, py + n + 1)
            for px in (0, 1):
                wl = far if px == 0 else near
                wr = 1.0 - wl
                ls, rs = slice(px, px + ww), slice(px + 1, px + ww + 1)
                wa, wb_, wc, wd = wt * wl, wt * wr, wb * wl, wb * wr
                v = (wa * wa) * S[:, ts, ls] + (wb_ * wb_) * S[:, ts, rs] + (wc * wc) * S[:, tb, ls] \
                    + (wd * wd) * S[:, tb, rs] + (2 * wa * wb_) * Hz[:, ts, ls] + (2 * wc * wd) * Hz[:, tb, ls] \
                    + (2 * wa * wc) * V[:, ts, ls] + (2 * wb_ * wd) * V[:, ts, rs] \
                    + (2 * wa * wd) * D[:, ts, ls] + (2 * wb_ * wc) * A[:, ts, ls]
                o[:, 2 * m0 + py:2 * m1:2, px::2] = v + bias
    rel = torch.softmax(o[:2], dim=0)[1]
    sp = F.softplus(o[2])
    return rel, sp / (1 + sp)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None
