"""One band of a raster read as values and validity, whole, windowed or decimated (GDAL's resampling).

Validity is a test on the values read (the nodata value) unless the file has a real mask; decimated float reads
whose cells a NaN spoiled are averaged again from the valid pixels. ``Overview``: the whole band read once,
decimated, serving coarser reads from memory. ``sarreg.io.raster`` builds the network's input on these reads.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.windows import Window


def alpha_band(ds: rasterio.io.DatasetReader) -> int | None:
    """The raster's alpha band (1-based), as GDAL's warp takes it: the last of several bands, colour interpretation
    Alpha, any data type; else None. Why: GDAL's mask follows only a Byte / UInt16 alpha of a 2- or 4-band raster, so
    the float32 alpha of ``gdalwarp -dstalpha`` on float data left every pixel valid (and readable as a data band)."""
    return ds.count if ds.count > 1 and ds.colorinterp[-1] == ColorInterp.alpha else None


def _own_alpha(ds: rasterio.io.DatasetReader, band: int) -> int | None:
    """The alpha band that gives ``band``'s validity where GDAL's mask does not follow it (``alpha_band``)."""
    a = alpha_band(ds)
    return a if a is not None and a != band and MaskFlags.alpha not in ds.mask_flag_enums[band - 1] else None


def _read_mask(ds, band: int, window: Window | None, out_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Validity from the real mask (``has_mask_band``): GDAL's mask band, or the alpha band's values above 0."""
    a = _own_alpha(ds, band)
    if a is None:
        return ds.read_masks(band, window=window, out_shape=out_shape, resampling=Resampling.nearest) > 0
    return ds.read(a, window=window, out_shape=out_shape, resampling=Resampling.nearest) > 0


def has_mask_band(ds: rasterio.io.DatasetReader, band: int) -> bool:
    """True when validity of ``band`` comes from a real mask (internal/external mask band, alpha band: ``alpha_band``).

    Nodata-derived masks (``MaskFlags.nodata``) and all-valid bands return False: their validity is a test on
    the values themselves, done on the data we read anyway. Reading GDAL's nodata mask separately re-reads and
    re-decompresses every block (a decimated ``read_masks`` of a 10k² DEFLATE file took 17-23 s when the block
    cache is small, against ~1-3 s for the data read).
    """
    flags = ds.mask_flag_enums[band - 1]
    if MaskFlags.per_dataset in flags or MaskFlags.alpha in flags or _own_alpha(ds, band) is not None:
        return True
    return not flags  # no flag at all: a per-band mask band


def value_validity(vals: np.ndarray, nodata: float | None) -> np.ndarray:
    """Validity from values: False where a pixel equals the nodata value (complex data: the real part equals it and
    the imaginary part is 0; GDAL's own nodata mask compares the real part alone, which makes every 0 + b j pixel of
    a cint16 SLC with nodata 0 a hole).

    NaN/inf and non-positive linear/amplitude values are rejected later by ``to_log``. GDAL's average
    resampling skips nodata pixels and writes nodata only where a whole output cell is nodata, so this test
    also holds for decimated reads.
    """
    if nodata is None or np.isnan(nodata):
        return np.ones(vals.shape, dtype=bool)
    if np.iscomplexobj(vals):
        return ~((vals.real == vals.real.dtype.type(nodata)) & (vals.imag == 0))
    v = vals
    if np.issubdtype(v.dtype, np.integer):
        info = np.iinfo(v.dtype)
        if not (info.min <= nodata <= info.max and float(nodata).is_integer()):
            return np.ones(vals.shape, dtype=bool)  # nodata not representable: no pixel can equal it
        return v != v.dtype.type(nodata)
    return v != v.dtype.type(nodata)


def read_band(ds, band: int, window: Window | None, out_shape: tuple[int, int] | None,
               complex_data: bool, nodata: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Raw values and validity (nodata / mask band) for one window, decimated to out_shape when given.

    Validity comes from the values of the same read (equal to ``nodata``: the file's tag, or the value given over
    it) unless the file has a real mask band (``has_mask_band``).
    Decimated reads go through GDAL's ``RasterIO`` resampling, which uses overviews when the file has them.
    """
    if out_shape is not None and window is not None and out_shape == (int(window.height), int(window.width)):
        out_shape = None
    if out_shape is not None and window is None and out_shape == (ds.height, ds.width):
        out_shape = None
    real_mask = has_mask_band(ds, band)
    mixed = None
    if out_shape is None:
        vals = ds.read(band, window=window, boundless=False)
        mask = _read_mask(ds, band, window) if real_mask else None
    else:
        # Averaging linear power is multilooking; complex data is read at nearest (averaging would mix phase).
        rs = Resampling.nearest if complex_data else Resampling.average
        vals = ds.read(band, window=window, out_shape=out_shape, resampling=rs)
        a = None if complex_data else _own_alpha(ds, band)
        mask = _read_mask(ds, band, window, out_shape) if real_mask and a is None else None
        if a is not None:
            # GDAL's average does not skip what such an alpha masks: cells across its edge are averaged again
            near = ds.read(a, window=window, out_shape=out_shape, resampling=Resampling.nearest)
            mask = near > 0  # (as _read_mask reads it: one read of the alpha serves both)
            mixed = ds.read(a, window=window, out_shape=out_shape, resampling=Resampling.average) != near
    if mask is None:
        mask = value_validity(vals, nodata)
    if out_shape is not None and (np.issubdtype(vals.dtype, np.floating) or mixed is not None):
        refill_poisoned(ds, band, window, out_shape, vals, mask, real_mask, nodata, mixed)
    return vals, mask


def refill_poisoned(ds, band: int, window: Window | None, out_shape: tuple[int, int], vals: np.ndarray,
                     mask: np.ndarray, real_mask: bool, nodata: float | None, mixed: np.ndarray | None = None
                     ) -> None:
    """Cells of an average-decimated float read that came out NaN / inf though they are not masked, averaged again
    from the full-resolution pixels that are finite and valid, in place. Why: GDAL's average counts a NaN pixel
    unless NaN is the nodata value, so one NaN spoils its whole cell (overviews likewise); 1 % of NaN pixels scattered
    over a 2048² scene left half the coarse image invalid and ``register`` failed. Only the output rows holding such
    cells are read again, one strip of source rows at a time (bounded memory); a cell without any valid pixel stays
    NaN and turns invalid. ``mixed``: more cells to average again (across the edge of an alpha GDAL does not follow;
    integers rounded)."""
    bad = mask & ~np.isfinite(vals) if np.issubdtype(vals.dtype, np.floating) else np.zeros(vals.shape, bool)
    if mixed is not None:
        bad |= mixed
    if not bad.any():
        return
    win = window if window is not None else Window(0, 0, ds.width, ds.height)
    h, w = int(win.height), int(win.width)
    H, W = out_shape
    if H > h or W > w:
        return
    ys = np.floor(np.arange(H + 1) * h / H).astype(int)
    xs = np.floor(np.arange(W + 1) * w / W).astype(int)
    for i in np.flatnonzero(bad.any(1)):
        strip = Window(win.col_off, win.row_off + ys[i], w, ys[i + 1] - ys[i])
        sub = ds.read(band, window=strip).astype(np.float64)
        ok = np.isfinite(sub) & value_validity(sub, nodata)
        if real_mask:
            ok &= _read_mask(ds, band, strip)
        total = np.add.reduceat(np.where(ok, sub, 0.0).sum(0), xs[:-1])
        count = np.add.reduceat(ok.sum(0), xs[:-1])
        cells = np.flatnonzero(bad[i])
        mean = np.where(count[cells] > 0, total[cells] / np.maximum(count[cells], 1), np.nan)
        vals[i, cells] = mean if np.issubdtype(vals.dtype, np.floating) else np.rint(np.nan_to_num(mean))
        mask[i, cells] = count[cells] > 0


@dataclass(frozen=True)
class Overview:
    """A whole band read once, decimated (``sarreg.io.raster.open_scene``'s statistics read): its values, validity
    and the nodata value tested; reads no finer than it are served from memory (``Overview.serve``)."""

    vals: np.ndarray
    mask: np.ndarray
    nodata: float | None
    full: tuple[int, int]  # (rows, cols) of the band

    def serve(self, window: Window | None, out_shape: tuple[int, int] | None, complex_data: bool
              ) -> tuple[np.ndarray, np.ndarray] | None:
        """``read_band``'s (values, validity) for ``window`` at ``out_shape`` from the overview, or None when it
        needs finer pixels. Why: a decimated read of a file without overviews decodes all of it (about a second per
        10k² DEFLATE file, more for one-strip files); the relate stage's coarse images, the footprint and quicklooks
        are coarser than the statistics read. The overview's own pixels are served as they are (of a small scene read
        whole: any window at full resolution); other grids only from a decimated overview (a large scene), as
        area-weighted means of the valid, finite overview cells (GDAL's average, one level removed; integers
        rounded), complex data the nearest cell; a cell without any valid pixel holds the nodata value (0 without
        one) and is invalid."""
        H, W = self.full
        oh, ow = self.vals.shape
        c0, r0, w, h = (0, 0, W, H) if window is None else (window.col_off, window.row_off, window.width, window.height)
        n_r, n_c = (int(round(h)), int(round(w))) if out_shape is None else out_shape
        if n_r * H > h * oh * (1 + 1e-9) or n_c * W > w * ow * (1 + 1e-9):
            return None  # finer than the overview
        y0, x0 = r0 * oh / H, c0 * ow / W
        if (n_r, n_c) == (h * oh / H, w * ow / W) and float(y0).is_integer() and float(x0).is_integer():
            win = np.s_[int(y0):int(y0) + n_r, int(x0):int(x0) + n_c]  # the overview's own pixels
            return self.vals[win].copy(), self.mask[win].copy()
        if (oh, ow) == self.full:
            return None  # a decimated read of a small scene: from the file, in GDAL's own arithmetic, bit for bit
        if complex_data:
            iy = np.minimum(((r0 + (np.arange(n_r) + 0.5) * h / n_r) * oh / H).astype(int), oh - 1)
            ix = np.minimum(((c0 + (np.arange(n_c) + 0.5) * w / n_c) * ow / W).astype(int), ow - 1)
            return self.vals[np.ix_(iy, ix)], self.mask[np.ix_(iy, ix)]
        wy, wx = _cover(r0, h, n_r, oh / H, oh), _cover(c0, w, n_c, ow / W, ow)
        ok = self.mask & np.isfinite(self.vals)
        den = wy @ ok.astype(np.float32) @ wx.T
        num = wy @ np.where(ok, self.vals, 0).astype(np.float32) @ wx.T
        mask = den > 0 if (ok == self.mask).all() else (wy @ self.mask.astype(np.float32) @ wx.T) > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(den > 0, num / den, np.nan)
        out[~mask] = 0 if self.nodata is None or np.isnan(self.nodata) else self.nodata
        if np.issubdtype(self.vals.dtype, np.integer):
            out = np.rint(out)
        return out.astype(self.vals.dtype), mask


def _cover(off: float, length: float, n_out: int, g: float, n_ov: int) -> np.ndarray:
    """n_out x n_ov: how much of each overview cell (pixel size 1 / ``g`` full pixels) each output cell of the
    window [off, off + length) covers, in overview cells (rows of area weights)."""
    edges = (off + np.arange(n_out + 1) * length / n_out) * g
    k = np.arange(n_ov)
    cover = np.minimum(edges[1:, None], k[None, :] + 1) - np.maximum(edges[:-1, None], k[None, :])
    return np.where(cover > 1e-6, cover, 0.0).astype(np.float32)
