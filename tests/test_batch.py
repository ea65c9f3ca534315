"""``sarreg batch`` on real Dask clusters (LocalCluster with worker processes, and a scheduler + workers started
here as ``dask scheduler`` / ``dask worker`` processes) over a generated series of small georeferenced GeoTIFFs
with known misregistration. ``--features sift`` keeps it fast and weight-free."""
from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine

from sarreg import synth
from sarreg.batch import (MANIFEST, batch, matrix_fields, parse_date, scene_date,
                          sha256_file)
from sarreg.config import RegisterConfig

SIZE = 384
MARGIN = 24
CRS = "EPSG:32631"
TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)
# moving pixel (x, y) shows the ground of reference pixel (x + dx, y + dy): the georeferencing is off by this
SHIFTS = [(3.25, -2.5), (-4.0, 1.75), (1.5, 5.0), (-2.75, -3.5), (5.0, 2.0), (-1.5, -5.5)]
TOL_PX = 0.75  # SIFT on 384 x 384 speckled scenes: typical error 0.1-0.4 px
# keypoints "always": the batch's reference-feature cache has work to do (with "auto" correlation settles these
# clean synthetic scenes without any keypoints; test_batch_cache_empty_when_correlation_settles)
CFG = RegisterConfig(features="sift", model="shift", coarse_size=384, fine_tile=192, n_tiles=4, keypoints="always")
SIFT_ARGS = ["--features", "sift", "--model", "shift", "--coarse-size", "384", "--tile-size", "192", "--tiles", "4"]


def _write_series(folder: Path, n: int, seed: int = 5) -> list[tuple[Path, tuple[float, float]]]:
    """Reference + n scenes (Sentinel-1-like names with dates) cut from one reflectivity map at known offsets."""
    folder.mkdir(parents=True, exist_ok=True)
    big = synth.reflectivity(SIZE + 2 * MARGIN, SIZE + 2 * MARGIN, seed=seed)
    rng = np.random.default_rng(seed)

    def cut(dx: float, dy: float, change: float) -> np.ndarray:
        refl = synth.temporal_change(big, rng, change) if change else big
        h = np.array([[1, 0, MARGIN + dx], [0, 1, MARGIN + dy], [0, 0, 1.0]])
        return synth.speckle(synth.warp_image(refl, h, (SIZE, SIZE)), 4.0, rng)

    synth.write_geotiff(folder / "reference.tif", cut(0, 0, 0), TRANSFORM, CRS)
    out = []
    for i, (dx, dy) in enumerate(SHIFTS[:n]):
        p = folder / f"S1A_IW_GRDH_1SDV_202402{i + 1:02d}T054012_20240201T054037_052345_0653A1_{i:04X}.tif"
        synth.write_geotiff(p, cut(dx, dy, 0.05), TRANSFORM, CRS)
        out.append((p, (dx, dy)))
    return out


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> tuple[Path, list[tuple[Path, tuple[float, float]]]]:
    d = tmp_path_factory.mktemp("series")
    scenes = _write_series(d, 4)
    return d / "reference.tif", scenes


@pytest.fixture(scope="module")
def client():
    """One real LocalCluster (2 worker processes) shared by the Python-API tests of this module."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=40) as cluster, Client(cluster) as c:
        yield c


def _check_outputs_verify(outdir: Path) -> dict:
    """Every manifest output exists with its sha256; nothing temp or unaccounted for in OUTDIR."""
    doc = json.loads((outdir / MANIFEST).read_text())
    owned = {"manifest.json", "summary.csv", "summary.json", "summary.png", "tiepoints.gpkg", ".lock", ".cache"}
    for key, e in doc["scenes"].items():
        for name, digest in e["outputs"].items():
            assert sha256_file(outdir / name) == digest, f"{name} does not verify"
            owned.add(name)
    leftovers = sorted(p.name for p in outdir.iterdir() if p.name not in owned)
    assert leftovers == [], f"files not committed in the manifest: {leftovers}"
    assert not (outdir / ".work").exists()
    return doc


def test_parse_date_forms():
    assert parse_date("S1A_IW_GRDH_1SDV_20240131T054012_20240131T054037_052345_0653A1_ABCD.tif") == \
        "2024-01-31T05:40:12"
    assert parse_date("flood_2024-01-31_vv.tif") == "2024-01-31"
    assert parse_date("scene_20240131.tif") == "2024-01-31"
    assert parse_date("2024:01:31 05:40:12") == "2024-01-31T05:40:12"
    assert parse_date("2024-01-31T05:40:12.123456Z") == "2024-01-31T05:40:12"
    assert parse_date("orbit_052345_20241399.tif") is None  # month 13: not a date
    assert parse_date("no date here.tif") is None


def test_scene_date_from_metadata(tmp_path):
    p = synth.write_geotiff(tmp_path / "nodate.tif", np.ones((16, 16), np.float32), TRANSFORM, CRS)
    assert scene_date(p) is None
    with rasterio.open(p, "r+") as ds:
        ds.update_tags(TIFFTAG_DATETIME="2023:07:14 18:01:02")
    assert scene_date(p) == "2023-07-14T18:01:02"
    q = synth.write_geotiff(tmp_path / "x_20200101.tif", np.ones((16, 16), np.float32), TRANSFORM, CRS)
    with rasterio.open(q, "r+") as ds:
        ds.update_tags(ACQUISITION_START_TIME="2021-05-06T07:08:09Z")
    assert scene_date(q) == "2021-05-06T07:08:09"  # metadata wins over the file name


def test_matrix_fields_shift_in_map_units():
    grid = {"width": 100, "height": 80, "geotransform": [500000.0, 10.0, 0.0, 5e6, 0.0, -10.0], "crs_wkt": "x"}
    m = np.array([[1, 0, 2.5], [0, 1, -1.0], [0, 0, 1.0]])
    f = matrix_fields(m, grid, None)
    assert (f["shift_x_px"], f["shift_y_px"]) == (2.5, -1.0)
    assert (f["shift_x_m"], f["shift_y_m"]) == (25.0, 10.0)  # north-up: +row is -northing
    # a prior (georeferencing says +3 px in x) is taken out: the correction is what remains
    prior = np.array([[1, 0, 3.0], [0, 1, 0.0], [0, 0, 1.0]])
    f = matrix_fields(np.array([[1, 0, 5.0], [0, 1, 0.0], [0, 0, 1.0]]), grid, prior)
    assert f["shift_x_px"] == pytest.approx(2.0)
    # a geographic reference (0.0001 deg pixels at 60 N): metres east and north on the ground, not degrees rounded
    # to 1e-4 (-0.0007 in a column named _m)
    from pyproj import CRS

    geo = {"width": 100, "height": 80, "geotransform": [10.0, 1e-4, 0.0, 60.0, 0.0, -1e-4],
           "crs_wkt": CRS.from_epsg(4326).to_wkt()}
    f = matrix_fields(m, geo, None)
    assert f["shift_x_m"] == pytest.approx(2.5 * 1e-4 * 111412.9 * 0.5, rel=0.01)  # cos 60 deg
    assert f["shift_y_m"] == pytest.approx(1e-4 * 111412.0, rel=0.01)


def test_batch_recovers_shifts_and_isolates_failure(series, client, tmp_path):
    ref, scenes = series
    bad = tmp_path / "S1A_IW_GRDH_1SDV_20240215T054012_corrupt.tif"
    bad.write_bytes(ref.read_bytes()[:4000])  # a truncated GeoTIFF: the header opens, the pixels do not
    outdir = tmp_path / "out"
    seen = []
    summary = batch(ref, [p for p, _ in scenes] + [bad], outdir, CFG, client=client, progress=seen.append)

    assert len(seen) == 5 and summary.exit_code == 3
    by = {r.scene: r for r in summary.scenes}
    assert [r.date[:10] for r in summary.scenes] == ["2024-02-01", "2024-02-02", "2024-02-03", "2024-02-04",
                                                     "2024-02-15"]
    for p, (dx, dy) in scenes:
        r = by[p.stem]
        assert r.status == "ok", r.error
        assert abs(r.shift_x_px - dx) < TOL_PX and abs(r.shift_y_px - dy) < TOL_PX, (r.shift_x_px, r.shift_y_px)
        assert r.shift_x_m == pytest.approx(10 * r.shift_x_px, abs=1e-3)
        assert r.shift_y_m == pytest.approx(-10 * r.shift_y_px, abs=1e-3)
        assert r.inliers >= CFG.min_inliers and r.rmse_px < CFG.max_rmse
        assert {"coarse", "fine", "estimate", "warp", "publish"} <= set(r.timings)
        assert r.ref_cache_hits >= 1  # at least the coarse reference image came from the cache
        with rasterio.open(outdir / r.output) as ds:  # warped onto the reference grid
            assert ds.crs.to_epsg() == 32631 and ds.transform == TRANSFORM and ds.shape == (SIZE, SIZE)
    r = by[bad.stem]
    assert r.status == "failed" and str(bad) in r.error and r.output is None

    doc = _check_outputs_verify(outdir)
    assert set(doc["scenes"]) == set(by)
    rows = list(csv.DictReader((outdir / "summary.csv").open()))
    assert [row["scene"] for row in rows] == [r.scene for r in summary.scenes]
    assert rows[-1]["status"] == "failed" and rows[-1]["error"]
    js = json.loads((outdir / "summary.json").read_text())
    assert js["counts"] == {"ok": 4, "low_quality": 0, "failed": 1, "resumed": 0} and js["exit_code"] == 3
    png = (outdir / "summary.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

    import pyogrio

    meta, _, geom, data = pyogrio.raw.read(outdir / "tiepoints.gpkg")
    cols = dict(zip(meta["fields"], data))
    assert set(cols["scene"]) == {p.stem for p, _ in scenes}
    assert "EPSG:32631" in str(meta["crs"]) and len(geom) == len(cols["scene"]) > 4 * 20

    # a second run with the same options redoes nothing that verifies; the failed scene is retried
    mtimes = {n: (outdir / n).stat().st_mtime_ns for e in doc["scenes"].values() for n in e["outputs"]}
    again = batch(ref, [p for p, _ in scenes] + [bad], outdir, CFG, client=client)
    assert [r.resumed for r in again.scenes] == [True] * 4 + [False]
    assert {n: (outdir / n).stat().st_mtime_ns for n in mtimes} == mtimes
    assert summary.reference_cache["entries"] >= 2 and not summary.reference_cache["cache_hit"]
    assert again.reference_cache["cache_hit"]  # the retry of the failed scene found the features on disk
    # without the cache the very same transform comes out (the cache only skips work)
    fresh = batch(ref, [scenes[0][0]], tmp_path / "nocache", CFG, client=client, reference_cache=False)
    assert fresh.scenes[0].ref_cache_hits is None and not (tmp_path / "nocache" / ".cache").exists()
    assert fresh.scenes[0].matrix == by[scenes[0][0].stem].matrix
    # other options -> a different run: nothing is taken from the manifest
    third = batch(ref, [p for p, _ in scenes[:1]], outdir, CFG.with_(threshold=1.25), client=client)
    assert not third.scenes[0].resumed and third.scenes[0].status == "ok"
    # a redone scene that is now low quality loses its earlier raster (as register --overwrite): nothing in OUTDIR
    # that the manifest does not list
    raster = outdir / by[scenes[1][0].stem].output
    fourth = batch(ref, [scenes[1][0]], outdir, CFG.with_(max_shift=0.5), client=client)
    assert fourth.scenes[0].status == "low_quality" and fourth.scenes[0].output is None and not raster.exists()
    _check_outputs_verify(outdir)


def test_batch_cache_empty_when_correlation_settles(series, client, tmp_path):
    """keypoints "auto": the clean series is settled by correlation, so the probe records no reference features;
    an empty cache is valid (not an error) and the scenes register the same as with keypoints."""
    ref, scenes = series
    summary = batch(ref, [p for p, _ in scenes[:2]], tmp_path / "auto", CFG.with_(keypoints="auto"), client=client)
    assert summary.exit_code == 0 and not summary.warnings, summary.warnings
    assert summary.reference_cache["entries"] == 0 and summary.reference_cache.get("error") is None
    for r, (_, (dx, dy)) in zip(summary.scenes, scenes[:2]):
        assert r.status == "ok" and r.ref_cache_hits == 0
        assert abs(r.shift_x_px - dx) < TOL_PX and abs(r.shift_y_px - dy) < TOL_PX


def test_batch_exclude_reaches_every_worker(series, client, tmp_path, monkeypatch):
    """--exclude given relative to the caller's folder is applied on the Dask workers (made absolute)."""
    from sarreg.config import PreprocessConfig

    ref, scenes = series
    bad = np.zeros((SIZE, SIZE), np.uint8)
    bad[:96, :] = 1  # the top quarter
    synth.write_geotiff(tmp_path / "top.tif", bad, TRANSFORM, CRS, dtype="uint8")
    monkeypatch.chdir(tmp_path)
    cfg = CFG.with_(preprocess=PreprocessConfig(exclude=("top.tif",)))
    summary = batch(ref, [p for p, _ in scenes[:2]], tmp_path / "ex", cfg, client=client)
    assert summary.exit_code == 0, summary.warnings
    for r, (_, (dx, dy)) in zip(summary.scenes, scenes[:2]):
        assert r.status == "ok" and abs(r.shift_x_px - dx) < TOL_PX and abs(r.shift_y_px - dy) < TOL_PX
        rep = json.loads((tmp_path / "ex" / r.output).with_suffix(".report.json").read_text())
        ex = rep["stages"]["relate"]["excluded"]
        assert ex["files"] == [str(tmp_path / "top.tif")] and abs(ex["reference"] - 0.25) < 0.01
        tie = pyogrio.raw.read(tmp_path / "ex" / (r.output.removesuffix(".tif") + ".tiepoints.gpkg"),
                               read_geometry=False)
        rows = dict(zip(tie[0]["fields"], tie[3]))["ref_row"]
        assert len(rows) and rows.min() > 94  # no tie point in the excluded quarter


def test_chain_warps_at_the_given_resolution(series, client, tmp_path):
    """--resolution reaches the chain's own warp (``tasks.warp_scene``): the reference's extent at 5 m."""
    ref, scenes = series
    summary = batch(ref, [p for p, _ in scenes[:2]], tmp_path / "res", CFG.with_(resolution="5"), chain=True,
                    client=client)
    assert summary.exit_code == 0, summary.warnings
    for r in summary.scenes:
        with rasterio.open(tmp_path / "res" / r.output) as ds:
            assert ds.res == (5.0, 5.0) and ds.shape == (2 * SIZE, 2 * SIZE)
            assert ds.transform.c == TRANSFORM.c and ds.transform.f == TRANSFORM.f


def test_chain_composes_and_relinks_around_a_failed_scene(series, client, tmp_path):
    ref, scenes = series
    bad = tmp_path / "S1A_IW_GRDH_1SDV_20240202T120000_corrupt.tif"  # dated between scenes 2 and 3
    bad.write_bytes(b"not a raster at all")
    outdir = tmp_path / "chain"
    summary = batch(ref, [p for p, _ in scenes] + [bad], outdir, CFG, chain=True, client=client)
    names = [r.scene for r in summary.scenes]
    assert names[2] == bad.stem
    by = {r.scene: r for r in summary.scenes}
    assert by[bad.stem].status == "failed"
    assert by[scenes[0][0].stem].via == "reference"
    assert by[scenes[1][0].stem].via == scenes[0][0].stem
    assert by[scenes[2][0].stem].via == scenes[1][0].stem  # re-linked past the failed scene
    assert by[scenes[3][0].stem].via == scenes[2][0].stem
    for i, (p, (dx, dy)) in enumerate(scenes):
        r = by[p.stem]
        assert r.status == "ok", r.error
        tol = TOL_PX * (1 + 0.5 * i)  # errors add up along the chain
        assert abs(r.shift_x_px - dx) < tol and abs(r.shift_y_px - dy) < tol, (i, r.shift_x_px, r.shift_y_px)
        chain_doc = json.loads((outdir / f"{p.stem}_reg.chain.json").read_text())
        assert np.allclose(chain_doc["matrix"], r.matrix)
        with rasterio.open(outdir / r.output) as ds:
            assert ds.transform == TRANSFORM and ds.shape == (SIZE, SIZE)
    # composition really is the product of the links: scene 2 = link(2 -> 1) . link(1 -> reference)
    link = json.loads((outdir / f"{scenes[1][0].stem}_reg.report.json").read_text())["matrix"]
    assert np.allclose(np.asarray(by[scenes[0][0].stem].matrix) @ np.asarray(link), by[scenes[1][0].stem].matrix)
    _check_outputs_verify(outdir)
    assert summary.exit_code == 3


def test_chain_links_past_a_low_quality_scene_and_writes_it_no_raster(series, client, tmp_path):
    """A date whose own link is low quality (its georeference 40 px off, over --max-shift): an untrusted transform
    links no later date (they linked to it and failed or went low quality) and gets no raster without --force, as
    without --chain; the dates after it link to the last ok one and are ok."""
    ref, scenes = series
    odd = tmp_path / "S1A_IW_GRDH_1SDV_20240202T200000_off.tif"  # between scenes 2 and 3
    with rasterio.open(scenes[1][0]) as ds:
        synth.write_geotiff(odd, ds.read(1), TRANSFORM * Affine.translation(40, 0), CRS)
    outdir = tmp_path / "chain"
    summary = batch(ref, [p for p, _ in scenes] + [odd], outdir, CFG.with_(max_shift=12.0), chain=True, client=client)
    by = {r.scene: r for r in summary.scenes}
    assert by[odd.stem].status == "low_quality" and not (outdir / f"{odd.stem}_reg.tif").exists()
    # its row towards the reference as every row (scene 2's content, its georeference 40 px off), not the link's
    (dx, dy), o = scenes[1][1], by[odd.stem]
    assert abs(o.shift_x_px - (dx - 40)) < 2 * TOL_PX and abs(o.shift_y_px - dy) < 2 * TOL_PX, (o.shift_x_px,
                                                                                                  o.shift_y_px)
    assert by[scenes[2][0].stem].via == scenes[1][0].stem
    for i, (p, (dx, dy)) in enumerate(scenes):
        r = by[p.stem]
        assert r.status == "ok", (p.stem, r.error)
        tol = TOL_PX * (1 + 0.5 * i)
        assert abs(r.shift_x_px - dx) < tol and abs(r.shift_y_px - dy) < tol, (i, r.shift_x_px, r.shift_y_px)
    _check_outputs_verify(outdir)
    assert summary.exit_code == 2


def test_chain_links_read_both_scenes_with_the_moving_band(series, client, tmp_path):
    """A two-band reference with --band 2 and single-band scenes with --moving-band 1: a link onto a predecessor
    opened the predecessor (a scene) with REF's --band, so every link failed "band 2 out of range ... (--band 2)"
    (the right option for REF); with scenes of two bands it read another band than --moving-band. A link now reads
    both of its scenes as MOVING: every scene is ok and right."""
    from dataclasses import replace

    ref, scenes = series
    ref2 = tmp_path / "reference_2bands.tif"
    with rasterio.open(ref) as ds:
        synth.write_geotiff(ref2, np.stack([np.ones_like(ds.read(1)), ds.read(1)]), TRANSFORM, CRS)
    cfg = CFG.with_(preprocess=replace(CFG.preprocess, band=2), moving_band=1)
    summary = batch(ref2, [p for p, _ in scenes[:3]], tmp_path / "out", cfg, chain=True, client=client)
    for i, ((p, (dx, dy)), r) in enumerate(zip(scenes, summary.scenes)):
        assert r.status == "ok" and r.via == (scenes[i - 1][0].stem if i else "reference"), (r.scene, r.error)
        tol = TOL_PX * (1 + 0.5 * i)
        assert abs(r.shift_x_px - dx) < tol and abs(r.shift_y_px - dy) < tol, (i, r.shift_x_px, r.shift_y_px)


def test_chain_says_when_a_link_between_crss_has_only_an_affine_form(utm_and_geographic, client, tmp_path):
    """Between CRSs that no affine relates, register's exact form is in the moving raster's own CRS; a chain
    composes 3 x 3 matrices, which are pixels off at the edges there: the scenes say so (low_quality, warning)."""
    import shutil

    from sarreg.batch.chain import CHAIN_NATIVE

    ref, mov, _ = utm_and_geographic
    scenes = [tmp_path / f"S1A_IW_GRDH_1SDV_2024010{d}T120000_x.tif" for d in (1, 2)]
    for s in scenes:
        shutil.copy(mov, s)
    summary = batch(ref, scenes, tmp_path / "o", RegisterConfig(features="sift"), chain=True, client=client)
    assert [r.status for r in summary.scenes] == ["low_quality", "low_quality"], [r.warnings for r in summary.scenes]
    assert all(CHAIN_NATIVE in r.warnings for r in summary.scenes) and summary.exit_code == 2
    link = json.loads((tmp_path / "o" / f"{scenes[0].stem}_reg.report.json").read_text())
    assert link["status"] == "ok" and link["transform"]["native"]  # the link alone is exact


def _invoke(args: list[str]):
    """The ``sarreg`` command in this process (saves a Python + PyTorch start-up per call)."""
    from click.testing import CliRunner

    from sarreg.cli import cli

    return CliRunner().invoke(cli, args, catch_exceptions=False)


def _run_cli(args: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "sarreg.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def test_resume_after_sigkill(tmp_path, series):
    ref, scenes = series
    outdir = tmp_path / "out"
    args = ["batch", str(ref), str(ref.parent / "S1A_*.tif"), "-o", str(outdir), "--workers", "2",
            "--no-progress", *SIFT_ARGS]
    proc = _run_cli(args, start_new_session=True)
    manifest = outdir / MANIFEST
    t0 = time.monotonic()
    committed: dict = {}
    while time.monotonic() - t0 < 120 and proc.poll() is None:
        if manifest.exists():
            committed = json.loads(manifest.read_text())["scenes"]
            if committed:
                break
        time.sleep(0.05)
    assert proc.poll() is None, f"batch finished before it could be killed: {proc.communicate()}"
    os.killpg(proc.pid, signal.SIGKILL)  # the client, the local scheduler and every worker, mid-write
    proc.wait()
    committed = json.loads(manifest.read_text())["scenes"]
    assert 1 <= len(committed) < len(scenes)
    done_mtimes = {n: (outdir / n).stat().st_mtime_ns for e in committed.values() for n in e["outputs"]}

    rerun = _invoke(args)
    assert rerun.exit_code == 0, rerun.stderr
    assert f"({len(committed)} already done)" in rerun.stdout
    doc = _check_outputs_verify(outdir)
    assert set(doc["scenes"]) == {p.stem for p, _ in scenes}
    assert all(e["status"] == "ok" for e in doc["scenes"].values())
    for key, e in committed.items():  # nothing that was done is redone
        assert doc["scenes"][key] == e
    assert {n: (outdir / n).stat().st_mtime_ns for n in done_mtimes} == done_mtimes
    summary = json.loads((outdir / "summary.json").read_text())
    assert sorted(r["scene"] for r in summary["scenes"] if r["resumed"]) == sorted(committed)


def _scheduler(dask: Path, sched_file: Path) -> subprocess.Popen:
    """A real ``dask scheduler`` on a free local port, in its own process group (killed with os.killpg)."""
    return subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
                             "--scheduler-file", str(sched_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _address(sched_file: Path, timeout: float = 60.0) -> str:
    """The scheduler's address once it has written its scheduler file."""
    t0 = time.monotonic()
    while not sched_file.exists() and time.monotonic() - t0 < timeout:
        time.sleep(0.1)
    return json.loads(sched_file.read_text())["address"]


def test_existing_scheduler_and_workers(tmp_path, series):
    ref, scenes = series
    sched_file = tmp_path / "scheduler.json"
    dask = Path(sys.executable).parent / "dask"
    procs = [_scheduler(dask, sched_file)]
    try:
        address = _address(sched_file)
        procs.append(subprocess.Popen([str(dask), "worker", address, "--nworkers", "2", "--nthreads", "1",
                                       "--no-dashboard", "--local-directory", str(tmp_path / "dask")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        from distributed import Client

        with Client(address, timeout=60) as c:
            c.wait_for_workers(2, timeout=60)
        bad = tmp_path / "S1A_IW_GRDH_1SDV_20240301T054012_missing.tif"  # does not exist
        outdir = tmp_path / "out"
        r = _invoke(["batch", str(ref), str(scenes[0][0]), str(bad), "-o", str(outdir),
                     "--scheduler", address, "--no-progress", *SIFT_ARGS])
        assert r.exit_code == 3, r.stderr  # some scene failed
        assert "Dask dashboard: http://" in r.stderr
        summary = json.loads((outdir / "summary.json").read_text())
        assert summary["workers"] == 2
        st = {s["scene"]: s for s in summary["scenes"]}
        assert st[bad.stem]["status"] == "failed" and "not found" in st[bad.stem]["error"]
        for p, (dx, dy) in scenes[:1]:
            s = st[p.stem]
            assert s["status"] == "ok" and abs(s["shift_x_px"] - dx) < TOL_PX and abs(s["shift_y_px"] - dy) < TOL_PX
        _check_outputs_verify(outdir)
        # a worker running another sarreg (a copy with one file changed, first on its PYTHONPATH) joins: refused,
        # before any scene, naming what differs (tasks are sent by name: that worker would run other code)
        import sarreg

        other = tmp_path / "other"
        shutil.copytree(Path(sarreg.__file__).parent, other / "sarreg", ignore=shutil.ignore_patterns("__pycache__"))
        with open(other / "sarreg" / "stage.py", "a") as f:
            f.write("\n# another checkout\n")
        procs.append(subprocess.Popen([str(dask), "worker", address, "--nworkers", "1", "--nthreads", "1",
                                       "--no-dashboard", "--local-directory", str(tmp_path / "dask2")],
                                      env={**os.environ, "PYTHONPATH": str(other)}, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
        with Client(address, timeout=60) as c:
            c.wait_for_workers(3, timeout=60)
        r = _invoke(["batch", str(ref), str(scenes[0][0]), "-o", str(tmp_path / "out2"), "--scheduler", address,
                     "--no-progress", *SIFT_ARGS])
        assert r.exit_code == 1, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "1 of 3 workers run other software than this client (worker tcp://" in lines[0]
        assert not list((tmp_path / "out2").glob("*_reg*")), r.stderr
    finally:  # each process leads its own session: end it with its children (nannies -> worker processes)
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_missing_scheduler_file_is_named(tmp_path, series):
    """--scheduler with a file name that does not exist says so (not "missing port number in address")."""
    ref, scenes = series
    r = _invoke(["batch", str(ref), str(scenes[0][0]), "-o", str(tmp_path / "out"),
                 "--scheduler", str(tmp_path / "nosuch.json"), "--no-progress", *SIFT_ARGS])
    assert r.exit_code == 1, r.stderr
    assert r.stderr.strip().splitlines() == [f"sarreg: error: {tmp_path / 'nosuch.json'}: scheduler file not found "
                                             "(or give the scheduler's address, tcp://host:8786)"], r.stderr


def test_api_call_without_main_guard_says_so(tmp_path, series):
    """``sarreg.batch`` at the top level of a script (no ``if __name__ == "__main__":``): the local cluster's
    worker processes import the script again; that second call says what to do instead of "another sarreg batch
    is running in this folder"."""
    ref, scenes = series
    script = tmp_path / "unguarded.py"
    script.write_text("import sarreg\nfrom sarreg.config import RegisterConfig\n"
                      f"sarreg.batch({str(ref)!r}, [{str(scenes[0][0])!r}], {str(tmp_path / 'out')!r}, "
                      "RegisterConfig(features='sift', model='shift'), workers=1)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300,
                         cwd=tmp_path)
    assert res.returncode != 0
    assert 'put the call under `if __name__ == "__main__":`' in res.stderr, res.stderr[-3000:]
    assert "another sarreg batch is running" not in res.stderr


def test_cli_options_build_one_register_config(tmp_path):
    from sarreg.cli.batch import _scene_list, config_from_options

    cfg = config_from_options({"features": "sift", "model": "similarity", "no_warp": True, "band": 2,
                               "kind": "db", "compress": "lzw", "weights": tmp_path / "w.pt", "n_tiles": 5})
    assert (cfg.features, cfg.model, cfg.warp, cfg.compress, cfg.n_tiles) == ("sift", "similarity", False, "LZW", 5)
    assert cfg.preprocess.band == 2 and cfg.preprocess.kind == "db" and cfg.weights == str(tmp_path / "w.pt")
    for name in ("a_20240101.tif", "b_20240102.tif", "c.tif"):
        (tmp_path / name).write_bytes(b"x")
    lst = tmp_path / "scenes.txt"
    lst.write_text("# my series\nc.tif\n\n" + str(tmp_path / "a_20240101.tif") + "\n")
    got = _scene_list((str(tmp_path / "*_2024*.tif"),), lst)
    assert [p.name for p in got] == ["a_20240101.tif", "b_20240102.tif", "c.tif"]  # duplicates dropped


def test_cli_bad_input_fails_before_any_cluster(tmp_path, series):
    ref, scenes = series
    r = _invoke(["batch", str(tmp_path / "missing.tif"), str(scenes[0][0]), "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and "missing.tif: file not found" in r.stderr
    r = _invoke(["batch", str(ref), str(scenes[0][0]), "-o", str(tmp_path / "o"), "--chain", "--model", "tps"])
    assert r.exit_code == 1 and "--chain" in r.stderr
    r = _invoke(["batch", str(ref), str(tmp_path / "nothing_*.tif"), "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and "matches no file" in r.stderr
    r = _invoke(["batch", str(ref), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2  # usage: no scenes
    assert not any((tmp_path / "o").glob("*_reg.*"))
    # the reference named as an output of the folder (it was overwritten), a user's file where a summary goes
    (tmp_path / "o").mkdir(exist_ok=True)
    inside = tmp_path / "o" / f"{scenes[0][0].stem}_reg.tif"
    inside.write_bytes(ref.read_bytes())
    r = _invoke(["batch", str(inside), str(scenes[0][0]), "-o", str(tmp_path / "o"), *SIFT_ARGS])
    assert r.exit_code == 1 and "input is an output of this batch folder" in r.stderr, r.stderr
    assert inside.read_bytes() == ref.read_bytes()
    inside.unlink()
    (tmp_path / "o" / "summary.json").write_text("mine")
    r = _invoke(["batch", str(ref), str(scenes[0][0]), "-o", str(tmp_path / "o"), *SIFT_ARGS])
    assert r.exit_code == 1 and "summary.json: exists, and no batch wrote into" in r.stderr, r.stderr
    assert (tmp_path / "o" / "summary.json").read_text() == "mine" and not (tmp_path / "o" / "manifest.json").exists()


def test_caching_extractor_serves_recorded_calls_only(tmp_path):
    """A recorded extraction is served from disk (same Features); another image goes to the real extractor."""
    from sarreg.batch.cache import INDEX, CachingExtractor, FeatureIndex
    from sarreg.batch.files import atomic_write, dumps
    from sarreg.pipeline import Extractor

    rng = np.random.default_rng(3)
    img = synth.speckle(synth.reflectivity(160, 160, seed=3), 4.0, rng)
    unit = np.clip(img / np.percentile(img, 99), 0, 1).astype(np.float32)
    valid = np.ones(unit.shape, bool)
    inner = Extractor(CFG)
    record: dict = {}
    rec = CachingExtractor(inner, record=record)
    f = rec(unit, valid, multiscale=False, top_k=300)
    assert len(record) == 1 and len(f) > 20 and rec.kind == "sift" and rec.name == inner.name
    entries = {}
    for i, (k, feats) in enumerate(record.items()):
        entries[k] = f"{i}.npz"
        feats.save_npz(tmp_path / entries[k])
    atomic_write(tmp_path / INDEX, dumps({"entries": entries}))
    served = CachingExtractor(inner, index=FeatureIndex(tmp_path))
    g = served(unit, valid, multiscale=False, top_k=300)
    assert served.hits == 1 and np.array_equal(g.keypoints, f.keypoints)
    assert np.array_equal(g.descriptors, f.descriptors)
    served(unit, valid, multiscale=False, top_k=200)  # other arguments: computed, not served
    served(unit[::-1].copy(), valid, multiscale=False, top_k=300)  # other image: computed
    assert served.hits == 1


def test_scene_date_of_unreadable_file_is_recorded(tmp_path):
    p = tmp_path / "broken_20230405.tif"
    p.write_bytes(b"not a raster")
    warnings: list[str] = []
    assert scene_date(p, warnings) == "2023-04-05"  # from the file name
    assert len(warnings) == 1 and "metadata unreadable" in warnings[0]


def test_batch_local_model_writes_offsets_and_commits_them(series, client, tmp_path):
    """``--model local`` passes through batch: each scene's OUT.offsets.tif is an output of the manifest."""
    ref, scenes = series
    outdir = tmp_path / "out"
    summary = batch(ref, [p for p, _ in scenes[:1]], outdir, CFG.with_(model="local", grid_spacing=64),
                    client=client)
    r = summary.scenes[0]
    assert r.status == "ok", r.error
    doc = _check_outputs_verify(outdir)
    outs = next(iter(doc["scenes"].values()))["outputs"]
    assert any(name.endswith(".offsets.tif") for name in outs), outs


def test_scene_warnings_are_kept_for_the_scene(capfd) -> None:
    """Inside a worker task, a warning that names one of the scene's inputs goes into the scene's result, once; a
    warning about another file and errors still reach stderr (Python's last-resort handler, as without it)."""
    import logging

    from sarreg.batch.results import SceneWarnings

    log = logging.getLogger("sarreg.io.raster")
    with SceneWarnings("/d/ref.tif", "/d/s1.tif") as seen:
        log.warning("%s: no nodata value declared; -9999 read as nodata", "/d/s1.tif")
        log.warning("%s: no nodata value declared; -9999 read as nodata", "/d/s1.tif")
        log.warning("%s: something else", "/d/s2.tif")
        log.error("/d/s1.tif: unexpected error\nTraceback ...")
    log.warning("/d/ref.tif: after the task")
    assert seen.lines == ["/d/s1.tif: no nodata value declared; -9999 read as nodata"]
    err = capfd.readouterr().err
    assert "/d/s2.tif: something else" in err and "Traceback ..." in err and "s1.tif: no nodata" not in err
    assert seen not in logging.getLogger("sarreg").handlers


def test_scene_names_stay_distinct_and_resume_follows_file_contents(tmp_path):
    """Two scenes called scene.tif and a third called scene_2.tif get three names (none of them another's); a mask
    or checkpoint rewritten in place makes another run; start-up leaves a live process's temporary file alone."""
    from sarreg.batch.manifest import clean_stale, run_key
    from sarreg.batch.runner import unique_keys
    from sarreg.config import PreprocessConfig

    assert unique_keys(["a/scene.tif", "b/scene.tif", "c/scene_2.tif"]) == ["scene", "scene_3", "scene_2"]
    assert unique_keys(["a/x.tif", "b/x.tif", "x_2.tif", "c/x.tif"]) == ["x", "x_3", "x_2", "x_4"]
    mask = tmp_path / "mask.geojson"
    mask.write_text('{"type": "FeatureCollection", "features": []}')
    cfg = CFG.with_(preprocess=PreprocessConfig(exclude=(str(mask),)))
    before = run_key(cfg, "reference", "abc")
    assert run_key(cfg, "reference", "abc") == before
    mask.write_text('{"type": "FeatureCollection", "features": [], "name": "other"}')
    assert run_key(cfg, "reference", "abc") != before
    live = tmp_path / f".scene_reg.tif.{os.getpid()}.tmp.tif"
    dead = tmp_path / ".scene_reg.tif.999999999.tmp.tif"
    live.write_bytes(b"x"), dead.write_bytes(b"x")
    assert clean_stale(tmp_path) == 1 and live.exists() and not dead.exists()


def test_a_rerun_whose_glob_matches_the_outputs_in_its_own_folder_resumes(series, client, tmp_path):
    """-o the stack's own folder: a rerun's glob over the stack matched the batch's outputs (S_reg.tif) and the
    batch refused them as inputs it would overwrite (exit 1), so such a series never resumed. Outputs that the
    folder's manifest lists with their sha256 are now left out as the reference is; a file named like an output
    that no commit lists is still refused."""
    from sarreg.errors import OutputError

    ref, scenes = series
    stack = tmp_path / "stack"
    stack.mkdir()
    for p, _ in scenes[:2]:
        shutil.copy(p, stack)
    assert batch(ref, sorted(stack.glob("*.tif")), stack, CFG, client=client).exit_code == 0
    again = batch(ref, sorted(stack.glob("*.tif")), stack, CFG, client=client)
    assert [(r.scene, r.resumed) for r in again.scenes] == [(p.stem, True) for p, _ in scenes[:2]]
    shutil.copy(scenes[2][0], stack / "mine_reg.tif")
    with pytest.raises(OutputError, match="mine_reg.tif: input is an output of this batch folder"):
        batch(ref, sorted(stack.glob("*.tif")), stack, CFG, client=client)


def test_resume_redoes_a_scene_name_that_now_names_another_file(series, client, tmp_path):
    """x/scene.tif then y/scene.tif (another scene, same size and mtime, as unpacked from archives stamped to the
    second) into one folder: the second run registers y (it reported x's result, x's path, 'already done'); the
    same file moved to another folder still resumes."""
    import shutil

    ref, scenes = series
    (tmp_path / "x").mkdir(), (tmp_path / "y").mkdir(), (tmp_path / "z").mkdir()
    x = shutil.copy(scenes[0][0], tmp_path / "x" / "scene.tif")
    y = shutil.copy(scenes[1][0], tmp_path / "y" / "scene.tif")
    st = os.stat(x)
    os.utime(y, ns=(st.st_atime_ns, st.st_mtime_ns))
    outdir = tmp_path / "out"
    first = batch(ref, [x], outdir, CFG, client=client)
    second = batch(ref, [y], outdir, CFG, client=client)
    r = second.scenes[0]
    assert not r.resumed and r.path == str(Path(y).resolve())
    (dx, dy) = scenes[1][1]
    assert abs(r.shift_x_px - dx) < TOL_PX and abs(r.shift_y_px - dy) < TOL_PX, (r.shift_x_px, r.shift_y_px)
    assert abs(first.scenes[0].shift_x_px - r.shift_x_px) > 2
    z = shutil.move(y, tmp_path / "z" / "scene.tif")  # the same file, moved: its committed result still holds
    third = batch(ref, [z], outdir, CFG, client=client)
    assert third.scenes[0].resumed and third.scenes[0].path == str(Path(z).resolve())
    _check_outputs_verify(outdir)


def test_a_rerun_while_a_done_scene_is_missing_keeps_its_committed_result(series, client, tmp_path):
    """(And a scene's report names its files where they are published.) A committed scene whose file is missing on a
    rerun (a share not mounted for a moment): the scene fails in that run, but its committed result and files are
    kept (they were deleted), and the run after, with the file back, resumes it."""
    ref, scenes = series
    stack = tmp_path / "stack"
    stack.mkdir()
    for p, _ in scenes[:2]:
        shutil.copy(p, stack)
    paths = sorted(stack.glob("*.tif"))
    outdir = tmp_path / "out"
    assert batch(ref, paths, outdir, CFG, client=client).exit_code == 0
    before = _check_outputs_verify(outdir)["scenes"]
    for p in paths:  # the paths a scene's report names are where its files are (they named the staging folder)
        rep = json.loads((outdir / f"{p.stem}_reg.report.json").read_text())
        named = [rep["output"], *rep["outputs"].values()]
        assert all(Path(f).parent == outdir and Path(f).is_file() for f in named), named
    held = paths[1].rename(tmp_path / "held.tif")
    again = batch(ref, paths, outdir, CFG, client=client)
    r = {x.scene: x for x in again.scenes}[paths[1].stem]
    assert r.status == "failed" and any("committed earlier" in w for w in r.warnings), r
    assert _check_outputs_verify(outdir)["scenes"] == before
    held.rename(paths[1])
    third = batch(ref, paths, outdir, CFG, client=client)
    assert [x.resumed for x in third.scenes] == [True, True]


def _points_error(points: Path, d: tuple[float, float]) -> float:
    """Mean distance (reference px) of a .points file's enabled rows from the truth: moving px p shows reference px
    p + d; mapX / mapY on the reference grid, sourceX / sourceY in the moving raster's map coordinates."""
    rows = [ln.split(",") for ln in points.read_text().splitlines() if ln and not ln.startswith(("#", "mapX"))]
    a = np.asarray(rows, dtype=np.float64)
    inv = ~TRANSFORM
    ref = np.array([inv * (x, y) for x, y in a[:, :2]]) - 0.5
    mov = np.array([inv * (x, y) for x, y in a[:, 2:4]]) - 0.5
    return float(np.hypot(*(ref - mov - np.asarray(d)).T)[a[:, 4] > 0].mean())


def test_chain_scene_sidecars_and_apply_are_on_the_reference_grid(series, client, tmp_path):
    """A chained scene's .points / tie points sit on the reference grid (they were on its predecessor's uncorrected
    one: 4-5 px off); apply refuses its link report (the output was off by the predecessor's correction, exit 0)
    and re-applies its <scene>_reg.chain.json exactly as the batch warped it."""
    import pyogrio

    ref, scenes = series
    outdir = tmp_path / "chain"
    summary = batch(ref, [p for p, _ in scenes[:2]], outdir, CFG, chain=True, client=client)
    assert [r.status for r in summary.scenes] == ["ok", "ok"]
    (p, d) = scenes[1]
    assert _points_error(outdir / f"{p.stem}_reg.points", d) < TOL_PX
    meta, _, _, data = pyogrio.raw.read(outdir / f"{p.stem}_reg.tiepoints.gpkg")
    c = dict(zip(meta["fields"], data))
    err = np.hypot(c["ref_col"] - c["moving_col"] - d[0], c["ref_row"] - c["moving_row"] - d[1])[c["inlier"] > 0]
    assert err.mean() < TOL_PX
    res = _invoke(["apply", str(outdir / f"{p.stem}_reg.report.json"), str(p), str(tmp_path / "link.tif")])
    assert res.exit_code == 1 and "chain.json" in res.output and not (tmp_path / "link.tif").exists()
    res = _invoke(["apply", str(outdir / f"{p.stem}_reg.chain.json"), str(p), str(tmp_path / "chain.tif")])
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "chain.tif") as a, rasterio.open(outdir / f"{p.stem}_reg.tif") as b:
        assert a.transform == b.transform and np.array_equal(a.read(1), b.read(1), equal_nan=True)
    _check_outputs_verify(outdir)


def test_progress_json_total_leaves_out_a_reference_the_glob_matched(tmp_path, series):
    """``batch REF 'dir/*.tif' --progress-json`` with REF in dir: the scene total counts the scenes (it counted REF
    too, so progress stopped at 0.8 and done never reached total)."""
    ref, scenes = series
    p = _run_cli(["--progress-json", "batch", str(ref), str(ref.parent / "*.tif"), "-o", str(tmp_path / "o"),
                  "--workers", "1", *SIFT_ARGS, "--no-progress"])
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    lines = [json.loads(ln) for ln in err.splitlines() if ln.startswith("{")]
    steps = [ln for ln in lines if ln.get("stage") == "scenes"]
    assert steps[-1]["done"] == steps[-1]["total"] == len(scenes) and steps[-1]["progress"] == 1.0


def test_a_scene_given_twice_to_the_api_is_registered_once(series, client, tmp_path):
    """``batch(ref, [s, s])`` (or ``s`` and another spelling of its path) registered the same file twice, as ``s`` and
    ``s_2``; the CLI already dropped repeats. Now the API registers it once too."""
    ref, scenes = series
    s = scenes[0][0]
    other = s.parent / ".." / s.parent.name / s.name
    summary = batch(ref, [s, s, str(other)], tmp_path / "o", CFG, client=client)
    assert [r.scene for r in summary.scenes] == [s.stem]
    assert sorted(p.name for p in (tmp_path / "o").glob("*_reg.tif")) == [f"{s.stem}_reg.tif"]


def test_a_rerun_task_of_a_lost_worker_starts_from_an_empty_staging_folder(series, client, tmp_path):
    """Dask reruns the task of a worker that died under the same staging folder; a worker killed after its
    registration was written there left finished files, and the rerun failed the scene ('output exists, use
    --overwrite', an option batch does not have). The rerun now registers (and a chain warp warps) as the first
    attempt would have."""
    from sarreg.batch.results import reference_grid
    from sarreg.batch.tasks import run_scene, warp_scene

    ref, scenes = series
    (moving, (dx, dy)), out = scenes[0], tmp_path / "out"
    key = moving.stem
    task = {"key": key, "moving": str(moving), "ref": str(ref), "outdir": str(out), "config": CFG,
            "grid": reference_grid(ref)}
    for name, tag in (("scene", ""), ("warp", "-warp")):
        stage = out / ".work" / "run" / (key + tag)
        stage.mkdir(parents=True)
        for suffix in ("_reg.tif", "_reg.report.json", "_reg.chain.json"):  # what the killed attempt finished
            (stage / (key + suffix)).write_bytes(b"from the killed attempt")
        if name == "scene":
            r = client.submit(run_scene, dict(task, stage=str(stage)), pure=False).result()
            assert r["result"]["status"] == "ok", r["result"].get("error")
            assert abs(r["result"]["shift_x_px"] - dx) < TOL_PX and abs(r["result"]["shift_y_px"] - dy) < TOL_PX
        else:
            m = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]])
            r = client.submit(warp_scene, dict(task, stage=str(stage), matrix=m.tolist(), via="reference",
                                               link=None), pure=False).result()
            assert r["error"] is None, r["error"]
            assert json.loads((out / (key + "_reg.chain.json")).read_text())["scene"] == key
        assert key + "_reg.tif" in r["outputs"]
        assert (key + "_reg.report.json" in r["outputs"]) == (name == "scene")  # (a warp has no report of its own)
        assert all(sha256_file(out / n) == d for n, d in r["outputs"].items())
        with rasterio.open(out / (key + "_reg.tif")) as ds:
            assert ds.transform == TRANSFORM and ds.shape == (SIZE, SIZE)
        assert not stage.exists()


def test_a_chain_link_is_held_until_its_warp_publishes_it(series, client, tmp_path):
    """A chain's link task publishes nothing into OUTDIR: its files wait in its staging folder and the scene's warp
    publishes them with the raster (a run killed between link and warp left a link report saying ok, its tie
    points and no raster, none of them in the manifest)."""
    from sarreg.batch.results import reference_grid
    from sarreg.batch.tasks import run_scene, warp_scene

    ref, scenes = series
    (moving, (dx, dy)), out = scenes[0], tmp_path / "out"
    key = moving.stem
    (out / ".work" / "run").mkdir(parents=True)  # (the run's folder, as ``batch`` makes it)
    task = {"key": key, "moving": str(moving), "ref": str(ref), "outdir": str(out), "config": CFG,
            "grid": reference_grid(ref)}
    stage = out / ".work" / "run" / (key + "-pair")
    link = dict(task, stage=str(stage), hold=True, config=CFG.with_(warp=False))  # (as ``chain`` submits a link)
    r = client.submit(run_scene, link, pure=False).result()
    assert r["result"]["status"] == "ok", r["result"].get("error")
    assert list(out.iterdir()) == [out / ".work"] and r["held"] == str(stage)
    assert sorted(r["outputs"]) == sorted(p.name for p in stage.iterdir())
    m = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]])
    w = client.submit(warp_scene, dict(task, stage=str(out / ".work" / "run" / (key + "-warp")), matrix=m.tolist(),
                                       via="reference", link=None, held=r["held"]), pure=False).result()
    assert w["error"] is None, w["error"]
    assert set(r["outputs"]) < set(w["outputs"]) and key + "_reg.tif" in w["outputs"]
    assert all(sha256_file(out / n) == d for n, d in w["outputs"].items())
    report = json.loads((out / (key + "_reg.report.json")).read_text())
    assert Path(report["outputs"]["report"]) == out / (key + "_reg.report.json")
    assert not stage.exists()


def test_an_interrupted_run_leaves_no_summary_of_the_outputs_it_replaced(series, client, tmp_path):
    """A second run with other options, interrupted after its first commit (Ctrl-C: KeyboardInterrupt in the
    client), had removed that scene's raster (now low quality) while summary.csv / .json of the first run still
    listed it as ok with its outputs. The summary files of the earlier run go as soon as this run may change the
    folder; the next complete run writes them again."""
    ref, scenes = series
    out, paths = tmp_path / "out", [p for p, _ in scenes[:2]]
    first = batch(ref, paths, out, CFG, client=client)
    assert first.exit_code == 0 and (out / "summary.json").exists()

    def interrupt(r) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        batch(ref, paths, out, CFG.with_(max_shift=0.5), client=client, progress=interrupt)
    doc = json.loads((out / MANIFEST).read_text())["scenes"]
    gone = [k for k, e in doc.items() if e["status"] == "low_quality"]
    assert len(gone) == 1 and not (out / f"{gone[0]}_reg.tif").exists()
    assert not any((out / n).exists() for n in ("summary.csv", "summary.json", "summary.png", "tiepoints.gpkg"))
    again = batch(ref, paths, out, CFG.with_(max_shift=0.5), client=client)
    assert again.counts == {"ok": 0, "low_quality": 2, "failed": 0, "resumed": 1}
    rows = {r["scene"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert {r["status"] for r in rows.values()} == {"low_quality"} and rows[gone[0]]["resumed"] == "True"


def test_a_scheduler_address_that_never_answers_is_an_error_within_the_timeout(tmp_path):
    """--scheduler naming a port that accepts connections but is no Dask scheduler (its dashboard's, given for
    8786): Dask's connect timeout does not cover the scheduler's answer, and the batch waited forever, printing
    nothing. Now an InputError (exit 1) naming the address within 2 x the connect timeout."""
    import socket
    import threading

    from sarreg.batch import dask_client
    from sarreg.errors import InputError

    with socket.socket() as mute:  # the kernel accepts connections to it; nothing ever answers
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        address = f"tcp://127.0.0.1:{mute.getsockname()[1]}"
        box: dict = {}

        def enter() -> None:
            try:
                with dask_client(address, connect_timeout=2):
                    box["client"] = True
            except Exception as e:  # noqa: BLE001
                box["error"] = e

        t0 = time.monotonic()
        t = threading.Thread(target=enter, daemon=True)
        t.start()
        t.join(30)
        assert not t.is_alive(), "still waiting for the scheduler after 30 s"
        assert isinstance(box.get("error"), InputError) and time.monotonic() - t0 < 10
        assert str(box["error"]).startswith(f"{address}: no answer from a Dask scheduler within 4 s")


def test_a_chain_killed_before_its_first_commit_resumes(tmp_path, series):
    """--chain publishes each link's sidecars when its pair is registered and commits the scene only after its
    warp: a run killed in between (here: one worker, the first warp queued behind the other pairs) left
    KEY_reg.report.json and no manifest.json, and the rerun refused the folder ('exists, and no batch wrote into
    it', exit 1). The manifest is now written before any task runs: the rerun resumes and does every scene."""
    ref, scenes = series
    outdir = tmp_path / "out"
    args = ["batch", str(ref), str(ref.parent / "S1A_*.tif"), "-o", str(outdir), "--workers", "1", "--chain",
            "--no-progress", *SIFT_ARGS]
    proc = _run_cli(args, start_new_session=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120 and proc.poll() is None and not list(outdir.glob("*_reg.report.json")):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(outdir.glob("*_reg.report.json")), "no link was published before the kill"
    committed = json.loads((outdir / MANIFEST).read_text())["scenes"] if (outdir / MANIFEST).exists() else {}
    assert committed == {}, "a scene was committed before the kill"
    rerun = _invoke(args)
    assert rerun.exit_code == 0, rerun.stderr
    doc = _check_outputs_verify(outdir)
    assert set(doc["scenes"]) == {p.stem for p, _ in scenes}
    for row in csv.DictReader((outdir / "summary.csv").open()):
        dx, dy = dict((p.stem, d) for p, d in scenes)[row["scene"]]
        assert abs(float(row["shift_x_px"]) - dx) < 2 * TOL_PX and abs(float(row["shift_y_px"]) - dy) < 2 * TOL_PX


def test_two_recordings_of_one_shared_reference_cache_keep_each_other_whole(series, tmp_path):
    """Two batches on the same reference and --cache-dir started together both record the reference's features;
    the second one's start removed the folder under the first (its probe registration failed: 'no scene could be
    registered', cache off) and its npz files took the first one's names. Here the other recording runs while this
    one extracts: both now complete, and the cache left serves a scene exactly (same matrix as without it)."""
    from sarreg.batch.cache import CachingExtractor, FeatureIndex, cache_folder, process_extractor, record_reference
    from sarreg.pipeline import register

    ref, scenes = series
    ext, ref_sha = process_extractor(CFG), sha256_file(ref)
    folder = cache_folder(tmp_path / "cache", ref_sha, CFG, ext)
    other: list[int] = []

    class Meanwhile(CachingExtractor):
        """This process's extractor; at its first call the other batch records the same reference."""

        def __call__(self, *args, **kwargs):
            if not other:
                other.append(record_reference(str(ref), ref_sha, [str(scenes[3][0])], CFG, ext, folder))
            return super().__call__(*args, **kwargs)

    n = record_reference(str(ref), ref_sha, [str(scenes[0][0])], CFG, Meanwhile(ext), folder)
    assert n > 0 and other[0] > 0
    index = FeatureIndex(folder)
    assert len(index.entries) == n and all(index.get(k) is not None for k in index.entries)
    quiet = CFG.with_(warp=False, tiepoints=False, points=False, matches_npz=False)
    cached = CachingExtractor(ext, index=index)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    with_cache = register(ref, scenes[1][0], tmp_path / "a" / "x.tif", quiet, extractor=cached)
    plain = register(ref, scenes[1][0], tmp_path / "b" / "x.tif", quiet, extractor=ext)
    assert cached.hits >= 1 and with_cache.status == "ok"
    assert np.array_equal(np.asarray(with_cache.matrix), np.asarray(plain.matrix))


def test_an_input_rewritten_while_its_scene_runs_is_redone_by_the_next_run(series, client, tmp_path):
    """The manifest's fingerprint of a scene (size, mtime) was taken when the result came back: a scene file
    rewritten while its task ran (a download or preprocessing still writing the stack) was committed as done for the
    new file with a result from the old one, and every later run reused it. The fingerprint is now taken before the
    first task reads the scene: the next run redoes it."""
    import shutil
    import threading

    ref, scenes = series
    scene = Path(shutil.copy(scenes[0][0], tmp_path / scenes[0][0].name))
    out = tmp_path / "out"
    stop = threading.Event()

    def rewrite_when_it_starts() -> None:  # (the task's staging folder appears as it starts)
        while not stop.is_set():
            if list(out.glob(f".work/*/{scene.stem}")):
                st = scene.stat()
                os.utime(scene, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=rewrite_when_it_starts, daemon=True)
    watcher.start()
    try:
        first = batch(ref, [scene], out, CFG, client=client)
    finally:
        stop.set()
        watcher.join()
    assert first.scenes[0].status == "ok"
    again = batch(ref, [scene], out, CFG, client=client)
    assert not again.scenes[0].resumed
    assert batch(ref, [scene], out, CFG, client=client).scenes[0].resumed  # (unchanged since: done)


def test_outputs_a_killed_run_published_but_never_committed_do_not_outlive_the_redone_scene(series, client,
                                                                                            tmp_path):
    """The client of a batch on an existing cluster is killed; its running scene task goes on and publishes
    KEY_reg.tif and its sidecars, never committed. The rerun (other options: the scene is now low quality, no
    raster) left that raster beside a summary saying low_quality, as if it were this run's. Files named as the
    scene's outputs that its committed result does not list are now removed when it is committed."""
    from sarreg.batch import Manifest
    from sarreg.batch.results import reference_grid
    from sarreg.batch.tasks import run_scene

    ref, scenes = series
    moving, out = scenes[0][0], tmp_path / "out"
    out.mkdir()
    Manifest(out).save()  # (what the killed run had written before its tasks started)
    (out / ".work" / "killed-run").mkdir(parents=True)
    orphan = {"key": moving.stem, "moving": str(moving), "ref": str(ref), "outdir": str(out), "config": CFG,
              "grid": reference_grid(ref), "stage": str(out / ".work" / "killed-run" / moving.stem)}
    published = client.submit(run_scene, orphan, pure=False).result()["outputs"]
    assert moving.stem + "_reg.tif" in published and (out / (moving.stem + "_reg.tif")).exists()
    summary = batch(ref, [moving], out, CFG.with_(max_shift=0.5), client=client)
    assert summary.scenes[0].status == "low_quality" and summary.scenes[0].output is None
    assert not (out / (moving.stem + "_reg.tif")).exists()
    _check_outputs_verify(out)


def test_a_batch_that_cannot_start_leaves_the_file_system_as_it_was(tmp_path, series, monkeypatch):
    """--scheduler at a closed port: the batch failed (exit 1, one line) but left the OUTDIR it had created, empty
    but for its .lock. A failed start now removes what it made: the folders it created and the lock file; a folder
    that existed keeps exactly its content."""
    import socket

    from sarreg.batch import runner

    ref, scenes = series
    monkeypatch.setattr(runner, "CONNECT_TIMEOUT_S", 2.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"  # (closed at the end of the block: nothing listens)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    for outdir in (tmp_path / "new" / "out", mine):
        r = _invoke(["batch", str(ref), str(scenes[0][0]), "-o", str(outdir), "--scheduler", address,
                     "--no-progress", *SIFT_ARGS])
        assert r.exit_code == 1, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"sarreg: error: {address}: cannot connect"), r.stderr
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep"


def test_a_batch_that_cannot_start_keeps_what_dead_runs_left_and_an_unreadable_manifest(tmp_path, series,
                                                                                         monkeypatch):
    """A batch folder with a dead run's staging folder, a dead writer's temp file and an unreadable manifest: a
    --no-resume batch that could not start (no scheduler) still removed all three, the manifest too. They are now
    cleaned / replaced only once the run has started: a failed start leaves the folder exactly as it was."""
    import socket

    from sarreg.batch import runner

    ref, scenes = series
    monkeypatch.setattr(runner, "CONNECT_TIMEOUT_S", 2.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    outdir = tmp_path / "out"
    (outdir / ".work" / "host-1-abcdef" / "scene").mkdir(parents=True)
    (outdir / ".work" / "host-1-abcdef" / "scene" / "scene_reg.tif").write_bytes(b"half")
    (outdir / ".summary.json.999999999.tmp").write_bytes(b"half")
    (outdir / MANIFEST).write_text("{not json")

    def tree() -> dict[str, bytes | None]:
        return {str(p.relative_to(outdir)): p.read_bytes() if p.is_file() else None for p in outdir.rglob("*")}

    before = tree()
    r = _invoke(["batch", str(ref), str(scenes[0][0]), "-o", str(outdir), "--scheduler", address, "--no-resume",
                 "--no-progress", *SIFT_ARGS])
    assert r.exit_code == 1 and "cannot connect" in r.stderr, r.stderr
    assert tree() == before


_STALLED_RECORDING = """
import sys, time
from pathlib import Path
from sarreg.batch import sha256_file
from sarreg.batch.cache import CachingExtractor, cache_folder, process_extractor, record_reference
from sarreg.config import RegisterConfig

ref, scene, cache = sys.argv[1:4]
cfg = RegisterConfig(features="sift", model="shift", coarse_size=384, fine_tile=192, n_tiles=4, keypoints="always")
ext = process_extractor(cfg)


class Stall(CachingExtractor):
    def __call__(self, *args, **kwargs):
        time.sleep(600)


sha = sha256_file(ref)
record_reference(ref, sha, [scene], cfg, Stall(ext), cache_folder(Path(cache), sha, cfg, ext))
"""


def test_a_killed_recording_is_cleaned_from_a_shared_cache_and_a_live_one_is_not(series, client, tmp_path):
    """A reference recording killed with SIGKILL left its work folder in --cache-dir forever (later runs hit the
    cache and never looked). The next batch's reference task now removes what recordings whose owner is gone left,
    while the live recording of another batch sharing the cache dir keeps its folder; the scenes are still right."""
    ref, scenes = series
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", _STALLED_RECORDING, str(ref), str(scenes[0][0]), str(cache)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120 and not all(list(cache.glob(f"ref-*/work-{p.pid}-*/")) for p in procs):
            assert all(p.poll() is None for p in procs)
            time.sleep(0.05)
        killed, live = procs
        killed.kill()
        killed.wait()
        summary = batch(ref, [scenes[1][0]], tmp_path / "out", CFG, client=client, cache_dir=cache)
        s = summary.scenes[0]
        assert s.status == "ok" and abs(s.shift_x_px - scenes[1][1][0]) < TOL_PX, s
        assert abs(s.shift_y_px - scenes[1][1][1]) < TOL_PX and s.ref_cache_hits, s
        assert summary.reference_cache["features"] and not summary.reference_cache["error"]
        left = sorted(p.name.split("-")[1] for p in cache.glob("ref-*/work-*"))
        assert left == [str(live.pid), str(live.pid)], left  # (its folder and its lock file)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    from sarreg.batch.cache import clean_dead_recordings

    assert clean_dead_recordings(cache) == 1 and not list(cache.glob("ref-*/work-*"))


def test_work_folders_of_older_versions_recordings_are_cleaned_once_a_day_old(tmp_path):
    """Recordings of older sarreg versions took no lock (``work/``, then ``work-<pid>-<id>/``): killed, they left
    their work folder forever, as clean_dead_recordings only looked at lock files. Such a folder untouched for a day
    is now removed; a fresh one (an older batch recording now), this version's (with its lock file), the npz files
    and folders of other names are kept."""
    from sarreg.batch.cache import clean_dead_recordings
    from sarreg.batch.files import locked

    folder = tmp_path / "cache" / "ref-0123456789abcdef01234567"
    old = time.time() - 2 * 24 * 3600
    names = ["work", "work-4242-0a1b2c3d", "work-77-deadbeef", "work-99-cafe0123", "workshop"]
    for name in names:
        (folder / name).mkdir(parents=True)
        (folder / name / "probe.report.json").write_text("{}")
    running = locked(folder / "work-99-cafe0123.lock")  # this version's running recording (its lock held)
    for p in [folder / "000.npz", folder / "4242-0a1b2c3d-000.npz"]:
        p.write_bytes(b"npz")
    for name in ["work", "work-4242-0a1b2c3d", "work-99-cafe0123", "workshop"]:
        for p in (folder / name / "probe.report.json", folder / name):
            os.utime(p, (old, old))
    os.utime(folder / "000.npz", (old, old))
    with running:
        assert clean_dead_recordings(tmp_path / "cache") == 2
    assert sorted(p.name for p in folder.iterdir()) == ["000.npz", "4242-0a1b2c3d-000.npz", "work-77-deadbeef",
                                                        "work-99-cafe0123", "work-99-cafe0123.lock", "workshop"]


def test_a_worker_that_joins_after_the_check_with_other_software_fails_its_scenes(tmp_path, series):
    """The software check ran only when the client connected: a worker that joined later running another sarreg
    (a copy with one file changed) registered the scenes with its own code, silently (status ok). Every task now
    checks its worker first: those scenes fail with one line naming the worker and what differs, nothing is
    published; a rerun on a right worker does them."""
    import sarreg

    ref, scenes = series
    sched_file = tmp_path / "scheduler.json"
    dask = Path(sys.executable).parent / "dask"
    procs = [_scheduler(dask, sched_file)]
    other = tmp_path / "other"
    shutil.copytree(Path(sarreg.__file__).parent, other / "sarreg", ignore=shutil.ignore_patterns("__pycache__"))
    with open(other / "sarreg" / "stage.py", "a") as f:
        f.write("\n# another checkout\n")

    def worker(pythonpath: Path) -> subprocess.Popen:
        return subprocess.Popen([str(dask), "worker", address, "--nworkers", "1", "--nthreads", "1",
                                 "--no-dashboard", "--local-directory", str(tmp_path / "dask")],
                                env={**os.environ, "PYTHONPATH": str(pythonpath)}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)

    try:
        address = _address(sched_file)
        outdir = tmp_path / "out"
        paths = [p for p, _ in scenes[:2]]
        # no worker when the client connects (nothing to check); the other one joins before the first task runs
        summary = batch(ref, paths, outdir, CFG, scheduler=address, on_cluster=lambda c: procs.append(worker(other)))
        assert [s.status for s in summary.scenes] == ["failed", "failed"]
        for s in summary.scenes:
            assert s.error.startswith("worker tcp://127.0.0.1:") and " runs other software than this client (sarreg" \
                in s.error and "\n" not in s.error, s.error
        assert "runs other software" in summary.reference_cache["error"]
        assert not list(outdir.glob("*_reg*")) and not (outdir / ".cache").exists()
        os.killpg(procs[-1].pid, signal.SIGKILL)
        procs.pop().wait()
        procs.append(worker(Path(__file__).resolve().parents[1]))
        again = batch(ref, paths, outdir, CFG, scheduler=address)
        assert [s.status for s in again.scenes] == ["ok", "ok"] and again.scenes[0].ref_cache_hits
        _check_outputs_verify(outdir)
    finally:
        for p in reversed(procs):
            with contextlib.suppress(ProcessLookupError):  # (a process already gone: still end the others)
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_a_killed_runs_task_that_publishes_after_a_later_run_committed_changes_nothing(series, client, tmp_path):
    """A batch's client is killed on an existing cluster; a task of it still queued or running goes on. A later
    batch redoes and commits the scene; that task then published its files over the committed ones (the summary
    and the manifest said one thing, the raster was another run's: a later resume redid it, nothing said so
    before). A task now makes its staging folder only inside its run's folder, which the later batch removed when
    it started: it fails and publishes nothing."""
    from sarreg.batch import Manifest
    from sarreg.batch.results import reference_grid
    from sarreg.batch.tasks import run_scene

    ref, scenes = series
    moving, out = scenes[0][0], tmp_path / "out"
    out.mkdir()
    Manifest(out).save()
    (out / ".work" / "killed-run").mkdir(parents=True)  # (what the killed client had made)
    summary = batch(ref, [moving], out, CFG, client=client)
    assert summary.scenes[0].status == "ok" and not (out / ".work").exists()
    orphan = {"key": moving.stem, "moving": str(moving), "ref": str(ref), "outdir": str(out),
              "config": CFG.with_(model="affine"), "grid": reference_grid(ref),
              "stage": str(out / ".work" / "killed-run" / moving.stem)}
    r = client.submit(run_scene, orphan, pure=False).result()
    assert r["outputs"] == {} and r["result"]["status"] == "failed", r["result"]
    assert "staging folder of this run removed" in r["result"]["error"], r["result"]["error"]
    _check_outputs_verify(out)
    assert batch(ref, [moving], out, CFG, client=client).scenes[0].resumed


def test_the_plot_of_a_batch_where_every_scene_failed_draws_without_warnings(tmp_path):
    """Every scene failed: no shift to draw, the empty legend made matplotlib warn ("No artists with labels")."""
    import warnings

    from sarreg.batch.results import BatchSummary, SceneResult
    from sarreg.batch.summary import plot_summary

    s = BatchSummary("ref.tif", str(tmp_path), "reference",
                     [SceneResult(f"s{i}", f"s{i}.tif", status="failed", error="no overlap") for i in range(3)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = plot_summary(s, tmp_path / "summary.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scenes_named_as_gdal_subdatasets_register_resume_and_keep_their_dates(series, client, tmp_path):
    """Scenes given as netCDF subdataset names (``NETCDF:"file":Band1``, relative to the working folder): keys and
    dates from the file's name, the inputs' digests from the files, so a rerun resumes every scene."""
    from osgeo import gdal

    ref, scenes = series
    names = []
    for p, _ in scenes[:2]:
        gdal.Translate(str(tmp_path / f"{p.stem}.nc"), str(p), format="netCDF")
        names.append(f'NETCDF:"{p.stem}.nc":Band1')
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        summary = batch(ref, names, tmp_path / "out", CFG, client=client)
        again = batch(ref, names, tmp_path / "out", CFG, client=client)
    finally:
        os.chdir(cwd)
    assert summary.exit_code == 0, [r.error for r in summary.scenes]
    assert [r.scene for r in summary.scenes] == [f"{p.stem}_Band1" for p, _ in scenes[:2]]
    assert [r.date[:10] for r in summary.scenes] == ["2024-02-01", "2024-02-02"]
    for r, (_, (dx, dy)) in zip(summary.scenes, scenes):
        assert abs(r.shift_x_px - dx) < TOL_PX and abs(r.shift_y_px - dy) < TOL_PX
    assert all(r.resumed for r in again.scenes)


def test_a_run_stopped_while_writing_its_summary_leaves_none_of_it(tmp_path, monkeypatch):
    """The four summary files are a set: a run stopped while writing them (here in the tie point merge, after the
    table and the plot) leaves none and no temporary; it left summary.csv and summary.png alone."""
    import importlib

    from sarreg.batch.results import BatchSummary, SceneResult

    summary_mod = importlib.import_module("sarreg.batch.summary")  # (the package's ``batch`` hides the module path)
    s = BatchSummary("ref.tif", str(tmp_path), "reference",
                     [SceneResult(f"s{i}", f"s{i}.tif", status="failed", error="no overlap") for i in range(3)])

    def stopped(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(summary_mod, "merge_tiepoints", stopped)
    with pytest.raises(KeyboardInterrupt):
        summary_mod.write_summary(s, tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    files = summary_mod.write_summary(s, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.csv", "summary.json", "summary.png"]
    assert set(files) == {"csv", "json", "png"}
