"""The run's summary files: ``summary.csv`` (one row per scene), ``summary.json`` (the ``BatchSummary``),
``summary.png`` (shift and RMSE against date) and ``tiepoints.gpkg`` (``sarreg.batch.tiepoints``)."""
from __future__ import annotations

import csv
import io
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from sarreg.batch.files import atomic_write, dumps, error_text
from sarreg.batch.results import CSV_COLUMNS, BatchSummary
from sarreg.batch.tiepoints import merge_tiepoints
from sarreg.outputs import temp_path

log = logging.getLogger(__name__)
SUMMARY_FILES = ("summary.csv", "summary.json", "summary.png", "tiepoints.gpkg")  # written into OUTDIR by each run


def drop_summary(outdir: Path) -> None:
    """Remove the summary files of an earlier run before this run changes the folder: a run interrupted after its
    first commit left them describing outputs it had replaced or removed (a raster listed as ok, gone)."""
    for name in SUMMARY_FILES:
        (outdir / name).unlink(missing_ok=True)


def write_summary(summary: BatchSummary, outdir: Path,
                  chain_matrices: dict[str, list[list[float]] | None] | None = None) -> dict[str, str]:
    """summary.json / summary.csv / summary.png / tiepoints.gpkg in ``outdir`` (each written atomically).

    Returns name -> path of what was written (also set as ``summary.files``). The plot or the tie point layer
    failing never loses the tables: the reason is logged and recorded in ``summary.warnings``.
    """
    files: dict[str, str] = {}
    # each written under a hidden temporary name, then the set renamed into place: a run killed while writing them
    # leaves none (it left summary.csv alone)
    tmp = {name: temp_path(outdir / name, "summary") for name in SUMMARY_FILES}
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in summary.scenes:
        w.writerow({k: ("" if v is None else v) for k, v in r.to_dict().items()})
    try:
        atomic_write(tmp["summary.csv"], buf.getvalue().encode())
        files["csv"] = str(outdir / "summary.csv")
        try:
            plot_summary(summary, tmp["summary.png"])
            files["png"] = str(outdir / "summary.png")
        except Exception as e:  # noqa: BLE001 - a plot must not cost the tables
            summary.warnings.append(f"summary.png not written: {error_text(e)}")
            log.warning(summary.warnings[-1])
        try:
            n = merge_tiepoints(summary, outdir, tmp["tiepoints.gpkg"], chain_matrices)
            if n is not None:
                files["tiepoints"] = str(outdir / "tiepoints.gpkg")
        except Exception as e:  # noqa: BLE001 - nor the tie point layer
            summary.warnings.append(f"tiepoints.gpkg not written: {error_text(e)}")
            log.warning(summary.warnings[-1])
        files["json"] = str(outdir / "summary.json")
        summary.files = files
        atomic_write(tmp["summary.json"], dumps(summary.to_dict()))
        for name, t in tmp.items():
            if t.exists():
                os.replace(t, outdir / name)
    finally:
        for t in tmp.values():
            t.unlink(missing_ok=True)
    return files


def plot_summary(summary: BatchSummary, path: Path) -> Path:
    """Shift (x, y) and RMSE per scene against date (or scene order): ok dots, low quality orange, failed red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    rows = summary.scenes
    use_dates = bool(rows) and all(r.date for r in rows)
    xs: list[Any] = ([datetime.fromisoformat(r.date) for r in rows]  # type: ignore[arg-type]
                     if use_dates else list(range(len(rows))))
    geo = any(r.shift_x_m is not None for r in rows)
    unit = "map units" if geo else "px"
    sx = [(r.shift_x_m if geo else r.shift_x_px) for r in rows]
    sy = [(r.shift_y_m if geo else r.shift_y_px) for r in rows]
    colours = {"ok": "tab:green", "low_quality": "tab:orange", "failed": "tab:red"}
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(max(7.0, 0.35 * len(rows) + 4), 6.5), sharex=True,
                                 constrained_layout=True)
    for vals, lab, c in ((sx, "shift x", "tab:blue"), (sy, "shift y", "tab:purple")):
        pts = [(x, v) for x, v in zip(xs, vals) if v is not None]
        if pts:
            a1.plot(*zip(*pts), "-o", color=c, label=lab, ms=4, lw=1)
    rm = [(x, r.rmse_px, colours.get(r.status, "k")) for x, r in zip(xs, rows) if r.rmse_px is not None]
    if rm:
        a2.plot([p[0] for p in rm], [p[1] for p in rm], "-", color="0.6", lw=1)
        a2.scatter([p[0] for p in rm], [p[1] for p in rm], c=[p[2] for p in rm], s=30, zorder=3)
    for x, r in zip(xs, rows):
        if r.status == "failed":
            for a in (a1, a2):
                a.axvline(x, color="tab:red", alpha=0.35, lw=2)
        elif r.status == "low_quality":
            a1.axvline(x, color="tab:orange", alpha=0.25, lw=2)
    a1.axhline(0, color="k", lw=0.6)
    a1.set_ylabel(f"shift ({unit})")
    if a1.get_legend_handles_labels()[0]:  # (no scene with a shift: matplotlib warns on an empty legend)
        a1.legend(loc="best", fontsize=8)
    c = summary.counts
    a1.set_title(f"{Path(summary.reference).name}: {len(rows)} scenes, {c['ok']} ok, {c['low_quality']} low "
                 f"quality, {c['failed']} failed ({summary.mode}; red bands = failed)", fontsize=10)
    a2.set_ylabel("RMSE (px)")
    a2.set_ylim(bottom=0)
    for a in (a1, a2):
        a.grid(alpha=0.3)
    if use_dates:
        loc = mdates.AutoDateLocator()
        a2.xaxis.set_major_locator(loc)
        a2.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
        a2.set_xlabel("acquisition date")
    else:
        a2.set_xticks(xs)
        a2.set_xticklabels([r.scene for r in rows], rotation=60, ha="right", fontsize=7)
        a2.set_xlabel("scene")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buf.getvalue())
    return path
