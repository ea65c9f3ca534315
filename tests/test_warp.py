"""GDAL warp onto the reference grid: real GeoTIFFs in tmp_path, analytic images with known transforms."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from sarreg.errors import InputError, OutputError
from sarreg.synth import write_geotiff
from sarreg.grid import Grid, PixelTransform, centre_to_edge, corrected_geotransform, edge_to_centre
from sarreg.warp import update_georef, warp_to_grid

H, W = 96, 128
UTM = CRS.from_epsg(32631)
REF_T = Affine(10.0, 0, 500000.0, 0, -10.0, 4800000.0)


def _f(xy: np.ndarray) -> np.ndarray:
    """A smooth analytic scene in reference pixel coordinates (bilinear-friendly)."""
    x, y = xy[..., 0], xy[..., 1]
    return (100 + 20 * np.sin(x / 9.0) + 15 * np.cos(y / 7.0) + 0.1 * x).astype(np.float32)


def _grid_xy(h, w):
    return np.stack(np.meshgrid(np.arange(w, dtype=float), np.arange(h, dtype=float)), -1)


def _to_ref(uv: np.ndarray, m: np.ndarray, poly: np.ndarray | None = None) -> np.ndarray:
    """Moving px -> reference px written out term by term (independent of ``PixelTransform.apply``, which the
    warp under test uses): projective ``m`` (x' = (m00 x + m01 y + m02) / (m20 x + m21 y + m22), ...) or, with
    ``poly`` (2 x 6), x' = p0 + p1 x + p2 y + p3 x^2 + p4 x y + p5 y^2 (sarreg.estimate's documented order)."""
    x, y = uv[..., 0], uv[..., 1]
    if poly is not None:
        px, py = poly
        return np.stack([px[0] + px[1] * x + px[2] * y + px[3] * x * x + px[4] * x * y + px[5] * y * y,
                         py[0] + py[1] * x + py[2] * y + py[3] * x * x + py[4] * x * y + py[5] * y * y], -1)
    w = m[2, 0] * x + m[2, 1] * y + m[2, 2]
    return np.stack([(m[0, 0] * x + m[0, 1] * y + m[0, 2]) / w, (m[1, 0] * x + m[1, 1] * y + m[1, 2]) / w], -1)


def _moving(m: np.ndarray, poly: np.ndarray | None = None, h=H, w=W, bands=1) -> np.ndarray:
    """Moving pixel (u, v) shows the scene at reference pixel _to_ref(u, v)."""
    img = _f(_to_ref(_grid_xy(h, w), m, poly)).astype(np.float32)
    return np.stack([img * (b + 1) for b in range(bands)]) if bands > 1 else img


def _check(out, tr, georef, bands=1, tol=0.35, margin=6):
    with rasterio.open(out) as ds:
        assert (ds.width, ds.height, ds.count) == (W, H, bands)
        if georef:
            assert ds.crs == UTM and ds.transform.almost_equals(REF_T)
        arr = ds.read()
        nodata = ds.nodata
    exp = _f(_grid_xy(H, W))
    # interior of the moving footprint: points whose inverse lies well inside the moving raster
    got = arr[0]
    ok = np.isfinite(got) & (got != nodata)
    assert ok.mean() > 0.5
    inner = np.zeros_like(ok)
    inner[margin:-margin, margin:-margin] = True
    sel = ok & inner
    err = np.abs(got[sel] - exp[sel])
    assert np.percentile(err, 99) < tol, np.percentile(err, 99)
    if bands > 1:
        assert np.allclose(arr[1][sel], 2 * got[sel], rtol=1e-4)


def _shift_rot(dx, dy, deg=0.0, s=1.0):
    a = math.radians(deg)
    c = np.array([W / 2, H / 2])
    R = np.array([[s * math.cos(a), -s * math.sin(a)], [s * math.sin(a), s * math.cos(a)]])
    t = c - R @ c + [dx, dy]
    return np.array([[R[0, 0], R[0, 1], t[0]], [R[1, 0], R[1, 1], t[1]], [0, 0, 1]])


@pytest.mark.parametrize("georef", [True, False])
@pytest.mark.parametrize("model", ["shift", "affine", "homography", "poly2"])
def test_warp_reproduces_reference(tmp_path, georef, model):
    m = {"shift": _shift_rot(3.25, -4.5), "affine": _shift_rot(2.5, 1.5, 7.0, 1.05),
         "homography": _shift_rot(2, 2, 3.0) @ np.array([[1, 0, 0], [0, 1, 0], [2e-4, -1e-4, 1]]),
         "poly2": _shift_rot(1, 1)}[model]
    poly = None
    if model == "poly2":
        poly = np.array([[1.0, 1.0, 0.0, 3e-4, 0, 0], [-2.0, 0.0, 1.0, 0, 0, 2e-4]])
    tr = PixelTransform(model, m, poly=poly)
    mov = tmp_path / "moving.tif"
    # the moving raster's own (wrong) georeferencing must be ignored in favour of the estimate
    write_geotiff(mov, _moving(m, poly), Affine(20.0, 0, 100.0, 0, -20.0, 900.0) if georef else None,
                  "EPSG:4326" if georef else None, nodata=-9999.0)
    grid = Grid(W, H, REF_T, UTM.to_wkt()) if georef else Grid(W, H, Affine.identity(), None)
    out = warp_to_grid(mov, tr, grid, tmp_path / "out.tif")
    _check(out, tr, georef)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_a_point_tagged_moving_raster_does_not_tag_the_output(tmp_path):
    """The output lies on the reference grid, whose geotransform is of pixel corners: tagged Area whatever the moving
    raster's AREA_OR_POINT (GDAL's warp copied a Point tag, and readers that ignore the Point shift were half a
    pixel off)."""
    m = _shift_rot(3.25, -4.5)
    mov = write_geotiff(tmp_path / "moving.tif", _moving(m), Affine(20.0, 0, 100.0, 0, -20.0, 900.0), "EPSG:4326")
    with rasterio.open(mov, "r+") as ds:
        ds.update_tags(AREA_OR_POINT="Point")
    for fmt in ("COG", "GTiff"):
        out = warp_to_grid(mov, PixelTransform("shift", m), Grid(W, H, REF_T, UTM.to_wkt()), tmp_path / f"{fmt}.tif",
                           fmt=fmt)
        _check(out, PixelTransform("shift", m), True)
        with rasterio.Env(GTIFF_POINT_GEO_IGNORE=True), rasterio.open(out) as ds:
            assert ds.tags().get("AREA_OR_POINT") == "Area" and ds.transform.almost_equals(REF_T)


def test_tps_multiband_gtiff_nearest(tmp_path):
    m = _shift_rot(2.0, -1.0, 4.0)
    # tie points sampled from the same affine: the TPS must reproduce it
    rng = np.random.default_rng(0)
    src = rng.uniform(0, [W, H], (60, 2))
    dst = _to_ref(src, m)
    tr = PixelTransform("tps", m, tiepoints=np.c_[src, dst])
    mov = tmp_path / "m.tif"
    write_geotiff(mov, _moving(m, bands=3), REF_T, UTM, nodata=0.0)
    grid = Grid(W, H, REF_T, UTM.to_wkt())
    out = warp_to_grid(mov, tr, grid, tmp_path / "o.tif", fmt="GTiff", resampling="bilinear", compress="LZW")
    _check(out, tr, True, bands=3, margin=10)
    with rasterio.open(out) as ds:
        assert ds.profile["compress"] == "lzw" and ds.nodata == 0.0 and ds.dtypes[0] == "float32"


def test_cog_output_has_overviews_and_keeps_dtype(tmp_path):
    img = (np.arange(600 * 1100).reshape(600, 1100) % 251).astype(np.uint16)
    mov = tmp_path / "m.tif"
    write_geotiff(mov, img, None, None)
    out = warp_to_grid(mov, PixelTransform("shift", _shift_rot(1, 0)), Grid(1100, 600, Affine.identity(), None),
                       tmp_path / "o.tif", resampling="nearest")
    with rasterio.open(out) as ds:
        assert ds.dtypes[0] == "uint16" and ds.nodata == 0
        assert ds.overviews(1)
        assert ds.crs is None
        a = ds.read(1)
    assert np.array_equal(a[:, 1:], img[:, :-1])  # moving pixel x lands on reference pixel x + 1


def test_scaled_integers_keep_their_scale_and_signed_bytes_are_refused(tmp_path):
    """int16 dB x 100 declared by scale / offset / unit: the output declares the same (its numbers mean the same
    dB); int8, which GDAL 3.6 warps as 0..255, is refused with the conversion to make, and nothing is written."""
    img = np.full((64, 80), -1130, np.int16)
    mov = tmp_path / "db.tif"
    with rasterio.open(mov, "w", driver="GTiff", width=80, height=64, count=1, dtype="int16") as ds:
        ds.write(img, 1)
        ds.scales, ds.offsets, ds.units = (0.01,), (-30.0,), ("dB",)
    out = warp_to_grid(mov, PixelTransform("shift", _shift_rot(1, 0)), Grid(80, 64, Affine.identity(), None),
                       tmp_path / "o.tif", resampling="nearest")
    with rasterio.open(out) as ds:
        assert (ds.scales, ds.offsets, ds.units) == ((0.01,), (-30.0,), ("dB",)) and ds.read(1)[5, 5] == -1130
    signed = tmp_path / "i8.tif"
    with rasterio.open(signed, "w", driver="GTiff", width=80, height=64, count=1, dtype="int8") as ds:
        ds.write((img // 100).astype(np.int8), 1)
    from osgeo import gdal

    if hasattr(gdal, "GDT_Int8"):
        pytest.skip("this GDAL warps int8 as signed")
    with pytest.raises(InputError, match=r"i8.tif: signed 8-bit pixels \(int8\) cannot be warped .* -ot Int16"):
        warp_to_grid(signed, PixelTransform("shift", _shift_rot(1, 0)), Grid(80, 64, Affine.identity(), None),
                     tmp_path / "o8.tif")
    assert not (tmp_path / "o8.tif").exists()


def test_masks_alpha_and_complex_zeros_survive_the_warp(tmp_path):
    """uint8 with an internal mask: masked pixels (128) stay out of the output (a source nodata 0 made GDAL ignore
    the mask); gray + alpha: the alpha is warped as the output's alpha (it came out all 0); CInt16 without a tag:
    the output's nodata is not 0, whose real-part test made pixels with a zero real part holes."""
    from rasterio.enums import ColorInterp

    img = (np.arange(64 * 80).reshape(64, 80) % 200 + 20).astype(np.uint8)
    keep = np.ones((64, 80), bool)
    keep[:, :20] = False
    grid = Grid(80, 64, Affine.identity(), None)
    prof = dict(driver="GTiff", width=80, height=64, dtype="uint8", tiled=True, blockxsize=16, blockysize=16)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(tmp_path / "m.tif", "w", count=1, **prof) as ds:
        ds.write(np.where(keep, img, 128).astype(np.uint8), 1)
        ds.write_mask(keep.astype(np.uint8) * 255)
    out = warp_to_grid(tmp_path / "m.tif", PixelTransform("shift", _shift_rot(2, 0)), grid, tmp_path / "o.tif",
                       resampling="nearest")
    with rasterio.open(out) as o:
        a, valid = o.read(1), o.read_masks(1) > 0
    assert valid[:, 22:].all() and not valid[:, :22].any() and np.array_equal(a[:, 22:], img[:, 20:78])
    with rasterio.open(tmp_path / "a.tif", "w", count=2, **prof) as ds:
        ds.write(img, 1), ds.write(keep.astype(np.uint8) * 255, 2)
        ds.colorinterp = [ColorInterp.gray, ColorInterp.alpha]
    out = warp_to_grid(tmp_path / "a.tif", PixelTransform("shift", _shift_rot(2, 0)), grid, tmp_path / "oa.tif",
                       resampling="nearest")
    with rasterio.open(out) as o:
        assert o.colorinterp[1] == ColorInterp.alpha and o.read(2)[:, 22:].min() == 255 and o.read(2)[:, :22].max() == 0
    z = (img.astype(np.int16) + 1j * 7).astype(np.complex64)
    z[::4, ::4] = 1j * 5  # real part 0, imaginary part not: data
    with rasterio.open(tmp_path / "c.tif", "w", driver="GTiff", width=80, height=64, count=1,
                       dtype="complex_int16") as ds:
        ds.write(z, 1)
    out = warp_to_grid(tmp_path / "c.tif", PixelTransform("shift", _shift_rot(1, 0)), grid, tmp_path / "oc.tif",
                       resampling="nearest")
    with rasterio.open(out) as o:
        assert o.nodata == -32768 and (o.read_masks(1)[:, 1:] > 0).all()


def test_corrected_geotransform_pure_shift():
    grid = Grid(W, H, REF_T, UTM.to_wkt())
    gt = corrected_geotransform(_shift_rot(2, -3), grid)
    assert gt.almost_equals(REF_T @ Affine.translation(2, -3))


def test_update_georef(tmp_path):
    mov = tmp_path / "m.tif"
    img = _moving(_shift_rot(4, 5))
    write_geotiff(mov, img, REF_T, UTM)
    grid = Grid(W, H, REF_T, UTM.to_wkt())
    out = update_georef(mov, PixelTransform("shift", _shift_rot(4, 5)), grid, tmp_path / "o.tif", fmt="GTiff")
    with rasterio.open(out) as ds:
        assert ds.transform.almost_equals(REF_T @ Affine.translation(4, 5))
        assert np.array_equal(ds.read(1), img)
    with pytest.raises(InputError, match="shift, similarity or affine"):
        update_georef(mov, PixelTransform("homography", np.eye(3)), grid, tmp_path / "o2.tif")


@pytest.mark.parametrize("dtype", ["float32", "uint16"])
def test_the_warps_nodata_values(tmp_path, capfd, dtype):
    """``warp_to_grid(nodata=...)`` / ``update_georef(nodata=...)``: the file's tag ("auto"), a given value (kept out
    of the resampling, declared), "none" (the tag ignored: its pixels are data), and a value the type cannot hold
    (NaN or -9999 in uint16: no nodata, without GDAL's "rounded to 0" warning); the byte copy's tag likewise."""
    mov = tmp_path / "m.tif"
    img = np.round(_moving(np.eye(3))).astype(dtype)
    img[:, :8] = 7
    write_geotiff(mov, img, REF_T, UTM, nodata=0, compress="deflate")
    grid = Grid(W, H, REF_T, UTM.to_wkt())
    tr = PixelTransform("shift", np.eye(3))
    nan = float("nan")
    want = {"auto": 0.0, 7.0: 7.0, "none": nan if dtype == "float32" else 0.0,
            -9999.0: -9999.0 if dtype == "float32" else 0.0, "nan": nan if dtype == "float32" else 0.0}
    for i, (nd, declared) in enumerate(want.items()):
        out = warp_to_grid(mov, tr, grid, tmp_path / f"w{i}.tif", "nearest", "GTiff", nodata=nd)
        with rasterio.open(out) as ds:
            assert ds.nodata == declared or (math.isnan(declared) and math.isnan(ds.nodata)), (nd, ds.nodata)
            a = ds.read(1)
        assert (a[:, :8] == (7 if nd != 7.0 else declared)).all() and np.array_equal(a[:, 8:], img[:, 8:])
    for i, (nd, declared) in enumerate({None: 0.0, 7.0: 7.0, "none": None, "nan": nan}.items()):
        out = update_georef(mov, tr, grid, tmp_path / f"g{i}.tif", fmt="GTiff", compress="DEFLATE", nodata=nd)
        with rasterio.open(out) as ds:
            declared = None if dtype == "uint16" and nd == "nan" else declared
            assert ds.nodata == declared or (declared is not None and math.isnan(declared) and math.isnan(ds.nodata))
            assert np.array_equal(ds.read(1), img)
    assert "Warning" not in capfd.readouterr().err


@pytest.mark.parametrize("dtype", ["float32", "int16"])
def test_bands_with_nodata_tags_of_their_own_keep_them_out_of_the_warp(tmp_path, dtype, caplog):
    """A VRT stacking two rasters (VV: nodata 0 over its left 20 columns, VH in dB: nodata -9999 over its right 20)
    is warped with each band's own tag; the output declares one value (a GeoTIFF holds one) that marks both holes.
    It was warped with band 1's 0 for both: VH's -9999 came out as data, declared valid and mixed into its edge."""
    from osgeo import gdal

    vv = np.round(_moving(np.eye(3))).astype(dtype)
    vh = (vv // 4 - 30).astype(dtype)
    vv[:, :20] = 0
    vh[:, -20:] = -9999
    write_geotiff(tmp_path / "vv.tif", vv, REF_T, UTM, nodata=0)
    write_geotiff(tmp_path / "vh.tif", vh, REF_T, UTM, nodata=-9999)
    vrt = tmp_path / "m.vrt"
    gdal.BuildVRT(str(vrt), [str(tmp_path / "vv.tif"), str(tmp_path / "vh.tif")], separate=True).FlushCache()
    grid = Grid(W, H, REF_T, UTM.to_wkt())
    out = warp_to_grid(vrt, PixelTransform("shift", _shift_rot(0.5, 0)), grid, tmp_path / "o.tif", "bilinear", "GTiff")
    # the --update-georef copy keeps the pixels and declares band 1's tag: the user is told VH's stays data
    with caplog.at_level(logging.WARNING, logger="sarreg.warp"):
        update_georef(vrt, PixelTransform("shift", np.eye(3)), grid, tmp_path / "g.tif")
    assert any("declare nodata 0.0 / -9999.0" in r.getMessage() for r in caplog.records), caplog.records
    with rasterio.open(out) as ds:
        assert np.array_equal(ds.nodatavals[:1], ds.nodatavals[1:], equal_nan=True)
        a, valid = ds.read(), ds.read_masks() > 0
    # reference column x shows moving column x - 0.5 (bilinear: valid when one neighbour is): VV from column 20,
    # VH up to column W - 20
    assert not valid[0][:, :20].any() and valid[0][:, 21:].all()
    assert valid[1][:, 1:W - 21].all() and not valid[1][:, W - 19:].any()
    assert a[1][valid[1]].min() >= vh[:, :-20].min() and a[0][valid[0]].min() >= vv[:, 20:].min()


def test_bands_of_several_types_are_written_in_one_type_that_holds_them_all(tmp_path):
    """A VRT stacking uint16 VV amplitude and float32 VH in dB: the warp and the --update-georef copy are float32,
    VH keeps its values. Both were written in band 1's uint16: VH came out all 0 (its negative dB cast, then nodata)."""
    from osgeo import gdal

    vv = np.round(_moving(np.eye(3)) * 10).astype(np.uint16)
    vh = (-_moving(np.eye(3)) / 10).astype(np.float32)
    write_geotiff(tmp_path / "vv.tif", vv, REF_T, UTM, nodata=0)
    write_geotiff(tmp_path / "vh.tif", vh, REF_T, UTM, nodata=-9999)
    vrt = tmp_path / "m.vrt"
    gdal.BuildVRT(str(vrt), [str(tmp_path / "vv.tif"), str(tmp_path / "vh.tif")], separate=True).FlushCache()
    grid = Grid(W, H, REF_T, UTM.to_wkt())
    tr = PixelTransform("shift", np.eye(3))
    for out in (warp_to_grid(vrt, tr, grid, tmp_path / "w.tif", "nearest", "GTiff"),
                update_georef(vrt, tr, grid, tmp_path / "g.tif")):
        with rasterio.open(out) as ds:
            assert ds.dtypes == ("float32", "float32")
            assert np.array_equal(ds.read(1), vv) and np.array_equal(ds.read(2), vh)


@pytest.mark.parametrize("dtype", ["float32", "int16"])
def test_a_second_fill_beside_the_tag_is_warped_as_the_tag(tmp_path, dtype, caplog):
    """``nodata=(tag, fill)`` (``Scene.warp_nodata`` of a file whose tag 0 marks a strip while -9999 fills another
    part): the fill is kept out of the bilinear resampling like the tag and written as the tag; with the tag alone
    ("file") the fill is resampled as data, into the pixels along its edge. ``update_georef`` copies the pixels
    unchanged and keeps the tag, and says that the fill stays data in the copy."""
    mov = tmp_path / "m.tif"
    img = np.round(_moving(np.eye(3)) * 100).astype(dtype) + 1
    img[:, :8] = 0
    img[:, -40:] = -9999
    write_geotiff(mov, img, REF_T, UTM, nodata=0, compress="deflate")
    grid = Grid(W, H, REF_T, UTM.to_wkt())
    tr = PixelTransform("shift", _shift_rot(0.5, 0.5))
    got = {}
    for nd in ("file", (0.0, -9999.0), [0.0, -9999.0]):
        out = warp_to_grid(mov, tr, grid, tmp_path / f"w{len(got)}.tif", "bilinear", "GTiff", nodata=nd)
        with rasterio.open(out) as ds:
            assert ds.nodata == 0
            got[str(nd)] = ds.read(1)
    mixed = got["file"]
    assert (mixed < -100).sum() > H  # the fill and the edge cells that mix it with data
    for a in (got["(0.0, -9999.0)"], got["[0.0, -9999.0]"]):
        assert a.min() > -100 and (a == 0).sum() > (mixed == 0).sum() + 30 * H
        inside = (a != 0) & (mixed != 0) & (mixed > -100)
        assert np.array_equal(a[inside], mixed[inside])
    with caplog.at_level(logging.WARNING, logger="sarreg.io.fill"):
        out = update_georef(mov, tr, grid, tmp_path / "g.tif", fmt="GTiff", nodata=(0.0, -9999.0))
    with rasterio.open(out) as ds:
        assert ds.nodata == 0 and np.array_equal(ds.read(1), img)
    assert [r.getMessage() for r in caplog.records] == [
        f"{mov}: --update-georef copies the pixels unchanged: the fill value -9999 stays data beside the nodata tag 0 "
        "(the warped output, without --update-georef, reads both as nodata)"]


@pytest.mark.parametrize("fmt,compress,kept", [("GTiff", "DEFLATE", True), ("GTiff", "LZW", False),
                                                ("COG", "DEFLATE", False), ("auto", "LZW", True)])
def test_update_georef_keeps_the_bytes_when_the_encoding_matches(tmp_path, fmt, compress, kept):
    """GTiff output with the input's own compression, or the default "auto" whatever --compress says: the file's
    encoding is kept as is (its 256 px blocks, not the 512 px re-encoding), only the georeferencing changes;
    otherwise a re-encoded copy. Same pixels either way."""
    mov = tmp_path / "m.tif"
    img = _moving(_shift_rot(4, 5))
    write_geotiff(mov, img, REF_T, UTM, nodata=0, compress="deflate")
    grid = Grid(W, H, REF_T, UTM.to_wkt())
    out = update_georef(mov, PixelTransform("shift", _shift_rot(4, 5)), grid, tmp_path / "o.tif", fmt=fmt,
                        compress=compress)
    with rasterio.open(mov) as a, rasterio.open(out) as b:
        assert b.transform.almost_equals(REF_T @ Affine.translation(4, 5)) and b.crs == a.crs
        assert np.array_equal(b.read(1), img) and b.nodata == a.nodata
        assert (b.block_shapes == a.block_shapes and b.compression == a.compression) == kept
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*"))  # no temporary left behind


def test_update_georef_auto_re_encodes_what_it_cannot_keep(tmp_path):
    """"auto" on an input whose bytes cannot be kept (here a VRT, not a GeoTIFF) gives a COG."""
    from osgeo import gdal

    img = _moving(_shift_rot(4, 5))
    write_geotiff(tmp_path / "m.tif", img, REF_T, UTM, nodata=0)
    mov = tmp_path / "m.vrt"
    gdal.Translate(str(mov), str(tmp_path / "m.tif"), format="VRT")
    grid = Grid(W, H, REF_T, UTM.to_wkt())
    out = update_georef(mov, PixelTransform("shift", _shift_rot(4, 5)), grid, tmp_path / "o.tif")
    with rasterio.open(out) as b:
        assert b.driver == "GTiff" and b.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert np.array_equal(b.read(1), img) and b.transform.almost_equals(REF_T @ Affine.translation(4, 5))


def test_output_checks(tmp_path):
    mov = tmp_path / "m.tif"
    write_geotiff(mov, np.ones((32, 32), np.float32), None, None)
    before = mov.read_bytes()
    grid = Grid(32, 32, Affine.identity(), None)
    tr = PixelTransform("shift", np.eye(3))
    with pytest.raises(OutputError, match="same file as input"):
        warp_to_grid(mov, tr, grid, mov, overwrite=True)
    (tmp_path / "o.tif").write_text("x")
    with pytest.raises(OutputError, match="exists"):
        warp_to_grid(mov, tr, grid, tmp_path / "o.tif")
    with pytest.raises(OutputError, match="does not exist"):
        warp_to_grid(mov, tr, grid, tmp_path / "nope" / "o.tif")
    assert mov.read_bytes() == before
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        import os

        if os.access(d, os.W_OK):  # running as root: permissions are not enforced
            pytest.skip("cannot make a read-only folder as this user")
        with pytest.raises(OutputError, match="not writable"):
            warp_to_grid(mov, tr, grid, d / "o.tif")
    finally:
        d.chmod(0o700)


@pytest.mark.parametrize("fmt", ["COG", "GTiff"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32", "float64", "complex64", "complex_int16"])
def test_every_dtype_warps_with_matching_creation_options(tmp_path, dtype, fmt):
    """Predictor 2 for integers, 3 for float32/64 only, none for complex (GDAL refuses 3 on CFloat32/CInt16)."""
    a = (np.arange(H * W).reshape(H, W) % 200 + 1).astype(np.float64)
    src = tmp_path / f"{dtype}.tif"
    if dtype.startswith("complex"):
        with rasterio.open(src, "w", driver="GTiff", width=W, height=H, count=1, dtype=dtype, crs=UTM,
                           transform=REF_T) as ds:
            ds.write((a + 1j * a).astype("complex64")[None])
    else:
        write_geotiff(src, a.astype(dtype), REF_T, UTM)
    tr = PixelTransform("shift", np.array([[1, 0, 2.0], [0, 1, 3.0], [0, 0, 1]]))
    out = warp_to_grid(src, tr, Grid(W, H, REF_T, UTM.to_wkt()), tmp_path / "out.tif", "nearest", fmt)
    with rasterio.open(out) as ds:
        assert ds.dtypes[0] == dtype
        pred = ds.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR")
        v = ds.read(1)
        nodata = ds.nodata
    # the fill is flagged as nodata in a value the type holds and no measurement takes: NaN for float / complex
    # float, the minimum of a signed integer type (0 is 0 dB in dB x 100; CInt16: GDAL tests the real part alone),
    # 0 for unsigned types
    if dtype in ("float32", "float64", "complex64"):
        assert nodata is not None and np.isnan(nodata)
    else:
        assert nodata == (-32768 if dtype in ("int16", "complex_int16") else 0)
    assert pred == ({"float32": "3", "float64": "3"}.get(dtype, None if dtype.startswith("complex") else "2"))
    assert v[13, 12] == (a[10, 10] * (1 + 1j) if dtype.startswith("complex") else a[10, 10])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, "out.tif"])


def test_pixel_transform_apply_known_answers():
    """Hand-computed points: translation, projective division, and the poly2 term order [1, x, y, x², xy, y²]."""
    shift = PixelTransform("shift", np.array([[1, 0, 3.25], [0, 1, -4.5], [0, 0, 1.0]]))
    assert np.allclose(shift.apply([[0, 0], [10, 20]]), [[3.25, -4.5], [13.25, 15.5]])
    homog = PixelTransform("homography", np.array([[2, 0, 1], [0, 1, 0], [0.1, 0, 1.0]]))
    assert np.allclose(homog.apply([[10, 4]]), [[21 / 2, 4 / 2]])  # w = 0.1 * 10 + 1 = 2
    poly = np.array([[1.0, 1.0, 0.0, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0, 2.0, 0.25]])
    p2 = PixelTransform("poly2", np.eye(3), poly=poly)
    assert np.allclose(p2.apply([[2, 4]]), [[1 + 2 + 0.5 * 4, 4 + 2 * 8 + 0.25 * 16]])  # [5, 24]
    # pixel-edge <-> pixel-centre forms: a scale by 2 about the top-left corner moves centre (0, 0) to (0.5, 0.5)
    edge = np.diag([2.0, 2.0, 1.0])
    assert np.allclose(edge_to_centre(edge), [[2, 0, 0.5], [0, 2, 0.5], [0, 0, 1]])
    assert np.allclose(centre_to_edge(edge_to_centre(edge)), edge)


def test_untagged_integer_rasters_keep_fill_and_data_apart(tmp_path):
    """uint16 amplitude with a zero border and no nodata tag (the Sentinel-1 GRD layout): the border stays nodata in
    the output (0) instead of becoming DN 1 data, and no data pixel is 0. int16 dB x 100 with no tag: pixels at 0 dB
    stay data, the output's nodata being the type's minimum."""
    grid = Grid(W, H, REF_T, UTM.to_wkt())
    tr = PixelTransform("shift", np.eye(3))
    amp = np.round(_moving(np.eye(3)) * 10).astype(np.uint16)  # ~ 650-1350 DN
    amp[:, :20] = 0
    write_geotiff(tmp_path / "amp.tif", amp, REF_T, UTM)
    for resampling in ("nearest", "bilinear"):  # (moved by half a pixel: resampled, not copied)
        out = warp_to_grid(tmp_path / "amp.tif", PixelTransform("shift", _shift_rot(0.5, 0.5)), grid,
                           tmp_path / f"amp_{resampling}.tif", resampling, "GTiff")
        with rasterio.open(out) as ds:
            a, nodata = ds.read(1), ds.nodata
        assert nodata == 0 and (a[1:, :20] == 0).all() and (a[1:, 22:] > 100).all(), resampling
    db = np.round((_moving(np.eye(3)) - 120) * 10).astype(np.int16)  # -6 .. +6 dB x 100, zeros among them
    db[:4, :4] = 0
    write_geotiff(tmp_path / "db.tif", db, REF_T, UTM)
    out = warp_to_grid(tmp_path / "db.tif", tr, grid, tmp_path / "db_out.tif", "nearest", "GTiff")
    with rasterio.open(out) as ds:
        a, nodata, valid = ds.read(1), ds.nodata, ds.read_masks(1) > 0
    assert nodata == -32768 and np.array_equal(a, db) and valid.all()


def test_untagged_linear_float_zero_border_stays_out_of_the_warp(tmp_path):
    """float32 linear power with a zero border and no nodata tag (a SNAP sigma0 export): register reads 0 as no
    data, and the warp does too: the output declares nodata 0, no valid pixel is 0 and none blends 0 into data (a
    darkened rim). Before, 0 was warped as data under a NaN nodata. In dB, 0 is data."""
    from sarreg.io.raster import open_scene

    grid = Grid(W, H, REF_T, UTM.to_wkt())
    lin = _moving(np.eye(3)).astype(np.float32)  # ~ 65-135, positive: linear power
    lin[:, :20] = 0
    write_geotiff(tmp_path / "lin.tif", lin, REF_T, UTM)
    sc = open_scene(tmp_path / "lin.tif")
    assert sc.kind == "linear" and sc.nodata == 0.0 and sc.nodata_from == "found" and sc.warp_nodata == 0.0
    out = warp_to_grid(tmp_path / "lin.tif", PixelTransform("shift", _shift_rot(0.5, 0.5)), grid,
                       tmp_path / "lin_out.tif", "bilinear", "GTiff", nodata=sc.warp_nodata)
    with rasterio.open(out) as ds:
        a, valid = ds.read(1), ds.read_masks(1) > 0
        assert ds.nodata == 0
    assert not valid[1:, :20].any() and valid[1:, 22:].all() and a[valid].min() > 0.8 * lin[:, 20:].min()
    db = (10 * np.log10(lin[:, 20:]) - 20).astype(np.float32)  # -1.9 .. +1.3 dB, exact zeros among them
    db[:4, :4] = 0
    write_geotiff(tmp_path / "db.tif", db, REF_T, UTM)
    assert open_scene(tmp_path / "db.tif").zero is None


def _slc(tmp_path, dtype="complex64", h=768, w=768, nodata=None, scale=1.0):
    """A speckled SLC-like complex raster (random phase, 8 px of nodata 0 on the left), georeferenced on REF_T."""
    rng = np.random.default_rng(5)
    amp = scale * np.sqrt(rng.gamma(1.0, 1.0, (h, w)))
    z = amp * np.exp(1j * rng.uniform(0, 2 * np.pi, (h, w)))
    if dtype == "complex_int16":
        z = np.round(z.real) + 1j * np.round(z.imag)
    z[:, :8] = 0
    p = tmp_path / f"slc_{dtype}.tif"
    with rasterio.open(p, "w", driver="GTiff", width=w, height=h, count=1, dtype=dtype, crs=UTM, transform=REF_T,
                       nodata=nodata, tiled=True, blockxsize=128, blockysize=128) as ds:
        ds.write(z.astype(np.complex64), 1)
    return p, z


def test_complex_rasters_are_warped_by_nearest_and_keep_their_intensity(tmp_path, caplog):
    """Interpolating complex values mixes speckle phases (median |z|^2 0.082 -> 0.032 on a CFloat32 scene): the
    default ("auto") warp of complex data copies pixels and its COG overviews are NEAREST; a resampling the user
    asks for is used, with one warning, and the overviews stay NEAREST."""
    import sarreg.io.complex_data as cd

    src, z = _slc(tmp_path)
    med = np.median(np.abs(z[:, 8:]) ** 2)
    grid = Grid(768, 768, REF_T, UTM.to_wkt())  # (over 512 px: the COG has overviews)
    tr = PixelTransform("shift", np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]]))  # half a pixel: resampled
    out = warp_to_grid(src, tr, grid, tmp_path / "auto.tif")
    with rasterio.open(out) as ds:
        a, ok = ds.read(1), ds.read_masks(1) > 0
        ov = ds.read(1, out_shape=(384, 384))  # (the overview)
        assert ds.overviews(1)
    assert abs(np.median(np.abs(a[ok]) ** 2) / med - 1) < 0.05
    assert abs(np.median(np.abs(ov[ov != 0]) ** 2) / med - 1) < 0.1  # NEAREST overviews; AVERAGE: about 1/4
    cd._WARNED.clear()
    with caplog.at_level(logging.WARNING, logger="sarreg"):
        for name in ("b1.tif", "b2.tif"):
            out = warp_to_grid(src, tr, grid, tmp_path / name, resampling="bilinear")
    assert sum("interpolates complex" in r.getMessage() for r in caplog.records) == 1
    with rasterio.open(out) as ds:
        a, ok = ds.read(1), ds.read_masks(1) > 0
        ov = ds.read(1, out_shape=(384, 384))
    assert np.median(np.abs(a[ok]) ** 2) / med < 0.7  # (what bilinear does to phases: the user's choice)
    got = np.median(np.abs(ov[ov != 0]) ** 2) / np.median(np.abs(a[ok]) ** 2)
    assert abs(got - 1) < 0.1
    cd._WARNED.clear()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sarreg"):
        out = update_georef(src, tr, grid, tmp_path / "g.tif", fmt="COG")
    assert not caplog.records
    with rasterio.open(out) as ds:
        ov = ds.read(1, out_shape=(384, 384))
    assert abs(np.median(np.abs(ov[ov != 0]) ** 2) / med - 1) < 0.1  # the COG driver's default CUBIC mixed phases


def _hidden(path) -> tuple[float, float]:
    """Share of the grid GDAL reads as valid, and of the data pixels (not 0 + 0j) GDAL's mask hides (its nodata test
    on complex integers looks at the real part alone)."""
    with rasterio.open(path) as ds:
        z, ok = ds.read(1), ds.read_masks(1) > 0
    data = (z.real != 0) | (z.imag != 0)
    return float(ok.mean()), float((data & ~ok).sum() / max(1, data.sum()))


def test_cint16_with_nodata_0_loses_no_data_pixels_to_gdals_mask(tmp_path):
    """CInt16 SLC with nodata 0: GDAL reads a pixel whose real part is 0 as nodata. An interpolating warp made 7 % of
    the data pixels such holes (a plain gdalwarp onto the same grid: none); now the warp's data pixels are read as
    data, by default (nearest) and with --resampling bilinear (the real part moved one step off 0)."""
    from osgeo import gdal

    src, z = _slc(tmp_path, "complex_int16", nodata=0, scale=3.0)  # small amplitudes: many real parts near 0
    grid = Grid(768, 768, REF_T, UTM.to_wkt())
    gw = gdal.Warp(str(tmp_path / "gw.tif"), str(src), outputBounds=(500000, 4800000 - 7680, 507680, 4800000),
                   xRes=10, yRes=10, resampleAlg="bilinear")
    gw = None
    ok_gw, hidden_gw = _hidden(tmp_path / "gw.tif")
    tr = PixelTransform("shift", np.array([[1, 0, 0.3], [0, 1, -0.2], [0, 0, 1]]))  # what register might estimate
    for rs in ("auto", "bilinear"):
        out = warp_to_grid(src, tr, grid, tmp_path / f"{rs}.tif", resampling=rs, fmt="GTiff")
        ok, hidden = _hidden(out)
        assert hidden == hidden_gw == 0.0, (rs, hidden, hidden_gw)
        assert abs(ok - ok_gw) < 0.01, (rs, ok, ok_gw)
    with rasterio.open(out) as ds:
        a = ds.read(1)
    assert abs(np.mean(a.real[a.real != 0])) < 0.05 * np.std(a.real[a.real != 0])  # (no bias from the moved parts)
