"""Build evaluation pairs (the pairs-folder layout of ``sarreg.evaluate``) with known ground truth.

``make_pairs`` cuts windows of co-registered multi-date rasters (or single rasters with two independent synthetic
speckle draws) and warps the moving one with a seeded random homography; ``make_geo_pairs`` writes georeferenced
two-date pairs whose georeference is right or off by a known offset (what ``register`` corrects for users).
``gt.json`` holds the matrix mapping a MOVING pixel to the REFERENCE pixel (x = column, y = row, (0, 0) = centre
of the top-left pixel).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from sarreg.errors import InputError, OutputError
from sarreg.evaluate import IMAGE_SUFFIXES, apply_h, grid_points
from sarreg.export import write_text_atomic
from sarreg.geometry import WarpRange, random_homography

__all__ = ["WarpRange", "make_geo_pairs", "make_pairs", "random_homography"]


def _source_groups(srcs: Sequence[str | Path]) -> list[list[Path]]:
    """SRC -> list of co-registered images: a file alone (synthetic speckle), a folder (every raster in it, one
    scene, several dates), or 'a.tif,b.tif' (explicit dates)."""
    groups = []
    for s in srcs:
        s = str(s)
        if "," in s:
            files = [Path(p) for p in s.split(",") if p]
        elif Path(s).is_dir():
            files = sorted(p for p in Path(s).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not files:
                raise InputError(f"{s}: folder holds no rasters ({'/'.join(IMAGE_SUFFIXES)})")
        else:
            files = [Path(s)]
        for f in files:
            if not f.is_file():
                raise InputError(f"{f}: file not found")
        groups.append(files)
    if not groups:
        raise InputError("make-pairs needs at least one source")
    return groups


def _read_raw(path: Path, band: int | None) -> tuple[np.ndarray, np.ndarray]:
    """One band as float32 (values as stored) + validity (dataset mask & finite)."""
    from sarreg.io.raster import choose_band, open_dataset

    with open_dataset(path) as ds:
        b = choose_band(ds, band, path)
        v = ds.read(b)
        m = ds.read_masks(b) > 0
    if np.iscomplexobj(v):
        v = (v.real.astype(np.float32) ** 2 + v.imag.astype(np.float32) ** 2)
    v = v.astype(np.float32)
    return v, m & np.isfinite(v)


def warp_kind(warp: WarpRange) -> str:
    """The simplest model that every warp drawn from ``warp`` is (shift, similarity, affine or homography): the
    pair's "difficulty", as the evaluation sets label theirs."""
    if warp.perspective:
        return "homography"
    if warp.aspect or warp.shear:
        return "affine"
    return "similarity" if warp.rotation or warp.scale != (1.0, 1.0) else "shift"


def make_pairs(sources: Sequence[str | Path], out_dir: str | Path, n: int, seed: int = 0, size: int = 512,
               looks: float = 4.0, warp: WarpRange = WarpRange(), band: int | None = None,
               overwrite: bool = False, min_inside: float = 0.5) -> list[Path]:
    """Write ``n`` pairs ``<out_dir>/<id>/{ref,moving}.<tif|png>`` + ``gt.json`` (+ ``index.json``).

    Each pair picks a source (seeded), two different dates of it in random order (a single-image source gets two
    independent speckle draws of ``looks`` looks on its linear intensity; an 8-bit display image is taken as log
intensity over 30 dB, v -> 10^(3 v / 255)), a reference crop of ``size`` px (0 = the
    whole image) and a random homography; the moving image samples the second date through it (GDAL-free
    resampling with OpenCV, bilinear). 8-bit sources stay 8-bit PNG; others become float32 GeoTIFF-less TIFF
    with nodata 0 outside the source. Existing pair folders are an error unless ``overwrite``.
    """
    from sarreg.synth import speckle, warp_image, write_geotiff

    out = Path(out_dir)
    groups = _source_groups(sources)
    if n < 1:
        raise InputError("--n must be at least 1")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create output folder ({e.strerror})") from None
    inputs = {p.resolve() for g in groups for p in g}
    if out.resolve() in inputs:
        raise OutputError(f"{out}: output folder is an input")
    rng = np.random.default_rng(seed)
    difficulty = warp_kind(warp)
    cache: dict[Path, tuple[np.ndarray, np.ndarray]] = {}
    written, index = [], []
    for k in range(n):
        gi = int(rng.integers(len(groups)))
        files = groups[gi]
        if len(files) >= 2:
            a, b = rng.choice(len(files), 2, replace=False)
            fa, fb = files[int(a)], files[int(b)]
        else:
            fa = fb = files[0]
        for f in {fa, fb}:
            if f not in cache:
                cache[f] = _read_raw(f, band)
        va, ma = cache[fa]
        vb, mb = cache[fb]
        if va.shape != vb.shape:
            raise InputError(f"{fb}: size {vb.shape[::-1]} differs from {fa} {va.shape[::-1]} (dates must be "
                             "co-registered rasters of one grid)")
        is8 = _is_uint8(fa) and _is_uint8(fb) and fa != fb
        if fa == fb:  # single image: two independent speckle draws on linear intensity
            lin = _linear(va, fa)
            lin = np.where(ma & (lin > 0), lin, np.nan).astype(np.float32)
            filled = np.nan_to_num(lin, nan=1e-6)
            va, vb = speckle(filled, looks, rng), speckle(filled, looks, rng)
            ma = mb = ma & np.isfinite(lin)
        Hh, Ww = va.shape
        S = min(size, Hh, Ww) if size > 0 else 0
        cw, ch = (S, S) if S else (Ww, Hh)
        for _ in range(50):
            x0 = int(rng.integers(0, Ww - cw + 1))
            y0 = int(rng.integers(0, Hh - ch + 1))
            H, params = random_homography(cw, ch, rng, warp)
            H = H / H[2, 2]
            # moving pixel -> full-image pixel of the second date: crop offset after H
            T = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], float)
            inside = _inside_fraction(H, cw, ch)
            if inside >= min_inside and ma[y0:y0 + ch, x0:x0 + cw].mean() > 0.9:
                break
        else:
            raise InputError(f"{fa}: no window with enough valid data and overlap for a pair")
        ref = va[y0:y0 + ch, x0:x0 + cw]
        refm = ma[y0:y0 + ch, x0:x0 + cw]
        src = np.where(mb, vb, np.nan).astype(np.float32)
        mov = warp_image(src, T @ H, (ch, cw))
        pid = f"pair_{k:04d}"

        def write(tmp: Path) -> dict:
            if is8:
                names = ("ref.png", "moving.png")
                for name, arr, ok in ((names[0], ref, refm), (names[1], mov, np.isfinite(mov))):
                    img = np.where(ok, np.clip(np.rint(np.nan_to_num(arr)), 0, 255), 0).astype(np.uint8)
                    if not cv2.imwrite(str(tmp / name), img):
                        raise OutputError(f"{tmp / name}: cannot write PNG")
            else:
                names = ("ref.tif", "moving.tif")
                for name, arr, ok in ((names[0], ref, refm), (names[1], mov, np.isfinite(mov))):
                    write_geotiff(tmp / name, np.where(ok & (arr > 0), arr, 0).astype(np.float32), nodata=0.0)
            return {"id": pid, "source": f"make_pairs:{fa.parent.name}/{fa.stem}", "difficulty": difficulty,
                    "large": False, "ref": names[0], "moving": names[1], "ref_size_wh": [cw, ch],
                    "moving_size_wh": [cw, ch], "H": H.tolist(), "H_direction": H_DIRECTION,
                    "warp": dict(params, grid_inside_fraction=inside, crop_xy=[x0, y0]),
                    "source_info": {"files": [str(fa), str(fb)],
                                    "synthetic_speckle_looks": looks if fa == fb else None, "seed": seed}}

        final, gt = _write_pair(out, pid, overwrite, write)
        written.append(final)
        index.append({"id": pid, "source": gt["source"], "difficulty": difficulty, "large": False, "set": "sar"})
    write_text_atomic(out / "index.json", json.dumps(index, indent=1) + "\n")
    return written


H_DIRECTION = "moving pixel -> reference pixel, (x=col, y=row), origin at centre of top-left pixel"


def _write_pair(out: Path, pid: str, overwrite: bool, write: Callable[[Path], dict]) -> tuple[Path, dict]:
    """One pair folder ``out/pid``, built in a temporary folder (``write`` puts the images there and returns gt.json's
    content) and renamed into place: never a half-written pair. -> (folder, gt)."""
    final = out / pid
    if final.exists() and not overwrite:
        raise OutputError(f"{final}: exists (use --overwrite)")
    tmp = out / f".{pid}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        gt = write(tmp)
        (tmp / "gt.json").write_text(json.dumps(gt, indent=1) + "\n")
        if final.exists():
            shutil.rmtree(final)
        tmp.replace(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final, gt


def _linear(v: np.ndarray, path: Path) -> np.ndarray:
    """Values as read -> linear intensity: an 8-bit display image is log intensity over 30 dB (v -> 10^(3 v / 255))."""
    return np.power(10.0, v / 255.0 * 3.0).astype(np.float32) if _is_uint8(path) else v


def _is_uint8(path: Path) -> bool:
    from sarreg.io.raster import open_dataset

    with open_dataset(path) as ds:
        return ds.dtypes[0] == "uint8"


def _inside_fraction(H: np.ndarray, w: int, h: int) -> float:
    q = apply_h(H, grid_points(w, h))
    ok = (q[:, 0] >= 0) & (q[:, 0] <= w - 1) & (q[:, 1] >= 0) & (q[:, 1] <= h - 1)
    return float(ok.mean())


GEO_KINDS = ("noop", "offset", "offset", "resampled")


def make_geo_pairs(sources: Sequence[str | Path], out_dir: str | Path, n: int, seed: int = 0,
                   max_error_px: float = 12.0, crs: str = "EPSG:32633", pixel: float = 10.0,
                   overwrite: bool = False, kinds: Sequence[str] = GEO_KINDS, size: int | None = None) -> list[Path]:
    """Write ``n`` georeferenced two-date pairs ``<out_dir>/<id>/{ref,moving}.tif`` + ``gt.json`` (+ ``index.json``),
    shaped like a user's: float32 linear intensity GeoTIFFs (DEFLATE, nodata 0) on a projected grid.

    Each pair takes two dates of a co-registered multi-date source (``make_pairs``' source forms; 8-bit display
    images are read as 30 dB of log intensity) in random order; the reference is the first date on a ``pixel`` m
    grid, the moving one the other date cut at a random sub-pixel offset ("noop", "offset") or also resampled to
    1.5 x the pixel size ("resampled"), bilinear. Its georeference is the true one ("noop") or the true one moved
    by a random 2..``max_error_px`` reference-pixel map offset ("offset", "resampled"), or by such an offset and a
    turn of 2-6 deg and a scale of 3-8 % about the moving image's centre ("turned": a georeference wrong by an affine,
    not by a shift on the ground): the error ``register`` must find. ``kinds``: the kinds drawn in turn. ``size``:
    both dates cut to a random ``size`` x ``size`` window first (image chips). ``H`` in gt.json maps a moving pixel
    to the reference pixel of the same ground point."""
    from affine import Affine

    from sarreg.synth import warp_image, write_geotiff

    out = Path(out_dir)
    groups = [g for g in _source_groups(sources) if len(g) >= 2]
    if not groups or n < 1:
        raise InputError("make_geo_pairs needs multi-date sources (two or more co-registered dates) and n >= 1")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cache: dict[Path, tuple[np.ndarray, np.ndarray]] = {}

    def read(f: Path) -> tuple[np.ndarray, np.ndarray]:
        if f not in cache:
            v, m = _read_raw(f, None)
            cache[f] = _linear(v, f), m
        return cache[f]

    written, index = [], []
    for k in range(n):
        files = groups[int(rng.integers(len(groups)))]
        a, b = rng.choice(len(files), 2, replace=False)
        (va, ma), (vb, mb) = read(files[int(a)]), read(files[int(b)])
        if size:
            r0, c0 = (int(rng.integers(0, max(1, d - size + 1))) for d in va.shape)
            va, ma, vb, mb = (x[r0:r0 + size, c0:c0 + size] for x in (va, ma, vb, mb))
        kind = kinds[k % len(kinds)]
        s = 1.5 if kind == "resampled" else 1.0
        tx, ty = rng.uniform(8.0, 24.0, 2)
        h_img, w_img = va.shape
        mw, mh = int((w_img - tx - 8) / s), int((h_img - ty - 8) / s)
        H = np.array([[s, 0.0, tx], [0.0, s, ty], [0.0, 0.0, 1.0]])
        mov = warp_image(np.where(mb, vb, np.nan).astype(np.float32), H, (mh, mw))
        a_ref = Affine(pixel, 0.0, 500_000.0 + 1000.0 * k, 0.0, -pixel, 5_000_000.0)
        # pixel centres: moving (c, r) -> reference H @ (c, r); GDAL's transform maps corners (centre + 0.5)
        a_true = a_ref * Affine(s, 0.0, tx + 0.5 - 0.5 * s, 0.0, s, ty + 0.5 - 0.5 * s)
        err = np.zeros(2)
        if kind != "noop":
            ang = rng.uniform(0, 2 * np.pi)
            err = rng.uniform(2.0, max_error_px) * np.array([np.cos(ang), np.sin(ang)])
        a_written = Affine.translation(err[0] * pixel, -err[1] * pixel) * a_true
        if kind == "turned":  # (drawn after the offset: the other kinds' draws are those of before)
            deg = rng.uniform(2.0, 6.0) * rng.choice([-1.0, 1.0])
            scale = 1.0 + rng.uniform(0.03, 0.08) * rng.choice([-1.0, 1.0])
            c = Affine.translation(mw / 2, mh / 2)
            a_written = a_written * c * Affine.rotation(deg) * Affine.scale(scale) * ~c
        pid = f"geo_{k:04d}_{kind}"

        def write(tmp: Path) -> dict:
            for name, arr, ok, t in (("ref.tif", va, ma, a_ref), ("moving.tif", mov, np.isfinite(mov), a_written)):
                write_geotiff(tmp / name, np.where(ok & (arr > 0), arr, 0).astype(np.float32), t, crs, nodata=0.0,
                              compress="deflate")
            return {"id": pid, "source": f"make_geo_pairs:{files[0].parent.name}/{files[0].stem}",
                    "difficulty": f"geo_{kind}", "large": False, "ref": "ref.tif", "moving": "moving.tif",
                    "ref_size_wh": [w_img, h_img], "moving_size_wh": [mw, mh], "H": H.tolist(),
                    "H_direction": H_DIRECTION, "crs": crs, "ref_geotransform_gdal": list(a_ref.to_gdal()),
                    "moving_written_geotransform_gdal": list(a_written.to_gdal()),
                    "moving_true_geotransform_gdal": list(a_true.to_gdal()),
                    "georeference_error_px": [round(float(e), 4) for e in err],
                    "source_info": {"files": [str(files[int(a)]), str(files[int(b)])], "seed": seed}}

        final, gt = _write_pair(out, pid, overwrite, write)
        written.append(final)
        index.append({"id": pid, "source": gt["source"], "difficulty": gt["difficulty"], "large": False,
                      "set": "geo"})
    write_text_atomic(out / "index.json", json.dumps(index, indent=1) + "\n")
    return written
