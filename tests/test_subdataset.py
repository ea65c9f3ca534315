"""Inputs named as GDAL subdatasets (``NETCDF:"f.nc":VV``, ``GTIFF_DIR:1:f.tif``), and files of several rasters.

A netCDF / HDF5 product holds its rasters as subdatasets: each subdataset name is an input as it is, the file alone
(no band of its own) is a one-line error listing them. The files are written in tmp_path with GDAL (a GeoTIFF
translated to netCDF; a netCDF of two variables through GDAL's multidimensional API).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from osgeo import gdal

from sarreg import register
from sarreg.batch.runner import unique_keys
from sarreg.cli import cli
from sarreg.config import RegisterConfig
from sarreg.io.source import input_name, local_path
from sarreg.synth import reflectivity, speckle, warp_image, write_geotiff

gdal.UseExceptions()
N = 320
T = Affine(10.0, 0, 500000.0, 0, -10.0, 5000000.0)
SIFT = RegisterConfig(features="sift")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("sub")
    field = reflectivity(N + 64, N + 64, seed=8)
    rng = np.random.default_rng(2)
    ref = speckle(field, 4.0, rng)[32:32 + N, 32:32 + N].astype("float32")
    m = np.array([[1.0, 0, 32 + 3.5], [0, 1.0, 32 - 2.25], [0, 0, 1]])  # moving px -> field px
    mov = np.nan_to_num(warp_image(speckle(field, 4.0, rng), m, (N, N)), nan=0.0).astype("float32")
    for name, a in (("ref", ref), ("mov", mov)):
        gdal.Translate(str(d / f"{name}.nc"), str(write_geotiff(d / f"{name}.tif", a, T, "EPSG:32631")),
                       format="netCDF")
    multi = gdal.GetDriverByName("netCDF").CreateMultiDimensional(str(d / "multi.nc"))
    g = multi.GetRootGroup()
    dims = [g.CreateDimension("y", None, None, N), g.CreateDimension("x", None, None, N)]
    for var, a in (("VV", ref), ("VH", 0.2 * ref)):
        g.CreateMDArray(var, dims, gdal.ExtendedDataType.Create(gdal.GDT_Float32)).Write(a)
    multi = g = None
    return d


def test_netcdf_variables_named_as_subdatasets_register(files, tmp_path):
    rep = register(f'NETCDF:"{files / "ref.nc"}":Band1', f'NETCDF:"{files / "mov.nc"}":Band1', tmp_path / "o.tif",
                   SIFT)
    assert rep.status == "ok", rep.message
    # the moving pixel (x, y) shows field pixel (x + 35.5, y + 29.75), the reference's (x + 32, y + 32)
    assert np.allclose(np.asarray(rep.matrix)[:2, 2], (3.5, -2.25), atol=0.1)
    with rasterio.open(tmp_path / "o.tif") as o:
        assert o.transform == T and o.crs.to_epsg() == 32631


def test_a_file_of_several_rasters_is_one_line_naming_them(files, tmp_path):
    res = CliRunner().invoke(cli, ["register", "--features", "sift", str(files / "multi.nc"), str(files / "mov.tif"),
                                   str(tmp_path / "o.tif")])
    assert res.exit_code == 1
    err = res.stderr.strip()
    assert "\n" not in err and "holds 2 subdataset(s) and no band of its own" in err
    assert f'NETCDF:"{files / "multi.nc"}":VV' in err and f'NETCDF:"{files / "multi.nc"}":VH' in err
    # and the names it gives are inputs: two variables of the one file register (the same speckle: 0 px)
    rep = register(f'NETCDF:"{files / "multi.nc"}":VV', f'NETCDF:"{files / "multi.nc"}":VH', tmp_path / "v.tif",
                   SIFT)
    assert rep.status == "ok" and math.hypot(*np.asarray(rep.matrix)[:2, 2]) < 0.05


def test_a_missing_file_in_a_subdataset_name_is_named(files, tmp_path):
    res = CliRunner().invoke(cli, ["register", "--features", "sift", f'NETCDF:"{files / "gone.nc"}":VV',
                                   str(files / "mov.tif"), str(tmp_path / "o.tif")])
    assert res.exit_code == 1
    assert f"{files / 'gone.nc'}: file not found (in the subdataset name" in res.stderr
    assert not list(tmp_path.iterdir())


def test_subdataset_names_give_file_names_and_protect_their_file(files, tmp_path):
    vv, vh = f'NETCDF:"{files / "multi.nc"}":VV', f'NETCDF:"{files / "multi.nc"}":VH'
    assert input_name(vv) == "multi_VV.nc" and input_name('HDF5:"p.h5"://science/grids/HHHH') == \
        "p_science_grids_HHHH.h5"
    assert unique_keys([vv, vh]) == ["multi_VV", "multi_VH"]  # (batch outputs: multi_VV_reg.tif, ...)
    assert local_path(vv) == files / "multi.nc" and local_path("GTIFF_DIR:1:/x/a.tif") == local_path("/x/a.tif")
    # an output over the file a subdataset name reads is refused, --overwrite or not
    copy = tmp_path / "ref.tif"
    copy.write_bytes((files / "ref.tif").read_bytes())
    before = copy.read_bytes()
    res = CliRunner().invoke(cli, ["register", "--features", "sift", "--overwrite", f"GTIFF_DIR:1:{copy}",
                                   str(files / "mov.tif"), str(copy)])
    assert res.exit_code == 1 and "refusing to overwrite an input" in res.stderr
    assert copy.read_bytes() == before


def test_a_netcdf_swath_located_by_2d_longitude_latitude_registers(files, tmp_path):
    """A netCDF variable whose CF ``coordinates`` are 2-D longitude / latitude variables (a swath): GDAL's geolocation
    arrays, read as 21 x 21 GCPs. The arrays put it 6 / -3 px off a reference on the same WGS 84 grid."""
    d = 1e-4
    with rasterio.open(files / "ref.tif") as r:
        a = r.read(1)
    ref = write_geotiff(tmp_path / "ref.tif", a, Affine(d, 0, 10.0, 0, -d, 45.0), "EPSG:4326")
    multi = gdal.GetDriverByName("netCDF").CreateMultiDimensional(str(tmp_path / "swath.nc"))
    g = multi.GetRootGroup()
    dims = [g.CreateDimension("y", None, None, N), g.CreateDimension("x", None, None, N)]
    x, y = np.meshgrid(np.arange(N), np.arange(N))
    text = gdal.ExtendedDataType.CreateString()
    for name, values, units in (("lon", 10.0 + (x + 0.5 + 6.0) * d, "degrees_east"),
                                ("lat", 45.0 - (y + 0.5 - 3.0) * d, "degrees_north")):
        v = g.CreateMDArray(name, dims, gdal.ExtendedDataType.Create(gdal.GDT_Float64))
        v.Write(values)
        v.CreateAttribute("units", [], text).WriteString(units)
    v = g.CreateMDArray("VV", dims, gdal.ExtendedDataType.Create(gdal.GDT_Float32))
    v.Write(a)
    v.CreateAttribute("coordinates", [], text).WriteString("lat lon")
    multi = g = v = dims = None  # (every handle released: the file is closed)
    rep = register(ref, f'NETCDF:"{tmp_path / "swath.nc"}":VV', tmp_path / "o.tif", SIFT)
    assert rep.status == "ok", rep.message
    assert rep.stages["relate"]["located_by"]["moving"] == "geolocation arrays (441 GCPs, GCP_TPS)"
    # GDAL reads a netCDF variable bottom-up (its row r is the array's row N - 1 - r), the arrays with it
    flip = np.array([[1.0, 0, 0], [0, -1.0, N - 1], [0, 0, 1]])
    assert np.allclose(rep.stages["relate"]["prior"], np.array([[1.0, 0, 6.0], [0, 1.0, -3.0], [0, 0, 1]]) @ flip,
                       atol=0.02)
    assert np.allclose(np.asarray(rep.matrix), flip, atol=0.02)  # (the same speckle: 0 px)
