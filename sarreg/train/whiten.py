"""Learned descriptor whitening: a linear projection of a trained model's descriptors fitted on matching training
views, stored in the weights file and applied at extraction (``sarreg.model.weights.Model.describe``).

Why: the descriptors of a small network trained on little data share a common direction (every descriptor has a
large component along it, which inflates all cosine similarities) and vary between two views of one place along
a few directions that speckle, temporal change and the sensor move. The learned whitening of Radenović et al.
(2018, "Fine-tuning CNN image retrieval with no human annotation", sec. 3.3) removes both without retraining:
centre on the mean descriptor, then multiply by C_S^(-1/2), C_S the covariance of the differences of matching
descriptors (shrunk towards its mean eigenvalue, ``shrink``, so that rarely varying directions are not blown
up); the result is L2-normalised again. With all dimensions kept, the rotation of that paper's second step leaves
distances unchanged and is omitted.

Matching views come from ``sarreg.train.pairs.sample_pair`` on the training sources (the same data arguments as
``sarreg train``; the last ``--val-holdout`` two-date pairs stay out, as in training, so the validation sets
built from them stay unseen): keypoints of the first view (3x3 maxima of repeatability, best ``per_pair``), the
descriptors there and at the true positions in the second view.

    python -m sarreg.train.whiten SRC.pt DST.pt DATA... [--pairs 400] [--shrink 0.1] [--seed 1234] [--views training]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from sarreg.errors import WeightsError
from sarreg.model.weights import Model, _torch_load, load_model, weights_path
from sarreg.outputs import write_atomic
from sarreg.train.pairs import PairConfig, Source, sample_pair

# the view diversity of the shipped model's training (models/README.md), so that the whitening learns the
# variation of the pairs users register, not of clean speckle-only views
VIEWS = dict(sensor=0.5, distort=0.3, season=0.5, polar=0.25, jpeg=0.1, single_look=0.3)
VIEW_KEYS = ("sensor", "distort", "season", "polar", "jpeg", "single_look", "near_identity", "contrast")


def training_views(src: str | Path) -> dict[str, float]:
    """The view options (``PairConfig``'s probabilities) that the checkpoint ``src`` was trained with, as its
    training record stores them: a whitening fitted on the views the network learned from (``--views training``),
    contrast curves and near-identity warps included, where ``VIEWS`` is the recipe of the shipped v5."""
    config = ((_torch_load(weights_path(src)).get("training") or {}).get("config") or {})
    views = {k: float(config[k]) for k in VIEW_KEYS if k in config}
    if not views:
        raise WeightsError(f"{src}: no training record with view options (use --views shipped)")
    return views


def _maxima(rep: torch.Tensor, border: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` 3x3 maxima of a repeatability map, ``border`` px from the edge -> (rows, cols)."""
    from sarreg.extract import detect

    allowed = np.zeros(tuple(rep.shape), bool)
    allowed[border:-border, border:-border] = True
    ys, xs = detect(rep, rep, 0.0, 0.0, allowed)
    best = torch.argsort(rep[ys, xs], descending=True)[:k].numpy()
    return ys[best], xs[best]


def collect(model: Model, sources: Sequence[Source], n_pairs: int = 400, crop: int = 256, per_pair: int = 300,
            seed: int = 1234, views: dict | None = None, log_every: int = 50,
            near: Sequence[tuple[float, float]] = (), near_per_pair: int = 40) -> dict[str, np.ndarray]:
    """Descriptors of matching keypoints in ``n_pairs`` training pairs -> {"a", "b": N x D matching rows,
    "others": descriptors at the second views' own keypoints (non-matching), "group"/"group_others": pair index};
    with ``near`` (dx, dy) offsets also "near": M x K x D descriptors of the second view at the true position moved
    by each offset, for the first ``near_per_pair`` matching rows of each pair ("near_index": their rows in "a"),
    for ``precision_scores``."""
    from sarreg.extract import run_network

    rng = np.random.default_rng(seed)
    cfg = PairConfig(crop=crop, **(VIEWS if views is None else views))
    a, b, o, g, go, nr, ni = [], [], [], [], [], [], []
    cache: dict = {}
    t0 = time.time()
    border = 8
    rows = 0  # matching rows so far (where this pair's "near" rows point)
    for k in range(n_pairs):
        p = sample_pair(sources, rng, cfg, cache)
        o1, o2 = run_network(model, p["img1"]), run_network(model, p["img2"])
        ys, xs = _maxima(o1.repeatability, border, per_pair)
        x2, y2 = p["aflow"][0, ys, xs], p["aflow"][1, ys, xs]
        h, w = p["img2"].shape
        ok = (np.isfinite(x2) & np.isfinite(y2) & (x2 >= border) & (y2 >= border)
              & (x2 <= w - 1 - border) & (y2 <= h - 1 - border))
        if ok.sum() < 10:
            continue
        a.append(o1.descriptors_at(ys[ok], xs[ok]))
        b.append(o2.descriptors_at(y2[ok], x2[ok]))
        if near:
            yn, xn = y2[ok][:near_per_pair], x2[ok][:near_per_pair]
            ni.append(rows + np.arange(len(yn)))
            nr.append(np.stack([o2.descriptors_at(yn + dy, xn + dx) for dx, dy in near], 1))
        g.append(np.full(int(ok.sum()), k))
        rows += int(ok.sum())
        y2k, x2k = _maxima(o2.repeatability, border, per_pair)
        o.append(o2.descriptors_at(y2k, x2k))
        go.append(np.full(len(y2k), k))
        if log_every and (k + 1) % log_every == 0:
            print(f"{k + 1} pairs, {sum(len(x) for x in a)} matching descriptors, {time.time() - t0:.0f} s",
                  flush=True)
    if not a:
        raise ValueError("no usable training pairs")
    out = {"a": np.concatenate(a), "b": np.concatenate(b), "others": np.concatenate(o),
           "group": np.concatenate(g), "group_others": np.concatenate(go)}
    if near:
        out["near"], out["near_index"] = np.concatenate(nr), np.concatenate(ni)
    return out


def fit_whitening(a: np.ndarray, b: np.ndarray, others: np.ndarray | None = None,
                  shrink: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(mean, matrix) of the learned whitening from matching rows ``a``/``b`` (and ``others`` for the mean)."""
    x = np.concatenate([a, b] + ([others] if others is not None else []))
    mean = x.mean(0)
    d = (a - b).astype(np.float64)
    cs = d.T @ d / len(d)
    w, v = np.linalg.eigh(cs)
    w = np.maximum(w, 0) + shrink * max(float(w.mean()), 1e-12)
    mat = (v / np.sqrt(w)) @ v.T
    return mean.astype(np.float32), mat.astype(np.float32)


def matching_scores(data: dict[str, np.ndarray], model: Model, groups: np.ndarray) -> dict[str, float]:
    """On pairs ``groups``: the fraction of first-view descriptors whose nearest neighbour among the second view's
    (true positions and own keypoints) is the true one, and the precision and count of mutual nearest neighbours
    (descriptors as ``model.describe`` gives them)."""
    nn_ok, mutual_ok, mutual = [], 0, 0
    for k in groups:
        qa = model.describe(data["a"][data["group"] == k])
        cand = model.describe(np.concatenate([data["b"][data["group"] == k],
                                              data["others"][data["group_others"] == k]]))
        s = qa @ cand.T
        nn, back = s.argmax(1), s.argmax(0)
        idx = np.arange(len(qa))
        m = back[nn] == idx
        nn_ok.append(float((nn == idx).mean()))
        mutual_ok += int((m & (nn == idx)).sum())
        mutual += int(m.sum())
    return {"nn_accuracy": float(np.mean(nn_ok)), "mnn_precision": mutual_ok / max(mutual, 1),
            "mnn_correct": mutual_ok, "mnn": mutual}


# offsets (dx, dy) of the second view around the true position, 1.5-4.2 px away (``precision_scores``)
NEAR = tuple((float(dx), float(dy)) for dx in (-3, -2, -1.5, 0, 1.5, 2, 3) for dy in (-3, -2, -1.5, 0, 1.5, 2, 3)
             if max(abs(dx), abs(dy)) >= 1.5)


def precision_scores(data: dict[str, np.ndarray], model: Model, groups: np.ndarray,
                     radii: Sequence[float] = (1.5, 2.0, 3.0), near: Sequence[tuple[float, float]] = NEAR
                     ) -> dict[str, float]:
    """On pairs ``groups``: the share of first-view descriptors that are more similar to the second view's
    descriptor at the true position than to every one of ``data["near"]`` at least r px away (0.3 px tolerance),
    per radius r (descriptors as ``model.describe`` gives them).

    Why: a single homography fitted to mutual nearest neighbours is only as precise as the descriptors are sharp
    around the true position; matching scores (``matching_scores``) do not show it, and more distinctive but
    smoother descriptors have lost 1 px accuracy while matching more (models/HISTORY.md, stops 16-17)."""
    dist = np.hypot(*np.asarray(near, np.float64).T)
    sel = np.isin(data["group"][data["near_index"]], groups)
    rows = data["near_index"][sel]
    qa, qb = model.describe(data["a"][rows]), model.describe(data["b"][rows])
    nr = data["near"][sel]
    qn = model.describe(nr.reshape(-1, nr.shape[-1])).reshape(nr.shape[0], nr.shape[1], -1)
    true = np.einsum("nd,nd->n", qa, qb)
    other = np.einsum("nd,nkd->nk", qa, qn)
    out = {}
    for r in radii:
        far = (dist > r) | np.isclose(dist, r, atol=0.3)
        out[f"beats_{r:g}px"] = float((true > other[:, far].max(1)).mean()) if far.any() else float("nan")
    return out


def write_whitened(src: str | Path, dst: str | Path, mean: np.ndarray, matrix: np.ndarray,
                   info: dict | None = None) -> Path:
    """Copy the checkpoint ``src`` to ``dst`` with the whitening stored (and ``info`` under training/whitening)."""
    src, dst = weights_path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise WeightsError(f"{dst}: would overwrite the input weights")
    ck = _torch_load(src)
    if ck.get("format") != "sarreg-checkpoint":
        raise WeightsError(f"{src}: whitening is stored in sarreg checkpoints only")
    ck["whitening"] = {"mean": torch.from_numpy(mean), "matrix": torch.from_numpy(matrix)}
    ck.setdefault("training", {})["whitening"] = info or {}
    ck.pop("optimizer", None)
    return write_atomic(dst, lambda tmp: torch.save(ck, tmp))


def add_view_arguments(ap: argparse.ArgumentParser, pairs: int) -> None:
    """The options that say which held-out training views are drawn (shared with ``sarreg.train.precision``)."""
    ap.add_argument("--pairs", type=int, default=pairs)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--val-holdout", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)


def view_sources(a: argparse.Namespace) -> list[Source]:
    """Training sources of ``a.data`` without the last ``a.val_holdout`` two-date pairs; sets the torch threads."""
    from sarreg.cli.train import build_sources

    torch.set_num_threads(a.threads)
    return build_sources(a.data, [], True, a.crop, a.val_holdout, {}, terrain=0.3, polar=0.25)[0]


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: fit the whitening on training views, print held-out matching before / after, write ``dst``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="weights to whiten (exported, as shipped)")
    ap.add_argument("dst")
    ap.add_argument("data", nargs="+", help="training data, as for 'sarreg train'")
    ap.add_argument("--shrink", type=float, default=0.1)
    ap.add_argument("--views", choices=("shipped", "training"), default="shipped",
                    help="training views to fit on: v5's recipe (VIEWS) or those src was trained with")
    add_view_arguments(ap, pairs=400)
    a = ap.parse_args(argv)
    model = load_model(a.src)
    if model.whitening is not None:
        raise SystemExit(f"{a.src}: already whitened")
    views = VIEWS if a.views == "shipped" else training_views(a.src)
    sources = view_sources(a)
    data = collect(model, sources, a.pairs, a.crop, seed=a.seed, views=views, near=NEAR)
    half = data["group"].max() // 2
    fit_part = data["group"] <= half
    mean, mat = fit_whitening(data["a"][fit_part], data["b"][fit_part],
                              data["others"][data["group_others"] <= half], a.shrink)
    held = np.unique(data["group"][~fit_part])
    before = matching_scores(data, model, held) | precision_scores(data, model, held)
    model.whitening = (mean, mat)
    after = matching_scores(data, model, held) | precision_scores(data, model, held)
    print(f"held-out half of the pairs: before {before}\n                            after  {after}")
    # the stored whitening uses every pair
    mean, mat = fit_whitening(data["a"], data["b"], data["others"], a.shrink)
    info = {"pairs": a.pairs, "crop": a.crop, "shrink": a.shrink, "seed": a.seed, "val_holdout": a.val_holdout,
            "views": views, "data": [str(d) for d in a.data], "matching_descriptors": int(len(data["a"])),
            "held_out_half": {"before": before, "after": after}}
    print(write_whitened(a.src, a.dst, mean, mat, info))


if __name__ == "__main__":
    main()
