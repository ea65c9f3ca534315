"""Benchmark registration methods on image pairs with known ground truth (and build such pairs).

A *pairs folder* holds one sub-folder per pair with ``ref.*``, ``moving.*`` (GeoTIFF / PNG / JPEG) and
``gt.json`` whose key ``"H"`` is the 3 x 3 matrix mapping a MOVING pixel to the REFERENCE pixel
(x = column, y = row, (0, 0) = centre of the top-left pixel). This is the layout of ``../shared/eval/pairs``; a
benchmark folder with an ``index.json`` (``../shared/eval``: ``pairs/<id>``, ``geo_pairs/<id>``) is read in its
index order.

``evaluate(pairs, methods)`` runs every method on every pair. The default method, ``register``, is the user's
pipeline: ``sarreg.pipeline.register`` with a ``RegisterConfig`` and no outputs but its report (``register_pair``,
also what ``benchmarks/register_accuracy.py`` runs); its status (ok / low_quality / failed) is kept, and success is
reported over every estimate (ok and low_quality) and over ok ones only. The *single-stage* protocol (methods
``model``, ``sift``, ``orb``, checkpoints) measures the features alone, the same way for each: both images are read
through ``sarreg.io.raster`` (log intensity scaled to [0, 1]), keypoints are extracted (learned methods:
``sarreg.extract.extract_array``; SIFT: the pipeline's ``sarreg.keypoints.Extractor``; ORB: OpenCV ORB) and matched
by mutual nearest neighbours (``sarreg.keypoints.match_features`` -> ``sarreg.match.match_mnn``), and a homography
is fitted with MAGSAC++ (``sarreg.estimate.fit_model``). Metrics:

* MMA(t), t = 1..10 px: fraction of tentative matches whose moving keypoint, mapped with the true H, lands within
  t px of its matched reference keypoint (0 for a pair without matches), averaged over pairs.
* homography error: mean distance over a 10 x 10 grid of the moving image (points the true H maps inside the
  reference image) between the estimated and the true mapping, exactly as ``../shared/eval/score.py`` computes
  it; a failed fit is an infinite error. Success at 1 / 3 / 5 px.
* inliers of the fit, keypoints, matches, wall time per pair (reading + extraction + matching + fitting).
* the same success rates per source (``gt.json`` / ``index.json`` key ``"source"``).

MMA needs the tentative matches: single-stage methods only.

``sarreg.eval_pairs.make_pairs`` builds such a folder from co-registered multi-date rasters; the results
(``PairResult``, ``EvalResult``: summaries, markdown, JSON, MMA plot) are in ``sarreg.eval_report``.
"""
from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import cv2
import numpy as np

from sarreg.config import ExtractConfig, PreprocessConfig, RegisterConfig
from sarreg.errors import InputError, OutputError, RegistrationFailed, SarregError
from sarreg.eval_load import (IMAGE_SUFFIXES, Pair, check_pairs, check_sizes, image_wh, load_pairs,  # noqa: F401
                              read_gt)  # (Pair, load_pairs, read_gt, IMAGE_SUFFIXES: also imported from here)
from sarreg.eval_report import (MMA_THRESHOLDS, SUCCESS_THRESHOLDS, USABLE, EvalResult, MethodSummary, PairResult,
                                Scores, scores, summarise, write_prediction)
from sarreg.export import to_jsonable

if TYPE_CHECKING:
    from sarreg.extract import Features

log = logging.getLogger(__name__)

CLASSICAL = ("sift", "orb")


# ------------------------------------------------------------------------------------------------ metrics
def apply_h(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """N x 2 points through a 3 x 3 homography; points behind the camera / at infinity -> NaN."""
    p = np.c_[np.asarray(pts, float).reshape(-1, 2), np.ones(len(pts))] @ np.asarray(H, float).T
    with np.errstate(divide="ignore", invalid="ignore"):
        out = p[:, :2] / p[:, 2:3]
    out[~(p[:, 2] > 1e-12)] = np.nan
    return out


def grid_points(w: int, h: int, n: int = 10) -> np.ndarray:
    """n x n points spanning a w x h image, corners included (N x 2, x then y)."""
    X, Y = np.meshgrid(np.linspace(0, w - 1, n), np.linspace(0, h - 1, n))
    return np.c_[X.ravel(), Y.ravel()]


def homography_error(H_gt: np.ndarray, H_pred: np.ndarray | None, moving_wh: tuple[int, int],
                     ref_wh: tuple[int, int]) -> float:
    """Mean |H_pred(p) - H_gt(p)| (reference px) over a 10 x 10 grid of the moving image, keeping the points that
    H_gt maps inside the reference image; inf for a missing / non-finite prediction (the official scorer's rule)."""
    if H_pred is None:
        return math.inf
    Hp = np.asarray(H_pred, float)
    if Hp.shape != (3, 3) or not np.isfinite(Hp).all():
        return math.inf
    w, h = moving_wh
    W, Hh = ref_wh
    pts = grid_points(w, h)
    qg = apply_h(H_gt, pts)
    ok = (qg[:, 0] >= 0) & (qg[:, 0] <= W - 1) & (qg[:, 1] >= 0) & (qg[:, 1] <= Hh - 1)
    e = np.linalg.norm(apply_h(Hp, pts[ok]) - qg[ok], axis=1)
    return float(np.mean(e)) if np.all(np.isfinite(e)) else math.inf


def match_accuracy(H_gt: np.ndarray, xy_moving: np.ndarray, xy_ref: np.ndarray,
                   thresholds: Sequence[float] = MMA_THRESHOLDS) -> list[float]:
    """Fraction of matches with |H_gt(moving) - ref| <= t for each t (0 for no matches)."""
    if len(xy_moving) == 0:
        return [0.0] * len(thresholds)
    d = np.linalg.norm(apply_h(H_gt, xy_moving) - np.asarray(xy_ref, float), axis=1)
    d[~np.isfinite(d)] = np.inf
    return [float(np.mean(d <= t)) for t in thresholds]


# ------------------------------------------------------------------------------------------------ methods
@dataclass(frozen=True)
class Method:
    """How a pair is registered. kind "register": the pipeline (``sarreg.pipeline.register``; ``features`` r2d2 or
    sift, ``weights`` None = the shipped model). Single-stage kinds: "learned" (``weights`` = checkpoint path, None
    = shipped model), "sift", "orb"."""

    label: str
    kind: str
    weights: str | None = None
    features: str = "r2d2"

    @staticmethod
    def parse(spec: str) -> "Method":
        """'register' | 'register-sift' | 'register:CHECKPOINT.pt' (label register:<stem>) | 'phasecorr' (the
        baseline, ``run_phasecorr``) | single-stage: 'sift' | 'orb' | 'model' (the shipped model) | a checkpoint
        path (label = file stem)."""
        s = spec.strip()
        low = s.lower()
        if low == "register":
            return Method("register", "register")
        if low == "register-sift":
            return Method("register-sift", "register", None, "sift")
        if low.startswith("register:"):
            p = Path(s.split(":", 1)[1])
            return Method(f"register:{p.stem}", "register", str(p))
        if low in CLASSICAL or low == "phasecorr":
            return Method(low, low)
        if low == "model":
            from sarreg.model.files import EXTRACT_MODEL_NAME

            return Method(Path(EXTRACT_MODEL_NAME).stem, "learned", None)
        p = Path(s)
        if p.suffix.lower() in (".pt", ".pth") or p.exists():
            return Method(p.stem, "learned", str(p))
        raise InputError(f"unknown method {spec!r}: use register, register-sift, register:CHECKPOINT.pt, "
                         "phasecorr, or single-stage sift, orb, model, or a checkpoint path (.pt)")


@dataclass(frozen=True)
class EvalOptions:
    """Options shared by every pair. register: the pipeline options of the register methods (features / weights
    come from the method, outputs are switched off: ``register_config``). Single-stage: extract: learned extraction
    (multiscale, top-k, thresholds); ratio: optional Lowe ratio of the MNN matcher (every method); orb_features:
    ORB keypoint budget (SIFT and the learned methods keep ``extract.top_k``); threshold: MAGSAC inlier distance
    (reference px)."""

    register: RegisterConfig = field(default_factory=RegisterConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    ratio: float | None = None
    orb_features: int = 5000
    threshold: float = 3.0
    robust: str = "magsac"
    skip_large_learned: bool = False
    seed: int = 0


# ------------------------------------------------------------------------------------------------ running
def _read(path: Path, pre: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """Whole image -> ([0, 1] log-scaled float32, valid mask) through the same reader as the tool."""
    from sarreg.io.raster import open_scene, read_unit

    return read_unit(open_scene(path, pre), pre=pre)


def _orb(unit: np.ndarray, valid: np.ndarray, n: int) -> Features:
    """OpenCV ORB keypoints as ``Features``: the 256 descriptor bits as +-1 / 16 (unit norm), so that the cosine
    similarity of ``sarreg.match.match_mnn`` is 1 - 2 Hamming / 256 (mutual nearest neighbours in Hamming)."""
    from sarreg.extract import Features

    h, w = unit.shape
    img = np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)
    mask = cv2.erode(valid.astype(np.uint8) * 255, np.ones((5, 5), np.uint8))
    kps, desc = cv2.ORB_create(n).detectAndCompute(img, mask)
    if desc is None or not kps:
        return Features.empty((w, h), 256)
    bits = np.unpackbits(desc, axis=1).astype(np.float32)
    kp = np.array([[k.pt[0], k.pt[1], k.size] for k in kps], np.float32)  # OpenCV: pixel centres at integers
    return Features(kp, (2 * bits - 1) / 16.0, np.array([k.response for k in kps], np.float32), (w, h))


def _fit(src: np.ndarray, dst: np.ndarray, opt: EvalOptions) -> tuple[np.ndarray | None, int, str]:
    from sarreg.estimate import fit_model

    try:
        est = fit_model(src, dst, model="homography", robust=opt.robust, threshold=opt.threshold, seed=opt.seed,
                        kfold=2)
    except RegistrationFailed as e:
        return None, 0, str(e)
    return est.matrix, est.n_inliers, ""


def register_config(method: Method, base: RegisterConfig = RegisterConfig()) -> RegisterConfig:
    """The configuration a register method runs with: ``base`` with the method's features / weights and no
    outputs but the report (no warp, tie points, .points, matches npz or quicklook)."""
    return base.with_(features=method.features, weights=method.weights, warp=False, tiepoints=False, points=False,
                      matches_npz=False, quicklook=None, overwrite=True)


@dataclass
class RegisterRun:
    """One ``register_pair``: status ok | low_quality | failed | error (bad input, message = the error), the
    matrix (moving px -> reference px, may be None), wall seconds of the ``register`` call, the Report."""

    status: str
    matrix: list[list[float]] | None
    message: str
    time_s: float
    report: Any = None

    @property
    def usable(self) -> bool:
        """The matrix is an estimate: status ok or low_quality (a "failed" registration's matrix is not)."""
        return self.matrix is not None and self.status in USABLE


def register_pair(ref: str | Path, moving: str | Path, config: RegisterConfig, extractor: Any = None
                  ) -> RegisterRun:
    """``sarreg.pipeline.register(ref, moving)`` as the evaluation runs it (``sarreg evaluate``,
    ``benchmarks/register_accuracy.py``): ``config`` as given (``register_config`` switches the outputs off), the
    report written to a temporary folder and dropped. ``extractor``: a ``sarreg.keypoints.Extractor`` for
    ``config`` to keep the network loaded across pairs. Bad input (``SarregError``) is status "error"."""
    from sarreg.errors import SarregError
    from sarreg.pipeline import register

    with tempfile.TemporaryDirectory(prefix="sarreg-eval-") as tmp:
        t0 = time.perf_counter()
        try:
            rep = register(ref, moving, Path(tmp) / f"{Path(moving).stem}.tif", config, extractor=extractor)
        except SarregError as e:
            return RegisterRun("error", None, str(e), time.perf_counter() - t0)
        return RegisterRun(rep.status, rep.matrix, rep.message, time.perf_counter() - t0, rep)


def _run_register(pair: Pair, method: Method, extractor: Any, opt: EvalOptions) -> PairResult:
    check_sizes(pair, image_wh(pair.ref), image_wh(pair.moving))  # (the score's grid is cut by those sizes)
    run = register_pair(pair.ref, pair.moving, register_config(method, opt.register), extractor)
    err = None
    if pair.H is not None:
        err = homography_error(pair.H, run.matrix if run.usable else None,
                               pair.moving_size or image_wh(pair.moving), pair.ref_size or image_wh(pair.ref))
    q = run.report.quality if run.report is not None else {}
    fine = run.report.stages.get("fine", {}) if run.report is not None else {}
    return PairResult(pair=pair.id, method=method.label, status=run.status, matrix=run.matrix, error=err, mma=None,
                      keypoints=(int(fine.get("keypoints_ref", 0)), int(fine.get("keypoints_moving", 0))),
                      matches=int(q.get("matches") or 0), inliers=int(q.get("inliers") or 0),
                      time_s=float(run.time_s), message=run.message, source=pair.source)


def make_runner(method: Method, opt: EvalOptions) -> Any:
    """What ``run_pair`` needs for a method, loaded once (so checked before any work): the pipeline's extractor of
    a register method, the model of a learned one, None for SIFT / ORB."""
    if method.kind == "register":
        from sarreg.keypoints import Extractor

        return Extractor(register_config(method, opt.register))
    if method.kind == "learned":
        from sarreg.extract import resolve_device
        from sarreg.model.weights import EXTRACT_MODEL_NAME, load_model

        return load_model(method.weights, resolve_device(opt.extract.device), default=EXTRACT_MODEL_NAME)
    return None


def run_pair(pair: Pair, method: Method, model: Any, opt: EvalOptions,
             images: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], float] | None = None
             ) -> PairResult:
    """Run one method on one pair. model: ``make_runner``'s. ``images``: already read (ref, moving, read seconds)
    to share reads between single-stage methods."""
    if method.kind == "register":
        return _run_register(pair, method, model, opt)
    if method.kind == "phasecorr":
        return run_phasecorr(pair, method, opt)
    t0 = time.perf_counter()
    if images is None:
        images = _read_pair(pair, opt)
    (ur, vr), (um, vm), t_read = images
    from sarreg.keypoints import match_features

    fr, fm = (_features(method, model, u, v, opt) for u, v in ((ur, vr), (um, vm)))
    m = match_features(fm, fr, opt.ratio, opt.extract.device)
    xy_m, xy_r = fm.xy[m.idx1], fr.xy[m.idx2]
    nkp = (len(fr), len(fm))
    matrix, inliers, msg = _fit(xy_m, xy_r, opt)
    dt = time.perf_counter() - t0 + t_read
    err = mma = None
    if pair.H is not None:
        ref_wh = pair.ref_size or (ur.shape[1], ur.shape[0])
        mov_wh = pair.moving_size or (um.shape[1], um.shape[0])
        err = homography_error(pair.H, matrix, mov_wh, ref_wh)
        mma = match_accuracy(pair.H, xy_m, xy_r)
    return PairResult(pair=pair.id, method=method.label, status="ok" if matrix is not None else "failed",
                      matrix=None if matrix is None else np.asarray(matrix).tolist(), error=err, mma=mma,
                      keypoints=nkp, matches=int(len(xy_m)), inliers=int(inliers), time_s=float(dt), message=msg,
                      source=pair.source)


def run_phasecorr(pair: Pair, method: Method, opt: EvalOptions) -> PairResult:
    """The baseline users know (AROSICS' global mode, scikit-image's ``phase_cross_correlation``): the moving image
    resampled onto the reference's pixels by the georeferencing (plain images: as they are), one phase correlation
    of the whole images (OpenCV, Hann window, invalid pixels at the valid mean), a shift after the georeferencing.
    Read like the single-stage methods (log intensity in [0, 1]); no quality gate: every pair gets its estimate."""
    from sarreg.io.raster import open_scene, read_unit
    from sarreg.relate import prior_fit

    t0 = time.perf_counter()
    pre = opt.extract.preprocess
    rs, ms = open_scene(pair.ref, pre), open_scene(pair.moving, pre)
    (ur, vr), (um, vm) = read_unit(rs, pre=pre), read_unit(ms, pre=pre)
    check_sizes(pair, ur.shape[::-1], um.shape[::-1])
    prior = prior_fit(rs, ms)[0]  # moving px -> reference px (the identity between plain images)
    h, w = ur.shape
    wm = cv2.warpPerspective(um.astype(np.float32), prior, (w, h), flags=cv2.INTER_LINEAR)
    wv = cv2.warpPerspective(vm.astype(np.uint8), prior, (w, h), flags=cv2.INTER_NEAREST) > 0
    a = np.where(vr, ur, ur[vr].mean() if vr.any() else 0.0).astype(np.float64)
    b = np.where(wv, wm, wm[wv].mean() if wv.any() else 0.0).astype(np.float64)
    (dx, dy), peak = cv2.phaseCorrelate(a, b, cv2.createHanningWindow((w, h), cv2.CV_64F))
    # b(x) ~ a(x - d): the reference pixel x shows what the resampled moving image shows at x + d
    matrix = np.array([[1.0, 0.0, -dx], [0.0, 1.0, -dy], [0.0, 0.0, 1.0]]) @ prior if wv.any() else None
    err = None
    if pair.H is not None:
        err = homography_error(pair.H, matrix, pair.moving_size or (um.shape[1], um.shape[0]),
                               pair.ref_size or (w, h))
    return PairResult(pair=pair.id, method=method.label, status="ok" if matrix is not None else "failed",
                      matrix=None if matrix is None else matrix.tolist(), error=err, mma=None, keypoints=(0, 0),
                      matches=0, inliers=0, time_s=float(time.perf_counter() - t0),
                      message=f"shift ({-dx:.2f}, {-dy:.2f}) px after the georeferencing, peak {peak:.3f}"
                      if matrix is not None else "no overlap under the georeferencing", source=pair.source)


def _features(method: Method, model: Any, unit: np.ndarray, valid: np.ndarray, opt: EvalOptions) -> Features:
    """Keypoints of one whole image: learned (``sarreg.extract.extract_array`` with ``opt.extract``), SIFT (the
    pipeline's extractor, ``sarreg.keypoints.Extractor``: RootSIFT, top-k) or ORB."""
    if method.kind == "learned":
        from sarreg.extract import extract_array

        return extract_array(model, unit, valid, opt.extract)
    if method.kind == "sift":
        from sarreg.config import RegisterConfig
        from sarreg.keypoints import Extractor

        ext = Extractor(RegisterConfig(features="sift", device=opt.extract.device))
        return ext(unit, valid, multiscale=False, top_k=opt.extract.top_k)
    return _orb(unit, valid, opt.orb_features)


def _read_pair(pair: Pair, opt: EvalOptions) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray],
                                                       float]:
    t0 = time.perf_counter()
    ref = _read(pair.ref, opt.extract.preprocess)
    mov = _read(pair.moving, opt.extract.preprocess)
    check_sizes(pair, ref[0].shape[::-1], mov[0].shape[::-1])
    return ref, mov, time.perf_counter() - t0


def evaluate(pairs: str | Path | Sequence[Pair], methods: Sequence[Method | str], options: EvalOptions = EvalOptions(),
             pred_dir: str | Path | None = None, progress: Callable[[int, int, str], None] | None = None,
             models: dict[str, Any] | None = None) -> EvalResult:
    """Run every method on every pair; returns per-pair results and per-method summaries.

    pairs: a pairs folder or a list of ``Pair`` (H may be None: then only matches / inliers / time are measured).
    methods: ``Method`` objects or specs for ``Method.parse``. Checkpoints / extractors are loaded once
    (``make_runner``; ``models`` may hold preloaded ones by label). pred_dir: write
    ``<pred_dir>/<method>/<pair>.json`` for ``score.py``. progress: callable(done, total, label).
    """
    if isinstance(pairs, (str, Path)):
        pairs = load_pairs(pairs)
    skipped = dict(getattr(pairs, "skipped", {}))  # (a ``load_pairs`` result: the sub-folders it skipped)
    plist = list(pairs)
    meths = [m if isinstance(m, Method) else Method.parse(m) for m in methods]
    if not meths:
        raise InputError("no methods to evaluate")
    labels = [m.label for m in meths]
    if len(set(labels)) != len(labels):
        raise InputError(f"duplicate method labels {labels}: rename the checkpoint files")
    check_pairs(plist)  # every image opens, with gt.json's size, before any work
    loaded = dict(models or {})
    for m in meths:  # load (and so validate) every checkpoint before any work
        if m.label not in loaded:
            loaded[m.label] = make_runner(m, options)
    outs: dict[str, Path] = {}
    if pred_dir is not None:
        for m in meths:
            d = Path(pred_dir) / m.label
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputError(f"{d}: cannot create prediction folder ({e.strerror})") from None
            outs[m.label] = d
    results: list[PairResult] = []
    total, done = len(plist) * len(meths), 0
    for pair in plist:
        images = None  # read once for the single-stage methods (register reads for itself)
        for m in meths:
            if m.kind == "learned" and options.skip_large_learned and pair.large:
                r = PairResult(pair.id, m.label, "skipped", None, None, None, (0, 0), 0, 0, 0.0, "large pair",
                               pair.source)
            else:
                if m.kind != "register" and images is None:
                    try:
                        images = _read_pair(pair, options)
                    except SarregError as e:  # (pixels that cannot be read: the pair fails, as with register)
                        images = e
                if isinstance(images, SarregError) and m.kind != "register":
                    r = PairResult(pair.id, m.label, "error", None, None if pair.H is None else math.inf,
                                   [0.0] * len(MMA_THRESHOLDS), (0, 0), 0, 0, 0.0, str(images), pair.source)
                else:
                    r = run_pair(pair, m, loaded.get(m.label), options, images)
                if r.status == "error":
                    log.warning("pair %s, method %s: %s", pair.id, m.label, r.message)
                if m.label in outs:
                    write_prediction(outs[m.label], r)
            log.info("%s %s: %s err=%s inliers=%d %.2fs", pair.id, m.label, r.status,
                     "-" if r.error is None else f"{r.error:.2f}", r.inliers, r.time_s)
            results.append(r)
            done += 1
            if progress is not None:
                progress(done, total, f"{pair.id} {m.label}")
    summaries = [summarise(m.label, [r for r in results if r.method == m.label]) for m in meths]
    opts = to_jsonable(asdict(options))
    opts["models"] = {k: {"name": getattr(v, "name", ""), "sha256": getattr(v, "sha256", "")}
                      for k, v in loaded.items() if v is not None}
    return EvalResult(methods=labels, pairs=[p.id for p in plist], results=results, summaries=summaries,
                      options=opts, skipped=skipped)


__all__ = ["MMA_THRESHOLDS", "SUCCESS_THRESHOLDS", "USABLE", "EvalOptions", "EvalResult", "Method", "MethodSummary",
           "Pair", "PairResult", "RegisterRun", "Scores", "apply_h", "evaluate", "grid_points", "homography_error",
           "load_pairs", "make_runner", "match_accuracy", "read_gt", "register_config", "register_pair", "run_pair",
           "scores", "summarise", "write_prediction"]
