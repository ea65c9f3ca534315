"""``register(ref, moving, out, config) -> Report``: the registration pipeline as a chain of stage calls.

Stages live in their own modules: ``relate`` (1), ``keypoints`` (2, 3), ``area`` (correlation: coarse fallback and
refinement), ``decide`` (4: refinement, choices and gates, with the descriptor check as a fallback), ``offsets``
(``--model local``), ``quality`` (model choice, gates); here they are chained.

1. relate: open both rasters, a prior moving -> reference pixel transform from the georeferencing (pyproj
   through both affines; identity for pixel-space images), valid-data footprints and their overlap (shapely);
2. coarse: both scenes read decimated (longer side ~``coarse_size``), the moving one resampled onto the
   reference's coarse grid by the prior, multiscale keypoints, mutual nearest neighbours, robust fit (with a
   rotation search when nothing fits);
3. fine: tiles spread over the overlap; each reference tile read at full resolution, the moving raster read
   around the window predicted by the coarse transform and resampled onto the tile grid, single-scale keypoints,
   matches mapped back to full-scene pixels;
4. estimate on all fine matches; refine by area-based correlation from the keypoint / coarse / prior estimates and
   keep the better; parsimony (BIC, bootstrap spread); quality gates -> status ok / low_quality / failed;
   (2-4 run again on both scenes read decimated, ``sarreg.oversample``, with ``--oversampling N``, or with auto
   when the pair as the files are is low_quality; a result that passes then stands, mapped back to the files' pixels);
5. outputs: warped raster (GDAL) and sidecars (report, tie points, QGIS .points, matches npz, quicklook;
   ``sarreg.report``).

Peak memory is bounded by the coarse images and one tile pair at a time: no full-resolution scene is ever read.
All matrices map moving pixels to reference pixels (x = column, y = row, (0, 0) = centre of top-left pixel).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sarreg.area import AREA_RADIUS, area_stage, global_start, settles
from sarreg.choice import select_model
from sarreg.config import RegisterConfig, nodata_value
from sarreg.correlate import repeat_period
from sarreg.errors import InputError, RegistrationFailed
from sarreg.export import earlier_outputs, register_outputs
from sarreg import oversample
from sarreg.decide import Decision, Refinement, decide, kp_usable
from sarreg.estimate import finite_round, fit_model, to_pixel_transform
from sarreg.geometry import georef_base, matrix_distance
from sarreg.grid import Grid, Native, corrected_geotransform, output_grid, pixel_size
from sarreg.io.raster import Scene, both, open_scene
from sarreg.io.safe import product_info
from sarreg.io.source import resolve_input, stac_info
from sarreg.keypoints import Extractor, coarse_stage, fine_stage, read_tiles, try_coarse_area
from sarreg.offsets import local_transform
from sarreg.quality import second_moves
from sarreg.relate import (check_bounds, located_by, native_fit, nonlinear_reason, open_moving,
                           overlap_area, poly2_departure, prior_fit, prior_matrix, read_coarse, reading,
                           registered_overlap)
from sarreg.report import (STATUS_EXIT, Report, correction_at_centre, enforce_max_shift, peak_mb,
                           versions_of_libraries, write_match_sidecars)
from sarreg.stage import StageResult
from sarreg.warp import check_output, check_warpable

# Extractor, prior_matrix and Report are re-exported: callers (batch, apply, sarreg) import them from here
__all__ = ["Report", "register", "register_outputs", "Extractor", "prior_matrix", "STATUS_EXIT"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- main
def register(ref: str | Path, moving: str | Path, out: str | Path, config: RegisterConfig = RegisterConfig(),
             progress: Callable[[str], None] | None = None, extractor: Extractor | None = None) -> Report:
    """Register ``moving`` onto ``ref``; write ``out`` (moving on the reference grid) and sidecars.

    ``extractor``: an ``Extractor`` (or subclass) built for ``config`` to reuse across calls, e.g. to keep the
    network loaded or serve cached reference features (``sarreg.batch``); default: a new one per call.
    Returns a Report with status ok / low_quality / failed; raises InputError / CRSError / OverlapError /
    OutputError / WeightsError for bad input (then nothing is written). Inputs are never modified.
    GDAL's block cache is bounded by ``warp_mem_mb`` (its default, 5% of RAM, would dominate peak memory).
    """
    import rasterio

    from sarreg import export
    from sarreg.outputs import Staging, check_raster_name, check_write_set, clean_stale, temp_path
    from sarreg.reapply import grid_of

    ref, moving, out = resolve_input(ref), resolve_input(moving), Path(out)
    finals = register_outputs(out, config)
    # stage names: hidden, per process, in the same folders; the sidecars of the staged raster name keep their roles
    stage_out = temp_path(out if out.suffix else out.with_name(out.name + ".tif"), stage=True)
    cfg = config.with_(quicklook=str(temp_path(config.quicklook, stage=True))) if config.quicklook else config
    stages = register_outputs(stage_out, cfg)
    if config.overwrite:  # what an earlier run wrote beside OUT and this one will not goes at the commit
        for role, (fin, st) in earlier_outputs(finals["report"], finals, stage_out).items():
            finals[role], stages[role] = fin, st
    inputs = [ref, moving, Path(config.weights) if config.weights else None, *config.preprocess.exclude]
    check_write_set(finals.values(), inputs, config.overwrite)  # (an input named as an output: said first)
    if "raster" in finals:
        check_raster_name(finals["raster"])
    clean_stale(finals.values())
    with Staging(finals, stages) as st:
        # rasterio passes an integer GDAL_CACHEMAX to GDALSetCacheMax64 as BYTES (a bare 64 was a 64-byte cache:
        # every decimated read decompressed each DEFLATE tile once per output row)
        with rasterio.Env(GDAL_CACHEMAX=max(16, config.warp_mem_mb // 2) * 2 ** 20):
            rep = _register(ref, moving, stage_out, cfg, progress, extractor)
        names = st.mapping()
        rep.output = names.get(rep.output, rep.output) if rep.output else None
        rep.outputs = {k: names.get(v, v) for k, v in rep.outputs.items()}
        rep.options["quicklook"] = config.quicklook
        if "relate" in rep.stages:  # the moving grid lets ``apply`` relate a raster on another grid to it
            rep.stages["relate"]["moving_grid"] = grid_of(moving)
        st.commit("report", lambda p: export.write_json(p, rep.to_dict()), config.overwrite)
    return rep


def _register(ref: str | Path, moving: str | Path, out: str | Path, config: RegisterConfig,
              progress: Callable[[str], None] | None, extractor: Extractor | None = None) -> Report:
    from sarreg import export
    from sarreg.warp import update_georef, warp_resampling, warp_to_grid

    cfg = config
    ref, moving, out = resolve_input(ref), resolve_input(moving), Path(out)
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    step = progress or (lambda msg: None)

    peaks: dict[str, float] = {}

    def tick(name: str, t0: float) -> float:
        t1 = time.perf_counter()
        timings[name] = round(timings.get(name, 0.0) + t1 - t0, 3)  # (summed over the attempts)
        peaks[name] = round(peak_mb(), 1)  # process peak RSS so far: shows which stage set it
        return t1

    cfg.validate()
    inputs = [ref, moving, *cfg.preprocess.exclude]
    check_output(out, inputs, cfg.overwrite)
    report_path = export.sidecar(out, ".report.json")
    check_output(report_path, inputs, cfg.overwrite)
    if cfg.quicklook:
        check_output(Path(cfg.quicklook), inputs, cfg.overwrite)
    if ref == moving or (isinstance(ref, Path) and isinstance(moving, Path) and ref.exists() and moving.exists()
                         and ref.resolve() == moving.resolve()):
        raise InputError(f"{moving}: reference and moving are the same file")

    t = time.perf_counter()
    step("relate")
    rs, ms = both(lambda: open_scene(ref, cfg.preprocess), lambda: open_moving(moving, cfg))
    if cfg.warp and not cfg.update_georef:
        check_warpable(moving, ms.dtype)  # (before the work, not after it)
    # before the work, not after; a moving raster located by GCPs (RPCs, arrays) gets them moved, or a geotransform
    if cfg.update_georef and cfg.warp and not (rs.georeferenced and ms.geolocated):
        raise InputError(f"{ref}: located by GCPs, not a geotransform: --update-georef needs a reference grid "
                         "(warp without it)" if rs.geolocated and not rs.georeferenced else
                         f"{moving if rs.georeferenced else ref}: --update-georef needs georeferenced rasters")
    if cfg.geojson and cfg.tiepoints and not rs.geolocated:  # (GeoJSON has no pixel space: lon/lat -465 deg)
        raise InputError(f"{ref}: --geojson needs a georeferenced reference (GeoJSON readers take pixel coordinates "
                         "for WGS 84 lon/lat; the .tiepoints.gpkg holds them)")
    prior, nonlinear = prior_fit(rs, ms)
    check_bounds(rs, ms, prior)
    grid = Grid.from_scene(rs)
    if cfg.warp and not cfg.update_georef and cfg.resolution not in ("reference", None):
        try:  # before the work (a reference without geotransform, an absurd size): it came after the registration
            output_grid(grid, cfg.resolution, np.eye(3), Grid.from_scene(ms))
        except InputError as e:
            raise InputError(f"{ref}: {e}") from None
    t = tick("relate", t)
    step("model")
    ext = extractor if extractor is not None else Extractor(cfg)
    t = tick("load_model", t)

    rep = Report(status="failed", message="", ref=str(ref), moving=str(moving), output=None, model=cfg.model,
                 reference_grid=grid.to_dict(), versions=versions_of_libraries(),
                 weights={"features": cfg.features, "name": ext.name, "sha256": ext.sha256},
                 options=cfg.to_dict())
    rep.stages["relate"] = {"prior": prior.tolist(), "prior_nonlinear_px": round(nonlinear, 3),
                            "georeferenced": rs.georeferenced,
                            "located_by": {"reference": located_by(rs), "moving": located_by(ms)}}
    rep.stages["relate"].update(reading(rs, ms))  # kind, band (index, description, scaling) of each raster
    # the value read as nodata in each raster and where it comes from: its tag ("file"), a fill value it does not
    # declare ("found", sarreg.io.fill; also under undeclared_nodata) or --nodata / --moving-nodata ("option")
    rep.stages["relate"]["nodata"] = {k: {"value": nodata_value(s.nodata), "from": s.nodata_from}
                                      for k, s in (("reference", rs), ("moving", ms))}
    found = {k: s.undeclared.value for k, s in (("reference", rs), ("moving", ms)) if s.undeclared is not None}
    if found:
        rep.stages["relate"]["undeclared_nodata"] = found
    if cfg.preprocess.exclude:  # share of each image's valid pixels that --exclude removed from matching
        rep.stages["relate"]["excluded"] = {"files": list(cfg.preprocess.exclude),
                                            **{k: s.exclude.fraction if s.exclude else 0.0
                                               for k, s in (("reference", rs), ("moving", ms))}}
    stac = {k: v for k, v in (("reference", stac_info(ref)), ("moving", stac_info(moving))) if v}
    if stac:  # inputs given as STAC Items: item id, datetime and asset read
        rep.stages["relate"]["stac"] = stac
    s1 = {k: v for k, v in (("reference", product_info(ref)), ("moving", product_info(moving))) if v}
    if s1:  # inputs given as Sentinel-1 products: product, polarisation and measurement read
        rep.stages["relate"]["sentinel1"] = s1
    # the pair as the files are, then (--oversampling) read decimated: sarreg.oversample
    att = None if cfg.oversampling not in ("auto", "1") else _attempt(rs, ms, prior, cfg, ext, step, tick)
    first = att.dec.est if att is not None and att.dec is not None else None
    tried = {} if att is None else {"1": oversample.tried(att.status, att.message, first)}
    flagged = att is not None and oversample.scene_flags(att.dec, cfg)
    for n in oversample.factors(rs, ms, cfg, "failed" if att is None else att.status, att and att.repeat, flagged):
        rn, mn = oversample.decimated(rs, n), oversample.decimated(ms, n)
        a_n = _attempt(rn, mn, prior_fit(rn, mn)[0], cfg, ext, step, tick)
        tried[str(n)] = oversample.tried(a_n.status, a_n.message, a_n.dec and a_n.dec.est)
        if att is not None and a_n.status != "ok":  # (auto: the next factor; --oversampling N: its one attempt)
            continue
        a_n = a_n.native(n, rs, ms)  # (models that are not one matrix are not read decimated)
        if first is not None:  # how far it moved the first attempt's estimate (file px, over the overlap)
            moved = matrix_distance(a_n.dec.est.matrix, first.matrix, att.area)
            tried[str(n)]["from_first_px"] = round(moved, 2)
            if refused := oversample.refused(a_n.dec.est, first, moved, cfg):
                tried[str(n)]["refused"] = refused
                continue
        att = a_n
        break
    assert att is not None
    if att.factor > 1 or len(tried) > 1:
        rep.stages["oversampling"] = {"factor": att.factor, "tried": tried, "pixels": (
            "the stage entries (coarse, fine, refine, ...) are in pixels read decimated by the factor; the matrix, "
            "quality, tie points and outputs in the files' pixels; the gates held in the decimated pixels, their "
            "limits in the files' pixels are limits_px")}
        if att.factor > 1:
            rep.stages["oversampling"]["limits_px"] = oversample.limits(cfg, att.factor)
    rep.stages.update(att.stages)
    area, frac, footprints = att.area, att.frac, att.footprints
    rep.stages["relate"].update({"overlap_fraction": round(frac, 4), "overlap_area_px": round(area.area, 1),
                                 "repeat": att.repeat})
    dec, fine, est = att.dec, att.fine, None
    matches = None if dec is None else dec.matches
    if dec is not None and dec.est is not None:
        est = dec.est
    else:
        rep.status, rep.message = "failed", att.message
    t = time.perf_counter()
    if est is not None:
        status, reasons, second, g = dec.status, dec.reasons, dec.second, dec.gates
        rep.stages["second_motion"] = second
        if second_moves(second, cfg) and dec.moved is not None and rs.geolocated:  # its outline, for --exclude
            p = export.sidecar(out, ".moved.gpkg")
            export.write_outline(p, dec.moved, rs, {"windows": second["second"],
                                                    "distance_px": second["distance_px"]})
            rep.outputs["moved"] = str(p)
        rep.status = status
        rep.message = "registered" if status == "ok" else "; ".join(reasons)
        rep.model = est.model
        rep.matrix = est.matrix.tolist()
        ptr = to_pixel_transform(est, matches.src, matches.dst)
        if cfg.model == "local" and status != "failed" and "georeferencing_kept" not in rep.stages:
            step("offsets")
            p = export.sidecar(out, ".offsets.tif")
            ptr, rep.stages["offsets"], field_reasons = local_transform(rs, ms, est, area, cfg, p)
            rep.model, rep.outputs["offsets"] = "local", str(p)
            if field_reasons and rep.status == "ok":
                rep.status = "low_quality"
                rep.message = "; ".join(field_reasons)
            elif field_reasons:
                rep.message += "; " + "; ".join(field_reasons)
            t = tick("offsets", t)
        native = None if rep.status == "failed" or rep.model != est.model else native_fit(  # (not local's field)
            rs, ms, est, matches.src, matches.dst, nonlinear, cfg, kept="georeferencing_kept" in rep.stages)
        if native is not None:  # (the warp and --update-georef then work in the moving raster's own CRS)
            ptr.native = Native(native[0], Grid.from_scene(ms))
            rep.stages["relate"]["native"] = native[1]
        why = (nonlinear_reason(nonlinear, rep.model, poly2_departure(rs, ms) if rep.model == "poly2" else None)
               if rep.status != "failed" and ptr.native is None else None)
        if why and not rs.georeferenced:  # a GCP-located reference: its own GCP fit is approximate
            log.warning("%s: %s", moving, why)
        elif why:  # (the estimate's own tie points may not see it: they sit where the affine fits best)
            rep.message = why if rep.status == "ok" else f"{rep.message}; {why}"
            rep.status = "low_quality"
        rep.transform = ptr.to_dict()
        rep.quality = est.summary()
        reg = registered_overlap(footprints, est)  # (relate's overlap was before registration)
        psize = pixel_size(grid)
        rep.quality.update({"rmse_map": est.rmse * psize if rs.georeferenced else None,
                            "heldout_rmse_map": est.heldout_rmse * psize if rs.georeferenced else None,
                            "overlap_fraction": round(reg[1] if reg is not None else frac, 4),
                            "overlap_area_px": round(reg[0].area if reg is not None else area.area, 1),
                            "model_adequacy_px": None if g["adequacy"] is None else round(g["adequacy"], 4),
                            "overlap_spread_px": finite_round(g["spread"]), "heldout_blocks_px": g["extrap"],
                            "cross_check": g["cross"]})
        rep.correction = correction_at_centre(rs, prior, est, area)
        enforce_max_shift(rep, cfg)
        if est.model in ("shift", "similarity", "affine"):  # (in the moving raster's own CRS for a native one)
            own = ptr.native is not None and ms.georeferenced  # (a GCP-located one: none of its own)
            gt = corrected_geotransform(*((ptr.native.matrix, ptr.native.grid) if own else (est.matrix, grid)))
            rep.geotransform = list(gt.to_gdal())
            if rs.georeferenced and ms.georeferenced and (ms.crs == rs.crs or ptr.native is not None):
                a_new = np.array([[gt.a, gt.b, gt.c], [gt.d, gt.e, gt.f], [0, 0, 1]])
                am = ms.transform
                a_old = np.array([[am.a, am.b, am.c], [am.d, am.e, am.f], [0, 0, 1]])
                rep.map_matrix = (a_new @ np.linalg.inv(a_old)).tolist()  # moving map -> corrected map
        # outputs
        write_raster = rep.status == "ok" or (cfg.force and rep.status == "low_quality")
        if write_raster and cfg.warp:
            step("warp")
            if cfg.update_georef:
                update_georef(moving, ptr, grid, out, cfg.fmt, cfg.compress, overwrite=cfg.overwrite,
                              nodata=ms.warp_nodata)
            else:
                og = output_grid(grid, cfg.resolution, ptr.matrix, Grid.from_scene(ms))
                used = warp_resampling(ms.dtype, cfg.resampling)  # (auto: nearest for complex data)
                warp_to_grid(moving, ptr, grid, out, used, cfg.fmt, cfg.compress, cfg.warp_mem_mb,
                             overwrite=cfg.overwrite, out_grid=og, nodata=ms.warp_nodata)
                rep.stages["warp"] = {"resampling": used}
                if og is not grid:  # --resolution: the output's own grid (same extent and CRS)
                    rep.stages["warp"].update(resolution=cfg.resolution, grid=og.to_dict())
            rep.output = str(out)
            rep.outputs["raster"] = str(out)
            t = tick("warp", t)
    step("sidecars")
    matches = fine if matches is None else matches
    if fine is not None and (len(fine.src) or len(matches.src)):
        write_match_sidecars(rep, rs, ms, matches, fine, est, cfg, out, prior)
    if cfg.quicklook and est is not None:
        q = Path(cfg.quicklook)
        export.write_quicklook(q, rs, ms, est, matches.src, matches.dst, est.inliers)
        rep.outputs["quicklook"] = str(q)
    t = tick("sidecars", t)
    timings["total"] = round(time.perf_counter() - t_all, 3)
    rep.timings_s = timings
    rep.peak_memory_mb = round(peak_mb(), 1)
    rep.stages["peak_memory_mb_after"] = peaks
    rep.outputs["report"] = str(report_path)
    export.write_json(report_path, rep.to_dict())
    log.info("%s: %s (%s)", moving, rep.status, rep.message)
    return rep


# --------------------------------------------------------------------------------------------- one attempt
@dataclass
class _Attempt:
    """The estimation chain's result on one pair of scenes (as the files are, or read decimated): the overlap
    (polygon, fraction, both footprints), the reference's repetition, the report's stage entries, the decision
    (None when a stage failed before it, ``message`` then says why) and the fine stage's matches."""

    area: Any
    frac: float
    footprints: tuple | None
    repeat: dict | None
    stages: dict[str, Any]
    dec: Decision | None
    fine: StageResult | None
    message: str = ""
    factor: int = 1  # read decimated by this

    @property
    def status(self) -> str:
        return self.dec.status if self.dec is not None and self.dec.est is not None else "failed"

    def native(self, n: int, rs: Scene, ms: Scene) -> "_Attempt":
        """This attempt on scenes read decimated by ``n`` -> in the files' pixels (``rs`` / ``ms`` as they are)."""
        d, fine = self.dec, oversample.stage_result(self.fine, n, rs, ms)
        dec = None if d is None else replace(
            d, est=None if d.est is None else oversample.estimate(d.est, n), est_area=None, area_res=None,
            matches=fine if d.matches is self.fine else oversample.stage_result(d.matches, n, rs, ms),
            gates=oversample.gates(d.gates, n), moved=oversample.geometry(d.moved, n))
        repeat = None if self.repeat is None else {k: round(v * n, 2) if k.endswith("_px") and v is not None else v
                                                   for k, v in self.repeat.items()}
        footprints = None if self.footprints is None else tuple(oversample.geometry(g, n) for g in self.footprints)
        return _Attempt(oversample.geometry(self.area, n), self.frac, footprints, repeat, self.stages, dec, fine,
                        self.message, n)


def _attempt(rs: Scene, ms: Scene, prior: np.ndarray, cfg: RegisterConfig, ext: Extractor,
             step: Callable[[str], None], tick: Callable[[str, float], float]) -> _Attempt:
    """Stages 2-4 on one pair of scenes: coarse, fine, estimate, refine and the quality gates."""
    t = time.perf_counter()
    step("coarse")
    ci = read_coarse(rs, ms, prior, cfg)
    area, frac, footprints = overlap_area(rs, ms, prior, cfg, ci)
    period = repeat_period(ci.ru, ci.rv)
    repeat = None if period is None else {"period_px": round(period[0] / ci.s, 2), "strength": round(period[1], 1)}
    stages: dict[str, Any] = {}
    dec = fine = None
    message = ""
    try:
        area_first = try_coarse_area(rs, ms, prior, ci, cfg, area)
        cest, coarse = coarse_stage(rs, ms, prior, ci, ext, cfg, area, area_first)
        # the correlation's own coarse estimate, a further start for the refinement when the keypoints' differs
        extra_starts: list[tuple[np.ndarray, float, str]] = []
        if coarse.info.get("method") != "correlation":
            if isinstance(area_first, RegistrationFailed):
                # too few windows agree on the coarse grid: the global phase correlation alone is still a start
                extra_starts.append((global_start(ci, prior)[0], max(6.0, coarse.info["threshold_px"]), "global"))
            else:
                extra_starts.append((area_first[0].matrix, max(6.0, 3.0 * area_first[0].rmse), "coarse_area"))
        del ci
        stages["coarse"] = {**coarse.info, "matrix": cest.matrix.tolist()}
        t = tick("coarse", t)
        step("fine")
        tiles, tiles_info = read_tiles(rs, ms, cest.matrix, cfg, area)
        # coverage grid: one cell per fine tile when tiles sample a large scene, else 8 x 8
        n_t = tiles_info["tiles_planned"]
        grid_n = 8 if n_t <= 1 else max(2, min(8, int(round(math.sqrt(n_t)))))
        fit_as = "affine" if cfg.model in ("auto", "local") else cfg.model
        base = georef_base(prior, rs.geolocated and ms.geolocated)  # a shift on the ground, at any pixel size
        c_radius = max(6.0, 3.0 * cest.rmse, coarse.info["threshold_px"])
        # correlation first here too: when the coarse correlation held and the fine windows settle the estimate
        # from it, the keypoints cannot change the result, so the network is not run (nor loaded)
        probe = dense = None
        if coarse.info.get("correlation_first") and cfg.keypoints == "auto":
            probe = area_stage(rs, ms, tiles, cest.matrix, c_radius, fit_as, cfg, area, grid_n, base=base)
        if probe is not None and settles(*probe, cfg.features):
            fine = StageResult.empty(rs, ms, {**tiles_info, "keypoints": "skipped (correlation settled)"})
        else:
            # the correlation did not settle: its windows are checked by the network's dense descriptors
            dense = ext.dense() if cfg.area_descriptors != "never" else None
            fine = fine_stage(rs, ms, cest.matrix, max(cest.rmse, coarse.info["threshold_px"] / 2), ext, cfg,
                              tiles, tiles_info)
        stages["fine"] = dict(fine.info)
        t = tick("fine", t)
        step("estimate")
        est_kp = kp_error = None
        try:
            if "keypoints" not in fine.info:  # (skipped when the correlation settled)
                est_kp = fit_model(fine.src, fine.dst, fit_as, cfg.robust, cfg.threshold, area=area,
                                   scores=fine.similarity, seed=cfg.seed, coverage_grid=grid_n, base=base)
                if cfg.model == "auto" and not cfg.update_georef:
                    est_kp, stages["model_selection"] = select_model(
                        est_kp, fine.src, fine.dst, area, cfg, scores=fine.similarity, coverage_grid=grid_n)
        except RegistrationFailed as e:
            kp_error = str(e)
        t = tick("estimate", t)
        step("refine")
        kp_good = kp_usable(est_kp)
        # the correlation from the keypoint estimate, the coarse one and the georeferencing (when they differ)
        starts = [(est_kp.matrix, AREA_RADIUS, "keypoints")] if kp_good else []
        starts.append((cest.matrix, c_radius, "coarse"))
        starts += extra_starts
        if rs.geolocated:
            starts.append((prior, max(6.0, 3.0 * cest.rmse, coarse.info["threshold_px"]), "georeferencing"))
        area_model = est_kp.model if kp_good and est_kp.model in ("affine", "homography") else fit_as
        done = (cest.matrix, probe) if probe is not None and area_model == fit_as else None
        r = Refinement(tiles, fine, est_kp, kp_error, starts, area_model, done, prior, grid_n, repeat, base, footprints,
                       rs.geolocated and ms.geolocated)
        dec = decide(rs, ms, r, cfg, area, dense)
        stages.update(dec.stages)
        est = dec.est
        if est is None:
            raise RegistrationFailed("; ".join(dec.reasons))
        t = tick("refine", t)  # (with the quality gates' own measurements: bootstrap, cross-check, second motion)
    except RegistrationFailed as e:
        message = str(e)
        if e.details and "coarse" not in stages:  # (each start the coarse stage tried, for the report)
            stages["coarse"] = {"failed": True, "tried": e.details}
        t = tick("estimate", t)
    if dec is not None and dec.est is not None:
        message = "registered" if dec.status == "ok" else "; ".join(dec.reasons)
    return _Attempt(area, frac, footprints, repeat, stages, dec, fine, message)
