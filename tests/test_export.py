"""Sidecar writers: JSON, QGIS .points, tie-point layers, matches npz, quicklook (real files in tmp_path)."""
from __future__ import annotations

import sqlite3

import json

import numpy as np
import pyogrio
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from sarreg.export import sidecar, write_json, write_matches_npz, write_qgis_points, write_quicklook, write_tiepoints
from sarreg.extract import Features
from sarreg.io.raster import open_scene
from sarreg.synth import reflectivity, write_geotiff
from sarreg.grid import PixelTransform


def test_sidecar_names(tmp_path):
    assert sidecar(tmp_path / "a.b.tif", ".report.json") == tmp_path / "a.b.report.json"
    assert sidecar("out.tif", ".points").name == "out.points"


def test_json_is_strict(tmp_path):
    p = write_json(tmp_path / "r.json", {"a": np.float32(1.5), "b": float("nan"), "c": np.arange(3),
                                         "d": {"e": np.bool_(True), "f": tmp_path}})
    d = json.loads(p.read_text())  # strict JSON: NaN became null
    assert d == {"a": 1.5, "b": None, "c": [0, 1, 2], "d": {"e": True, "f": str(tmp_path)}}
    assert "NaN" not in p.read_text()


def test_qgis_points(tmp_path):
    wkt = CRS.from_epsg(32631).to_wkt()
    p = write_qgis_points(tmp_path / "o.points", np.array([[500005.0, 4999995.0], [500105.0, 4999895.0]]),
                          np.array([[0.5, -0.5], [10.5, -10.5]]), np.array([True, False]),
                          np.array([[0.1, -0.2], [np.nan, 0.0]]), wkt)
    lines = p.read_text().splitlines()
    assert lines[0] == f"#CRS: {wkt}"
    assert lines[1] == "mapX,mapY,sourceX,sourceY,enable,dX,dY,residual"
    row = lines[2].split(",")
    assert [float(v) for v in row[:4]] == [500005.0, 4999995.0, 0.5, -0.5] and row[4] == "1"
    assert float(row[7]) == pytest.approx(np.hypot(0.1, 0.2), rel=1e-4)
    assert lines[3].split(",")[4] == "0" and "nan" not in lines[3].lower()
    p2 = write_qgis_points(tmp_path / "px.points", np.zeros((1, 2)), np.zeros((1, 2)), np.ones(1, bool),
                           np.zeros((1, 2)), None)
    assert p2.read_text().splitlines()[0].startswith("mapX")  # pixel space: no #CRS line


def test_tiepoints_gpkg_and_geojson(tmp_path):
    n = 5
    xy = np.c_[500000.0 + np.arange(n) * 10, 5000000.0 - np.arange(n) * 10]
    for name in ("t.gpkg", "t.geojson"):
        p = write_tiepoints(tmp_path / name, xy, xy + 1, xy * 0, xy * 0, np.r_[0.1, 0.2, np.nan, 0.4, 0.5],
                            np.ones(n), np.array([1, 0, 1, 1, 0], bool), CRS.from_epsg(32631))
        info = pyogrio.read_info(p)
        assert info["features"] == n and "32631" in info["crs"]
        assert {"ref_x", "ref_y", "moving_x", "moving_y", "residual_px", "score", "inlier"} <= set(info["fields"])
    with sqlite3.connect(tmp_path / "t.gpkg") as db:  # GeoPackage 1.2: GDAL < 3.7 (QGIS 3.22 .. 3.28) warns on 1.4
        assert db.execute("pragma user_version").fetchone()[0] == 10200


def test_geojson_of_a_crs_without_epsg_code_is_not_read_as_lon_lat(tmp_path):
    """GeoJSON names a CRS only by an EPSG code: a reference in a custom projection was written as its bare numbers,
    which GDAL / QGIS (and any RFC 7946 reader) take for WGS 84 lon/lat; now RFC 7946 lon/lat of the same points."""
    from pyproj import CRS as PCRS, Transformer

    laea = PCRS.from_proj4("+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m")
    xy = np.c_[4321000.0 + np.arange(3) * 100, 3210000.0 - np.arange(3) * 100]
    p = write_tiepoints(tmp_path / "t.geojson", xy, xy, xy * 0, xy * 0, np.zeros(3), np.ones(3), np.ones(3, bool),
                        laea)
    meta, _, geom, _ = pyogrio.raw.read(p)
    got = shapely.get_coordinates(shapely.from_wkb(geom))
    lonlat = np.c_[Transformer.from_crs(laea, "OGC:CRS84", always_xy=True).transform(xy[:, 0], xy[:, 1])]
    assert PCRS(meta["crs"]).equals(PCRS("OGC:CRS84"), ignore_axis_order=True), meta["crs"]
    assert np.allclose(got, lonlat, atol=1e-6), got
    assert '"crs"' not in p.read_text()  # RFC 7946: no crs member


def test_matches_npz(tmp_path):
    f1 = Features(np.ones((4, 3), np.float32), np.eye(4, 128, dtype=np.float32), np.arange(4, dtype=np.float32),
                  (10, 20))
    f2 = f1.subset(np.arange(3))
    p = write_matches_npz(tmp_path / "m.npz", f1, f2, np.array([0, 2]), np.array([1, 0]), np.array([0.9, 0.8]),
                          np.array([True, False]), np.array([0.1, 3.0]), model=("w.pt", "ab12"))
    with np.load(p) as z:  # allow_pickle=False: the model's name and hash are plain strings
        assert z["matches"].tolist() == [[0, 1], [2, 0]]
        assert (str(z["model_name"]), str(z["model_sha256"])) == ("w.pt", "ab12")
        assert z["ref_keypoints"].shape == (4, 3) and z["moving_descriptors"].shape == (3, 128)
        assert z["ref_imsize"].tolist() == [10, 20] and z["inliers"].tolist() == [True, False]


def test_quicklook(tmp_path):
    img = reflectivity(200, 300, seed=1)
    r = write_geotiff(tmp_path / "r.tif", img, Affine(10, 0, 0, 0, -10, 0), "EPSG:32631")
    sc = open_scene(r)
    tr = PixelTransform("shift", np.array([[1, 0, 2.0], [0, 1, -1.0], [0, 0, 1]]))
    src = np.array([[50.0, 60.0], [100.0, 120.0]])
    p = write_quicklook(tmp_path / "q.png", sc, sc, tr, src, tr.apply(src) + 0.5, np.array([True, False]),
                        max_side=128)
    import cv2

    q = cv2.imread(str(p))
    assert q.shape == (85, 128, 3)
    assert not [x for x in tmp_path.iterdir() if x.name.startswith(".")]
