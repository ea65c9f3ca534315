"""Worker side of a batch: the Dask tasks (one registration per scene; in a chain also one warp per scene).

Tasks take and return plain dicts (cheap to ship, stable across versions), write into their own staging folder,
publish the finished files into OUTDIR, and never raise: a scene's failure is its result, not the batch's.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from sarreg.batch.cache import CachingExtractor, load_index, process_extractor
from sarreg.batch.files import atomic_write, dumps, error_text, input_sha256, is_temp
from sarreg.batch.manifest import fresh_stage, publish
from sarreg.batch.results import CHAIN_SUFFIX, OUT_SUFFIX, STATUSES, SceneWarnings, num, result_fields
from sarreg.config import RegisterConfig
from sarreg.errors import SarregError

log = logging.getLogger(__name__)


def georef_prior(ref: str | Path, moving: str | Path, config: RegisterConfig) -> np.ndarray:
    """Moving px -> reference px implied by the georeferencings alone (the pipeline's ``prior_matrix``)."""
    from sarreg.io.raster import open_scene
    from sarreg.pipeline import prior_matrix
    from sarreg.relate import open_moving

    return prior_matrix(open_scene(ref, config.preprocess), open_moving(moving, config))


def register_scene(ref: str, moving: str, out: str, config: RegisterConfig,
                   ref_info: dict[str, Any] | None) -> tuple[Any, int | None]:
    """``sarreg.pipeline.register`` with this worker's kept network and, when prepared, the cached reference
    features. Returns the ``Report`` and the number of extractions served from the cache (None without cache)."""
    from sarreg.pipeline import register

    ext = process_extractor(config)
    folder = (ref_info or {}).get("features")
    if not folder:
        return register(ref, moving, out, config, extractor=ext), None
    cached = CachingExtractor(ext, index=load_index(folder))
    return register(ref, moving, out, config, extractor=cached), cached.hits


def _recorded(e: Exception, moving: Any, where: str) -> str:
    """A scene's error as recorded in its result; unexpected ones (not SarregError) also logged with traceback."""
    if not isinstance(e, SarregError):
        log.error("%s: unexpected error%s\n%s", moving, where, traceback.format_exc())
    return error_text(e)


def run_scene(task: dict[str, Any]) -> dict[str, Any]:
    """Worker task: register one scene (to the reference or, in a chain, to its predecessor); never raises.

    Writes into the task's staging folder and publishes the finished files into OUTDIR. Returns a plain dict:
    ``result`` (``SceneResult`` fields), ``outputs`` (name -> sha256), ``report`` (the pipeline report as JSON
    types) and the input's sha256.
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    key, moving, outdir = task["key"], task["moving"], Path(task["outdir"])
    stage = Path(task["stage"])
    cfg: RegisterConfig = task["config"]
    res: dict[str, Any] = {"scene": key, "path": moving, "status": "failed"}
    out: dict[str, Any] = {"key": key, "result": res, "outputs": {}, "report": None, "host": socket.gethostname()}
    with SceneWarnings(task["ref"], moving) as seen:  # (kept in the result, not printed by the worker)
        try:
            fresh_stage(stage)
            report, res["ref_cache_hits"] = register_scene(task["ref"], moving, str(stage / (key + OUT_SUFFIX)), cfg,
                                                           task.get("ref_info"))
            # the paths the report names, where the files are published (they named the staging folder)
            out["report"] = _moved(json.loads(report.to_json()), f"{stage}/", f"{outdir}/")
            if task.get("chain_link"):  # a link onto the predecessor's grid
                out["report"]["chain_link"] = task["chain_link"]
            if report.outputs.get("report"):
                atomic_write(stage / Path(report.outputs["report"]).name, dumps(out["report"]))
            res["status"] = report.status if report.status in STATUSES else "failed"
            res["error"] = (report.message or "registration failed") if res["status"] != "ok" else None
            prior = georef_prior(task["ref"], moving, cfg) if report.matrix is not None else None
            res.update(result_fields(report, task["grid"], prior))
            timings: dict[str, float] = dict(report.timings_s or {})
            t = time.perf_counter()
            out["input_sha256"] = input_sha256(moving)
            # a chain's link: held in its staging folder until its scene is committed (``chain``), so that a run
            # killed in between leaves no link files (a report saying ok) beside a scene without a raster
            out["outputs"] = publish(stage, None if task.get("hold") else outdir)
            out["held"] = str(stage) if task.get("hold") else None
            timings["publish"] = time.perf_counter() - t
            timings["cpu"] = time.process_time() - cpu0  # CPU seconds of the worker process (all its threads)
            res["timings"] = {k: round(float(v), 3) for k, v in timings.items() if num(v) is not None}
        except Exception as e:  # noqa: BLE001 - a scene's failure must never stop the batch: it is its result
            # (the user's folder named in the message, not the task's staging folder)
            res["status"], res["error"] = "failed", _recorded(e, moving, "").replace(f"{stage}/", f"{outdir}/")
        finally:
            if not out.get("held"):
                shutil.rmtree(stage, ignore_errors=True)
    if seen.lines:
        res["warnings"] = seen.lines
    res["time_s"] = round(time.perf_counter() - t0, 3)
    return out


def _moved(doc: Any, old: str, new: str) -> Any:
    """``doc`` (JSON types) with every string that starts with ``old`` starting with ``new`` instead."""
    if isinstance(doc, dict):
        return {k: _moved(v, old, new) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_moved(v, old, new) for v in doc]
    return new + doc[len(old):] if isinstance(doc, str) and doc.startswith(old) else doc


def run_scene_with_ref(task: dict[str, Any], ref_info: dict[str, Any]) -> dict[str, Any]:
    """``run_scene`` after the reference task (Dask passes its result: where the cached features are)."""
    return run_scene(dict(task, ref_info=ref_info))


def warp_scene(task: dict[str, Any]) -> dict[str, Any]:
    """Worker task of a chain: warp one scene onto the reference grid with its composed matrix; never raises.

    Also writes ``<scene>_reg.chain.json`` (composed matrix, the chain link, the pair's quality) and returns the
    scene's georeferencing prior (for its shift in the summary).
    """
    t0 = time.perf_counter()
    key, moving, outdir, stage = task["key"], task["moving"], Path(task["outdir"]), Path(task["stage"])
    out: dict[str, Any] = {"key": key, "outputs": {}, "error": None, "timings": {}}
    cfg: RegisterConfig = task["config"]
    held: list[str] = []
    try:
        from sarreg.reapply import grid_of
        from sarreg.relate import moving_pre
        from sarreg.grid import Grid, PixelTransform, output_grid
        from sarreg.io.raster import open_dataset
        from sarreg.warp import update_georef, warp_resampling, warp_to_grid

        fresh_stage(stage)
        if task.get("held"):  # the link's files, published with the warp (the sidecars rebased first)
            link = Path(task["held"])
            held += [p.name for p in link.iterdir() if p.is_file() and not is_temp(p.name)]
            for name in held:
                os.replace(link / name, stage / name)
        m = np.asarray(task["matrix"], dtype=np.float64)
        with SceneWarnings(task["ref"], moving):  # (the link's result has the inputs' warnings: not printed again)
            out["prior"] = georef_prior(task["ref"], moving, cfg).tolist()
        model = "affine" if np.allclose(m[2, :2], 0, atol=1e-12) else "homography"  # a product of the links
        tr = PixelTransform(model, m)
        grid = Grid.from_dict(task["grid"])
        target = stage / (key + OUT_SUFFIX)
        nodata = moving_pre(cfg).nodata  # --moving-nodata / --nodata, else what the scene's link registration read
        nodata = task.get("nodata", "auto") if nodata is None else nodata
        used = None
        if cfg.warp:
            if cfg.update_georef:
                update_georef(moving, tr, grid, target, fmt=cfg.fmt, compress=cfg.compress, nodata=nodata)
            else:
                with open_dataset(moving) as ds:  # (auto: nearest for complex data)
                    used = warp_resampling(ds.dtypes[0], cfg.resampling)
                warp_to_grid(moving, tr, grid, target, resampling=used, fmt=cfg.fmt, nodata=nodata,
                             compress=cfg.compress, mem_mb=cfg.warp_mem_mb, threads=1,
                             out_grid=output_grid(grid, cfg.resolution, m, Grid.from_dict(grid_of(moving))
                                                  if cfg.resolution == "moving" else None))
        doc = {"scene": key, "moving": moving, "reference": task["ref"], "via": task["via"],
               "matrix": m.tolist(), "model": model, "link": task["link"], "resampling": used,
               # what ``sarreg apply`` reads of a report: the composed transform onto the reference grid
               "status": task.get("status", "ok"), "message": (task["link"] or {}).get("message"),
               "transform": tr.to_dict(), "reference_grid": task["grid"],
               "stages": {"relate": {**task.get("relate", {}), "prior": out["prior"]}}}
        atomic_write(stage / (key + CHAIN_SUFFIX), dumps(doc))
        if task.get("pred_matrix") is not None:
            from sarreg.batch.rebase import rebase_sidecars

            rebase_sidecars(stage, stage, key + OUT_SUFFIX, task["pred_matrix"], task.get("pred_grid"), task["grid"])
        out["timings"]["warp"] = round(time.perf_counter() - t0, 3)
        out["outputs"] = publish(stage, outdir)
    except Exception as e:  # noqa: BLE001 - recorded as the scene's error
        out["error"] = _recorded(e, moving, " in the chain warp")
        with contextlib.suppress(OSError):  # the link's files, as a failed warp's scene is committed with them
            out["outputs"] = publish(stage, outdir, held)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if task.get("held"):
            shutil.rmtree(task["held"], ignore_errors=True)
    out["time_s"] = round(time.perf_counter() - t0, 3)
    return out
