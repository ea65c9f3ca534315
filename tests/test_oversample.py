"""--oversampling: both scenes read decimated, the result mapped back to the files' pixels (``sarreg.oversample``).

Pairs are synthetic speckled scenes shifted by a known amount at their own resolution, then up-sampled 2x with
cubic interpolation (a product resampled finer than its resolution), written as real GeoTIFFs.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from sarreg import register
from sarreg.config import RegisterConfig
from sarreg.errors import OptionError
from sarreg.estimate import Estimate, apply_matrix
from sarreg.io.raster import open_scene, read_unit
from sarreg.oversample import decimated, points, scaled
from sarreg.synth import reflectivity, speckle, warp_image, write_geotiff

UTM = "EPSG:32631"
SHIFT = (4.3, -2.6)  # moving -> reference, in pixels of the scenes' own resolution


def _up2(img: np.ndarray) -> np.ndarray:
    return cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC).astype(np.float32)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    """(ref, moving, truth): 224 px scenes at 10 m, up-sampled to 448 px at 5 m; truth in the files' pixels."""
    tmp = tmp_path_factory.mktemp("oversampled")
    n, pad = 224, 16
    rng = np.random.default_rng(3)
    field = reflectivity(n + 2 * pad, n + 2 * pad, seed=11)
    ref = speckle(field, 4, rng)[pad:pad + n, pad:pad + n]
    m = np.array([[1, 0, SHIFT[0]], [0, 1, SHIFT[1]], [0, 0, 1.0]])
    mov = warp_image(speckle(field, 4, rng), np.array([[1, 0, pad], [0, 1, pad], [0, 0, 1]]) @ m, (n, n))
    t = Affine(5.0, 0, 500000.0, 0, -5.0, 5000000.0)
    r = write_geotiff(tmp / "ref.tif", _up2(ref), t, UTM)
    mv = write_geotiff(tmp / "moving.tif", _up2(np.nan_to_num(mov, nan=0.0)), t, UTM)
    return r, mv, scaled(m, 2)


def test_scaled_matrix_maps_file_pixels_as_the_decimated_one_maps_cells() -> None:
    rng = np.random.default_rng(0)
    m = np.array([[1.01, 0.02, 3.5], [-0.015, 0.99, -7.25], [0, 0, 1]])
    for n in (2, 3, 4):
        p = rng.uniform(0, 400, (20, 2))  # the files' pixels
        cells = (p + 0.5) / n - 0.5
        assert np.allclose(apply_matrix(scaled(m, n), p), points(apply_matrix(m, cells), n), atol=1e-9)


def test_a_decimated_scene_reads_cells_of_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    img = rng.gamma(4.0, 0.25, (50, 66)).astype(np.float32)
    path = write_geotiff(tmp_path / "s.tif", img, Affine(10, 0, 500000, 0, -10, 5000000), UTM)
    scene = open_scene(path)
    d = decimated(scene, 2)
    assert (d.width, d.height) == (33, 25) and d.transform == scene.transform @ Affine.scale(2)
    u, v = read_unit(d, Window(3, 2, 10, 8))
    u2, v2 = read_unit(scene, Window(6, 4, 20, 16), (8, 10))
    assert u.shape == (8, 10) and np.array_equal(u, u2) and np.array_equal(v, v2)
    whole, _ = read_unit(d)
    assert whole.shape == (25, 33)
    assert abs(u[0, 0] - read_unit(scene, Window(6, 4, 2, 2), (1, 1))[0][0, 0]) < 1e-6  # the cell's 2 x 2 pixels


def test_oversampling_2_registers_an_up_sampled_pair_in_the_files_pixels(
        pair: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    ref, mov, truth = pair
    out = tmp_path / "out.tif"
    rep = register(ref, mov, out, RegisterConfig(features="sift", oversampling="2", keypoints="always"))
    assert rep.status == "ok", rep.message
    assert rep.stages["oversampling"]["factor"] == 2
    limits = rep.stages["oversampling"]["limits_px"]  # (the gates held in cells: their limits in the files' pixels)
    assert limits["max_rmse"] == 2 * RegisterConfig().max_rmse and limits["threshold"] == 2 * RegisterConfig().threshold
    assert rep.quality["rmse_px"] <= limits["max_rmse"] and rep.quality["threshold_px"] == limits["threshold"]
    corners = np.array([[0, 0], [447, 0], [0, 447], [447, 447], [224, 224]], float)
    err = np.abs(apply_matrix(np.array(rep.matrix), corners) - apply_matrix(truth, corners)).max()
    assert err < 1.0, err  # in the files' (up-sampled) pixels
    with rasterio.open(out) as o, rasterio.open(ref) as r:
        assert (o.width, o.height, o.transform) == (r.width, r.height, r.transform)
    report = json.loads(out.with_name("out.report.json").read_text())
    assert report["transform"]["matrix"] == rep.matrix
    assert report["quality"]["overlap_area_px"] > 0.8 * 448 * 448  # (the overlap in the files' pixels)
    with np.load(out.with_name("out.matches.npz")) as z:  # keypoints and their matches in the files' pixels
        assert z["ref_imsize"].tolist() == [448, 448] and z["moving_imsize"].tolist() == [448, 448]
        i1, i2 = z["matches"][z["inliers"]].T
        d = apply_matrix(truth, z["moving_keypoints"][i2, :2]) - z["ref_keypoints"][i1, :2]
        assert len(d) >= 10 and np.median(np.hypot(*d.T)) < 1.5


def test_oversampling_is_refused_where_the_result_is_not_one_matrix(pair: tuple[Path, Path, np.ndarray],
                                                                   tmp_path: Path) -> None:
    ref, mov, _ = pair
    with pytest.raises(OptionError, match="--oversampling 2: not available for --model local"):
        register(ref, mov, tmp_path / "o.tif", RegisterConfig(features="sift", model="local", oversampling="2"))
    with pytest.raises(OptionError, match="--oversampling 3: not available for --model poly2"):
        RegisterConfig(model="poly2", oversampling="3").validate()  # (before any work; batch checks it too)
    assert not list(tmp_path.iterdir())


def test_auto_leaves_a_pair_that_registers_ok_as_it_is(pair: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    ref, mov, _ = pair
    rep = register(ref, mov, tmp_path / "o.tif", RegisterConfig(features="sift", warp=False))
    one = register(ref, mov, tmp_path / "p.tif", RegisterConfig(features="sift", warp=False, oversampling="1"))
    assert rep.status == one.status == "ok", (rep.message, one.message)
    assert "oversampling" not in rep.stages and rep.matrix == one.matrix  # (the first attempt is the only one)


def test_auto_reads_decimated_when_the_pair_as_it_is_is_not_ok(pair: tuple[Path, Path, np.ndarray],
                                                                tmp_path: Path) -> None:
    # the up-sampled pair's residuals are ~0.7 px as it is and ~0.3 px of the cells read at 2x: a 0.5 px gate on
    # them holds the first attempt back, and auto then tries 2 (its gates apply to the cells read)
    ref, mov, truth = pair
    cfg = RegisterConfig(features="sift", warp=False, max_rmse=0.5)
    one = register(ref, mov, tmp_path / "p.tif", cfg.with_(oversampling="1"))
    assert one.status == "low_quality" and "RMSE" in one.message
    rep = register(ref, mov, tmp_path / "o.tif", cfg)
    assert rep.status == "ok" and rep.stages["oversampling"]["factor"] == 2
    tried = rep.stages["oversampling"]["tried"]
    assert tried["1"] == {"status": "low_quality", "message": one.message, "inliers": one.quality["inliers"]}
    assert tried["2"]["inliers"] < tried["1"]["inliers"] and tried["2"]["from_first_px"] < 1.5  # (n^2 fewer
    assert "refused" not in tried["2"]  # windows, and the same answer: adopted)
    corners = np.array([[0, 0], [447, 0], [0, 447], [447, 447]], float)
    assert np.abs(apply_matrix(np.array(rep.matrix), corners) - apply_matrix(truth, corners)).max() < 1.0


def test_auto_tries_decimated_readings_only_where_they_can_help(tmp_path: Path) -> None:
    from sarreg.oversample import factors

    rng = np.random.default_rng(2)
    big = open_scene(write_geotiff(tmp_path / "b.tif", rng.gamma(4, 0.25, (700, 660)).astype(np.float32),
                                   Affine(10, 0, 500000, 0, -10, 5000000), UTM))
    small = open_scene(write_geotiff(tmp_path / "s.tif", rng.gamma(4, 0.25, (400, 300)).astype(np.float32),
                                     Affine(10, 0, 500000, 0, -10, 5000000), UTM))
    auto = RegisterConfig()
    assert factors(big, big, auto, "low_quality", None) == (2, 4)
    assert factors(big, big, auto, "low_quality", {"period_px": 30.0, "strength": 20.0}) == (2, 4)
    assert factors(big, big, auto, "failed", None) == ()  # (unrelated pairs would take twice as long to fail)
    assert factors(big, small, auto, "low_quality", None) == ()  # 300 px: 150 cells read at 2x
    assert factors(big, big, auto, "ok", None) == ()
    assert factors(big, big, auto, "low_quality", None, flagged=True) == ()  # (a part moved on its own, ...)
    # a lattice in the reference (a period of a few pixels aliases when read decimated)
    assert factors(big, big, auto, "low_quality", {"period_px": 7.1, "strength": 400.0}) == ()
    assert factors(big, small, auto.with_(oversampling="3"), "ok", None) == (3,)
    assert factors(big, big, auto.with_(oversampling="1"), "failed", None) == ()
    with pytest.raises(OptionError, match="--oversampling 2: not available for --model tps"):
        factors(big, big, auto.with_(oversampling="2", model="tps"), "ok", None)


def test_auto_refuses_a_decimated_answer_with_less_evidence_that_moves_the_first() -> None:
    """A scene read at its resolution: the first attempt right but low_quality on 102 inliers; read 4x decimated, ok
    on 31 inliers 5 px from it (the stop-61 coastal scene). Fewer inliers and moved beyond the inlier threshold:
    refused. With as many inliers, or the same answer, the decimated reading stands."""
    from sarreg.oversample import refused

    def est(n_inl: int) -> Estimate:
        return Estimate(model="shift", matrix=np.eye(3), inliers=np.ones(n_inl, bool), residuals=np.zeros(n_inl),
                        rmse=0.5, heldout_rmse=0.5, coverage=0.5, hull_ratio=0.5, threshold=1.5)

    cfg = RegisterConfig()
    assert "fewer inliers (31) than as the files are (102)" in refused(est(31), est(102), 4.99, cfg)
    assert refused(est(120), est(102), 4.99, cfg) is None  # (an oversampled pair gains windows read decimated)
    assert refused(est(31), est(102), 0.4, cfg) is None  # (n^2 fewer windows, the same answer)
