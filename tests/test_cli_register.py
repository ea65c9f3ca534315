"""``sarreg register`` / ``sarreg apply`` through click: exit codes, sidecars, and every bad input.

Bad input must give a one-line error naming the file and the problem, a non-zero exit, no output left behind,
and unchanged inputs. Scenes are small speckled GeoTIFFs in tmp_path; features are SIFT (no weights needed).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from sarreg.cli import cli
from sarreg.synth import reflectivity, speckle, warp_image, write_geotiff

N = 384
PAD = 64
UTM = "EPSG:32631"
T = Affine(10.0, 0, 500000.0, 0, -10.0, 5000000.0)


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, Path]:
    """ref / moving (shift 5.5, -3.25 px, 2 degrees) georeferenced, plus the same pair in pixel space."""
    d = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(3)
    field = reflectivity(N + 2 * PAD, N + 2 * PAD, seed=11)
    a = math.radians(2.0)
    c = N / 2
    m = np.array([[math.cos(a), -math.sin(a), c - math.cos(a) * c + math.sin(a) * c + 5.5 + PAD],
                  [math.sin(a), math.cos(a), c - math.sin(a) * c - math.cos(a) * c - 3.25 + PAD], [0, 0, 1]])
    ref = speckle(field, 4.0, rng)[PAD:PAD + N, PAD:PAD + N]
    mov = np.nan_to_num(warp_image(speckle(field, 4.0, rng), m, (N, N)), nan=0.0)
    out = {
        "ref": write_geotiff(d / "ref.tif", ref, T, UTM),
        "moving": write_geotiff(d / "moving.tif", mov, T, UTM, nodata=0.0),
        "ref_px": write_geotiff(d / "ref_px.tif", ref),
        "moving_px": write_geotiff(d / "moving_px.tif", mov, nodata=0.0),
        "other": write_geotiff(d / "other.tif", speckle(reflectivity(N, N, seed=99), 4.0, rng), T, UTM),
    }
    out["_m"] = m  # type: ignore[assignment]
    return out


def run(*args: str):
    return CliRunner().invoke(cli, ["register", "--features", "sift", *map(str, args)])


def _one_line_error(res, *needles: str) -> None:
    assert res.exit_code != 0
    err = res.stderr.strip()
    assert err.startswith("sarreg: error: ") and "\n" not in err, err
    for n in needles:
        assert n in err, err


def test_register_ok_with_all_sidecars(scenes, tmp_path):
    out = tmp_path / "out.tif"
    q = tmp_path / "look.png"
    before = _digest(scenes["moving"])
    res = run(scenes["ref"], scenes["moving"], out, "--geojson", "--quicklook", q)
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("ok: ") and str(out) in res.stdout
    for suffix in (".tif", ".report.json", ".tiepoints.gpkg", ".tiepoints.geojson", ".points"):
        assert (tmp_path / f"out{suffix}").is_file(), suffix
    assert q.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rep = json.loads((tmp_path / "out.report.json").read_text())
    # keypoint matches with their features only when keypoints ran (not when the correlation settled the estimate)
    skipped = str(rep["stages"]["fine"].get("keypoints", "")).startswith("skipped")
    assert (tmp_path / "out.matches.npz").is_file() == (not skipped) == ("matches" in rep["outputs"])
    assert rep["status"] == "ok" and rep["options"]["features"] == "sift"
    assert abs(rep["correction"]["rotation_deg"] - 2.0) < 0.1
    assert _digest(scenes["moving"]) == before
    with rasterio.open(out) as o, rasterio.open(scenes["ref"]) as r:
        assert o.profile["driver"] == "GTiff" and o.transform == r.transform and o.crs == r.crs
        assert (o.width, o.height) == (r.width, r.height)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _qgis_lines(path: Path, xy: np.ndarray) -> np.ndarray:
    """How QGIS's Georeferencer reads the coordinates of a layer of ``path`` (QgsRasterChangeCoords): through the
    geotransform GDAL reports, else (none) pixel = x, line = -y; -> GDAL pixel / line (pixel edges)."""
    from osgeo import gdal

    gt = gdal.Open(str(path)).GetGeoTransform(can_return_null=True)
    if gt is None:
        return np.c_[xy[:, 0], -xy[:, 1]]
    inv = gdal.InvGeoTransform(gt)
    return np.array([gdal.ApplyGeoTransform(inv, float(x), float(y)) for x, y in xy])


@pytest.mark.parametrize("stored", [True, False], ids=["identity_geotransform", "no_geotransform"])
def test_points_of_a_pixel_space_pair_as_qgis_reads_them(scenes, tmp_path, stored):
    """OUT.points used as QGIS does (sourceX/Y in the moving layer's coordinates, mapX/Y in the reference layer's)
    gives GCPs the report's matrix maps onto each other. A raster that stores the identity geotransform (rasterio
    writes one for a plain array) is placed by it in GDAL and QGIS (y = row), not with y = -row: its points were
    mirrored (GCPs off the raster)."""
    from osgeo import gdal

    ref, mov = scenes["ref_px"], scenes["moving_px"]
    if not stored:  # the same pixels without any georeferencing tags (GDAL then has no geotransform)
        for name, src in (("ref", ref), ("mov", mov)):
            sds = gdal.Open(str(src))
            a = sds.GetRasterBand(1)
            d = gdal.GetDriverByName("GTiff").Create(str(tmp_path / f"{name}.tif"), a.XSize, a.YSize, 1, a.DataType)
            d.GetRasterBand(1).WriteArray(a.ReadAsArray())
            if a.GetNoDataValue() is not None:
                d.GetRasterBand(1).SetNoDataValue(a.GetNoDataValue())
            d = None
            assert gdal.Open(str(tmp_path / f"{name}.tif")).GetGeoTransform(can_return_null=True) is None
        ref, mov = tmp_path / "ref.tif", tmp_path / "mov.tif"
    res = run(ref, mov, tmp_path / "o.tif")
    assert res.exit_code == 0, res.output
    m = np.array(json.loads((tmp_path / "o.report.json").read_text())["matrix"])
    rows = np.loadtxt(tmp_path / "o.points", delimiter=",", skiprows=1, ndmin=2)
    rows = rows[rows[:, 4] > 0]
    assert len(rows) >= 12
    src = _qgis_lines(mov, rows[:, 2:4]) - 0.5  # -> pixel centres
    dst = _qgis_lines(ref, rows[:, 0:2]) - 0.5
    pred = np.c_[src, np.ones(len(src))] @ m.T
    assert np.median(np.hypot(*(pred[:, :2] - dst).T)) < 1.0


def test_output_of_a_pixel_space_reference_with_a_stored_geotransform_overlays_it(scenes, tmp_path):
    """A pixel-space reference that stores the identity geotransform (rasterio writes one for a plain array) is placed
    by it in GDAL and QGIS (y = 0..400); OUT was written without one, so QGIS drew it at y = -400..0, beside the
    reference. OUT now carries the reference's geotransform (apply's output too)."""
    from osgeo import gdal

    assert gdal.Open(str(scenes["ref_px"])).GetGeoTransform(can_return_null=True) == (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    res = run(scenes["ref_px"], scenes["moving_px"], tmp_path / "o.tif")
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["apply", str(tmp_path / "o.report.json"), str(scenes["moving_px"]),
                                   str(tmp_path / "b.tif")])
    assert res.exit_code == 0, res.output
    with rasterio.open(scenes["ref_px"]) as r:
        for name in ("o.tif", "b.tif"):
            assert gdal.Open(str(tmp_path / name)).GetGeoTransform(can_return_null=True) == \
                gdal.Open(str(scenes["ref_px"])).GetGeoTransform(), name
            with rasterio.open(tmp_path / name) as o:
                assert o.transform == r.transform and o.crs is None and o.shape == r.shape, name


def _offset_pair(d: Path, dx: float, dy: float, n: int = 400, seed: int = 1) -> tuple[Path, Path]:
    """A pixel-space pair: the moving scene is the reference's ground offset by (dx, dy) px (moving px + (dx, dy)
    = reference px), nodata where it has none."""
    rng = np.random.default_rng(seed)
    pad = int(max(abs(dx), abs(dy))) + 8
    field = reflectivity(n + 2 * pad, n + 2 * pad, seed=seed)
    m = np.array([[1, 0, pad + dx], [0, 1, pad + dy], [0, 0, 1]], float)
    mov = np.nan_to_num(warp_image(speckle(field, 4.0, rng), m, (n, n)), nan=0.0)
    return (write_geotiff(d / "ref.tif", speckle(field, 4.0, rng)[pad:pad + n, pad:pad + n]),
            write_geotiff(d / "mov.tif", mov, nodata=0.0))


def test_report_states_the_overlap_of_the_registered_result(tmp_path):
    """quality.overlap_fraction was the overlap before registration (1.0 for a pixel-space pair offset by (50, 60) px
    in a 400 px scene) while OUT holds data over 0.744 of the reference; it is now the registered result's (the
    moving footprint through the estimate), and relate's stays under stages.relate. quality.coverage counts the
    inliers' cells over that overlap (over the whole scene it was understated: 0.72)."""
    ref, mov = _offset_pair(tmp_path, 50, 60)
    res = run(ref, mov, tmp_path / "o.tif")
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "o.report.json").read_text())
    with rasterio.open(tmp_path / "o.tif") as o:
        has_data = float(np.mean(o.read(1) != o.nodata))
    assert has_data == pytest.approx(350 * 340 / 400 ** 2, abs=0.002)
    assert rep["quality"]["overlap_fraction"] == pytest.approx(has_data, abs=0.01)
    assert rep["quality"]["overlap_area_px"] == pytest.approx(350 * 340, rel=0.02)
    assert rep["stages"]["relate"]["overlap_fraction"] == pytest.approx(1.0, abs=0.01)
    assert rep["quality"]["coverage"] >= 0.8


def test_coverage_gate_counts_over_the_registered_overlap(tmp_path):
    """A pixel-space pair offset by (300, 200) px in a 400 px scene (12.5 % overlap), registered within 0.1 px, was
    low_quality for coverage alone (0.12 < 0.15: the inliers' cells counted over the whole scene, the overlap before
    registration); over the registered overlap its coverage is 0.28 and the result ok."""
    ref, mov = _offset_pair(tmp_path, 300, 200, seed=2)
    res = run(ref, mov, tmp_path / "o.tif")
    rep = json.loads((tmp_path / "o.report.json").read_text())
    assert res.exit_code == 0 and rep["status"] == "ok", rep["message"]
    assert math.hypot(rep["matrix"][0][2] - 300, rep["matrix"][1][2] - 200) < 0.1
    assert rep["quality"]["coverage"] >= 0.25 and rep["quality"]["overlap_fraction"] == pytest.approx(0.125, abs=0.01)


def test_apply_reproduces_register_output(scenes, tmp_path):
    res = run(scenes["ref_px"], scenes["moving_px"], tmp_path / "a.tif", "--resampling", "nearest")
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["apply", str(tmp_path / "a.report.json"), str(scenes["moving_px"]),
                                   str(tmp_path / "b.tif"), "--resampling", "nearest"])
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert np.array_equal(a.read(), b.read(), equal_nan=True)
    (tmp_path / "bad.json").write_text("{not json")
    res = CliRunner().invoke(cli, ["apply", str(tmp_path / "bad.json"), str(scenes["moving_px"]),
                                   str(tmp_path / "c.tif")])
    _one_line_error(res, "bad.json", "not a readable JSON report")
    assert res.exit_code == 1 and not (tmp_path / "c.tif").exists()
    res = CliRunner().invoke(cli, ["apply", str(scenes["moving_px"]), str(tmp_path / "a.report.json"),
                                   str(tmp_path / "c.tif")])  # the first two swapped
    _one_line_error(res, "the order is REPORT MOVING OUT", "a.report.json looks like the report")
    assert res.exit_code == 1 and not (tmp_path / "c.tif").exists()


def test_complex_moving_is_warped_by_nearest_in_register_and_apply(scenes, tmp_path):
    """An SLC-like moving raster (complex, random phase): register's and apply's default warp copies pixels instead of
    interpolating complex values (bilinear lost ~4 dB of intensity); the report and apply say which resampling."""
    rng = np.random.default_rng(8)
    with rasterio.open(scenes["moving"]) as ds:
        p, prof = ds.read(1), ds.profile
    z = (np.sqrt(p) * np.exp(1j * rng.uniform(0, 2 * np.pi, p.shape))).astype(np.complex64)
    mov = tmp_path / "slc.tif"
    with rasterio.open(mov, "w", **dict(prof, dtype="complex64", nodata=0.0)) as ds:
        ds.write(z, 1)
    res = run(scenes["ref"], mov, tmp_path / "a.tif")
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "a.report.json").read_text())
    assert rep["stages"]["warp"]["resampling"] == "nearest"
    with rasterio.open(tmp_path / "a.tif") as ds:
        a, ok = ds.read(1), ds.read_masks(1) > 0
    assert abs(np.median(np.abs(a[ok]) ** 2) / np.median(p[p > 0]) - 1) < 0.05
    res = CliRunner().invoke(cli, ["apply", str(tmp_path / "a.report.json"), str(mov), str(tmp_path / "b.tif")])
    assert res.exit_code == 0 and ", nearest)" in res.stdout, res.output
    with rasterio.open(tmp_path / "b.tif") as ds:
        assert np.array_equal(ds.read(1), a)


def test_the_report_says_which_band_was_registered(scenes, tmp_path):
    """A VH + VV moving raster: the VV band (2) is registered, and the report's relate stage says so (index, band
    count, description), for the reference too."""
    with rasterio.open(scenes["moving"]) as ds:
        p, prof = ds.read(1), ds.profile
    mov = tmp_path / "vhvv.tif"
    with rasterio.open(mov, "w", **dict(prof, count=2)) as ds:
        ds.write(np.stack([0.2 * p, p]))
        ds.descriptions = ("VH", "VV")
    res = run(scenes["ref"], mov, tmp_path / "a.tif", "--no-warp")
    assert res.exit_code == 0, res.output
    band = json.loads((tmp_path / "a.report.json").read_text())["stages"]["relate"]["band"]
    assert band == {"reference": {"index": 1, "of": 1, "description": None},
                    "moving": {"index": 2, "of": 2, "description": "VV"}}


def test_apply_of_a_low_quality_report_writes_nothing_without_force(scenes, tmp_path):
    """A transform that failed register's quality gates is not applied silently: exit 2 and no raster, as register
    itself; --force applies it and still exits 2 (as register --force: the result is not trustworthy)."""
    res = run(scenes["ref"], scenes["moving"], tmp_path / "a.tif", "--max-shift", "0.01")
    assert res.exit_code == 2 and not (tmp_path / "a.tif").exists(), res.output
    assert json.loads((tmp_path / "a.report.json").read_text())["status"] == "low_quality"
    args = ["apply", str(tmp_path / "a.report.json"), str(scenes["moving"]), str(tmp_path / "b.tif")]
    res = CliRunner().invoke(cli, args)
    _one_line_error(res, "a.report.json", "the registration is low_quality")
    assert res.exit_code == 2 and "--force applies it" in res.output and not (tmp_path / "b.tif").exists()
    res = CliRunner().invoke(cli, [*args, "--force"])
    assert res.exit_code == 2 and (tmp_path / "b.tif").exists(), res.output
    _one_line_error(res, "a.report.json", "raster written anyway (--force)")


def test_apply_of_a_failed_report_writes_nothing_even_with_force(scenes, tmp_path):
    """A report whose transform register rejected (status failed, exit 3, no raster even with --force): apply exits 3
    and writes nothing with or without --force. It exited 2 ("--force applies it") and --force warped by it."""
    res = run(scenes["ref"], scenes["moving"], tmp_path / "a.tif", "--no-warp")
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "a.report.json").read_text())
    data.update(status="failed", message="no consistent tie points")  # (its transform kept, as a failed report's)
    (tmp_path / "f.report.json").write_text(json.dumps(data))
    args = ["apply", str(tmp_path / "f.report.json"), str(scenes["moving"]), str(tmp_path / "b.tif")]
    for extra in ([], ["--force"]):
        res = CliRunner().invoke(cli, [*args, *extra])
        _one_line_error(res, "f.report.json", "the registration failed")
        assert res.exit_code == 3 and not (tmp_path / "b.tif").exists(), res.output


@pytest.mark.parametrize("damage,needle", [
    (lambda d: d["reference_grid"].update(crs_wkt="garbage"), "Invalid WKT"),
    (lambda d: d["reference_grid"].update(geotransform=[0, 0, 0, 0, 0, 0]), "degenerate geotransform"),
    (lambda d: d["stages"]["relate"]["moving_grid"].update(crs_wkt="PROJCS[broken"), "malformed transform"),
    (lambda d: d["transform"].update(model="bogus"), "unknown model 'bogus'"),
])
def test_apply_damaged_report_one_line_error(scenes, tmp_path, damage, needle):
    """A report edited by hand (a broken CRS, a zero geotransform, an unknown model) is one error line, exit 1."""
    res = run(scenes["ref"], scenes["moving"], tmp_path / "a.tif", "--no-warp")
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "a.report.json").read_text())
    damage(data)
    (tmp_path / "d.report.json").write_text(json.dumps(data))
    res = CliRunner().invoke(cli, ["apply", str(tmp_path / "d.report.json"), str(scenes["moving"]),
                                   str(tmp_path / "c.tif")])
    _one_line_error(res, "d.report.json", needle)
    assert res.exit_code == 1 and not (tmp_path / "c.tif").exists()


def test_overwrite_removes_what_the_earlier_run_wrote(scenes, tmp_path):
    """--overwrite replaces a run as a whole: sidecars of the earlier run that this one does not write (its raster
    under --no-warp, the offsets of --model local, the GeoJSON) go, so OUT's folder never mixes two runs; a file
    the earlier report does not list stays."""
    res = run(scenes["ref"], scenes["moving"], tmp_path / "o.tif", "--model", "local", "--geojson")
    assert res.exit_code == 0, res.output
    for name in ("o.tif", "o.offsets.tif", "o.tiepoints.geojson", "o.report.json"):
        assert (tmp_path / name).exists(), name
    (tmp_path / "o.notes.txt").write_text("mine")
    res = run(scenes["ref"], scenes["moving"], tmp_path / "o.tif", "--no-warp", "--overwrite")
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "o.report.json").read_text())
    assert rep["output"] is None and "raster" not in rep["outputs"]
    left = {p.name for p in tmp_path.iterdir()}
    assert {"o.tif", "o.offsets.tif", "o.tiepoints.geojson"}.isdisjoint(left), left
    assert {"o.report.json", "o.tiepoints.gpkg", "o.points", "o.notes.txt"} <= left, left
    # the raster under another name beside it (o.tiff after o.tif: the same sidecars): the earlier one goes
    assert run(scenes["ref"], scenes["moving"], tmp_path / "o.tif", "--overwrite").exit_code == 0
    res = run(scenes["ref"], scenes["moving"], tmp_path / "o.tiff", "--overwrite")
    assert res.exit_code == 0, res.output
    left = {p.name for p in tmp_path.iterdir()}
    assert "o.tiff" in left and "o.tif" not in left and "o.notes.txt" in left, left


def test_a_url_as_out_is_refused_as_typed(scenes, tmp_path):
    """A URL (or /vsi name) given as OUT: one line naming it as typed (a Path folded its "//"), nothing written."""
    for out in ("https://example.com/x.tif", "/vsis3/bucket/x.tif"):
        res = run(scenes["ref"], scenes["moving"], out)
        _one_line_error(res, f"{out}: outputs must be local files")
        assert res.exit_code == 1
    assert not list(tmp_path.iterdir())


def test_the_current_folder_as_out_is_refused_in_one_line(scenes, tmp_path, monkeypatch):
    """OUT "" or "." (the current folder): one line, as for any folder, nothing written. It was a traceback
    (``Path('.').with_name``: "has an empty name") from the sidecars' names."""
    monkeypatch.chdir(tmp_path)
    for out in ("", "."):
        _one_line_error(run(scenes["ref"], scenes["moving"], out), ".: output path is a directory")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["register", "apply"])
def test_output_raster_named_like_another_format_is_refused(scenes, tmp_path, command):
    """OUT ``x.png`` would be a GeoTIFF under a PNG name (viewers fail on it): one error line, nothing written."""
    if command == "register":
        res = run(scenes["ref"], scenes["moving"], tmp_path / "x.png")
    else:
        assert run(scenes["ref"], scenes["moving"], tmp_path / "a.tif", "--no-warp").exit_code == 0
        res = CliRunner().invoke(cli, ["apply", str(tmp_path / "a.report.json"), str(scenes["moving"]),
                                       str(tmp_path / "x.png")])
    _one_line_error(res, "x.png", "name it .tif")
    assert res.exit_code == 1 and not list(tmp_path.glob("x.*"))


def test_exit_codes_low_quality_and_failed(scenes, tmp_path):
    res = run(scenes["ref"], scenes["moving"], tmp_path / "lq.tif", "--min-inliers", "100000")
    assert res.exit_code == 2
    _one_line_error(res, "low-quality", "inliers")
    assert "no raster written (--force writes it)" in res.stderr
    assert not (tmp_path / "lq.tif").exists() and (tmp_path / "lq.report.json").exists()
    # --force: the raster is written and the error line says so (exit code 2 still: the result is not trustworthy)
    res = run(scenes["ref"], scenes["moving"], tmp_path / "lq.tif", "--min-inliers", "100000", "--force",
              "--overwrite")
    assert res.exit_code == 2
    _one_line_error(res, "low-quality", "raster written anyway (--force)")
    assert "no raster written" not in res.stderr and (tmp_path / "lq.tif").exists()
    res = run(scenes["ref"], scenes["other"], tmp_path / "f.tif")
    assert res.exit_code in (2, 3), res.output
    assert not (tmp_path / "f.tif").exists()
    assert json.loads((tmp_path / "f.report.json").read_text())["status"] in ("failed", "low_quality")


def test_a_failed_coarse_stage_is_one_short_line_with_each_start_in_the_report(scenes, tmp_path):
    """Unrelated scenes: the error names the moving file once and sums up what was tried; the report lists each
    start's result (before, every start's result was in the line: over 1,000 characters at 1024 px)."""
    res = run(scenes["ref"], scenes["other"], tmp_path / "f.tif")
    assert res.exit_code == 3, res.output
    _one_line_error(res, "registration failed", "no consistent matches", "keypoint inliers", "f.report.json")
    assert res.stderr.count("other.tif") == 1 and len(res.stderr) < 600
    coarse = json.loads((tmp_path / "f.report.json").read_text())["stages"]["coarse"]
    assert coarse["failed"] and any(t.startswith("+0 deg: ") for t in coarse["tried"])
    assert any(t.startswith("correlation: ") for t in coarse["tried"])


def _assert_clean(tmp_path: Path, keep: set[str]) -> None:
    left = {p.name for p in tmp_path.iterdir()} - keep
    assert not left, left


@pytest.mark.parametrize("case", ["corrupt", "truncated", "missing", "no_crs", "no_overlap", "nodata_overlap",
                                  "constant", "all_nan", "bad_band", "out_is_input", "exists", "no_dir",
                                  "same_file"])
def test_bad_input(scenes, tmp_path, case):
    ref, mov = scenes["ref"], scenes["moving"]
    out = tmp_path / "out.tif"
    extra: list[str] = []
    keep: set[str] = set()
    if case == "corrupt":
        ref = tmp_path / "corrupt.tif"
        ref.write_bytes(b"II*\x00" + os.urandom(300))
        needles = ("corrupt.tif",)
    elif case == "truncated":
        ref = tmp_path / "trunc.tif"
        data = scenes["ref"].read_bytes()
        ref.write_bytes(data[: len(data) // 2])
        needles = ("trunc.tif",)
    elif case == "missing":
        mov = tmp_path / "nope.tif"
        needles = ("nope.tif", "not found")
    elif case == "no_crs":
        mov = scenes["moving_px"]
        needles = ("moving_px.tif", "CRS")
    elif case == "no_overlap":
        with rasterio.open(scenes["moving"]) as ds:
            a = ds.read(1)
        mov = write_geotiff(tmp_path / "far.tif", a, Affine(10.0, 0, 600000.0, 0, -10.0, 5000000.0), UTM, nodata=0.0)
        needles = ("far.tif", "does not overlap")
    elif case == "nodata_overlap":
        # bounding boxes overlap by half, but the overlapping half of the moving scene is all nodata
        with rasterio.open(scenes["moving"]) as ds:
            a = ds.read(1)
        a[:, : N // 2] = 0.0
        mov = write_geotiff(tmp_path / "half.tif", a, Affine(10.0, 0, 500000.0 + 10 * N / 2 + 10 * 8, 0, -10.0,
                                                                   5000000.0), UTM, nodata=0.0)
        needles = ("half.tif", "no valid data in the overlap")
    elif case == "constant":
        mov = write_geotiff(tmp_path / "const.tif", np.full((N, N), 0.3, np.float32), T, UTM)
        needles = ("const.tif", "constant")
    elif case == "all_nan":
        a = np.full((N, N), np.nan, np.float32)
        a[::2] = np.inf
        mov = write_geotiff(tmp_path / "nan.tif", a, T, UTM)
        needles = ("nan.tif", "nodata/invalid")
    elif case == "bad_band":
        extra = ["--moving-band", "3"]
        needles = ("moving.tif", "band 3 out of range")
    elif case == "out_is_input":
        out = tmp_path / "in.tif"
        out.write_bytes(scenes["moving"].read_bytes())
        mov = out
        extra = ["--overwrite"]
        needles = ("in.tif", "same file as input")
    elif case == "exists":
        out.write_text("keep me")
        needles = ("out.tif", "exists", "--overwrite")
        keep = {"out.tif"}
    elif case == "no_dir":
        out = tmp_path / "missing_dir" / "out.tif"
        needles = ("missing_dir", "does not exist")
    else:  # same_file
        mov = ref
        needles = ("same file",)
    inputs = {p: _digest(p) for p in (ref, mov) if p.exists()}
    keep |= {p.name for p in tmp_path.iterdir()}
    res = run(ref, mov, out, *extra)
    _one_line_error(res, *needles)
    assert res.exit_code == 1
    _assert_clean(tmp_path, keep)
    assert {p: _digest(p) for p in inputs} == inputs
    if case == "exists":
        assert out.read_text() == "keep me"


def test_unwritable_dir(scenes, tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        if os.access(d, os.W_OK):
            pytest.skip("running as a user that ignores permissions (root)")
        res = run(scenes["ref"], scenes["moving"], d / "out.tif")
        _one_line_error(res, "not writable")
    finally:
        d.chmod(0o700)


def test_partial_nan_inf_still_registers(scenes, tmp_path):
    with rasterio.open(scenes["moving"]) as ds:
        a = ds.read(1)
    a[:40, :] = np.nan
    a[-30:, -50:] = np.inf
    mov = write_geotiff(tmp_path / "holes.tif", a, T, UTM, nodata=0.0)
    res = run(scenes["ref"], mov, tmp_path / "o.tif", "--no-warp")
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "o.tif").exists() and (tmp_path / "o.report.json").exists()


def test_apply_update_georef_same_and_other_grid(scenes, tmp_path):
    """``apply --update-georef``: pixels copied unchanged, georeferencing corrected to where the truth puts them;
    a 2x coarser copy of the moving raster (another grid) gets the consistent corrected georeferencing."""
    res = run(scenes["ref"], scenes["moving"], tmp_path / "a.tif", "--model", "similarity", "--no-warp")
    assert res.exit_code == 0, res.output
    report = tmp_path / "a.report.json"
    gt = Affine.from_gdal(*json.loads(report.read_text())["geotransform"])

    res = CliRunner().invoke(cli, ["apply", str(report), str(scenes["moving"]), str(tmp_path / "b.tif"),
                                   "--update-georef", "--format", "GTiff"])
    assert res.exit_code == 0, res.output
    with rasterio.open(scenes["moving"]) as m, rasterio.open(tmp_path / "b.tif") as b:
        assert np.array_equal(m.read(), b.read()) and b.crs == m.crs
        assert b.transform.almost_equals(gt, precision=1e-6) and not b.transform.almost_equals(m.transform)
        full = m.read(1)
    # moving px (u, v) shows reference px m(u, v) - PAD: the corrected map position of its centre is T(that + 0.5)
    truth = scenes["_m"]
    for u, v in ((100.0, 100.0), (192.0, 192.0), (300.0, 250.0)):
        x, y = (truth @ [u, v, 1.0])[:2] - PAD
        want = np.array(T @ (x + 0.5, y + 0.5))
        assert np.hypot(*(np.array(gt @ (u + 0.5, v + 0.5)) - want)) < 5.0  # half a pixel (10 m)

    half = write_geotiff(tmp_path / "half.tif", full[::2, ::2], T @ Affine.scale(2), UTM, nodata=0.0)
    res = CliRunner().invoke(cli, ["apply", str(report), str(half), str(tmp_path / "c.tif"), "--update-georef",
                                   "--format", "GTiff"])
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "c.tif") as c:
        gt_half = c.transform
        assert np.array_equal(c.read(1), full[::2, ::2])
    for i, j in ((10, 10), (96, 96), (150, 120)):  # half pixel (i, j) centre = full pixel (2i + 0.5, 2j + 0.5)
        assert np.allclose(gt_half @ (i + 0.5, j + 0.5), gt @ (2 * i + 1.0, 2 * j + 1.0), atol=1e-6)


def test_register_backend_torch_and_auto_agree(scenes, tmp_path):
    """``--backend`` reaches the network of ``register`` (R2D2 features); torch and auto (OpenVINO when installed)
    give the same registration within 0.05 px."""
    mats = {}
    for backend in ("torch", "auto"):
        out = tmp_path / f"{backend}.tif"
        res = CliRunner().invoke(cli, ["register", "--no-warp", "--backend", backend, str(scenes["ref"]),
                                       str(scenes["moving"]), str(out)])
        assert res.exit_code == 0, res.output
        rep = json.loads((tmp_path / f"{backend}.report.json").read_text())
        assert rep["options"]["backend"] == backend and rep["status"] == "ok"
        mats[backend] = np.array(rep["matrix"])
    g = np.stack(np.meshgrid(np.linspace(0, N - 1, 5), np.linspace(0, N - 1, 5)), -1).reshape(-1, 2)
    from sarreg.estimate import apply_matrix

    d = np.hypot(*(apply_matrix(mats["torch"], g) - apply_matrix(mats["auto"], g)).T)
    assert d.max() < 0.05
