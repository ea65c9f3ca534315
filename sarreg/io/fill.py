"""Fill values that a raster does not declare as nodata.

Files written by scripts and some exports mark the area outside the data (a turned footprint's wedges, a clipped
AOI) with a constant such as -9999, -32768 or 65535 and no nodata tag. Read as data, that constant dominates the
scene's statistics (dB data squeezed into a sliver of the grey range, linear data taken for dB) and the footprint's
edge becomes the strongest structure in the image: ``register`` then failed or, worse, matched the two footprints'
edges (an ``ok`` result hundreds of pixels off). A value counts as fill when it is the sample's minimum (or an
integer type's maximum, which it then is), at least ``MIN_SHARE`` of the pixels hold exactly it, and it lies far
outside the range of the other values (``FAR`` times their 5-95 % spread beyond it): no measurement looks like that,
while a saturated or clipped sensor value sits at the edge of the data, not far beyond it; and most of its pixels lie
in areas that reach the image's edge (a footprint's outside does; a lake clipped to a sensor's floor does not), or it
is a value no measurement takes (-1000 or below or 1e30 and above in float data, -32768 in int16: water or shadow
masked inside the scene, whose edges would otherwise be the image's strongest structure and squeeze its grey range to
nothing). And 0.0 in float dB data when a pile of pixels holds it exactly and no other value repeats (exports that
fill masked pixels with 0): continuous measurements do not pile up on one value. A file whose nodata tag marks almost
no pixel (0 or NaN written by a default profile on a file filled with -9999) is searched the same way, and so is one
whose tag marks holes while a second constant fills another part (a clipped strip of 0 beside a -9999 footprint's
outside): that value is nodata too (``marks_holes``, ``mapped_to_tag``); the user's own value (``--nodata``) goes
through ``given_fill``.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import numpy as np

from sarreg.io.band import alpha_band, has_mask_band

log = logging.getLogger(__name__)

MIN_SHARE = 0.005  # of the finite sample pixels hold exactly the candidate value
FAR = 3.0  # the candidate lies more than FAR x the 5-95 % spread of the other values beyond their 5 / 95 % point
BOUND = 1.0  # below a low fill: values under the 5 % point by more than BOUND x that spread are no data either
REPEAT = 0.0005  # continuous data: no value but the fill is held by more than this share of the pixels
BORDER = 0.5  # at least this share of the fill's pixels lie in areas that reach the image's edge
SENTINEL = -1000.0  # a float this low is no SAR value (dB reaches about -60, power and amplitude are positive)
HUGE = 1e30  # nor one this high (netCDF's default float fill 9.97e36, FLT_MAX 3.4e38)


@dataclass(frozen=True)
class Fill:
    """A fill value tested on the values (undeclared, or given over the file's tag). ``side`` "low": below the data,
    and values under ``bound`` are no data either, because GDAL's average decimation mixes the fill into the cells
    along the data's edge (-9999 and -20 dB give -5000); "high": above the data (an integer type's maximum, or a given
    value), values from ``bound`` on too; "exact": only the value itself (0.0 inside the range of dB data: exports that
    fill masked pixels with 0; a given value inside the data's range). ``share``: of the sample."""

    value: float
    bound: float
    share: float
    side: str = "low"

    def beyond(self, vals: np.ndarray) -> np.ndarray:
        """True where ``vals`` is the fill or lies beyond the bound, on the fill's side."""
        with np.errstate(invalid="ignore"):
            if self.side == "exact":
                return vals == self.value
            return (vals >= self.bound) if self.side == "high" else (vals < self.bound)


def find_fill(sample: np.ndarray, tag: float | None = None) -> Fill | None:
    """The undeclared fill value of a (decimated, 2-D) sample of a band's raw values, or None: the sample's minimum, or
    an integer type's maximum (65535, 32767) or a float maximum of 1e30 and above, when enough pixels hold it and it
    lies far from the other values; or 0.0 in float dB data (mostly negative) held by enough pixels while no other
    value repeats (continuous values: a pile of exact zeros is a fill, not 0 dB measurements). Complex and 8-bit data
    are not searched (8-bit display images already treat 0 as fill); 0 in linear or amplitude data is invalid anyway
    (no power).

    ``tag``: the band's nodata tag; its pixels are left out and the other values searched. A tag that marks (almost)
    no pixel, less than ``MIN_SHARE``, may be wrong (0 or NaN written by a default profile on a file filled with
    -9999): a fill found replaces it. A tag that marks holes is right, and a fill found is a second nodata value
    (``marks_holes``; the warp maps it to the tag, ``sarreg.warp``)."""
    img = np.asarray(sample)
    if np.iscomplexobj(img) or img.dtype == np.uint8 or img.ndim != 2:
        return None
    top = np.iinfo(img.dtype).max if np.issubdtype(img.dtype, np.integer) else None
    v = _values(img)
    if tag is not None and not np.isnan(tag):
        v = v[v != tag]
    if v.size < 100:
        return None
    for c, low in ((v.min(), True), (v.max(), False)):
        sentinel = _sentinel(c, img.dtype, low)  # (-9999, -32768; high: netCDF's 9.97e36, FLT_MAX)
        if not low and c != top and not sentinel:
            continue
        same = v == c
        share = float(same.mean())
        rest = v[~same].astype(np.float64)
        if share < MIN_SHARE or rest.size < 100:
            continue
        p5, p95, spread = _spread(rest)
        far = c < p5 - FAR * spread if low else c > p95 + FAR * spread
        if far and (sentinel or _reaches_edge(img == c)):
            if low:
                return Fill(float(c), float(p5 - BOUND * spread), share)
            return Fill(float(c), HUGE / 1e3 if sentinel else float(c), share, side="high")  # (cells mixing it in)
    if top is None:
        zero = v == 0
        nz = v[~zero]
        if zero.mean() >= MIN_SHARE and nz.size >= 100 and (nz < 0).mean() > 0.5 and _reaches_edge(img == 0):
            if np.unique(nz, return_counts=True)[1].max() <= REPEAT * nz.size:
                return Fill(0.0, 0.0, float(zero.mean()), side="exact")
    return None


def marks_holes(sample: np.ndarray, tag: float | None) -> bool:
    """Whether a nodata ``tag`` marks at least ``MIN_SHARE`` of a (decimated) sample's pixels: it says where the
    holes are, and a fill value found beside it is a second nodata value, not its replacement."""
    if tag is None or not np.asarray(sample).size:
        return False
    img = np.asarray(sample)
    return bool((np.isnan(img) if np.isnan(tag) else img == tag).mean() >= MIN_SHARE)


def given_fill(sample: np.ndarray, value: float) -> Fill:
    """A nodata value the user gives (``--nodata``) as a Fill on a (decimated) sample of the band: when it lies
    beyond the other values, the cells of an average-decimated read that mix it with data are holes too, as for a
    found fill (GDAL skips only the value the file declares, so it mixes the given one in: -9999 and -20 dB give
    -5000); otherwise (inside the data's range, NaN, complex data) the value itself."""
    img = np.asarray(sample)
    share = float(np.mean(img == value)) if img.size else 0.0
    if np.iscomplexobj(img) or not np.isfinite(value):
        return Fill(float(value), float(value), share, side="exact")
    v = _values(img)
    rest = v[v != value].astype(np.float64)
    if rest.size < 100:
        return Fill(float(value), float(value), share, side="exact")
    p5, p95, spread = _spread(rest)
    if value < p5 - BOUND * spread:
        return Fill(float(value), float(p5 - BOUND * spread), share)
    if value > p95 + BOUND * spread:
        return Fill(float(value), float(p95 + BOUND * spread), share, side="high")
    return Fill(float(value), float(value), share, side="exact")


def _values(img: np.ndarray) -> np.ndarray:
    """The sample's values as a flat array, the non-finite ones of a float type left out."""
    return img[np.isfinite(img)] if np.issubdtype(img.dtype, np.floating) else img.ravel()


def _spread(rest: np.ndarray) -> tuple[float, float, float]:
    """5 and 95 % points of the values other than a candidate fill, and their spread (never 0)."""
    p5, p95 = (float(q) for q in np.percentile(rest, [5, 95]))
    return p5, p95, max(p95 - p5, 1e-6 * max(abs(p5), abs(p95), 1.0))


def _sentinel(value: float, dtype: np.dtype, low: bool = True) -> bool:
    """Whether a fill candidate is a value no measurement takes, wherever its pixels lie (masked water or shadow
    inside the scene): in float data -1000 or below, or 1e30 and above; a signed integer type's minimum (-32768 in
    int16). Not an integer type's maximum: a saturated bright area inside the scene holds it."""
    if np.issubdtype(dtype, np.integer):
        return low and np.iinfo(dtype).min < 0 and value == np.iinfo(dtype).min
    return value <= SENTINEL if low else value >= HUGE


def _reaches_edge(fill: np.ndarray) -> bool:
    """Whether at least ``BORDER`` of the True pixels lie in 8-connected areas that reach the image's edge: the
    outside of a footprint does, a dark lake clipped to a sensor's floor or scattered clipped pixels mostly not."""
    import cv2

    _, labels = cv2.connectedComponents(fill.view(np.uint8), connectivity=8)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return bool(np.isin(labels[fill], edge[edge > 0]).mean() >= BORDER)


def may_hide_fill(ds, band: int) -> bool:
    """Whether ``band`` of an open rasterio dataset may hide a fill value among its data: its validity is a nodata
    tag or nothing (GDAL then flags it all valid), not a mask or alpha band (which says where the data is)."""
    from rasterio.enums import MaskFlags

    flags = ds.mask_flag_enums[band - 1]
    return (MaskFlags.all_valid in flags or MaskFlags.nodata in flags) and alpha_band(ds) is None


def sample_fill(ds, band: int, max_side: int = 1024) -> Fill | None:
    """``find_fill`` on a decimated read of ``band`` of an open rasterio dataset, when the band declares no validity
    (no nodata tag, no mask band); None otherwise. Used where no Scene is at hand (the warp). Tagged files are not
    searched here: the read costs about a second at 10240² (0.91 s), 9 % of a warp, for every tagged file; callers
    with a Scene (``register``) pass its finding instead, tag or not."""
    from rasterio.enums import MaskFlags, Resampling

    dtype = ds.dtypes[band - 1]
    if MaskFlags.all_valid not in ds.mask_flag_enums[band - 1] or alpha_band(ds) is not None or \
            dtype.startswith("complex") or dtype == "uint8":
        return None  # (nothing to search: no read)
    scale = min(1.0, max_side / max(ds.width, ds.height))
    shape = (max(1, round(ds.height * scale)), max(1, round(ds.width * scale)))
    return find_fill(ds.read(band, out_shape=shape, resampling=Resampling.nearest))


def warp_nodata(ds, option: float | str | tuple[float, float]) -> float | str | None:
    """The warp's ``srcNodata`` (``gdal.Warp``) for band 1 of an open rasterio dataset and a nodata ``option``
    (``sarreg.warp.warp_to_grid``): a number, "None" (GDAL's word for ignoring the tags; also for a given value the
    data type cannot hold) or None (no nodata).
    "auto": the tag, else a fill value found in a file that declares nothing (``sample_fill``); (tag, fill): the tag
    (the fill is mapped to it in the warp's source, ``mapped_to_tag``). An unsigned integer band with no nodata at
    all: 0, which is no measurement there (amplitude or intensity DN, an 8-bit display image; register reads it as no
    data): a Sentinel-1-style raster's zero border otherwise warps as data, and GDAL moves it to 1 beside the
    output's nodata 0."""
    if isinstance(option, (tuple, list)):  # (a list after a JSON round trip)
        option = option[0]
    if option == "none":
        return "None"
    if option not in ("auto", "file"):  # (a value no pixel can hold: no nodata, not one GDAL rounds to 0)
        return float(option) if holds(ds.dtypes[0], float(option)) else "None"
    found = sample_fill(ds, 1) if option == "auto" else None  # a fill the file does not declare: not resampled in
    if found is not None:
        return found.value
    # a mask or alpha band: GDAL's warp follows it, unless given a source nodata (then a uint8 mask is ignored)
    if ds.nodata is None and ds.dtypes[0].startswith("uint") and not has_mask_band(ds, 1):
        return 0.0
    return ds.nodata


def band_nodata(ds, option: float | str | tuple[float, float], src_nodata: float | str | None) -> str | None:
    """The warp's ``srcNodata`` band by band ("0.0 -9999.0") when the bands of an open rasterio dataset declare
    tags of their own and the file's tags hold (``option`` "auto", "file" or (tag, fill), as ``warp_nodata``, whose
    value for band 1 is ``src_nodata``; a band without a tag takes that value); else None (one value for all bands).
    Why: a VRT stacking VV (nodata 0) and VH in dB (nodata -9999) was warped with band 1's 0 for both: VH's -9999
    was declared valid and resampled as data (-9999 .. -100 at its edge)."""
    if not isinstance(option, (tuple, list)) and option not in ("auto", "file"):
        return None  # (a value given for MOVING: all its bands)
    if isinstance(src_nodata, str) or src_nodata is None:
        return None
    tags = [src_nodata if t is None else t for t in ds.nodatavals]
    same = (lambda a, b: a == b or (math.isnan(a) and math.isnan(b)))
    return None if all(same(t, tags[0]) for t in tags) else " ".join(repr(float(t)) for t in tags)


def out_nodata(dtype: str, nodata: float | None) -> float:
    """The nodata value a warped output of ``dtype`` (a rasterio name) declares: the source's, else NaN where the
    type holds it, a signed integer type's minimum (dB x 100 in int16 holds 0 as 0 dB; CInt16 / CInt32: GDAL tests
    the real part alone, which is 0 in about 1 % of an SLC's pixels), and 0 for unsigned types, which no measurement
    takes."""
    if nodata is not None:
        return nodata
    if dtype.startswith("float") or dtype in ("complex64", "complex128"):
        return float("nan")
    if dtype in ("complex_int16", "complex_int32"):
        return float(np.iinfo(np.int16 if dtype == "complex_int16" else np.int32).min)
    return float(np.iinfo(np.dtype(dtype)).min) if dtype.startswith("int") else 0.0


def copy_nodata(path: str | os.PathLike[str], option: float | str | tuple[float, float] | None) -> float | str | None:
    """The nodata tag of an ``--update-georef`` copy of ``path`` (``sarreg.warp.update_georef``): None keeps the file's
    tag ("auto", "file" or a (tag, fill) pair), a number replaces it, "none" removes it. A copy keeps its pixels
    unchanged and a GeoTIFF band has one tag: a second fill value stays data in it, which the user is told (the
    warped output reads both as nodata)."""
    if isinstance(option, (tuple, list)):
        log.warning("%s: --update-georef copies the pixels unchanged: the fill value %g stays data beside the nodata "
                    "tag %g (the warped output, without --update-georef, reads both as nodata)", path, option[1],
                    option[0])
        return None
    return None if option in ("auto", "file") else option


def holds(dtype: str, value: float) -> bool:
    """Whether rasters of ``dtype`` (a rasterio name) can hold ``value``: any number in float and complex types;
    in integer types only an integer within the type's range (NaN or -9999 in uint16: no pixel can be it)."""
    name = {"complex_int16": "int16"}.get(dtype, dtype)
    if not np.issubdtype(np.dtype(name), np.integer):
        return True
    info = np.iinfo(np.dtype(name))
    return bool(np.isfinite(value) and float(value).is_integer() and info.min <= value <= info.max)


def mapped_to_tag(gdal, vrt, value: float):
    """``vrt`` (an in-memory VRT of a raster whose bands declare a nodata tag) reopened with the pixels holding
    ``value`` read as the tag: a second fill value beside a tag that marks holes (``find_fill``), which GDAL's warp
    (one nodata value per band) would otherwise resample as data. A VRT ``ComplexSource`` with ``NODATA`` skips those
    pixels and the band keeps its nodata value there."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(vrt.GetMetadata("xml:VRT")[0])
    for band in root.iter("VRTRasterBand"):
        for src in band.findall("SimpleSource") + band.findall("ComplexSource"):
            src.tag = "ComplexSource"
            for old in src.findall("NODATA"):
                src.remove(old)
            ET.SubElement(src, "NODATA").text = repr(float(value))
    return gdal.Open(ET.tostring(root, encoding="unicode"))
