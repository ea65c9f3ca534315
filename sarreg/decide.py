"""Stage 4 of ``register``: from the keypoint fit and the refinement's starts to an estimate and its status.

* ``refine``: the area-based refinement from every start (``sarreg.area``), the model choice, the choice between the
  keypoints' and the correlation's estimate, parsimony and one more pass through the model chosen;
* ``assess``: the quality gates' measurements (adequacy, bootstrap spread, cross-check, repetition, second motion)
  and the verdict ok / low_quality / failed (``sarreg.quality.judge``);
* ``decide``: both, and with ``area_descriptors="auto"`` both again with the network's dense descriptors checking
  the refinement's windows (``sarreg.dense``) when the correlation alone gave no trustworthy answer; on
  georeferenced rasters an estimate with too few inliers then gives way to the georeferencing
  (``keep_georeferencing``).

Why the descriptors only then: on the training-split check sets they turn many single-look / strongly changed
pairs from low_quality into ok results within 1 px, but where the correlation alone already passes the gates
their coarser offsets (the network's half-resolution grid) can only move a good answer (models/HISTORY.md
"Stop 43"); the correlation's precision where it can be trusted, the descriptors' robustness where it cannot.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from sarreg.area import AREA_SIZE, CHIP_SIZE, refine_from_starts, repass, repeat_match, second_motion
from sarreg.choice import (CV_MODELS, FAIL_INLIERS, SUPPORT_SPREAD, choose_estimate, overlap_points, prefer_simpler,
                           select_model, supported)
from sarreg.config import AFFINE_MODELS, RegisterConfig
from sarreg.errors import RegistrationFailed
from sarreg.estimate import Estimate, apply_matrix, bootstrap_spread, coverage
from sarreg.geometry import matrix_distance
from sarreg.io.raster import Scene
from sarreg.quality import (RIVAL_THRESHOLDS, confirms, cross_check, judge, local_distortion, model_adequacy,
                            repeat_worth_matching, rests_on_descriptors)
from sarreg.relate import registered_overlap
from sarreg.stage import StageResult

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from sarreg.dense import DenseDescriber

# an estimate on fewer tie points than --min-inliers keeps its place (low_quality) over the georeferencing when at
# least this share of the correlation windows tried agree with it, on chips only (refined with ``area.CHIP_SIZE``
# windows; ``keep_georeferencing``)
KEEP_SHARE = 0.5


@dataclass
class Refinement:
    """What the refinement needs beyond the scenes: the fine tiles, the keypoints' matches and fit (None when
    skipped or failed, with its error), the starts (matrix, search radius, name), the model the passes resample
    through, a settled probe to reuse ((matrix, area_stage result) or None), the prior, the coverage grid, the
    reference's repetition (or None), the georeferencing's linear part shifts and similarities are also fitted
    over (``geometry.georef_base``; None in pixel space or at the same pixel size), and both valid footprints (the
    coverage gate counts over the registered result's overlap, ``assess``)."""

    tiles: list
    fine: StageResult
    est_kp: Estimate | None
    kp_error: str | None
    starts: list[tuple[np.ndarray, float, str]]
    area_model: str
    done: tuple | None
    prior: np.ndarray
    grid_n: int
    repeat: dict | None
    base: np.ndarray | None = None
    footprints: tuple | None = None  # (reference, moving) valid footprints (``relate.overlap_area``)
    located: bool = True  # both rasters georeferenced (plain images may be mirrored: ``quality.mirrored``)

    @property
    def kp_good(self) -> bool:
        return kp_usable(self.est_kp)


def kp_usable(est_kp: Estimate | None) -> bool:
    """The keypoint fit has enough inliers to be a start of the refinement and a second source for its checks."""
    return est_kp is not None and est_kp.n_inliers >= FAIL_INLIERS


@dataclass
class Decision:
    """An estimate (None when none) with the tie points it was fitted to, the correlation's own estimate and
    windows, the status and its reasons, the report's stage entries and the gates' measurements."""

    est: Estimate | None
    matches: StageResult | None
    est_area: Estimate | None
    area_res: StageResult | None
    status: str = "failed"
    reasons: list[str] = field(default_factory=list)
    stages: dict[str, Any] = field(default_factory=dict)
    gates: dict[str, Any] = field(default_factory=dict)
    second: dict | None = None
    moved: Any = None
    raw: tuple[Estimate | None, StageResult | None] = (None, None)  # the refinement before the choices


def refine(rs: Scene, ms: Scene, r: Refinement, cfg: RegisterConfig, area: BaseGeometry,
           dense: DenseDescriber | None, without: Decision | None = None) -> Decision:
    """The refinement from ``r.starts`` (windows checked by ``dense`` when given), then the choices; a failed
    Decision when neither the keypoints nor the correlation give an estimate. ``without``: the Decision of the
    same refinement without the descriptors, when made already (its windows are reused, not measured again)."""
    stages: dict[str, Any] = {}
    est_kp, fine = r.est_kp, r.fine
    est_area, area_res = refine_from_starts(rs, ms, r.tiles, r.starts, r.area_model, cfg, area, r.grid_n,
                                            None if dense else r.done, dense, r.base)
    if rests_on_descriptors(est_area, area_res) and not confirms(
            cross_check(est_area, est_kp, fine, area, r.prior, cfg) if r.kp_good else None):
        # descriptors stood in for most windows, no keypoint fit confirms: they may be biased (stop 39)
        est_area, area_res = without.raw if without is not None and without.raw[1] is not None else \
            refine_from_starts(rs, ms, r.tiles, r.starts, r.area_model, cfg, area, r.grid_n, r.done, base=r.base)
        area_res = replace(area_res, info=dict(area_res.info))
        area_res.info["descriptors_unconfirmed"] = True  # (and so not used)
    raw = (est_area, replace(area_res, info=dict(area_res.info)))
    if est_area is not None and cfg.model == "auto" and not cfg.update_georef and r.area_model == "affine":
        est_area, stages["model_selection_area"] = select_model(
            est_area, area_res.src, area_res.dst, area, cfg, scores=area_res.similarity, coverage_grid=r.grid_n)
    est, matches = choose_estimate(est_kp, fine, est_area, area_res)
    if est is not None and cfg.model == "auto":  # (with --update-georef among the models a geotransform holds)
        est, stages["parsimony"] = prefer_simpler(est, matches, area, cfg, r.grid_n, located=r.located,
                                                  shift_left=rs.georeferenced and ms.georeferenced, base=r.base,
                                                  models=AFFINE_MODELS if cfg.update_georef else CV_MODELS)
    if matches is area_res:  # the windows resampled through the model chosen, when it is not the passes' one
        est, area_res = repass(rs, ms, r.tiles, est, area_res, r.area_model, cfg, area, r.grid_n, dense)
        matches = area_res
    stages["refine"] = {**area_res.info, "chosen": "correlation" if matches is area_res else "keypoints",
                        "keypoints": None if est_kp is None else est_kp.summary(),
                        "correlation": None if est_area is None else est_area.summary()}
    if est is None:
        return Decision(None, None, est_area, area_res, "failed", [r.kp_error or "no consistent tie points"], stages,
                        raw=raw)
    return Decision(est, matches, est_area, area_res, stages=stages, raw=raw)


def assess(d: Decision, r: Refinement, cfg: RegisterConfig, area: BaseGeometry) -> Decision:
    """The quality gates' measurements on ``d``'s estimate and the verdict (``d.status``, ``d.reasons``)."""
    est, matches = d.est, d.matches
    assert est is not None and matches is not None
    # the coverage gate counts over the registered result's overlap: over the one before registration (the whole
    # scene in pixel space) a pair offset by (300, 200) px in a 400 px scene, 0.03 px right, was low_quality for
    # coverage alone (0.12; 0.28 over its overlap). Of 72 such pairs (offsets 0-330 px, 4- and 1-look, changed,
    # SIFT) that was the one status that changed; none became ok that was off, none ok -> low_quality
    reg = registered_overlap(r.footprints, est) if r.footprints is not None else None
    if reg is not None and est.inliers.size == len(matches.dst):
        d.est = est = replace(est, coverage=coverage(matches.dst[est.inliers], reg[0], r.grid_n)[0])
    # --model local absorbs what a richer global model would (the field), so no adequacy gate there
    adequacy = model_adequacy(est, matches.src, matches.dst, area, cfg) if cfg.model != "local" else None
    pts = overlap_points(area)
    spread = bootstrap_spread(est, matches.src, matches.dst, pts, seed=cfg.seed)
    sup = supported(matches.dst, est.inliers) if est.inliers.size == len(matches.dst) else est.inliers
    if spread is not None and sup.sum() < est.n_inliers:  # pinned down by the supported inliers alone?
        alone = bootstrap_spread(replace(est, inliers=sup), matches.src, matches.dst, pts, seed=cfg.seed)
        alone = math.inf if alone is None else alone  # (too few of them to bootstrap: not pinned down)
        if alone > SUPPORT_SPREAD * spread:  # (else the bootstrap's own noise: a few inliers fewer)
            matches.info["supported_inliers"] = d.stages["refine"]["supported_inliers"] = int(sup.sum())
            spread = alone
    other = (d.est_area, d.area_res) if matches is r.fine else (r.est_kp, r.fine)
    cross = cross_check(est, *other, area, r.prior, cfg, r.located) if cfg.model != "local" else None
    extrap = (d.stages.get("parsimony") or {}).get("cv_median_px", {}).get(est.model)
    repeat = r.repeat
    if repeat is not None:
        repeat["correction_px"] = round(matrix_distance(est.matrix, r.prior, area), 2)
        min_px = RIVAL_THRESHOLDS * cfg.threshold
        for k in ("match_ratio", "match_px", "match_window_px"):  # (measured for this estimate, or not at all)
            repeat.pop(k, None)
        if repeat_worth_matching(repeat, min_px):  # does the pair itself match a cell away? (one more window pass)
            match = repeat_match(r.tiles, est.matrix, min_px)
            if match is not None:
                repeat.update(match_ratio=round(match[0], 3), match_px=match[1] and round(match[1], 1),
                              match_window_px=match[2])
    # did part of the scene move on its own? (--model local follows it)
    d.second, d.moved = second_motion(r.tiles, est, cfg, area, base=r.base) if cfg.model != "local" else (None, None)
    if cfg.model != "local":  # ... or follows a smooth distortion (terrain: --model local follows it)
        distortion = local_distortion(est, matches.src, matches.dst, cfg, AREA_SIZE)
        if distortion is not None:
            d.second = {**(d.second or {}), **distortion, "tie_points": int(len(matches.src))}
    if matches.alone_inliers(est.inliers):
        matches.info["inliers_descriptors_alone"] = matches.alone_inliers(est.inliers)
        d.stages["refine"]["inliers_descriptors_alone"] = matches.info["inliers_descriptors_alone"]
    d.status, d.reasons = judge(est, r.prior, cfg, adequacy, spread, matches.info, cross, extrap, repeat=repeat,
                                second=d.second, windows=int(d.stages["refine"].get("windows") or 0),
                                located=r.located, first_windows=d.stages["refine"].get("first_windows"))
    if est.n_inliers < FAIL_INLIERS:
        d.status = "failed"
        d.reasons.insert(0, f"too few inliers ({est.n_inliers} < {FAIL_INLIERS})")
    d.gates = {"adequacy": adequacy, "spread": spread, "cross": cross, "extrap": extrap}
    return d


def _once(rs: Scene, ms: Scene, r: Refinement, cfg: RegisterConfig, area: BaseGeometry,
          dense: DenseDescriber | None, without: Decision | None = None) -> Decision:
    """``refine`` then ``assess``; a refinement without an estimate is a failed Decision carrying its message."""
    try:
        d = refine(rs, ms, r, cfg, area, dense, without)
    except RegistrationFailed as e:
        return Decision(None, None, None, None, "failed", [str(e)])
    return d if d.est is None else assess(d, r, cfg, area)


def decide(rs: Scene, ms: Scene, r: Refinement, cfg: RegisterConfig, area: BaseGeometry,
           dense: DenseDescriber | None) -> Decision:
    """The estimate and its status. ``dense``: the network's dense descriptors (None: no descriptor check, i.e.
    SIFT features, ``area_descriptors="never"`` or a pair the correlation settled). With ``area_descriptors``
    "always" they check every refinement; with "auto" only a second one, when the first (correlation alone) is not
    ok, and the second's result stands (``stages.refine.descriptor_fallback``: the first one's status) unless it
    has no estimate where the first had one."""
    if dense is None or cfg.area_descriptors == "always":
        return keep_georeferencing(_once(rs, ms, r, cfg, area, dense), r, cfg, area)
    first = _once(rs, ms, r, cfg, area, None)
    if first.status == "ok":
        return first
    d = _once(rs, ms, r, cfg, area, dense, first)
    if d.est is None and first.est is not None:  # an estimate flagged as such beats none (--force can still use it)
        return keep_georeferencing(first, r, cfg, area)
    if "refine" in d.stages:
        d.stages["refine"]["descriptor_fallback"] = {"status": first.status,
                                                     "message": "; ".join(first.reasons)}
    return keep_georeferencing(d, r, cfg, area)


def keep_georeferencing(d: Decision, r: Refinement, cfg: RegisterConfig, area: BaseGeometry) -> Decision:
    """Between georeferenced rasters (``r.located``), a low_quality estimate that also fails the inlier gate (fewer
    than ``cfg.min_inliers``) gives way to the georeferencing: the Decision's estimate becomes the prior (no
    correction; its residuals and inliers measured on the same tie points), the status stays low_quality with the
    reason first, and the estimate is kept in ``stages["georeferencing_kept"]``.

    Why: such an estimate rests on a handful of windows that can agree by chance, and on an unlike look it is
    often farther off than the georeferencing it would replace (tens of px where the georeferencing is a few px
    off or right). On the training-split georeferenced sets, of the 17 such estimates the georeferencing was
    closer for 16 (models/HISTORY.md "Stop 44"); of the 32 with more inliers, the estimate was closer for 20.
    A failed registration (fewer than ``FAIL_INLIERS``) stays failed: nothing is reported as a result there.
    Not on a chip (refined with ``area.CHIP_SIZE`` windows) when at least KEEP_SHARE of the windows tried agree with
    the estimate (``stages["estimate_kept"]``): a chip holds few windows, and most of them agreeing is no chance
    (generated 80 px chips: 5 such estimates 0.05-0.19 px off, their georeferencing 3-6 px off)."""
    est, m = d.est, d.matches
    if not r.located or est is None or m is None or d.status != "low_quality" or est.n_inliers >= cfg.min_inliers:
        return d
    chip = m.info.get("method") == "correlation" and m.info.get("window_px") == CHIP_SIZE
    windows = int(m.info.get("windows") or 0) if chip else 0
    if windows and est.n_inliers >= KEEP_SHARE * windows:
        d.stages["estimate_kept"] = {"windows": windows, "agreeing": est.n_inliers, "min_inliers": cfg.min_inliers}
        return d
    prior = np.asarray(r.prior, float)
    res = np.hypot(*(apply_matrix(prior, m.src) - m.dst).T) if len(m.src) else np.zeros(0)
    inl = res <= cfg.threshold
    cov, hull = coverage(m.dst[inl], area, r.grid_n)
    lin = prior[:2, :2]
    model = "homography" if not np.allclose(prior[2], [0, 0, 1]) else \
        "shift" if np.allclose(lin, np.eye(2), atol=1e-9) else "affine"
    rmse = float(np.sqrt(np.mean(res[inl] ** 2))) if inl.any() else float("nan")
    dist = matrix_distance(est.matrix, prior, area)
    d.stages["georeferencing_kept"] = {"estimate": est.summary(), "estimate_matrix": est.matrix.tolist(),
                                       "distance_px": round(dist, 2), "min_inliers": cfg.min_inliers}
    few = f"{est.n_inliers} inliers < {cfg.min_inliers}"
    d.reasons = [f"kept the georeferencing: the estimate found ({dist:.1f} px from it) rests on {few}"] + [
        x for x in d.reasons if x != few]  # (the gate's own words, said once)
    d.est = Estimate(model, prior.copy(), inl, res, rmse, float("nan"), cov, hull, cfg.threshold)
    return d
