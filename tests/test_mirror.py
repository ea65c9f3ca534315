"""A moving image mirrored relative to the reference (columns reversed): radar images of opposite passes in their own
geometry, or a flipped export. Between plain images the estimate maps it exactly and is ``ok``, with the report
saying it is mirrored; between georeferenced rasters, whose georeferencing already orients them, a mirrored estimate
is not trusted. Before stop 62 both were ``low_quality`` with "implausible scale/shear relative to the
georeferencing" and the CLI printed "rotation -180 deg" (``sarreg.quality.mirrored``), and a mirrored pair whose
keypoints do not match as they stand was not found: the coarse stage now also matches the moving image mirrored
between plain images, last, when no other pass fits (the network's descriptors do not match a mirrored SAR scene)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from affine import Affine

from sarreg import register
from sarreg.config import RegisterConfig
from sarreg.quality import mirrored
from sarreg.synth import reflectivity, speckle, temporal_change, write_geotiff

N = 512
UTM = "EPSG:32631"
T = Affine(10.0, 0, 500000.0, 0, -10.0, 5000000.0)
TRUTH = np.array([[-1.0, 0, N - 1], [0, 1, 0], [0, 0, 1]])  # moving px (x, y) shows the reference's (N - 1 - x, y)


def mirrored_pair(tmp_path: Path, georeferenced: bool) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    refl = reflectivity(N, N, 5)
    a, b = speckle(refl, 4, rng), speckle(refl, 4, rng)[:, ::-1]
    kw = dict(transform=T, crs=UTM) if georeferenced else {}
    return (write_geotiff(tmp_path / "ref.tif", a, nodata=0, **kw),
            write_geotiff(tmp_path / "moving.tif", np.ascontiguousarray(b), nodata=0, **kw))


def grid_error(matrix: list) -> float:
    g = np.stack(np.meshgrid(np.linspace(0, N - 1, 10), np.linspace(0, N - 1, 10)), -1).reshape(-1, 2)
    h = np.c_[g, np.ones(len(g))]
    return float(np.hypot(*((h @ np.asarray(matrix).T)[:, :2] - (h @ TRUTH.T)[:, :2]).T).mean())


def test_plain_images_mirrored_register_ok_and_say_so(tmp_path: Path) -> None:
    ref, mov = mirrored_pair(tmp_path, georeferenced=False)
    rep = register(ref, mov, tmp_path / "out.tif", RegisterConfig(warp=False))
    assert rep.status == "ok", rep.message  # (was low_quality: "implausible scale/shear ... georeferencing")
    assert grid_error(rep.matrix) < 0.3
    assert rep.correction["mirrored"] is True and abs(rep.correction["rotation_deg"]) < 0.5


def test_a_mirrored_estimate_between_georeferenced_rasters_is_not_trusted(tmp_path: Path) -> None:
    ref, mov = mirrored_pair(tmp_path, georeferenced=True)
    rep = register(ref, mov, tmp_path / "out.tif", RegisterConfig(warp=False))
    assert rep.status == "low_quality" and rep.correction["mirrored"] is True
    assert "mirrors the moving raster relative to its georeferencing" in rep.message  # (not "implausible scale")


def test_mirrored_is_a_negative_determinant_relative_to_the_prior() -> None:
    prior = np.array([[0.5, 0, 3], [0, 0.5, -2], [0, 0, 1]])
    assert mirrored(prior, prior @ TRUTH) and not mirrored(prior, prior)
    turned = np.array([[0.0, -1, 10], [1, 0, 0], [0, 0, 1]])  # a quarter turn is no mirror; a transpose is
    assert not mirrored(np.eye(3), turned) and mirrored(np.eye(3), np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]]))


def test_a_mirrored_pair_with_change_is_found_by_the_mirrored_keypoint_pass(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    refl = reflectivity(300, 300, 13)
    a = speckle(refl, 4, rng)[:256, :256]
    b = speckle(temporal_change(refl, rng), 4, rng)[13:269, 7:263][:, ::-1]  # moved by (7, 13) px, then mirrored
    ref = write_geotiff(tmp_path / "ref.tif", a, nodata=0)
    mov = write_geotiff(tmp_path / "moving.tif", np.ascontiguousarray(b), nodata=0)
    rep = register(ref, mov, tmp_path / "out.tif", RegisterConfig(warp=False))
    truth = np.array([[-1.0, 0, 262], [0, 1, 13], [0, 0, 1]])
    g = np.stack(np.meshgrid(np.linspace(0, 255, 10), np.linspace(0, 255, 10)), -1).reshape(-1, 2)
    h = np.c_[g, np.ones(len(g))]
    err = float(np.hypot(*((h @ np.asarray(rep.matrix).T)[:, :2] - (h @ truth.T)[:, :2]).T).mean())
    assert rep.status == "ok" and err < 0.6, (rep.status, err, rep.message)  # (was low_quality, 141 px off)

