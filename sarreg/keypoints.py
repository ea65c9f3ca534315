"""Keypoint stages: coarse (decimated images, multiscale, rotation search) and fine (full-resolution tiles).

The extractor is the R2D2 network or OpenCV SIFT behind one interface; matches are mutual nearest neighbours.
When the keypoints give too few consistent matches, the coarse stage falls back on area-based matching
(``sarreg.area``).
"""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import cv2
import numpy as np
from rasterio.windows import Window

from sarreg.area import coarse_area, strong_area, turned_area
from sarreg.choice import FAIL_INLIERS
from sarreg.config import RegisterConfig
from sarreg.errors import InputError, RegistrationFailed
from sarreg.estimate import Estimate, apply_matrix, decompose, fit_model
from sarreg.features import Features
from sarreg.geometry import georef_base, resample, resample_valid, rotation, translate
from sarreg.io.raster import Scene, open_dataset, read_unit
from sarreg.relate import CoarseImages, moving_pre, read_moving_around
from sarreg.stage import StageResult, TilePair

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from sarreg.dense import DenseDescriber
    from sarreg.match import Matches
    from sarreg.model.weights import Model

log = logging.getLogger(__name__)


# Rotation search of the coarse stage when nothing fits at 0 (R2D2 tolerates roughly +-25 degrees; SIFT is
# rotation invariant and skips it).
ROTATIONS = (45.0, -45.0, 90.0, -90.0, 135.0, -135.0, 180.0)
COARSE_GOOD = 10  # coarse inliers that end the rotation search


class Extractor:
    """Keypoints of an in-memory [0, 1] image: R2D2 network or OpenCV SIFT, same interface."""

    def __init__(self, cfg: RegisterConfig):
        from sarreg.config import ExtractConfig

        self.kind = cfg.features
        self.name, self.sha256 = cfg.features, ""
        # the registration's own levels (coarse_min_scale, single-scale fine tiles), measured with these
        self.base = ExtractConfig(device=cfg.device, preprocess=cfg.preprocess, backend=cfg.backend, min_size=256,
                                  upsample_to=0)
        self._model = None
        self._device = cfg.device
        if self.kind == "r2d2":
            # the network is loaded on the first call (a registration that correlation settles never needs it);
            # the file is found and hashed now, so the report names the weights either way
            from sarreg.errors import WeightsError
            from sarreg.model.files import weights_path
            from sarreg.outputs import sha256_file

            self._path = weights_path(cfg.weights)
            if self._path.is_dir():
                raise WeightsError(f"{self._path}: is a directory, not a weights file (pass the checkpoint file)")
            if not self._path.is_file():
                raise WeightsError(f"{self._path}: weights file not found")
            self.name, self.sha256 = self._path.name, sha256_file(self._path)
            if cfg.weights is not None:  # weights the user named are checked now: a bad file fails before any work
                self._load()
        elif self.kind != "sift":
            raise InputError(f"unknown feature type {cfg.features!r} (choose r2d2 or sift)")

    @property
    def model(self) -> Model | None:
        """The network (``sarreg.model.weights.Model``), loaded once on first use; None for SIFT."""
        if self._model is None and self.kind == "r2d2":
            self._load()
        return self._model

    def dense(self) -> DenseDescriber | None:
        """The network's dense descriptors for the area stage's window check (``sarreg.dense``); None for SIFT."""
        from sarreg.dense import DenseDescriber
        from sarreg.extract import resolve_device

        return None if self.model is None else DenseDescriber(self.model, resolve_device(self._device))

    def _load(self) -> None:
        from sarreg.extract import resolve_device
        from sarreg.model.weights import load_model

        self._model = load_model(self._path, resolve_device(self._device))

    def __call__(self, unit: np.ndarray, valid: np.ndarray, multiscale: bool, top_k: int,
                 min_scale: float = 0.0) -> Features:
        """Keypoints of an H x W [0, 1] image; multiscale levels down to ``min_scale`` (R2D2 only)."""
        h, w = unit.shape
        if not valid.any():
            return Features.empty((w, h))
        if self.kind == "sift":
            return self._sift(unit, valid, top_k)
        from sarreg.extract import extract_array

        cfg = self.base.with_(top_k=top_k, min_scale=min_scale)
        if not multiscale:
            cfg = cfg.with_(min_scale=1.0, max_scale=1.0, max_size=0)
        return extract_array(self.model, unit, valid, cfg)

    def many(self, images: list[tuple[np.ndarray, np.ndarray]], top_k: int) -> list[Features]:
        """Single-scale keypoints of several tiles: on a CUDA device the R2D2 network takes them in batches
        (``sarreg.extract.extract_batch``, same keypoints as one by one); otherwise one call each."""
        if self.kind == "r2d2" and self.base.device != "cpu":
            from sarreg.extract import extract_batch, resolve_device

            if resolve_device(self.base.device).type == "cuda":
                return extract_batch(self.model, images, self.base.with_(top_k=top_k))
        return [self(u, v, multiscale=False, top_k=top_k) for u, v in images]

    @staticmethod
    def _sift(unit: np.ndarray, valid: np.ndarray, top_k: int) -> Features:
        h, w = unit.shape
        img = (np.clip(unit, 0, 1) * 255).astype(np.uint8)
        mask = cv2.erode(valid.astype(np.uint8), np.ones((9, 9), np.uint8), borderType=cv2.BORDER_CONSTANT,
                         borderValue=0)
        sift = cv2.SIFT_create(nfeatures=top_k)
        kps, desc = sift.detectAndCompute(img, mask)
        if desc is None or not kps:
            return Features.empty((w, h))
        desc = desc.astype(np.float32)
        desc /= np.maximum(desc.sum(1, keepdims=True), 1e-12)  # RootSIFT: L1, sqrt -> unit L2 norm
        desc = np.sqrt(desc)
        kp = np.array([[k.pt[0], k.pt[1], k.size] for k in kps], np.float32)
        scores = np.array([k.response for k in kps], np.float32)
        order = np.argsort(scores, kind="stable")
        padded = np.zeros((len(kps), 128), np.float32)
        padded[:, :desc.shape[1]] = desc
        return Features(kp[order], padded[order], scores[order], (w, h))


def match_features(f1: Features, f2: Features, ratio: float | None, device: str) -> Matches:
    """Mutual nearest neighbours of two feature sets on ``device``: the one matching rule of every keypoint stage."""
    from sarreg.extract import resolve_device
    from sarreg.match import match_mnn

    return match_mnn(f1.descriptors, f2.descriptors, ratio=ratio, device=resolve_device(device))


# the correlation is taken first only when its global phase correlation has one clear peak: on a scene that
# repeats itself (a lattice of fields with bright borders) a second, nearly as high peak one or more cells away
# can win and every window then agrees with it. Measured (stop 28): lattice scenes of 32 px cells, 512 px, with a
# georeference 140-320 px off: 5 of 6 reported ok whole cells off with peak ratios 1.03-1.17, all 5 within 0.1 px
# when the keypoints decide instead; on the training-split check, unlike and other-sensor sets 5 of 26
# correlation-first ok results have a ratio below 1.2, all 5 still ok through the keypoints (0.0-0.2 px)
AMBIGUOUS_GLOBAL_RATIO = 1.2


def try_coarse_area(ref: Scene, mov: Scene, prior: np.ndarray, ci: CoarseImages, cfg: RegisterConfig,
                    area: BaseGeometry) -> tuple[Estimate, StageResult] | RegistrationFailed:
    """``coarse_area``, or the reason it failed (a value: callers use either)."""
    try:
        return coarse_area(ref, mov, prior, ci, cfg, area)
    except RegistrationFailed as e:
        return e


def _distinct(tried: list[str]) -> list[str]:
    """The attempts' lines without those another one repeats (the turned start's "no overlap ..." is the
    correlation's "correlation: no overlap ...")."""
    return [t for t in tried if not any(o != t and o.endswith(t) for o in tried)]


def _failed_summary(angles: list[tuple[float, bool]], best: tuple[Estimate, StageResult] | None,
                    tried: list[str]) -> str:
    """One short clause for a failed coarse stage: the starts tried and the best keypoint fit; each start's result
    goes to the report (``RegistrationFailed.details``), not into the one-line error."""
    if not tried:
        return "no keypoints in the overlap"
    turns = len([a for a, f in angles if a != 0.0])
    passes = "keypoints at +0 deg" + (f" and {turns} turns" if turns else "") + \
        (", mirrored" if any(f for _, f in angles) else "")
    corr = "correlation" + (" from turned starts too" if any(t.startswith("turned starts") for t in tried) else "")
    got = f"at most {best[0].n_inliers} keypoint inliers" if best is not None else "no keypoint fit"
    # a reason of the correlation other than its window counts says what to do (e.g. a chip not searched for)
    why = [t for t in tried if t.startswith("correlation: ") and "windows" not in t]
    return f"{passes}; {corr}; {got}, {COARSE_GOOD} wanted; " + "".join(f"{w}; " for w in why) + \
        "each start in the report's stages.coarse.tried"


def _try_turned(ref: Scene, mov: Scene, prior: np.ndarray, ci: CoarseImages, cfg: RegisterConfig,
                area: BaseGeometry, area_first: tuple[Estimate, StageResult] | RegistrationFailed,
                tried: list[str]) -> tuple[Estimate, StageResult] | None:
    """``turned_area`` when the rotation search is on, the model can turn and the correlation from the prior did not
    hold on its own; None otherwise or when it fails (the reason appended to ``tried``)."""
    if not cfg.rotation_search or cfg.model == "shift" or (
            not isinstance(area_first, RegistrationFailed) and strong_area(*area_first)):
        return None
    try:
        return turned_area(ref, mov, prior, ci, cfg, area)
    except RegistrationFailed as e:
        tried.append(str(e))
        return None


def coarse_stage(ref: Scene, mov: Scene, prior: np.ndarray, ci: CoarseImages, ext: Extractor,
                 cfg: RegisterConfig, area: BaseGeometry,
                 area_first: tuple[Estimate, StageResult] | RegistrationFailed | None = None
                 ) -> tuple[Estimate, StageResult]:
    """Multiscale keypoints on the decimated images, matching and a robust fit; rotation search when nothing fits.

    Correlation first: when the prior is close enough for area-based matching and most of its windows agree
    (``strong_area``), the keypoints are not needed at this stage (they run again on the fine tiles).
    ``area_first``: the result of ``try_coarse_area`` when the caller already has it (None: computed here)."""
    ru, rv, Dr, s, mu, mv, Dm = ci.ru, ci.rv, ci.Dr, ci.s, ci.mu, ci.mv, ci.Dm
    rshape = ru.shape
    if area_first is None:
        area_first = try_coarse_area(ref, mov, prior, ci, cfg, area)
    if not isinstance(area_first, RegistrationFailed) and strong_area(*area_first) and \
            area_first[1].info.get("global_peak_ratio", math.inf) >= AMBIGUOUS_GLOBAL_RATIO:
        log.info("coarse: correlation from the prior, %d of %d windows agree", area_first[0].n_inliers,
                 area_first[1].info["windows"])
        area_first[1].info["correlation_first"] = True
        return area_first
    fr = ext(ru, rv, multiscale=True, top_k=cfg.coarse_top_k, min_scale=cfg.coarse_min_scale)
    fr_full = Features(np.c_[apply_matrix(Dr, fr.xy), fr.keypoints[:, 2:] / s].astype(np.float32),
                       fr.descriptors, fr.scores, (ref.width, ref.height))
    model = {"shift": "shift", "similarity": "similarity"}.get(cfg.model, "affine")
    located = ref.geolocated and mov.geolocated
    base = georef_base(prior, located)
    thr = cfg.coarse_threshold(s)
    search = cfg.rotation_search and ext.kind != "sift"
    # (angle, mirrored): between plain images, last, the moving image mirrored (radar images of opposite passes in
    # their own geometry); the network's descriptors do not match a mirrored SAR scene (stop 62)
    mirror = search and not located and cfg.model not in ("shift", "similarity")
    angles = [(0.0, False)] + [(a, False) for a in (ROTATIONS if search else ())] + ([(0.0, True)] if mirror else [])
    best: tuple[Estimate, StageResult] | None = None
    turned: tuple[Estimate, StageResult] | None = None
    turned_tried = False
    tried: list[str] = []
    for ang, flip in angles:
        if ang != 0.0 and not turned_tried:  # nothing fits as the prior stands: a turned correlation start first
            turned, turned_tried = _try_turned(ref, mov, prior, ci, cfg, area, area_first, tried), True
            if turned is not None and strong_area(*turned):
                log.info("coarse: correlation from a turned start, %d of %d windows agree", turned[0].n_inliers,
                         turned[1].info["windows"])
                return turned
        G = rotation(ang, rshape[1] / 2 - 0.5, rshape[0] / 2 - 0.5) @ np.linalg.inv(Dr) @ prior  # mov full -> grid
        if flip:  # (columns reversed about the grid's centre)
            G = np.array([[-1.0, 0, rshape[1] - 1.0], [0, 1, 0], [0, 0, 1]]) @ G
        wu = resample(mu, G @ Dm, rshape)
        wv = resample_valid(mv, G @ Dm, rshape)
        if wv.mean() < 0.01:
            continue
        fm = ext(wu, wv, multiscale=True, top_k=cfg.coarse_top_k, min_scale=cfg.coarse_min_scale)
        m = match_features(fr, fm, cfg.ratio, cfg.device)
        dst = apply_matrix(Dr, fr.xy[m.idx1])
        src = apply_matrix(np.linalg.inv(G), fm.xy[m.idx2])
        keep = np.ones(len(src), bool)
        if cfg.max_shift is not None and len(src):
            keep = np.hypot(*(apply_matrix(prior, src) - dst).T) <= cfg.max_shift + thr
        src, dst, sim = src[keep], dst[keep], m.similarity[keep]
        fm_full = Features(np.c_[apply_matrix(np.linalg.inv(G), fm.xy), fm.keypoints[:, 2:] / s].astype(np.float32),
                           fm.descriptors, fm.scores, (mov.width, mov.height))
        res = StageResult(src, dst, sim, fr_full, fm_full, m.idx1[keep], m.idx2[keep],
                          {"scale": s, "rotation_tried_deg": ang, "keypoints_ref": len(fr), "keypoints_moving": len(fm),
                           "matches": int(keep.sum())} | ({"mirrored_tried": True} if flip else {}))
        try:
            est = fit_model(src, dst, model, cfg.robust, thr, area=area, scores=sim, seed=cfg.seed, base=base)
        except RegistrationFailed as e:
            tried.append(f"{'mirrored, ' if flip else ''}{ang:+.0f} deg: {e}")
            continue
        tried.append(f"{'mirrored, ' if flip else ''}{ang:+.0f} deg: {est.n_inliers} inliers")
        if best is None or est.n_inliers > best[0].n_inliers:
            best = (est, res)
        good = est.n_inliers >= COARSE_GOOD and est.inlier_ratio >= 0.05
        if good:
            break
        log.info("coarse stage at %+.0f deg%s: %d inliers of %d matches; trying other rotations", ang,
                 " mirrored" if flip else "", est.n_inliers, est.n_matches)
    if best is None or not (best[0].n_inliers >= COARSE_GOOD and best[0].inlier_ratio >= 0.05):
        # few or no keypoint matches (speckle, low texture, strong temporal change): area-based matching from
        # the georeferencing prior, or from the prior turned and scaled (Fourier-Mellin), before trusting a weaker
        # keypoint result
        if not turned_tried:
            turned = _try_turned(ref, mov, prior, ci, cfg, area, area_first, tried)
        if turned is not None and (isinstance(area_first, RegistrationFailed)
                                   or turned[0].n_inliers > area_first[0].n_inliers):
            area_first = turned
        try:
            if isinstance(area_first, RegistrationFailed):
                raise area_first
            aest, ares = area_first
            tried.append(f"correlation: {aest.n_inliers} of {ares.info['windows']} windows")
            if best is None or aest.n_inliers >= best[0].n_inliers or best[0].n_inliers < COARSE_GOOD:
                log.info("coarse: area-based matching, %d consistent windows", aest.n_inliers)
                return aest, ares
        except RegistrationFailed as e:
            tried.append(f"correlation: {e}")
    if best is None or best[0].n_inliers < FAIL_INLIERS:
        limit = (f"; only matches within --max-shift {cfg.max_shift:g} px of the georeferencing were kept"
                 if cfg.max_shift is not None else "")
        raise RegistrationFailed(f"{mov.path}: coarse stage found no consistent matches with {ref.path} "
                                 f"({_failed_summary(angles, best, tried)}{limit}); the scenes may not show the "
                                 "same ground", details=_distinct(tried))
    est, res = best
    res.info.update({"inliers": est.n_inliers, "rmse_px": est.rmse, "threshold_px": thr,
                     "rotation_deg": decompose(np.linalg.inv(prior) @ est.matrix)["rotation_deg"]})
    log.info("coarse: %d/%d inliers at 1/%.1f scale", est.n_inliers, est.n_matches, 1 / s)
    return est, res


def plan_tiles(ref: Scene, area: BaseGeometry, tile: int, n_tiles: int) -> list[tuple[int, int, int, int]]:
    """Up to ``n_tiles`` windows (col0, row0, width, height) of the reference spread over ``area``."""
    import shapely

    from sarreg.estimate import thin_spatially

    # a reference up to 1.5 tiles wide is one tile (no cropped margins on small images)
    tw = ref.width if ref.width <= 1.5 * tile else tile
    th = ref.height if ref.height <= 1.5 * tile else tile
    x0, y0, x1, y1 = area.bounds
    step = max(min(tw, th), math.sqrt(max(area.area, 1.0) / max(n_tiles, 1)))
    # a strip (a long burst) at least two tiles across gets two rows / columns of candidates: one line of tiles along
    # it leaves an affine's cross-strip terms to one tile's width (30000 x 2000: coverage 0.33, hull 0.09)
    nx = max(1, int(round((x1 - x0) / step)), 2 if x1 - x0 >= 2 * tw else 1)
    ny = max(1, int(round((y1 - y0) / step)), 2 if y1 - y0 >= 2 * th else 1)
    cands = []
    for j in range(ny):
        for i in range(nx):
            cx, cy = x0 + (i + 0.5) * (x1 - x0) / nx, y0 + (j + 0.5) * (y1 - y0) / ny
            c0 = int(np.clip(round(cx - tw / 2), 0, ref.width - tw))
            r0 = int(np.clip(round(cy - th / 2), 0, ref.height - th))
            b = shapely.box(c0 - 0.5, r0 - 0.5, c0 + tw - 0.5, r0 + th - 0.5)
            frac = area.intersection(b).area / b.area
            if frac >= 0.3:
                cands.append((c0, r0, frac))
    if not cands:
        c = area.representative_point()
        cands = [(int(np.clip(round(c.x - tw / 2), 0, ref.width - tw)),
                  int(np.clip(round(c.y - th / 2), 0, ref.height - th)), 1.0)]
    cands = list(dict.fromkeys((c0, r0) for c0, r0, _ in cands))
    if len(cands) > n_tiles:
        idx = thin_spatially(np.array(cands, dtype=np.float64), n_tiles)
        cands = [cands[i] for i in idx]
    return [(c0, r0, tw, th) for c0, r0 in cands]


def read_tiles(ref: Scene, mov: Scene, coarse: np.ndarray, cfg: RegisterConfig, area: BaseGeometry
               ) -> tuple[list[TilePair], dict]:
    """Full-resolution reference tiles over the overlap and the moving reads that cover them through ``coarse``.

    The fine stages (keypoints and correlation) share these reads; tiles without texture or data are skipped: moving
    data on under a tenth, reference data on under a fifth of the overlap's share of the tile (of the tile, where the
    overlap covers it; a 200 px island of reference data in a 512 px tile was skipped the same way). Why of the
    overlap's share: a chip under about 120 px in a larger reference covers under a tenth of its one tile (384 px),
    which was skipped: no fine keypoints, no refinement, the registration failed after a right coarse estimate."""
    import shapely

    tiles = plan_tiles(ref, area, cfg.fine_tile, cfg.n_tiles)
    kept: list[TilePair] = []
    mpre = moving_pre(cfg)
    with open_dataset(ref.path) as dr, open_dataset(mov.path) as dm:
        for c0, r0, tw, th in tiles:
            ru, rv = read_unit(ref, Window(c0, r0, tw, th), None, cfg.preprocess, ds=dr)
            share = area.intersection(shapely.box(c0 - 0.5, r0 - 0.5, c0 + tw - 0.5, r0 + th - 0.5)).area / (tw * th)
            if rv.mean() < 0.2 * min(1.0, share) or float(np.std(ru[rv])) < 0.01:
                continue
            got = read_moving_around(mov, coarse, c0, r0, c0 + tw, r0 + th, 8.0, mpre, ds=dm)
            if got is None:
                continue
            mu, mv, Dm, k = got
            Ft = translate(-c0, -r0) @ coarse @ Dm  # moving read px -> tile px
            if resample_valid(mv, Ft, (th, tw)).mean() < 0.1 * min(1.0, share):
                continue
            kept.append(TilePair(c0, r0, ru, rv, mu, mv, Dm, k))
    return kept, {"tiles_planned": len(tiles), "tiles_used": len(kept), "tiles_skipped": len(tiles) - len(kept)}


def fine_stage(ref: Scene, mov: Scene, coarse: np.ndarray, coarse_err: float, ext: Extractor,
               cfg: RegisterConfig, tiles: list[TilePair], tiles_info: dict) -> StageResult:
    """Single-scale keypoints on the tiles of ``read_tiles`` (the moving read resampled through ``coarse``),
    matched per tile; matches in full-scene pixels."""
    inv = np.linalg.inv(coarse)
    radius = max(6.0, 3.0 * coarse_err)  # true matches lie near the coarse prediction
    srcs, dsts, sims, i1s, i2s, rparts, mparts = [], [], [], [], [], [], []
    n_r = n_m = 0
    images = []
    for t in tiles:  # reference tile, then the moving read resampled onto it
        Ft = translate(-t.c0, -t.r0) @ coarse @ t.Dm  # moving read px -> tile px
        images += [(t.ru, t.rv), (resample(t.mu, Ft, t.ru.shape), resample_valid(t.mv, Ft, t.ru.shape))]
    feats = ext.many(images, cfg.fine_top_k)  # batched on a GPU
    for j, t in enumerate(tiles):
        c0, r0, k = t.c0, t.r0, t.k
        fr, fm = feats[2 * j], feats[2 * j + 1]
        if not len(fr) or not len(fm):
            continue
        m = match_features(fr, fm, cfg.ratio, cfg.device)
        near = np.hypot(*(fr.xy[m.idx1] - fm.xy[m.idx2]).T) <= radius
        off = np.array([c0, r0], dtype=np.float64)
        rk = fr.xy + off
        mk = apply_matrix(inv, fm.xy + off)
        srcs.append(mk[m.idx2[near]])
        dsts.append(rk[m.idx1[near]])
        sims.append(m.similarity[near])
        i1s.append(m.idx1[near] + n_r)
        i2s.append(m.idx2[near] + n_m)
        rparts.append(Features(np.c_[rk, fr.keypoints[:, 2:]].astype(np.float32), fr.descriptors, fr.scores,
                               (ref.width, ref.height)))
        mparts.append(Features(np.c_[mk, fm.keypoints[:, 2:] / max(k, 1e-6)].astype(np.float32),
                               fm.descriptors, fm.scores, (mov.width, mov.height)))
        n_r += len(fr)
        n_m += len(fm)
    cat = (lambda xs, shape: np.concatenate(xs) if xs else np.zeros(shape))
    res = StageResult(cat(srcs, (0, 2)), cat(dsts, (0, 2)), cat(sims, (0,)).astype(np.float32),
                      Features.concat(rparts, (ref.width, ref.height)), Features.concat(mparts, (mov.width, mov.height)),
                      cat(i1s, (0,)).astype(np.int64), cat(i2s, (0,)).astype(np.int64),
                      {**tiles_info, "keypoints_ref": n_r, "keypoints_moving": n_m, "search_radius_px": radius},
                      tiles=list(tiles))
    res.info["matches"] = len(res.src)
    log.info("fine: %d tiles, %d matches", len(tiles), len(res.src))
    return res
