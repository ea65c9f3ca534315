"""Inference backends: OpenVINO and ONNX Runtime give torch's keypoints and descriptors on a realistic image;
backend choice; the converted model is cached by weights hash in the user cache folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sarreg.config import ExtractConfig
from sarreg.errors import InputError
from sarreg.extract import extract_array, run_network
from sarreg.io.raster import image_to_unit
from sarreg.model.backend import onnxruntime_available, openvino_available, resolve_backend
from sarreg.model.weights import default_weights_path, load_model
from sarreg.synth import reflectivity, speckle

needs_openvino = pytest.mark.skipif(not openvino_available(), reason="openvino not installed")
# each CPU backend, with the cache sub-folder and file suffix of its converted model
CPU_BACKENDS = [
    pytest.param("openvino", "openvino", ".xml", marks=needs_openvino),
    pytest.param("onnxruntime", "onnx", ".onnx",
                 marks=pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime not installed")),
]


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_resolve_backend() -> None:
    cpu = torch.device("cpu")
    assert resolve_backend("torch", cpu) == "torch"
    assert resolve_backend("auto", cpu) == ("openvino" if openvino_available() else "torch")
    assert resolve_backend("auto", torch.device("cuda")) == "torch"  # a CUDA device always runs torch
    with pytest.raises(InputError, match="unknown backend"):
        resolve_backend("onnx", cpu)
    with pytest.raises(InputError, match="CPU"):
        resolve_backend("openvino", torch.device("cuda"))
    with pytest.raises(InputError, match="runs on the CPU"):
        resolve_backend("onnxruntime", torch.device("cuda"))


@pytest.mark.parametrize("backend,folder,suffix", CPU_BACKENDS)
def test_backend_matches_torch_on_a_realistic_image(cache_home: Path, backend: str, folder: str,
                                                    suffix: str) -> None:
    """Shipped model, speckled synthetic landscape, multiscale R2D2 defaults: >= 95 % of torch's top-1000
    keypoints found within 0.5 px by the backend, and the descriptors of those pairs agree (cosine > 0.99)."""
    if default_weights_path() is None:
        pytest.skip("no shipped model")
    model = load_model(None, torch.device("cpu"))
    rng = np.random.default_rng(7)
    unit, valid = image_to_unit(speckle(reflectivity(640, 640, seed=11), 4.0, rng))
    cfg = ExtractConfig(top_k=1000, device="cpu")
    ft = extract_array(model, unit, valid, cfg.with_(backend="torch"))
    fo = extract_array(model, unit, valid, cfg.with_(backend=backend))
    assert len(ft) == 1000 and len(fo) >= 950
    # nearest OpenVINO keypoint (same scale level) of each torch keypoint
    d = np.linalg.norm(ft.keypoints[:, None, :2] - fo.keypoints[None, :, :2], axis=2)
    d[np.abs(ft.keypoints[:, None, 2] - fo.keypoints[None, :, 2]) > 1e-3] = np.inf
    j = d.argmin(axis=1)
    close = d[np.arange(len(ft)), j] <= 0.5
    assert close.mean() >= 0.95, close.mean()
    cos = np.sum(ft.descriptors[close] * fo.descriptors[j[close]], axis=1)
    assert cos.min() > 0.99, cos.min()
    # the converted model went to the user cache, keyed by the weights' sha256
    irs = list((cache_home / "sarreg" / folder).glob(f"*{suffix}"))
    assert len(irs) == 1 and irs[0].name.startswith(model.sha256[:32])
    assert backend != "openvino" or irs[0].with_suffix(".bin").is_file()


@pytest.mark.parametrize("backend,folder,suffix", CPU_BACKENDS)
def test_backend_cache_is_reused(cache_home: Path, backend: str, folder: str, suffix: str) -> None:
    """A second process-like load (new Model object) reads the cached model instead of converting again."""
    if default_weights_path() is None:
        pytest.skip("no shipped model")
    unit = np.random.default_rng(3).uniform(0, 1, (96, 130)).astype(np.float32)  # odd shapes: padding path
    a = run_network(load_model(None, torch.device("cpu")), unit, backend=backend)
    (ir,) = (cache_home / "sarreg" / folder).glob(f"*{suffix}")
    stamp = ir.stat().st_mtime_ns
    b = run_network(load_model(None, torch.device("cpu")), unit, backend=backend)
    assert ir.stat().st_mtime_ns == stamp
    t = run_network(load_model(None, torch.device("cpu")), unit, backend="torch")
    assert torch.equal(a.raw, b.raw) and a.reliability.shape == t.reliability.shape == (96, 130)
    assert (a.raw - t.raw).abs().max() < 1e-3
    assert (a.repeatability - t.repeatability).abs().max() < 1e-3


def test_cli_rejects_openvino_on_cuda_or_missing(tmp_path: Path, geotiff_factory) -> None:
    from click.testing import CliRunner

    from sarreg.cli import cli

    img = geotiff_factory(speckle(reflectivity(64, 64, seed=1), 4, np.random.default_rng(0)))
    r = CliRunner().invoke(cli, ["extract", str(img), "--backend", "nope", "--no-progress"])
    assert r.exit_code == 2 and "nope" in r.output
    if not openvino_available():
        r = CliRunner().invoke(cli, ["extract", str(img), "--backend", "openvino", "--device", "cpu", "--no-progress"])
        assert r.exit_code != 0 and "openvino" in r.output


@needs_openvino
def test_openvino_conversion_sends_no_telemetry(tmp_path: Path) -> None:
    """Converting a network with the OpenVINO backend starts no child process and sends nothing: OpenVINO's
    telemetry (Google Analytics, from a forked child) is replaced by its no-op stub. Network calls are refused."""
    import subprocess
    import sys

    code = """
import multiprocessing, socket, sys, urllib.request
def refuse(*a, **k):
    print("NETWORK", a[:1], file=sys.stderr); raise OSError("no network in this test")
urllib.request.urlopen = refuse
socket.create_connection = refuse
started = []
_start = multiprocessing.Process.start
multiprocessing.Process.start = lambda self: (started.append(self), _start(self))[1]
import torch
from sarreg.model.backend import OpenVINOTrunk
trunk = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU())
out = OpenVINOTrunk(trunk, 1, "0" * 64, "test")(torch.zeros(1, 1, 32, 32))
assert tuple(out.shape) == (1, 4, 32, 32), out.shape
print("children", len(started), "telemetry", sys.modules.get("openvino_telemetry") is not None)
"""
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "children 0 telemetry False" in res.stdout, res.stdout + res.stderr[-2000:]
    assert "NETWORK" not in res.stderr
