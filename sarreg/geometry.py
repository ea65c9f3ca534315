"""Pixel-space geometry shared by the stages: 3 x 3 matrices (moving px -> reference px), in-memory resampling.

Pixel convention: x = column, y = row, (0, 0) = centre of the top-left pixel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from sarreg.estimate import apply_matrix

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry


def translate(tx: float, ty: float) -> np.ndarray:
    """3 x 3 translation by (tx, ty) px: the building block of the stages' pixel maps (windows, tiles, offsets)."""
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], dtype=np.float64)


@dataclass(frozen=True)
class WarpRange:
    """Ranges of a random homography about the image centre: rotation (degrees, uniform), scale (log-uniform
    between the two bounds), aspect (log of the x / y scale ratio, uniform in +-aspect), shear (uniform), perspective
    (largest change of the projective denominator at the image edge, per axis), shift (px, uniform per axis)."""

    rotation: float = 15.0
    scale: tuple[float, float] = (0.8, 1.25)
    aspect: float = 0.0
    shear: float = 0.0
    perspective: float = 0.05
    shift: float = 40.0


def random_homography(w: int, h: int, rng: np.random.Generator, ranges: WarpRange = WarpRange()
                      ) -> tuple[np.ndarray, dict[str, float]]:
    """Seeded random homography of a w x h image about its centre -> (3 x 3 matrix, drawn parameters).

    H = T(c + t) @ [[R @ [[s a, k s], [0, s / a]], 0], [p, 1]] @ T(-c): the linear part (rotation R, scale s,
    aspect a, shear k) and the perspective row p act about the centre c, then the shift t. Draw order (one
    generator): rotation, scale, aspect, shear, perspective (x, y), shift (x, y). The matrix is not normalised
    (H[2, 2] = 1 - p . c). Used for the evaluation pairs (``sarreg.eval_pairs``) and the training pairs
    (``sarreg.train.pairs``, moving = img1 -> img2).
    """
    r = ranges
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    th = math.radians(rng.uniform(-r.rotation, r.rotation))
    s = math.exp(rng.uniform(math.log(r.scale[0]), math.log(r.scale[1])))
    asp = math.exp(rng.uniform(-r.aspect, r.aspect))
    k = rng.uniform(-r.shear, r.shear)
    rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    core = np.eye(3)
    core[:2, :2] = rot @ np.array([[s * asp, k * s], [0.0, s / asp]])
    p = rng.uniform(-1, 1, 2) * r.perspective / np.maximum(1.0, c)
    t = rng.uniform(-r.shift, r.shift, 2)
    core[2, :2] = p
    H = translate(c[0] + t[0], c[1] + t[1]) @ core @ translate(-c[0], -c[1])
    return H, {"tx": float(t[0]), "ty": float(t[1]), "rotation_deg": math.degrees(th), "scale": s,
               "aspect": asp, "shear": float(k), "perspective_x": float(p[0]), "perspective_y": float(p[1])}


def decimation(full: tuple[int, int], small: tuple[int, int]) -> np.ndarray:
    """Matrix: pixel of a decimated read (rows, cols = ``small``) -> pixel of the full window (``full``)."""
    sy, sx = full[0] / small[0], full[1] / small[1]
    return np.array([[sx, 0, (sx - 1) / 2], [0, sy, (sy - 1) / 2], [0, 0, 1]], dtype=np.float64)


def edge_corners(c0: float, r0: float, c1: float, r1: float) -> list[list[float]]:
    """The four pixel-edge corners of the window [c0, c1) x [r0, r1), in pixel-centre coordinates."""
    return [[c0 - 0.5, r0 - 0.5], [c1 - 0.5, r0 - 0.5], [c0 - 0.5, r1 - 0.5], [c1 - 0.5, r1 - 0.5]]


def box_around(xy: np.ndarray, pad: float, width: int, height: int) -> tuple[int, int, int, int]:
    """(c0, r0, c1, r1): the window of a ``width`` x ``height`` raster covering the points ``xy`` (N x 2) with
    ``pad`` px more on each side, clipped to the raster."""
    return (int(max(0, math.floor(xy[:, 0].min() - pad))), int(max(0, math.floor(xy[:, 1].min() - pad))),
            int(min(width, math.ceil(xy[:, 0].max() + pad))), int(min(height, math.ceil(xy[:, 1].max() + pad))))


def rotation(deg: float, cx: float, cy: float) -> np.ndarray:
    """3 x 3 rotation by ``deg`` degrees about (cx, cy): the coarse stage's rotation search turns images with it."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return translate(cx, cy) @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ translate(-cx, -cy)


def local_scale(m: np.ndarray, xy: tuple[float, float]) -> float:
    """Linear scale (reference px per moving px) of a matrix near a moving point."""
    p = np.array([[xy[0], xy[1]], [xy[0] + 1, xy[1]], [xy[0], xy[1] + 1]])
    q = apply_matrix(m, p)
    u, v = q[1] - q[0], q[2] - q[0]
    return math.sqrt(abs(u[0] * v[1] - u[1] * v[0]))


def resample(img: np.ndarray, m: np.ndarray, shape: tuple[int, int], nearest: bool = False,
          flags: int = cv2.INTER_LINEAR) -> np.ndarray:
    """cv2 resampling with a forward matrix (source px -> destination px), constant 0 outside.

    flags: OpenCV interpolation; correlation uses Lanczos, whose phase response keeps sub-pixel offsets unbiased
    (bilinear interpolation pulls measured offsets toward half a pixel by up to ~0.06 px on speckle)."""
    flags = cv2.INTER_NEAREST if nearest else flags
    m = np.asarray(m, dtype=np.float64)
    if np.allclose(m[2], [0, 0, 1]):
        return cv2.warpAffine(img, m[:2], (shape[1], shape[0]), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)
    return cv2.warpPerspective(img, m, (shape[1], shape[0]), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=0)


def resample_valid(valid: np.ndarray, m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Validity mask resampled through ``m``; only pixels with (nearly) all-valid support stay valid (no edge bleed)."""
    return resample(valid.astype(np.float32), m, shape) > 0.999


def apply_geom(geom: BaseGeometry, m: np.ndarray) -> BaseGeometry:
    """Shapely geometry mapped through a 3 x 3 matrix: moving footprints compared in reference pixels."""
    import shapely

    if np.allclose(m[2], [0, 0, 1]):
        return shapely.affinity.affine_transform(geom, [m[0, 0], m[0, 1], m[1, 0], m[1, 1], m[0, 2], m[1, 2]])
    return shapely.transform(geom, lambda xy: apply_matrix(m, xy))


def matrix_distance(a: np.ndarray, b: np.ndarray, area: BaseGeometry) -> float:
    """Largest distance (reference px) between two moving -> reference matrices at the overlap's bounding box
    corners and centre."""
    x0, y0, x1, y1 = area.bounds
    g = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1], [(x0 + x1) / 2, (y0 + y1) / 2]])
    p = apply_matrix(np.linalg.inv(b), g)
    return float(np.nanmax(np.hypot(*(apply_matrix(a, p) - g).T)))


def georef_base(prior: np.ndarray, located: bool) -> np.ndarray | None:
    """The linear part of the georeferencing between two located rasters (moving px -> reference px), over which
    shifts and similarities are fitted (``fit_model``'s ``base``): what is left after a georeferencing is a shift
    on the ground, i.e. in reference px this linear part plus a translation (a 15 m raster on a 10 m grid: a 1.5x
    scale). None when it is the identity (same pixel size and grid orientation: a plain shift), for rasters not
    located on the ground, and for a projective prior."""
    p = np.asarray(prior, dtype=np.float64)
    if not located or not np.allclose(p[2], [0, 0, 1], atol=1e-12):
        return None
    lin = np.eye(3)
    lin[:2, :2] = p[:2, :2]
    return None if np.allclose(lin, np.eye(3), atol=1e-6) else lin
