"""Inference backends for the network's convolution trunk: PyTorch, OpenVINO or ONNX Runtime on the CPU.

The trunk (every layer up to the descriptor map; for the Fast network everything before its final x2
up-sampling) is the whole cost of a forward pass; the heads run on the result in torch either way
(``sarreg.network.run_network``). OpenVINO runs this trunk about 2-5x faster than torch on CPUs
(see ``benchmarks/RESULTS.md``). Training always stays on torch.

The OpenVINO model is converted from our torch module (batch norm folded) with ``openvino.convert_model``, with a
dynamic spatial input shape (tiles and pyramid levels have many sizes), and cached as IR (``.xml`` + ``.bin``,
fp32 weights) in the user cache folder, keyed by the sha256 of the weights file: later runs only read and compile.
ONNX Runtime gets the same trunk exported with ``torch.onnx.export`` (dynamic height and width), cached the same way
as ``.onnx``; it is the portable choice where OpenVINO is not available (e.g. ARM CPUs).
"""
from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sarreg.config import BACKENDS
from sarreg.errors import InputError

if TYPE_CHECKING:
    from sarreg.model.weights import Model

log = logging.getLogger(__name__)

IR_VERSION = 1  # bump when the exported graph changes (part of the cache file name)


def openvino_available() -> bool:
    """True when the ``openvino`` package is importable (checked without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def onnxruntime_available() -> bool:
    """True when ``onnxruntime`` (and ``onnx``, which torch's exporter needs) are importable (not imported)."""
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def resolve_backend(name: str, device: torch.device) -> str:
    """'auto' -> 'openvino' on the CPU when installed, else 'torch'; explicit choices are checked."""
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    if name == "auto":
        return "openvino" if device.type == "cpu" and openvino_available() else "torch"
    if name in ("openvino", "onnxruntime"):
        if device.type != "cpu":
            raise InputError(f"--backend {name} runs on the CPU; use --device cpu (got {device})")
        if name == "openvino" and not openvino_available():
            raise InputError("--backend openvino: the openvino package is not installed (pip install openvino)")
        if name == "onnxruntime" and not onnxruntime_available():
            raise InputError("--backend onnxruntime: onnxruntime / onnx are not installed "
                             "(pip install onnxruntime onnx)")
    return name


def cache_dir() -> Path:
    """The user cache folder of sarreg (``$XDG_CACHE_HOME/sarreg``, else ``~/.cache/sarreg``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sarreg"


def no_telemetry() -> None:
    """Keep OpenVINO's model conversion from sending usage data: ``openvino.convert_model`` reports to Google
    Analytics through ``openvino_telemetry`` from a forked child (which also inherits sarreg's signal handlers);
    with that module unimportable OpenVINO uses its own no-op stub. Left alone when the caller imported it."""
    import sys

    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]


class OpenVINOTrunk:
    """A compiled OpenVINO model of a network trunk: ``__call__(x)`` N x C x H x W float32 -> feature map."""

    def __init__(self, trunk: torch.nn.Module, in_channels: int, sha256: str, tag: str, precision: str = "fp32",
                 threads: int | None = None):
        no_telemetry()
        import openvino as ov

        core = ov.Core()
        ir = self._ir_path(sha256, tag)
        model = None
        if ir is not None and ir.is_file() and ir.with_suffix(".bin").is_file():
            try:
                model = core.read_model(str(ir))
            except Exception as e:  # a damaged cache entry: convert again
                log.warning("openvino: cannot read cached %s (%s); converting again", ir, e)
        if model is None:
            model = self._convert(ov, trunk, in_channels)
            if ir is not None:
                self._save(ov, model, ir)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                                  "PERFORMANCE_HINT": "LATENCY",
                                  "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads())}
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()

    @staticmethod
    def _ir_path(sha256: str, tag: str) -> Path | None:
        if not sha256:  # random / in-memory weights: nothing stable to key a cache entry on
            return None
        return cache_dir() / "openvino" / f"{sha256[:32]}-{tag}-v{IR_VERSION}.xml"

    @staticmethod
    def _convert(ov, trunk: torch.nn.Module, in_channels: int):
        import warnings

        example = torch.zeros(1, in_channels, 64, 64)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript tracing deprecation / tracer notes: not for our users
            return ov.convert_model(trunk.eval(), example_input=example,
                                    input=[ov.PartialShape([1, in_channels, -1, -1])])

    @staticmethod
    def _save(ov, model, ir: Path) -> None:
        """Write the IR atomically (temp names, then rename .bin before .xml); a failure only logs."""
        try:
            ir.parent.mkdir(parents=True, exist_ok=True)
            tmp = ir.with_name(f".{ir.stem}.{os.getpid()}.xml")
            ov.save_model(model, str(tmp), compress_to_fp16=False)
            tmp.with_suffix(".bin").replace(ir.with_suffix(".bin"))
            tmp.replace(ir)
        except OSError as e:
            log.warning("openvino: cannot cache the converted model in %s (%s)", ir.parent, e)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).contiguous().numpy())
        out = self.request.infer({0: arr})  # share_outputs=False: the result is already a copy the request won't reuse
        res = next(iter(out.values()))
        ok = res.dtype == np.float32 and res.flags.writeable and res.flags.c_contiguous
        return torch.from_numpy(res if ok else np.array(res, dtype=np.float32, copy=True))


class OnnxRuntimeTrunk:
    """An ONNX Runtime session of a network trunk: ``__call__(x)`` N x C x H x W float32 -> feature map."""

    def __init__(self, trunk: torch.nn.Module, in_channels: int, sha256: str, tag: str, threads: int | None = None):
        import onnxruntime as ort

        path = cache_dir() / "onnx" / f"{sha256[:32]}-{tag}-v{IR_VERSION}.onnx" if sha256 else None
        data = path.read_bytes() if path is not None and path.is_file() else None
        if data is None:
            data = self._export(trunk, in_channels)
            if path is not None:
                from sarreg.outputs import write_atomic

                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write_atomic(path, data)
                except OSError as e:
                    log.warning("onnxruntime: cannot cache the exported model in %s (%s)", path.parent, e)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    @staticmethod
    def _export(trunk: torch.nn.Module, in_channels: int) -> bytes:
        import io
        import warnings

        buf = io.BytesIO()
        example = torch.zeros(1, in_channels, 64, 64)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(trunk.eval(), (example,), buf, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "h2", 3: "w2"}}, opset_version=17,
                              dynamo=False)
        return buf.getvalue()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).contiguous().numpy())
        return torch.from_numpy(self.session.run(None, {self.input: arr})[0])


def _trunk_of(net: torch.nn.Module) -> torch.nn.Module:
    ops = list(net.ops)
    if isinstance(ops[-1], torch.nn.Upsample):
        ops = ops[:-1]
    return torch.nn.Sequential(*ops).to("cpu").to(memory_format=torch.contiguous_format)


def openvino_trunk(model: Model, net: torch.nn.Module, precision: str = "fp32") -> OpenVINOTrunk:
    """The OpenVINO trunk of ``net`` (the BN-folded inference copy of ``model.net``), built once per model."""
    key = (id(model.net), precision)
    cached = getattr(model, "_sarreg_openvino", None)
    if cached is None or cached[0] != key:
        tag = f"{model.arch}-m{model.mchan}-c{model.in_channels}"
        model._sarreg_openvino = (key, OpenVINOTrunk(_trunk_of(net), model.in_channels, model.sha256, tag,
                                                     precision))
        cached = model._sarreg_openvino
    return cached[1]


def onnxruntime_trunk(model: Model, net: torch.nn.Module) -> OnnxRuntimeTrunk:
    """The ONNX Runtime trunk of ``net`` (the BN-folded inference copy of ``model.net``), built once per model."""
    key = id(model.net)
    cached = getattr(model, "_sarreg_onnxruntime", None)
    if cached is None or cached[0] != key:
        tag = f"{model.arch}-m{model.mchan}-c{model.in_channels}"
        model._sarreg_onnxruntime = (key, OnnxRuntimeTrunk(_trunk_of(net), model.in_channels, model.sha256, tag))
        cached = model._sarreg_onnxruntime
    return cached[1]
