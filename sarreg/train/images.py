"""Training images from files: SAR rasters, images and arrays read as linear power views (NaN invalid), the
channels of a multi-channel radar image, an optical image for a radar-optical pair, and the folder layouts
(``list_images``, ``find_date_pairs``) that ``sarreg train`` takes. ``sarreg.train.pairs`` makes pairs of them."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import cv2
import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from sarreg.errors import InputError
from sarreg.io.units import band_scaling, unit_kind

IMAGE_EXTS = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".npy"}
DISPLAY_DB = 30.0  # dynamic range (dB) assumed for 8/16-bit display images when turned into power
# Names that mark non-SAR companions in mixed folders (optical images, flow fields); never used for training.
EXCLUDE_RE = re.compile(r"(optique|optical|_opt\b|S2_|flow|mask|_gt\b|label)", re.IGNORECASE)


def _display_to_power(v: np.ndarray, vmax: float) -> np.ndarray:
    return np.power(10.0, (v.astype(np.float32) / vmax) * DISPLAY_DB / 10.0).astype(np.float32)


def _array_to_power(a: np.ndarray, path: Path, kind: str | None = None) -> np.ndarray:
    """Any SAR-ish array -> float32 linear power with NaN for invalid pixels. ``kind``: what a band's declared unit
    names ("db", "linear", "amplitude"; ``sarreg.io.units``), else judged from the dtype and values."""
    if kind in ("db", "linear", "amplitude") and not np.iscomplexobj(a):
        v = a.astype(np.float32)
        p = np.power(10.0, v / 10.0) if kind == "db" else v ** 2 if kind == "amplitude" else v
    elif np.iscomplexobj(a):
        p = (a.real.astype(np.float32) ** 2 + a.imag.astype(np.float32) ** 2)
    elif a.dtype == np.uint8:
        return _display_to_power(a, 255.0)
    elif np.issubdtype(a.dtype, np.integer):
        p = a.astype(np.float32) ** 2  # amplitude DN
    else:
        a = a.astype(np.float32)
        finite = a[np.isfinite(a)]
        if finite.size == 0:
            raise InputError(f"{path}: no finite pixels")
        p = np.power(10.0, a / 10.0).astype(np.float32) if finite.min() < 0 else a
    p = p.astype(np.float32)
    p[~(np.isfinite(p) & (p > 0))] = np.nan
    return p


def load_power(path: str | Path) -> np.ndarray:
    """Read a single-band view of a SAR image (GeoTIFF, PNG/JPEG/BMP, npy) as H x W float32 power (NaN invalid).

    npy: complex, or H x W x 2 float (real, imag) -> intensity; real float (negative values = dB) or integers
    (amplitude). Colour images: mean of the colour channels (SAR quicklooks are gray; Pauli RGB -> total power).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    ext = path.suffix.lower()
    if ext == ".npy":
        a = np.load(path, allow_pickle=False)
        if a.ndim == 3 and a.shape[-1] == 2 and not np.iscomplexobj(a):
            a = a[..., 0].astype(np.float32) + 1j * a[..., 1].astype(np.float32)
        elif a.ndim == 3:
            a = a[..., 0] if a.shape[-1] <= 4 else a[0]
        if a.ndim != 2:
            raise InputError(f"{path}: expected a 2-D image array, got shape {a.shape}")
        return _array_to_power(a, path)
    if ext in (".png", ".jpg", ".jpeg", ".bmp"):
        a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if a is None:
            raise InputError(f"{path}: not a readable image")
        if a.ndim == 3:
            a = a[..., :3].mean(axis=2).astype(a.dtype)
        return _array_to_power(a, path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                if ds.dtypes[0] == "uint8" and ds.count >= 3:
                    a = ds.read([1, 2, 3]).astype(np.float32).mean(axis=0)
                    valid = ds.read_masks(1) > 0
                    p = _display_to_power(a, 255.0)
                    p[~valid] = np.nan
                    return p
                scaling = band_scaling(ds, 1)  # (as the registration reads it: raw * scale + offset, unit -> kind)
                a = scaling.apply(ds.read(1))
                valid = ds.read_masks(1) > 0
    except rasterio.errors.RasterioIOError as e:
        raise InputError(f"{path}: not a readable raster ({str(e).splitlines()[0][:120]})") from None
    p = _array_to_power(a, path, unit_kind(scaling.unit))
    p[~valid] = np.nan
    return p


def load_channels(path: str | Path) -> list[np.ndarray]:
    """The channels of a multi-channel radar image (e.g. a Pauli RGB: |HH-VV|, |HV|, |HH+VV|) as float32 power
    views (NaN invalid); a single-channel image gives one view. Why: two channels of one acquisition are a real
    cross-polarisation pair, exactly co-registered."""
    path = Path(path)
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".npy"):
        return [load_power(path)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                if ds.dtypes[0] != "uint8" or ds.count < 3:
                    return [load_power(path)]
                a = ds.read([1, 2, 3])
                valid = ds.read_masks(1) > 0
    except rasterio.errors.RasterioIOError as e:
        raise InputError(f"{path}: not a readable raster ({str(e).splitlines()[0][:120]})") from None
    out = []
    for c in a:
        p = _display_to_power(c, 255.0)
        p[~valid] = np.nan
        out.append(p)
    return out


def load_optical(path: str | Path) -> np.ndarray:
    """An optical image (RGB or multispectral, any dtype) as a power-like view for a cross-modal training pair:
    the mean of its first three bands stretched to its 99th percentile and stored like an 8-bit display image, so
    the network sees the optical grey levels linearly after ``image_to_unit``. NaN where invalid."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                a = ds.read(list(range(1, min(ds.count, 3) + 1))).astype(np.float32).mean(axis=0)
                valid = ds.read_masks(1) > 0
    except rasterio.errors.RasterioIOError as e:
        raise InputError(f"{path}: not a readable raster ({str(e).splitlines()[0][:120]})") from None
    valid &= np.isfinite(a)
    if not valid.any():
        raise InputError(f"{path}: no valid pixels")
    top = float(np.percentile(a[valid], 99)) or 1.0
    p = _display_to_power(np.clip(a / top, 0.0, 1.0), 1.0)
    p[~valid] = np.nan
    return p


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted), without optical/flow/mask companions."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS
                  and not EXCLUDE_RE.search(p.name) and not p.name.startswith("."))


def _index_of(p: Path) -> str | None:
    m = re.findall(r"\d+", p.stem)
    return m[-1] if m else None


def find_date_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """Co-registered two-date pairs in a BEFORE/AFTER folder layout (OMBRIA style), matched by file number."""
    folder = Path(folder)
    sub = {d.name.upper(): d for d in folder.iterdir() if d.is_dir()}
    if "BEFORE" not in sub or "AFTER" not in sub:
        raise InputError(f"{folder}: no BEFORE/ and AFTER/ sub-folders")
    after = {_index_of(p): p for p in list_images(sub["AFTER"])}
    pairs = [(p, after[_index_of(p)]) for p in list_images(sub["BEFORE"]) if _index_of(p) in after]
    if not pairs:
        raise InputError(f"{folder}: no BEFORE/AFTER files with matching numbers")
    return pairs
