"""``sarreg extract`` end to end on real files: GeoTIFF and PNG, sidecars, and bad input."""
from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
import torch
from click.testing import CliRunner

from sarreg.cli import cli
from sarreg.model.weights import random_model, save_checkpoint
from sarreg.synth import reflectivity, speckle, write_geotiff


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    m = random_model("Fast_Quad_L2Net_ConfCFS", 1, mchan=2, seed=0)
    with torch.no_grad():
        m.net.sal.weight.mul_(300.0)
        m.net.clf.weight.mul_(300.0)
    return save_checkpoint(tmp_path_factory.mktemp("w") / "rand.pt", m.net, m.arch, 2, 1)


@pytest.fixture
def scene(geotiff_factory, rng) -> Path:
    a = speckle(reflectivity(256, 288, seed=5), 4, rng)
    a[:, :20] = 0
    return geotiff_factory(a, "scene.tif", nodata=0)


def run(*args: str) -> "CliRunner.Result":
    return CliRunner().invoke(cli, ["extract", "--no-progress", *args], catch_exceptions=False)


def test_extract_reads_the_nodata_option_over_the_tag(tmp_path: Path, geotiff_factory, rng, weights: Path) -> None:
    """A dB image filled with -9999 on its left but tagged 0 (a tag that marks no pixel): read as data (``--nodata
    none``), the fill's edge is the strongest structure and gets keypoints; found (by default) or given (``--nodata
    -9999``), none lies in or next to it."""
    db = 10 * np.log10(speckle(reflectivity(256, 288, seed=5), 4, rng))
    db[:, :60] = -9999.0
    img = geotiff_factory(db.astype(np.float32), "wrong.tif", nodata=0.0)
    xs = []
    for i, extra in enumerate((("--nodata", "none"), (), ("--nodata", "-9999"))):
        out = tmp_path / f"out{i}"
        r = run(str(img), "--weights", str(weights), "--rel-thr", "0", "--rep-thr", "0", "--top-k", "300",
                "--min-size", "64", "-o", str(out), *extra)
        assert r.exit_code == 0, r.output
        with np.load(out / "wrong.tif.r2d2") as z:
            xs.append(z["keypoints"][:, 0])
    assert (xs[0] < 63).sum() > 10 and xs[1].min() > 62 and xs[2].min() > 62


def test_extract_geotiff_with_geo_and_quicklook(tmp_path: Path, scene: Path, weights: Path) -> None:
    out = tmp_path / "out"
    r = run(str(scene), "--weights", str(weights), "--rel-thr", "0", "--rep-thr", "0", "--top-k", "300",
            "--min-size", "64", "-o", str(out), "--geo", "--quicklook", str(out / "kp.png"))
    assert r.exit_code == 0, r.output
    with np.load(out / "scene.tif.r2d2") as z:
        assert z["keypoints"].shape == (300, 3) and z["descriptors"].shape == (300, 128)
        xy = z["keypoints"][:, :2]
    assert xy[:, 0].min() > 20  # nothing on the nodata strip
    info = pyogrio.read_info(out / "scene.tif.keypoints.gpkg")
    assert info["features"] == 300 and "32631" in info["crs"]
    gj = pyogrio.read_info(out / "scene.tif.keypoints.geojson")
    assert gj["features"] == 300
    # every point in map coordinates = the scene's affine of its pixel centre (north-up, 10 m, origin 500000 /
    # 5000000; geometries read without geopandas)
    _, _, geom, _ = pyogrio.raw.read(out / "scene.tif.keypoints.gpkg")
    pts = shapely.get_coordinates(shapely.from_wkb(geom))
    assert np.allclose(pts[:, 0], 500000 + (xy[:, 0] + 0.5) * 10, atol=1e-6)
    assert np.allclose(pts[:, 1], 5000000 - (xy[:, 1] + 0.5) * 10, atol=1e-6)
    img = cv2.imread(str(out / "kp.png"))
    assert img is not None and img.shape[:2] == (256, 288)


def test_extract_png(tmp_path: Path, weights: Path, rng) -> None:
    a = speckle(reflectivity(200, 220, seed=6), 4, rng)
    png = tmp_path / "img.png"
    cv2.imwrite(str(png), np.clip(10 * np.log10(a) * 6 + 128, 0, 255).astype(np.uint8))
    r = run(str(png), "--weights", str(weights), "--rel-thr", "0", "--rep-thr", "0", "--min-size", "64")
    assert r.exit_code == 0, r.output
    with np.load(tmp_path / "img.png.r2d2") as z:
        assert len(z["scores"]) > 50 and z["imsize"].tolist() == [220, 200]


@pytest.mark.parametrize("case", ["missing", "not_raster", "all_nodata", "constant", "band", "bad_weights",
                                  "no_weights_file"])
def test_bad_input_one_line_error_no_output(tmp_path: Path, geotiff_factory, weights: Path, case: str) -> None:
    args: list[str] = []
    w = weights
    if case == "missing":
        img = tmp_path / "nope.tif"
    elif case == "not_raster":
        img = tmp_path / "x.tif"
        img.write_text("hello")
    elif case == "all_nodata":
        img = geotiff_factory(np.zeros((64, 64)), "nd.tif", nodata=0)
    elif case == "constant":
        img = geotiff_factory(np.full((64, 64), 2.0), "c.tif")
    elif case == "band":
        img = geotiff_factory(np.random.default_rng(0).random((64, 64)) + 1, "b.tif")
        args = ["--band", "2"]
    else:
        img = geotiff_factory(np.random.default_rng(0).random((64, 64)) + 1, "ok.tif")
        w = tmp_path / "corrupt.pt"
        if case == "bad_weights":
            w.write_bytes(b"\x80\x02garbage")
    before = set(tmp_path.rglob("*"))
    r = CliRunner().invoke(cli, ["extract", "--no-progress", str(img), "--weights", str(w), *args])
    assert r.exit_code == 1
    lines = [ln for ln in r.output.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("sarreg: error: ")
    assert (w.name if case in ("bad_weights", "no_weights_file") else img.name) in lines[0], lines[0]
    assert set(tmp_path.rglob("*")) == before  # nothing written


def test_unwritable_output_dir(tmp_path: Path, scene: Path, weights: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        import os

        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        r = CliRunner().invoke(cli, ["extract", str(scene), "--weights", str(weights), "-o", str(ro)])
        assert r.exit_code == 1 and "not writable" in r.output
    finally:
        ro.chmod(0o700)


def test_output_dir_is_a_file(tmp_path: Path, scene: Path, weights: Path) -> None:
    f = tmp_path / "afile"
    f.write_text("x")
    r = CliRunner().invoke(cli, ["extract", str(scene), "--weights", str(weights), "-o", str(f)])
    assert r.exit_code == 1 and "not a directory" in r.output


def test_a_failed_run_leaves_no_new_output_folder(tmp_path: Path, scene: Path, weights: Path) -> None:
    """--geo on a raster without georeference fails before -o's folder is made (it was created first)."""
    plain = tmp_path / "plain.tif"
    with rasterio.open(scene) as ds:
        write_geotiff(plain, ds.read(1), None, None)
    r = CliRunner().invoke(cli, ["extract", str(plain), "--weights", str(weights), "-o", str(tmp_path / "new" / "sub"),
                                 "--geo"])
    assert r.exit_code == 1 and "--geo needs a georeferenced raster" in r.output, r.output
    assert not (tmp_path / "new").exists()
    # refused after the folder was made (two images of one name would write one file): the folder goes again
    (tmp_path / "b").mkdir()
    twin = write_geotiff(tmp_path / "b" / "plain.tif", rasterio.open(plain).read(1), None, None)
    r = CliRunner().invoke(cli, ["extract", str(plain), str(twin), "--weights", str(weights), "-o",
                                 str(tmp_path / "new" / "sub")])
    assert r.exit_code == 1 and "would both write this file" in r.output, r.output
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("opt,dest", [("-o", "s3://b/kp"), ("-o", "https://h.example/kp"),
                                      ("--quicklook", "s3://b/q.png")])
def test_remote_destination_is_refused_by_its_name_before_any_work(tmp_path: Path, scene: Path, weights: Path,
                                                                   monkeypatch, opt: str, dest: str) -> None:
    """A URL as -o or --quicklook: one line naming it as given (``s3://b/kp``; it read ``s3:/b/kp/scene.tif.r2d2``
    once every input was opened and a local folder ``s3:/b/kp`` made) and nothing written: no input is read first
    (a missing one is not reported)."""
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.rglob("*"))
    r = CliRunner().invoke(cli, ["extract", str(scene), str(tmp_path / "missing.tif"), "--weights", str(weights),
                                 opt, dest])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1, r.output
    assert lines[0].startswith(f"sarreg: error: {dest}: ") and "local" in lines[0], lines
    assert set(tmp_path.rglob("*")) == before


def test_console_script_exit_code(sarreg_exe: Path, tmp_path: Path) -> None:
    p = subprocess.run([str(sarreg_exe), "extract", str(tmp_path / "missing.tif")], capture_output=True, text=True)
    assert p.returncode == 1 and "missing.tif: file not found" in p.stderr


def test_quiet_silences_progress_bars(tmp_path: Path, scene: Path, weights: Path) -> None:
    """``sarreg -q`` means only errors: the progress bar (on by default) stays off; without -q it is drawn."""
    args = ["extract", str(scene), "--weights", str(weights), "--min-size", "64", "--overwrite"]
    loud = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "a")], catch_exceptions=False)
    assert loud.exit_code == 0 and "tile" in loud.stderr, loud.stderr
    quiet = CliRunner().invoke(cli, ["-q", *args, "-o", str(tmp_path / "b")], catch_exceptions=False)
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr
    assert (tmp_path / "b" / "scene.tif.r2d2").is_file()
