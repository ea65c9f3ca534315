"""samples/make_samples.py: the demo pair is real georeferenced GeoTIFFs and its truth file is right."""
from __future__ import annotations

import importlib.util
import json

import cv2
import numpy as np
import pytest
import rasterio
from affine import Affine


@pytest.fixture(scope="module")
def make_samples(repo_root):
    spec = importlib.util.spec_from_file_location("make_samples", repo_root / "samples" / "make_samples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_samples_files_and_georeference(make_samples, tmp_path):
    out = tmp_path / "s"
    truth = make_samples.make_samples(out, size=256, seed=3)
    assert json.loads((out / "truth.json").read_text()) == truth
    with rasterio.open(out / "scene_a.tif") as a, rasterio.open(out / "scene_b.tif") as b:
        assert (a.width, a.height, b.width, b.height) == (256, 256, 256, 256)
        assert a.dtypes[0] == b.dtypes[0] == "float32"
        assert a.crs.to_epsg() == b.crs.to_epsg() == 32631
        assert a.res == b.res == (10.0, 10.0) and a.nodata == b.nodata == 0.0
        arr_a, arr_b = a.read(1), b.read(1)
        ta, tb_written = a.transform, b.transform
    assert arr_a.min() > 0  # linear power, no holes in the reference
    assert 0.01 < np.mean(arr_b == 0) < 0.3  # the swath edge
    png = cv2.imread(str(out / "scene_b.png"), cv2.IMREAD_UNCHANGED)
    assert png.shape == (256, 256) and png.dtype == np.uint8
    np.testing.assert_array_equal(png == 0, arr_b == 0)

    # the geotransform written for B is the true one plus the stated error
    tb_true = Affine(*truth["b_geotransform_true"])
    err = truth["b_georef_error_m"]
    assert tb_written.c - tb_true.c == pytest.approx(err["easting"])
    assert tb_written.f - tb_true.f == pytest.approx(err["northing"])
    # with the TRUE transform, pixel (x, y) of B and pixel (x + dx, y + dy) of A are the same ground point
    dx, dy = truth["b_footprint_offset_px"]["dx"], truth["b_footprint_offset_px"]["dy"]
    x, y = 10.0, 20.0
    assert tb_true @ (x + 0.5, y + 0.5) == pytest.approx(ta @ (x + dx + 0.5, y + dy + 0.5))
    H = np.array(truth["homography_a_to_b_px"])
    np.testing.assert_allclose(H @ [x + dx, y + dy, 1.0], [x, y, 1.0])


def test_samples_content_is_shifted_as_stated(make_samples, tmp_path):
    """Template matching of A's patch in B lands where truth.json says (within a pixel)."""
    truth = make_samples.make_samples(tmp_path, size=384, seed=5)
    with rasterio.open(tmp_path / "scene_a.tif") as a, rasterio.open(tmp_path / "scene_b.tif") as b:
        la = cv2.GaussianBlur(np.log(a.read(1)), (0, 0), 2)
        lb = cv2.GaussianBlur(np.log(np.where(b.read(1) > 0, b.read(1), 1e-3)), (0, 0), 2)
    dx, dy = truth["b_footprint_offset_px"]["dx"], truth["b_footprint_offset_px"]["dy"]
    hits = []
    for x0, y0 in [(80, 60), (150, 150), (60, 200)]:
        res = cv2.matchTemplate(lb, la[y0:y0 + 120, x0:x0 + 120], cv2.TM_CCOEFF_NORMED)
        _, score, _, (bx, by) = cv2.minMaxLoc(res)
        hits.append((score, bx - (x0 - dx), by - (y0 - dy)))
    best = max(hits)
    assert best[0] > 0.8
    assert abs(best[1]) <= 1.0 and abs(best[2]) <= 1.0


def test_samples_deterministic(make_samples, tmp_path):
    make_samples.make_samples(tmp_path / "1", size=96, seed=11)
    make_samples.make_samples(tmp_path / "2", size=96, seed=11)
    for name in ("scene_a.tif", "scene_b.tif"):
        with rasterio.open(tmp_path / "1" / name) as d1, rasterio.open(tmp_path / "2" / name) as d2:
            np.testing.assert_array_equal(d1.read(), d2.read())
