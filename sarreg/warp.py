"""Resample the moving raster onto the reference grid with GDAL (all bands, dtype and nodata kept).

The estimated transform (moving pixel -> reference pixel, pixel-centre convention) becomes georeferencing of an
in-memory VRT of the moving raster, expressed in the reference's map coordinates (or, for pixel-space images, in
reference pixel-edge coordinates with GDAL's ``NO_GEOTRANSFORM`` destination):

* shift / similarity / affine: a corrected geotransform ``A_ref . S . M . S^-1`` (S = half-pixel shift);
* homography: a grid of exact GCPs, third-order polynomial (checked to 0.05 px, else thin-plate spline);
* poly2: a grid of exact GCPs of the fitted polynomial, ``polynomialOrder=2``;
* tps: the inlier tie points as GCPs, ``tps=True``;
* between CRSs that no affine relates (``PixelTransform.native``): the estimate refitted in the moving raster's own
  georeferencing, set as above in its own CRS (a GCP-located raster: its GCPs moved by it); GDAL's warp then
  reprojects exactly.

``gdal.Warp`` then writes into a tiled GeoTIFF created with exactly the reference grid (same CRS, transform, size)
under a warp memory limit; COG output is made from it with ``gdal.Translate`` (overviews, compression). Every
output is written to a temporary file in the target folder and renamed, so no partial file is ever left behind.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from sarreg.errors import InputError, SarregError
# the grid and transform types, public here before sarreg.grid held them: re-exported
from sarreg.grid import (Grid, PixelTransform, centre_to_edge, corrected_geotransform,  # noqa: F401
                         output_grid, pixel_size)
from sarreg.io.complex_data import is_complex, keep_valid, overview_resampling, warp_fill, warp_resampling
from sarreg.io.fill import band_nodata, copy_nodata, holds, mapped_to_tag, out_nodata, warp_nodata
from sarreg.io.gdal_errors import thread_errors
from sarreg.io.source import OPEN_DEFAULTS, Source, is_remote, resolve_input
from sarreg.outputs import no_space, write_error

log = logging.getLogger(__name__)

from sarreg.config import AFFINE_MODELS, COMPRESSION, FORMATS, RESAMPLING  # noqa: E402, F401 - re-exported
GRID_GCPS = 12  # GCPs per side for homography / poly2


def _gdal():
    from osgeo import gdal

    gdal.UseExceptions()
    return gdal


@contextmanager
def _config(options: dict[str, str], cache_mb: int | None = None) -> Iterator[None]:
    """GDAL config options and block-cache size for a block of code (restored after).

    The cache size goes through ``SetCacheMax``: GDAL reads GDAL_CACHEMAX only once per process.
    """
    gdal = _gdal()
    old = {k: gdal.GetConfigOption(k) for k in options}
    old_cache = gdal.GetCacheMax()
    for k, v in options.items():
        gdal.SetConfigOption(k, v)
    if cache_mb is not None:
        gdal.SetCacheMax(int(cache_mb) * 1024 * 1024)
    try:
        yield
    finally:
        for k, v in old.items():
            gdal.SetConfigOption(k, v)
        if cache_mb is not None:
            gdal.SetCacheMax(old_cache)


def _tmp_path(out: Path, tag: str = "") -> Path:
    """Hidden per-process temporary next to ``out`` (``sarreg.outputs.temp_path``; stale ones are cleaned)."""
    from sarreg.outputs import temp_path

    return temp_path(out if out.suffix else out.with_name(out.name + ".tif"), tag)


def check_output(out: Path, inputs: list[Path], overwrite: bool) -> Path:
    """Refuse to overwrite an input (also through links) or an existing file (without overwrite), and
    unwritable folders (``sarreg.outputs.check_write_set`` for one file)."""
    from sarreg.outputs import check_write_set

    return check_write_set([out], inputs, overwrite)[0]


def _gcps(gdal, mov_xy: np.ndarray, ref_xy: np.ndarray, grid: Grid) -> list:
    """GDAL GCPs: moving pixel-edge (pixel, line) -> target coordinates of the reference grid."""
    tgt = grid.px_to_map(ref_xy)
    return [gdal.GCP(float(t[0]), float(t[1]), 0.0, float(m[0] + 0.5), float(m[1] + 0.5))
            for m, t in zip(np.asarray(mov_xy, dtype=np.float64), tgt)]


def _source_vrt(moving: Source, tr: PixelTransform, grid: Grid, mov_size: tuple[int, int], fill: float | None = None):
    """In-memory VRT of the moving raster georeferenced by the estimated transform (``fill``: a second fill value,
    read as the nodata tag); + warp options."""
    gdal = _gdal()
    opts = {k: v for k, v in OPEN_DEFAULTS.items() if k not in os.environ} if is_remote(moving) else {}
    try:
        with _config(opts):
            src = gdal.Translate("", str(moving), format="VRT")
    except RuntimeError as e:
        raise InputError(f"{moving}: cannot open for warping ({str(e).splitlines()[0][:160]})") from None
    src = src if fill is None else mapped_to_tag(gdal, src, fill)
    native, (tr, grid) = tr.native is not None, tr.for_warp(grid)
    if native and not grid.georeferenced:  # the native correction of a GCP-located raster: its GCPs moved by it
        from sarreg.estimate import apply_matrix
        from sarreg.io.gcps import method

        inv = np.linalg.inv(centre_to_edge(tr.matrix))  # (GCP pixel / line are pixel-edge coordinates)
        q = apply_matrix(inv, np.asarray(grid.gcps)[:, :2])
        # (a new VRT with the GCPs: one that kept a stored identity geotransform, as an RPC-located TIFF may hold,
        # would be written with that and without the GCPs)
        src = gdal.Translate("", src, format="VRT", outputSRS=grid.gcp_crs_wkt or None,
                             GCPs=[gdal.GCP(g[2], g[3], 0.0, float(a), float(b)) for g, (a, b) in zip(grid.gcps, q)])
        return src, {"src_method": method(grid.gcps)}  # (the transformer that located the raster's tie points)
    wkt = grid.crs_wkt or ""
    opts: dict[str, Any] = {}
    W, H = mov_size
    if tr.model in AFFINE_MODELS or (tr.model == "homography" and np.allclose(tr.matrix[2, :2], 0, atol=1e-14)):
        src.SetGCPs([], "")
        src.SetGeoTransform(corrected_geotransform(tr.matrix, grid).to_gdal())
        src.SetProjection(wkt)
        return src, opts
    if tr.model == "tps":
        if tr.tiepoints is None or len(tr.tiepoints) < 3:
            raise InputError("tps warp needs tie points (none in the transform)")
        src.SetGCPs(_gcps(gdal, tr.tiepoints[:, :2], tr.tiepoints[:, 2:], grid), wkt)
        opts["src_method"] = "GCP_TPS"
        return src, opts
    # homography / poly2: exact samples of the model on a grid over the moving raster
    n = GRID_GCPS
    g = np.stack(np.meshgrid(np.linspace(-0.5, W - 0.5, n), np.linspace(-0.5, H - 0.5, n)), -1).reshape(-1, 2)
    src.SetGCPs(_gcps(gdal, g, tr.apply(g), grid), wkt)
    order = 2 if tr.model == "poly2" else 3
    tropts = ["METHOD=GCP_POLYNOMIAL", f"MAX_GCP_ORDER={order}"]
    if tr.model == "homography":
        t = gdal.Transformer(src, None, tropts)
        q = np.random.default_rng(0).uniform(0, 1, (200, 2)) * [W, H] - 0.5
        got = np.array([t.TransformPoint(0, float(x + 0.5), float(y + 0.5))[1][:2] for x, y in q])
        err = np.hypot(*(got - grid.px_to_map(tr.apply(q))).T).max() / max(abs(grid.transform.a), 1e-12)
        if err > 0.05:
            log.info("homography: polynomial GCP fit off by %.3f px, using a dense TPS grid", err)
            n = 33
            g = np.stack(np.meshgrid(np.linspace(-0.5, W - 0.5, n), np.linspace(-0.5, H - 0.5, n)), -1).reshape(-1, 2)
            src.SetGCPs(_gcps(gdal, g, tr.apply(g), grid), wkt)
            opts["src_method"] = "GCP_TPS"
            return src, opts
    opts["src_method"] = "GCP_POLYNOMIAL"
    opts["polynomialOrder"] = order
    return src, opts


def predictor(dtype: str) -> int:
    """TIFF predictor for a data type: 2 (horizontal differencing) for integers, 3 (floating point) for float32 /
    float64 only, 1 (none) for complex types, which GDAL accepts with neither."""
    if dtype.startswith("complex"):
        return 1
    if dtype in ("float32", "float64"):
        return 3
    return 2 if "int" in dtype else 1


def _creation_options(fmt: str, compress: str, dtype: str) -> list[str]:
    co = ["BIGTIFF=IF_SAFER", f"COMPRESS={compress}"]
    if compress in ("DEFLATE", "ZSTD"):
        # speckled floats barely compress: the fastest level keeps nearly all of the gain at a fraction of the time
        co.append("LEVEL=1" if fmt == "COG" else f"{'ZLEVEL' if compress == 'DEFLATE' else 'ZSTD_LEVEL'}=1")
    if compress in ("DEFLATE", "LZW", "ZSTD"):
        # explicit for COG too: its PREDICTOR=YES picks 3 for every non-integer type, complex ones included
        pred = predictor(dtype)
        if pred != 1:
            co.append(f"PREDICTOR={pred}" if fmt != "COG" else
                      f"PREDICTOR={'STANDARD' if pred == 2 else 'FLOATING_POINT'}")
    if fmt == "GTiff":
        co += ["TILED=YES", "BLOCKXSIZE=512", "BLOCKYSIZE=512"]
    return co


def _has_data(ds) -> bool:
    """True when band 1 of a GDAL dataset holds at least one valid (not nodata) pixel."""
    mask = ds.GetRasterBand(1).GetMaskBand()
    return mask.ComputeRasterMinMax(False)[1] > 0


def bands_dtype(ds) -> str:
    """The data type (a rasterio name) that holds every band of an open rasterio dataset: band 1's, or GDAL's union
    of them (uint16 and float32: float32). Why: a VRT stacking uint16 VV and float32 VH in dB was warped into band
    1's type for all bands: VH came out all 0 (its negative dB cast to uint16: nodata), exit 0."""
    if len(set(ds.dtypes)) == 1:
        return ds.dtypes[0]
    from functools import reduce

    from rasterio.dtypes import dtype_fwd

    return dtype_fwd[reduce(_gdal().DataTypeUnion, map(_gdt, ds.dtypes))]


def _gdt(dtype: str) -> int:
    """GDAL's data type code of a rasterio dtype name."""
    from rasterio.dtypes import dtype_rev

    return dtype_rev[dtype]


def check_warpable(moving: Source, dtype: str) -> None:
    """InputError for pixels GDAL cannot warp right: signed bytes before GDAL 3.7 (it reads them as 0..255)."""
    gdal = _gdal()
    if dtype == "int8" and not hasattr(gdal, "GDT_Int8"):
        raise InputError(f"{moving}: signed 8-bit pixels (int8) cannot be warped with GDAL {gdal.__version__} (it "
                         f"reads them as 0..255); convert first: gdal_translate -ot Int16 {moving} moving16.tif")


def warp_to_grid(moving: str | Path, transform: PixelTransform, grid: Grid, out: str | Path,
                 resampling: str = "auto", fmt: str = "auto", compress: str = "DEFLATE", mem_mb: int = 128,
                 threads: int | None = None, overwrite: bool = False, require_data: bool = False,
                 out_grid: Grid | None = None, nodata: float | str | tuple[float, float] = "auto") -> Path:
    """Resample ``moving`` (all bands) onto ``grid`` with ``transform`` (moving px -> ``grid`` px); write ``out``
    atomically, on ``out_grid`` when given (``output_grid``: the same map, another pixel size).

    resampling: "auto" = nearest for complex data (interpolation mixes speckle phases: -4 dB), else bilinear; a
    resampling that interpolates complex values is warned about (``sarreg.io.complex_data``).

    mem_mb bounds GDAL's warp buffer and block cache (MB). threads: warp and compression threads, None = all
    cores (``gdalwarp -multi -wo NUM_THREADS=ALL_CPUS``); batch workers pass 1. require_data: an output without a
    single valid pixel is an InputError (and no file). nodata: the source's nodata value, kept out of the
    resampling and declared by the output: "auto" = the file's tag, else a fill value found by sampling an untagged
    file (``sarreg.io.fill``); "file" = the file's tag alone (a caller that searched already: ``Scene.warp_nodata``);
    "none" = no nodata value (``gdalwarp -srcnodata None``); a number; or (tag, fill): a second fill value beside the
    file's tag, warped as the tag. Returns the output path.
    """
    from sarreg.io.raster import open_dataset

    gdal = _gdal()
    threads = max(1, int(threads if threads is not None else os.cpu_count() or 1))
    moving, out = resolve_input(moving), Path(out)
    if resampling not in RESAMPLING:
        raise ValueError(f"unknown resampling {resampling!r}; choose from {', '.join(RESAMPLING)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    fmt = "COG" if fmt == "auto" else fmt
    check_output(out, [moving], overwrite)
    with open_dataset(moving) as ds:
        count, dtype, size, first = ds.count, bands_dtype(ds), (ds.width, ds.height), ds.dtypes[0]
        src_nodata = warp_nodata(ds, nodata)
        per_band = band_nodata(ds, nodata, src_nodata)  # bands with tags of their own: each its own
    check_warpable(moving, dtype)
    resampling = warp_resampling(dtype, resampling)
    src, wopts = _source_vrt(moving, transform, grid, size, nodata[1] if isinstance(nodata, (tuple, list)) else None)
    dst_nodata = out_nodata(dtype, None if src_nodata == "None" or per_band else src_nodata)
    fill = warp_fill(dtype, dst_nodata, resampling)  # (interpolated complex integers: kept apart from the nodata)
    tmp = _tmp_path(out, "warp")
    tmp_cog = _tmp_path(out)
    dst = r = c = None
    try:
        with _config({"GDAL_NUM_THREADS": str(threads)}, cache_mb=max(16, mem_mb // 2)):
            gdt = src.GetRasterBand(1).DataType if dtype == first else _gdt(dtype)  # (bands of several types)
            drv = gdal.GetDriverByName("GTiff")
            co = _creation_options("GTiff", compress if fmt == "GTiff" else "NONE", dtype)
            og = out_grid or grid
            dst = drv.Create(str(tmp), og.width, og.height, count, gdt, co)
            if og.georeferenced:
                dst.SetGeoTransform(og.transform.to_gdal())
                dst.SetProjection(og.crs_wkt)
            elif og.local is not None:  # (the warp itself stays in pixels: DST_METHOD=NO_GEOTRANSFORM)
                dst.SetGeoTransform(og.local.to_gdal())
            alpha = src.GetRasterBand(count).GetColorInterpretation() == gdal.GCI_AlphaBand and count > 1
            for b in range(1, count + 1):
                sb, db = src.GetRasterBand(b), dst.GetRasterBand(b)
                if alpha and b == count:  # the source's alpha band: warped as the output's alpha (-dstalpha)
                    db.SetColorInterpretation(gdal.GCI_AlphaBand)
                    continue
                db.SetNoDataValue(dst_nodata if fill is None else fill)
                if sb.GetDescription():
                    db.SetDescription(sb.GetDescription())
                if (sb.GetScale() or 1.0) != 1.0 or (sb.GetOffset() or 0.0) != 0.0:  # scaled integers (dB x 100)
                    db.SetScale(sb.GetScale() or 1.0)
                    db.SetOffset(sb.GetOffset() or 0.0)
                if sb.GetUnitType():
                    db.SetUnitType(sb.GetUnitType())
            tropts = [] if grid.georeferenced else ["DST_METHOD=NO_GEOTRANSFORM"]
            if "src_method" in wopts:
                tropts.append(f"SRC_METHOD={wopts.pop('src_method')}")
            wo = gdal.WarpOptions(resampleAlg=resampling, srcNodata=per_band or src_nodata,
                                  dstNodata=dst_nodata if fill is None else fill,
                                  warpMemoryLimit=mem_mb, multithread=threads > 1, dstAlpha=alpha,
                                  warpOptions=[f"NUM_THREADS={threads}", "INIT_DEST=NO_DATA"]
                                  + (["UNIFIED_SRC_NODATA=NO"] if per_band else []),
                                  transformerOptions=tropts, errorThreshold=0.05, **wopts)
            err = None
            with thread_errors(threads > 1) as seen:
                try:
                    r = gdal.Warp(dst, src, options=wo)
                except RuntimeError as e:
                    err = str(e)
            ours = [m for m in seen if str(moving) in m]  # (``seen`` may hold a concurrent warp's errors too)
            if err or ours or not r:  # (a multithreaded warp returns 0; only its threads saw the failed read)
                raise _warp_error(moving, out, tmp, [err] if err else ours or seen)
            if fill is not None and (n := keep_valid(dst, dst_nodata, fill)):
                log.info("%s: %d warped pixels with a real part of nodata %g (read as nodata): moved one step off it",
                         out, n, dst_nodata)
            if og.georeferenced or og.local is not None:  # (the warp copies the moving raster's tag, maybe Point)
                dst.SetMetadataItem("AREA_OR_POINT", "Area")  # the grid's geotransform is of pixel corners
            if grid.gcps:  # a GCP-only reference: the output, on its pixel grid, carries its GCPs
                from sarreg.io.gcps import gdal_gcps

                dst.SetGCPs(gdal_gcps(grid.gcps), grid.gcp_crs_wkt or "")
            dst.FlushCache()
            if require_data and not _has_data(dst):
                raise InputError(f"{moving}: no valid pixel of it lands on the reference grid with this transform; "
                                 f"refusing to write an all-nodata {out.name}")
            dst = r = None
            if fmt == "COG":
                ov_rs = overview_resampling(dtype, resampling)
                co = _creation_options("COG", compress, dtype) + [f"RESAMPLING={ov_rs}", "OVERVIEWS=AUTO",
                                                                  f"NUM_THREADS={threads}"]
                c = gdal.Translate(str(tmp_cog), str(tmp), format="COG", creationOptions=co)
                c = None
                check_complete(tmp_cog)
                tmp.unlink()
                tmp_cog.replace(out)
            else:
                check_complete(tmp)
                tmp.replace(out)
    except SarregError:
        raise
    except (RuntimeError, OSError) as e:  # GDAL's errors (a full disk: libtiff's "Write error", several lines)
        raise write_error(out, e, "cannot write warped raster") from None
    finally:
        # datasets closed here, where the CLI logs a finalizer's error (a flush on a full disk) instead of printing it
        src = dst = r = c = None
        for p in (tmp, tmp_cog):
            if p.exists():
                p.unlink()
    log.info("warped %s -> %s (%s, %s)", moving, out, transform.model, resampling)
    return out


_READ_WORDS = ("readblock", "read error", "cannot read", "http")  # GDAL's words for a failed read of the source


def _warp_error(moving: Source, out: Path, tmp: Path, failed: list[str], what: str = "warp") -> SarregError:
    """The one-line error of a failed warp (or copy, ``what``): the input named when GDAL could not read its pixels
    (a remote server failing mid-run), the output when the write failed (a full disk), else GDAL's first message."""
    first = (failed[0].strip().splitlines() or [""])[0] if failed else ""
    done = "warped raster" if what == "warp" else "raster"
    if no_space(tmp, RuntimeError(first)):
        return write_error(out, RuntimeError(first), f"cannot write {done}")
    name = str(moving)
    reads = [m for m in failed if name in m or any(w in m.lower() for w in _READ_WORDS)]
    if reads or not failed:
        why = (reads[-1] if reads else f"GDAL {what} failed").strip().splitlines()[0].replace(f"{name}, ", "")
        return InputError(f"{name}: cannot read its pixels during the {what} ({why[:200]}); no output written")
    return write_error(out, RuntimeError(first), f"cannot write {done}")


def check_complete(path: Path) -> None:
    """OSError (ENOSPC when the disk is full) unless every block of every band and overview of the GeoTIFF ``path``
    lies within the file. Why: GDAL's compression threads report a full disk on stderr only, and the dataset's close
    cannot raise (GDAL < 3.7): a truncated COG was renamed into place as `ok`. Reads the tile index, not the data."""
    import errno

    from osgeo import gdal

    size = path.stat().st_size
    ds = gdal.Open(str(path))
    try:
        for b in range(1, ds.RasterCount + 1):
            band = ds.GetRasterBand(b)
            for level in [band] + [band.GetOverview(i) for i in range(band.GetOverviewCount())]:
                bx, by = level.GetBlockSize()
                nx, ny = -(-level.XSize // bx), -(-level.YSize // by)
                for i in range(nx * ny):
                    off = level.GetMetadataItem(f"BLOCK_OFFSET_{i % nx}_{i // nx}", "TIFF")
                    n = level.GetMetadataItem(f"BLOCK_SIZE_{i % nx}_{i // nx}", "TIFF")
                    if off and n and int(off) + int(n) > size:
                        raise OSError(errno.ENOSPC if no_space(path, RuntimeError("")) else errno.EIO,
                                      "incomplete GeoTIFF (a block lies past the end of the file)")
    finally:
        ds = None


def update_georef(moving: str | Path, transform: PixelTransform, grid: Grid, out: str | Path, fmt: str = "auto",
                  compress: str = "DEFLATE", overwrite: bool = False, nodata: float | str | None = None) -> Path:
    """Copy ``moving`` unchanged (no resampling) with a corrected geotransform in the reference CRS (in its own CRS
    for a ``native`` transform: between CRSs that no affine relates, only that one is exact).

    Only for shift / similarity / affine models (a geotransform cannot express more). When the moving raster is a
    local GeoTIFF and ``fmt`` is "auto", or GTiff with the compression it already has, its bytes are copied as
    they are and only the georeferencing tags are rewritten (no decompression, no re-encoding: what AROSICS does);
    otherwise the copy is re-encoded with ``fmt`` ("auto": COG) / ``compress``. nodata: None, "auto" or "file" keep
    the file's tag, a number becomes the tag, "none" removes it (a fill value read as nodata, or ``--nodata``);
    (tag, fill) keeps the tag (the pixels are copied unchanged, the fill with them: warned, ``copy_nodata``).
    """
    from sarreg.io.raster import open_dataset

    gdal = _gdal()
    moving, out = resolve_input(moving), Path(out)
    if transform.model not in AFFINE_MODELS:
        raise InputError(f"--update-georef needs a shift, similarity or affine model, not {transform.model}")
    if not grid.georeferenced:
        raise InputError(f"{moving}: --update-georef needs georeferenced rasters")
    check_output(out, [moving], overwrite)
    with open_dataset(moving) as ds:
        dtype, mixed, tags = bands_dtype(ds), len(set(ds.dtypes)) > 1, band_nodata(ds, "file", ds.nodata)
    nodata = copy_nodata(moving, nodata)  # (a second fill value beside the tag stays data: warned)
    if tags and nodata is None:  # (bands with tags of their own: a GeoTIFF declares one, band 1's)
        log.warning("%s: its bands declare nodata %s; the --update-georef copy declares band 1's for all, the others' "
                    "stay data in it (the warped output, without --update-georef, reads each band's own)", moving,
                    " / ".join(tags.split()))
    if nodata not in (None, "none") and not holds(dtype, float(nodata)):
        nodata = "none"  # a value no pixel can hold (NaN, -9999 in uint16): no nodata
    src, _ = _source_vrt(moving, transform, grid, (0, 0))
    src.SetMetadata({}, "RPC")  # (RPCs that located the raster locate it where it was: not copied)
    tmp = _tmp_path(out)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    # (a correction that moves GCPs, those of a GCP / RPC-located raster, is no geotransform to write in place)
    if _same_encoding(gdal, moving, fmt, compress) and not src.GetGCPCount():
        try:
            _copy_with_georef(gdal, Path(moving), tmp, src.GetGeoTransform(), src.GetProjection(), nodata)
            tmp.replace(out)
            return out
        except SarregError:
            raise
        except (OSError, RuntimeError) as e:
            raise write_error(out, e) from None
        finally:
            src = None
            if tmp.exists():
                tmp.unlink()
    fmt = "COG" if fmt == "auto" else fmt
    c = None
    try:
        # compression (and the COG's overviews) on all cores: this copy is the whole cost of --update-georef
        co = _creation_options(fmt, compress, dtype) + ["NUM_THREADS=ALL_CPUS"]
        if fmt == "COG" and is_complex(dtype):  # (the COG driver's default CUBIC overviews would mix phases)
            co.append("RESAMPLING=NEAREST")
        with _config({"GDAL_NUM_THREADS": "ALL_CPUS"}):
            c = gdal.Translate(str(tmp), src, format=fmt, creationOptions=co, noData=nodata,
                               outputType=_gdt(dtype) if mixed else gdal.GDT_Unknown)  # (one type for all)
        c = None
        check_complete(tmp)
        tmp.replace(out)
    except SarregError:
        raise
    except RuntimeError as e:  # GDAL's: a failed read of the moving raster, or the write
        raise _warp_error(moving, out, tmp, [str(e)], "copy") from None
    except OSError as e:
        raise write_error(out, e) from None
    finally:
        src = c = None
        if tmp.exists():
            tmp.unlink()
    return out


def _same_encoding(gdal, moving: Source, fmt: str, compress: str) -> bool:
    """True when ``moving`` is a local GeoTIFF file (no GCPs, no external mask or overview files) and the output
    asked for is "auto", or GTiff with the compression ``moving`` has: its bytes can be kept as they are."""
    if fmt not in ("auto", "GTiff") or is_remote(moving) or not Path(str(moving)).is_file():
        return False
    p = Path(str(moving))
    if any(p.with_name(p.name + ext).exists() for ext in (".msk", ".ovr", ".aux.xml")):
        return False
    ds = gdal.OpenEx(str(p), gdal.OF_RASTER)
    if ds is None or ds.GetDriver().ShortName != "GTiff" or ds.GetGCPCount():
        return False
    have = (ds.GetMetadataItem("COMPRESSION", "IMAGE_STRUCTURE") or "NONE").upper()
    have = {"DEFLATE": "DEFLATE", "ZIP": "DEFLATE", "LZW": "LZW", "ZSTD": "ZSTD", "NONE": "NONE"}.get(have, have)
    return fmt == "auto" or have == compress.upper()


def _copy_with_georef(gdal, moving: Path, tmp: Path, geotransform, wkt: str, nodata: float | str | None) -> None:
    """Byte copy of ``moving`` to ``tmp``, then its geotransform, CRS and (``update_georef``'s) nodata rewritten in
    place (tags only)."""
    import shutil

    shutil.copyfile(moving, tmp)
    ds = gdal.OpenEx(str(tmp), gdal.OF_RASTER | gdal.OF_UPDATE)
    if ds is None:
        raise RuntimeError(f"cannot open the copy {tmp} for update")
    ds.SetGeoTransform(geotransform)
    ds.SetProjection(wkt)
    ds.SetMetadata({}, "RPC")  # (RPCs that located the raster locate it where it was: dropped)
    for b in range(1, ds.RasterCount + 1):
        if nodata == "none":
            ds.GetRasterBand(b).DeleteNoDataValue()
        elif nodata is not None:
            ds.GetRasterBand(b).SetNoDataValue(float(nodata))
    ds.FlushCache()
    ds = None
