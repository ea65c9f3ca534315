"""Open SAR rasters and read windows of them as network input.

Every read goes through rasterio windows (optionally decimated with ``out_shape``), so a scene is never
held whole in memory. Values are turned into a log-intensity image and mapped to [0, 1] with percentiles
computed once per scene (``Scene.lo``/``Scene.hi``) so that all tiles of a scene agree.

Kinds of input (``PreprocessConfig.kind``; "auto" decides from dtype and a decimated sample):

* complex (CInt16, CFloat32, ...): intensity |z|^2 -> 10 log10
* float, at most 5 % of the valid (finite, non-zero) values negative: linear power -> 10 log10
* float with more negative values: already dB, used as is
* uint16 / int16 / 32-bit ints: amplitude DN -> 20 log10
* uint8: a display image (PNG/JPEG quicklook), used as is; 0 is the fill value outside the data
* a band that declares a scale / offset (GDAL metadata) is read as ``raw * scale + offset`` and judged as float data;
  a declared unit of dB (or linear power, amplitude) names the kind (``sarreg.io.units``)

Invalid pixels: nodata / dataset mask, NaN and inf, non-positive values of linear or amplitude data, and 0 in
8-bit display images.
Pixel convention: x = column, y = row, (0, 0) = centre of the top-left pixel.
"""
from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from sarreg.config import PreprocessConfig
from sarreg.errors import BandError, InputError
from sarreg.io.band import Overview, alpha_band, read_band
from sarreg.io.exclude import Exclusion, load_exclusion
from sarreg.io.fill import Fill, find_fill, given_fill, marks_holes, may_hide_fill
from sarreg.io.gcps import Gcps, map_to_pixel, pixel_to_map, read_gcps
from sarreg.io.subdataset import container_error
from sarreg.io.source import Source, is_network, open_options, resolve_input, unreachable
from sarreg.io.units import Scaling, band_scaling, unit_kind

log = logging.getLogger(__name__)
A, B = TypeVar("A"), TypeVar("B")

SUPPORTED_DTYPES = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64",
                    "complex64", "complex128", "complex_int16", "complex"}
STATS_MAX_SIDE = 1024
KINDS = ("auto", "linear", "amplitude", "db", "display")
DB_NEGATIVE_FRACTION = 0.05  # kind "auto" on float data: dB when more of the valid pixels than this are negative


@dataclass(frozen=True)
class Scene:
    """What we need to know about one input raster, read once (no pixel data kept but a decimated overview)."""

    path: Source  # a local Path or a GDAL name (URL, /vsi...; ``sarreg.io.source``)
    width: int
    height: int
    count: int
    dtype: str
    band: int
    kind: str
    nodata: float | None
    crs: object | None
    transform: Affine
    georeferenced: bool
    lo: float
    hi: float
    fill: float
    gcps: Gcps | None = None  # GCP-only rasters (no geotransform): their GCPs; ``crs`` is then the GCPs' CRS
    exclude: Exclusion | None = None  # areas not to match in (``PreprocessConfig.exclude``), applied by ``read_unit``
    holes: Fill | None = None  # a nodata value tested on the values as read (``sarreg.io.fill``): found or given
    nodata_from: str = "file"  # "file": its tag or none (``holes``: a 2nd fill found beside a tag marking holes);
    # "found": a fill the file does not declare (``holes``); "option": ``PreprocessConfig.nodata`` (a number: ``holes``)
    overview: Overview | None = field(default=None, repr=False, compare=False)  # the statistics read (whole band,
    # longer side STATS_MAX_SIDE): ``read_unit`` serves coarser reads from it instead of decoding the file again
    scaling: Scaling = Scaling()  # the band's declared scale / offset / unit: values read are raw * scale + offset
    zero: Fill | None = None  # 0 of an unsigned (or linear float) band without tag or mask band: no measurement, no
    # data by its kind and by the warp (``nodata`` 0, "found"); not tested on reads: isolated zeros stay dark pixels
    description: str = ""  # the band's description (e.g. "VV"), recorded in the report
    alpha: int | None = None  # the alpha band (``sarreg.io.band.alpha_band``): the validity of the others, not data
    stored_transform: bool = False  # the file stores a geotransform, maybe the identity (rasterio writes it for a
    # plain array): GDAL and QGIS place the raster by it (y = row), not as one without (y = -row; ``layer_xy``)
    step: int = 1  # read decimated by ``step`` (``sarreg.oversample``): sizes, transform and windows are of its cells

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def undeclared(self) -> Fill | None:
        """A fill value found that the file does not declare (``sarreg.io.fill``): in place of its tag, or beside
        a tag that marks holes; or None."""
        return (self.holes or self.zero) if self.nodata_from != "option" else None

    @property
    def warp_nodata(self) -> float | str | tuple[float, float]:
        """The warp's source nodata for this raster (``sarreg.warp.warp_to_grid``): "file" when the file's own tag
        holds, (tag, fill) when a second fill value lies beside it, else the value read as nodata, or "none"."""
        if self.nodata_from == "file":
            return "file" if self.holes is None or self.nodata is None else (self.nodata, self.holes.value)
        return "none" if self.nodata is None else self.nodata

    @property
    def geolocated(self) -> bool:
        """Located on the ground: by a geotransform and CRS, or by GCPs."""
        return self.georeferenced or self.gcps is not None

    @property
    def local(self) -> bool:
        """A geotransform without a CRS: map coordinates in a frame nothing names (related only to another such)."""
        return not self.geolocated and self.transform != Affine.identity()

    @property
    def placed(self) -> bool:
        """Not located on the ground but placed by a geotransform it stores (``local``, or even the identity):
        GDAL and QGIS draw it there (y = row), so outputs and sidecars follow it."""
        return not self.geolocated and (self.local or self.stored_transform)

    def xy_to_map(self, xy: np.ndarray) -> np.ndarray:
        """N x 2 pixel (x=col, y=row, centre convention) -> N x 2 map coordinates via the affine (GCP-only
        rasters: via their GCP transformer, ``sarreg.io.gcps``)."""
        if self.gcps is not None and not self.georeferenced:
            return pixel_to_map(self.gcps, xy)
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        a = self.transform
        x, y = xy[:, 0] + 0.5, xy[:, 1] + 0.5  # pixel centre -> edge-based affine input
        return np.stack([a.a * x + a.b * y + a.c, a.d * x + a.e * y + a.f], axis=1)

    def layer_xy(self, xy: np.ndarray) -> np.ndarray:
        """N x 2 pixel (centre convention) -> where QGIS places them (its Georeferencer's coordinates): map
        coordinates through a geotransform (one stored, even the identity) or the GCPs; without either, pixel edges
        with y = -row, as QGIS shows a raster that has no georeferencing."""
        if self.geolocated or self.placed:
            return self.xy_to_map(xy)
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        return np.c_[xy[:, 0] + 0.5, -(xy[:, 1] + 0.5)]

    def map_to_xy(self, xy_map: np.ndarray) -> np.ndarray:
        """N x 2 map coordinates -> pixel (x=col, y=row, centre convention)."""
        if self.gcps is not None and not self.georeferenced:
            return map_to_pixel(self.gcps, xy_map)
        from sarreg.grid import map_to_px

        return map_to_px(self.transform, xy_map)


def gdal_message(e: BaseException, limit: int = 160) -> str:
    """First line of a rasterio/GDAL error; rasterio's "See previous exception for details." is replaced by that
    previous (chained) exception's own message."""
    msg = str(e).strip()
    cause = e.__cause__ or e.__context__
    if "previous exception" in msg and cause is not None and str(cause).strip():
        msg = str(cause).strip()
    msg = msg.splitlines()[0] if msg else type(e).__name__
    return msg if len(msg) <= limit else msg[:limit].rsplit(" ", 1)[0] + " ..."


def _open(path: Source) -> rasterio.io.DatasetReader:
    """Open a local file or a remote / archived input (``sarreg.io.source``); every failure is one InputError line
    naming the input."""
    path = resolve_input(path)
    if isinstance(path, Path):
        if not path.exists():
            raise InputError(f"{path}: file not found")
        if path.is_dir():
            raise InputError(f"{path}: is a directory, not a raster")
        if path.stat().st_size == 0:
            raise InputError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings(), open_options(path):
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as e:
        network = is_network(path)
        why = unreachable(path) if network else None
        if why:
            raise InputError(f"{path}: cannot reach remote raster ({why})") from None
        what = "cannot open remote raster" if network else "not a readable raster"
        raise InputError(f"{path}: {what} ({gdal_message(e)})") from None
    except Exception as e:  # driver-level failures
        raise InputError(f"{path}: cannot open raster ({type(e).__name__}: {str(e)[:160]})") from None


def open_dataset(path: Source) -> rasterio.io.DatasetReader:
    """Open a raster with a clear InputError for missing / unreadable files and URLs."""
    return _open(path)


def choose_band(ds: rasterio.io.DatasetReader, band: int | None, path: Source) -> int:
    """1-based band: the given one (checked), else the band described as VV, else 1; never the alpha band
    (``sarreg.io.band.alpha_band``), which is the validity of the others."""
    alpha = alpha_band(ds)
    if band is not None:
        if not 1 <= band <= ds.count:
            raise BandError(path, band, ds.count)
        if band == alpha:
            raise InputError(f"{path}: band {band} is the alpha band (the validity of the other bands), not data; "
                             f"choose one of bands 1-{ds.count - 1}")
        return band
    for i, d in enumerate(ds.descriptions or (), start=1):
        if d and "VV" in d.upper().replace("_", " ").split() + [d.upper()] and i != alpha:
            return i
    return 1


def _is_georeferenced(ds: rasterio.io.DatasetReader) -> bool:
    return ds.crs is not None and ds.transform != Affine.identity()


def to_log(values: np.ndarray, kind: str) -> np.ndarray:
    """Raw values -> float32 log-domain image (dB for SAR kinds); invalid values become NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if np.iscomplexobj(values):
            inten = values.real.astype(np.float32) ** 2 + values.imag.astype(np.float32) ** 2
            out = 10.0 * np.log10(np.where(inten > 0, inten, np.nan))
        elif kind == "linear":
            v = values.astype(np.float32)
            out = 10.0 * np.log10(np.where(v > 0, v, np.nan))
        elif kind == "amplitude":
            v = values.astype(np.float32)
            out = 20.0 * np.log10(np.where(v > 0, v, np.nan))
        elif kind == "display":
            # 8-bit renderings of SAR (quicklooks, warped exports) use 0 as fill outside the data
            v = values.astype(np.float32)
            out = np.where(v > 0, v, np.nan)
        else:  # db
            out = values.astype(np.float32)
    out[~np.isfinite(out)] = np.nan
    return out.astype(np.float32, copy=False)


def _resolve_kind(kind: str, dtype: str, sample: np.ndarray, unit: str = "") -> str:
    """The input kind: ``kind`` unless "auto"; else from the dtype, a declared ``unit`` and the ``sample``'s values."""
    if kind not in KINDS:
        raise InputError(f"unknown input kind {kind!r}; choose from {', '.join(KINDS)}")
    if kind != "auto":
        return kind
    if dtype.startswith("complex"):
        return "linear"
    if unit_kind(unit):
        log.info("input kind: %s (the band's unit is %r)", unit_kind(unit), unit)
        return unit_kind(unit)
    if dtype == "uint8":
        return "display"
    if dtype.startswith(("float", "int")):
        finite = sample[np.isfinite(sample) & (sample != 0)]
        frac = float((finite < 0).mean()) if finite.size else 0.0
        # dB images are mostly negative; a few negative pixels (resampling ringing, calibration noise) in linear
        # power must not flip the decision. Signed integers: scaled dB (dB x 100 in int16) when mostly negative,
        # else DN amplitude like unsigned ones
        kind = "db" if frac > DB_NEGATIVE_FRACTION else "linear" if dtype.startswith("float") else "amplitude"
        log.info("input kind: %s (%.2f %% of the valid pixels are negative)", kind, 100 * frac)
        return kind
    return "amplitude"


def open_scene(path: Source, pre: PreprocessConfig = PreprocessConfig()) -> Scene:
    """Validate a raster and compute its per-scene scaling from one decimated read (bounded memory)."""
    path = resolve_input(path)
    with _open(path) as ds:
        if (why := container_error(path, ds)) is not None:  # (a netCDF / HDF5 file of several rasters)
            raise InputError(why)
        if ds.width < 1 or ds.height < 1 or ds.count < 1:
            raise InputError(f"{path}: zero-size raster ({ds.width}x{ds.height}, {ds.count} bands)")
        if _is_georeferenced(ds) and not abs(ds.transform.determinant) > 0:
            raise InputError(f"{path}: degenerate geotransform (zero pixel size: {tuple(ds.transform)[:6]})")
        band = choose_band(ds, pre.band, path)
        dtype = ds.dtypes[band - 1]
        if dtype not in SUPPORTED_DTYPES:
            raise InputError(f"{path}: unsupported data type {dtype} (supported: integer, float, complex)")
        scale = min(1.0, STATS_MAX_SIDE / max(ds.width, ds.height))
        shape = (max(1, round(ds.height * scale)), max(1, round(ds.width * scale)))
        given = pre.nodata  # None: the file's own
        nodata = ds.nodatavals[band - 1] if given is None else None if given == "none" else float(given)
        try:
            vals, mask = read_band(ds, band, None, shape if scale < 1 else None, dtype.startswith("complex"),
                                    nodata)
        except RasterioIOError as e:
            raise InputError(f"{path}: unreadable pixel data ({gdal_message(e)})") from None
        overview = Overview(vals, mask.copy(), nodata, (ds.height, ds.width))
        _warn_big_blocks(ds, band, path)
        holes = (find_fill(vals, nodata) if given is None and may_hide_fill(ds, band)
                 else given_fill(vals, nodata) if nodata is not None and given is not None else None)
        second = holes is not None and given is None and marks_holes(vals, nodata)  # beside the file's tag
        if holes is not None:
            mask &= ~holes.beyond(vals)
            if given is None:
                log.warning("%s: %s; %g (%.1f %% of the pixels, far outside the other values) read as nodata%s "
                            "(--nodata overrides)", path, "no nodata value declared" if nodata is None else
                            f"the nodata tag {nodata:g} marks {'holes' if second else 'almost no pixel'}",
                            holes.value, 100 * holes.share, " too" if second else "")
        sc = band_scaling(ds, band)
        phys = sc.apply(vals)  # (scaled integers judged as the float values they mean)
        kind = _resolve_kind(pre.kind, "float32" if sc.scaled and phys is not vals else dtype,
                             np.where(mask, phys, np.nan) if not np.iscomplexobj(vals) else np.abs(vals), sc.unit)
        logv = to_log(phys, kind)
        valid = mask & np.isfinite(logv)
        if not valid.any():
            raise InputError(f"{path}: all pixels are nodata/invalid in band {band}")
        lo, hi = np.percentile(logv[valid], [pre.lo_pct, pre.hi_pct])
        if not hi - lo > 1e-6:
            lo, hi = float(np.min(logv[valid])), float(np.max(logv[valid]))
            if not hi - lo > 1e-6:
                v = vals[valid].flat[0]
                v = f"{v:g}" if not np.iscomplexobj(vals) else f"{complex(v):g}"
                raise InputError(f"{path}: constant image (every valid pixel of band {band} is {v}); nothing to match")
        fill = float(np.clip((np.median(logv[valid]) - lo) / (hi - lo), 0, 1))
        geo = _is_georeferenced(ds)
        gcps, gcp_crs = (None, None) if geo else read_gcps(ds)
        zero = _zero_fill(vals, dtype, kind, sc) if given is None and nodata is None and holes is None and \
            may_hide_fill(ds, band) else None
        found = holes is not None and not second  # in place of the tag (or the value given)
        scene = Scene(path=path, width=ds.width, height=ds.height, count=ds.count, dtype=dtype, band=band,
                      kind=kind, nodata=0.0 if zero is not None else holes.value if found else nodata,
                      crs=ds.crs if gcps is None else gcp_crs, transform=ds.transform,
                      georeferenced=geo, lo=float(lo), hi=float(hi), fill=fill, gcps=gcps, holes=holes,
                      nodata_from="option" if given is not None else "found" if found or zero is not None else "file",
                      overview=overview, scaling=sc, description=(ds.descriptions or ())[band - 1] or "", zero=zero,
                      alpha=alpha_band(ds), stored_transform=_stored_transform(ds))
    return _with_exclusion(scene, pre.exclude, valid)


def _stored_transform(ds: rasterio.io.DatasetReader) -> bool:
    """True when GDAL reads a geotransform from the file (rasterio returns the identity for none, and warns)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", NotGeoreferencedWarning)
        ds.read_transform()
    return not any(issubclass(w.category, NotGeoreferencedWarning) for w in seen)


def _zero_fill(vals: np.ndarray, dtype: str, kind: str, sc: Scaling) -> Fill | None:
    """0 in an unsigned band that declares no nodata (no tag, no mask band; no fill found), read as display, linear
    or amplitude values; or in such a float band of linear or amplitude values that holds zeros: no measurement (no
    power), invalid on reading and the warp's nodata (``sarreg.io.fill.warp_nodata``). -> that value as a Fill
    (``share``: of the sample), or None. Float: a SNAP export of linear sigma0 has a zero border and no tag, which
    warped as data gave valid zeros and a darkened rim. Not complex: GDAL's nodata test reads the real part alone."""
    if sc.scaled or kind not in ("display", "linear", "amplitude"):
        return None
    share = float(np.mean(vals == 0))
    if dtype.startswith("uint") or (dtype.startswith("float") and kind != "display" and share > 0):
        return Fill(0.0, 0.0, share, side="exact")
    return None


BIG_BLOCK_MB = 256  # a compressed block this large is decoded whole by every read that touches it


def _warn_big_blocks(ds: rasterio.io.DatasetReader, band: int, path: Source) -> None:
    """A warning (once per open) for a compressed file stored in blocks so large (one strip for the whole image)
    that every read decodes one whole: memory and time then grow with the scene (16384² float32 in one DEFLATE
    strip: 3.8 GB peak, against 0.65 GB tiled), and only a tiled copy reads in bounded memory."""
    rows, cols = ds.block_shapes[band - 1]
    dtype = ds.dtypes[band - 1]
    mb = rows * cols * (4 if dtype == "complex_int16" else np.dtype(dtype).itemsize) / 2 ** 20
    if ds.compression is not None and mb > BIG_BLOCK_MB:
        log.warning("%s: stored in %s compressed blocks of %.0f MB (%dx%d px): every read decodes a whole one, so "
                    "memory grows with the scene; a tiled copy reads in bounded memory: gdal_translate -co TILED=YES "
                    "-co COMPRESS=DEFLATE -co BIGTIFF=IF_SAFER IN OUT", path, ds.compression.name, mb, cols, rows)


def _with_exclusion(scene: Scene, paths: tuple[str, ...], valid: np.ndarray) -> Scene:
    """``scene`` with its ``--exclude`` areas; InputError when they cover every valid pixel (``valid``: the
    decimated statistics read)."""
    exc = load_exclusion(paths, scene)
    if exc is None:
        return scene
    gone = exc.mask(None, valid.shape, scene.shape) & valid
    if gone.sum() == valid.sum():
        raise InputError(f"{scene.path}: every valid pixel is excluded by {', '.join(exc.sources)}")
    return replace(scene, exclude=replace(exc, fraction=round(float(gone.sum() / valid.sum()), 4)))


def both(f: Callable[[], A], g: Callable[[], B]) -> tuple[A, B]:
    """``(f(), g())`` run at the same time: two reads of two rasters, which GDAL decodes outside the GIL (at 10k²
    DEFLATE each decimated read decompresses the whole file, about a second). ``f``'s error is raised first, as if
    run in order; on one core they are."""
    if (os.cpu_count() or 1) < 2:
        return f(), g()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="sarreg-read") as ex:
        later = ex.submit(g)
        try:
            a = f()
        except BaseException:
            later.cancel()
            raise
        return a, later.result()


def unit_scale(logv: np.ndarray, lo: float, hi: float, fill: float, despeckle: int = 0) -> np.ndarray:
    """Log values -> float32 [0, 1] with invalid (NaN) pixels set to ``fill``; optional box despeckle."""
    u = (logv - np.float32(lo)) / np.float32(hi - lo)
    u = np.clip(u, 0.0, 1.0)
    u[~np.isfinite(u)] = fill
    if despeckle and despeckle > 1:
        import cv2

        u = cv2.blur(u, (int(despeckle), int(despeckle)), borderType=cv2.BORDER_REFLECT)
    return u.astype(np.float32, copy=False)


def read_unit(scene: Scene, window: Window | None = None, out_shape: tuple[int, int] | None = None,
              pre: PreprocessConfig = PreprocessConfig(), ds: rasterio.io.DatasetReader | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Read one window (optionally decimated to ``out_shape`` = (rows, cols)) as network input.

    Returns (unit float32 H x W in [0, 1], valid bool H x W). ``ds`` lets callers reuse an open dataset. Reads no
    finer than the scene's overview come from it (``Overview.serve``), without touching the file.
    """
    if scene.step > 1:  # a window of the decimated scene's cells -> the file's pixels, read at the cells' size
        w = window or Window(0, 0, scene.width, scene.height)
        out_shape = out_shape or (int(w.height), int(w.width))
        k = scene.step
        window = Window(w.col_off * k, w.row_off * k, w.width * k, w.height * k)
    ov, cplx = scene.overview, scene.dtype.startswith("complex")
    served = ov.serve(window, out_shape, cplx) if ov is not None else None
    if served is not None:  # (its nodata is the tag below: the file's, or the value given, as ``scene.nodata``)
        (vals, mask), tag = served, ov.nodata
    else:
        own = ds is None
        ds = ds or _open(scene.path)
        tag = scene.nodata if scene.nodata_from == "option" else ds.nodatavals[scene.band - 1]  # (found: ``holes``)
        try:
            vals, mask = read_band(ds, scene.band, window, out_shape, cplx, tag)
        except RasterioIOError as e:
            raise InputError(f"{scene.path}: unreadable pixel data ({gdal_message(e)})") from None
        finally:
            if own:
                ds.close()
    if scene.holes is not None:  # the fill and the cells that mix it with data are holes
        mask &= ~scene.holes.beyond(vals)
    logv = to_log(scene.scaling.apply(vals), scene.kind)
    valid = mask & np.isfinite(logv)
    _keep_isolated_dark(vals, logv, mask, valid, scene.lo, tag, scene.kind)
    if scene.exclude is not None:
        valid &= ~scene.exclude.mask(window, valid.shape, scene.shape)
    return unit_scale(logv, scene.lo, scene.hi, scene.fill, pre.despeckle), valid


def _keep_isolated_dark(vals: np.ndarray, logv: np.ndarray, mask: np.ndarray, valid: np.ndarray, lo: float,
                        nodata: float | None = None, kind: str = "linear") -> None:
    """Isolated zero-power pixels inside valid data (speckle zeros, resampling ringing, quantised dark pixels) are
    very dark measurements, not holes: set them to the scene's low value and keep them valid, in place. Otherwise
    every such pixel would cut a hole in the valid mask and drop the keypoints and correlation windows around it
    (5 % of them scattered over a scene left no keypoint and no correlation window). Zero power is a non-positive
    linear / amplitude value, -inf in dB (10 log10 0), and, in linear or amplitude data (``kind``), a 0 that is
    the nodata value (nodata 0 cannot tell a zero measurement from a hole; real holes are areas; in dB a 0 is 1.0 in
    linear, no zero). Areas where most pixels are such (borders, zero-filled swaths) stay invalid, as do other
    nodata values and NaN."""
    if valid.all():
        return
    zero = (vals == 0) if nodata == 0 and kind in ("linear", "amplitude") else np.zeros(vals.shape, bool)
    if not np.iscomplexobj(vals):
        zero |= vals == -np.inf
    dark = ~valid & ((mask & np.isfinite(vals)) | zero)
    if not dark.any():
        return
    import cv2

    # isolated: under a quarter of the 7 x 7 neighbourhood is invalid for any reason (a zero among NaN or other
    # nodata is part of a hole, not a dark pixel in the data)
    frac = cv2.boxFilter((~valid).astype(np.float32), -1, (7, 7), normalize=True, borderType=cv2.BORDER_REFLECT)
    iso = dark & (frac < 0.25)
    logv[iso] = lo
    valid |= iso


def image_to_unit(image: np.ndarray, kind: str = "auto", lo_pct: float = 1.0, hi_pct: float = 99.0,
                  valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """In-memory array (H x W, any SAR dtype) -> ([0, 1] float32, valid mask), same rules as files.

    Used by training and by callers that already hold a small image in memory.
    """
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[..., 0] if image.shape[-1] in (3, 4) else image[0]
    kind = _resolve_kind(kind, str(image.dtype) if not np.iscomplexobj(image) else "complex64",
                         image if not np.iscomplexobj(image) else np.abs(image))
    logv = to_log(image, kind)
    ok = np.isfinite(logv) if valid is None else (valid & np.isfinite(logv))
    if not ok.any():
        raise InputError("image has no valid pixels")
    lo, hi = np.percentile(logv[ok], [lo_pct, hi_pct])
    if not hi - lo > 1e-6:
        lo, hi = float(logv[ok].min()), float(logv[ok].max()) + 1e-6
    fill = float(np.clip((np.median(logv[ok]) - lo) / (hi - lo), 0, 1))
    return unit_scale(logv, float(lo), float(hi), fill), ok


def decimated_shape(scene: Scene, scale: float) -> tuple[int, int]:
    """(rows, cols) of the scene resampled by ``scale`` (round half to even, at least 1)."""
    return max(1, round(scene.height * scale)), max(1, round(scene.width * scale))
