"""How distinctive and how sharp a model's descriptors are, on held-out training views.

Two figures per model, on ``--pairs`` views drawn like the whitening's (``sarreg.train.whiten.collect``: training
sources without the last ``--val-holdout`` two-date pairs, the view diversity of the shipped model's training):
matching (``matching_scores``: nearest neighbour is the true match, mutual nearest neighbours' precision and
count) and precision (``precision_scores``: the true position beats every position of the same second view at
least 1.5 / 2 / 3 px away). Why both: a candidate network, whitening or descriptor variant can match more and
still register worse at 1 px when its descriptors are smoother around the true position (models/HISTORY.md,
stops 16-17); the single-stage validation sets show that only after many minutes, this in a few.

    python -m sarreg.train.precision W.pt [W2.pt ...] --data DATA... [--pairs 160] [--seed 1234]
"""
from __future__ import annotations

import argparse
import json
from typing import Sequence

import numpy as np

from sarreg.model.weights import load_model
from sarreg.train.whiten import NEAR, add_view_arguments, collect, matching_scores, precision_scores, view_sources


def measure(weights: str, sources: list, pairs: int = 160, crop: int = 256, seed: int = 1234) -> dict[str, float]:
    """Matching and precision figures of ``weights`` (as stored: whitened or not) over ``pairs`` views."""
    model = load_model(weights)
    data = collect(model, sources, pairs, crop, seed=seed, log_every=0, near=NEAR)
    groups = np.unique(data["group"])
    return matching_scores(data, model, groups) | precision_scores(data, model, groups)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: one JSON line of figures per weights file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="+")
    ap.add_argument("--data", nargs="+", required=True, help="training data, as for 'sarreg train'")
    add_view_arguments(ap, pairs=160)
    a = ap.parse_args(argv)
    sources = view_sources(a)
    for w in a.weights:
        figures = measure(w, sources, a.pairs, a.crop, a.seed)
        print(json.dumps({"weights": w, **{k: round(v, 4) if isinstance(v, float) else v
                                           for k, v in figures.items()}}), flush=True)


if __name__ == "__main__":
    main()
