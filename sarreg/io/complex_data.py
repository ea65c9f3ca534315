"""Complex (SLC) rasters in the warp: the resampling their phases allow, and valid pixels kept valid.

A complex pixel's phase is speckle: interpolating complex values (bilinear, cubic, averaging overviews) adds
vectors of random phase and cancels intensity (a CFloat32 scene's median |z|^2 fell from 0.082 to 0.032, -4 dB, in
the default bilinear warp). The warp of a complex raster therefore copies pixels (nearest) unless the user asks
for another resampling, which is honoured with a warning; its COG overviews are NEAREST too.
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
