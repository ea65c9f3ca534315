"""Training loop: data loader over generated pairs, Adam, checkpoints, CSV log, curve plot, validation.

Resumable: ``last.pt`` (our checkpoint format + optimizer state and iteration in extra keys) is written every
``checkpoint_minutes`` and on SIGTERM/SIGINT; ``best.pt`` keeps the weights with the best validation score.
Sample ``i`` of the run is generated from ``np.random.default_rng([seed, i])``, so a resumed run continues the
same data stream.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from sarreg.errors import InputError, Interrupted, OutputError, WeightsError
from sarreg.extract import resolve_device  # the one device resolver (training and inference)
from sarreg.network import native_bf16
from sarreg.model.r2d2 import build_network
from sarreg.model.weights import SAR_MEAN, SAR_STD, Model, save_checkpoint
from sarreg.train.atrous import full_resolution_copy, reestimate_batchnorm
from sarreg.train.curves import plot_curves, trim_log
from sarreg.train.losses import LossWeights, NeighbourhoodSampler, R2D2Loss
from sarreg.train.pairs import PairConfig, Source, sample_pair
from sarreg.train.validate import evaluate, make_validation_set  # (re-exported: scripts import them here)
from sarreg.train.widen import widen_network

log = logging.getLogger(__name__)

ARCHITECTURES = ("Fast_Quad_L2Net_ConfCFS", "Quad_L2Net_ConfCFS")  # trainable networks (sarreg.model.r2d2)
RUN_FILES = ("best.pt", "train_log.csv", "val_log.csv")  # what a run writes besides last.pt


@dataclass
class TrainConfig:
    """Everything that defines a run (stored in the checkpoint's ``training`` entry)."""

    iterations: int = 1500
    arch: str = ARCHITECTURES[0]  # Fast (half-resolution trunk) or the full-resolution network
    batch: int = 8
    crop: int = 160
    mchan: int = 4
    lr: float = 1e-4
    weight_decay: float = 5e-4
    seed: int = 0
    threads: int = 2
    workers: int = 1
    device: str = "auto"
    w_reliability: float = 1.0
    w_cosim: float = 1.0
    w_peaky: float = 1.0
    w_sharpen: float = 0.0
    w_ap: float = 0.0
    maxpool_pos: bool = True
    pos_d: int = 3  # AP loss: positives within pos_d px of the true position, negatives from neg_d px (R2D2: 3, 5)
    neg_d: int = 5
    checkpoint_minutes: float = 5.0
    val_every: int = 100
    val_size: int = 256
    val_top_k: int = 500
    val_pairs: int = 8
    max_minutes: float = 0.0  # stop (and save) after this wall time; 0 = no limit
    rel_lr_mult: float = 1.0  # learning-rate multiplier of the reliability head (clf)
    lr_decay_from: int = 0  # from this iteration (> 0) the lr follows a cosine down to 0 at ``iterations``
    amp: bool = False  # bfloat16 autocast for the convolution trunk (heads and losses stay float32)
    init: str = ""  # start from the weights of this checkpoint (fine-tuning; fresh optimizer, iteration 0)
    bn_batches: int = 25  # training batches that re-estimate BatchNorm statistics after a Fast -> full conversion
    val_rank: str = "rep_rel"  # validation keypoint ranking: "rep_rel" (rep x rel) or "rep" (constant reliability)
    sensor: float = 0.0  # per-view probability of another sensor's look (sarreg.train.looks.sensor_look)
    distort: float = 0.0  # probability of a smooth non-projective distortion (sarreg.train.looks.smooth_distortion)
    terrain: float = 0.0  # probability that a synthetic scene is mountains (sarreg.synth.terrain)
    season: float = 0.0  # probability of strong temporal change of the second view (sarreg.train.looks.seasonal_change)
    polar: float = 0.0  # probability of a cross-polarisation pair (sarreg.train.looks.cross_pol_look, channel pairs)
    jpeg: float = 0.0  # per-view probability of an 8-bit JPEG file (sarreg.train.looks.jpeg_look)
    single_look: float = 0.0  # per-view probability of 1-2-look extra speckle on real pairs (PairConfig.single_look)
    near_identity: float = 0.0  # probability of a georeferenced-style near-identity warp (PairConfig.near_identity)
    contrast: float = 0.0  # probability of a random intensity transfer curve (sarreg.train.looks.contrast_look)
    freeze_bn: bool = False  # BatchNorm layers normalise with their stored statistics (as at inference), not updated


# ------------------------------------------------------------------------------------------------------ data
class PairDataset(torch.utils.data.Dataset):
    """Sample i -> (img1 1xHxW, img2 1xHxW, aflow 2xHxW) float32 tensors, deterministic in (seed, i)."""

    def __init__(self, sources: Sequence[Source], pair_cfg: PairConfig, seed: int, length: int) -> None:
        self.sources = list(sources)
        self.cfg = pair_cfg
        self.seed = int(seed)
        self.length = int(length)
        self._cache: dict = {}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, int(i)])
        p = sample_pair(self.sources, rng, self.cfg, self._cache)
        return (torch.from_numpy(p["img1"])[None], torch.from_numpy(p["img2"])[None], torch.from_numpy(p["aflow"]))


class _RangeSampler(torch.utils.data.Sampler):
    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def _worker_init(_: int) -> None:
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


# ------------------------------------------------------------------------------------------------------ train
def training_mode(net: torch.nn.Module, freeze_bn: bool = False) -> torch.nn.Module:
    """``net`` in training mode; with ``freeze_bn`` its BatchNorm layers stay in inference mode: a fine-tune then
    normalises as inference does (the stored statistics, not each half-batch's own) and keeps those statistics;
    the convolutions (and any BatchNorm scales) still learn."""
    net.train()
    if freeze_bn:
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    return net


@dataclass
class RunState:
    iteration: int = 0
    best: float = -1.0
    history: list[dict[str, float]] = field(default_factory=list)


def _save(path: Path, net, cfg: TrainConfig, state: RunState, data_desc: list[str], opt=None, elapsed: float = 0.0,
          val: dict | None = None, gen: torch.Generator | None = None) -> None:
    training = {"config": dataclasses.asdict(cfg), "iteration": state.iteration, "data": data_desc,
                "validation": val or {}, "elapsed_s": round(elapsed, 1), "saved_utc": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    extra = None
    if opt is not None:
        names = {id(p): n for n, p in net.named_parameters()}
        order = [names[id(p)] for g in opt.param_groups for p in g["params"]]
        extra = {"optimizer": opt.state_dict(), "optimizer_params": order, "iteration": state.iteration,
                 "best_val": state.best, "val_history": json.dumps(state.history), "elapsed_s": float(elapsed)}
        if gen is not None:  # the loss's sampler: a resumed run draws what the uninterrupted one would have
            extra["sampler_state"] = gen.get_state()
    save_checkpoint(path, net, cfg.arch, cfg.mchan, 1, SAR_MEAN, SAR_STD, training=training, extra=extra)


def learning_rate(cfg: TrainConfig, iteration: int) -> float:
    """The lr of the step after ``iteration`` steps: ``cfg.lr``, from ``cfg.lr_decay_from`` on a cosine down to 0
    at ``cfg.iterations``. Why: a fine-tune at a constant lr ends wherever its last noisy steps left it; an annealed
    end settles the weights (the lr is a function of the iteration, so a resumed run follows the same curve)."""
    start = cfg.lr_decay_from
    if start <= 0 or iteration < start or cfg.iterations <= start:
        return cfg.lr
    t = min(1.0, (iteration - start) / (cfg.iterations - start))
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * t))


def _make_optimizer(net: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam (L2 weight decay added to the gradient, as the reference); the reliability head may get its own lr."""
    head = [p for n, p in net.named_parameters() if n.startswith("clf.")]
    rest = [p for n, p in net.named_parameters() if not n.startswith("clf.")]
    opt = torch.optim.Adam([{"params": rest}, {"params": head}], lr=cfg.lr, weight_decay=cfg.weight_decay)
    _set_lr(opt, cfg, cfg.lr)
    return opt


def _set_lr(opt: torch.optim.Optimizer, cfg: TrainConfig, lr: float) -> None:
    """The lr of the trunk and ``lr * cfg.rel_lr_mult`` of the reliability head (the groups of ``_make_optimizer``)."""
    for group, mult in zip(opt.param_groups, (1.0, cfg.rel_lr_mult)):
        group["lr"] = lr * mult


def _load_optimizer_state(opt: torch.optim.Optimizer, net: torch.nn.Module, saved: dict,
                          names: list[str] | None) -> None:
    """Restore Adam moments per parameter (by name), whatever the param-group layout of either run;
    learning rates and weight decay come from the current options."""
    params = dict(net.named_parameters())
    if names is None:  # older checkpoints: one group in net.parameters() order
        names = [n for n, _ in net.named_parameters()]
    for k, st in saved.get("state", {}).items():
        p = params[names[int(k)]]
        opt.state[p] = {kk: (vv.clone().to(p.device) if kk != "step" else vv.clone())
                        if torch.is_tensor(vv) else vv for kk, vv in st.items()}


def _forward(net, x: torch.Tensor, amp: bool) -> dict[str, torch.Tensor]:
    """Training forward pass; with ``amp`` the trunk runs in bfloat16 (channels-last), the heads in float32."""
    if not amp:
        return net(x)
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        raw = net.backbone(x.contiguous(memory_format=torch.channels_last))
    return net.heads(raw.float())


def _init_weights(net: torch.nn.Module, cfg: TrainConfig) -> bool:
    """Load ``cfg.init`` into ``net``: as is, widened (Net2WiderNet) and / or converted from the Fast network to
    the full-resolution one (:mod:`sarreg.train.atrous`); returns True when converted (BatchNorm to re-estimate)."""
    try:
        ck = torch.load(cfg.init, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a file that is not a checkpoint
        raise WeightsError(f"{cfg.init}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ck, dict) or "mchan" not in ck or "state_dict" not in ck:
        raise WeightsError(f"{cfg.init}: not a sarreg checkpoint (--init takes our format, e.g. a run's last.pt)")
    init_mchan, init_arch = int(ck["mchan"]), str(ck.get("arch", ARCHITECTURES[0]))
    convert = init_arch != cfg.arch
    if convert and (init_arch, cfg.arch) != ARCHITECTURES:
        raise WeightsError(f"{cfg.init}: a {init_arch} checkpoint cannot initialise a {cfg.arch} network")
    if not 0 < init_mchan <= cfg.mchan:
        raise WeightsError(f"{cfg.init}: mchan {init_mchan} is wider than --mchan {cfg.mchan}")
    src = build_network(init_arch, in_channels=1, mchan=init_mchan)
    src.load_state_dict(ck["state_dict"])
    if convert:
        src = full_resolution_copy(src)
        log.info("converted %s -> %s (same weights, full resolution)", init_arch, cfg.arch)
    if init_mchan == cfg.mchan:
        net.load_state_dict(src.state_dict())
    else:  # more capacity, same function at the start (Net2WiderNet)
        widen_network(src, net, seed=cfg.seed)
        log.info("widened mchan %d -> %d", init_mchan, cfg.mchan)
    log.info("initialised from %s", cfg.init)
    return convert


def _load_last(path: Path) -> dict:
    """The run's last.pt for ``--resume``; a truncated or foreign file is one error line (not torch's traceback)."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a damaged file
        msg = (str(e).strip().splitlines() or [""])[0][:160]
        raise WeightsError(f"{path}: not a readable checkpoint, cannot resume ({type(e).__name__}"
                           f"{': ' + msg if msg else ''})") from None
    if not isinstance(ck, dict) or "state_dict" not in ck:
        raise WeightsError(f"{path}: not a sarreg training checkpoint, cannot resume")
    return ck


def check_train(out: Path, cfg: TrainConfig, resume: bool) -> None:
    """Refuse (one-line errors) options that cannot train, a run folder that holds a run (without ``resume``; also
    one killed before its first last.pt: best.pt, logs), ``resume`` without last.pt and a missing ``--init``
    checkpoint, before anything is written."""
    if cfg.crop % 2 or cfg.crop < 48:
        raise InputError(f"crop must be even and >= 48 px, got {cfg.crop}")
    if cfg.iterations < 1 or cfg.batch < 1:
        raise InputError(f"iterations and batch must be >= 1, got {cfg.iterations} and {cfg.batch}")
    if cfg.val_every < 1 or cfg.workers < 0:  # (0 would divide by zero at the first step; torch refuses < 0 workers)
        raise InputError(f"val_every must be >= 1 and workers >= 0, got {cfg.val_every} and {cfg.workers}")
    if cfg.val_pairs < 1:  # (no pair: every score NaN, best.pt never written, "best M-score -1")
        raise InputError(f"val_pairs must be >= 1 (best.pt is chosen on them), got {cfg.val_pairs}")
    if not resume and (Path(out) / "last.pt").exists():
        raise OutputError(f"{out}: holds a training run (last.pt); --resume continues it, or give another --out")
    # a run stopped (killed) before its first last.pt: starting again here would replace its best.pt and logs
    found = [n for n in RUN_FILES if (Path(out) / n).exists()]
    best = Path(out) / "best.pt"
    hint = f"; --init {best} --out NEW fine-tunes from its best weights" if best.is_file() else ""
    if not resume and found:
        raise OutputError(f"{out}: holds a training run without last.pt ({', '.join(found)}), which cannot be "
                          f"resumed; give another --out{hint}")
    if resume and not (Path(out) / "last.pt").is_file():  # (best.pt has no optimizer state or iteration)
        raise WeightsError(f"{Path(out) / 'last.pt'}: nothing to resume from{hint}")
    if cfg.init and not Path(cfg.init).is_file():
        raise WeightsError(f"{cfg.init}: --init checkpoint not found")


def train(sources: Sequence[Source], out_dir: str | Path, cfg: TrainConfig = TrainConfig(),
          val_sources: Sequence[Source] | None = None, resume: bool = False, progress: bool = True,
          pair_cfg: PairConfig | None = None) -> RunState:
    """Run (or resume) a training; returns the final state. Files in ``out_dir``: last.pt, best.pt,
    train_log.csv, val_log.csv, curves.png."""
    from tqdm import tqdm

    out = Path(out_dir)
    check_train(out, cfg, resume)  # the options first: a refused run leaves no folder behind
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create output folder ({e.strerror})") from None
    torch.set_num_threads(max(1, cfg.threads))
    torch.set_flush_denormal(True)  # denormal floats make CPU convolutions/backward many times slower
    device = resolve_device(cfg.device)
    if cfg.amp and not native_bf16(device):
        log.warning("--amp ignored: %s has no native bfloat16 (AVX512-BF16 / AMX / CUDA), where it would make each "
                    "iteration several times slower; training in float32", device)
        cfg = dataclasses.replace(cfg, amp=False)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    if cfg.arch not in ARCHITECTURES:
        raise InputError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {cfg.arch!r}")
    net = training_mode(build_network(cfg.arch, in_channels=1, mchan=cfg.mchan).to(device), cfg.freeze_bn)
    if cfg.amp:
        net = net.to(memory_format=torch.channels_last)  # faster oneDNN / cuDNN convolutions
    model = Model(net=net, arch=cfg.arch, mchan=cfg.mchan, in_channels=1, mean=list(SAR_MEAN), std=list(SAR_STD))
    opt = _make_optimizer(net, cfg)
    state = RunState()
    elapsed0 = 0.0
    last_path, best_path = out / "last.pt", out / "best.pt"
    if cfg.val_rank not in ("rep_rel", "rep"):
        raise InputError(f"val_rank must be 'rep_rel' or 'rep', got {cfg.val_rank!r}")
    ngh = NeighbourhoodSampler.ngh
    if not 0 <= cfg.pos_d < cfg.neg_d <= ngh:
        raise InputError(f"--pos-d / --neg-d must satisfy 0 <= pos_d < neg_d <= {ngh} (the sampled neighbourhood), "
                         f"got {cfg.pos_d} / {cfg.neg_d}")
    converted = False
    if cfg.init and not resume:
        converted = _init_weights(net, cfg)
    if resume:
        ck = _load_last(last_path)
        if int(ck.get("mchan", -1)) != cfg.mchan:
            raise WeightsError(f"{last_path}: mchan {ck.get('mchan')} differs from --mchan {cfg.mchan}")
        if str(ck.get("arch", ARCHITECTURES[0])) != cfg.arch:
            raise WeightsError(f"{last_path}: a {ck.get('arch')} run; resume it with --arch {ck.get('arch')}")
        net.load_state_dict(ck["state_dict"])
        if "optimizer" in ck:
            _load_optimizer_state(opt, net, ck["optimizer"], ck.get("optimizer_params"))
        state.iteration = int(ck.get("iteration", 0))
        state.best = float(ck.get("best_val", -1.0))
        state.history = json.loads(ck.get("val_history", "[]"))
        elapsed0 = float(ck.get("elapsed_s", 0.0))
        log.info("resumed from %s at iteration %d (best val %.4f)", last_path, state.iteration, state.best)

    pcfg = pair_cfg or PairConfig(crop=cfg.crop, sensor=cfg.sensor, distort=cfg.distort, season=cfg.season,
                                    polar=cfg.polar, jpeg=cfg.jpeg, single_look=cfg.single_look,
                                    near_identity=cfg.near_identity, contrast=cfg.contrast)
    data_desc = [f"{s.describe()} (weight {s.weight:g})" for s in sources]
    if converted:  # BatchNorm statistics of the full-resolution copy, from training pairs the run will not see
        bn_data = PairDataset(sources, pcfg, cfg.seed + 7_919, cfg.bn_batches * cfg.batch)
        bn_loader = torch.utils.data.DataLoader(bn_data, batch_size=cfg.batch)
        n = reestimate_batchnorm(net, (model.normalise(torch.cat([a, b])).to(device) for a, b, _ in bn_loader))
        training_mode(net, cfg.freeze_bn)
        log.info("BatchNorm statistics re-estimated on %d batches", n)
    val_pairs = make_validation_set(val_sources or sources, cfg.val_size, cfg.val_pairs)
    criterion = R2D2Loss(LossWeights(cfg.w_reliability, cfg.w_cosim, cfg.w_peaky, cfg.w_sharpen, cfg.w_ap),
                         NeighbourhoodSampler(maxpool_pos=cfg.maxpool_pos, pos_d=cfg.pos_d, neg_d=cfg.neg_d))
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + state.iteration)
    if resume and "sampler_state" in ck:
        gen.set_state(ck["sampler_state"])

    start = state.iteration
    if start >= cfg.iterations:
        log.info("already at iteration %d >= %d", start, cfg.iterations)
        return state
    ds = PairDataset(sources, pcfg, cfg.seed, cfg.iterations * cfg.batch)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=cfg.batch, sampler=_RangeSampler(start * cfg.batch, cfg.iterations * cfg.batch),
        num_workers=cfg.workers, worker_init_fn=_worker_init if cfg.workers else None,
        persistent_workers=False, prefetch_factor=2 if cfg.workers else None, drop_last=True,
        # spawn, not fork: OpenCV / OpenMP thread pools used in this process deadlock in a forked child
        multiprocessing_context="spawn" if cfg.workers else None)

    log_csv, val_csv = out / "train_log.csv", out / "val_log.csv"
    fields = ["iteration", "time_s", "loss", "reliability", "cosim", "peaky", "sharpen", "ap", "lr", "s_per_it"]
    if resume:  # (rows of iterations past last.pt, which run again now)
        for path in (log_csv, val_csv):
            trim_log(path, state.iteration)
    new_log = not log_csv.is_file() or not resume
    flog = open(log_csv, "w" if new_log else "a", newline="", buffering=1)  # (a row on disk per iteration)
    wlog = csv.DictWriter(flog, fieldnames=fields)
    if new_log:
        wlog.writeheader()
    vfields = ["iteration", "mma3", "mscore", "matches"]
    new_val = not val_csv.is_file() or not resume
    fval = open(val_csv, "w" if new_val else "a", newline="")
    wval = csv.DictWriter(fval, fieldnames=vfields)
    if new_val:
        wval.writeheader()

    stop = {"signum": 0}

    def _handler(signum, _frame):
        log.warning("signal %d: saving checkpoint and stopping", signum)
        stop["signum"] = signum

    # (SIGHUP too: the command-wide handler stops at any point, inside ``opt.step()`` it saved half-updated weights)
    # (not a signal the launcher ignores: ``nohup sarreg train`` outlives its terminal)
    old = {s: signal.signal(s, _handler) for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None))
           if s and signal.getsignal(s) is not signal.SIG_IGN}

    def validate() -> None:
        v = evaluate(net, model, val_pairs, device, cfg.val_top_k, use_reliability=cfg.val_rank == "rep_rel")
        training_mode(net, cfg.freeze_bn)
        row = {"iteration": state.iteration, **{k: round(v[k], 5) for k in vfields[1:]}}
        wval.writerow(row)
        fval.flush()
        state.history.append(row)
        log.info("validation at %d: %s", state.iteration, row)
        if v["mscore"] > state.best:
            state.best = v["mscore"]
            _save(best_path, net, cfg, state, data_desc, None, elapsed0 + time.time() - t0, row)

    t0 = time.time()
    last_ck = time.time()
    if start == 0:
        validate()  # the random-init baseline
    bar = tqdm(total=cfg.iterations, initial=start, desc="train", unit="it", mininterval=10, smoothing=0.05,
               disable=not progress)
    t_it = time.time()
    try:
        for img1, img2, aflow in loader:
            img1, img2, aflow = img1.to(device), img2.to(device), aflow.to(device)
            out1 = _forward(net, model.normalise(img1), cfg.amp)
            out2 = _forward(net, model.normalise(img2), cfg.amp)
            loss, parts = criterion(out1, out2, aflow, gen)
            lr = learning_rate(cfg, state.iteration)
            _set_lr(opt, cfg, lr)
            opt.zero_grad(set_to_none=True)
            if torch.isfinite(loss):
                loss.backward()
                opt.step()
            else:
                log.warning("non-finite loss at iteration %d, step skipped", state.iteration)
            state.iteration += 1
            now = time.time()
            wlog.writerow({"iteration": state.iteration, "time_s": round(elapsed0 + now - t0, 2),
                           "loss": round(float(loss.detach()), 5),
                           **{k: round(parts.get(k, float("nan")), 5)
                              for k in ("reliability", "cosim", "peaky", "sharpen", "ap")},
                           "lr": lr, "s_per_it": round(now - t_it, 3)})
            t_it = now
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", best=f"{state.best:.3f}", refresh=False)
            if state.iteration % cfg.val_every == 0 or state.iteration == cfg.iterations:
                validate()
            timed_out = cfg.max_minutes > 0 and (now - t0) / 60 > cfg.max_minutes
            if now - last_ck > cfg.checkpoint_minutes * 60 or stop["signum"] or timed_out:
                flog.flush()
                _save(last_path, net, cfg, state, data_desc, opt, elapsed0 + now - t0, gen=gen)
                plot_curves(log_csv, val_csv, out / "curves.png")
                last_ck = now
            if stop["signum"] or timed_out:
                break
    finally:
        bar.close()
        _save(last_path, net, cfg, state, data_desc, opt, elapsed0 + time.time() - t0, gen=gen)
        flog.close()
        fval.close()
        try:
            plot_curves(log_csv, val_csv, out / "curves.png")
        except Exception as e:  # plotting must never lose a run
            log.warning("could not plot curves: %s", e)
        for s, h in old.items():
            signal.signal(s, h)
    if stop["signum"]:  # saved; now interrupted as any command is
        raise Interrupted(stop["signum"])
    return state
