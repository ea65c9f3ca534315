"""Synthetic SAR scenes: determinism, positivity, speckle statistics, warps and GeoTIFF round trip."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from sarreg import synth


def test_reflectivity_deterministic_and_positive():
    a = synth.reflectivity(200, 240, seed=7)
    b = synth.reflectivity(200, 240, seed=7)
    c = synth.reflectivity(200, 240, seed=8)
    assert a.shape == (200, 240) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(np.isfinite(a)) and a.min() > 0
    db = 10 * np.log10(a)
    # a real scene has structure: a wide dynamic range and many distinct levels
    assert np.percentile(db, 99) - np.percentile(db, 1) > 8
    assert np.unique(np.round(db, 1)).size > 100


def test_reflectivity_rejects_bad_size():
    with pytest.raises(ValueError):
        synth.reflectivity(0, 10, seed=0)


@pytest.mark.parametrize("looks", [1, 4])
def test_speckle_statistics(looks):
    refl = np.full((300, 300), 2.5, np.float32)
    s = synth.speckle(refl, looks, np.random.default_rng(0))
    ratio = s / refl
    assert s.dtype == np.float32 and s.min() >= 0
    assert abs(ratio.mean() - 1) < 0.02
    assert abs(ratio.var() - 1 / looks) < 0.05 / looks
    with pytest.raises(ValueError):
        synth.speckle(refl, 0, np.random.default_rng(0))


def test_temporal_change_changes_about_the_requested_fraction():
    refl = synth.reflectivity(256, 256, seed=3)
    out = synth.temporal_change(refl, np.random.default_rng(1), fraction=0.2)
    changed = ~np.isclose(out, refl, rtol=1e-4)
    assert 0.1 < changed.mean() < 0.6
    assert out.min() > 0
    np.testing.assert_array_equal(synth.temporal_change(refl, np.random.default_rng(1), 0.0), refl)


def test_warp_image_translation_and_fill():
    img = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    H = np.array([[1, 0, 2.0], [0, 1, 3.0], [0, 0, 1]])  # output (x, y) samples input (x + 2, y + 3)
    out = synth.warp_image(img, H, (20, 30))
    np.testing.assert_allclose(out[0:17, 0:28], img[3:20, 2:30])
    assert np.isnan(out[17:, :]).all() and np.isnan(out[:, 28:]).all()
    out8 = synth.warp_image(img.astype(np.uint8), H, (20, 30))
    assert out8.dtype == np.uint8 and (out8[17:, :] == 0).all()


def test_warp_image_subpixel_is_pixel_centre_convention():
    img = np.zeros((11, 11), np.float32)
    img[5, 5] = 1.0
    H = np.array([[1, 0, 0.5], [0, 1, 0.0], [0, 0, 1]])
    out = synth.warp_image(img, H, (11, 11))
    # output column 4 samples input x = 4.5 (half way between columns 4 and 5)
    assert out[5, 4] == pytest.approx(0.5) and out[5, 5] == pytest.approx(0.5)


def test_write_geotiff_round_trip(tmp_path):
    arr = synth.speckle(synth.reflectivity(64, 80, seed=1), 3, np.random.default_rng(2))
    tr = Affine(10.0, 0, 500000.0, 0, -10.0, 4600000.0)
    p = synth.write_geotiff(tmp_path / "a.tif", arr, transform=tr, crs=CRS.from_epsg(32633), nodata=0.0)
    with rasterio.open(p) as ds:
        assert ds.driver == "GTiff" and ds.count == 1 and ds.shape == (64, 80)
        assert ds.crs.to_epsg() == 32633 and ds.transform == tr and ds.nodata == 0.0
        assert ds.profile.get("tiled", False) or ds.block_shapes[0] != (1, 80)
        np.testing.assert_array_equal(ds.read(1), arr)
    # pixel-space, multi-band, dtype conversion
    p2 = synth.write_geotiff(tmp_path / "b.tif", np.stack([arr, arr * 2]), dtype="float64")
    with rasterio.open(p2) as ds:
        assert ds.count == 2 and ds.crs is None and ds.dtypes[0] == "float64"
        np.testing.assert_allclose(ds.read(2), arr * 2)
    assert not list(tmp_path.glob(".*tmp"))


def test_terrain_shading_follows_slopes_and_snow_darkens_high_ground():
    refl, z = synth.terrain(192, 160, seed=4)
    assert refl.shape == z.shape == (192, 160) and refl.dtype == np.float32
    assert np.isfinite(refl).all() and (refl > 0).all() and np.ptp(z) >= 19
    r2, _ = synth.terrain(192, 160, seed=4)
    np.testing.assert_array_equal(refl, r2)
    # topography makes the texture: backscatter varies with the local slope, not only with land cover
    gy, gx = np.gradient(z)
    slope = np.hypot(gx, gy)
    db = 10 * np.log10(refl)
    assert abs(np.corrcoef(slope.ravel(), db.ravel())[0, 1]) > 0.05 or np.std(db[slope > np.median(slope)]) > 2
    # a later date: wet snow (most draws) darkens the high ground more than the valleys; shapes stay
    later = [synth.snow_change(refl, z, np.random.default_rng(s)) for s in range(8)]
    high, low = z > np.quantile(z, 0.9), z < np.quantile(z, 0.1)
    drop = [float(np.mean(10 * np.log10(refl[high] / r[high])) - np.mean(10 * np.log10(refl[low] / r[low])))
            for r in later]
    assert all(r.shape == refl.shape and (r > 0).all() for r in later)
    assert sum(d > 1.0 for d in drop) >= 4


def test_training_source_draws_mountains_when_asked():
    from sarreg.train.pairs import Source

    src = Source("synthetic", 1.0, size=128, terrain=1.0)
    a, b, is_synth = src.views(np.random.default_rng(0))
    assert a.shape == b.shape == (128, 128) and is_synth and "mountains" in src.describe()
    flat = Source("synthetic", 1.0, size=128)
    f1, _, _ = flat.views(np.random.default_rng(0))
    assert not np.array_equal(a, f1)


def test_relief_pair_moves_the_second_date_by_the_shift_and_the_height_dependent_part():
    import cv2

    first, second, d = synth.relief_pair(256, 1, 0.0)
    assert not d.any()
    (dx, dy), _ = cv2.phaseCorrelate(np.log(second[32:224, 32:224]), np.log(first[32:224, 32:224]))
    assert abs(dx - 13) < 0.2 and abs(dy + 9) < 0.2, (dx, dy)  # (second's pixel p shows first's p + (13, -9))
    _, _, d = synth.relief_pair(256, 1, 4.0)
    assert abs(float(np.abs(d).max()) - 4.0) < 0.2 and float(d.std()) > 0.3
