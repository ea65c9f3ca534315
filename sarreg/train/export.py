"""Export a training checkpoint as a shippable model, optionally calibrating the reliability head.

Calibration (why): after a short training the reliability head is informative but low everywhere (its loss
only asks r -> 1 where AP > 0.5), so the extractor's default threshold (rel > 0.7) would keep no keypoint.
We measure, on the fixed held-out validation pairs, per-query AP and raw reliability r, find the smallest
threshold t such that the queries with r >= t have mean AP >= ``target_ap``, and add
delta = logit(0.7) - logit(t) to the reliability logit (bias of the second ``clf`` output). This is a monotone
re-scaling: the ranking of pixels is unchanged; "r > 0.7" then means "as reliable as AP >= target_ap".

``python -m sarreg.train.export runs/v4/it11817.pt models/sarreg_fast_sar_v4.pt --calibrate [--ombria DIR]``
``python -m sarreg.train.export runs/v4/it11817.pt models/sarreg_fast_sar_v4.pt --constant-reliability 0.75``

Averaging (``--average B.pt C.pt ...``): the exported weights are the uniform mean of ``src`` and those checkpoints
(a "model soup" / stochastic weight averaging). Why: snapshots of one training lineage lie in one basin, and their
mean is a flatter, better-generalising solution than any one snapshot (Izmailov et al. 2018, Wortsman et al. 2022);
the batch-norm running statistics are averaged too.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from sarreg.errors import WeightsError
from sarreg.model.weights import Model, load_model, save_checkpoint
from sarreg.train.losses import NeighbourhoodSampler, ap_quantized


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _sample_rel(model: Model, pairs: Sequence[dict], target_ap: float, seed: int = 0) -> dict:
    """Per-query AP and raw img1 reliability with identical query positions."""
    net = model.net.eval()
    aps, rels = [], []
    with torch.no_grad():
        for i, p in enumerate(pairs):
            o1 = net(model.normalise(torch.from_numpy(p["img1"])[None, None]))
            o2 = net(model.normalise(torch.from_numpy(p["img2"])[None, None]))
            af = torch.from_numpy(p["aflow"])[None]
            # maxpool_pos=False -> the sampler's confidence is rel1 at the query pixel, exactly what we need;
            # AP is computed with the training sampler's definition (maxpool positives) on the same queries.
            g1 = torch.Generator().manual_seed(seed + i)
            g2 = torch.Generator().manual_seed(seed + i)
            sc, lab, mk, _ = NeighbourhoodSampler(subq=4)(o1["descriptors"], o2["descriptors"], o1["reliability"],
                                                           o2["reliability"], af, g1)
            _, _, mk2, conf1 = NeighbourhoodSampler(subq=4, maxpool_pos=False)(
                o1["descriptors"], o2["descriptors"], o1["reliability"], o2["reliability"], af, g2)
            aps.append(ap_quantized(sc[mk], lab[mk]).numpy())
            rels.append(conf1[mk2].numpy())
    ap, r = np.concatenate(aps), np.concatenate(rels)
    order = np.argsort(-r)
    cum = np.cumsum(ap[order]) / np.arange(1, len(ap) + 1)
    ok = np.nonzero(cum >= target_ap)[0]
    k = int(ok.max()) if ok.size else max(0, len(r) // 10 - 1)
    return {"threshold": float(r[order[k]]), "fraction_kept": (k + 1) / len(r), "mean_ap_kept": float(cum[k]),
            "mean_ap_all": float(ap.mean()), "queries": int(len(r)), "target_ap": target_ap,
            "corr_r_ap": float(np.corrcoef(r, ap)[0, 1]) if len(r) > 2 else float("nan")}


def average_weights(model: Model, others: Sequence[str | Path]) -> None:
    """Replace ``model``'s weights and batch-norm statistics in place by their mean with those of ``others``."""
    nets = [model.net] + [load_model(o).net for o in others]
    for o, net in zip(others, nets[1:]):
        if type(net) is not type(model.net) or net.mchan != model.net.mchan or net.in_channels != model.net.in_channels:
            raise WeightsError(f"{o}: another architecture or width than the first checkpoint; cannot average")
    states = [n.state_dict() for n in nets]
    mean = {k: (sum(st[k] for st in states) / len(states) if v.dtype.is_floating_point else v)
            for k, v in states[0].items()}
    model.net.load_state_dict(mean)


def export(src: str | Path, dst: str | Path, calibrate: bool = False, pairs: list[dict] | None = None,
           target_ap: float = 0.5, constant_reliability: float | None = None, store_threshold: bool = False,
           average: Sequence[str | Path] = ()) -> dict:
    """Write ``dst`` (our format, no optimizer state) from training checkpoint ``src``; returns the calibration.

    ``constant_reliability``: replace the reliability head by a constant (clf weights 0, bias set so that the
    softmax gives this value) -- for a head that does not predict descriptor AP on validation data; detection
    then ranks by repeatability alone. ``store_threshold`` (with ``calibrate``): the checkpoint also stores the
    detection threshold rel > 0.7 (= "AP >= target_ap" after the calibration), which the extractor then applies
    before ranking; without it every repeatability maximum is ranked by reliability x repeatability.
    """
    model = load_model(src)
    training = dict(model.training)
    if average:
        average_weights(model, average)
        training["averaged_with"] = [Path(a).name for a in average]
    cal: dict = {}
    if constant_reliability is not None:
        if not 0 < constant_reliability < 1:
            raise ValueError(f"constant reliability must be in (0, 1), got {constant_reliability}")
        with torch.no_grad():
            model.net.clf.weight.zero_()
            model.net.clf.bias.copy_(torch.tensor([0.0, _logit(constant_reliability)]))
        cal = {"constant_reliability": float(constant_reliability)}
        training["reliability_head"] = cal
    elif calibrate:
        cal = _sample_rel(model, pairs, target_ap)
        delta = _logit(0.7) - _logit(cal["threshold"])
        with torch.no_grad():
            model.net.clf.bias[1] += delta
        cal["logit_shift"] = delta
        training["reliability_calibration"] = cal
    training["exported_from"] = Path(src).name
    rel_thr = 0.7 if calibrate and store_threshold and constant_reliability is None else None
    if rel_thr is not None:
        cal["stored_rel_thr"] = rel_thr
    save_checkpoint(dst, model.net, model.arch, model.mchan, model.in_channels, model.mean, model.std,
                    training=training, rel_thr=rel_thr)
    return cal


def main() -> None:
    """Command line: export a checkpoint (calibrated, averaged or constant reliability) and print the calibration."""
    from sarreg.train.loop import make_validation_set
    from sarreg.train.images import find_date_pairs
    from sarreg.train.pairs import Source

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--ombria", default=None, help="BEFORE/AFTER folder whose last 4 pairs are the held-out ones")
    ap.add_argument("--target-ap", type=float, default=0.5)
    ap.add_argument("--constant-reliability", type=float, default=None)
    ap.add_argument("--average", nargs="+", default=[], metavar="CHECKPOINT",
                    help="export the mean of src and these checkpoints (same architecture and width)")
    ap.add_argument("--store-threshold", action="store_true",
                    help="with --calibrate: store rel_thr 0.7 in the checkpoint (detection keeps only calibrated "
                         "reliable pixels)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    pairs = None
    if a.calibrate:
        srcs = [Source("synthetic", 1.0, size=384)]
        if a.ombria:
            srcs.append(Source("pairs", 1.0, find_date_pairs(a.ombria)[-4:]))
        pairs = make_validation_set(srcs, 256, 8)
    print(export(a.src, a.dst, a.calibrate, pairs, a.target_ap, a.constant_reliability, a.store_threshold,
                 a.average))


if __name__ == "__main__":
    from sarreg.errors import SarregError

    try:
        main()
    except SarregError as e:  # a missing or unreadable SRC, a DST folder that does not exist: one line, no traceback
        raise SystemExit(f"sarreg: error: {e}") from None
