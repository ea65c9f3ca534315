"""Networks and checkpoints: shapes/ranges (always), equivalence with the reference goldens (needs ../shared)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from sarreg.errors import WeightsError
from sarreg.extract import run_network
from sarreg.model.reference import extract_multiscale_reference
from sarreg.model.r2d2 import build_network, fold_batchnorm
from sarreg.model.weights import load_model, random_model, save_checkpoint

NAVER = ["r2d2_WAF_N16", "r2d2_WASF_N16", "r2d2_WASF_N8_big", "faster2d2_WASF_N16"]
MEAN, STD = np.float32([0.485, 0.456, 0.406]), np.float32([0.229, 0.224, 0.225])


@pytest.mark.parametrize("arch,mchan,cin", [("Quad_L2Net_ConfCFS", 4, 3), ("Quad_L2Net_ConfCFS", 6, 1),
                                            ("Fast_Quad_L2Net_ConfCFS", 4, 1), ("Fast_Quad_L2Net_ConfCFS", 2, 1)])
def test_random_net_outputs(arch: str, mchan: int, cin: int) -> None:
    torch.manual_seed(0)
    net = build_network(arch, in_channels=cin, mchan=mchan).eval()
    with torch.no_grad():
        out = net(torch.randn(2, cin, 40, 48))
    assert out["descriptors"].shape == (2, 128, 40, 48)
    assert out["reliability"].shape == (2, 1, 40, 48) and out["repeatability"].shape == (2, 1, 40, 48)
    norms = out["descriptors"].norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)
    for k in ("reliability", "repeatability"):
        assert out[k].min() >= 0 and out[k].max() <= 1


def test_fast_net_odd_size_is_one_smaller_and_run_network_pads() -> None:
    m = random_model("Fast_Quad_L2Net_ConfCFS", 1)
    with torch.no_grad():
        out = m.net(torch.randn(1, 1, 33, 41))
    assert out["descriptors"].shape[2:] == (32, 40)
    img = np.random.default_rng(0).random((33, 41), dtype=np.float32)
    out = run_network(m, img, strip=4)  # strips of 8 rows exercise the strip seams
    assert out.reliability.shape == out.repeatability.shape == (33, 41)
    x = m.normalise(torch.nn.functional.pad(torch.from_numpy(img)[None, None], (0, 1, 0, 1), mode="replicate"))
    with torch.no_grad():
        full = m.net(x)
    assert torch.allclose(out.repeatability, full["repeatability"][0, 0, :33, :41], atol=1e-5)
    assert torch.allclose(out.reliability, full["reliability"][0, 0, :33, :41], atol=1e-5)
    ys, xs = np.array([0, 5, 32, 17]), np.array([0, 40, 3, 21])
    d = out.descriptors_at(ys, xs)
    assert np.abs(d - full["descriptors"][0][:, ys, xs].T.numpy()).max() < 1e-4


def test_wrong_input_channels_is_a_clear_error() -> None:
    net = build_network("Fast_Quad_L2Net_ConfCFS", in_channels=1)
    with pytest.raises(ValueError, match="expected input"):
        net(torch.randn(1, 3, 16, 16))


def test_fold_batchnorm_keeps_outputs() -> None:
    torch.manual_seed(1)
    net = build_network("Quad_L2Net_ConfCFS", in_channels=1).eval()
    for m in net.modules():  # non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        a, b = net(x), fold_batchnorm(net)(x)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-4), k


def test_own_checkpoint_roundtrip(tmp_path: Path) -> None:
    m = random_model("Fast_Quad_L2Net_ConfCFS", 1, mchan=2, seed=3)
    p = save_checkpoint(tmp_path / "m.pt", m.net, m.arch, 2, 1, training={"iterations": 0})
    m2 = load_model(p)
    assert (m2.arch, m2.mchan, m2.in_channels) == ("Fast_Quad_L2Net_ConfCFS", 2, 1)
    assert len(m2.sha256) == 64 and m2.training == {"iterations": 0}
    x = torch.randn(1, 1, 24, 24)
    with torch.no_grad():
        assert torch.equal(m.net(x)["repeatability"], m2.net(x)["repeatability"])


def test_r2d2_format_with_module_prefix_loads_without_eval(tmp_path: Path) -> None:
    net = build_network("Quad_L2Net_ConfCFS", in_channels=3)
    sd = {"module." + k: v for k, v in net.state_dict().items()}
    torch.save({"net": "Quad_L2Net_ConfCFS()", "state_dict": sd}, tmp_path / "r.pt")
    m = load_model(tmp_path / "r.pt")
    assert m.in_channels == 3 and m.arch == "Quad_L2Net_ConfCFS"


@pytest.mark.parametrize("content,msg", [
    (b"", "not a readable"), (b"garbage" * 100, "not a readable"),
])
def test_corrupt_checkpoint(tmp_path: Path, content: bytes, msg: str) -> None:
    p = tmp_path / "bad.pt"
    p.write_bytes(content)
    with pytest.raises(WeightsError, match=msg):
        load_model(p)


def test_unknown_net_string_and_code_injection_refused(tmp_path: Path) -> None:
    torch.save({"net": "__import__('os').system('echo pwned')", "state_dict": {}}, tmp_path / "evil.pt")
    with pytest.raises(WeightsError, match="unknown network"):
        load_model(tmp_path / "evil.pt")


def test_pickled_object_is_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil2.pt"
    with open(p, "wb") as f:
        pickle.dump({"net": "Quad_L2Net_ConfCFS()", "state_dict": Evil()}, f)
    with pytest.raises(WeightsError):
        load_model(p)


def test_r2d2_checkpoint_with_defaultdict_logs_loads(tmp_path: Path) -> None:
    """R2D2's faster2d2 file carries loss logs as defaultdict(list): loaded (as plain dicts) with weights_only."""
    from collections import defaultdict

    net = build_network("Fast_Quad_L2Net_ConfCFS", in_channels=3)
    logs = defaultdict(list, {"loss": [1.0, 0.5]})
    torch.save({"net": "Fast_Quad_L2Net_ConfCFS()", "state_dict": net.state_dict(), "training_losses": [logs]},
               tmp_path / "faster.pt")
    m = load_model(tmp_path / "faster.pt")
    assert m.arch == "Fast_Quad_L2Net_ConfCFS" and m.in_channels == 3
    for k, v in net.state_dict().items():
        assert torch.equal(m.net.state_dict()[k], v)


def test_defaultdict_with_a_foreign_factory_is_refused(tmp_path: Path) -> None:
    """Only ``list`` is allowed as a defaultdict factory: any other global (here os.getcwd) is refused."""
    import os
    from collections import defaultdict

    net = build_network("Fast_Quad_L2Net_ConfCFS", in_channels=3)
    torch.save({"net": "Fast_Quad_L2Net_ConfCFS()", "state_dict": net.state_dict(),
                "log": defaultdict(os.getcwd)}, tmp_path / "evil3.pt")
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        load_model(tmp_path / "evil3.pt")


def test_state_dict_mismatch(tmp_path: Path) -> None:
    """The one line names the keys that do not fit (torch's first line names only the network)."""
    net = build_network("Quad_L2Net_ConfCFS", in_channels=3)
    torch.save({"net": "Fast_Quad_L2Net_ConfCFS()", "state_dict": net.state_dict()}, tmp_path / "m.pt")
    with pytest.raises(WeightsError, match=r"does not fit the architecture \(.*(Missing|Unexpected|size mismatch)"):
        load_model(tmp_path / "m.pt")


def test_our_format_without_its_arch_is_one_error(tmp_path: Path) -> None:
    from sarreg.model.weights import FORMAT

    torch.save({"format": FORMAT, "state_dict": {}}, tmp_path / "noarch.pt")
    with pytest.raises(WeightsError, match="noarch.pt: sarreg checkpoint without its 'arch'"):
        load_model(tmp_path / "noarch.pt")


def test_missing_weights_file_message(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="nope.pt: weights file not found"):
        load_model(tmp_path / "nope.pt")


def test_missing_default_weights_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the installed package data nor the checkout has the default model: one clear WeightsError."""
    from sarreg.model import files

    monkeypatch.setattr(files, "MODELS_DIR", tmp_path / "no-models")
    monkeypatch.setattr(files, "MODELS_PACKAGE", "sarreg._no_such_models")
    assert files.default_weights_path() is None
    with pytest.raises(WeightsError, match="no model weights: sarreg_fast_sar_v5.pt is neither installed"):
        load_model(None)


def test_shipped_default_model_loads_and_runs() -> None:
    """``load_model(None)`` is the shipped file (models/README.md: Fast_Quad_L2Net_ConfCFS, mchan 3, one input
    channel, reliability exported as the constant 0.75), found through the package-data lookup or the checkout."""
    import hashlib

    from sarreg.model.weights import DEFAULT_MODEL_NAME, default_weights_path

    path = default_weights_path()
    assert path is not None and path.name == DEFAULT_MODEL_NAME
    m = load_model(None)
    assert (m.name, m.arch, m.mchan, m.in_channels) == (DEFAULT_MODEL_NAME, "Fast_Quad_L2Net_ConfCFS", 3, 1)
    assert m.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with torch.no_grad():
        out = m.net(m.normalise(torch.rand(1, 1, 48, 64, generator=torch.Generator().manual_seed(0))))
    assert out["descriptors"].shape == (1, 128, 48, 64)
    assert torch.allclose(out["descriptors"].norm(dim=1), torch.ones(1, 48, 64), atol=1e-4)
    assert torch.allclose(out["reliability"], torch.full_like(out["reliability"], 0.75), atol=1e-5)
    rep = out["repeatability"]
    assert float(rep.min()) >= 0 and float(rep.max()) <= 1 and float(rep.std()) > 0.01  # not constant


def _load_png(path: Path) -> torch.Tensor:
    from PIL import Image

    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / np.float32(255)
    return torch.from_numpy(((a - MEAN) / STD).transpose(2, 0, 1)[None].copy())


@pytest.mark.parametrize("name", NAVER)
def test_equivalence_with_reference_goldens(shared_dir: Path, name: str) -> None:
    """Our networks + loader reproduce the published R2D2 outputs within GOLDEN.md's tolerances."""
    spec, ckpt = shared_dir / "reference" / "r2d2-spec", shared_dir / "reference" / "r2d2-naver" / f"{name}.pt"
    if not ckpt.is_file():
        pytest.skip(f"{ckpt} absent")
    g = np.load(spec / f"golden_{name}.npz")
    m = load_model(ckpt)
    with torch.no_grad():
        o = m.net(_load_png(spec / "test_64x80.png"))
        big = m.net(_load_png(spec / "test_160x192.png"))
    assert o["descriptors"][0].shape == (128, 64, 80)
    assert np.abs(o["reliability"][0].numpy() - g["small_reliability"]).max() <= 1e-4
    assert np.abs(o["repeatability"][0].numpy() - g["small_repeatability"]).max() <= 1e-4
    assert np.abs(o["descriptors"][0].numpy() - g["small_descriptors"].astype(np.float32)).max() <= 1e-3
    assert np.abs(big["reliability"][0].numpy() - g["big_reliability"].astype(np.float32)).max() <= 1e-3
    assert np.abs(big["repeatability"][0].numpy() - g["big_repeatability"].astype(np.float32)).max() <= 1e-3
    kp, sc, de, levels = extract_multiscale_reference(m.net, _load_png(spec / "test_160x192.png"), min_size=64,
                                                      top_k=500)
    lv = np.array(levels)
    assert np.array_equal(lv[:, 1:5], g["ms_levels"][:, 1:5])
    assert np.all(np.abs(lv[:, 5] - g["ms_levels"][:, 5]) <= 2)
    ref = {tuple(np.round(k, 3)): i for i, k in enumerate(g["ms_keypoints"])}
    hits = [(ref[tuple(np.round(k, 3))], j) for j, k in enumerate(kp) if tuple(np.round(k, 3)) in ref]
    assert len(hits) >= 0.99 * len(g["ms_keypoints"])
    i, j = map(np.array, zip(*hits))
    assert np.abs(g["ms_scores"][i] - sc[j]).max() <= 1e-4
    assert np.abs(g["ms_descriptors32"][i].astype(np.float32) - de[j, :32]).max() <= 1e-3


def test_extract_defaults_to_the_extraction_model_and_register_to_its_own(tmp_path: Path) -> None:
    """Two shipped files (models/README.md, "Two shipped models"): ``sarreg extract``, ``extract_file`` and the
    single-stage evaluation default to ``EXTRACT_MODEL_NAME``; ``load_model(None)`` and ``register`` to
    ``DEFAULT_MODEL_NAME``. The CLI's .r2d2 descriptors are the extraction model's, not register's."""
    from click.testing import CliRunner

    from sarreg.cli import cli
    from sarreg.config import ExtractConfig
    from sarreg.evaluate import EvalOptions, Method, make_runner
    from sarreg.extract import extract_file
    from sarreg.model.weights import DEFAULT_MODEL_NAME, EXTRACT_MODEL_NAME, default_weights_path
    from sarreg.synth import reflectivity, speckle, write_geotiff

    px, pr = default_weights_path(EXTRACT_MODEL_NAME), default_weights_path()
    assert px is not None and px.name == EXTRACT_MODEL_NAME and pr is not None and pr.name == DEFAULT_MODEL_NAME
    mx, mr = load_model(None, default=EXTRACT_MODEL_NAME), load_model(None)
    assert mx.sha256 != mr.sha256 and (mx.arch, mx.mchan, mx.in_channels) == (mr.arch, mr.mchan, mr.in_channels)
    method = Method.parse("model")
    assert method.label == Path(EXTRACT_MODEL_NAME).stem and make_runner(method, EvalOptions()).sha256 == mx.sha256

    img = speckle(reflectivity(192, 192, seed=3), 4, np.random.default_rng(3)).astype(np.float32)
    tif = write_geotiff(tmp_path / "s.tif", img)
    cfg = ExtractConfig(top_k=300, device="cpu", backend="torch")
    f_default, f_x, f_r = (extract_file(tif, m, cfg) for m in (None, mx, mr))
    assert np.array_equal(f_default.descriptors, f_x.descriptors)
    assert not (len(f_x) == len(f_r) and np.allclose(f_x.descriptors, f_r.descriptors))
    res = CliRunner().invoke(cli, ["extract", "--no-progress", "--backend", "torch", "--top-k", "300", "-o",
                                   str(tmp_path), str(tif)])
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "s.tif.r2d2") as z:  # the file names the weights that made its descriptors
        assert np.allclose(z["descriptors"], f_x.descriptors, atol=1e-5)
        assert (str(z["model_name"]), str(z["model_sha256"])) == (EXTRACT_MODEL_NAME, mx.sha256)
