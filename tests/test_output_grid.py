"""``--resolution``: the warped output on the reference's extent and CRS with another pixel size (real GDAL warps)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.enums import Resampling

from sarreg import register
from sarreg.cli import cli
from sarreg.config import RegisterConfig
from sarreg.errors import InputError
from sarreg.synth import reflectivity, speckle, warp_image, write_geotiff
from sarreg.grid import Grid, output_grid

UTM = "EPSG:32631"
REF_T = Affine(10.0, 0, 500000.0, 0, -10.0, 5000000.0)


def test_output_grid_keeps_extent_and_orientation():
    g = Grid(300, 200, REF_T, "WKT")
    assert output_grid(g, "reference") is g
    h = output_grid(g, "2.5")
    assert (h.width, h.height) == (1200, 800) and h.transform == Affine(2.5, 0, 500000.0, 0, -2.5, 5000000.0)
    h = output_grid(g, 30.0)  # 10 km x 6.67 km does not divide: the last pixel covers the rest
    assert (h.width, h.height) == (100, 67)
    turned = Grid(100, 100, Affine.rotation(30) @ Affine.scale(10, -10), "WKT")
    h = output_grid(turned, "5")
    assert (h.width, h.height) == (200, 200) and np.allclose(h.transform @ (200, 0), turned.transform @ (100, 0))
    half = np.diag([0.5, 0.5, 1.0])  # moving px -> reference px: a moving pixel is half a reference pixel
    assert output_grid(g, "moving", half).transform.a == pytest.approx(5.0)
    with pytest.raises(InputError, match="--resolution needs a reference with a geotransform"):
        output_grid(Grid(10, 10, Affine.identity(), None), "5")


def test_validate_resolution_values_and_combinations():
    assert RegisterConfig(resolution="moving").validate()
    for bad in ("abc", "-3", "0", "nan"):
        with pytest.raises(InputError, match="--resolution must be reference, moving or a pixel size > 0"):
            RegisterConfig(resolution=bad).validate()
    with pytest.raises(InputError, match="--update-georef keeps MOVING's own grid") as e:
        RegisterConfig(update_georef=True, resolution="5").validate()
    assert e.value.exit_code == 2  # a usage error (OptionError), as click's own


@pytest.fixture(scope="module")
def fine_pair(tmp_path_factory):
    """A 10 m reference and a 5 m moving scene of the same ground, the moving one 23 m east and 14 m south off."""
    d = tmp_path_factory.mktemp("fine")
    n, pad = 384, 32
    field = reflectivity(2 * (n + 2 * pad), 2 * (n + 2 * pad), seed=4)  # at 5 m
    rng = np.random.default_rng(2)
    ref5 = speckle(field, 4.0, rng)[2 * pad:2 * (pad + n), 2 * pad:2 * (pad + n)]
    ref = ref5.reshape(n, 2, n, 2).mean(axis=(1, 3))  # 10 m
    m = np.array([[1, 0, 2 * pad + 2.3 * 2 / 2], [0, 1, 2 * pad - 1.4], [0, 0, 1]], float)  # moving px -> field px
    mov = warp_image(speckle(field, 4.0, rng), m, (2 * n, 2 * n))
    return {"ref": write_geotiff(d / "ref.tif", ref, REF_T, UTM),
            "moving": write_geotiff(d / "moving.tif", mov, Affine(5.0, 0, 500000.0, 0, -5.0, 5000000.0), UTM,
                                    nodata=0.0)}


def test_register_keeps_the_moving_resolution(fine_pair, tmp_path):
    cfg = RegisterConfig(features="sift", fmt="GTiff")
    base = register(fine_pair["ref"], fine_pair["moving"], tmp_path / "ref_grid.tif", cfg)
    rep = register(fine_pair["ref"], fine_pair["moving"], tmp_path / "fine.tif", cfg.with_(resolution="moving"))
    assert base.status == rep.status == "ok", (base.message, rep.message)
    with rasterio.open(base.output) as a, rasterio.open(rep.output) as b:
        assert b.crs == a.crs and b.res == pytest.approx((5.0, 5.0), abs=0.01) and a.res == (10.0, 10.0)
        # the reference's extent (the last pixel may reach up to one pixel beyond it)
        assert tuple(b.bounds) == pytest.approx(tuple(a.bounds), abs=5.0)
        assert (b.width, b.height) == (2 * a.width, 2 * a.height)
        coarse = a.read(1)
        # the 5 m output averaged to 10 m is the 10 m output (both bilinear resamplings of the same registration)
        fine = b.read(1, out_shape=(a.height, a.width), resampling=Resampling.average)
        ok = (coarse != 0) & (fine != 0) & np.isfinite(coarse) & np.isfinite(fine)
        assert ok.mean() > 0.8 and np.corrcoef(np.log(coarse[ok]), np.log(fine[ok]))[0, 1] > 0.9
    assert json.loads(open(rep.outputs["report"]).read())["stages"]["warp"]["grid"]["width"] == 2 * 384


def test_cli_resolution_in_register_and_apply(fine_pair, tmp_path):
    out = tmp_path / "o.tif"
    res = CliRunner().invoke(cli, ["register", "--features", "sift", "--resolution", "2.5", str(fine_pair["ref"]),
                                   str(fine_pair["moving"]), str(out)])
    assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds:
        assert ds.res == (2.5, 2.5) and ds.width == 4 * 384
    res = CliRunner().invoke(cli, ["apply", str(out.with_name("o.report.json")), str(fine_pair["moving"]),
                                   str(tmp_path / "a.tif"), "--resolution", "moving"])
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "a.tif") as ds:
        assert ds.res == pytest.approx((5.0, 5.0), abs=0.01)
    res = CliRunner().invoke(cli, ["register", "--features", "sift", "--resolution", "fine", str(fine_pair["ref"]),
                                   str(fine_pair["moving"]), str(tmp_path / "x.tif")])
    assert res.exit_code == 2 and "--resolution must be reference, moving or a pixel size" in res.output  # usage
    assert not (tmp_path / "x.tif").exists()
