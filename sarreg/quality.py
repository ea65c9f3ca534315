"""Quality gates: whether a registration can be trusted (status ok / low_quality) and why not: model adequacy,
agreement of the two sources of tie points, rival answers, repeating scenes, a second motion, uncertainty away from
the tie points."""
from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from sarreg.choice import (CV_MODELS, clearly_better, cv_medians, extrapolates_poorly, fit_all, model_distance,
                           overlap_points, spread_limit, supported, too_uncertain)
from sarreg.config import RegisterConfig
from sarreg.estimate import Estimate, decompose, finite_round
from sarreg.stage import StageResult

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry


RICHER = {"shift": "affine", "similarity": "affine", "affine": "homography"}


def model_adequacy(est: Estimate, src: np.ndarray, dst: np.ndarray, area: BaseGeometry, cfg: RegisterConfig
                   ) -> float | None:
    """Mean distance (px, over a grid on the overlap) between the estimate and a richer model fitted to the same
    matches that explains clearly more of them (the largest such distance; 0.0: none does): a shift fitted to
    rotated scenes still has inliers (a band of them) but disagrees with an affine. A rival beyond the next richer
    model (a homography for a similarity or a shift) counts only when it also predicts held-out blocks of the tie
    points at least as well (``choose_by_extrapolation``'s measure): a similarity fitted to a perspective scene can be
    kept for a small margin there and still be 3 px off at the far side of the overlap. None: no richer fit."""
    richer = RICHER.get(est.model)
    if richer is None:
        return None
    fits = fit_all(src, dst, area, cfg, 8, None)
    fits[est.model] = est
    rivals = [m for m in CV_MODELS[CV_MODELS.index(richer):] if m in fits]
    if not rivals:
        return None
    cv = None
    worst = 0.0
    chosen = replace(est, inliers=supported(dst, est.inliers))  # (its supported inliers, once for all rivals)
    for model in rivals:
        alt = fits[model]
        if not clearly_better(replace(alt, inliers=supported(dst, alt.inliers)), chosen):
            continue  # the richer model explains no more matches (among mostly agreeing ones, ``supported``)
        if model != richer:
            cv = cv_medians(fits, src, dst, cfg) if cv is None else cv
            if not cv or cv[model] > cv[est.model]:
                continue
        worst = max(worst, model_distance(est, alt, area) or 0.0)
    return worst


# a correlation answer that only the global phase correlation started (no coarse estimate held) must be agreed on
# by at least 11 % of the correlation windows: a few agreeing windows in one corner can be chance (a turned scene:
# 38 of 396). Measured (stop 7): wrong answers from this start had 7.7-9.8 % agreeing, right ones 14 % or more
GLOBAL_START_MIN_AGREE = 0.11


# the kept estimate must explain at least half of the inlier tie points of the other source (keypoints or correlation)
# when that source's own estimate passes the gates. Measured (stop 13, nine 256 px training-split sets, v4 / v4w):
# it flags 11 / 14 of 112 / 122 ok results, 7 / 6 of them more than 2 px off (one 3.3 / 4.0 px), 1 / 2 within
# 1 px; the other ok results more than 3 px off (1 / 1) have no second source that passes the gates
CROSS_MIN_AGREE = 0.5
# an overlap too small for the refinement's correlation windows (``area.AREA_SIZE`` px, fewer than CHECK_WINDOWS of
# them: 8, ``area.AREA_MIN_WINDOWS``) leaves the keypoints' fit unchecked. Measured (stop 53) on 96 synthetic pairs of
# 48-128 px with a known shift: 16 of such unchecked ok results were 1-9 px off (an affine on 17-28 inliers, or a
# shift on matches of a repeating texture); with the windows (128 px and more) no ok result was 1 px off
CHECK_WINDOWS = 8
# an estimate more than this share of whose inliers are windows measured by the network's dense descriptors alone
# (``sarreg.dense.verified``: the correlation confirmed few windows of that tile) is not ok unless the keypoints'
# own fit passes the gates and agrees with it (``cross_check``). Why: on radiometrically unlike pairs the
# descriptors can agree with each other on an answer several px off (stop 39: 8 such ok results 4-42 px off among
# 704 training-split pairs, the keypoints' fit failing or absent on all 8)
DESCRIPTORS_ALONE = 0.5
# rival solutions (stop 29): the refinement runs from several starts (``area.refine_from_starts``) and keeps the one
# most correlation windows agree with; another start that converged more than RIVAL_THRESHOLDS x --threshold away
# with at least RIVAL_SUPPORT as many agreeing windows is a near tie between two different answers. Measured on the
# training-split sets through register (about 600 pairs): it flags 1 ok result 4.6 px off and 1 within 1 px
RIVAL_SUPPORT = 0.95
RIVAL_THRESHOLDS = 3.0
# ... and a rival beyond three correlation search radii (``area.AREA_RADIUS``) is a different basin: windows cannot
# agree on a wrong answer that far away unless the scene repeats (a lattice of fields, rows of a plantation), so
# RIVAL_FAR_SUPPORT as many windows already make it a tie. Measured (stop 30) on 230 synthetic pairs (94 with
# periodic content): it flags 7 ok results 15-77 px off (6 of them also REPEAT_STRENGTH) and 1 within 1.4 px; on the
# training-split sets 1 ok result (GL geo_0031, 2.85 px off, a rival 50 px away with 82 % support)
RIVAL_FAR_SUPPORT = 0.75
RIVAL_FAR_PX = 24.0
# a repeating scene (``correlate.repeat_period``: spectral peak REPEAT_STRENGTH x its ring or more) matches one
# period away nearly as well: an answer more than half a period from the prior may be whole periods off. Measured
# (stop 30): the 1088 training-split images reach at most 43; of 230 synthetic pairs, with REPEAT_MATCH below, it
# flags 16 of the 17 ok results 15-504 px off (all lattices) and 2 right ones (within 1.1 px)
REPEAT_STRENGTH = 100.0
# ... unless the pair itself does not match one step away (``area.repeat_match`` under REPEAT_MATCH): fields of
# different crops on a regular grid repeat in the spectrum, but their content pins the answer down
REPEAT_MATCH = 0.5
# a weaker repetition (REPEAT_WEAK x its ring or more) is judged by the pair alone: where it matches REPEAT_MATCH as
# well one cell away, an answer farther from the prior than half that step may be whole cells off. Measured (stop
# 55): regular field grids (checkerboards of 24-47 px cells, strength 32-82) matched 0.66-0.86 as well a cell away
# and 4 of 15 such pairs were ok 35-79 px off (the 11 right ones stay ok); 20 synthetic multi-date scenes (floods,
# crop flips, texture, snow; strength up to 31) matched at most 0.46; 12 pairs of the training images (Sandia,
# UAVSAR, Sentinel-1) reach strength 13
REPEAT_WEAK = 25.0
# ... judged with windows of REPEAT_WEAK_WINDOW px only: summed over the few 128 px windows of a small scene, right
# 256 px training-split pairs matched up to 1.17 as well a few px away (speckle, not a repeat), and single-look ones
# reach strength 98
REPEAT_WEAK_WINDOW = 256
# part of the scene moved on its own (``area.second_motion``): at least this share of the textured windows (and
# --min-inliers of them) agree on one other shift, more than RIVAL_THRESHOLDS x --threshold away. Synthetic two-motion
# pairs: 26-53 % of the windows; 480 training-split pairs (one motion, temporal change): 0 (models/HISTORY.md, stop 33)
SECOND_SHARE = 0.2
# a smooth local distortion (terrain, layover between orbits, a landslide's bulge): correlation windows that miss
# the estimate by more than --threshold but lie within it of the median offset of the windows around them that share
# no pixel with them (LOCAL_NEAR: from one window size to three), that median itself beyond --threshold.
# Temporal change makes windows miss too, but independent neighbours do not agree on where. Measured (stop 55) on 109
# synthetic multi-date pairs with known truth: 5 with height-dependent offsets or a +-3 px distortion (ok, 4-9 px
# off at places) had 10-23 % such windows; every other pair (floods, crop flips, snow, texture, lattices, sea,
# other sensors and CRSs) at most 4.6 %, most 0
LOCAL_SHARE = 0.08
LOCAL_NEAR = (1.0, 3.0)
# tie points whose convex hull covers under this share of the overlap lie nearly on one line (a row of windows along a
# thin strip: hull 0.01): a model with terms across that line (affine and richer) is not pinned down there
LINE_HULL = 0.05
ACROSS_LINE = ("shift", "similarity")  # models that two points along a line determine
GROSS_THRESHOLDS = 10.0  # gross disagreement with an untrusted second estimate: 10 x --threshold (15 px by default)
GROSS_SIGMAS = 3.0  # ... plus 3 sigma of that estimate's bootstrap spread over the overlap


def judge(est: Estimate, prior: np.ndarray, cfg: RegisterConfig, adequacy: float | None = None,
          spread: float | None = None, matches_info: dict | None = None, cross: dict | None = None,
          extrapolation: float | None = None, repeat: dict | None = None,
          second: dict | None = None, windows: int | None = None, located: bool = True,
          first_windows: dict | None = None) -> tuple[str, list[str]]:
    """Quality gates -> ("ok" | "low_quality", reasons). spread: bootstrap 1-sigma spread of the estimate over the
    overlap (px): an estimate its tie points cannot pin down away from them is not trusted. matches_info: the info
    of the matches the estimate was fitted to (for correlation tie points: windows tried, which start). cross:
    ``cross_check``'s agreement with the other source of tie points. extrapolation: the estimate's median residual
    on held-out spatial blocks of its tie points (``choose_by_extrapolation``, px): with a spread that is also
    large, the model does not carry over to where it has no tie points (bias the bootstrap alone does not see).
    repeat: the reference's repetition (``period_px``, ``strength``), the answer's distance from the prior
    (``correction_px``) and how well the pair matches one step away (``match_ratio``, that step ``match_px``;
    ``area.repeat_match``).
    second: ``area.second_motion`` (windows agreeing on another shift: part of the scene moved on its own).
    matches_info["inliers_descriptors_alone"]: inliers measured by the dense descriptors alone (DESCRIPTORS_ALONE).
    windows: the correlation windows the refinement tried (CHECK_WINDOWS; None: not measured).
    located: both rasters are georeferenced; between plain images a mirrored estimate is plausible (``mirrored``).
    first_windows: a pass of smaller windows that gave no estimate before those counted in ``windows`` (a chip's)."""
    reasons = []
    if windows is not None and windows < CHECK_WINDOWS:
        f = first_windows
        smaller = "" if not f else f"; its {f['windows']} windows of {f['window_px']} px gave no estimate: {f['error']}"
        if f and f["windows"] >= CHECK_WINDOWS:  # the overlap held enough smaller windows: they disagreed
            reasons.append(f"the correlation cannot check the keypoints' fit: its {f['windows']} windows of "
                           f"{f['window_px']} px gave no estimate ({f['error']}) and {windows} larger window(s) fit "
                           f"in the overlap (fewer than {CHECK_WINDOWS}), and keypoints alone can be pixels off")
        else:
            reasons.append(f"the overlap is too small to check the keypoints' fit: {windows} correlation window(s) of "
                           f"the refinement fit in it (fewer than {CHECK_WINDOWS}{smaller}), and keypoints alone can "
                           f"be pixels off")
    info = matches_info or {}
    n_win = int(info.get("windows") or 0)
    if info.get("start") == "global" and n_win and est.n_inliers < GLOBAL_START_MIN_AGREE * n_win:
        reasons.append(f"only {est.n_inliers} of {n_win} correlation windows agree, started from the global phase "
                       f"correlation alone (no coarse estimate held)")
    rival = rival_start(info, cfg)
    if rival:
        reasons.append(rival)
    if repeat and repeats_far(repeat):
        reasons.append(f"repeating scene: the reference repeats every {repeat['period_px']:.1f} px and the answer is "
                       f"{repeat['correction_px']:.1f} px from the prior, more than half a period: it may be whole "
                       f"periods off")
    elif repeat and matches_a_cell_away(repeat):
        reasons.append(f"repeating scene: the pair matches {repeat['match_ratio']:.0%} as well "
                       f"{repeat['match_px']:.1f} px from this answer, which is {repeat['correction_px']:.1f} px from "
                       f"the prior, more than half that step: it may be whole cells off")
    if second_moves(second, cfg):
        reasons.append(f"part of the scene moves differently: {second['second']} of {second['windows']} correlation "
                       f"windows agree on a shift {second['distance_px']:.1f} px from this estimate ({second['agree']} "
                       f"agree with it); --exclude the part that moved (its outline: the .moved.gpkg sidecar), or "
                       f"--model local for a smooth distortion (terrain)")
    if distorted_locally(second, cfg):
        reasons.append(f"the scene is distorted locally (terrain, layover): {second['distorted']} of "
                       f"{second['tie_points']} tie points miss this {est.model} but follow their neighbours, "
                       f"{second['distorted_px']:.1f} px off it (median); --model local follows a distortion smoother "
                       f"than its offsets grid (its result says when it cannot)")
    # when chance inliers pinned it down, the other source (searched around the same start) confirms nothing more
    sup = info.get("supported_inliers")
    confirmed = confirms(cross) and sup is None
    if too_uncertain(spread, cfg, confirmed=confirmed):
        what = (f"bootstrap spread {spread:.2f} px over the overlap > {spread_limit(cfg, confirmed):g}"
                if math.isfinite(spread) else "too few of them to measure a spread over the overlap")
        why = ("" if sup is None else f" (of its {est.n_inliers} inliers, the {sup} among mostly agreeing tie points; "
               f"the others lie where most tie points disagree, e.g. sea or changed ground, and may agree by chance)")
        reasons.append(f"uncertain away from the tie points: {what}{why}")
    if extrapolates_poorly(spread, extrapolation, cfg):
        sp = f"{spread:.2f} px" if math.isfinite(spread) else "not measurable (too few supported inliers)"
        reasons.append(f"extrapolates poorly: held-out blocks of the tie points are predicted {extrapolation:.2f} px "
                       f"off (median) and the bootstrap spread over the overlap is {sp}")
    alone = int(info.get("inliers_descriptors_alone") or 0)
    if alone > DESCRIPTORS_ALONE * est.n_inliers and not confirms(cross):
        reasons.append(f"rests on the network's dense descriptors alone: {alone} of {est.n_inliers} inliers are "
                       f"windows the correlation did not confirm, and no keypoint fit that passes the gates agrees")
    if cross is not None and not cross.get("other_passes", True):
        limit = gross_limit(cross, cfg)
        if cross["distance_px"] is not None and cross["distance_px"] > limit:
            reasons.append(f"the {cross['source']} tie points' own {cross['model']} fit ({cross['tie_points']} "
                           f"inliers, not trusted alone) is {cross['distance_px']:.1f} px from this estimate over the "
                           f"overlap, beyond its own uncertainty ({limit:.1f} px): one of them is grossly wrong")
    elif cross is not None and cross["within_threshold"] < CROSS_MIN_AGREE:
        reasons.append(f"the {cross['source']} tie points disagree: only {cross['within_threshold']:.0%} of the "
                       f"{cross['tie_points']} inliers of their own {cross['model']} fit lie within "
                       f"{cfg.threshold:g} px of this estimate (median {cross['median_px']:.2f} px)")
    if adequacy is not None and adequacy > cfg.max_rmse:
        reasons.append(f"{est.model} model inadequate: a richer fit that explains clearly more tie points differs "
                       f"by {adequacy:.2f} px on average over the overlap")
    if est.n_inliers < cfg.min_inliers:
        reasons.append(f"{est.n_inliers} inliers < {cfg.min_inliers}")
    if not est.rmse <= cfg.max_rmse:
        reasons.append(f"RMSE {est.rmse:.2f} px > {cfg.max_rmse:g}")
    if not (math.isfinite(est.heldout_rmse) and est.heldout_rmse <= 2.0 * cfg.max_rmse):
        reasons.append(f"held-out RMSE {est.heldout_rmse:.2f} px > {2 * cfg.max_rmse:g}")
    if est.coverage < cfg.min_coverage:
        reasons.append(f"coverage {est.coverage:.2f} < {cfg.min_coverage:g}")
    if est.model not in ACROSS_LINE and est.hull_ratio < LINE_HULL:
        reasons.append(f"the tie points lie nearly on one line (their hull covers {est.hull_ratio:.1%} of the "
                       f"overlap): the {est.model}'s terms across it are not pinned down; --model shift or similarity")
    if est.inlier_ratio < 0.05:
        reasons.append(f"inlier ratio {est.inlier_ratio:.3f} < 0.05")
    rel = decompose(np.linalg.inv(prior) @ est.matrix)
    flip = mirrored(prior, est.matrix)
    if flip and located:
        reasons.append(f"the estimate mirrors the moving raster relative to its georeferencing (scale "
                       f"{rel['scale_x']:.2f} / {rel['scale_y']:.2f}): a wrong match, or a georeferencing that flips "
                       f"the image")
    elif not (0.2 < rel["scale_x"] < 5 and 0.2 < abs(rel["scale_y"]) < 5 and abs(rel["shear"]) < 0.5):
        where = "relative to the georeferencing" if located else "between the images"
        reasons.append(f"implausible scale/shear {where} ({rel['scale_x']:.2f}, {rel['scale_y']:.2f}, "
                       f"shear {rel['shear']:.2f})")
    return ("ok" if not reasons else "low_quality"), reasons


def mirrored(prior: np.ndarray, matrix: np.ndarray) -> bool:
    """The estimate flips the moving image relative to the prior (its linear part has a negative determinant):
    columns or rows run the other way. Between plain images that is a real case (radar geometry of opposite passes,
    a flipped export), and the estimate maps it exactly; between georeferenced rasters their georeferencing already
    orients them."""
    rel = np.linalg.inv(prior) @ np.asarray(matrix, dtype=np.float64)
    return bool(np.linalg.det(rel[:2, :2] / rel[2, 2]) < 0)


def local_distortion(est: Estimate, src: np.ndarray, dst: np.ndarray, cfg: RegisterConfig, window: int
                     ) -> dict[str, Any] | None:
    """Tie points (moving px ``src`` -> reference px ``dst``, correlation windows of ``window`` px) that miss
    ``est`` but agree with the median offset of their independent neighbours (LOCAL_NEAR): {"distorted": how many,
    "distorted_px": the median of those neighbourhood offsets}. None when there are no tie points."""
    if not len(src):
        return None
    res = dst - est.apply(src)
    lo, hi = LOCAL_NEAR[0] * window, LOCAL_NEAR[1] * window
    near, offsets = 0, []
    for i in np.flatnonzero(np.hypot(*res.T) > cfg.threshold):
        d = np.hypot(*(dst - dst[i]).T)
        around = (d >= lo) & (d <= hi)
        if around.sum() < 4:
            continue
        med = np.median(res[around], axis=0)
        if np.hypot(*(res[i] - med)) < cfg.threshold < np.hypot(*med):
            near, offsets = near + 1, offsets + [float(np.hypot(*med))]
    return {"distorted": near, "distorted_px": finite_round(float(np.median(offsets))) if offsets else None}


def distorted_locally(second: dict | None, cfg: RegisterConfig) -> bool:
    """Enough tie points follow a local distortion (``local_distortion``, LOCAL_SHARE of the tie points)."""
    return bool(second and "distorted" in second
                and second["distorted"] >= max(cfg.min_inliers, LOCAL_SHARE * second["tie_points"]))


def second_moves(second: dict | None, cfg: RegisterConfig) -> bool:
    """Enough windows agree on another motion than the estimate's (``area.second_motion``, SECOND_SHARE)."""
    if not second or second.get("distance_px") is None:
        return False
    return (second["distance_px"] > RIVAL_THRESHOLDS * cfg.threshold
            and second["second"] >= max(cfg.min_inliers, SECOND_SHARE * second["windows"]))


def repeats_far(repeat: dict) -> bool:
    """The reference repeats strongly, the answer lies more than half a period from the prior and the pair matches
    one step away as well (or that was not measurable)."""
    ratio = repeat.get("match_ratio")
    return (repeat["strength"] >= REPEAT_STRENGTH and repeat["correction_px"] > 0.5 * repeat["period_px"]
            and (ratio is None or ratio >= REPEAT_MATCH))


def matches_a_cell_away(repeat: dict) -> bool:
    """The reference repeats (REPEAT_WEAK), the pair matches nearly as well one step from the answer (measured with
    REPEAT_WEAK_WINDOW px windows), and the answer lies more than half that step from the prior."""
    ratio, step = repeat.get("match_ratio"), repeat.get("match_px")
    return (repeat["strength"] >= REPEAT_WEAK and repeat.get("match_window_px", 0) >= REPEAT_WEAK_WINDOW
            and ratio is not None and ratio >= REPEAT_MATCH and step is not None
            and repeat["correction_px"] > 0.5 * step)


def repeat_worth_matching(repeat: dict, min_px: float) -> bool:
    """Whether to measure how well the pair matches one step away (``area.repeat_match``: one more window pass):
    a strong repetition with an answer more than half a period from the prior, or a weaker one with an answer
    farther from the prior than half the nearest step looked at (``min_px``)."""
    return ((repeat["strength"] >= REPEAT_STRENGTH and repeat["correction_px"] > 0.5 * repeat["period_px"])
            or (repeat["strength"] >= REPEAT_WEAK and repeat["correction_px"] > 0.5 * min_px))


def rival_start(info: dict, cfg: RegisterConfig) -> str | None:
    """Why a correlation answer is ambiguous (``RIVAL_SUPPORT``), or None: another start of the refinement reached a
    different answer that nearly as many windows agree with."""
    starts, kept = info.get("starts") or {}, info.get("start")
    if kept not in starts:
        return None
    k, far = starts[kept]["inliers"], RIVAL_THRESHOLDS * cfg.threshold
    for name, s in starts.items():
        d = s.get("distance_px")
        if name == kept or d is None or d <= far:
            continue
        if s["inliers"] >= (RIVAL_FAR_SUPPORT if d > RIVAL_FAR_PX else RIVAL_SUPPORT) * k:
            return (f"ambiguous: from the {name} start {s['inliers']} correlation windows agree with an answer {d:.1f} "
                    f"px from this one ({k} windows)")
    return None


def cross_check(est: Estimate, other: Estimate | None, other_matches: StageResult | None, area: BaseGeometry,
                prior: np.ndarray, cfg: RegisterConfig, located: bool = True) -> dict[str, Any] | None:
    """The kept estimate against the other source of tie points (keypoints vs correlation): how far the kept
    estimate is from the other source's inlier tie points (median residual, fraction within ``--threshold``) and
    from its estimate over the overlap (mean px). Two independent sources that each look trustworthy but disagree
    mean that at least one extrapolates wrongly (tie points clustered in part of the overlap): the result is not
    trusted. When the other source's estimate does not pass the gates itself ("other_passes": false), only a gross
    disagreement counts (``judge``), measured against that estimate's own bootstrap spread ("other_spread_px").
    None: no other estimate with at least ``--min-inliers`` inliers (measured, stop 16: an 8-inlier correlation fit
    93 px off flagged a keypoint result 1.7 px off; the 20-inlier keypoint fit that caught a 36 px wrong result
    passes this)."""
    from sarreg.estimate import bootstrap_spread

    if other is None or other_matches is None or other.n_inliers < cfg.min_inliers:
        return None
    passes = judge(other, prior, cfg, located=located)[0] == "ok"
    idx = np.flatnonzero(other.inliers)
    r = np.hypot(*(est.apply(other_matches.src[idx]) - other_matches.dst[idx]).T)
    dist = model_distance(est, other, area)
    source = "correlation" if other_matches.info.get("method") == "correlation" else "keypoints"
    out = {"source": source, "model": other.model, "tie_points": int(idx.size),
           "median_px": finite_round(float(np.median(r))),
           "within_threshold": round(float(np.mean(r <= cfg.threshold)), 4),
           "distance_px": None if dist is None else round(dist, 4), "other_passes": bool(passes)}
    if not passes:
        out["other_spread_px"] = finite_round(bootstrap_spread(other, other_matches.src, other_matches.dst,
                                                               overlap_points(area), seed=cfg.seed))
    return out


def confirms(cross: dict[str, Any] | None) -> bool:
    """Whether ``cross_check``'s other source passes the gates itself and agrees with the estimate."""
    return cross is not None and bool(cross.get("other_passes")) and cross["within_threshold"] >= CROSS_MIN_AGREE


def rests_on_descriptors(est: Estimate | None, res: StageResult | None) -> bool:
    """An area estimate more than DESCRIPTORS_ALONE of whose inliers are windows measured by the descriptors alone."""
    return est is not None and res is not None and res.alone_inliers(est.inliers) > DESCRIPTORS_ALONE * est.n_inliers


def gross_limit(cross: dict[str, Any], cfg: RegisterConfig) -> float:
    """How far (mean px over the overlap) an estimate may be from the other source's estimate that does not pass
    the gates itself: ``GROSS_THRESHOLDS`` x ``--threshold`` plus ``GROSS_SIGMAS`` x that estimate's own bootstrap
    spread (its uncertainty away from its tie points; 0 when unknown)."""
    return GROSS_THRESHOLDS * cfg.threshold + GROSS_SIGMAS * float(cross.get("other_spread_px") or 0.0)
