"""Small rasters (image chips of ~100 px, as machine-learning datasets cut them): georeferenced two-date chips whose
georeferencing is a few pixels off. Too small for the refinement's 64 px correlation windows to give --min-inliers
tie points, they register with smaller windows (``area.CHIP_SIZE``), and an estimate most windows agree on is not
replaced by the georeferencing (``decide.KEEP_SHARE``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from sarreg import register
from sarreg.config import RegisterConfig
from sarreg.estimate import apply_matrix
from sarreg.synth import chip_pair, write_geotiff

PIXEL = 10.0


def write_chips(tmp: Path, n: int, seed: int) -> tuple[Path, Path, np.ndarray]:
    """``synth.chip_pair`` (4 looks, 15 % changed) as two georeferenced chips on the same grid: the moving chip's
    georeferencing misses its content's shift of up to 6 px. -> (ref, moving, truth: moving px -> reference px)."""
    a, b, (dx, dy) = chip_pair(n, seed)
    t = Affine(PIXEL, 0, 500000, 0, -PIXEL, 5000000)
    ref = write_geotiff(tmp / "ref.tif", a, t, "EPSG:32633")
    mov = write_geotiff(tmp / "moving.tif", b, t, "EPSG:32633")
    return ref, mov, np.array([[1, 0, -dx], [0, 1, -dy], [0, 0, 1.0]])


def centre_error(matrix, truth, n: int) -> float:
    c = np.array([[n / 2, n / 2]])
    return float(np.hypot(*(apply_matrix(np.asarray(matrix), c) - apply_matrix(truth, c))[0]))


@pytest.mark.parametrize("seed", [0, 1, 5])
def test_a_96_px_chip_registers_to_a_fraction_of_a_pixel(tmp_path, seed):
    # 64 px windows: nine fit, the estimate rested on 8-9 of them (< --min-inliers 12) and the georeferencing,
    # 3.6-5.2 px off, was kept (low_quality); 32 px windows: 25 fit
    ref, mov, truth = write_chips(tmp_path, 96, seed)
    assert np.hypot(*truth[:2, 2]) > 2.0  # the georeferencing is pixels off
    rep = register(ref, mov, tmp_path / "out.tif")
    assert rep.status == "ok", rep.message
    assert centre_error(rep.matrix, truth, 96) < 0.5
    refine = json.loads(Path(rep.outputs["report"]).read_text())["stages"]["refine"]
    assert refine["window_px"] == 32


def test_most_windows_agreeing_is_not_replaced_by_the_georeferencing(tmp_path):
    # --min-inliers above the windows that fit in the chip: low_quality by that gate, yet the estimate, on most of
    # the windows, is kept as the result (with --force the raster): the georeferencing is 4 px off
    ref, mov, truth = write_chips(tmp_path, 96, 1)
    rep = register(ref, mov, tmp_path / "out.tif", RegisterConfig(min_inliers=30, force=True))
    assert rep.status == "low_quality"
    assert "kept the georeferencing" not in rep.message
    assert "georeferencing_kept" not in rep.stages
    kept = rep.stages["estimate_kept"]
    assert kept["agreeing"] >= kept["windows"] / 2 and kept["min_inliers"] == 30
    assert centre_error(rep.matrix, truth, 96) < 0.5
    assert np.hypot(*truth[:2, 2]) > 3.0


def test_a_128_px_chip_keeps_the_64_px_windows(tmp_path):
    ref, mov, truth = write_chips(tmp_path, 128, 0)
    rep = register(ref, mov, tmp_path / "out.tif")
    assert rep.status == "ok", rep.message
    assert centre_error(rep.matrix, truth, 128) < 0.5
    assert json.loads(Path(rep.outputs["report"]).read_text())["stages"]["refine"]["window_px"] == 64


def test_a_chip_whose_small_windows_give_nothing_says_so(tmp_path):
    # an 80 px chip: its 32 px windows give no estimate, the 64 px windows that fit are too few to check the keypoint
    # fit; the reason names both (before: only "3 correlation window(s) ... fit in it")
    ref, mov, _ = write_chips(tmp_path, 80, 3)
    rep = register(ref, mov, tmp_path / "out.tif", RegisterConfig(warp=False))
    first = rep.stages["refine"]["first_windows"]
    assert first["window_px"] == 32 and first["windows"] >= 8
    assert rep.status == "low_quality"
    assert f"its {first['windows']} windows of 32 px gave no estimate" in rep.message, rep.message


def test_a_larger_chip_whose_windows_disagree_is_not_called_too_small(tmp_path):
    # 140 px, single-look, 70 % changed: 25 windows of 64 px fit and disagree, then one of 128 px fits; the reason
    # said "the overlap is too small ... 1 correlation window(s) fit in it"
    a, b, _ = chip_pair(140, 52, looks=1, change=0.7, max_shift=5)
    t = Affine(PIXEL, 0, 400000, 0, -PIXEL, 5000000)
    ref = write_geotiff(tmp_path / "ref.tif", a, t, "EPSG:32633")
    mov = write_geotiff(tmp_path / "moving.tif", b, t, "EPSG:32633")
    rep = register(ref, mov, tmp_path / "out.tif", RegisterConfig(warp=False))
    first = rep.stages["refine"]["first_windows"]
    assert rep.status == "low_quality" and first["window_px"] == 64 and first["windows"] >= 8
    assert "too small" not in rep.message, rep.message
    assert f"its {first['windows']} windows of 64 px gave no estimate" in rep.message, rep.message


def test_update_georef_keeps_the_simpler_model_the_warp_keeps(tmp_path):
    # --model auto chose a shift for the warp and, with --update-georef, an unconstrained affine written into the
    # geotransform 1.0-3.0 px off at the chip's corners (seeds 5-7): the choice now runs among the models a
    # geotransform holds
    ref, mov, truth = write_chips(tmp_path, 128, 6)
    warped = register(ref, mov, tmp_path / "warped.tif")
    rep = register(ref, mov, tmp_path / "copy.tif", RegisterConfig(update_georef=True))
    assert warped.status == rep.status == "ok", rep.message
    assert rep.model == warped.model == "shift"
    import rasterio

    with rasterio.open(tmp_path / "copy.tif") as o, rasterio.open(ref) as r:
        out_t, ref_t = o.transform, r.transform
    corners = np.array([[x, y] for x in (0, 127) for y in (0, 127)], float)
    want = np.array([ref_t * tuple(p + 0.5) for p in apply_matrix(truth, corners)])
    got = np.array([out_t * tuple(p + 0.5) for p in corners])
    assert np.hypot(*(got - want).T).max() / PIXEL < 0.5
