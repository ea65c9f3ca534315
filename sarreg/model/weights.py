"""Checkpoints: our own format and the original R2D2 format, both loaded without executing code.

Our format (``save_checkpoint``) is a plain dict loaded with ``torch.load(weights_only=True)``::

    {"format": "sarreg-checkpoint", "version": 1, "arch": "Fast_Quad_L2Net_ConfCFS", "mchan": 4,
     "in_channels": 1, "preprocess": {"mean": [0.5], "std": [0.25]}, "training": {...}, "state_dict": {...}}

optionally with ``"whitening": {"mean": D, "matrix": D x D}``: a linear projection of the L2-normalised
descriptors, (d - mean) @ matrix.T, L2-normalised again (``sarreg.train.whiten``).

R2D2 checkpoints (``{"net": "Quad_L2Net_ConfCFS()", "state_dict": ...}``, loaded with ``weights_only`` plus
``collections.defaultdict`` read as a plain dict, torch >= 2.6) are recognised by parsing the ``net``
string against a whitelist of constructors (never ``eval``-ed); a ``module.`` key prefix is stripped; CUDA
tensors are mapped to the CPU. They take 3-channel input with ImageNet normalisation.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sarreg.errors import OutputError, WeightsError
from sarreg.model.files import (  # noqa: F401  (re-exported: the lookup lives in the torch-free module)
    DEFAULT_MODEL_NAME, EXTRACT_MODEL_NAME, MODELS_DIR, MODELS_PACKAGE, default_weights_path, packaged_weights,
    weights_path)
from sarreg.model.r2d2 import build_network
from sarreg.outputs import sha256_file, write_atomic

log = logging.getLogger(__name__)

FORMAT = "sarreg-checkpoint"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
SAR_MEAN = [0.5]
SAR_STD = [0.25]

# Whitelist of constructor strings found in R2D2 checkpoints -> (arch, mchan).
_NET_RE = re.compile(r"^\s*(Quad_L2Net_ConfCFS|Fast_Quad_L2Net_ConfCFS)\s*\(\s*(?:mchan\s*=\s*(\d+)\s*)?\)\s*$")


@dataclass
class Model:
    """A ready-to-run network plus the input normalisation it was trained with."""

    net: nn.Module
    arch: str
    mchan: int
    in_channels: int
    mean: list[float]
    std: list[float]
    name: str = "random"
    sha256: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    rel_thr: float = 0.7  # detection thresholds the model was calibrated for (R2D2's defaults otherwise)
    rep_thr: float = 0.7
    whitening: tuple[np.ndarray, np.ndarray] | None = None  # (mean D, matrix D x D), see ``describe``

    @property
    def receptive_field(self) -> int:
        return int(getattr(self.net, "receptive_field", 54))

    def to(self, device: str | torch.device) -> "Model":
        self.net.to(device)
        return self

    def describe(self, desc: np.ndarray) -> np.ndarray:
        """The descriptors that are matched: the network's L2-normalised ones, projected by the stored whitening
        when the checkpoint has one ((d - mean) @ matrix.T, L2-normalised again), else unchanged.

        Why: a whitening learned from matching views (``sarreg.train.whiten``) damps the descriptor directions that
        speckle and temporal change move and centres away the direction that all descriptors share."""
        if self.whitening is None or len(desc) == 0:
            return desc
        # in torch, not numpy: numpy's BLAS threads keep spinning after the product and slow the network that
        # runs next on the same cores (measured: +25 % extraction time with numpy on 2 cores)
        mean, mat = (torch.from_numpy(a) for a in self.whitening)
        y = (torch.from_numpy(np.ascontiguousarray(desc, np.float32)) - mean) @ mat.T
        return torch.nn.functional.normalize(y, p=2, dim=1, eps=1e-12).numpy()

    def normalise(self, unit: torch.Tensor) -> torch.Tensor:
        """B x 1 x H x W image scaled to [0, 1] -> network input B x C x H x W (channels replicated)."""
        x = unit.expand(-1, self.in_channels, -1, -1) if self.in_channels != 1 else unit
        mean = torch.tensor(self.mean, dtype=unit.dtype, device=unit.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=unit.dtype, device=unit.device).view(1, -1, 1, 1)
        return (x - mean) / std


def _plain_dict(*args: Any) -> dict:
    """Stands in for ``collections.defaultdict`` while loading (the loss logs in R2D2's faster2d2 file): a plain
    dict receives the items, the default factory is dropped (torch's weights-only unpickler fills only dicts)."""
    return {}


# Globals R2D2 checkpoints need beyond torch's weights-only defaults: defaultdict (as a plain dict) and its ``list``
# factory. Nothing else is allowed: no arbitrary classes, no code.
_R2D2_SAFE_GLOBALS: list[Any] = [(_plain_dict, "collections.defaultdict"), list]


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with the few extra safe globals R2D2's files need."""
    with torch.serialization.safe_globals(_R2D2_SAFE_GLOBALS):
        return torch.load(path, map_location="cpu", weights_only=True)


def _load_state(net: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    state = {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:  # torch's first line names only the network; the next one names the keys
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        why = " ".join(lines[:2])
        raise WeightsError(f"{path}: state_dict does not fit the architecture "
                           f"({why[:200] + ' ...' if len(why) > 200 else why or e})") from None


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu",
               default: str = DEFAULT_MODEL_NAME) -> Model:
    """Load a checkpoint (ours or an original R2D2 one) in eval mode; ``None`` means the shipped model ``default``
    (``DEFAULT_MODEL_NAME``: register's; ``EXTRACT_MODEL_NAME``: extract's)."""
    path = weights_path(path, default)
    if path.is_dir():
        raise WeightsError(f"{path}: is a directory, not a weights file (pass the checkpoint file itself)")
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as e:
        raise WeightsError(f"{path}: cannot read weights file ({e.strerror or e})") from None
    if not head:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint (empty file, 0 bytes)")
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint (neither a zip archive nor a pickle)")
    try:
        ckpt = _torch_load(path)
    except Exception as e:  # torch raises many types for corrupt/foreign files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}"
                           f"{': ' + msg[:160] if msg else ''})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise WeightsError(f"{path}: unknown checkpoint layout (expected a dict with 'state_dict')")

    if ckpt.get("format") == FORMAT:
        if "arch" not in ckpt:
            raise WeightsError(f"{path}: sarreg checkpoint without its 'arch' (the network it was saved from)")
        arch, mchan, cin = str(ckpt["arch"]), int(ckpt.get("mchan", 4)), int(ckpt.get("in_channels", 1))
        pre = ckpt.get("preprocess", {})
        mean, std = list(pre.get("mean", SAR_MEAN)), list(pre.get("std", SAR_STD))
        training = dict(ckpt.get("training", {}))
        # our models: keep every 3x3 maximum and rank by score (top-k) unless calibrated thresholds are stored
        thr, default_thr = ckpt.get("extract", {}) or {}, 0.0
    elif isinstance(ckpt.get("net"), str):
        m = _NET_RE.match(ckpt["net"])
        if not m:
            raise WeightsError(f"{path}: unknown network {ckpt['net'][:80]!r} (not an R2D2 architecture we know)")
        arch, mchan, cin = m.group(1), int(m.group(2) or 4), 3
        mean, std, training = IMAGENET_MEAN, IMAGENET_STD, {"source": "R2D2 checkpoint", "net": ckpt["net"]}
        thr, default_thr = {}, 0.7
    else:
        raise WeightsError(f"{path}: unknown checkpoint layout (no 'net' string and not a sarreg checkpoint)")

    try:
        net = build_network(arch, in_channels=cin, mchan=mchan)
    except ValueError as e:
        raise WeightsError(f"{path}: {e}") from None
    if not isinstance(ckpt["state_dict"], dict):
        raise WeightsError(f"{path}: 'state_dict' is not a mapping")
    _load_state(net, ckpt["state_dict"], path)
    net.eval().to(device)
    return Model(net=net, arch=arch, mchan=mchan, in_channels=cin, mean=mean, std=std,
                 name=path.name, sha256=sha256_file(path), training=training,
                 rel_thr=float(thr.get("rel_thr", default_thr)), rep_thr=float(thr.get("rep_thr", default_thr)),
                 whitening=_whitening(ckpt.get("whitening"), path))


def _whitening(w: Any, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The checkpoint's descriptor whitening as float32 arrays (None when absent); a malformed one is an error."""
    if w is None:
        return None
    try:
        mean = np.asarray(w["mean"], np.float32).reshape(-1)
        mat = np.asarray(w["matrix"], np.float32)
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(f"{path}: malformed descriptor whitening ({e})") from None
    if mean.size != 128 or mat.shape != (mean.size, mean.size) or not (np.isfinite(mean).all()
                                                                       and np.isfinite(mat).all()):
        raise WeightsError(f"{path}: descriptor whitening must be a finite mean of D and a D x D matrix, D = 128 "
                           f"(the descriptor size), got {mean.shape} and {mat.shape}")
    return mean, mat


def random_model(arch: str = "Fast_Quad_L2Net_ConfCFS", in_channels: int = 1, mchan: int = 4, seed: int = 0) -> Model:
    """A randomly initialised model (tests, training start)."""
    torch.manual_seed(seed)
    net = build_network(arch, in_channels=in_channels, mchan=mchan).eval()
    mean, std = (SAR_MEAN, SAR_STD) if in_channels == 1 else (IMAGENET_MEAN, IMAGENET_STD)
    return Model(net=net, arch=arch, mchan=mchan, in_channels=in_channels, mean=list(mean), std=list(std))


def save_checkpoint(path: str | Path, net: nn.Module, arch: str, mchan: int, in_channels: int,
                    mean: list[float] | None = None, std: list[float] | None = None,
                    training: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                    rel_thr: float | None = None, rep_thr: float | None = None) -> Path:
    """Write our checkpoint format atomically (temporary file + rename); a missing folder is an ``OutputError``."""
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"{path}: output folder {path.parent} does not exist")
    ckpt: dict[str, Any] = {
        "format": FORMAT, "version": 1, "arch": arch.split("(")[0], "mchan": int(mchan),
        "in_channels": int(in_channels),
        "preprocess": {"mean": list(mean or SAR_MEAN), "std": list(std or SAR_STD),
                       "input": "unit-scaled log intensity, see sarreg.io.raster.image_to_unit"},
        "training": training or {},
        "extract": {k: float(v) for k, v in (("rel_thr", rel_thr), ("rep_thr", rep_thr)) if v is not None},
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    if extra:
        ckpt.update(extra)
    return write_atomic(path, lambda tmp: torch.save(ckpt, tmp))
