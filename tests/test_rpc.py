"""Rasters located by RPCs (no geotransform, no GCPs: SAR ground-range products that ship them, optical
level-1 scenes): read as GCP-located rasters through GCPs made from the RPCs (``sarreg.io.gcps.rpc_gcps``).

The scenes are speckled GeoTIFFs written in tmp_path with RPCs of a known ground geometry (WGS 84 longitude /
latitude of a 1e-4 degree grid), some with a quadratic term and a height term so that the RPCs are not affine and
the height they are evaluated at matters.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.rpc import RPC
from rasterio.transform import RPCTransformer

from sarreg import register
from sarreg.cli import cli
from sarreg.config import RegisterConfig
from sarreg.io.gcps import located, pixel_to_map, read_gcps
from sarreg.synth import reflectivity, speckle, write_geotiff

N = 384
D = 1e-4  # degrees per pixel
LON0, LAT0 = 10.0, 45.0
SIFT = RegisterConfig(features="sift")
GRID = Affine(D, 0.0, LON0, 0.0, -D, LAT0)  # the same ground grid as a geotransform


def rpc_of(width: int, height: int, off: tuple[float, float] = (0.0, 0.0), quad: float = 0.0,
           tilt: float = 0.0, height_off: float = 500.0) -> RPC:
    """RPCs that put the centre of pixel (x, y) at (LON0 + (x + 0.5 + dx) D, LAT0 - (y + 0.5 + dy) D) at the
    height offset; ``quad`` bends the columns (a longitude-squared term), ``tilt`` moves them with height."""
    sn, ln, den = [0.0] * 20, [0.0] * 20, [1.0] + [0.0] * 19
    sn[1], ln[2], sn[7], sn[3] = 1.0, -1.0, quad, tilt  # (1, L, P, H, LP, LH, PH, L^2, ...): L lon, P lat
    dx, dy = off
    return RPC(height_off=height_off, height_scale=1000.0, lat_off=LAT0 - (height / 2 + 0.5 + dy) * D,
               lat_scale=height / 2 * D, line_den_coeff=den, line_num_coeff=ln, line_off=height / 2,
               line_scale=height / 2, long_off=LON0 + (width / 2 + 0.5 + dx) * D, long_scale=width / 2 * D,
               samp_den_coeff=den, samp_num_coeff=sn, samp_off=width / 2, samp_scale=width / 2, err_bias=-1.0,
               err_rand=-1.0)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    d = tmp_path_factory.mktemp("rpc")
    refl = reflectivity(N, N, seed=21)
    rng = np.random.default_rng(5)
    return d, speckle(refl, 4.0, rng).astype("float32"), speckle(refl, 4.0, rng).astype("float32")


def test_gcps_made_from_rpcs_follow_them_at_their_height(scene):
    d, a, _ = scene
    rpc = rpc_of(N, N, quad=0.02, tilt=0.05, height_off=2000.0)
    p = write_geotiff(d / "bent.tif", a, rpcs=rpc)
    with rasterio.open(p) as ds:
        gcps, crs = read_gcps(ds)
    assert crs.to_epsg() == 4326 and len(gcps) == 441
    assert located(gcps) == "rpcs (441 GCPs at 2000 m, GCP_TPS)"
    xy = np.random.default_rng(1).uniform(0, N - 1, (200, 2))
    got = pixel_to_map(gcps, xy)
    for h, near in ((2000.0, True), (0.0, False)):  # (at 0 m the tilt moves the columns by about 10 px)
        with RPCTransformer(rpc, rpc_height=h) as t:  # the RPCs' own (exact) ground -> pixel direction
            rows, cols = t.rowcol(got[:, 0], got[:, 1], op=lambda v: v)
        err = np.hypot(np.asarray(cols) - 0.5 - xy[:, 0], np.asarray(rows) - 0.5 - xy[:, 1])
        assert (err.max() < 0.02) if near else (err.min() > 5), (h, err.min(), err.max())


def test_a_raster_located_by_rpcs_registers_on_a_georeferenced_one(scene, tmp_path):
    d, a, b = scene
    ref = write_geotiff(tmp_path / "ref.tif", a, GRID, "EPSG:4326")
    # the moving date's RPCs put it 6 px east and 3 px north of where it is
    mov = write_geotiff(tmp_path / "mov.tif", b, rpcs=rpc_of(N, N, off=(6.0, -3.0)))
    rep = register(ref, mov, tmp_path / "out.tif", SIFT)
    assert rep.status == "ok", rep.message
    relate = rep.stages["relate"]
    assert relate["located_by"]["moving"].startswith("rpcs (441 GCPs at 500 m")
    assert np.allclose(np.asarray(relate["prior"])[:2, 2], (6.0, -3.0), atol=0.01)  # where the RPCs put it
    assert np.allclose(np.asarray(rep.matrix), np.eye(3), atol=0.1)  # where it is
    with rasterio.open(tmp_path / "out.tif") as o:
        assert o.transform == GRID and o.crs.to_epsg() == 4326


def test_two_rasters_located_by_rpcs_register_and_the_output_keeps_the_reference_location(scene, tmp_path):
    _, a, b = scene
    ref = write_geotiff(tmp_path / "ref.tif", a, rpcs=rpc_of(N, N, quad=0.02))
    mov = write_geotiff(tmp_path / "mov.tif", b, rpcs=rpc_of(N, N, off=(-4.0, 5.0), quad=0.02))
    rep = register(ref, mov, tmp_path / "out.tif", SIFT)
    assert rep.status == "ok", rep.message
    assert np.allclose(np.asarray(rep.matrix), np.eye(3), atol=0.1)
    with rasterio.open(ref) as r, rasterio.open(tmp_path / "out.tif") as o:
        g_ref, _ = read_gcps(r)
        g_out, crs = o.gcps  # the reference's location, as its GCPs
        assert crs.to_epsg() == 4326 and len(g_out) == len(g_ref)
        assert np.allclose([(g.col, g.row, g.x, g.y) for g in g_out], g_ref, rtol=0, atol=1e-9)


def test_info_says_a_raster_is_located_by_rpcs(scene, tmp_path):
    _, a, _ = scene
    p = write_geotiff(tmp_path / "a.tif", a, rpcs=rpc_of(N, N))
    res = CliRunner().invoke(cli, ["info", "--json", str(p)])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    info = info[0] if isinstance(info, list) else info
    assert info["located_by"] == "rpcs (441 GCPs at 500 m, GCP_TPS)" and info["crs"] == "EPSG:4326"


def test_the_corrected_copy_of_a_raster_located_by_rpcs_drops_them(scene, tmp_path):
    """``register --update-georef`` and ``apply --update-georef``: the copy is located by its corrected geotransform
    alone; its RPCs, which put it 6 px off, are not kept."""
    _, a, b = scene
    ref = write_geotiff(tmp_path / "ref.tif", a, GRID, "EPSG:4326")
    mov = write_geotiff(tmp_path / "mov.tif", b, rpcs=rpc_of(N, N, off=(6.0, -3.0)))
    res = CliRunner().invoke(cli, ["register", "--features", "sift", "--model", "shift", "--update-georef", str(ref),
                                   str(mov), str(tmp_path / "u_register.tif")])
    assert res.exit_code == 0, res.output
    out = tmp_path / "o.tif"
    res = CliRunner().invoke(cli, ["register", "--features", "sift", "--model", "shift", str(ref), str(mov), str(out)])
    assert res.exit_code == 0, res.output
    for fmt in ("auto", "COG"):  # (the byte copy with new tags, and a re-encoded copy)
        res = CliRunner().invoke(cli, ["apply", "--update-georef", "--format", fmt, str(tmp_path / "o.report.json"),
                                       str(mov), str(tmp_path / f"u_{fmt}.tif")])
        assert res.exit_code == 0, res.output
    for name in ("u_register", "u_auto", "u_COG"):
        with rasterio.open(tmp_path / f"{name}.tif") as u:
            assert u.rpcs is None and u.crs.to_epsg() == 4326
            # (within the estimate's error: SIFT, 0.13 px)
            assert np.allclose(np.array(u.transform)[:6], np.array(GRID)[:6], rtol=0, atol=0.25 * D)


def test_a_raster_located_by_geolocation_arrays_registers_on_a_georeferenced_one(scene, tmp_path):
    """GDAL's GEOLOCATION metadata (a swath's 2-D longitude / latitude arrays, here every 8th pixel, as netCDF /
    HDF5 swaths carry them): GCPs made from the arrays, the registration as for RPCs."""
    from osgeo import gdal

    _, a, b = scene
    ref = write_geotiff(tmp_path / "ref.tif", a, GRID, "EPSG:4326")
    mov = write_geotiff(tmp_path / "mov.tif", b)
    step = 8
    x, y = np.meshgrid(np.arange(0, N + step, step, dtype=float), np.arange(0, N + step, step, dtype=float))
    # samples at the pixel edges (x, y) (TOP_LEFT_CORNER; with PIXEL_CENTER GDAL puts a sample at the centre of the
    # step x step block it stands for), (LON0 + (x + 6) D, LAT0 - (y - 3) D): the image 6 px east, 3 px north
    write_geotiff(tmp_path / "lon.tif", LON0 + (x + 6.0) * D)
    write_geotiff(tmp_path / "lat.tif", LAT0 - (y - 3.0) * D)
    ds = gdal.Open(str(mov), gdal.GA_Update)
    ds.SetMetadata({"X_DATASET": str(tmp_path / "lon.tif"), "X_BAND": "1", "Y_DATASET": str(tmp_path / "lat.tif"),
                    "Y_BAND": "1", "PIXEL_OFFSET": "0", "LINE_OFFSET": "0", "PIXEL_STEP": str(step),
                    "LINE_STEP": str(step), "SRS": "EPSG:4326", "GEOREFERENCING_CONVENTION": "TOP_LEFT_CORNER"},
                   "GEOLOCATION")
    ds = None
    rep = register(ref, mov, tmp_path / "out.tif", SIFT)
    assert rep.status == "ok", rep.message
    relate = rep.stages["relate"]
    assert relate["located_by"]["moving"] == "geolocation arrays (441 GCPs, GCP_TPS)"
    assert np.allclose(np.asarray(relate["prior"])[:2, 2], (6.0, -3.0), atol=0.02)  # where the arrays put it
    assert np.allclose(np.asarray(rep.matrix), np.eye(3), atol=0.1)  # where it is


def test_the_corrected_copy_of_a_bent_rpc_raster_carries_its_moved_gcps(scene, tmp_path):
    """RPCs that bend (a quadratic term): the correction is native to the raster's GCPs, and the copy of
    ``apply --update-georef`` carries them moved. Before, a TIFF that stored an identity geotransform beside its RPCs
    (as rasterio writes one) came out with neither GCPs nor RPCs: not located at all."""
    from sarreg.io.raster import open_scene
    from sarreg.relate import prior_fit

    _, a, b = scene
    ref = write_geotiff(tmp_path / "ref.tif", a, GRID, "EPSG:4326")
    mov = write_geotiff(tmp_path / "mov.tif", b, rpcs=rpc_of(N, N, off=(6.0, -3.0), quad=0.02))
    res = CliRunner().invoke(cli, ["register", "--features", "sift", "--model", "shift", str(ref), str(mov),
                                   str(tmp_path / "o.tif")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "o.report.json").read_text())["stages"]["relate"].get("native")
    res = CliRunner().invoke(cli, ["apply", "--update-georef", str(tmp_path / "o.report.json"), str(mov),
                                   str(tmp_path / "u.tif")])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["register", "--features", "sift", "--model", "shift", "--update-georef", str(ref),
                                   str(mov), str(tmp_path / "r.tif")])  # (the same in one step)
    assert res.exit_code == 0, res.output
    before = prior_fit(open_scene(ref), open_scene(mov))[0]
    c = np.array([N / 2, N / 2, 1.0])  # the centre: where the RPCs put it 6.7 px off, the copies' GCPs within 1 px
    assert np.hypot(*((before @ c)[:2] - c[:2])) > 5
    for name in ("u", "r"):
        with rasterio.open(tmp_path / f"{name}.tif") as u:
            gcps, crs = u.gcps
            assert len(gcps) == 441 and crs.to_epsg() == 4326 and u.rpcs is None
        after = prior_fit(open_scene(ref), open_scene(tmp_path / f"{name}.tif"))[0]
        assert np.hypot(*((after @ c)[:2] - c[:2])) < 1.0
