"""``sarreg extract``: keypoints of one or more images into R2D2-compatible ``.r2d2`` files."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from sarreg import progress as json_progress
from sarreg.cli.options import (KIND_HELP, NODATA_HELP, NodataArg, asset_opt, config_from_params, config_option,
                                device_opt, exclude_opt, input_arg, out_arg, output_dir, overwrite_opt, pol_opt)
from sarreg.config import ExtractConfig, PreprocessConfig
from sarreg.errors import InputError, OptionError, OutputError
from sarreg.io.source import Source, input_folder, input_name, is_stac_input, resolve_input
from sarreg.model.files import DEFAULT_MODEL_NAME, EXTRACT_MODEL_NAME
from sarreg.outputs import Staging, check_write_set, clean_stale


def _tile_size(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if 0 < value < 64:
        raise click.BadParameter(f"{value} is neither 0 (no tiling) nor at least 64 pixels")
    return value


def _quicklook_name(quicklook: Path, image: Source, several: bool) -> Path:
    return quicklook if not several else quicklook.with_name(f"{Path(input_name(image)).stem}_{quicklook.name}")


def _out_folder(img: Source, out_dir: Path | None) -> Path:
    """-o, else the image's own folder (a remote input needs -o)."""
    d = out_dir or input_folder(img)
    if d is None:
        raise InputError(f"{img}: a remote input has no folder to write next to; give -o/--out-dir")
    return d


def extract_outputs(images: list[Source], out_dir: Path | None, geo: bool,
                    quicklook: Path | None) -> list[list[Path]]:
    """Write set of ``extract``: per image, its .r2d2 (+ .keypoints.gpkg / .geojson, quicklook).

    Two images that would write the same file (``a/scene.tif b/scene.tif -o out``) are refused in one line.
    """
    plan: list[list[Path]] = []
    owner: dict[str, Source] = {}
    for img in images:
        d = _out_folder(img, out_dir)
        name = input_name(img)
        outs = [d / f"{name}.r2d2"]
        if geo:
            outs += [d / f"{name}.keypoints.gpkg", d / f"{name}.keypoints.geojson"]
        if quicklook is not None:
            outs.append(_quicklook_name(quicklook, img, len(images) > 1))
        for o in outs:
            key = os.path.abspath(o)
            if key in owner and owner[key] == img:  # (--quicklook named like one of the image's own files)
                raise OutputError(f"{o}: --quicklook names a file extract writes for {img}; give it another name")
            if key in owner:
                raise OutputError(f"{o}: {owner[key]} and {img} would both write this file; extract them into "
                                  "different folders (-o) or rename one")
            owner[key] = img
        plan.append(outs)
    return plan


E = ExtractConfig
P = PreprocessConfig


@click.command()
@click.argument("images", nargs=-1, required=True, type=input_arg)
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="Checkpoint (ours or an original R2D2 .pt). Default: the extraction model shipped in models/ "
                   f"({EXTRACT_MODEL_NAME}; register uses {DEFAULT_MODEL_NAME}).")
@config_option(E, "top_k", help="Keypoints kept (0 = all).")
@config_option(E, "tile_size", callback=_tile_size,
               help="Side of the extractor's processing tiles, in pixels of each pyramid level (0 = no tiling, "
                    "else at least 64).")
@config_option(E, "scale_f", help="Ratio between pyramid levels (> 1; at most 32 levels run).")
@config_option(E, "min_size", help="Smallest longer side of a level (px).")
@config_option(E, "max_size", help="Largest longer side of a level (px, 0 = no limit).")
@config_option(E, "min_scale")
@config_option(E, "max_scale")
@config_option(E, "upsample_to",
               help="Images whose longer side is below this get up-sampled levels up to it (0 = off).")
@config_option(E, "rel_thr", type=float, help="Reliability threshold (default: the model's; 0.7 for R2D2 checkpoints).")
@config_option(E, "rep_thr", type=float, help="Repeatability threshold (default: the model's).")
@config_option(E, "subpixel", "--subpixel/--no-subpixel",
               help="Refine keypoints to sub-pixel by a parabola through the repeatability peak.")
@config_option(P, "band", help="1-based band (default: the VV band if described, else 1).")
@config_option(P, "kind", help=KIND_HELP)
@config_option(P, "nodata", type=NodataArg(), metavar="VALUE", help=NODATA_HELP.format(what="each image"))
@config_option(P, "despeckle", help="Box filter size on log values (0 = off).")
@exclude_opt
@device_opt
@config_option(E, "precision")
@config_option(E, "backend",
               help="Network inference: auto = OpenVINO on the CPU when installed, else torch (CUDA: torch).")
@click.option("-o", "--out-dir", type=out_arg, default=None,
              help="Output directory (default: next to each image).")
@click.option("--geo", is_flag=True, help="Also write keypoints in map coordinates (.gpkg and .geojson).")
@click.option("--quicklook", type=out_arg, default=None,
              help="PNG with keypoints drawn on the scaled image (with several images: prefixed per image).")
@click.option("--progress/--no-progress", default=True, show_default=True)
@overwrite_opt
@asset_opt
@pol_opt
def extract(images: tuple[Source, ...], weights: Path | None, out_dir: Path | None, geo: bool,
            quicklook: Path | None, progress: bool, overwrite: bool, asset: str | None, pol: str | None,
            **options: Any) -> None:
    """Extract keypoints of IMAGE(s) into <image>.r2d2 (npz: keypoints, descriptors, scores, imsize)."""
    from tqdm import tqdm

    from sarreg.extract import extract_scene, resolve_device
    from sarreg.io.raster import open_scene
    from sarreg.model.backend import resolve_backend
    from sarreg.model.weights import load_model

    cfg = config_from_params(ExtractConfig, options)
    device, min_scale, max_scale = cfg.device, cfg.min_scale, cfg.max_scale
    if min_scale > max_scale:
        raise OptionError(f"--min-scale {min_scale:g} > --max-scale {max_scale:g}: no pyramid level would run")
    resolve_backend(cfg.backend, resolve_device(device))  # fail before any work (e.g. openvino not installed)
    given, images = images, tuple(resolve_input(p, asset, pol) for p in images)  # names from what is read (zips)
    scenes = [open_scene(p, cfg.preprocess) for p in images]  # validate every input before any work
    if geo:
        for sc in scenes:
            if not sc.geolocated:  # a geotransform, or GCPs (map coordinates through GDAL's GCP transformer)
                raise InputError(f"{sc.path}: --geo needs a georeferenced raster (no CRS/geotransform, GCPs, RPCs or "
                                 "geolocation arrays)")
    # (created once the inputs are known good, and removed again if the run then fails: no new folder is left)
    with output_dir(out_dir):
        for p in images:
            d = _out_folder(p, out_dir)
            if not os.access(d, os.W_OK):
                raise OutputError(f"{d}: output directory is not writable")
        plan = extract_outputs(list(images), out_dir, geo, quicklook)
        items = [p for p in given if is_stac_input(p)]  # (a STAC Item is an input as well as its asset)
        check_write_set([p for ps in plan for p in ps], [*images, *items, weights], overwrite)
        clean_stale([p for ps in plan for p in ps])
        json_progress.stage("model", 0.0)
        model = load_model(weights, resolve_device(device), default=EXTRACT_MODEL_NAME)
        # every file of every image is staged (hidden names in its final folder) and the set is renamed at the end: an
        # error or a signal leaves nothing new and existing files untouched
        finals = {f"{i}:{j}": p for i, ps in enumerate(plan) for j, p in enumerate(ps)}
        written: list[str] = []
        lines: list[str] = []
        with Staging(finals) as st:
            for i, sc in enumerate(scenes):
                bar = tqdm(desc=input_name(sc.path), unit="tile", disable=not json_progress.bars(progress),
                           leave=False)

                def tick(done: int, total: int, i: int = i) -> None:
                    bar.total = total
                    bar.n = done
                    bar.refresh()
                    json_progress.stage("extract", (i + done / max(total, 1)) / len(scenes), image=str(sc.path))

                feats = extract_scene(sc, model, cfg, progress=tick)
                bar.close()
                outs = plan[i]
                feats.save_npz(st.stages[f"{i}:0"], model=(model.name, model.sha256))
                lines.append(f"{sc.path}: {len(feats)} keypoints -> {outs[0]}")
                if geo:
                    from sarreg.io.vector import write_points

                    xy_map = sc.xy_to_map(feats.xy)
                    attrs = {"x": feats.keypoints[:, 0].astype("float64"), "y": feats.keypoints[:, 1].astype("float64"),
                             "scale": feats.keypoints[:, 2].astype("float64"), "score": feats.scores.astype("float64")}
                    for j, o in ((1, outs[1]), (2, outs[2])):  # .keypoints.gpkg / .geojson, layer named after OUT
                        write_points(st.stages[f"{i}:{j}"], xy_map, attrs, sc.crs, layer=o.stem.replace(".", "_"))
                        lines.append(f"  -> {o}")
                if quicklook is not None:
                    from sarreg.quicklook import keypoint_quicklook

                    keypoint_quicklook(sc, feats.keypoints, st.stages[f"{i}:{len(outs) - 1}"])
                    lines.append(f"  -> {outs[-1]}")
                written += [str(o) for o in outs]
            st.commit(next(reversed(finals)), overwrite=overwrite)
        for line in lines:  # the files exist now
            click.echo(line)
        json_progress.final("ok", 0, outputs=written)
