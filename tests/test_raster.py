"""Reading SAR rasters: dtypes, nodata, band choice and the bad inputs that must fail clearly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from sarreg.config import PreprocessConfig
from sarreg.errors import InputError
from sarreg.io.raster import image_to_unit, open_scene, read_unit
from sarreg.synth import reflectivity, speckle


@pytest.fixture
def intensity(rng: np.random.Generator) -> np.ndarray:
    return speckle(reflectivity(96, 128, seed=1), 4, rng).astype(np.float32)


def test_linear_db_amplitude_complex_agree(geotiff_factory, intensity: np.ndarray) -> None:
    """The same scene stored as linear power, dB, uint16 amplitude or complex gives the same network input."""
    amp = np.sqrt(intensity)
    files = {
        "linear": geotiff_factory(intensity, "lin.tif"),
        "db": geotiff_factory(10 * np.log10(intensity), "db.tif"),
        "amplitude": geotiff_factory(np.round(amp / amp.max() * 60000).clip(1), "amp.tif", dtype="uint16"),
        "complex": geotiff_factory(amp * np.exp(1j * 0.3), "c.tif", dtype="complex64"),
    }
    units = {}
    for kind, path in files.items():
        sc = open_scene(path)
        assert sc.kind == {"db": "db", "amplitude": "amplitude"}.get(kind, "linear")
        units[kind], valid = read_unit(sc)
        assert valid.all() and units[kind].min() >= 0 and units[kind].max() <= 1
    for kind in ("db", "complex"):
        assert np.abs(units[kind] - units["linear"]).max() < 1e-3
    assert np.abs(units["amplitude"] - units["linear"]).max() < 0.02  # uint16 quantisation


def test_nodata_and_nan_are_masked(geotiff_factory, intensity: np.ndarray) -> None:
    a = intensity.copy()
    a[:10] = 0
    a[50, 50] = np.nan
    sc = open_scene(geotiff_factory(a, nodata=0))
    unit, valid = read_unit(sc)
    assert not valid[:10].any() and not valid[50, 50] and valid[20:40].all()
    assert np.isfinite(unit).all()


def test_windowed_decimated_read(geotiff_factory, intensity: np.ndarray) -> None:
    sc = open_scene(geotiff_factory(intensity))
    unit, valid = read_unit(sc, Window(8, 4, 64, 32), (16, 32))
    assert unit.shape == valid.shape == (16, 32)


def test_vv_band_chosen_by_description(tmp_path: Path, intensity: np.ndarray) -> None:
    p = tmp_path / "dual.tif"
    with rasterio.open(p, "w", driver="GTiff", width=128, height=96, count=2, dtype="float32",
                       crs="EPSG:32631", transform=rasterio.transform.from_origin(0, 0, 10, 10)) as d:
        d.write(np.stack([intensity * 0.1, intensity]))
        d.set_band_description(1, "VH")
        d.set_band_description(2, "VV")
    assert open_scene(p).band == 2
    assert open_scene(p, PreprocessConfig(band=1)).band == 1
    with pytest.raises(InputError, match="band 3 out of range"):
        open_scene(p, PreprocessConfig(band=3))


def test_bad_inputs(tmp_path: Path, geotiff_factory) -> None:
    with pytest.raises(InputError, match="file not found"):
        open_scene(tmp_path / "missing.tif")
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        open_scene(tmp_path / "empty.tif")
    (tmp_path / "text.tif").write_text("not a raster at all\n" * 10)
    with pytest.raises(InputError, match="not a readable raster"):
        open_scene(tmp_path / "text.tif")
    with pytest.raises(InputError, match="all pixels are nodata"):
        open_scene(geotiff_factory(np.zeros((32, 32)), "nd.tif", nodata=0))
    with pytest.raises(InputError, match=r"constant image \(every valid pixel of band 1 is 3\)"):
        open_scene(geotiff_factory(np.full((32, 32), 3.0), "const.tif"))
    with pytest.raises(InputError, match="all pixels are nodata"):
        open_scene(geotiff_factory(np.full((32, 32), np.nan), "nan.tif"))


def test_truncated_file(tmp_path: Path, geotiff_factory, intensity: np.ndarray) -> None:
    p = geotiff_factory(intensity, "full.tif")
    data = p.read_bytes()
    t = tmp_path / "trunc.tif"
    t.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=str(t.name)):
        sc = open_scene(t)
        read_unit(sc)


def test_image_to_unit_matches_file_path(geotiff_factory, intensity: np.ndarray) -> None:
    u_mem, _ = image_to_unit(intensity)
    u_file, _ = read_unit(open_scene(geotiff_factory(intensity)))
    assert np.abs(u_mem - u_file).max() < 1e-5


def test_pixel_centre_map_convention(geotiff_factory, intensity: np.ndarray) -> None:
    sc = open_scene(geotiff_factory(intensity))  # origin (500000, 5000000), 10 m pixels
    m = sc.xy_to_map(np.array([[0.0, 0.0], [2.0, 3.0]]))
    assert np.allclose(m, [[500005.0, 4999995.0], [500025.0, 4999965.0]])
    assert np.allclose(sc.map_to_xy(m), [[0, 0], [2, 3]])


def test_display_images_treat_zero_as_fill(tmp_path: Path, intensity: np.ndarray) -> None:
    import cv2

    img = np.clip(10 * np.log10(intensity) * 8 + 128, 1, 255).astype(np.uint8)
    img[:, :30] = 0  # black border left by a warp
    p = tmp_path / "q.png"
    cv2.imwrite(str(p), img)
    sc = open_scene(p)
    assert sc.kind == "display"
    unit, valid = read_unit(sc)
    assert not valid[:, :30].any() and valid[:, 30:].all()


def _nodata_border_scene(intensity: np.ndarray) -> np.ndarray:
    a = intensity.copy()
    a[:13] = 0
    a[:, :21] = 0
    a[60, 70] = np.nan
    return a


@pytest.mark.parametrize("shape", [None, (48, 64), (31, 47)])
def test_nodata_validity_from_values_matches_gdal_mask(geotiff_factory, intensity: np.ndarray,
                                                       shape: tuple[int, int] | None) -> None:
    """A nodata-only file: validity from the values of the read equals GDAL's nodata mask at full resolution and
    covers every cell that holds any valid pixel when decimated (average resampling skips nodata)."""
    a = _nodata_border_scene(intensity)
    p = geotiff_factory(a, "nd_border.tif", nodata=0, compress="deflate")
    sc = open_scene(p)
    with rasterio.open(p) as ds:
        assert ds.mask_flag_enums[0] == [rasterio.enums.MaskFlags.nodata]
        gdal_mask = ds.read_masks(1) > 0
    unit, valid = read_unit(sc, None, shape)
    assert np.isfinite(unit).all()
    if shape is None:
        assert np.array_equal(valid, gdal_mask & np.isfinite(a))
    else:
        # a decimated cell is valid when it is entirely valid data, never when entirely nodata
        h, w = a.shape
        ys = (np.arange(shape[0]) + 0.5) * h / shape[0]
        xs = (np.arange(shape[1]) + 0.5) * w / shape[1]
        cell_h, cell_w = h / shape[0], w / shape[1]
        full = ((ys - cell_h / 2)[:, None] >= 13) & ((xs - cell_w / 2)[None, :] >= 21)
        empty = ((ys + cell_h / 2)[:, None] <= 13) | ((xs + cell_w / 2)[None, :] <= 21)
        assert valid[full & np.isfinite(unit)].sum() >= full.sum() - 4  # NaN pixel may spoil a cell or two
        assert not valid[empty].any()


def test_window_read_of_nodata_border(geotiff_factory, intensity: np.ndarray) -> None:
    a = _nodata_border_scene(intensity)
    sc = open_scene(geotiff_factory(a, "nd_win.tif", nodata=0))
    _, valid = read_unit(sc, Window(10, 5, 40, 30))
    assert not valid[:8].any() and not valid[:, :11].any() and valid[8:, 11:].all()
    _, valid = read_unit(sc, Window(10, 5, 40, 30), (15, 20))
    assert not valid[:3].any() and not valid[:, :5].any() and valid[5:, 6:].all()


def test_internal_dataset_mask_is_used(tmp_path: Path, intensity: np.ndarray) -> None:
    """A real per-dataset mask band (no nodata value) decides validity, full resolution and decimated."""
    p = tmp_path / "masked.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(p, "w", driver="GTiff", width=128, height=96, count=1, dtype="float32", tiled=True,
                           blockxsize=32, blockysize=32, crs="EPSG:32631",
                           transform=rasterio.transform.from_origin(0, 0, 10, 10)) as d:
            d.write(intensity, 1)
            m = np.full(intensity.shape, 255, np.uint8)
            m[:, 64:] = 0  # valid values there, masked out by the mask band only
            d.write_mask(m)
    with rasterio.open(p) as ds:
        assert rasterio.enums.MaskFlags.per_dataset in ds.mask_flag_enums[0]
    sc = open_scene(p)
    _, valid = read_unit(sc)
    assert valid[:, :64].all() and not valid[:, 64:].any()
    _, valid = read_unit(sc, None, (48, 64))
    assert valid[:, :32].all() and not valid[:, 32:].any()
    _, valid = read_unit(sc, Window(48, 0, 32, 32))
    assert valid[:, :16].all() and not valid[:, 16:].any()


def test_alpha_band_is_used(tmp_path: Path, intensity: np.ndarray) -> None:
    p = tmp_path / "alpha.tif"
    alpha = np.full(intensity.shape, 255, np.uint8)
    alpha[:40] = 0
    img = np.clip(10 * np.log10(intensity) * 8 + 128, 1, 255).astype(np.uint8)
    with rasterio.open(p, "w", driver="GTiff", width=128, height=96, count=2, dtype="uint8",
                       photometric="MINISBLACK", alpha="YES", crs="EPSG:32631",
                       transform=rasterio.transform.from_origin(0, 0, 10, 10)) as d:
        d.write(np.stack([img, alpha]))
        d.colorinterp = [rasterio.enums.ColorInterp.gray, rasterio.enums.ColorInterp.alpha]
    with rasterio.open(p) as ds:
        assert rasterio.enums.MaskFlags.alpha in ds.mask_flag_enums[0]
    _, valid = read_unit(open_scene(p))
    assert not valid[:40].any() and valid[40:].all()


def test_overviews_are_read_when_present(geotiff_factory, intensity: np.ndarray) -> None:
    """With overviews a decimated read uses them (GDAL picks the overview level), nodata still masked."""
    a = _nodata_border_scene(np.tile(intensity, (4, 4)))
    p = geotiff_factory(a, "ovr.tif", nodata=0)
    with rasterio.open(p, "r+") as ds:  # nearest overview: distinguishable from an average of the full resolution
        ds.build_overviews([4], rasterio.enums.Resampling.nearest)
    with rasterio.open(p, "r", OVERVIEW_LEVEL=0) as ov:
        ov_vals = ov.read(1)
    sc = open_scene(p)
    unit, valid = read_unit(sc, None, ov_vals.shape)
    direct = ov_vals.astype(np.float32)
    ok = (direct != 0) & np.isfinite(direct)
    assert np.array_equal(valid, ok)
    lin = 10 * np.log10(np.where(ok, direct, 1))
    expect = np.clip((lin - sc.lo) / (sc.hi - sc.lo), 0, 1)
    assert np.abs(unit[ok] - expect[ok]).max() < 1e-5


@pytest.mark.parametrize("shape", [(64, 1), (1, 64), (40, 300)])
def test_prior_of_thin_rasters_is_the_georeferencing(geotiff_factory, shape) -> None:
    """The prior (moving px -> reference px from the two geotransforms) is exact for one-pixel-wide rasters too:
    the fit's sample grid spans the raster's extent, not only its pixel centres (which are one column there)."""
    from sarreg.relate import prior_matrix

    a = np.random.default_rng(0).random(shape) + 1.0
    ref = open_scene(geotiff_factory(a, "r.tif", origin=(500000.0, 5000000.0), pixel=10.0))
    mov = open_scene(geotiff_factory(a, "m.tif", origin=(500030.0, 4999980.0), pixel=20.0))
    expect = np.array([[2.0, 0, 3.0 + 0.5], [0, 2.0, 2.0 + 0.5], [0, 0, 1]])  # centres: x_r = 2 x_m + 3.5
    assert np.allclose(prior_matrix(ref, mov), expect, atol=1e-6)


@pytest.mark.parametrize("form", ["linear_nodata_0", "db_minus_inf", "uint16_nodata_0", "cint16_nodata_0"])
def test_scattered_zero_power_pixels_are_dark_not_holes(geotiff_factory, intensity: np.ndarray, form: str,
                                                        tmp_path: Path) -> None:
    """5 % of the pixels at zero power, scattered (speckle zeros, quantised dark pixels), stay valid as the scene's
    darkest value, in any of the forms a zero takes (0 that is also the nodata value, -inf dB, DN 0, complex 0); a
    zero-filled border stays invalid. Holes at every twentieth pixel would leave no keypoint and no correlation
    window. A complex pixel whose real part alone is 0 is a measurement, not nodata."""
    rng = np.random.default_rng(4)
    img = intensity.copy()
    img[rng.random(img.shape) < 0.05] = 0.0
    img[:, :16] = 0.0  # border: an area, not isolated pixels
    if form == "linear_nodata_0":
        path = geotiff_factory(img, "z.tif", nodata=0.0)
    elif form == "db_minus_inf":
        with np.errstate(divide="ignore"):
            db = 10 * np.log10(img)
        db[:, :16] = np.nan
        path = geotiff_factory(db.astype(np.float32), "z.tif")
    elif form == "uint16_nodata_0":
        path = geotiff_factory(np.round(np.sqrt(img) * 300).astype(np.uint16), "z.tif", nodata=0, dtype="uint16")
    else:
        z = np.round(np.sqrt(img) * 300 * np.exp(1j * rng.uniform(0, 2 * np.pi, img.shape)))
        imag_only = (rng.random(img.shape) < 0.05) & (img > 0)
        z[imag_only] = 1j * (np.abs(z[imag_only]) + 1)  # real part 0, imaginary part not: a measurement
        z[img == 0] = 0
        path = tmp_path / "z.tif"
        with rasterio.open(path, "w", driver="GTiff", width=img.shape[1], height=img.shape[0], count=1,
                           dtype="complex_int16", crs="EPSG:32633", nodata=0,
                           transform=rasterio.transform.from_origin(500000, 5000000, 10, 10)) as ds:
            ds.write(z.astype(np.complex64)[None])
    scene = open_scene(path)
    unit, valid = read_unit(scene)
    assert not valid[:, :13].any()
    inside = valid[:, 20:]
    assert inside.all()
    zeros = (img == 0)[:, 20:]
    assert np.allclose(unit[:, 20:][zeros], unit[:, 20:][inside].min())


def test_a_zero_in_db_data_with_nodata_0_is_no_dark_pixel(geotiff_factory, intensity: np.ndarray) -> None:
    """In dB (here dB x 100 in int16, nodata 0) a 0 is 0 dB, a bright value, not zero power: an isolated one that
    the nodata value hides stays a hole instead of being darkened."""
    db = np.round(1000 * np.log10(intensity)).astype(np.int16)
    db[db == 0] = 1
    db[40, 50] = 0
    scene = open_scene(geotiff_factory(db, "db0.tif", nodata=0, dtype="int16"))
    assert scene.kind == "db"
    _, valid = read_unit(scene)
    assert not valid[40, 50] and valid.sum() == valid.size - 1


def test_scattered_nan_does_not_spoil_decimated_cells(geotiff_factory) -> None:
    """GDAL's average counts a NaN pixel (unless NaN is the nodata value): 1 % of NaN pixels would spoil about half
    the cells of an 8x decimated read. The cells are averaged again without them: valid, equal to the mean of their
    finite pixels; a cell of nodata border stays invalid."""
    rng = np.random.default_rng(6)
    a = speckle(reflectivity(512, 512, seed=3), 4, rng).astype(np.float32)
    a[:, :64] = 0.0  # nodata border: 8 whole cells wide
    a[rng.random(a.shape) < 0.01] = np.nan
    p = geotiff_factory(a, "nan.tif", nodata=0.0, compress="deflate", tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(p) as ds:
        spoilt = ~np.isfinite(ds.read(1, out_shape=(64, 64), resampling=rasterio.enums.Resampling.average))
    assert spoilt[:, 8:].mean() > 0.3  # what GDAL alone gives
    scene = open_scene(p)
    unit, valid = read_unit(scene, None, (64, 64))
    assert valid[:, 8:].all() and not valid[:, :8].any()
    blocks = a.reshape(64, 8, 64, 8)
    want = np.nanmean(np.where(blocks == 0, np.nan, blocks), axis=(1, 3))[:, 8:]
    got = (10 ** ((scene.lo + unit * (scene.hi - scene.lo)) / 10))[:, 8:]
    inside = (unit[:, 8:] > 0) & (unit[:, 8:] < 1)  # not clipped by the 1-99 % stretch
    assert np.allclose(got[inside], want[inside], rtol=1e-4)


def _wedge(shape: tuple[int, int]) -> np.ndarray:
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    return (y < 0.3 * (shape[1] - x) - 10) | (x > shape[1] - 20 + 0.2 * y)


@pytest.mark.parametrize("store", ["db", "linear", "db100_int16", "amplitude_uint16", "db_zero", "linear_flt_max"])
def test_an_undeclared_fill_value_is_nodata(geotiff_factory, store: str) -> None:
    """A constant far outside the data and held by many pixels, with no nodata tag (-9999, -32768, 65535 as scripts
    write them) is read as nodata, like the same file with the tag: the network input and validity agree, the kind
    is not fooled (linear data with -9999 is not dB), and decimated reads have no mixed fill-data cells."""
    img = speckle(reflectivity(192, 256, seed=3), 4, np.random.default_rng(1)).astype(np.float32)
    wedge = _wedge(img.shape)
    db = 10 * np.log10(img)
    data, fill, dtype = {"db": (db, -9999.0, "float32"), "linear": (img, -9999.0, "float32"),
                         "db100_int16": (np.round(db * 100), -32768.0, "int16"),
                         "amplitude_uint16": (np.clip(np.sqrt(img) * 300, 1, 65000), 65535.0, "uint16"),
                         "db_zero": (db, 0.0, "float32"),
                         "linear_flt_max": (img, float(np.finfo(np.float32).max), "float32")}[store]
    arr = np.where(wedge, fill, data)
    plain = open_scene(geotiff_factory(arr, f"{store}.tif", dtype=dtype))
    tagged = open_scene(geotiff_factory(arr, f"{store}_tagged.tif", dtype=dtype, nodata=fill))
    assert plain.undeclared is not None and plain.undeclared.value == fill and plain.nodata == fill
    assert tagged.undeclared is None and plain.kind == tagged.kind
    assert plain.kind == {"linear": "linear", "linear_flt_max": "linear",
                          "amplitude_uint16": "amplitude"}.get(store, "db")
    u1, v1 = read_unit(plain)
    u2, v2 = read_unit(tagged)
    assert not v1[wedge].any() and v1[~wedge].mean() > 0.99
    assert np.array_equal(v1, v2) and np.allclose(u1, u2, atol=0.02)
    u1, v1 = read_unit(plain, out_shape=(48, 64))  # average-decimated: edge cells mix fill and data
    u2, v2 = read_unit(tagged, out_shape=(48, 64))
    if store in ("db", "linear", "db100_int16", "linear_flt_max"):  # (65535, 0 in dB: only the value is a hole)
        assert np.mean(v1 != v2) < 0.03 and np.allclose(u1[v1 & v2], u2[v1 & v2], atol=0.05)


@pytest.mark.parametrize("store", ["db", "db_tagged_strip", "db100_int16", "linear_netcdf"])
def test_a_fill_value_inside_the_scene_is_nodata(geotiff_factory, store: str) -> None:
    """-9999 (float), -32768 (int16) or netCDF's 9.97e36 masking water or shadow inside the scene, on no edge,
    untagged: no SAR value is that low (or high), so it is nodata as outside a footprint; before, at 2 % of the
    pixels it became the 1 % (99 %) grey level and squeezed every other value to one end of the network's input."""
    from sarreg.io.fill import find_fill

    img = speckle(reflectivity(192, 256, seed=3), 4, np.random.default_rng(1)).astype(np.float32)
    y, x = np.mgrid[0:192, 0:256]
    lakes = ((y - 60) ** 2 + (x - 70) ** 2 < 18 ** 2) | ((y - 130) ** 2 + (x - 180) ** 2 < 14 ** 2)
    db = 10 * np.log10(img)
    netcdf = float(np.float32(9.96921e36))
    data, fill, dtype = {"db100_int16": (np.round(db * 100), -32768.0, "int16"),
                         "linear_netcdf": (img, netcdf, "float32")}.get(store, (db, -9999.0, "float32"))
    arr = np.where(lakes, fill, data)
    nodata = None
    if store == "db_tagged_strip":  # beside the tag 0 that marks a strip of holes
        arr[:, :10], nodata = 0.0, 0.0
    scene = open_scene(geotiff_factory(arr, f"{store}.tif", dtype=dtype, nodata=nodata))
    assert scene.undeclared is not None and scene.undeclared.value == fill
    assert scene.kind == ("linear" if store == "linear_netcdf" else "db")
    unit, valid = read_unit(scene)
    assert not valid[lakes].any() and valid[:, 10:][~lakes[:, 10:]].mean() > 0.99
    assert 0.3 < np.median(unit[valid]) < 0.7  # the data span the grey range
    assert find_fill(np.where(lakes, -60.0, db)) is None  # a dark floor inside the scene: data


def test_a_wrong_tag_and_the_nodata_option(geotiff_factory) -> None:
    """A file filled with -9999 but tagged 0 (a tag that marks no pixel) is searched and read as the same file tagged
    right; so it is with ``PreprocessConfig.nodata`` (``--nodata -9999``) given (validity, network input, decimated
    reads without fill-data cells: the tag is what GDAL skips, so the mix is masked as for a found fill); "none"
    ignores a tag that marks real data and searches nothing; "nan" is a value like the others; a tag that marks
    holes stays and a second fill beside it is nodata too; a bad value is one InputError line."""
    img = speckle(reflectivity(192, 256, seed=3), 4, np.random.default_rng(1)).astype(np.float32)
    wedge = _wedge(img.shape)
    arr = np.where(wedge, -9999.0, 10 * np.log10(img))
    wrong = geotiff_factory(arr, "wrong.tif", nodata=0.0)
    right = open_scene(geotiff_factory(arr, "right.tif", nodata=-9999.0))
    assert open_scene(wrong, PreprocessConfig(nodata="none")).undeclared is None
    assert read_unit(open_scene(wrong, PreprocessConfig(nodata="none")))[1][wedge].all()  # the fill is data
    found = open_scene(wrong)
    assert found.undeclared is not None and found.nodata == -9999.0 and found.nodata_from == "found"
    given = open_scene(wrong, PreprocessConfig(nodata="-9999"))
    assert given.nodata == -9999.0 and given.nodata_from == "option" and given.undeclared is None
    for scene in (found, given):
        assert scene.kind == right.kind and (scene.lo, scene.hi) == pytest.approx((right.lo, right.hi), abs=0.05)
        for shape in (None, (48, 64)):
            u1, v1 = read_unit(scene, out_shape=shape)
            u2, v2 = read_unit(right, out_shape=shape)
            assert np.mean(v1 != v2) < (0.001 if shape is None else 0.03)
            assert np.allclose(u1[v1 & v2], u2[v1 & v2], atol=0.05)
        assert scene.warp_nodata == -9999.0
    assert right.warp_nodata == "file" and right.undeclared is None
    strip = np.arange(arr.shape[1]) < 8
    holes = np.where(strip, 0.0, arr)  # the tag 0 marks a strip (right) and -9999 fills the wedges: both nodata
    both = open_scene(geotiff_factory(holes, "holes.tif", nodata=0.0))
    assert both.nodata == 0.0 and both.nodata_from == "file" and both.undeclared.value == -9999.0
    assert both.warp_nodata == (0.0, -9999.0) and (both.lo, both.hi) == pytest.approx((right.lo, right.hi), abs=0.05)
    v = read_unit(both)[1]
    assert not v[:, strip].any() and not v[wedge].any() and v[~wedge & ~strip].all()
    strip_only = open_scene(geotiff_factory(np.where(strip, 0.0, 10 * np.log10(img)), "strip.tif", nodata=0.0))
    assert strip_only.undeclared is None and strip_only.warp_nodata == "file"
    # a tag that marks a real value (an amplitude of 100 in uint16 data) and an untagged fill, both declared away
    amp = np.clip(np.round(np.sqrt(img) * 100), 1, 65000)
    tagged = geotiff_factory(amp, "amp.tif", dtype="uint16", nodata=100.0)
    assert not read_unit(open_scene(tagged))[1][amp == 100].any()
    plain = open_scene(tagged, PreprocessConfig(nodata="none"))
    assert plain.nodata is None and plain.warp_nodata == "none" and read_unit(plain)[1].all()
    untagged = geotiff_factory(arr, "untagged.tif")
    assert open_scene(untagged).undeclared is not None
    assert open_scene(untagged, PreprocessConfig(nodata="none")).undeclared is None
    nan = open_scene(geotiff_factory(np.where(wedge, np.nan, arr), "nan.tif", nodata=0.0), PreprocessConfig(nodata="nan"))
    assert np.isnan(nan.nodata) and not read_unit(nan)[1][wedge].any()
    with pytest.raises(InputError, match="not a nodata value"):
        PreprocessConfig(nodata="minus 9999")


def test_no_fill_is_found_in_plain_data(geotiff_factory) -> None:
    """Zeros in amplitude data, a sensor's saturation value, a dark floor at the data's edge: no fill."""
    from sarreg.io.fill import find_fill

    rng = np.random.default_rng(2)
    img = speckle(reflectivity(192, 256, seed=4), 4, rng).astype(np.float32)
    amp = np.clip(np.sqrt(img) * 6e4, 0, 65535).astype(np.uint16)  # ~1 % saturated at 65535
    amp[rng.random(amp.shape) < 0.02] = 0
    assert 0.005 < np.mean(amp == 65535) and find_fill(amp) is None
    db = (10 * np.log10(img)).astype(np.float32)
    floor = np.percentile(db, 3)
    assert find_fill(np.maximum(db, floor)) is None  # clipped at a noise floor: at the data's edge, not beyond
    assert find_fill(db) is None and open_scene(geotiff_factory(db, "db.tif")).undeclared is None
    zeros = np.where(rng.random(db.shape) < 0.02, 0.0, np.round(db, 1)).astype(np.float32)
    assert find_fill(zeros) is None  # dB stored to 0.1 dB: values repeat, so 0.0 is a measurement like the others
    y, x = np.mgrid[0:192, 0:256]
    lake = (y - 96) ** 2 + (x - 128) ** 2 < 40 ** 2
    land = np.clip(db, np.percentile(db, 10), np.percentile(db, 90))
    clipped = np.where(lake, np.float32(-60.0), land)  # a lake at the sensor's floor, far below the land
    assert find_fill(clipped) is None  # inside the scene: a dark area, not the outside of a footprint
    sat = np.where(lake, 65535, np.clip(np.sqrt(img) * 300, 1, 60000)).astype(np.uint16)
    assert find_fill(sat) is None  # a saturated bright area inside the scene: data, not a fill
    assert find_fill(np.where(_wedge(db.shape), np.float32(-60.0), land)) is not None


def test_a_georeferencing_mapping_no_affine_follows_is_a_quality_gate(tmp_path: Path) -> None:
    """UTM and geographic coordinates map onto each other non-linearly: over a 200 km scene the exact mapping is
    pixels away from the affine prior, which an affine estimate (and its warp) cannot follow; in one CRS it is 0."""
    from affine import Affine
    from rasterio.warp import transform_bounds

    from sarreg.relate import NONLINEAR_PX, nonlinear_reason, prior_fit
    from sarreg.synth import write_geotiff

    img = speckle(reflectivity(512, 512, seed=3), 4, np.random.default_rng(3)).astype(np.float32)
    mov = write_geotiff(tmp_path / "utm.tif", img, Affine(400, 0, 300000, 0, -400, 5200000), "EPSG:32633")
    west, south, east, north = transform_bounds("EPSG:32633", "EPSG:4326", 300000, 5200000 - 204800,
                                                300000 + 204800, 5200000)
    ref = write_geotiff(tmp_path / "geo.tif", img, Affine((east - west) / 576, 0, west, 0, -(north - south) / 450,
                                                          north), "EPSG:4326")
    same = write_geotiff(tmp_path / "utm2.tif", img, Affine(200, 0, 310000, 0, -200, 5190000), "EPSG:32633")
    _, far = prior_fit(open_scene(ref), open_scene(mov))
    _, none = prior_fit(open_scene(same), open_scene(mov))
    assert far > 2.0 and none < 1e-6, (far, none)
    assert "non-linearly" in nonlinear_reason(far, "shift") and "--model local" in nonlinear_reason(far, "affine")
    assert nonlinear_reason(far, "local") is None and nonlinear_reason(NONLINEAR_PX, "homography") is None


@pytest.mark.parametrize("crs", ["EPSG:4326", "+proj=longlat +datum=WGS84 +lon_wrap=180 +no_defs"])
def test_a_geographic_reference_across_the_antimeridian_relates_to_utm(tmp_path: Path, crs: str) -> None:
    """A lon / lat reference spanning 179.9 .. 180.1 degrees (its geotransform past 180) and a UTM 60N raster of
    the same place: the prior follows pyproj (longitudes on the reference's side of 180), not 360 degrees off."""
    from affine import Affine
    from pyproj import Transformer

    from sarreg.estimate import apply_matrix
    from sarreg.relate import prior_fit
    from sarreg.synth import write_geotiff

    img = speckle(reflectivity(128, 128, seed=4), 4, np.random.default_rng(4)).astype(np.float32)
    ref = write_geotiff(tmp_path / "geo.tif", img, Affine(0.2 / 128, 0, 179.9, 0, -0.1 / 128, 60.05), crs)
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32660", always_xy=True).transform(179.95, 60.02)
    mov = write_geotiff(tmp_path / "utm.tif", img, Affine(50, 0, x, 0, -50, y), "EPSG:32660")
    prior, nonlinear = prior_fit(open_scene(ref), open_scene(mov))
    assert nonlinear < 0.5, nonlinear
    # the moving raster's corner (50 m pixels from 179.95 E, 60.02 N) lands at that place on the reference
    corner = apply_matrix(prior, np.array([[-0.5, -0.5]]))[0]
    assert np.allclose(corner, [(179.95 - 179.9) * 640 - 0.5, (60.05 - 60.02) * 1280 - 0.5], atol=0.05), corner


def _scaled(path: Path, raw: np.ndarray, scale: float, offset: float, unit: str) -> Path:
    """An int16 GeoTIFF declaring ``scale`` / ``offset`` / ``unit`` (GDAL band metadata), nodata -32768."""
    with rasterio.open(path, "w", driver="GTiff", width=raw.shape[1], height=raw.shape[0], count=1, dtype="int16",
                       nodata=-32768) as ds:
        ds.write(raw.astype(np.int16), 1)
        ds.scales, ds.offsets, ds.units = (scale,), (offset,), (unit,)
    return path


def test_a_bands_scale_offset_and_unit_are_applied(tmp_path: Path, geotiff_factory, intensity: np.ndarray) -> None:
    """int16 dB stored as (dB + 40) x 100 with scale 0.01, offset -40, unit dB was read as DN amplitude (20 log10 of
    the raw numbers); now its values are raw x scale + offset and the unit names the kind: the same network input
    as the float dB file. Without a unit the scaled values are judged as float data (mostly negative: dB); a unit
    of dB holds over mostly positive values, and a linear unit ("intensity") names linear power."""
    db = 10 * np.log10(intensity)
    ref, _ = read_unit(open_scene(geotiff_factory(db, "db.tif")))
    files = {"offset": _scaled(tmp_path / "o.tif", np.round((db + 40) * 100), 0.01, -40.0, "dB"),
             "no_unit": _scaled(tmp_path / "n.tif", np.round((db + 40) * 100), 0.01, -40.0, ""),
             "positive": _scaled(tmp_path / "p.tif", np.round((db + 30) * 100), 0.01, 0.0, "db")}
    for name, path in files.items():
        sc = open_scene(path)
        assert sc.kind == "db", name
        u, valid = read_unit(sc)
        assert valid.all() and np.abs(u - ref).max() < 0.01, name  # (0.01 dB steps)
    lin = _scaled(tmp_path / "lin.tif", np.round(intensity / intensity.max() * 30000), 1.0, 0.0, "intensity")
    assert open_scene(lin).kind == "linear"  # (an int16 without a unit: DN amplitude)


@pytest.mark.parametrize("dtype", ["float32", "int16"])
def test_an_alpha_band_of_any_type_masks_whole_and_decimated_reads(tmp_path: Path, dtype: str) -> None:
    """A 3-band raster (VV, VH, alpha) of float32 or int16: GDAL's mask ignores such an alpha (it follows only a Byte /
    UInt16 alpha of a 2- or 4-band raster), its warp does not. Reads of VV are masked by it, whole and decimated (a
    cell across the alpha's edge is the mean of its valid pixels, 7, not mixed with the 100 under alpha 0)."""
    from rasterio.enums import ColorInterp

    from sarreg.io.band import has_mask_band, read_band

    alpha = np.full((60, 90), 255)
    alpha[:, :31] = 0
    data = np.where(alpha > 0, 7 + (np.arange(90) >= 60), 100)
    p = tmp_path / "a.tif"
    with rasterio.open(p, "w", driver="GTiff", width=90, height=60, count=3, dtype=dtype) as ds:
        ds.write(np.stack([data, data, alpha]).astype(dtype))
    with rasterio.open(p, "r+") as ds:  # (as GTiff's EXTRASAMPLES: set once the file exists)
        ds.colorinterp = [ColorInterp.gray, ColorInterp.undefined, ColorInterp.alpha]
    with rasterio.open(p) as ds:
        assert ds.colorinterp[2].name == "alpha" and has_mask_band(ds, 1)
        vals, mask = read_band(ds, 1, None, None, False, None)
        assert (mask == (alpha > 0)).all() and (vals[mask] == data[mask]).all()
        vals, mask = read_band(ds, 1, None, (6, 9), False, None)  # 10 x 10 cells: column 3 holds 1 valid of 10
        assert mask[:, 3:].all() and not mask[:, :3].any() and (vals[:, 3:6] == 7).all() and (vals[:, 6:] == 8).all()
    sc = open_scene(p)
    assert sc.alpha == 3 and sc.band == 1
    with pytest.raises(InputError, match="band 3 is the alpha band"):
        open_scene(p, PreprocessConfig(band=3))
