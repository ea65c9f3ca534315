"""Results of ``sarreg.evaluate``: one ``PairResult`` per method and pair, ``Scores`` / ``MethodSummary`` (success
over every estimate and over status ok only, overall and per source), ``EvalResult`` (markdown tables, JSON, MMA
plot) and the official scorer's prediction files."""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sarreg.export import to_jsonable, write_text_atomic

MMA_THRESHOLDS = tuple(range(1, 11))
SUCCESS_THRESHOLDS = (1, 3, 5)
USABLE = ("ok", "low_quality")  # statuses whose matrix is an estimate (a "failed" registration's is not)


@dataclass
class PairResult:
    """One method on one pair. status: ok | low_quality | failed | error (bad input) | skipped. matrix: the
    estimate (moving px -> reference px). error: homography grid error (px) of a usable estimate (status ok or
    low_quality), else inf; None without ground truth. mma: per MMA_THRESHOLDS (single-stage only)."""

    pair: str
    method: str
    status: str
    matrix: list[list[float]] | None
    error: float | None
    mma: list[float] | None
    keypoints: tuple[int, int]
    matches: int
    inliers: int
    time_s: float
    message: str = ""
    source: str = ""


@dataclass
class Scores:
    """Success over a set of pairs. success: every estimate counts (status ok or low_quality); success_ok: only
    status ok (what a user gets without ``--force``); "1", "3", "5" -> fraction of pairs with error <= t px.
    failed: pairs without a usable estimate. median_error: None = inf (more than half failed)."""

    n: int
    failed: int
    low_quality: int
    success: dict[str, float]
    success_ok: dict[str, float]
    median_error: float | None


@dataclass
class MethodSummary(Scores):
    """Averages of one method over the pairs it ran on (skipped pairs excluded); by_source: ``Scores`` per source."""

    method: str = ""
    mma: list[float] = field(default_factory=list)   # mean over pairs, per MMA_THRESHOLDS (NaN: no matches known)
    mean_inliers: float = 0.0
    mean_matches: float = 0.0
    mean_keypoints: float = 0.0
    time_s: float = 0.0
    by_source: dict[str, Scores] = field(default_factory=dict)


def _f(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.3f}"


def _med(s: Scores) -> str:
    return "inf" if s.median_error is None else f"{s.median_error:.2f}"


@dataclass
class EvalResult:
    """Everything one ``evaluate`` run measured; ``to_dict`` / ``save_json`` give plain JSON (inf -> null)."""

    methods: list[str]
    pairs: list[str]
    results: list[PairResult]
    summaries: list[MethodSummary]
    mma_thresholds: list[int] = field(default_factory=lambda: list(MMA_THRESHOLDS))
    options: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # sub-folders of the pairs folder not evaluated: why

    def summary(self, method: str) -> MethodSummary:
        for s in self.summaries:
            if s.method == method:
                return s
        raise KeyError(method)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))

    def save_json(self, path: str | Path) -> Path:
        return write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=1) + "\n")

    def to_markdown(self) -> str:
        """Two markdown tables: one row per method, then success per method and source ("ok" columns: status ok
        only), and the sub-folders skipped."""
        head = ("| method | pairs | failed | low q | s@1px | s@3px | s@5px | s@1px ok | s@3px ok | median err (px) | "
                "MMA@1 | MMA@3 | MMA@5 | MMA@10 | inliers | matches | s/pair |")
        lines = [head, "|---|" + "---:|" * (head.count("|") - 2)]
        for s in self.summaries:
            lines.append(
                f"| {s.method} | {s.n} | {s.failed} | {s.low_quality} | {_f(s.success['1'])} | {_f(s.success['3'])} | "
                f"{_f(s.success['5'])} | {_f(s.success_ok['1'])} | {_f(s.success_ok['3'])} | {_med(s)} | "
                f"{_f(s.mma[0])} | {_f(s.mma[2])} | {_f(s.mma[4])} | {_f(s.mma[9])} | "
                f"{s.mean_inliers:.1f} | {s.mean_matches:.1f} | {s.time_s:.2f} |")
        head = "| method | source | pairs | failed | low q | s@1px | s@3px | s@1px ok | s@3px ok | median err (px) |"
        lines += ["", head, "|---|---|" + "---:|" * (head.count("|") - 3)]
        for s in self.summaries:
            for src, c in [*s.by_source.items(), ("all", s)]:
                lines.append(f"| {s.method} | {src or '-'} | {c.n} | {c.failed} | {c.low_quality} | "
                             f"{_f(c.success['1'])} | {_f(c.success['3'])} | {_f(c.success_ok['1'])} | "
                             f"{_f(c.success_ok['3'])} | {_med(c)} |")
        if self.skipped:  # (the table is not the whole folder's score)
            names = ", ".join(f"{k} ({v})" for k, v in self.skipped.items())
            lines += ["", f"{len(self.skipped)} sub-folder(s) of the pairs folder skipped, not evaluated: {names}"]
        return "\n".join(lines) + "\n"

    def save_markdown(self, path: str | Path) -> Path:
        return write_text_atomic(Path(path), self.to_markdown())

    def plot_mma(self, path: str | Path) -> Path:
        """PNG of mean matching accuracy versus threshold, one curve per method (matplotlib Agg)."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4), dpi=100)
        ax = fig.add_subplot(111)
        for s in self.summaries:
            if np.isfinite(s.mma).any():  # register methods: no tentative matches, no curve
                ax.plot(self.mma_thresholds, s.mma, marker="o", label=f"{s.method} (s@3px {s.success['3']:.2f})")
        ax.set_xlabel("threshold (px)")
        ax.set_ylabel("mean matching accuracy")
        ax.set_ylim(0, 1)
        ax.set_xlim(1, max(self.mma_thresholds))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        ax.set_title(f"MMA over {len(self.pairs)} pairs")
        fig.tight_layout()
        from sarreg.export import write_atomic

        return write_atomic(Path(path), lambda tmp: fig.savefig(tmp, format="png"))


def scores(rows: Sequence[PairResult]) -> Scores:
    """Success rates (every estimate / ok only) and median error of some non-skipped rows."""
    n = len(rows)
    errs = np.array([math.inf if r.error is None else r.error for r in rows], float)
    errs_ok = np.where([r.status == "ok" for r in rows], errs, math.inf) if n else errs
    gt = n > 0 and any(r.error is not None for r in rows)
    med = float(np.median(errs)) if n else math.inf
    return Scores(n=n, failed=int(sum(not (r.matrix is not None and r.status in USABLE) for r in rows)),
                  low_quality=int(sum(r.status == "low_quality" for r in rows)),
                  success={str(t): float(np.mean(errs <= t)) if gt else float("nan") for t in SUCCESS_THRESHOLDS},
                  success_ok={str(t): float(np.mean(errs_ok <= t)) if gt else float("nan") for t in SUCCESS_THRESHOLDS},
                  median_error=med if math.isfinite(med) else None)


def summarise(method: str, rows: list[PairResult]) -> MethodSummary:
    """Scores overall and per source, mean MMA curve / inliers / time over the non-skipped rows."""
    rows = [r for r in rows if r.status != "skipped"]
    n = len(rows)
    by_source: dict[str, list[PairResult]] = {}
    for r in rows:
        by_source.setdefault(r.source, []).append(r)
    with_mma = [r.mma for r in rows if r.mma is not None]
    return MethodSummary(
        **asdict(scores(rows)), method=method,
        mma=[float(v) for v in np.mean(with_mma, axis=0)] if with_mma else [float("nan")] * len(MMA_THRESHOLDS),
        mean_inliers=float(np.mean([r.inliers for r in rows])) if n else 0.0,
        mean_matches=float(np.mean([r.matches for r in rows])) if n else 0.0,
        mean_keypoints=float(np.mean([np.mean(r.keypoints) for r in rows])) if n else 0.0,
        time_s=float(np.mean([r.time_s for r in rows])) if n else 0.0,
        by_source={k: scores(v) for k, v in by_source.items()})


def write_prediction(pred_dir: Path, r: PairResult) -> Path:
    """``<pred_dir>/<pair>.json`` in the official scorer's format ({"matrix", "time_s"} for a usable estimate, else
    {"failed": true}), with the status."""
    doc: dict[str, Any] = {"matrix": r.matrix, "time_s": round(r.time_s, 4)} \
        if r.matrix is not None and r.status in USABLE else {"failed": True, "time_s": round(r.time_s, 4),
                                                              "reason": r.message}
    doc.update(method=r.method, status=r.status, inliers=r.inliers, matches=r.matches)
    return write_text_atomic(pred_dir / f"{r.pair}.json", json.dumps(doc) + "\n")
