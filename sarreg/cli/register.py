"""``sarreg register`` and ``sarreg apply``: thin commands over ``sarreg.pipeline`` and ``sarreg.warp``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from sarreg import progress
from sarreg.cli.options import (asset_opt, compress_opt, device_opt, format_opt, input_arg, mem_opt, overwrite_opt,
                                path_arg, pol_opt, ref_pol_opt, resampling_opt, update_georef_opt)
from sarreg.errors import InputError, LowQuality, RegistrationFailed
from sarreg.config import BACKENDS, MODELS, ROBUST_NAMES


@click.command()
@click.argument("ref", type=input_arg)
@click.argument("moving", type=input_arg)
@click.argument("out", type=path_arg)
@click.option("--features", type=click.Choice(["r2d2", "sift"]), default="r2d2", show_default=True,
              help="Keypoints: the R2D2 network or OpenCV SIFT (classical fallback).")
@click.option("--weights", type=path_arg, default=None,
              help="Checkpoint (ours or an original R2D2 .pt). Default: the model shipped in models/.")
@click.option("--model", type=click.Choice(("auto",) + MODELS + ("local",)), default="auto", show_default=True,
              help="Geometric model moving -> reference. auto: affine, or a homography when it explains clearly "
                   "more matches and predicts held-out ones at least as well (always affine with --update-georef); "
                   "local: an affine plus a smoothed field of local offsets measured by correlation on a grid "
                   "(OUT.offsets.tif), warped through it.")
@click.option("--grid-spacing", type=click.IntRange(min=0), default=0, show_default=True,
              help="--model local: reference px between grid nodes (0: about 1/96 of the longer side, >= 32).")
@click.option("--robust", type=click.Choice(ROBUST_NAMES), default="magsac", show_default=True,
              help="Robust estimator (OpenCV).")
@click.option("--threshold", type=click.FloatRange(min=0, min_open=True), default=1.5, show_default=True,
              help="Inlier distance (reference pixels).")
@click.option("--max-shift", type=click.FloatRange(min=0), default=None,
              help="Largest offset from the georeferencing accepted (reference pixels; default: no limit).")
@click.option("--ratio", type=click.FloatRange(0, 1), default=None, help="Lowe ratio test on top of MNN.")
@click.option("--min-inliers", type=click.IntRange(min=3), default=12, show_default=True)
@click.option("--max-rmse", type=click.FloatRange(min=0, min_open=True), default=1.5, show_default=True,
              help="Largest inlier RMSE accepted (pixels).")
@click.option("--min-coverage", type=click.FloatRange(0, 1), default=0.15, show_default=True,
              help="Smallest fraction of overlap grid cells holding inliers.")
@click.option("--band", type=click.IntRange(min=1), default=None, help="1-based reference band (default: VV or 1).")
@click.option("--moving-band", type=click.IntRange(min=1), default=None, help="1-based moving band (default: as --band).")
@click.option("--kind", type=click.Choice(["auto", "linear", "amplitude", "db", "display"]), default="auto",
              show_default=True, help="How pixel values are interpreted.")
@click.option("--coarse-size", type=click.IntRange(min=128), default=768, show_default=True,
              help="Longer side of the decimated coarse-stage images (px).")
@click.option("--tile-size", type=click.IntRange(min=64), default=384, show_default=True,
              help="Fine-stage tile size (reference px).")
@click.option("--tiles", "n_tiles", type=click.IntRange(min=1), default=9, show_default=True,
              help="Number of fine-stage tiles.")
@click.option("--no-warp", is_flag=True, help="Estimate only: no output raster (sidecars still written).")
@update_georef_opt
@click.option("--force", is_flag=True, help="Write the raster even when the quality gates fail.")
@overwrite_opt
@format_opt
@compress_opt
@resampling_opt
@mem_opt
@click.option("--geojson", is_flag=True, help="Also write the tie points as GeoJSON.")
@click.option("--quicklook", type=path_arg, default=None, help="PNG checkerboard with residual vectors.")
@device_opt
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="Network inference: auto = OpenVINO on the CPU when installed, else torch (CUDA: torch).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the robust estimator.")
@click.option("--json", "as_json", is_flag=True, help="Print the report JSON to stdout.")
@asset_opt
@click.option("--ref-asset", default=None, metavar="KEY",
              help="STAC Item REF: its asset to read, when not the one of --asset (default: as --asset).")
@pol_opt
@ref_pol_opt
def register(ref: Path | str, moving: Path | str, out: Path, features: str, weights: Path | None, model: str, robust: str,
             threshold: float, max_shift: float | None, ratio: float | None, min_inliers: int, max_rmse: float,
             min_coverage: float, band: int | None, moving_band: int | None, kind: str, coarse_size: int,
             tile_size: int, n_tiles: int, no_warp: bool, update_georef: bool, force: bool, overwrite: bool,
             fmt: str, compress: str, resampling: str, warp_mem_mb: int, geojson: bool, quicklook: Path | None,
             device: str, seed: int, as_json: bool, grid_spacing: int, backend: str, asset: str | None,
             ref_asset: str | None, pol: str | None, ref_pol: str | None) -> None:
    """Register MOVING onto REF and write OUT on the reference grid, plus OUT's sidecars
    (.report.json, .tiepoints.gpkg, .points, .matches.npz). Exit 0 ok, 2 low quality, 3 failed."""
    from sarreg.config import PreprocessConfig, RegisterConfig
    from sarreg.io.source import resolve_input
    from sarreg.pipeline import register as run

    ref = resolve_input(ref, ref_asset or asset, ref_pol or pol)  # a STAC Item -> its asset, a product -> a raster
    moving = resolve_input(moving, asset, pol)
    cfg = RegisterConfig(
        features=features, weights=str(weights) if weights else None, model=model, robust=robust,
        threshold=threshold, max_shift=max_shift, ratio=ratio, min_inliers=min_inliers, max_rmse=max_rmse,
        min_coverage=min_coverage, coarse_size=coarse_size, tile_size=tile_size, n_tiles=n_tiles, warp=not no_warp,
        update_georef=update_georef, force=force, overwrite=overwrite, fmt=fmt, compress=compress.upper(),
        resampling=resampling, warp_mem_mb=warp_mem_mb, geojson=geojson,
        quicklook=str(quicklook) if quicklook else None, device=device, seed=seed,
        preprocess=PreprocessConfig(band=band, kind=kind), moving_band=moving_band, grid_spacing=grid_spacing,
        backend=backend)
    rep = run(ref, moving, out, cfg, progress=progress.register_step)
    progress.final(rep.status, {"ok": 0, "low_quality": LowQuality.exit_code}.get(rep.status,
                                                                                RegistrationFailed.exit_code),
                   report=rep.outputs.get("report"), output=rep.output, message=rep.message or None)
    if as_json:
        click.echo(rep.to_json())
    q = rep.quality
    if rep.matrix is not None:
        c = rep.correction
        click.echo(f"{rep.status}: {q.get('inliers')} inliers of {q.get('matches')} matches, RMSE "
                   f"{q.get('rmse_px')} px (held-out {q.get('heldout_rmse_px')}), coverage {q.get('coverage')}, "
                   f"shift {c.get('shift_px', 0):.2f} px, rotation {c.get('rotation_deg', 0):.3f} deg"
                   + (f" -> {rep.output}" if rep.output else ""), err=as_json)
    if rep.status == "low_quality":
        raise LowQuality(f"{moving}: low-quality registration ({rep.message}); no raster written"
                         + (" (--force writes it)" if not force else "") + f"; see {rep.outputs.get('report')}")
    if rep.status == "failed":
        raise RegistrationFailed(f"{moving}: registration failed ({rep.message}); see {rep.outputs.get('report')}")


@click.command()
@click.argument("report", type=path_arg)
@click.argument("moving", type=input_arg)
@click.argument("out", type=path_arg)
@update_georef_opt
@overwrite_opt
@format_opt
@compress_opt
@resampling_opt
@mem_opt
@asset_opt
@pol_opt
def apply(report: Path, moving: Path | str, out: Path, update_georef: bool, overwrite: bool, fmt: str, compress: str,
          resampling: str, warp_mem_mb: int, asset: str | None, pol: str | None) -> None:
    """Re-apply the transform saved in REPORT (a .report.json) to MOVING, writing OUT on the reference grid.

    MOVING may be on another grid than the raster that was registered (other resolution, crop, CRS): it is related
    to it through the georeferencings. An output that would hold no valid pixel is refused (exit 1, no file)."""
    from sarreg.io.raster import open_dataset
    from sarreg.outputs import check_write_set, clean_stale
    from sarreg.reapply import target_transform
    from sarreg.io.source import resolve_input
    from sarreg.warp import update_georef as write_georef, warp_to_grid

    moving = resolve_input(moving, asset, pol)  # a STAC Item -> its asset, a S1 product -> its measurement
    check_write_set([out], [report, moving], overwrite)  # before any work; never the report or the raster

    try:
        data = json.loads(Path(report).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{report}: report file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{report}: not a readable JSON report ({e})") from None
    if not isinstance(data, dict) or not data.get("transform") or not data.get("reference_grid"):
        raise InputError(f"{report}: holds no transform (status {data.get('status') if isinstance(data, dict) else '?'})")
    with open_dataset(moving):
        pass  # clear error for missing / unreadable rasters before any output
    # MOVING on another grid than the registered raster: composed through the georeferencings
    tr, grid = target_transform(data, report, moving)
    clean_stale([out])
    progress.stage("warp", 0.05)
    if update_georef:
        write_georef(moving, tr, grid, out, fmt, compress.upper(), overwrite=overwrite)
    else:
        warp_to_grid(moving, tr, grid, out, resampling, fmt, compress.upper(), warp_mem_mb, overwrite=overwrite,
                     require_data=True)
    progress.final("ok", 0, output=str(out), model=tr.model)
    click.echo(f"{moving} -> {out} ({tr.model})")
