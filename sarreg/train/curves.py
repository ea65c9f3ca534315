"""Training curves: a PNG of the losses and the validation scores from a run's CSV logs; the logs trimmed to a
resumed checkpoint."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from sarreg.export import write_text_atomic
from sarreg.outputs import write_atomic


def trim_log(path: Path, iteration: int) -> None:
    """Keep the rows of a run's CSV log up to ``iteration`` (the resumed checkpoint's), one per iteration (the last
    one written), in order. Why: a killed run has logged iterations past its last checkpoint; resumed, it runs them
    again and they were logged twice (zig-zag curves). Rows cut short by the kill are dropped."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        keep: dict[int, dict] = {}
        for row in reader:
            try:
                it = int(row["iteration"])
            except (TypeError, ValueError):
                continue
            if it <= iteration and None not in row and None not in row.values():  # (None: too few / many fields)
                keep[it] = row
    if not reader.fieldnames:
        return
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=reader.fieldnames or [])
    w.writeheader()
    w.writerows(keep[k] for k in sorted(keep))
    write_text_atomic(path, text.getvalue())


def plot_curves(log_csv: Path, val_csv: Path, png: Path) -> None:
    """Training-curve PNG from the CSV logs (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def read(p: Path) -> dict[str, np.ndarray]:
        if not p.is_file():
            return {}
        with open(p) as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return {}
        return {k: np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows]) for k in rows[0]}

    tr, va = read(log_csv), read(val_csv)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if tr:
        it = tr["iteration"]
        win = max(1, min(25, len(it) // 10))
        ker = np.ones(win) / win
        for k in ("loss", "reliability", "cosim", "peaky", "sharpen", "ap"):
            if k in tr and np.isfinite(tr[k]).any():
                y = np.convolve(np.nan_to_num(tr[k]), ker, mode="valid")
                axes[0].plot(it[win - 1:], y, label=k)
        axes[0].set_xlabel("iteration")
        axes[0].set_title(f"training losses (moving mean of {win})")
        axes[0].legend()
    if va:
        for k in ("mma3", "mscore"):
            axes[1].plot(va["iteration"], va[k], "o-", label=k)
        axes[1].set_xlabel("iteration")
        axes[1].set_title("validation (fixed held-out pairs)")
        axes[1].legend()
    fig.tight_layout()
    try:
        write_atomic(png, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    finally:
        plt.close(fig)
