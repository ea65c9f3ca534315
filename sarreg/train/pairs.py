"""Self-supervised training pairs: two views of one scene, a known random homography and dense ground-truth flow.

A *source* yields two co-registered linear-power views of one scene (same date, another date, or a synthetic
scene). ``make_pair`` crops view 1, resamples view 2 through a random homography (rotation, scale, shear, mild
perspective, translation), adds independent Gamma speckle, nodata cut-outs and radiometric changes, and scales
both crops with ``sarreg.io.raster.image_to_unit`` -- exactly the preprocessing used at inference.

``aflow`` (2 x H x W, float32): for every img1 pixel (x=col, y=row, pixel centres at integers) its (x, y)
position in img2, NaN where img1 is invalid or the position falls outside img2's valid data.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from sarreg import synth
from sarreg.errors import InputError
from sarreg.geometry import WarpRange, random_homography
from sarreg.io.raster import image_to_unit
from sarreg.train.images import load_channels, load_optical, load_power
from sarreg.train.looks import (contrast_look, cross_pol_look, jpeg_look, seasonal_change, sensor_look,
                                smooth_distortion)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------- sources
@dataclass
class Source:
    """Where views come from. kind: "synthetic" | "single" (same image twice) | "pairs" | "stack" | "modal"
    (a radar image and an optical image of one scene on the same pixel grid: shapes, not grey levels, match)."""

    kind: str
    weight: float = 1.0
    items: list = field(default_factory=list)  # single: [Path]; pairs, modal: [(Path, Path)]; stack: [[Path, ...]]
    size: int = 320  # synthetic scene side
    terrain: float = 0.0  # synthetic: probability of a mountain scene (sarreg.synth.terrain) instead of a flat one
    polar: float = 0.0  # single: probability of two different channels of a multi-channel image (cross-pol pair)

    def describe(self) -> str:
        n = len(self.items)
        mountains = f" ({self.terrain:.0%} mountains)" if self.terrain else ""
        return {"synthetic": f"synthetic scenes {self.size}x{self.size}{mountains}", "single": f"{n} single images",
                "pairs": f"{n} two-date pairs", "stack": f"{n} multi-date stacks",
                "modal": f"{n} radar-optical pairs"}[self.kind]

    def views(self, rng: np.random.Generator, cache: dict | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
        """(view1, view2, is_synthetic): co-registered linear power arrays of identical shape."""

        def get(p: Path, load=load_power):
            """``load(p)``, kept in ``cache`` (by path; by path and reader for another reader than load_power)."""
            if cache is None:
                return load(p)
            key = p if load is load_power else (p, load.__name__)
            if key not in cache:
                if len(cache) > 64:
                    cache.clear()
                cache[key] = load(p)
            return cache[key]

        if self.kind == "synthetic":
            seed = int(rng.integers(0, 2 ** 31 - 1))
            if self.terrain > 0 and rng.random() < self.terrain:
                refl, elevation = synth.terrain(self.size, self.size, seed)
                return refl, synth.snow_change(refl, elevation, rng) if rng.random() < 0.7 else refl, True
            refl = synth.reflectivity(self.size, self.size, seed)
            refl2 = synth.temporal_change(refl, rng, rng.uniform(0.05, 0.3)) if rng.random() < 0.4 else refl
            return refl, refl2, True
        if self.kind == "single":
            path = self.items[int(rng.integers(len(self.items)))]
            if self.polar > 0 and rng.random() < self.polar:  # (no draw when off: older runs keep their batches)
                chans = get(path, load_channels)
                if len(chans) > 1:
                    i, j = rng.choice(len(chans), size=2, replace=False)
                    return chans[i], chans[j], False
            v = get(path)
            return v, v, False
        if self.kind == "pairs":
            a, b = self.items[int(rng.integers(len(self.items)))]
            va = get(a)
            if rng.random() < 0.25:  # same date twice (speckle-only change) keeps the task well posed
                return va, va, False
            vb = _same_shape(get(b), va)
            return (va, vb, False) if rng.random() < 0.5 else (vb, va, False)
        if self.kind == "modal":
            a, b = self.items[int(rng.integers(len(self.items)))]
            va = get(a)
            vb = _same_shape(get(b, load_optical), va)
            return (va, vb, False) if rng.random() < 0.5 else (vb, va, False)
        if self.kind == "stack":
            stack = self.items[int(rng.integers(len(self.items)))]
            i, j = rng.choice(len(stack), size=2, replace=len(stack) < 2)
            va = get(stack[i])
            return va, _same_shape(get(stack[j]), va), False
        raise ValueError(f"unknown source kind {self.kind!r}")


def _same_shape(v: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``v`` resampled to ``like``'s shape when the two dates of one scene differ by a pixel or so."""
    if v.shape == like.shape:
        return v
    return cv2.resize(v, (like.shape[1], like.shape[0]), interpolation=cv2.INTER_LINEAR)


# ------------------------------------------------------------------------------------------ geometry helpers
def _translate(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0, tx], [0, 1.0, ty], [0, 0, 1.0]])


def apply_homography(H: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map pixel coordinates (arrays of any shape) through a 3 x 3 homography."""
    d = H[2, 0] * x + H[2, 1] * y + H[2, 2]
    return (H[0, 0] * x + H[0, 1] * y + H[0, 2]) / d, (H[1, 0] * x + H[1, 1] * y + H[1, 2]) / d


def _cutout(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of a nodata region: a swath-edge half-plane or a random polygon."""
    h, w = shape
    m = np.zeros((h, w), np.uint8)
    if rng.random() < 0.5:
        ang = rng.uniform(0, 2 * np.pi)
        nx, ny = math.cos(ang), math.sin(ang)
        yy, xx = np.mgrid[0:h, 0:w]
        proj = (xx - w / 2) * nx + (yy - h / 2) * ny
        return proj > rng.uniform(0.15, 0.45) * max(h, w)
    cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.08, 0.25) * max(h, w)
    ang = np.sort(rng.uniform(0, 2 * np.pi, 7))
    pts = np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], 1).round().astype(np.int32)
    cv2.fillPoly(m, [pts], 1)
    return m.astype(bool)


def _radiometric(u: np.ndarray, valid: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Random gamma / contrast / offset on a [0, 1] image (valid pixels only) -- inter-date radiometry."""
    g = math.exp(rng.uniform(-0.35, 0.35) * strength)
    c = math.exp(rng.uniform(-0.15, 0.15) * strength)
    o = rng.uniform(-0.05, 0.05) * strength
    v = np.clip(c * (np.power(u, g) - 0.5) + 0.5 + o, 0.0, 1.0)
    return np.where(valid, v, u).astype(np.float32)


def _remap(img: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Bilinear resampling at (mx, my); NaN where the sample leaves the image or touches NaN."""
    nan_in = ~np.isfinite(img)
    src = np.where(nan_in, 0, img).astype(np.float32)
    out = cv2.remap(src, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    valid = cv2.remap((~nan_in).astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                      borderValue=0)
    out[valid < 0.999] = np.nan
    return out


# ------------------------------------------------------------------------------------------------ pair making
@dataclass(frozen=True)
class PairConfig:
    """Augmentation ranges (see module docstring)."""

    crop: int = 160
    max_rot: float = 20.0
    scale: tuple[float, float] = (0.75, 1.33)
    max_shear: float = 0.15
    max_persp: float = 0.1
    max_shift: float = 0.12
    looks: tuple[int, int] = (1, 8)  # synthetic speckle looks (inclusive range)
    extra_speckle: float = 0.5  # probability of extra speckle on real two-date pairs (always for one image twice)
    cutout: float = 0.25  # probability of a nodata region in img2 (half that in img1)
    radiometric: float = 0.7  # probability of a radiometric change
    blur: float = 0.15  # probability of a slight blur of one view (resolution difference)
    min_valid: float = 0.25  # minimum fraction of img1 pixels with valid flow
    speckle: bool = True  # False: no added speckle (tests on noise-free scenes)
    sensor: float = 0.0  # probability, per view, of another sensor's look (``sensor_look``)
    distort: float = 0.0  # probability of a smooth non-projective distortion of img2 (``smooth_distortion``)
    max_distort: float = 2.5  # its largest displacement (px)
    season: float = 0.0  # probability of strong temporal change of img2 (``seasonal_change``, 10-40 % of the crop)
    polar: float = 0.0  # probability that img2 is shown as the cross-polarised channel (``cross_pol_look``)
    jpeg: float = 0.0  # probability, per view, of an 8-bit JPEG file (``jpeg_look``)
    single_look: float = 0.0  # probability, per view of a real pair, of strong extra speckle (1-2 looks)
    near_identity: float = 0.0  # probability of a georeferenced-style warp: shift + at most ~1 px of the rest
    contrast: float = 0.0  # probability of a random intensity transfer curve on one view (``contrast_look``)

    def warp_range(self) -> WarpRange:
        """The homography ranges for ``sarreg.geometry.random_homography`` (shift: a fraction of the crop;
        log aspect ratio within +-0.1)."""
        return WarpRange(rotation=self.max_rot, scale=self.scale, aspect=0.1, shear=self.max_shear,
                         perspective=self.max_persp, shift=self.max_shift * self.crop)


# georeferenced multi-date pairs: a georeference error (any sub-pixel shift) and a residual linear part that moves
# the crop's corners by about a pixel at most; the sub-pixel position of the keypoints is what matters there
NEAR_IDENTITY = WarpRange(rotation=0.5, scale=(0.99, 1.01), aspect=0.005, shear=0.005, perspective=0.002, shift=24.0)


def make_pair(view1: np.ndarray, view2: np.ndarray, rng: np.random.Generator, cfg: PairConfig = PairConfig(),
              synthetic: bool = False, H: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One training pair from two co-registered power views.

    Returns img1, img2 (crop x crop float32 in [0, 1], after ``image_to_unit``), aflow (2 x crop x crop) and H
    (3 x 3 img1 -> img2 pixel map). ``H`` fixes the homography (for tests); otherwise it is random.
    Raises ``InputError`` when the crops have no usable data.
    """
    crop = int(cfg.crop)
    v1, v2 = view1, view2
    if v1.shape != v2.shape:
        raise ValueError(f"views differ in shape: {v1.shape} vs {v2.shape}")
    # random 90-degree rotation / flip of the whole scene (both views alike)
    if H is None:
        k = int(rng.integers(4))
        v1, v2 = np.rot90(v1, k), np.rot90(v2, k)
        if rng.random() < 0.5:
            v1, v2 = v1[:, ::-1], v2[:, ::-1]
    h0, w0 = v1.shape
    # multilook down-scaling of large real scenes (scale diversity), up-scaling of too small ones
    f = 1.0
    if min(h0, w0) < crop:
        f = crop / min(h0, w0) * 1.01
    elif H is None and not synthetic and min(h0, w0) * 0.6 >= 1.5 * crop and rng.random() < 0.5:
        f = rng.uniform(0.6, 1.0)
    if f != 1.0:
        interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
        size = (max(crop, round(w0 * f)), max(crop, round(h0 * f)))
        v1 = cv2.resize(np.ascontiguousarray(v1), size, interpolation=interp)
        v2 = v1 if view1 is view2 else cv2.resize(np.ascontiguousarray(v2), size, interpolation=interp)
        h0, w0 = v1.shape
    ox = int(rng.integers(0, w0 - crop + 1)) if H is None else (w0 - crop) // 2
    oy = int(rng.integers(0, h0 - crop + 1)) if H is None else (h0 - crop) // 2
    if H is None:
        # (no draw when near_identity is off: older runs keep their batches)
        near = cfg.near_identity > 0 and rng.random() < cfg.near_identity
        H = random_homography(crop, crop, rng, NEAR_IDENTITY if near else cfg.warp_range())[0]
    # img2 pixel -> source pixel
    m2 = _translate(ox, oy) @ np.linalg.inv(H)
    p1 = np.ascontiguousarray(v1[oy:oy + crop, ox:ox + crop], dtype=np.float32)
    disp = smooth_distortion(rng, crop, cfg.max_distort) if rng.random() < cfg.distort else None
    if disp is None:
        p2 = synth.warp_image(np.ascontiguousarray(v2, dtype=np.float32), m2, (crop, crop))
    else:  # img2 pixel q samples the source at m2 (q + d(q))
        yy, xx = np.mgrid[0:crop, 0:crop].astype(np.float64)
        sx, sy = apply_homography(m2, xx + disp[0], yy + disp[1])
        p2 = _remap(np.ascontiguousarray(v2, dtype=np.float32), sx.astype(np.float32), sy.astype(np.float32))

    if not cfg.speckle:
        pass
    elif synthetic:
        lo, hi = cfg.looks
        p1 = synth.speckle(p1, int(rng.integers(lo, hi + 1)), rng)
        p2 = synth.speckle(p2, int(rng.integers(lo, hi + 1)), rng)
    elif view1 is view2:  # one real image twice: independent speckle so that noise cannot be matched
        p1 = synth.speckle(p1, rng.uniform(1.5, 6), rng)
        p2 = synth.speckle(p2, rng.uniform(1.5, 6), rng)
    elif rng.random() < cfg.extra_speckle:
        p1 = synth.speckle(p1, rng.uniform(3, 8), rng)
        p2 = synth.speckle(p2, rng.uniform(3, 8), rng)
    if cfg.single_look > 0 and not synthetic:  # (no draw when off: older runs keep their batches)
        # single-look products (SLC amplitude, high-resolution spotlight): the real scenes are multi-looked GRD
        p1 = synth.speckle(p1, rng.uniform(1, 2), rng) if rng.random() < cfg.single_look else p1
        p2 = synth.speckle(p2, rng.uniform(1, 2), rng) if rng.random() < cfg.single_look else p2
    if cfg.season > 0 and rng.random() < cfg.season:  # (no draw when off: older runs keep their batches)
        p2 = seasonal_change(p2, rng, rng.uniform(0.1, 0.4))
    if cfg.polar > 0 and rng.random() < cfg.polar:
        if rng.random() < 0.5:
            p2 = cross_pol_look(p2, rng)
        else:  # either view can be the cross-pol one
            p1 = cross_pol_look(p1, rng)
    if rng.random() < cfg.sensor:
        p1 = sensor_look(p1, rng)
    if rng.random() < cfg.sensor:
        p2 = sensor_look(p2, rng)
    if cfg.jpeg > 0:  # (no draw when off: older runs keep their batches)
        p1 = jpeg_look(p1, rng) if rng.random() < cfg.jpeg else p1
        p2 = jpeg_look(p2, rng) if rng.random() < cfg.jpeg else p2
    ok1, ok2 = np.isfinite(p1), np.isfinite(p2)
    if rng.random() < cfg.cutout:
        ok2 &= ~_cutout(rng, (crop, crop))
    if rng.random() < cfg.cutout / 2:
        ok1 &= ~_cutout(rng, (crop, crop))
    if ok1.mean() < cfg.min_valid or ok2.mean() < cfg.min_valid:
        raise InputError("pair crop has too little valid data")
    u1, ok1 = image_to_unit(np.where(ok1, p1, np.nan), kind="linear", valid=ok1)
    u2, ok2 = image_to_unit(np.where(ok2, p2, np.nan), kind="linear", valid=ok2)
    if cfg.contrast > 0 and rng.random() < cfg.contrast:  # (no draw when off: older runs keep their batches)
        if rng.random() < 0.5:
            u2 = contrast_look(u2, ok2, rng)
        else:
            u1 = contrast_look(u1, ok1, rng)
    if rng.random() < cfg.radiometric:
        u2 = _radiometric(u2, ok2, rng, 1.0)
    if rng.random() < cfg.radiometric / 2:
        u1 = _radiometric(u1, ok1, rng, 0.5)
    if rng.random() < cfg.blur:
        sig = rng.uniform(0.5, 1.0)
        if rng.random() < 0.5:
            u1 = np.where(ok1, cv2.GaussianBlur(u1, (0, 0), sig), u1).astype(np.float32)
        else:
            u2 = np.where(ok2, cv2.GaussianBlur(u2, (0, 0), sig), u2).astype(np.float32)

    aflow = flow_from_homography(H, (crop, crop), (crop, crop), ok1, ok2, disp)
    if np.isfinite(aflow[0]).mean() < cfg.min_valid:
        raise InputError("pair has too little overlap")
    return {"img1": u1, "img2": u2, "aflow": aflow, "H": H.astype(np.float64)}


def flow_from_homography(H: np.ndarray, shape1: tuple[int, int], shape2: tuple[int, int],
                         valid1: np.ndarray | None = None, valid2: np.ndarray | None = None,
                         disp: np.ndarray | None = None) -> np.ndarray:
    """Dense flow 2 x H1 x W1 (float32): img1 pixel -> (x, y) in img2 via ``H``; NaN outside / invalid.

    ``disp`` (2 x H2 x W2): img2 was sampled at H^-1 (q + disp(q)); the flow then solves q + disp(q) = H p by
    fixed-point iteration (the displacement is small and smooth, so it converges in a few steps).
    """
    h1, w1 = shape1
    h2, w2 = shape2
    yy, xx = np.mgrid[0:h1, 0:w1].astype(np.float64)
    fx, fy = apply_homography(H, xx, yy)
    if disp is not None:
        tx, ty = fx.astype(np.float32), fy.astype(np.float32)
        qx, qy = tx.copy(), ty.copy()
        for _ in range(8):
            dx = cv2.remap(disp[0].astype(np.float32), qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            dy = cv2.remap(disp[1].astype(np.float32), qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            qx, qy = tx - dx, ty - dy
        fx, fy = qx.astype(np.float64), qy.astype(np.float64)
    inside = (fx >= -0.5) & (fx <= w2 - 0.5) & (fy >= -0.5) & (fy <= h2 - 0.5) & np.isfinite(fx) & np.isfinite(fy)
    if valid1 is not None:
        inside &= valid1
    if valid2 is not None:
        ix = np.clip(np.round(fx), 0, w2 - 1).astype(np.int64)
        iy = np.clip(np.round(fy), 0, h2 - 1).astype(np.int64)
        inside &= valid2[iy, ix]
    flow = np.stack([fx, fy]).astype(np.float32)
    flow[:, ~inside] = np.nan
    return flow


def sample_pair(sources: Sequence[Source], rng: np.random.Generator, cfg: PairConfig = PairConfig(),
                cache: dict | None = None, tries: int = 20) -> dict[str, np.ndarray]:
    """Draw a source by weight, then a pair from it (retrying crops without enough valid data)."""
    w = np.array([s.weight for s in sources], dtype=np.float64)
    w = w / w.sum()
    last: Exception | None = None
    for _ in range(tries):
        src = sources[int(rng.choice(len(sources), p=w))]
        v1, v2, syn = src.views(rng, cache)
        try:
            return make_pair(v1, v2, rng, cfg, synthetic=syn)
        except InputError as e:
            last = e
    raise InputError(f"could not make a usable training pair in {tries} tries ({last})")
