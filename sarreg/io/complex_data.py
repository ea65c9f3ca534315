"""Complex (SLC) rasters in the warp: the resampling their phases allow, and valid pixels kept valid.

A complex pixel's phase is speckle: interpolating complex values (bilinear, cubic, averaging overviews) adds
vectors of random phase and cancels intensity (a CFloat32 scene's median |z|^2 fell from 0.082 to 0.032, -4 dB, in
the default bilinear warp). The warp of a complex raster therefore copies pixels (nearest) unless the user asks
for another resampling, which is honoured with a warning; its COG overviews are NEAREST too.

GDAL's nodata test on complex integers (CInt16 / CInt32) looks at the real part alone: an interpolated pixel whose
real part rounds to the nodata value reads as nodata although its imaginary part holds data. ``keep_valid`` moves
such a real part one step off the nodata value, as GDAL's warper does with a real value equal to the nodata.
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

COPYING = ("nearest", "mode")  # resamplings that copy source pixels: no phases mixed, no new values
_WARNED: set[str] = set()  # resamplings already warned about in this process (the warning is said once)


def is_complex(dtype: str) -> bool:
    """True for a complex rasterio data type (complex64, complex128, complex_int16, ...)."""
    return str(dtype).startswith("complex")


def warp_resampling(dtype: str, requested: str) -> str:
    """The warp's resampling for data of ``dtype``: "auto" is nearest for complex data (interpolating complex values
    mixes speckle phases and loses intensity) and bilinear otherwise; a resampling the user chose is kept, and
    warned about once when it interpolates complex values."""
    if requested == "auto":
        return "nearest" if is_complex(dtype) else "bilinear"
    if is_complex(dtype) and requested not in COPYING and requested not in _WARNED:
        _WARNED.add(requested)
        log.warning("--resampling %s interpolates complex (%s) values: it mixes speckle phases and lowers the "
                    "intensity (about -4 dB for bilinear on an SLC); the default for complex data is nearest",
                    requested, dtype)
    return requested


def overview_resampling(dtype: str, resampling: str) -> str:
    """The COG overviews' resampling: NEAREST for complex data (an average mixes phases) and for copying warps,
    AVERAGE otherwise."""
    return "NEAREST" if is_complex(dtype) or resampling in COPYING else "AVERAGE"


def warp_fill(dtype: str, nodata: float | None, resampling: str) -> float | None:
    """The value an interpolating warp of complex integers (``dtype``) fills its unwritten pixels with, in place of
    the output's ``nodata`` (then ``keep_valid``): the type's minimum, which no interpolation of values inside the
    type's symmetric range reaches; None when the warp can use ``nodata`` itself (nothing to keep apart)."""
    if dtype not in ("complex_int16", "complex_int32") or resampling in COPYING or nodata is None:
        return None
    low = float(np.iinfo(np.int16 if dtype == "complex_int16" else np.int32).min)
    return None if not np.isfinite(nodata) or nodata == low else low


def keep_valid(ds, nodata: float, fill: float, rows: int = 1024) -> int:
    """Keep the written pixels of a complex-integer warp apart from ``nodata`` in the open GDAL dataset ``ds`` (all
    bands, strips of ``rows``), warped with ``fill`` as its nodata (``warp_fill``): a written pixel whose real part
    is ``nodata`` gets it moved one step off (+1 / -1 over a checkerboard: no bias on the mean), unwritten pixels
    (real part ``fill``) become ``nodata`` + 0j, and the bands declare ``nodata``. Returns how many were moved.

    Why: GDAL reads a complex pixel whose real part is the nodata value as nodata (0 + 5j: a hole), and an
    interpolation rounds small values to 0 + 0j: a bilinear warp of a CInt16 SLC turned 7 % of its data into
    holes, which a nodata of its own (the fill) keeps apart from the data until the end."""
    moved = 0
    for b in range(1, ds.RasterCount + 1):
        band = ds.GetRasterBand(b)
        for y0 in range(0, ds.RasterYSize, rows):
            z = band.ReadAsArray(0, y0, ds.RasterXSize, min(rows, ds.RasterYSize - y0))
            empty = z.real == fill
            yy, xx = np.nonzero((z.real == nodata) & ~empty)
            up = nodata + 1 if nodata + 1 <= -fill - 1 else nodata - 1  # (below the type's maximum)
            z[yy, xx] = np.where((yy + y0 + xx) % 2 == 0, up, nodata - 1) + 1j * z.imag[yy, xx]
            z[empty] = nodata
            band.WriteArray(z, 0, y0)
            moved += len(yy)
        band.SetNoDataValue(nodata)
    return moved
