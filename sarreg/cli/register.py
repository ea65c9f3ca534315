"""``sarreg register`` and ``sarreg apply``: thin commands over ``sarreg.pipeline`` and ``sarreg.warp``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from sarreg import progress
from sarreg.cli.options import (KIND_HELP, NODATA_HELP, NodataArg, asset_opt, config_from_params, config_option,
                                device_opt, exclude_opt, input_arg, out_arg, output_options, path_arg, pol_opt,
                                ref_pol_opt, update_georef_opt)
from sarreg.config import PreprocessConfig, RegisterConfig
from sarreg.errors import InputError, LowQuality, RegistrationFailed

R = RegisterConfig
P = PreprocessConfig


@click.command()
@click.argument("ref", type=input_arg)
@click.argument("moving", type=input_arg)
@click.argument("out", type=out_arg)
@config_option(R, "features", help="Keypoints: the R2D2 network or OpenCV SIFT (classical fallback).")
@click.option("--weights", type=path_arg, default=None,
              help="Checkpoint (ours or an original R2D2 .pt). Default: the model shipped in models/.")
@config_option(R, "model",
               help="Geometric model moving -> reference. auto: affine, or a homography when it explains clearly "
                    "more matches and predicts held-out ones at least as well (always affine with --update-georef); "
                    "local: an affine plus a smoothed field of local offsets measured by correlation on a grid "
                    "(OUT.offsets.tif), warped through it.")
@config_option(R, "grid_spacing",
               help="--model local: reference px between grid nodes (0: about 1/96 of the longer side, >= 32).")
@config_option(R, "robust", help="Robust estimator (OpenCV).")
@config_option(R, "threshold", help="Inlier distance (reference pixels; the coarse stage uses twice this, at least "
                                    "2.5 px of its decimated grid).")
@config_option(R, "max_shift", help="Largest offset from the georeferencing accepted (reference pixels; default: no "
                                    "limit): coarse keypoint matches beyond it are dropped, and a larger final "
                                    "correction makes the result low quality.")
@config_option(R, "ratio", help="Lowe ratio test on top of MNN.")
@config_option(R, "min_inliers")
@config_option(R, "max_rmse", help="Largest inlier RMSE accepted (pixels).")
@config_option(R, "min_coverage", help="Smallest fraction of overlap grid cells holding inliers.")
@config_option(P, "band", help="1-based reference band (default: VV or 1).")
@config_option(R, "moving_band", help="1-based moving band (default: as --band).")
@config_option(P, "kind", help=KIND_HELP)
@config_option(P, "nodata", type=NodataArg(), metavar="VALUE",
               help=NODATA_HELP.format(what="REF, and in MOVING unless --moving-nodata is given"))
@config_option(R, "moving_nodata", type=NodataArg(), metavar="VALUE",
               help="Value that marks no data in MOVING (as --nodata; auto: MOVING's own tag or fill value). "
                    "Default: as --nodata.")
@exclude_opt
@config_option(R, "coarse_size", help="Longer side of the decimated coarse-stage images (px).")
@config_option(R, "fine_tile", help="Side of the fine-stage tiles (reference px at full resolution).")
@click.option("--tile-size", "tile_size_alias", type=click.IntRange(min=64), default=None, hidden=True,
              help="Old name of --fine-tile.")
@config_option(R, "n_tiles", "--tiles", help="Number of fine-stage tiles.")
@config_option(R, "keypoints", help="Fine-stage keypoints: auto = only when the correlation windows cannot settle "
                                    "the estimate alone (the network is then not even loaded); always = every time "
                                    "(their matches in OUT.matches.npz).")
@config_option(R, "area_descriptors",
               help="Check the refinement's correlation windows with the network's dense descriptors (R2D2 "
                    "features): auto = only when the correlation alone gives no ok result, then its result stands; "
                    "always = whenever the correlation does not settle the estimate alone; never.")
@config_option(R, "oversampling",
               help="Pixels per resolution cell of products resampled finer than their resolution: N reads both "
                    "rasters decimated by N and maps the result back; auto = 2, then 4, only when the pair registers "
                    "low_quality as it is (the gates then hold in the pixels read); 1 = never.")
@click.option("--no-warp", is_flag=True, help="Estimate only: no output raster (sidecars still written).")
@update_georef_opt
@click.option("--force", is_flag=True, help="Write the raster even when the quality gates fail.")
@output_options
@click.option("--geojson", is_flag=True, help="Also write the tie points as GeoJSON.")
@click.option("--quicklook", type=out_arg, default=None, help="PNG checkerboard with residual vectors.")
@device_opt
@config_option(R, "backend",
               help="Network inference: auto = OpenVINO on the CPU when installed, else torch (CUDA: torch).")
@config_option(R, "seed", type=int, help="Seed of the robust estimator.")
@click.option("--json", "as_json", is_flag=True, help="Print the report JSON to stdout.")
@asset_opt
@click.option("--ref-asset", default=None, metavar="KEY",
              help="STAC Item REF: its asset to read, when not the one of --asset (default: as --asset).")
@pol_opt
@ref_pol_opt
def register(ref: Path | str, moving: Path | str, out: Path, as_json: bool, asset: str | None,
             ref_asset: str | None, pol: str | None, ref_pol: str | None, **options: Any) -> None:
    """Register MOVING onto REF and write OUT on the reference grid, plus OUT's sidecars
    (.report.json, .tiepoints.gpkg, .points, .matches.npz). Exit 0 ok, 2 low quality, 3 failed."""
    from sarreg.export import register_outputs
    from sarreg.io.source import is_stac_input, resolve_input
    from sarreg.outputs import check_write_set
    from sarreg.pipeline import register as run

    given = [p for p in (ref, moving) if is_stac_input(p)]  # (a product's files: refused as such in the pipeline)
    ref = resolve_input(ref, ref_asset or asset, ref_pol or pol)  # a STAC Item -> its asset, a product -> a raster
    moving = resolve_input(moving, asset, pol)
    cfg = config_from_params(RegisterConfig, options)
    if given:  # a STAC Item resolved to its asset is an input too (--quicklook item.json replaced it); the rest:
        check_write_set(register_outputs(out, cfg).values(), given, cfg.overwrite)  # the pipeline's own check
    force = cfg.force
    rep = run(ref, moving, out, cfg, progress=progress.register_step)
    progress.final(rep.status, {"ok": 0, "low_quality": LowQuality.exit_code}.get(rep.status,
                                                                                RegistrationFailed.exit_code),
                   report=rep.outputs.get("report"), output=rep.output, message=rep.message or None)
    if as_json:
        click.echo(rep.to_json())
    q = rep.quality
    if rep.matrix is not None:
        c = rep.correction
        rmse, held = ("n/a" if v is None else v for v in (q.get("rmse_px"), q.get("heldout_rmse_px")))
        click.echo(f"{rep.status}: {q.get('inliers')} inliers of {q.get('matches')} matches, RMSE {rmse} px "
                   f"(held-out {held}), coverage {q.get('coverage')}, shift {c.get('shift_px', 0):.2f} px, "
                   + ("mirrored (columns reversed), then " if c.get("mirrored") else "")
                   + f"rotation {round(c.get('rotation_deg', 0), 3) + 0.0:.3f} deg"  # (+ 0.0: no "-0.000")
                   + (f" -> {rep.output}" if rep.output else ""), err=as_json)
    why = rep.message.removeprefix(f"{moving}: ")  # (the line names the moving file once)
    if rep.status == "low_quality":
        written = f"raster written anyway (--force): {rep.output}" if rep.output else \
            "no raster written" + ("" if force else " (--force writes it)")
        raise LowQuality(f"{moving}: low-quality registration ({why}); {written}; "
                         f"see {rep.outputs.get('report')}")
    if rep.status == "failed":
        raise RegistrationFailed(f"{moving}: registration failed ({why}); see {rep.outputs.get('report')}")


@click.command()
@click.argument("report", type=path_arg)
@click.argument("moving", type=input_arg)
@click.argument("out", type=out_arg)
@update_georef_opt
@output_options
@config_option(P, "nodata", type=NodataArg(), metavar="VALUE",
               help="Value that marks no data in MOVING, over the file's own nodata tag: a number, nan, or none. "
                    "Default: the value register read as nodata in MOVING when it is the raster registered (its tag, "
                    "a fill value found in the data, or --nodata); another raster read as register reads any "
                    "raster (its tag, a second fill value beside it, or a fill in a file that declares none).")
@asset_opt
@pol_opt
@click.option("--force", is_flag=True,
              help="Apply a transform whose registration failed the quality gates (report status low_quality).")
def apply(report: Path, moving: Path | str, out: Path, update_georef: bool, overwrite: bool, fmt: str, compress: str,
          resampling: str, resolution: str, warp_mem_mb: int, nodata: float | str | None, asset: str | None,
          pol: str | None, force: bool) -> None:
    """Re-apply the transform saved in REPORT (a .report.json, or a batch --chain scene's _reg.chain.json) to MOVING,
    writing OUT on the reference grid.

    MOVING may be on another grid than the raster that was registered (other resolution, crop, CRS): it is related
    to it through the georeferencings. An output that would hold no valid pixel is refused (exit 1, no file)."""
    from sarreg.outputs import Staging, check_raster_name, check_write_set, clean_stale, temp_path
    from sarreg.reapply import grid_of, registered_nodata, target_transform
    from sarreg.io.source import is_stac_input, resolve_input
    from sarreg.grid import Grid, output_grid
    from sarreg.io.raster import open_dataset
    from sarreg.warp import update_georef as write_georef, warp_resampling, warp_to_grid

    RegisterConfig(update_georef=update_georef, resolution=resolution).validate()  # the combination, the value
    if str(moving).endswith(".report.json") and not str(report).lower().endswith(".json"):
        raise InputError(f"{report}: not a report; the order is REPORT MOVING OUT ({moving} looks like the report)")
    given, moving = moving, resolve_input(moving, asset, pol)  # a STAC Item -> its asset, a S1 product -> a raster
    items = [given] if is_stac_input(given) else []  # (the item itself is an input too)
    check_write_set([out], [report, moving, *items], overwrite)  # before any work; never the report or the raster
    check_raster_name(out)

    try:
        data = json.loads(Path(report).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{report}: report file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{report}: not a readable JSON report ({e})") from None
    if isinstance(data, dict) and isinstance(link := data.get("chain_link"), dict):  # batch --chain: onto a scene
        raise InputError(f"{report}: the report of a batch --chain link onto {link.get('predecessor')}, not onto the "
                         f"reference; apply {Path(report).with_name(str(link.get('composed')))} instead")
    if not isinstance(data, dict) or not data.get("transform") or not data.get("reference_grid"):
        got = data.get("status") if isinstance(data, dict) else "?"
        raise InputError(f"{report}: holds no transform (status {got})")
    status, why = data.get("status", "ok"), data.get("message") or "quality gates failed"
    if status == "failed":  # as register, even with --force: a transform no gate could trust (exit 3)
        raise RegistrationFailed(f"{report}: the registration failed ({why}); no raster written")
    if status != "ok" and not force:  # as register: an untrusted transform writes no raster
        raise LowQuality(f"{report}: the registration is {status} ({why}); no raster written (--force applies it)")
    moving_grid = Grid.from_dict(grid_of(moving))  # also a clear error for missing / unreadable rasters
    if nodata is None:  # the value register read in this very raster (found or given), else MOVING's own
        nodata = registered_nodata(data, moving)
    # MOVING on another grid than the registered raster: composed through the georeferencings
    tr, grid = target_transform(data, report, moving)
    if not update_georef:
        with open_dataset(moving) as ds:  # (auto: nearest for complex data, whose phases interpolation mixes)
            resampling = warp_resampling(ds.dtypes[0], resampling)
    clean_stale([out])
    progress.stage("warp", 0.05)
    # staged as register's outputs: a hidden name in OUT's folder, renamed when complete; removed on an error or a
    # signal, so an existing OUT is untouched unless the new one is complete
    with Staging({"raster": out}, {"raster": temp_path(out if out.suffix else out.with_name(out.name + ".tif"),
                                                       stage=True)}) as st:
        stage = st.stages["raster"]
        if update_georef:
            write_georef(moving, tr, grid, stage, fmt, compress, nodata=nodata)
        else:
            warp_to_grid(moving, tr, grid, stage, resampling, fmt, compress, warp_mem_mb, require_data=True,
                         out_grid=output_grid(grid, resolution, tr.matrix, moving_grid),
                         nodata=nodata)
        st.commit("raster", overwrite=overwrite)
    progress.final("ok" if status == "ok" else "low_quality", 0 if status == "ok" else LowQuality.exit_code,
                   output=str(out), model=tr.model, resampling=None if update_georef else resampling)
    click.echo(f"{moving} -> {out} ({tr.model}{'' if update_georef else ', ' + resampling})")
    if status != "ok":  # written (--force), still untrusted: exit 2 as register --force
        raise LowQuality(f"{report}: the registration is {status} ({why}); raster written anyway (--force): {out}")
