"""Benchmark registration methods on image pairs with known ground truth (and build such pairs).

A *pairs folder* holds one sub-folder per pair with ``ref.*``, ``moving.*`` (GeoTIFF / PNG / JPEG) and
``gt.json`` whose key ``"H"`` is the 3 x 3 matrix mapping a MOVING pixel to the REFERENCE pixel
(x = column, y = row, (0, 0) = centre of the top-left pixel). This is the layout of ``../shared/eval/pairs``.

``evaluate(pairs, methods)`` runs every method on every pair the same way: both images are read through
``sarreg.io.raster`` (log intensity scaled to [0, 1]), keypoints are extracted (learned methods:
``sarreg.extract.extract_array``; SIFT: the pipeline's ``sarreg.keypoints.Extractor``; ORB: OpenCV ORB) and matched
by mutual nearest neighbours (``sarreg.keypoints.match_features`` -> ``sarreg.match.match_mnn``), and a homography
is fitted with MAGSAC++ (``sarreg.estimate.fit_model``). Metrics:

* MMA(t), t = 1..10 px: fraction of tentative matches whose moving keypoint, mapped with the true H, lands within
  t px of its matched reference keypoint (0 for a pair without matches), averaged over pairs.
* homography error: mean distance over a 10 x 10 grid of the moving image (points the true H maps inside the
  reference image) between the estimated and the true mapping, exactly as ``../shared/eval/score.py`` computes
  it; a failed fit is an infinite error. Success at 1 / 3 / 5 px.
* inliers of the fit, keypoints, matches, wall time per pair (reading + extraction + matching + fitting).

``sarreg.eval_pairs.make_pairs`` builds such a folder from co-registered multi-date rasters.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import cv2
import numpy as np

from sarreg.config import ExtractConfig, PreprocessConfig
from sarreg.errors import InputError, OutputError, RegistrationFailed
from sarreg.export import to_jsonable, write_text_atomic

if TYPE_CHECKING:
    from sarreg.extract import Features

log = logging.getLogger(__name__)

MMA_THRESHOLDS = tuple(range(1, 11))
SUCCESS_THRESHOLDS = (1, 3, 5)
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
CLASSICAL = ("sift", "orb")


# ------------------------------------------------------------------------------------------------ pairs
@dataclass
class Pair:
    """One evaluation pair. H: 3 x 3 moving -> reference pixel (None when there is no ground truth)."""

    id: str
    ref: Path
    moving: Path
    H: np.ndarray | None
    ref_size: tuple[int, int] | None = None      # (W, H) from gt.json, checked against the file when read
    moving_size: tuple[int, int] | None = None
    source: str = ""
    difficulty: str = ""
    large: bool = False


def _find_image(folder: Path, stem: str, hint: str | None) -> Path:
    if hint:
        p = folder / hint
        if p.is_file():
            return p
    cands = sorted(p for p in folder.iterdir() if p.stem == stem and p.suffix.lower() in IMAGE_SUFFIXES)
    if not cands:
        raise InputError(f"{folder}: no {stem}.* image ({'/'.join(IMAGE_SUFFIXES)})")
    return cands[0]


def read_gt(path: Path) -> dict[str, Any]:
    """Parse and check one gt.json (key "H": finite, invertible 3 x 3)."""
    try:
        gt = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable ground truth ({e})") from None
    try:
        H = np.asarray(gt["H"], dtype=np.float64)
    except (TypeError, KeyError, ValueError):
        H = None
    if H is None or H.shape != (3, 3) or not np.isfinite(H).all() or abs(np.linalg.det(H)) < 1e-12:
        raise InputError(f"{path}: key 'H' must be a finite invertible 3x3 matrix")
    gt["H"] = H
    return gt


def load_pairs(pairs_dir: str | Path, ids: Iterable[str] | None = None, skip_large: bool = False) -> list[Pair]:
    """All pairs of a folder (sub-folders holding gt.json), sorted by id; optionally only ``ids``."""
    root = Path(pairs_dir)
    if not root.is_dir():
        raise InputError(f"{root}: pairs folder not found")
    want = None if ids is None else set(ids)
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and (p / "gt.json").is_file()):
        if want is not None and sub.name not in want:
            continue
        gt = read_gt(sub / "gt.json")
        pair = Pair(id=str(gt.get("id", sub.name)),
                    ref=_find_image(sub, "ref", gt.get("ref")), moving=_find_image(sub, "moving", gt.get("moving")),
                    H=gt["H"], ref_size=_wh(gt.get("ref_size_wh")), moving_size=_wh(gt.get("moving_size_wh")),
                    source=str(gt.get("source", "")), difficulty=str(gt.get("difficulty", "")),
                    large=bool(gt.get("large", False)))
        if skip_large and pair.large:
            continue
        out.append(pair)
    if not out:
        raise InputError(f"{root}: no pairs (sub-folders with ref.*, moving.*, gt.json)")
    return out


def _wh(v: Any) -> tuple[int, int] | None:
    return None if v is None else (int(v[0]), int(v[1]))


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
    """A way to get matches. kind: "learned" (``weights`` = checkpoint path, None = shipped model), "sift", "orb"."""

    label: str
    kind: str
    weights: str | None = None

    @staticmethod
    def parse(spec: str) -> "Method":
        """'sift' | 'orb' | 'model' (the shipped model) | a checkpoint path (label = file stem)."""
        s = spec.strip()
        if s.lower() in CLASSICAL:
            return Method(s.lower(), s.lower())
        if s.lower() == "model":
            from sarreg.model.weights import DEFAULT_MODEL_NAME

            return Method(Path(DEFAULT_MODEL_NAME).stem, "learned", None)
        p = Path(s)
        if p.suffix.lower() in (".pt", ".pth") or p.exists():
            return Method(p.stem, "learned", str(p))
        raise InputError(f"unknown method {spec!r}: use sift, orb, model, or a checkpoint path (.pt)")


@dataclass(frozen=True)
class EvalOptions:
    """Options shared by every pair. extract: learned extraction (multiscale, top-k, thresholds);
    ratio: optional Lowe ratio of the MNN matcher (every method); orb_features: ORB keypoint budget (SIFT and the
    learned methods keep ``extract.top_k``); threshold: MAGSAC inlier distance (reference px)."""

    extract: ExtractConfig = field(default_factory=ExtractConfig)
    ratio: float | None = None
    orb_features: int = 5000
    threshold: float = 3.0
    robust: str = "magsac"
    skip_large_learned: bool = False
    seed: int = 0


@dataclass
class PairResult:
    """One method on one pair. error: homography grid error (px, inf = failed); mma: per MMA_THRESHOLDS."""

    pair: str
    method: str
    status: str                       # ok | failed | skipped
    matrix: list[list[float]] | None
    error: float | None
    mma: list[float] | None
    keypoints: tuple[int, int]
    matches: int
    inliers: int
    time_s: float
    message: str = ""


@dataclass
class MethodSummary:
    """Averages of one method over the pairs it ran on (skipped pairs excluded)."""

    method: str
    n: int
    failed: int
    success: dict[str, float]         # "1", "3", "5" -> fraction of pairs with error <= t px
    median_error: float | None        # None = inf (more than half failed)
    mma: list[float]                  # mean over pairs, per MMA_THRESHOLDS
    mean_inliers: float
    mean_matches: float
    mean_keypoints: float
    time_s: float


@dataclass
class EvalResult:
    """Everything one ``evaluate`` run measured; ``to_dict`` / ``save_json`` give plain JSON (inf -> null)."""

    methods: list[str]
    pairs: list[str]
    results: list[PairResult]
    summaries: list[MethodSummary]
    mma_thresholds: list[int] = field(default_factory=lambda: list(MMA_THRESHOLDS))
    options: dict[str, Any] = field(default_factory=dict)

    def summary(self, method: str) -> MethodSummary:
        for s in self.summaries:
            if s.method == method:
                return s
        raise KeyError(method)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))

    def save_json(self, path: str | Path) -> Path:
        return write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=1) + "\n")

    def to_markdown(self) -> str:
        """A markdown table: one row per method."""
        head = ("| method | pairs | failed | s@1px | s@3px | s@5px | median err (px) | MMA@1 | MMA@3 | MMA@5 | "
                "MMA@10 | inliers | matches | s/pair |")
        lines = [head, "|" + "---|" * 1 + "---:|" * (head.count("|") - 2)]
        for s in self.summaries:
            med = "inf" if s.median_error is None else f"{s.median_error:.2f}"
            lines.append(
                f"| {s.method} | {s.n} | {s.failed} | {s.success['1']:.3f} | {s.success['3']:.3f} | "
                f"{s.success['5']:.3f} | {med} | {s.mma[0]:.3f} | {s.mma[2]:.3f} | {s.mma[4]:.3f} | {s.mma[9]:.3f} | "
                f"{s.mean_inliers:.1f} | {s.mean_matches:.1f} | {s.time_s:.2f} |")
        return "\n".join(lines) + "\n"

    def save_markdown(self, path: str | Path) -> Path:
        return write_text_atomic(Path(path), self.to_markdown())

    def plot_mma(self, path: str | Path) -> Path:
        """PNG of mean matching accuracy versus threshold, one curve per method (matplotlib Agg)."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4), dpi=100)
        ax = fig.add_subplot(111)
        for s in self.summaries:
            ax.plot(self.mma_thresholds, s.mma, marker="o", label=f"{s.method} (s@3px {s.success['3']:.2f})")
        ax.set_xlabel("threshold (px)")
        ax.set_ylabel("mean matching accuracy")
        ax.set_ylim(0, 1)
        ax.set_xlim(1, max(self.mma_thresholds))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"MMA over {len(self.pairs)} pairs")
        fig.tight_layout()
        from sarreg.export import write_atomic

        return write_atomic(Path(path), lambda tmp: fig.savefig(tmp, format="png"))


# ------------------------------------------------------------------------------------------------ running
def _read(path: Path, pre: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """Whole image -> ([0, 1] log-scaled float32, valid mask) through the same reader as the tool."""
    from sarreg.io.raster import open_scene, read_unit

    return read_unit(open_scene(path, pre), pre=pre)


def _orb(unit: np.ndarray, valid: np.ndarray, n: int) -> "Features":
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


def run_pair(pair: Pair, method: Method, model: Any, opt: EvalOptions,
             images: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], float] | None = None
             ) -> PairResult:
    """Run one method on one pair. ``images``: already read (ref, moving, read seconds) to share reads."""
    t0 = time.perf_counter()
    if images is None:
        images = (_read(pair.ref, opt.extract.preprocess), _read(pair.moving, opt.extract.preprocess), 0.0)
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
                      keypoints=nkp, matches=int(len(xy_m)), inliers=int(inliers), time_s=float(dt), message=msg)


def _features(method: Method, model: Any, unit: np.ndarray, valid: np.ndarray, opt: EvalOptions) -> "Features":
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


def _check_sizes(pair: Pair, ur: np.ndarray, um: np.ndarray) -> None:
    for name, wh, u, path in (("ref", pair.ref_size, ur, pair.ref), ("moving", pair.moving_size, um, pair.moving)):
        if wh is not None and tuple(wh) != (u.shape[1], u.shape[0]):
            raise InputError(f"{path}: size {u.shape[1]}x{u.shape[0]} differs from gt.json {name}_size_wh {wh}")


def summarise(method: str, rows: list[PairResult]) -> MethodSummary:
    """Success rates, median error, mean MMA curve / inliers / time over the non-skipped rows."""
    rows = [r for r in rows if r.status != "skipped"]
    n = len(rows)
    errs = np.array([math.inf if r.error is None else r.error for r in rows], float)
    has_gt = [r for r in rows if r.mma is not None]
    med = float(np.median(errs)) if n else math.inf
    return MethodSummary(
        method=method, n=n, failed=int(sum(r.status != "ok" for r in rows)),
        success={str(t): float(np.mean(errs <= t)) if n and has_gt else float("nan") for t in SUCCESS_THRESHOLDS},
        median_error=med if math.isfinite(med) else None,
        mma=[float(v) for v in np.mean([r.mma for r in has_gt], axis=0)] if has_gt else [float("nan")] * 10,
        mean_inliers=float(np.mean([r.inliers for r in rows])) if n else 0.0,
        mean_matches=float(np.mean([r.matches for r in rows])) if n else 0.0,
        mean_keypoints=float(np.mean([np.mean(r.keypoints) for r in rows])) if n else 0.0,
        time_s=float(np.mean([r.time_s for r in rows])) if n else 0.0)


def write_prediction(pred_dir: Path, r: PairResult) -> Path:
    """``<pred_dir>/<pair>.json`` in the official scorer's format ({"matrix", "time_s"} or {"failed": true})."""
    doc: dict[str, Any] = {"matrix": r.matrix, "time_s": round(r.time_s, 4)} if r.matrix is not None else \
        {"failed": True, "time_s": round(r.time_s, 4), "reason": r.message}
    doc.update(method=r.method, inliers=r.inliers, matches=r.matches)
    return write_text_atomic(pred_dir / f"{r.pair}.json", json.dumps(doc) + "\n")


def evaluate(pairs: str | Path | Sequence[Pair], methods: Sequence[Method | str], options: EvalOptions = EvalOptions(),
             pred_dir: str | Path | None = None, progress: Callable[[int, int, str], None] | None = None,
             models: dict[str, Any] | None = None) -> EvalResult:
    """Run every method on every pair; returns per-pair results and per-method summaries.

    pairs: a pairs folder or a list of ``Pair`` (H may be None: then only matches / inliers / time are measured).
    methods: ``Method`` objects or specs for ``Method.parse``. Learned checkpoints are loaded once
    (``models`` may hold preloaded ones by label). pred_dir: write ``<pred_dir>/<method>/<pair>.json`` for
    ``score.py``. progress: callable(done, total, label).
    """
    from sarreg.extract import resolve_device
    from sarreg.model.weights import load_model

    plist = load_pairs(pairs) if isinstance(pairs, (str, Path)) else list(pairs)
    meths = [m if isinstance(m, Method) else Method.parse(m) for m in methods]
    if not meths:
        raise InputError("no methods to evaluate")
    labels = [m.label for m in meths]
    if len(set(labels)) != len(labels):
        raise InputError(f"duplicate method labels {labels}: rename the checkpoint files")
    loaded = dict(models or {})
    device = resolve_device(options.extract.device)
    for m in meths:  # load (and so validate) every checkpoint before any work
        if m.kind == "learned" and m.label not in loaded:
            loaded[m.label] = load_model(m.weights, device)
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
        t0 = time.perf_counter()
        ref = _read(pair.ref, options.extract.preprocess)
        mov = _read(pair.moving, options.extract.preprocess)
        _check_sizes(pair, ref[0], mov[0])
        t_read = time.perf_counter() - t0
        for m in meths:
            if m.kind == "learned" and options.skip_large_learned and pair.large:
                r = PairResult(pair.id, m.label, "skipped", None, None, None, (0, 0), 0, 0, 0.0, "large pair")
            else:
                r = run_pair(pair, m, loaded.get(m.label), options, (ref, mov, t_read))
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
                      for k, v in loaded.items()}
    return EvalResult(methods=labels, pairs=[p.id for p in plist], results=results, summaries=summaries,
                      options=opts)
