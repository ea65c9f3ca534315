"""Synthetic SAR-like scenes made by project code (tests, samples, benchmarks, training).

A scene is built in the dB domain from layered primitives, then turned into linear backscatter:

* smooth multi-octave texture (terrain / vegetation variations),
* agricultural fields: a Voronoi partition (polygons) with a per-field mean and sometimes row stripes,
* rivers (dark, wide, smooth curvilinear) and roads (thin, dark or bright),
* urban blocks (bright buildings on a darker street grid) and bright point scatterers.

``terrain`` makes a mountain scene instead (topographic shading of a ridged fractal elevation, snow lines and
land cover by elevation) and ``snow_change`` its later date; ``coastal_pair`` two dates of a coast (land on a strip,
sea whose texture changes completely between dates).

Everything is deterministic per ``seed`` and drawn with OpenCV (a 1024 x 1024 scene takes well under a second).
``speckle`` multiplies by unit-mean Gamma noise (L looks); ``temporal_change`` alters a fraction of the scene as
between two acquisition dates; ``warp_image`` resamples with a 3 x 3 homography; ``write_geotiff`` writes a real
tiled GeoTIFF through rasterio.

Pixel convention (as everywhere in sarreg): x = column, y = row, (0, 0) = centre of the top-left pixel.
"""
from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

from sarreg.errors import OutputError
from sarreg.outputs import write_atomic

log = logging.getLogger(__name__)


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Zero-mean, unit-ish std smooth noise with correlation length ~``cell`` pixels (bicubic up-sampling)."""
    gh, gw = max(2, int(math.ceil(height / cell)) + 2), max(2, int(math.ceil(width / cell)) + 2)
    small = rng.standard_normal((gh, gw)).astype(np.float32)
    big = cv2.resize(small, (int(gw * cell), int(gh * cell)), interpolation=cv2.INTER_CUBIC)
    return big[:height, :width]


def _curve(rng: np.random.Generator, height: int, width: int, step: float, wiggle: float) -> np.ndarray:
    """A smooth random curve crossing the scene: M x 2 int32 (x, y) vertices for cv2.polylines."""
    side = rng.integers(4)
    if side == 0:
        x, y, ang = rng.uniform(0, width), 0.0, math.pi / 2
    elif side == 1:
        x, y, ang = 0.0, rng.uniform(0, height), 0.0
    elif side == 2:
        x, y, ang = rng.uniform(0, width), float(height), -math.pi / 2
    else:
        x, y, ang = float(width), rng.uniform(0, height), math.pi
    ang += rng.uniform(-0.6, 0.6)
    pts = [(x, y)]
    dang = 0.0
    n_max = int(4 * (height + width) / step)
    for _ in range(n_max):
        dang = 0.8 * dang + rng.normal(0, wiggle)
        ang += dang
        x += step * math.cos(ang)
        y += step * math.sin(ang)
        pts.append((x, y))
        if not (-step <= x <= width + step and -step <= y <= height + step):
            break
    return np.round(np.array(pts)).astype(np.int32)


def reflectivity(height: int, width: int, seed: int) -> np.ndarray:
    """Noise-free SAR backscatter (linear power, float32, H x W, all values > 0), deterministic per seed.

    Typical range -25 dB (water) to +25 dB (point scatterers); the median is around -10 dB.
    """
    if height < 1 or width < 1:
        raise ValueError(f"scene size must be positive, got {height} x {width}")
    rng = np.random.default_rng(seed)
    h, w = int(height), int(width)
    area = h * w

    # 1. smooth background texture (dB)
    db = -10.0 + 2.0 * smooth_noise(rng, h, w, rng.uniform(60, 160))
    db += 1.0 * smooth_noise(rng, h, w, rng.uniform(12, 30))

    # 2. agricultural fields: Voronoi cells from random seeds -> per-field mean (and sometimes stripes)
    field_size = rng.uniform(40, 90)
    n_fields = max(2, int(area / field_size ** 2))
    seeds_img = np.ones((h, w), np.uint8)
    sx = rng.integers(0, w, n_fields)
    sy = rng.integers(0, h, n_fields)
    seeds_img[sy, sx] = 0
    _, labels = cv2.distanceTransformWithLabels(seeds_img, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_CCOMP)
    n_lab = int(labels.max()) + 1
    field_mean = rng.normal(0.0, 3.0, n_lab).astype(np.float32)
    field_mean[rng.random(n_lab) < 0.25] = 0.0  # some cells keep the background level
    db += field_mean[labels]
    # stripes (crop rows) in a subset of fields
    striped = rng.random(n_lab) < 0.3
    if striped.any():
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        theta = rng.uniform(0, np.pi, n_lab).astype(np.float32)
        period = rng.uniform(4, 12, n_lab).astype(np.float32)
        t, p = theta[labels], period[labels]
        stripes = 1.5 * np.sin(2 * np.pi * (xx * np.cos(t) + yy * np.sin(t)) / p)
        db += np.where(striped[labels], stripes, 0.0).astype(np.float32)
        del yy, xx, t, p, stripes
    # field boundaries: slightly dark hedges / ditches
    edges = cv2.morphologyEx(labels.astype(np.float32), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    db[edges] -= rng.uniform(0.5, 2.5)

    # 3. rivers (dark, wide) and roads (thin, dark or bright)
    scale = math.sqrt(area) / 512.0
    water = np.zeros((h, w), np.uint8)
    for _ in range(rng.poisson(1.0 * scale) + (1 if rng.random() < 0.7 else 0)):
        cv2.polylines(water, [_curve(rng, h, w, 8.0, 0.06)], False, 255,
                      thickness=int(rng.integers(3, 14)), lineType=cv2.LINE_AA)
    wmask = water.astype(np.float32) / 255.0
    db = db * (1 - wmask) + (-22.0 + 1.0 * rng.standard_normal()) * wmask
    roads = np.zeros((h, w), np.float32)
    for _ in range(rng.poisson(3.0 * scale) + 1):
        val = rng.choice([-9.0, 7.0])
        cv2.polylines(roads, [_curve(rng, h, w, 12.0, 0.015)], False, float(val),
                      thickness=int(rng.integers(1, 3)), lineType=cv2.LINE_8)
    db += roads

    # 4. urban blocks: bright buildings on a street grid, rotated
    for _ in range(rng.poisson(0.8 * scale ** 2) + (1 if rng.random() < 0.5 else 0)):
        bw, bh = rng.uniform(60, 200) * max(1, scale * 0.7), rng.uniform(60, 200) * max(1, scale * 0.7)
        cx, cy, ang = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0, 180)
        rot = cv2.getRotationMatrix2D((float(cx), float(cy)), float(ang), 1.0)
        urb = np.zeros((h, w), np.float32)
        step = rng.uniform(10, 22)
        for gy in np.arange(cy - bh / 2, cy + bh / 2, step):
            for gx in np.arange(cx - bw / 2, cx + bw / 2, step):
                if rng.random() < 0.15:
                    continue
                bs = step * rng.uniform(0.45, 0.8)
                urb[int(max(0, min(h - 1, gy))):int(max(0, min(h, gy + bs))),
                    int(max(0, min(w - 1, gx))):int(max(0, min(w, gx + bs)))] = rng.uniform(5, 14)
        # rotate the block pattern about its centre (buildings drawn axis-aligned first)
        urb = cv2.warpAffine(urb, rot, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
        inside = urb > 0
        db[inside] = np.maximum(db[inside], -10.0) + urb[inside]

    # 5. bright point scatterers (some with a small cross-shaped sidelobe pattern)
    n_pts = rng.poisson(area / 4000.0)
    px, py = rng.integers(0, w, n_pts), rng.integers(0, h, n_pts)
    amp = rng.uniform(12, 25, n_pts).astype(np.float32)
    db[py, px] = np.maximum(db[py, px], amp)
    cross = rng.random(n_pts) < 0.3
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        qx, qy = np.clip(px[cross] + dx, 0, w - 1), np.clip(py[cross] + dy, 0, h - 1)
        db[qy, qx] = np.maximum(db[qy, qx], amp[cross] - 8)

    return np.power(10.0, db / 10.0, dtype=np.float32).astype(np.float32)


def speckle(refl: np.ndarray, looks: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative fully developed speckle: refl x Gamma(L, 1/L) (mean 1, variance 1/L), float32."""
    if not looks > 0:
        raise ValueError(f"looks must be > 0, got {looks}")
    refl = np.asarray(refl, dtype=np.float32)
    noise = rng.gamma(float(looks), 1.0 / float(looks), size=refl.shape).astype(np.float32)
    return refl * noise


def temporal_change(refl: np.ndarray, rng: np.random.Generator, fraction: float = 0.15) -> np.ndarray:
    """A later-date version of ``refl``: random polygons covering ~``fraction`` of the scene change level.

    Each polygon gets a gain of +-3..10 dB, or becomes water (flooding, about -22 dB). Returns a new array.
    """
    refl = np.asarray(refl, dtype=np.float32)
    h, w = refl.shape[:2]
    out = refl.copy()
    if fraction <= 0:
        return out
    changed = np.zeros((h, w), np.uint8)
    target = min(1.0, float(fraction)) * h * w
    for _ in range(200):
        if changed.sum(dtype=np.int64) >= target:
            break
        r = rng.uniform(0.05, 0.2) * math.sqrt(h * w)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        k = int(rng.integers(5, 10))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = r * rng.uniform(0.5, 1.0, k)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).round().astype(np.int32)
        poly = np.zeros((h, w), np.uint8)
        cv2.fillPoly(poly, [pts], 1)
        poly &= 1 - changed
        if not poly.any():
            continue
        m = poly.astype(bool)
        if rng.random() < 0.3:
            out[m] = np.float32(10 ** (-2.2)) * rng.uniform(0.7, 1.3)
        else:
            gain_db = rng.choice([-1, 1]) * rng.uniform(3, 10)
            out[m] = refl[m] * np.float32(10 ** (gain_db / 10))
        changed |= poly
    return out


def terrain(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A mountain scene as a side-looking radar sees it: (linear backscatter, elevation), float32, H x W.

    Why: flat agricultural scenes teach little about mountains, where the image is mostly topographic shading
    that stays put between dates while snow and vegetation change the levels. Elevation is a ridged fractal in
    units of the pixel spacing (total relief 20-120 pixels); backscatter follows the local incidence angle of a
    random look direction (brighter slopes facing the sensor, dark or shadowed slopes facing away), partly
    flattened as in terrain-corrected (RTC) products, over elevation-dependent land cover (forest, meadow and
    rock, glaciers, valley lakes, villages with bright points).
    """
    if height < 1 or width < 1:
        raise ValueError(f"scene size must be positive, got {height} x {width}")
    rng = np.random.default_rng(seed)
    h, w = int(height), int(width)
    z = np.zeros((h, w), np.float32)
    amp, cell = 1.0, rng.uniform(80, 220)
    for _ in range(5):
        n = smooth_noise(rng, h, w, cell)
        z += amp * ((1.0 - np.abs(n)) if rng.random() < 0.7 else 0.5 * n)
        amp *= rng.uniform(0.4, 0.6)
        cell = max(3.0, cell / rng.uniform(1.8, 2.6))
    z = (z - z.min()) / max(float(np.ptp(z)), 1e-6)
    z = np.float32(rng.uniform(20, 120)) * z ** np.float32(rng.uniform(1.0, 2.0))

    # local incidence angle for a random look direction (image axes need not be the range axis)
    gy, gx = np.gradient(z)
    phi, theta0 = rng.uniform(0, 2 * np.pi), np.deg2rad(rng.uniform(30, 45))
    lx, ly, lz = -math.sin(theta0) * math.cos(phi), -math.sin(theta0) * math.sin(phi), math.cos(theta0)
    cos_loc = (-gx * lx - gy * ly + lz) / np.sqrt(gx * gx + gy * gy + 1.0)
    terrain_db = rng.uniform(1.0, 3.0) * 10 * np.log10(np.clip(cos_loc, 0.05, 1.0) / math.cos(theta0))
    terrain_db += 10 * np.log10(math.sin(theta0) / np.clip(np.sqrt(1 - np.clip(cos_loc, -1, 1) ** 2), 0.15, 1.0))
    terrain_db *= np.float32(1.0 - 0.8 * rng.random())  # radiometric terrain flattening leaves a residual

    # land cover by elevation, with patchy texture
    zq = np.quantile(z, [0.03, 0.2, rng.uniform(0.3, 0.7), rng.uniform(0.8, 0.97)])
    patch = smooth_noise(rng, h, w, rng.uniform(10, 30))
    forest = -7.0 + 1.0 * smooth_noise(rng, h, w, 4.0) + 0.8 * patch
    alpine = -12.0 + 3.0 * patch + 1.0 * smooth_noise(rng, h, w, 6.0)
    glacier = -15.0 + 1.0 * smooth_noise(rng, h, w, 40.0)
    line = zq[2] + 0.1 * float(np.ptp(z)) * smooth_noise(rng, h, w, 60.0)
    db = np.where(z < line, forest, alpine)
    db = np.where(z > zq[3], glacier, db) + terrain_db
    db[cos_loc < 0.05] = -24.0 + rng.standard_normal()  # radar shadow
    flat = np.hypot(gx, gy) < 0.15
    if rng.random() < 0.6:  # valley lakes
        db[(z < zq[0]) & flat] = -22.0
    valley = np.flatnonzero((z < zq[1]).ravel())
    if valley.size:  # villages and roads in the valleys: bright points
        pts = rng.choice(valley, size=min(valley.size, int(rng.poisson(h * w / 3000.0)) + 1))
        db.ravel()[pts] = np.maximum(db.ravel()[pts], rng.uniform(8, 20, pts.size))
    return np.power(10.0, db / 10.0, dtype=np.float32).astype(np.float32), z.astype(np.float32)


def snow_change(refl: np.ndarray, elevation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A later-date version of a ``terrain`` scene: wet snow above a patchy snow line (-2 to -12 dB), or a
    dry/seasonal change of a few dB over whole land-cover zones. The topography does not move."""
    refl = np.asarray(refl, dtype=np.float32)
    h, w = refl.shape
    z = np.asarray(elevation, dtype=np.float32)
    line = np.quantile(z, rng.uniform(0.1, 0.9)) + 0.05 * float(np.ptp(z)) * smooth_noise(rng, h, w, 50.0)
    weight = 1.0 / (1.0 + np.exp(-(z - line) / max(0.02 * float(np.ptp(z)), 1e-3)))
    if rng.random() < 0.7:  # wet snow
        gain_db = -rng.uniform(2, 12) + 1.5 * smooth_noise(rng, h, w, rng.uniform(8, 30))
    else:  # dry snow / vegetation season: small, zone-wide changes of either sign
        gain_db = rng.uniform(-3, 3) + 0.7 * smooth_noise(rng, h, w, 20.0)
    return (refl * np.power(10.0, weight * gain_db / 10.0)).astype(np.float32)


def warp_image(img: np.ndarray, H: np.ndarray, out_shape: tuple[int, int], fill: float | None = None,
               interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Resample ``img`` onto an output grid of ``out_shape`` = (rows, cols) with a homography.

    ``H`` (3 x 3) maps an OUTPUT pixel (x=col, y=row, pixel centres at integers) to the INPUT pixel it samples:
    ``out[y, x] = img[H @ (x, y, 1)]``. (To apply a forward map F input->output, pass ``inv(F)``.)
    Output pixels whose sample falls outside the input (or touches an invalid NaN input pixel) get ``fill``:
    NaN for float images and 0 for integer images by default.
    """
    img = np.asarray(img)
    H = np.asarray(H, dtype=np.float64).reshape(3, 3)
    rows, cols = int(out_shape[0]), int(out_shape[1])
    is_float = np.issubdtype(img.dtype, np.floating)
    if fill is None:
        fill = float("nan") if is_float else 0.0
    flags = interpolation | cv2.WARP_INVERSE_MAP
    src = img.astype(np.float32) if img.dtype not in (np.float32, np.float64, np.uint8, np.uint16) else img
    nan_in = ~np.isfinite(src) if is_float else None
    if nan_in is not None and nan_in.any():
        src = np.where(nan_in, 0, src).astype(src.dtype)
    out = cv2.warpPerspective(src, H, (cols, rows), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # validity: warp a ones image with the same sampling; anything touched by the outside/NaN is invalid
    ones = np.ones(img.shape[:2], np.float32)
    if nan_in is not None and nan_in.any():
        ones[nan_in if nan_in.ndim == 2 else nan_in.any(-1)] = 0
    valid = cv2.warpPerspective(ones, H, (cols, rows), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=0) > 0.999
    if out.ndim == 3:
        valid = valid[..., None]
    if is_float or np.isnan(fill):
        out = np.where(valid, out, np.float32(fill)).astype(img.dtype if is_float else np.float32)
    else:
        out = np.where(valid, out, fill).astype(img.dtype)
    return out


def write_geotiff(path: str | Path, array: np.ndarray, transform: Affine | None = None, crs: Any = None,
                  nodata: float | None = None, dtype: str | None = None, **profile: Any) -> Path:
    """Write a tiled (256 x 256 blocks) GeoTIFF atomically (temp file + rename); returns the path.

    ``array``: H x W (one band) or B x H x W. Without transform/crs a pixel-space TIFF is written
    (identity transform, no CRS). Extra keyword arguments go to the rasterio profile (e.g. compress="deflate").
    """
    path = Path(path)
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"array must be H x W or B x H x W, got shape {arr.shape}")
    if dtype is not None:
        arr = arr.astype(dtype)
    count, h, w = arr.shape
    prof: dict[str, Any] = {
        "driver": "GTiff", "height": h, "width": w, "count": count, "dtype": str(arr.dtype),
        "transform": transform if transform is not None else Affine.identity(), "crs": crs, "nodata": nodata,
    }
    if h >= 16 and w >= 16:
        prof.update(tiled=True, blockxsize=min(256, 16 * ((w + 15) // 16)), blockysize=min(256, 16 * ((h + 15) // 16)))
    prof.update(profile)
    if not path.parent.is_dir():
        raise OutputError(f"{path}: output folder does not exist")

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(tmp, "w", **prof) as dst:
                dst.write(arr)

    return write_atomic(path, write)


def make_pair(height: int, width: int, seed: int, looks: float = 4.0,
              change: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convenience: (reflectivity, speckled date 1, speckled date 2) of one synthetic scene.

    Date 2 has independent speckle and, when ``change`` > 0, temporal change over that fraction of the scene.
    """
    rng = np.random.default_rng(seed + 1_000_003)
    refl = reflectivity(height, width, seed)
    r2 = temporal_change(refl, rng, change) if change > 0 else refl
    return refl, speckle(refl, looks, rng), speckle(r2, looks, rng)


COAST_LAYOUTS = ("strip", "sides", "corner", "islands")


def land_mask(m: int, land: float, layout: str, rng: np.random.Generator) -> np.ndarray:
    """Where a coastal scene (m x m) is land, about ``land`` of it: ``strip`` the left columns, ``sides`` the left and
    right edges, ``corner`` a square in the top-left corner, ``islands`` the highest ``land`` share of smooth noise
    (several blobs of 50-150 px scattered over the sea)."""
    if layout == "strip":
        mask = np.zeros((m, m), bool)
        mask[:, :int(m * land)] = True
    elif layout == "sides":
        mask = np.zeros((m, m), bool)
        mask[:, :int(m * land / 2)] = mask[:, m - int(m * land / 2):] = True
    elif layout == "corner":
        mask = np.zeros((m, m), bool)
        side = int(m * land ** 0.5)
        mask[:side, :side] = True
    elif layout == "islands":
        noise = smooth_noise(rng, m, m, 90.0)
        mask = noise > np.quantile(noise, 1 - land)
    else:
        raise ValueError(f"coastal layout must be one of {', '.join(COAST_LAYOUTS)}, not {layout!r}")
    return mask


def coastal_pair(n: int, land: float, seed: int, shift: tuple[int, int] = (13, -9), layout: str = "strip"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Two dates (linear power, n x n float32) of a coast: a ``land`` share is land (the same reflectivity, new
    4-look speckle; where: ``land_mask``'s ``layout``), the rest sea at about -22 dB with a wind texture and speckle
    drawn anew for each date. The second date's content is moved by ``shift`` (dx, dy, px): its pixel (x, y) shows
    the first's (x + dx, y + dy). Why: sea windows correlate at random within a search radius and some agree with
    any model by chance (stops 61-62, ``tests/test_coast.py``, ``benchmarks/coastal.py``)."""
    m, (dx, dy) = n + 80, shift
    if max(abs(dx), abs(dy)) > 40:
        raise ValueError(f"coastal_pair: a shift of at most 40 px each way, not {shift}")
    rng = np.random.default_rng(seed)
    refl = reflectivity(m, m, seed)
    is_land = land_mask(m, land, layout, np.random.default_rng(seed + 7919))

    def sea() -> np.ndarray:
        wind = 10 * np.log10(np.clip(1 + 0.6 * smooth_noise(rng, m, m, 40.0), 0.1, None))
        return 10 ** ((-22 + 3 * smooth_noise(rng, m, m, 120.0) + wind) / 10)

    a, b = np.where(is_land, refl, sea()), np.where(is_land, refl, sea())
    first = speckle(a, 4, rng)[40:40 + n, 40:40 + n].astype(np.float32)
    second = speckle(b, 4, rng)[40 + dy:40 + dy + n, 40 + dx:40 + dx + n].astype(np.float32)
    return first, second


def relief_pair(n: int, seed: int, dmax: float, shift: tuple[float, float] = (13.0, -9.0)
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two dates (linear power, n x n float32, 4 looks) of a ``terrain`` scene, the second seen from another incidence
    angle: its pixel p shows the first's p + (dx + k (z(p) - mean z), dy), the range along x, k scaled so the
    height-dependent part reaches ``dmax`` px (over the scene and its 60 px margin). -> (first, second, that part
    per second-date pixel). The second date's speckle is resampled with it, as in a ground-range product. Why:
    relief displaces a scene by height between two incidence angles, which no global model follows (``--model
    local``, stop 62, ``benchmarks/relief.py``)."""
    m = 60
    refl, z = terrain(n + 2 * m, n + 2 * m, seed)
    rng = np.random.default_rng(seed + 100)
    z = z - z.mean()
    d = (dmax / max(float(np.abs(z).max()), 1e-6) * z).astype(np.float32)[m:m + n, m:m + n]
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    first = speckle(refl, 4, rng)[m:m + n, m:m + n]
    second = cv2.remap(speckle(refl, 4, rng), xx + shift[0] + d + m, yy + shift[1] + m, cv2.INTER_LINEAR)
    return first.astype(np.float32), second.astype(np.float32), d


def chip_pair(n: int, seed: int, looks: float = 4.0, change: float = 0.15, max_shift: float = 6.0
              ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Two dates (linear power, n x n float32) of one scene as image chips on the same grid: independent ``looks``
    speckle, a ``change`` share changed, the second date's content moved by a random sub-pixel (dx, dy) of up to
    ``max_shift`` px each way: its pixel (x, y) shows the first's (x - dx, y - dy). -> (first, second, (dx, dy)).
    Why: chips of ~100 px hold fewer of the refinement's 64 px correlation windows than --min-inliers asks for
    (stop 64, ``tests/test_chips.py``, ``benchmarks/chips.py``)."""
    rng = np.random.default_rng(100 + seed)
    refl = reflectivity(n + 40, n + 40, 1000 + seed)
    a = speckle(refl, looks, rng)
    b = speckle(temporal_change(refl, rng, change) if change > 0 else refl, looks, rng)
    dx, dy = (float(v) for v in rng.uniform(-max_shift, max_shift, 2))
    b = warp_image(b, np.array([[1, 0, -dx], [0, 1, -dy], [0, 0, 1.0]]), b.shape)
    return a[20:20 + n, 20:20 + n].astype(np.float32), b[20:20 + n, 20:20 + n].astype(np.float32), (dx, dy)
