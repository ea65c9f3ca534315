"""Training pipeline: pair geometry, losses, and a tiny end-to-end run with resume."""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sarreg import synth
from sarreg.errors import InputError
from sarreg.geometry import random_homography
from sarreg.model.weights import load_model
from sarreg.train.losses import (LossWeights, NeighbourhoodSampler, R2D2Loss, ap_quantized, cosim_loss, peaky_loss,
                                 reliability_loss, sharpen_loss, warp_by_flow)
from sarreg.train.looks import (contrast_look, cross_pol_look, featureless_part, jpeg_look, sensor_look,
                               smooth_distortion)
from sarreg.train.images import find_date_pairs, load_channels, load_power
from sarreg.train.pairs import PairConfig, Source, flow_from_homography, make_pair, sample_pair

NOISE_FREE = PairConfig(crop=96, speckle=False, radiometric=0.0, blur=0.0, cutout=0.0)


def _backwarp(img2: np.ndarray, aflow: np.ndarray) -> np.ndarray:
    ok = np.isfinite(aflow[0])
    out = cv2.remap(img2, np.nan_to_num(aflow[0]), np.nan_to_num(aflow[1]), cv2.INTER_LINEAR)
    out[~ok] = np.nan
    return out


def test_pair_flow_is_consistent_with_images():
    refl = synth.reflectivity(200, 200, seed=5)
    p = make_pair(refl, refl, np.random.default_rng(3), NOISE_FREE)
    img1, img2, aflow = p["img1"], p["img2"], p["aflow"]
    assert img1.shape == img2.shape == (96, 96) and aflow.shape == (2, 96, 96)
    assert img1.dtype == np.float32 and 0 <= img1.min() and img1.max() <= 1
    ok = np.isfinite(aflow[0])
    assert ok.mean() > 0.25
    # away from the edge of valid data, img2 sampled at the flow reproduces img1
    inner = cv2.erode(ok.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    # (each crop has its own percentile scaling, so compare up to a linear radiometric map)
    def corr(flow: np.ndarray) -> float:
        back = _backwarp(img2, flow)
        m = inner & np.isfinite(back)
        return float(np.corrcoef(back[m], img1[m])[0, 1])

    best = corr(aflow)
    assert best > 0.9
    for d, axis in ((0.5, 0), (-0.5, 0), (0.5, 1), (-0.5, 1), (3.0, 0)):  # no sub-pixel bias either
        shifted = aflow.copy()
        shifted[axis] += d
        assert corr(shifted) < best - 0.01


def test_distorted_pair_flow_is_consistent_with_images():
    """With a smooth non-projective distortion of img2, the flow still points at the same scene content."""
    refl = synth.reflectivity(200, 200, seed=6)
    cfg = PairConfig(crop=96, speckle=False, radiometric=0.0, blur=0.0, cutout=0.0, distort=1.0, max_distort=3.0)
    p = make_pair(refl, refl, np.random.default_rng(4), cfg)
    img1, img2, aflow = p["img1"], p["img2"], p["aflow"]
    ok = np.isfinite(aflow[0])
    inner = cv2.erode(ok.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    yy, xx = np.mgrid[0:96, 0:96]
    from sarreg.train.pairs import apply_homography
    hx, hy = apply_homography(p["H"], xx, yy)
    # the flow departs from the homography (the distortion is real) ...
    assert np.nanmax(np.hypot(aflow[0] - hx, aflow[1] - hy)[ok]) > 0.3

    def corr(flow: np.ndarray) -> float:
        back = _backwarp(img2, flow)
        m = inner & np.isfinite(back)
        return float(np.corrcoef(back[m], img1[m])[0, 1])

    # ... and following it reproduces img1 better than the homography alone
    assert corr(aflow) > 0.9
    assert corr(aflow) > corr(np.stack([hx, hy]).astype(np.float32)) + 0.01


def test_smooth_distortion_amplitude():
    d = smooth_distortion(np.random.default_rng(1), 64, 2.0)
    assert d.shape == (2, 64, 64) and 0 < np.abs(d).max() <= 2.0 + 1e-6


def test_sensor_look_keeps_geometry_and_invalid_pixels():
    """Another sensor's look changes radiometry/resolution/quantisation, not where things are, nor the nodata."""
    rng = np.random.default_rng(0)
    refl = synth.speckle(synth.reflectivity(128, 128, seed=2), 4, rng)
    refl[:10] = np.nan
    looks = [sensor_look(refl, np.random.default_rng(s)) for s in range(12)]
    for q in looks:
        assert q.shape == refl.shape and q.dtype == np.float32
        assert np.isnan(q[:10]).all() and np.isfinite(q[10:]).all() and (q[10:] > 0).all()
        a, b = np.log(refl[10:]), np.log(q[10:])
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.3
    # the draws differ (the augmentation is not the identity)
    assert sum(not np.allclose(q[10:], refl[10:]) for q in looks) >= 8


def test_flow_from_known_homography():
    H = np.array([[1, 0, 5.0], [0, 1, -2.0], [0, 0, 1]])
    f = flow_from_homography(H, (20, 30), (20, 30))
    assert f[0, 10, 3] == pytest.approx(8.0) and f[1, 10, 3] == pytest.approx(8.0)
    assert np.isnan(f[:, 0, 0]).all() and np.isnan(f[:, 5, 28]).all()
    Hr, _ = random_homography(128, 128, np.random.default_rng(0), PairConfig(crop=128).warp_range())
    assert Hr.shape == (3, 3) and abs(np.linalg.det(Hr[:2, :2])) > 0.3


def test_sample_pair_sources_and_loading(tmp_path):
    arr = synth.speckle(synth.reflectivity(140, 150, seed=2), 2, np.random.default_rng(0))
    synth.write_geotiff(tmp_path / "a.tif", arr)
    np.save(tmp_path / "slc.npy", np.stack([np.sqrt(arr), np.zeros_like(arr)], -1))
    before, after = tmp_path / "BEFORE", tmp_path / "AFTER"
    before.mkdir(), after.mkdir()
    u8 = (np.clip(10 * np.log10(arr) + 25, 0, 40) * 6).astype(np.uint8)
    cv2.imwrite(str(before / "S1_before_0001.png"), u8)
    cv2.imwrite(str(after / "S1_after_0001.png"), u8[:, ::-1])
    np.testing.assert_allclose(load_power(tmp_path / "a.tif"), arr)
    np.testing.assert_allclose(load_power(tmp_path / "slc.npy"), arr, rtol=1e-5)
    assert load_power(before / "S1_before_0001.png").shape == (140, 150)
    pairs = find_date_pairs(tmp_path)
    assert [(a.name, b.name) for a, b in pairs] == [("S1_before_0001.png", "S1_after_0001.png")]
    srcs = [Source("single", 1, [tmp_path / "a.tif", tmp_path / "slc.npy"]), Source("pairs", 1, pairs),
            Source("synthetic", 1, size=160)]
    rng = np.random.default_rng(1)
    for _ in range(4):
        p = sample_pair(srcs, rng, PairConfig(crop=64))
        assert p["img1"].shape == (64, 64) and np.isfinite(p["aflow"]).any()
    with pytest.raises(InputError):
        load_power(tmp_path / "missing.tif")


def test_ap_quantized():
    s = torch.tensor([[0.9, 0.1, 0.2, 0.0], [0.1, 0.9, 0.8, 0.7]])
    lab = torch.tensor([[1, 0, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    ap = ap_quantized(s, lab)
    assert ap[0] == pytest.approx(1.0, abs=1e-6)
    assert ap[1] < 0.5
    # every score contributes total bin weight 1 -> AP of all-positive rows is 1
    assert ap_quantized(torch.rand(3, 7), torch.ones(3, 7, dtype=torch.bool)).allclose(torch.ones(3))


def _identity_flow(b: int, h: int, w: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    return torch.stack([xx, yy])[None].repeat(b, 1, 1, 1)


def test_reliability_loss_prefers_matching_descriptors():
    torch.manual_seed(0)
    b, d, h, w = 2, 32, 48, 48
    desc1 = F.normalize(torch.randn(b, d, h, w), dim=1)
    rel = torch.ones(b, 1, h, w)
    flow = _identity_flow(b, h, w)
    sampler = NeighbourhoodSampler(border=8)
    gen = torch.Generator().manual_seed(0)
    same = reliability_loss(*sampler(desc1, desc1, rel, rel, flow, gen))
    rand = reliability_loss(*sampler(desc1, F.normalize(torch.randn(b, d, h, w), dim=1), rel, rel, flow, gen))
    assert torch.isfinite(same) and torch.isfinite(rand)
    assert same < 0.01 and rand > 0.5
    # no valid flow -> zero loss, still differentiable
    nan_flow = torch.full_like(flow, float("nan"))
    assert reliability_loss(*sampler(desc1, desc1, rel, rel, nan_flow, gen)) == 0


def test_positive_radius_sets_how_far_a_descriptor_may_slide():
    """--pos-d / --neg-d: descriptors that match 2 px away from the true position satisfy R2D2's radius (3 px) and
    fail a 1 px one (the 2 px match then lies in the ignored ring, not among the positives)."""
    torch.manual_seed(1)
    b, d, h, w = 2, 32, 48, 48
    desc1 = F.normalize(torch.randn(b, d, h, w), dim=1)
    slid = torch.roll(desc1, shifts=2, dims=3)  # desc2 at x + 2 = desc1 at x
    rel = torch.ones(b, 1, h, w)
    flow = _identity_flow(b, h, w)
    gen = torch.Generator().manual_seed(0)
    wide = reliability_loss(*NeighbourhoodSampler(border=8)(desc1, slid, rel, rel, flow, gen))
    tight = reliability_loss(*NeighbourhoodSampler(border=8, pos_d=1, neg_d=3)(desc1, slid, rel, rel, flow, gen))
    assert wide < 0.01 and tight > 0.5


def test_repeatability_losses():
    torch.manual_seed(0)
    rep = torch.rand(2, 1, 48, 48)
    flow = _identity_flow(2, 48, 48)
    warped, valid = warp_by_flow(rep, flow)
    assert torch.allclose(warped, rep, atol=1e-5) and bool(valid.all())
    assert cosim_loss(rep, rep, flow) == pytest.approx(0.0, abs=1e-5)
    assert cosim_loss(rep, torch.rand(2, 1, 48, 48), flow) > 0.05
    flat = torch.full((1, 1, 48, 48), 0.5)
    peaky = torch.zeros(1, 1, 48, 48)
    for i in range(1, 48, 12):
        for j in range(1, 48, 12):
            peaky[..., i:i + 3, j:j + 3] = 1.0  # 3x3 blobs survive the 3x3 smoothing
    assert peaky_loss(peaky) < peaky_loss(flat)
    assert torch.isfinite(sharpen_loss(rep, rep))


def test_full_loss_backward():
    from sarreg.model.r2d2 import build_network

    torch.set_num_threads(1)
    net = build_network("Fast_Quad_L2Net_ConfCFS", 1, 2).train()
    x = torch.rand(2, 1, 64, 64)
    loss, parts = R2D2Loss()(net(x), net(x), _identity_flow(2, 64, 64))
    loss.backward()
    assert torch.isfinite(loss) and set(parts) == {"reliability", "cosim", "peaky"}
    loss, parts = R2D2Loss(LossWeights(ap=1.0, sharpen=1.0))(net(x), net(x), _identity_flow(2, 64, 64))
    assert set(parts) == {"reliability", "cosim", "peaky", "ap", "sharpen"} and torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_train_smoke_and_resume(tmp_path):
    from sarreg.train.loop import TrainConfig, train

    out = tmp_path / "run"
    src = [Source("synthetic", 1.0, size=128)]
    cfg = TrainConfig(iterations=2, batch=2, crop=64, mchan=2, workers=0, threads=1, val_every=2, val_size=64,
                      val_top_k=50, val_pairs=2, w_ap=0.5)
    st = train(src, out, cfg, progress=False)
    assert st.iteration == 2
    for name in ("last.pt", "best.pt", "train_log.csv", "val_log.csv", "curves.png"):
        assert (out / name).is_file(), name
    m = load_model(out / "best.pt")
    assert m.in_channels == 1 and m.mchan == 2
    ck = torch.load(out / "last.pt", weights_only=True)
    from sarreg.model.r2d2 import build_network

    assert ck["iteration"] == 2 and "optimizer" in ck
    assert set(ck["optimizer_params"]) == {n for n, _ in build_network("Fast_Quad_L2Net_ConfCFS", 1, 2).named_parameters()}
    st = train(src, out, TrainConfig(**{**cfg.__dict__, "iterations": 4, "rel_lr_mult": 10.0, "amp": True,
                                        "lr_decay_from": 2}), resume=True, progress=False)
    assert st.iteration == 4
    with open(out / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-4, 1e-4, 1e-4, 0.5e-4])  # the annealed end
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert torch.load(out / "last.pt", weights_only=True)["iteration"] == 4
    assert len(json.loads(torch.load(out / "last.pt", weights_only=True)["val_history"])) >= 2
    # --amp where bfloat16 is emulated (an AVX2 CPU) runs in float32, and the checkpoint says what ran
    from sarreg.network import native_bf16

    ck = torch.load(out / "last.pt", weights_only=True)
    training = ck["training"] if isinstance(ck["training"], dict) else json.loads(ck["training"])
    assert training["config"]["amp"] == native_bf16("cpu")


def test_a_resumed_run_is_the_uninterrupted_run_and_a_signal_is_an_interruption(tmp_path, monkeypatch):
    """2 iterations + --resume to 4 give the losses and weights of 4 straight (the loss's sampler state is in
    last.pt: it was re-seeded at the resume); SIGTERM or SIGHUP saves last.pt, then ends the run as an interruption
    (the CLI's exit 143 / 129), not as a finished run; --resume with nothing to resume leaves no folder."""
    import signal
    import subprocess
    import sys

    import sarreg.train.loop as loop
    from sarreg.errors import WeightsError

    src = [Source("synthetic", 1.0, size=128)]
    cfg = loop.TrainConfig(iterations=4, batch=2, crop=64, mchan=2, workers=0, threads=1, val_every=100,
                           val_size=64, val_top_k=50, val_pairs=1)
    loop.train(src, tmp_path / "straight", cfg, progress=False)
    loop.train(src, tmp_path / "resumed", loop.TrainConfig(**{**cfg.__dict__, "iterations": 2}), progress=False)
    loop.train(src, tmp_path / "resumed", cfg, resume=True, progress=False)
    losses = [[float(r["loss"]) for r in csv.DictReader(open(tmp_path / d / "train_log.csv"))]
              for d in ("straight", "resumed")]
    assert losses[0] == losses[1]
    a, b = (torch.load(tmp_path / d / "last.pt", weights_only=True)["state_dict"] for d in ("straight", "resumed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # SIGTERM (and SIGHUP, a closed terminal) during the second iteration, in a fresh process: a signal to the pytest
    # process after other tests' native threads is not what is tested here
    for sig in (signal.SIGTERM, signal.SIGHUP):
        _stopped_by(sig, tmp_path / sig.name, cfg)
    with pytest.raises(WeightsError, match="nothing to resume from"):
        loop.train(src, tmp_path / "none", cfg, resume=True, progress=False)
    assert not (tmp_path / "none").exists()


def _stopped_by(sig, folder, cfg) -> None:
    """Signal ``sig`` while the second iteration samples: last.pt holds iteration 2, the run ends interrupted."""
    import subprocess
    import sys

    folder.mkdir()
    script = folder / "stop.py"
    script.write_text(f"""
import signal, threading
import sarreg.train.loop as loop
real, calls = loop.sample_pair, [0]
def killing(*a, **k):
    calls[0] += 1
    if calls[0] == 3:
        signal.pthread_kill(threading.main_thread().ident, {int(sig)})
    return real(*a, **k)
loop.sample_pair = killing
cfg = loop.TrainConfig(**{cfg.__dict__!r})
try:
    loop.train([loop.Source("synthetic", 1.0, size=128)], {str(folder / "stopped")!r}, cfg, progress=False)
except KeyboardInterrupt as e:
    print("interrupted", e.signum)
""")
    from conftest import terminal_signals

    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                       preexec_fn=terminal_signals)
    assert p.stdout.strip() == f"interrupted {int(sig)}", p.stdout + p.stderr
    assert torch.load(folder / "stopped" / "last.pt", weights_only=True)["iteration"] == 2


def test_resume_after_sigkill_logs_each_iteration_once(tmp_path):
    """SIGKILL (no handler runs) at iteration 5 of a run whose last.pt holds iteration 2: its logs hold iterations
    3-4 (and a row cut short by the kill); --resume runs them again and appended them a second time, so
    curves.png zig-zagged. Now the rows past the checkpoint are dropped on resume: each iteration once, in order,
    the replayed ones with the losses the killed run had logged (the same data stream)."""
    import signal
    import subprocess
    import sys

    import sarreg.train.loop as loop

    run = tmp_path / "run"
    cfg = loop.TrainConfig(iterations=6, batch=2, crop=64, mchan=2, workers=0, threads=1, val_every=1, val_size=64,
                           val_top_k=50, val_pairs=1, checkpoint_minutes=0.0)
    script = tmp_path / "kill.py"
    script.write_text(f"""
import os, signal
import sarreg.train.loop as loop
real_sample, real_save, calls = loop.sample_pair, loop._save, [0]
def killing(*a, **k):
    calls[0] += 1
    if calls[0] == 9:  # (the first sample of iteration 5)
        os.kill(os.getpid(), signal.SIGKILL)
    return real_sample(*a, **k)
def save(path, net, cfg, state, *a, **k):  # last.pt as a checkpoint every few minutes leaves it: at iteration 2
    if path.name != "last.pt" or state.iteration <= 2:
        real_save(path, net, cfg, state, *a, **k)
loop.sample_pair, loop._save = killing, save
loop.train([loop.Source("synthetic", 1.0, size=128)], {str(run)!r}, loop.TrainConfig(**{cfg.__dict__!r}),
           progress=False)
""")
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stdout + p.stderr
    assert torch.load(run / "last.pt", weights_only=True)["iteration"] == 2

    def iterations(name: str) -> list[int]:
        with open(run / name, newline="") as f:
            return [int(r["iteration"]) for r in csv.DictReader(f)]

    assert iterations("train_log.csv") == [1, 2, 3, 4] and iterations("val_log.csv") == [0, 1, 2, 3, 4]
    killed = {r["iteration"]: r["loss"] for r in csv.DictReader(open(run / "train_log.csv", newline=""))}
    with open(run / "train_log.csv", "a") as f:
        f.write("5,3.1")  # (a row cut short by the kill)
    st = loop.train([Source("synthetic", 1.0, size=128)], run, cfg, resume=True, progress=False)
    assert st.iteration == 6
    assert iterations("train_log.csv") == [1, 2, 3, 4, 5, 6] and iterations("val_log.csv") == [0, 1, 2, 3, 4, 5, 6]
    resumed = {r["iteration"]: r["loss"] for r in csv.DictReader(open(run / "train_log.csv", newline=""))}
    assert all(resumed[k] == v for k, v in killed.items())

def test_learning_rate_anneals_on_a_cosine():
    from sarreg.train.loop import TrainConfig, learning_rate

    cfg = TrainConfig(iterations=100, lr=1e-4, lr_decay_from=60)
    lrs = [learning_rate(cfg, i) for i in range(101)]
    assert lrs[:61] == [1e-4] * 61 and lrs[80] == pytest.approx(0.5e-4) and lrs[100] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert learning_rate(TrainConfig(iterations=100, lr=1e-4), 99) == 1e-4  # 0: constant


def test_bf16_inference_falls_back_to_fp32_where_emulated(caplog):
    """``--precision bf16`` with the PyTorch backend: bfloat16 where the device computes it natively, else float32
    (emulated bfloat16 is slower and less accurate) with one warning."""
    import logging

    from sarreg.model.weights import random_model
    from sarreg.network import native_bf16, run_network, usable_precision

    m = random_model("Fast_Quad_L2Net_ConfCFS", 1, mchan=2)
    img = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    fp32 = run_network(m, img, precision="fp32")
    with caplog.at_level(logging.WARNING, logger="sarreg.network"):
        bf16 = run_network(m, img, precision="bf16")
    same = torch.equal(fp32.repeatability, bf16.repeatability) and torch.equal(fp32.raw, bf16.raw)
    assert same == (not native_bf16("cpu"))
    assert usable_precision("bf16", "cpu") == ("bf16" if native_bf16("cpu") else "fp32")
    assert usable_precision("fp32", "cpu") == "fp32"
    assert native_bf16("meta") is False


def test_train_cli_config_and_errors(tmp_path):
    from click.testing import CliRunner

    from sarreg.cli import cli

    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"iterations": 1, "batch": 2, "crop": 64, "mchan": 2, "workers": 0,
                                "val_every": 1, "bogus": 1}))
    r = CliRunner().invoke(cli, ["train", "--config", str(conf), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "bogus" in r.output
    r = CliRunner().invoke(cli, ["train", str(tmp_path / "nope.tif"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "nope.tif" in r.output
    conf.write_text(json.dumps({"iterations": 1, "batch": 2, "crop": 64, "mchan": 2, "workers": 0}))
    r = CliRunner().invoke(cli, ["train", "--config", str(conf), "--out", str(tmp_path / "o"), "--pos-d", "3",
                                 "--neg-d", "3"])
    assert r.exit_code == 1 and "--pos-d / --neg-d" in r.output


def test_train_cli_bad_values_are_one_line_and_leave_nothing(tmp_path):
    """Bad option values (command line or --config), an unreadable --init and a run folder that already holds a
    run: one error line each, no traceback, no folder left behind; only --resume continues a run."""
    from click.testing import CliRunner

    from sarreg.cli import cli
    from sarreg.train.loop import TrainConfig, train

    out = tmp_path / "o"
    small = ["--crop", "64", "--mchan", "2", "--workers", "0", "--out", str(out)]

    def one_line(args: list[str], needle: str, code: int) -> None:
        r = CliRunner().invoke(cli, ["train", *args])
        lines = [ln for ln in r.output.strip().splitlines() if ln]
        assert r.exit_code == code and len(lines) == 1 and lines[0].startswith("sarreg: error: "), r.output
        assert needle in lines[0], lines[0]
        assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
        assert not out.exists()

    one_line(["--batch", "0", *small], "--batch", 2)
    one_line(["--iterations", "0", *small], "--iterations", 2)
    one_line(["--distort", "1.5", *small], "--distort", 2)
    one_line(["--modal", str(tmp_path / "r.tif"), str(tmp_path / "o.tif"), *small], "--modal needs two image", 1)
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"iterations": "abc"}))
    one_line(["--config", str(conf), *small], "c.json: iterations", 1)
    one_line(["--init", str(tmp_path / "nosuch.pt"), *small], "nosuch.pt: --init checkpoint not found", 1)
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    r = CliRunner().invoke(cli, ["train", "--init", str(tmp_path / "junk.pt"), "--iterations", "1", *small])
    assert r.exit_code == 1 and "junk.pt: not a readable checkpoint" in r.output, r.output
    # a folder holding a run is not trained over again (its best.pt, logs) without --resume
    cfg = TrainConfig(iterations=1, batch=2, crop=64, mchan=2, workers=0, threads=1, val_every=1, val_size=64,
                      val_top_k=50, val_pairs=2)
    run = tmp_path / "run"
    train([Source("synthetic", 1.0, size=128)], run, cfg, progress=False)
    before = (run / "last.pt").read_bytes()
    r = CliRunner().invoke(cli, ["train", "--iterations", "1", "--batch", "2", "--crop", "64", "--mchan", "2",
                                 "--workers", "0", "--out", str(run)])
    assert r.exit_code == 1 and "holds a training run (last.pt); --resume continues it" in r.output, r.output
    assert (run / "last.pt").read_bytes() == before


def test_a_run_without_last_pt_is_neither_resumed_nor_restarted(tmp_path):
    """A run killed before its first last.pt leaves best.pt and the logs: --resume was refused, but --init
    OUT/best.pt --out OUT (or no --init) started again at iteration 0 in that folder, replacing its best.pt and
    logs. Now both are one line naming the folder (the way to fine-tune from best.pt in it), nothing changed."""
    from click.testing import CliRunner

    from sarreg.cli import cli
    from sarreg.train.loop import TrainConfig, train

    run = tmp_path / "run"
    train([Source("synthetic", 1.0, size=128)], run, TrainConfig(iterations=1, batch=2, crop=64, mchan=2, workers=0,
                                                                 threads=1, val_size=64, val_top_k=50, val_pairs=1),
          progress=False)
    (run / "last.pt").unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    small = ["--iterations", "2", "--batch", "2", "--crop", "64", "--mchan", "2", "--workers", "0", "--val-pairs", "1",
             "--no-progress", "--out", str(run)]
    for args, head in ((["--resume"], f"{run / 'last.pt'}: nothing to resume from"),
                       (["--init", str(run / "best.pt")], f"{run}: holds a training run without last.pt"),
                       ([], f"{run}: holds a training run without last.pt")):
        r = CliRunner().invoke(cli, ["train", *args, *small])
        lines = [ln for ln in r.output.strip().splitlines() if ln]
        assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith(f"sarreg: error: {head}"), r.output
        assert f"--init {run / 'best.pt'} --out NEW" in lines[0]
        assert {p.name: p.read_bytes() for p in run.iterdir()} == before

def test_amp_forward_matches_float32():
    from sarreg.model.r2d2 import build_network
    from sarreg.train.loop import _forward

    torch.manual_seed(0)
    net = build_network("Fast_Quad_L2Net_ConfCFS", 1, 2).train()
    x = torch.randn(2, 1, 48, 48)
    ref, amp = _forward(net, x, False), _forward(net, x, True)
    for k in ref:
        assert amp[k].dtype == torch.float32
        assert (amp[k] - ref[k]).abs().max() < 0.05


def test_export_with_reliability_calibration(tmp_path):
    from sarreg.model.weights import random_model, save_checkpoint
    from sarreg.train.export import export
    from sarreg.train.loop import make_validation_set

    m = random_model(mchan=2, seed=1)
    src = save_checkpoint(tmp_path / "t.pt", m.net, m.arch, 2, 1, training={"iteration": 5})
    pairs = make_validation_set([Source("synthetic", 1.0, size=96)], size=64, n=2)
    cal = export(src, tmp_path / "s.pt", calibrate=True, pairs=pairs)
    assert 0 < cal["threshold"] < 1 and 0 < cal["fraction_kept"] <= 1 and np.isfinite(cal["logit_shift"])
    out = load_model(tmp_path / "s.pt")
    shift = (out.net.clf.bias - m.net.clf.bias).detach()
    assert shift[0] == 0 and shift[1] == pytest.approx(cal["logit_shift"], rel=1e-4)
    assert out.training["reliability_calibration"]["threshold"] == cal["threshold"]
    assert "optimizer" not in torch.load(tmp_path / "s.pt", weights_only=True)
    assert out.rel_thr == 0.0  # ranking only, unless the threshold is stored
    cal2 = export(src, tmp_path / "t2.pt", calibrate=True, pairs=pairs, store_threshold=True)
    assert cal2["stored_rel_thr"] == 0.7 and load_model(tmp_path / "t2.pt").rel_thr == 0.7


def test_sensor_pairs_keep_geometry_change_looks(tmp_path):
    """``sarreg.train.sensor_pairs``: same pairs and ground truth, the moving image stored as another product."""
    import json

    from sarreg.eval_pairs import make_pairs
    from sarreg.evaluate import load_pairs
    from sarreg.train.sensor_pairs import make_sensor_pairs

    src = synth.write_geotiff(tmp_path / "s.tif", synth.reflectivity(200, 200, seed=3))
    make_pairs([str(src)], tmp_path / "pairs", 3, seed=1, size=128)
    out = make_sensor_pairs(tmp_path / "pairs", tmp_path / "sensor", seed=2)
    assert len(out) == 3
    a, b = load_pairs(tmp_path / "pairs"), load_pairs(tmp_path / "sensor")
    for p, q in zip(a, b):
        assert np.allclose(p.H, q.H) and q.moving.name == "moving.tif"
        assert json.loads((q.moving.parent / "gt.json").read_text())["source"].startswith("sensor_look:")
    looks = [load_power(q.moving) for q in b]
    orig = [load_power(p.moving) for p in a]
    assert sum(not np.allclose(np.nan_to_num(x), np.nan_to_num(y), rtol=1e-3) for x, y in zip(looks, orig)) >= 1
    make_sensor_pairs(tmp_path / "pairs", tmp_path / "slc", seed=4, look=False, single_look=True)
    for p, q in zip(a, load_pairs(tmp_path / "slc")):  # both images re-speckled (1-2 looks), geometry kept
        assert np.allclose(p.H, q.H) and q.ref.name == "ref.tif"
        assert json.loads((q.moving.parent / "gt.json").read_text())["source"].startswith("single_look:")
        for x, y in ((load_power(p.ref), load_power(q.ref)), (load_power(p.moving), load_power(q.moving))):
            ok = np.isfinite(x) & np.isfinite(y)
            assert np.array_equal(np.isfinite(x), np.isfinite(y))
            assert np.std(np.log(y[ok] / x[ok])) > 0.5  # 1-2-look gamma speckle: ~0.8-1.3 in natural log


def test_seasonal_change_pairs_keep_geometry_and_nodata(tmp_path):
    """``--change``: the moving image's levels change over regions (gains, speckle kept), its nodata stays nodata."""
    import json

    from sarreg.eval_pairs import make_pairs
    from sarreg.evaluate import load_pairs
    from sarreg.train.sensor_pairs import make_sensor_pairs, seasonal_change

    power = synth.speckle(synth.reflectivity(160, 160, seed=5), 4, np.random.default_rng(0))
    power[:, :20] = np.nan
    ch = seasonal_change(power, np.random.default_rng(1), 0.3)
    assert np.isnan(ch[:, :20]).all() and np.isfinite(ch[:, 20:]).all()
    ratio_db = 10 * np.log10(ch[:, 20:] / power[:, 20:])
    assert np.mean(np.abs(ratio_db) > 2.5) > 0.15  # a sizeable part of the scene changed level
    src = synth.write_geotiff(tmp_path / "s.tif", synth.reflectivity(200, 200, seed=3))
    make_pairs([str(src)], tmp_path / "pairs", 2, seed=1, size=128)
    make_sensor_pairs(tmp_path / "pairs", tmp_path / "season", seed=2, change=0.3, look=False)
    for p, q in zip(load_pairs(tmp_path / "pairs"), load_pairs(tmp_path / "season")):
        assert np.allclose(p.H, q.H)
        assert json.loads((q.moving.parent / "gt.json").read_text())["source"].startswith("change:")
        a, b = load_power(p.moving), load_power(q.moving)
        assert np.array_equal(np.isnan(a), np.isnan(b))
    make_sensor_pairs(tmp_path / "pairs", tmp_path / "xpol", seed=3, look=False, polar=True)
    for p, q in zip(load_pairs(tmp_path / "pairs"), load_pairs(tmp_path / "xpol")):
        assert np.allclose(p.H, q.H)
        assert json.loads((q.moving.parent / "gt.json").read_text())["source"].startswith("cross_pol:")
        a, b = load_power(p.moving), load_power(q.moving)
        ok = np.isfinite(a)
        assert np.array_equal(ok, np.isfinite(b)) and -11 < np.median(10 * np.log10(b[ok] / a[ok])) < -4
    make_sensor_pairs(tmp_path / "pairs", tmp_path / "jpeg", seed=4, look=False, jpeg=True)
    for p, q in zip(load_pairs(tmp_path / "pairs"), load_pairs(tmp_path / "jpeg")):
        assert np.allclose(p.H, q.H) and q.ref.name == "ref.tif"
        assert json.loads((q.moving.parent / "gt.json").read_text())["source"].startswith("jpeg:")
        for x, y in ((p.ref, q.ref), (p.moving, q.moving)):  # both images: 8-bit levels, the same scene and nodata
            a, b = load_power(x), load_power(y)
            ok = np.isfinite(a)
            assert np.array_equal(ok, np.isfinite(b)) and len(np.unique(b[ok])) <= 255
            assert np.corrcoef(np.log(a[ok]), np.log(b[ok]))[0, 1] > 0.8
    make_sensor_pairs(tmp_path / "pairs", tmp_path / "flat", seed=6, look=False, featureless=True)
    for p, q in zip(load_pairs(tmp_path / "pairs"), load_pairs(tmp_path / "flat")):
        assert np.allclose(p.H, q.H) and q.ref.name == p.ref.name
        assert json.loads((q.moving.parent / "gt.json").read_text())["source"].startswith("featureless:")
        a, b = load_power(p.moving), load_power(q.moving)
        assert np.array_equal(np.isnan(a), np.isnan(b)) and 0.35 < np.mean(a[np.isfinite(a)] != b[np.isfinite(b)])
    make_sensor_pairs(tmp_path / "pairs", tmp_path / "contrast", seed=5, look=False, contrast=True)
    for p, q in zip(load_pairs(tmp_path / "pairs"), load_pairs(tmp_path / "contrast")):
        assert np.allclose(p.H, q.H) and q.ref.name == p.ref.name  # the reference untouched
        assert json.loads((q.moving.parent / "gt.json").read_text())["source"].startswith("contrast:")
        a, b = load_power(p.moving), load_power(q.moving)
        ok = np.isfinite(a)
        assert np.array_equal(ok, np.isfinite(b)) and (b[ok] > 0).all()
        da, db = 10 * np.log10(a[ok]), 10 * np.log10(b[ok])
        assert not np.allclose(da, db, atol=0.5)  # grey levels remapped ...
        lo, hi = np.percentile(da, (1, 99))
        assert lo - 0.5 <= np.percentile(db, 1) and np.percentile(db, 99) <= hi + 0.5  # ... within the same dB range


def test_season_option_changes_the_second_view_only():
    refl = synth.reflectivity(256, 256, seed=9)
    cfg = PairConfig(crop=96, radiometric=0.0, blur=0.0, cutout=0.0)
    a = make_pair(refl, refl, np.random.default_rng(4), cfg, synthetic=True)
    b = make_pair(refl, refl, np.random.default_rng(4), PairConfig(**{**cfg.__dict__, "season": 1.0}), synthetic=True)
    assert np.array_equal(a["img1"], b["img1"]) and np.allclose(a["aflow"], b["aflow"], equal_nan=True)
    assert np.abs(a["img2"] - b["img2"]).mean() > 0.02


def test_single_look_option_adds_strong_speckle_to_real_views_only():
    """--single-look: views of a real two-date pair get 1-2-look speckle (more pixel-to-pixel variation than the
    multi-looked scene); synthetic pairs draw nothing (their batches stay as before)."""
    refl = synth.reflectivity(256, 256, seed=9)
    v1, v2 = refl.copy(), refl.copy()  # two dates (distinct arrays), no extra speckle otherwise
    cfg = PairConfig(crop=96, radiometric=0.0, blur=0.0, cutout=0.0, extra_speckle=0.0)
    a = make_pair(v1, v2, np.random.default_rng(4), cfg)
    b = make_pair(v1, v2, np.random.default_rng(4), PairConfig(**{**cfg.__dict__, "single_look": 1.0}))

    def roughness(u):  # mean absolute difference of horizontal neighbours
        return float(np.nanmean(np.abs(np.diff(u, axis=1))))

    assert np.allclose(a["aflow"], b["aflow"], equal_nan=True)
    assert roughness(b["img1"]) > 2 * roughness(a["img1"]) and roughness(b["img2"]) > 2 * roughness(a["img2"])
    s = make_pair(refl, refl, np.random.default_rng(4), cfg, synthetic=True)
    t = make_pair(refl, refl, np.random.default_rng(4), PairConfig(**{**cfg.__dict__, "single_look": 1.0}),
                  synthetic=True)
    assert np.array_equal(s["img1"], t["img1"]) and np.array_equal(s["img2"], t["img2"])


def test_near_identity_option_draws_georeferenced_style_warps():
    """--near-identity: the warp is a shift plus at most ~1 px of rotation / scale / shear at the crop's corners
    (where the default homographies move them by tens of pixels); off, no draw is made and batches stay as before."""
    refl = synth.reflectivity(256, 256, seed=9)
    cfg = PairConfig(crop=96, radiometric=0.0, blur=0.0, cutout=0.0)
    corners = np.array([[0, 0, 1], [95, 0, 1], [0, 95, 1], [95, 95, 1]], dtype=float).T

    def corner_spread(H):  # displacement of the corners beyond the common shift (px)
        q = H @ corners
        d = q[:2] / q[2] - corners[:2]
        return float(np.abs(d - d.mean(axis=1, keepdims=True)).max())

    far, near = [], []
    for seed in range(12):
        far.append(corner_spread(make_pair(refl, refl, np.random.default_rng(seed), cfg, synthetic=True)["H"]))
        p = make_pair(refl, refl, np.random.default_rng(seed), PairConfig(**{**cfg.__dict__, "near_identity": 1.0}),
                      synthetic=True)
        near.append(corner_spread(p["H"]))
        assert np.isfinite(p["aflow"][0]).mean() > 0.5
    assert max(near) < 1.5 and np.median(far) > 5.0
    a = make_pair(refl, refl, np.random.default_rng(3), cfg, synthetic=True)
    b = make_pair(refl, refl, np.random.default_rng(3), PairConfig(**{**cfg.__dict__, "near_identity": 0.0}),
                  synthetic=True)
    assert np.array_equal(a["H"], b["H"]) and np.array_equal(a["img2"], b["img2"])


def test_contrast_look_remaps_grey_levels_keeps_shapes_and_nodata():
    """--contrast: one view through a random transfer curve: values stay in [0, 1], invalid pixels untouched,
    some draws reverse the contrast (negative correlation), others keep it; the geometry (flow) is unchanged,
    exactly one view is remapped, and off, no draw is made (batches stay as before)."""
    refl = synth.reflectivity(128, 128, seed=5)
    u = np.clip((10 * np.log10(refl) - np.percentile(10 * np.log10(refl), 1)) / 25.0, 0, 1).astype(np.float32)
    valid = np.ones_like(u, bool)
    valid[:, :10] = False
    corrs = []
    for s in range(24):
        v = contrast_look(u, valid, np.random.default_rng(s))
        assert v.shape == u.shape and v.dtype == np.float32
        assert np.array_equal(v[:, :10], u[:, :10]) and 0.0 <= v.min() and v.max() <= 1.0
        corrs.append(np.corrcoef(u[valid], v[valid])[0, 1])
    assert min(corrs) < -0.3 and max(corrs) > 0.8  # reversals and gentle curves both occur
    cfg = PairConfig(crop=96, radiometric=0.0, blur=0.0, cutout=0.0)
    a = make_pair(refl, refl, np.random.default_rng(3), cfg, synthetic=True)
    b = make_pair(refl, refl, np.random.default_rng(3), PairConfig(**{**cfg.__dict__, "contrast": 0.0}),
                  synthetic=True)
    assert np.array_equal(a["img1"], b["img1"]) and np.array_equal(a["img2"], b["img2"])
    c = make_pair(refl, refl, np.random.default_rng(3), PairConfig(**{**cfg.__dict__, "contrast": 1.0}),
                  synthetic=True)
    assert np.allclose(a["aflow"], c["aflow"], equal_nan=True)
    changed = [not np.array_equal(a[k], c[k]) for k in ("img1", "img2")]
    assert sum(changed) == 1  # exactly one view remapped


def test_cross_pol_look_is_darker_keeps_structure_and_nodata():
    """VH as seen from VV: ~6-10 dB darker, bright targets compressed, still the same scene, nodata kept."""
    refl = synth.speckle(synth.reflectivity(160, 160, seed=4), 4, np.random.default_rng(0))
    refl[:, :12] = np.nan
    for s in range(6):
        q = cross_pol_look(refl, np.random.default_rng(s))
        assert q.dtype == np.float32 and np.isnan(q[:, :12]).all() and (q[:, 12:] > 0).all()
        a, b = 10 * np.log10(refl[:, 12:]), 10 * np.log10(q[:, 12:])
        assert -11.0 < np.median(b - a) < -4.0
        assert 0.3 < np.corrcoef(a.ravel(), b.ravel())[0, 1] < 0.999
        bright = a > np.percentile(a, 99.5)
        assert np.median((b - a)[bright]) < np.median(b - a)  # double bounce loses more than the median


def test_featureless_part_flattens_one_side_of_a_line_and_keeps_the_rest():
    """The validation look behind sets WA / WQ / WT: 40-60 % of the valid pixels, on one side of a straight line,
    become texture-free speckle at the local mean level; the other pixels and the nodata stay as they were."""
    refl = synth.reflectivity(160, 160, seed=6)
    power = synth.speckle(refl, 4, np.random.default_rng(0))
    power[:, :10] = np.nan
    for s in range(5):
        q = featureless_part(power, np.random.default_rng(s))
        assert q.dtype == np.float32 and np.isnan(q[:, :10]).all() and (q[:, 10:] > 0).all()
        same = q[:, 10:] == power[:, 10:]
        assert 0.35 < 1.0 - same.mean() < 0.65
        flat = ~same
        # the texture (the band-passed log reflectivity) is gone where it changed, kept elsewhere
        a, b = (cv2.GaussianBlur(np.log(x[:, 10:]), (0, 0), 1.5) for x in (refl, q))
        a, b = (x - cv2.GaussianBlur(x, (0, 0), 4.0) for x in (a, b))
        assert np.corrcoef(a[same], b[same])[0, 1] > 0.7 and abs(np.corrcoef(a[flat], b[flat])[0, 1]) < 0.2


def test_jpeg_look_has_block_artefacts_keeps_scene_and_nodata():
    """An 8-bit JPEG of the crop: 256 grey levels at most, lossy, the same scene, nodata kept; ``jpeg`` off draws nothing (older runs keep their batches)."""
    refl = synth.speckle(synth.reflectivity(128, 128, seed=3), 4, np.random.default_rng(0))
    refl[:8] = np.nan
    for s in range(4):
        q = jpeg_look(refl, np.random.default_rng(s))
        assert q.dtype == np.float32 and np.isnan(q[:8]).all() and (q[8:] > 0).all()
        assert len(np.unique(q[8:])) <= 255
        a, b = np.log(refl[8:]), np.log(q[8:])
        assert 0.8 < np.corrcoef(a.ravel(), b.ravel())[0, 1] < 0.99  # the same scene, lossy (speckle smoothed)
    cfg = PairConfig(crop=64)
    a = make_pair(refl, refl, np.random.default_rng(4), cfg, synthetic=True)
    b = make_pair(refl, refl, np.random.default_rng(4), PairConfig(**{**cfg.__dict__, "jpeg": 0.0}), synthetic=True)
    assert np.array_equal(a["img2"], b["img2"], equal_nan=True)


def test_polar_pairs_from_channels_of_a_multichannel_image(tmp_path):
    """A 3-band 8-bit radar image (Pauli RGB) gives two different channels as a pair with ``polar``; never
    without it (older runs keep their batches)."""
    import rasterio

    rng = np.random.default_rng(0)
    base = synth.reflectivity(200, 200, seed=6)
    chans = [np.clip(10 * np.log10(base) + 30 + k * 5 + rng.normal(0, 1, base.shape), 0, 255).astype(np.uint8)
             for k in range(3)]
    path = tmp_path / "pauli.tif"
    with rasterio.open(path, "w", driver="GTiff", width=200, height=200, count=3, dtype="uint8") as ds:
        ds.write(np.stack(chans))
    views = load_channels(path)
    assert len(views) == 3 and all(v.shape == (200, 200) for v in views)
    assert not np.allclose(views[0], views[1])
    src = Source("single", 1.0, [path], polar=1.0)
    v1, v2, syn = src.views(np.random.default_rng(1), {})
    assert v1 is not v2 and not syn and any(np.array_equal(v1, v) for v in views)
    w1, w2, _ = Source("single", 1.0, [path]).views(np.random.default_rng(1), {})
    assert w1 is w2
    pair = make_pair(v1, v2, np.random.default_rng(2), PairConfig(crop=96, polar=1.0))
    assert pair["img1"].shape == (96, 96) and np.isfinite(pair["aflow"][0]).mean() > 0.25


def test_export_averages_checkpoints(tmp_path):
    from sarreg.errors import WeightsError
    from sarreg.model.weights import random_model, save_checkpoint
    from sarreg.train.export import export

    paths = []
    for seed in (1, 2, 3):
        m = random_model(mchan=2, seed=seed)
        paths.append(save_checkpoint(tmp_path / f"s{seed}.pt", m.net, m.arch, 2, 1, training={"iteration": seed}))
    export(paths[0], tmp_path / "soup.pt", average=paths[1:], constant_reliability=0.75)
    soup = load_model(tmp_path / "soup.pt")
    states = [load_model(p).net.state_dict() for p in paths]
    for k, v in soup.net.state_dict().items():
        if k.startswith("clf") or not v.dtype.is_floating_point:
            continue
        assert torch.allclose(v, (states[0][k] + states[1][k] + states[2][k]) / 3, atol=1e-6), k
    assert not torch.allclose(states[0]["ops.0.weight"], soup.net.state_dict()["ops.0.weight"])
    assert soup.training["averaged_with"] == ["s2.pt", "s3.pt"]
    w = random_model(mchan=3, seed=4)
    wide = save_checkpoint(tmp_path / "w.pt", w.net, w.arch, 3, 1, training={})
    with pytest.raises(WeightsError, match="w.pt"):
        export(paths[0], tmp_path / "bad.pt", average=[wide])
    assert not (tmp_path / "bad.pt").exists()


def test_modal_source_gives_a_radar_and_an_optical_view_of_one_grid(tmp_path):
    """A radar-optical pair (``--modal``): the optical RGB is read as one grey view, stretched to its 99th
    percentile; both views keep the pixel grid, so the pair's flow is the drawn homography."""
    import rasterio

    from sarreg.cli.train import build_sources
    from sarreg.train.images import load_optical

    base = synth.reflectivity(160, 160, seed=8)
    radar, optical = tmp_path / "radar.tif", tmp_path / "optique.tif"
    with rasterio.open(radar, "w", driver="GTiff", width=160, height=160, count=1, dtype="float32") as ds:
        ds.write(base.astype(np.float32)[None])
    rgb = np.stack([np.clip(base * k * 100, 0, 9000) for k in (1.0, 1.2, 0.8)]).astype(np.uint16)
    with rasterio.open(optical, "w", driver="GTiff", width=160, height=160, count=3, dtype="uint16") as ds:
        ds.write(rgb)
    grey = load_optical(optical)
    assert grey.shape == (160, 160) and np.isfinite(grey).all()
    # brighter optical pixels are brighter views (a monotonic stretch of the mean of the bands)
    order = np.argsort(rgb.astype(np.float64).mean(axis=0).ravel())
    assert np.all(np.diff(grey.ravel()[order]) >= -1e-3 * grey.max())
    sources, _ = build_sources([str(radar)], [], False, 96, 0, {"modal": 0.4}, modal=[(str(radar), str(optical))])
    src = next(s for s in sources if s.kind == "modal")
    assert src.weight == 0.4 and src.describe() == "1 radar-optical pairs"
    seen = set()
    for seed in range(6):
        v1, v2, syn = src.views(np.random.default_rng(seed), {})
        assert not syn and v1.shape == v2.shape == (160, 160)
        seen.add(bool(np.array_equal(v1, grey)))
    assert seen == {True, False}  # either view can be the optical one
    pair = make_pair(v1, v2, np.random.default_rng(3), PairConfig(crop=96))
    assert np.isfinite(pair["aflow"][0]).mean() > 0.25
    with pytest.raises(InputError, match="--modal needs two image files"):
        build_sources([], [], True, 96, 0, {}, modal=[(str(radar), str(tmp_path / "missing.tif"))])


def test_freeze_bn_keeps_the_stored_statistics_and_learns_the_rest(tmp_path):
    """``--freeze-bn``: a fine-tune normalises with the stored BatchNorm statistics and keeps them (also after a
    validation, which switches the network to inference mode and back); the convolutions still learn."""
    from sarreg.model.weights import random_model, save_checkpoint
    from sarreg.train.loop import TrainConfig, train

    m = random_model(mchan=2, seed=4)
    init = save_checkpoint(tmp_path / "init.pt", m.net, m.arch, 2, 1)
    start = {k: v.clone() for k, v in load_model(init).net.state_dict().items()}
    runs = {}
    for frozen in (True, False):
        cfg = TrainConfig(iterations=2, batch=2, crop=64, mchan=2, workers=0, threads=1, val_every=1, val_size=64,
                          val_top_k=50, val_pairs=1, init=str(init), freeze_bn=frozen, lr=1e-3)
        train([Source("synthetic", 1.0, size=128)], tmp_path / f"run{frozen}", cfg, progress=False)
        runs[frozen] = load_model(tmp_path / f"run{frozen}" / "last.pt").net.state_dict()
    stats = [k for k in start if k.endswith(("running_mean", "running_var"))]
    learned = [k for k in start if k.endswith(".weight") and start[k].dtype.is_floating_point]
    assert stats and all(torch.equal(runs[True][k], start[k]) for k in stats)
    assert any(not torch.equal(runs[False][k], start[k]) for k in stats)
    assert learned and all(not torch.equal(runs[True][k], start[k]) for k in learned if k.startswith("ops."))


def test_training_reads_a_bands_scale_offset_and_unit_as_register_does(tmp_path):
    """int16 dB stored as (dB + 40) x 100 with scale 0.01, offset -40 and unit dB: the training reader gives the power
    those values mean, as registration reads them (``sarreg.io.units``), not the stored numbers as amplitude."""
    import rasterio

    db = np.array([[-20.0, -10.0], [-5.0, 0.0]])
    raw = np.round((db + 40) * 100).astype(np.int16)
    path = tmp_path / "scaled.tif"
    with rasterio.open(path, "w", driver="GTiff", width=2, height=2, count=1, dtype="int16") as ds:
        ds.write(raw, 1)
        ds.scales, ds.offsets, ds.units = (0.01,), (-40.0,), ("dB",)
    assert np.allclose(load_power(path), 10 ** (db / 10), rtol=1e-4)


@pytest.mark.parametrize("damage", ["truncated", "not_a_checkpoint", "no_state_dict"])
def test_resume_from_a_damaged_last_pt_is_one_line(tmp_path, damage):
    """--resume with a last.pt cut short (a copy interrupted, a full disk elsewhere) or not a checkpoint: one error
    line naming it, exit 1 (it was torch's RuntimeError / UnpicklingError traceback); the file is left as it was."""
    from click.testing import CliRunner

    from sarreg.cli import cli
    from sarreg.model.weights import random_model, save_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    last = run / "last.pt"
    m = random_model("Fast_Quad_L2Net_ConfCFS", 2, seed=0)
    save_checkpoint(last, m.net, m.arch, m.mchan, m.in_channels)
    if damage == "truncated":
        last.write_bytes(last.read_bytes()[:20000])
    elif damage == "not_a_checkpoint":
        last.write_text("not a checkpoint")
    else:
        torch.save({"weights": 1}, last)
    before = last.read_bytes()
    r = CliRunner().invoke(cli, ["train", "--resume", "--iterations", "2", "--batch", "2", "--crop", "64", "--mchan",
                                 "2", "--workers", "0", "--out", str(run)])
    lines = [ln for ln in r.output.strip().splitlines() if ln.startswith("sarreg:") or "Error" in ln]
    assert r.exit_code == 1 and len(lines) == 1, r.output
    assert lines[0].startswith(f"sarreg: error: {last}: ") and "cannot resume" in lines[0], lines[0]
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert last.read_bytes() == before


def test_export_command_errors_are_one_line(tmp_path):
    """``python -m sarreg.train.export SRC DST`` (the README's way to a shippable file): a missing SRC or a DST in a
    folder that does not exist is one line on stderr, exit 1, nothing written (it was a traceback ending in
    WeightsError / torch's RuntimeError 'Parent directory ... does not exist'); a good SRC exports a file that
    loads."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from sarreg.model.weights import random_model, save_checkpoint

    m = random_model("Fast_Quad_L2Net_ConfCFS", 2, seed=0)
    src = save_checkpoint(tmp_path / "last.pt", m.net, m.arch, m.mchan, m.in_channels)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sarreg.train.export", *args], capture_output=True, text=True,
                              timeout=300, env=env)

    for a, needle in (((str(tmp_path / "none.pt"), str(tmp_path / "o.pt")), "none.pt: weights file not found"),
                      ((str(src), str(tmp_path / "nodir" / "o.pt")), "nodir/o.pt: output folder")):
        p = run(*a)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 1 and len(lines) == 1 and lines[0].startswith("sarreg: error: "), p.stderr
        assert needle in lines[0], lines[0]
    assert not (tmp_path / "nodir").exists() and not (tmp_path / "o.pt").exists()
    p = run(str(src), str(tmp_path / "o.pt"))
    assert p.returncode == 0, p.stderr
    assert load_model(tmp_path / "o.pt").arch == m.arch


@pytest.mark.parametrize("opt,value", [("--val-every", "0"), ("--workers", "-1"), ("--val-holdout", "-1"),
                                       ("--val-pairs", "0")])
def test_train_counts_out_of_range_are_usage_errors(tmp_path, opt, value):
    """--val-every 0 (ZeroDivisionError traceback at the first step, after the start-up validation, a run folder
    left), --workers -1 (torch's ValueError traceback), --val-holdout -1 (every two-date pair trained on, none
    validated) and --val-pairs 0 (a run with NaN validation rows, no best.pt, "best validation M-score -1", exit 0):
    one usage line, exit 2, no folder; the library refuses all but --val-holdout as well."""
    from click.testing import CliRunner

    from sarreg.cli import cli
    from sarreg.train.loop import TrainConfig, check_train

    out = tmp_path / "o"
    r = CliRunner().invoke(cli, ["train", "--iterations", "2", "--batch", "2", "--crop", "64", "--mchan", "2",
                                 "--out", str(out), opt, value])
    lines = [ln for ln in r.output.strip().splitlines() if ln]
    assert r.exit_code == 2 and len(lines) == 1 and opt in lines[0], r.output
    assert not out.exists()
    if opt != "--val-holdout":
        key = opt[2:].replace("-", "_")
        with pytest.raises(InputError, match=key):
            check_train(out, TrainConfig(**{key: int(value)}), False)
