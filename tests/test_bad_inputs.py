"""The bad-input audit (issue #10) kept in the suite: every case through the real CLI and real GeoTIFFs.

For each case: the exit code; for failures exactly one non-empty stderr line; no file left in the output folder
that the case did not expect; the inputs' sha256 unchanged; for accepted awkward inputs the recovered transform
within 0.5 px of the known truth. Signal tests run a real subprocess. Scenes: 320 x 320 (8 looks), EPSG:32633,
10 m, moving shifted by (3.4, -2.1) px; features are SIFT (no weights needed).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from sarreg.cli import cli
from sarreg.synth import reflectivity, speckle, warp_image, write_geotiff

from conftest import terminal_signals

N, PAD = 320, 48
CRS = "EPSG:32633"
T = Affine(10.0, 0, 500000.0, 0, -10.0, 5000000.0)
SHIFT = (3.4, -2.1)  # moving px + SHIFT = reference px
LOOKS = 8.0
REPO = Path(__file__).resolve().parents[1]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _field(seed: int = 5) -> np.ndarray:
    return reflectivity(N + 2 * PAD, N + 2 * PAD, seed=seed)


def _moving_from(field: np.ndarray, rng: np.random.Generator, shift=SHIFT) -> np.ndarray:
    m = np.array([[1, 0, PAD + shift[0]], [0, 1, PAD + shift[1]], [0, 0, 1.0]])
    return np.nan_to_num(warp_image(speckle(field, LOOKS, rng), m, (N, N)), nan=0.0).astype(np.float32)


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> dict[str, Path]:
    """ref.tif / mov.tif (linear power, nodata 0 outside), and a committed registration (r.report.json)."""
    d = tmp_path_factory.mktemp("pair")
    rng = np.random.default_rng(7)
    f = _field()
    out = {"ref": write_geotiff(d / "ref.tif", speckle(f, LOOKS, rng)[PAD:PAD + N, PAD:PAD + N], T, CRS),
           "mov": write_geotiff(d / "mov.tif", _moving_from(f, rng), T, CRS, nodata=0.0),
           "_field": f}  # type: ignore[dict-item]
    res = _cli("register", "--features", "sift", out["ref"], out["mov"], d / "r.tif")
    assert res.exit_code == 0, res.output
    out["report"] = d / "r.report.json"
    return out


def _cli(*args) -> "CliRunnerResult":  # noqa: F821
    return CliRunner().invoke(cli, [str(a) for a in args])


def _truth_error(matrix, shift=SHIFT, scale: float = 1.0) -> float:
    """Largest distance (px) between a moving px -> reference px matrix and the truth over the scene (9 x 9 points
    on its inner 80 %: corners are extrapolation of the fitted model, not where the matches are)."""
    lo, hi = 0.1 * N / scale, 0.9 * N / scale - 1
    g = np.stack(np.meshgrid(np.linspace(lo, hi, 9), np.linspace(lo, hi, 9)), -1).reshape(-1, 2)
    m = np.asarray(matrix, dtype=np.float64)
    p = np.c_[g, np.ones(len(g))] @ m.T
    got = p[:, :2] / p[:, 2:]
    want = (g + 0.5) * scale - 0.5 + np.asarray(shift)
    return float(np.hypot(*(got - want).T).max())


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


# ------------------------------------------------------------------------------------------------- the cases
# Each case: (work folder, pair) -> (CLI args, expected exit code, needles in stderr, files the run may add).
Case = Callable[[Path, dict], tuple[list, "int | tuple[int, ...]", tuple[str, ...], set[str]]]
OK_FILES = {"o.tif", "o.report.json", "o.points", "o.tiepoints.gpkg", "o.matches.npz"}


def _ok_files(out: Path) -> set[str]:
    """OK_FILES, without the matches npz when no keypoints ran (the correlation settled the estimate)."""
    fine = json.loads((out / "o.report.json").read_text())["stages"]["fine"]
    return OK_FILES - {"o.matches.npz"} if str(fine.get("keypoints", "")).startswith("skipped") else OK_FILES


def _copy(pair, d: Path, name: str = "mov", as_: str | None = None) -> Path:
    dst = d / (as_ or pair[name].name)
    shutil.copyfile(pair[name], dst)
    return dst


def _reg(*args) -> list:
    return ["register", "--features", "sift", *args]


def c_points_is_moving(d, pair):  # cp mov.tif o.points; register ref o.points o.tif --overwrite
    m = _copy(pair, d, as_="o.points")
    return _reg(pair["ref"], m, d / "o.tif", "--overwrite"), 1, ("o.points", "same file as input"), set()


def c_report_is_reference(d, pair):
    r = _copy(pair, d, "ref", as_="o.report.json")
    return _reg(r, pair["mov"], d / "o.tif", "--overwrite"), 1, ("o.report.json", "same file as input"), set()


def c_matches_hardlinks_moving(d, pair):
    m = _copy(pair, d)
    os.link(m, d / "o.matches.npz")
    return _reg(pair["ref"], m, d / "o.tif", "--overwrite"), 1, ("o.matches.npz", "same file as input"), set()


def c_tiepoints_symlinks_reference(d, pair):
    (d / "o.tiepoints.gpkg").symlink_to(pair["ref"])
    return _reg(pair["ref"], pair["mov"], d / "o.tif", "--overwrite"), 1, ("o.tiepoints.gpkg", "same file"), set()


def c_geojson_is_moving(d, pair):
    m = _copy(pair, d, as_="o.tiepoints.geojson")
    return (_reg(pair["ref"], m, d / "o.tif", "--geojson", "--overwrite"), 1, ("o.tiepoints.geojson", "same file"),
            set())


def c_quicklook_is_reference(d, pair):
    r = _copy(pair, d, "ref")
    return _reg(r, pair["mov"], d / "o.tif", "--quicklook", r, "--overwrite"), 1, ("ref.tif", "same file"), set()


def c_out_hardlinks_moving(d, pair):
    m = _copy(pair, d)
    os.link(m, d / "o.tif")
    return _reg(pair["ref"], m, d / "o.tif", "--overwrite"), 1, ("o.tif", "same file as input"), set()


def c_quicklook_is_a_sidecar(d, pair):
    return (_reg(pair["ref"], pair["mov"], d / "o.tif", "--quicklook", d / "o.points"), 1,
            ("o.points", "written twice"), set())


def c_weights_is_a_sidecar(d, pair):
    (d / "o.points").write_bytes(os.urandom(64))
    return (_reg(pair["ref"], pair["mov"], d / "o.tif", "--weights", d / "o.points", "--overwrite"), 1,
            ("o.points", "same file as input"), set())


def _exists(suffix: str, *extra: str) -> Case:
    def case(d, pair):
        p = d / f"o{suffix}"
        p.write_text("keep me")
        return _reg(pair["ref"], pair["mov"], d / "o.tif", *extra), 1, (p.name, "exists", "--overwrite"), set()
    return case


def c_quicklook_exists(d, pair):
    (d / "q.png").write_text("keep me")
    return _reg(pair["ref"], pair["mov"], d / "o.tif", "--quicklook", d / "q.png"), 1, ("q.png", "exists"), set()


def c_out_folder_missing(d, pair):
    return _reg(pair["ref"], pair["mov"], d / "nope" / "o.tif"), 1, ("nope", "does not exist"), set()


def c_stale_temporaries_cleaned(d, pair):
    dead, live = _dead_pid(), os.getppid()
    for name in (f".o.tif.{dead}.warp.tmp.tif", f".o.tif.{dead}.stage.tif", f".o.tif.{dead}.stage.report.json",
                 f".o.tif.{live}.warp.tmp.tif"):
        (d / name).write_bytes(b"partial")
    return _reg(pair["ref"], pair["mov"], d / "o.tif"), 0, (), OK_FILES - {f".o.tif.{live}.warp.tmp.tif"}


def c_max_shift_zero(d, pair):
    # no match survives the coarse stage's max-shift filter (failed, 3), or the correction is refused (2)
    return (_reg(pair["ref"], pair["mov"], d / "o.tif", "--max-shift", "0"), (2, 3), ("mov.tif",),
            OK_FILES - {"o.tif"})


def c_max_shift_two(d, pair):
    return (_reg(pair["ref"], pair["mov"], d / "o.tif", "--max-shift", "2"), 2, ("exceeds --max-shift 2",),
            OK_FILES - {"o.tif"})


def _overlap(pct: float) -> Case:
    def case(d, pair):
        rng = np.random.default_rng(3)
        f = reflectivity(N, 2 * N, seed=9)
        r = write_geotiff(d / "r.tif", speckle(f, 4, rng)[:, :N], T, CRS)
        x0 = N - round(N * pct / 100)
        m = write_geotiff(d / "m.tif", speckle(f, 4, rng)[:, x0:x0 + N], T @ Affine.translation(x0, 0), CRS)
        return _reg(r, m, d / "o.tif"), 1, ("m.tif", "overlap", "too small"), set()
    return case


def c_moving_12px_chip(d, pair):
    # a 12 x 12 chip inside the reference: it overlaps; it said "no overlap on the coarse grid" (exit 3, a report)
    f, x0, y0 = pair["_field"], 100, 120
    m = write_geotiff(d / "chip.tif", speckle(f, LOOKS, np.random.default_rng(4))[PAD + y0:PAD + y0 + 12,
                                                                               PAD + x0:PAD + x0 + 12],
                      T * Affine.translation(x0, y0), CRS)
    return _reg(pair["ref"], m, d / "o.tif"), 1, ("chip.tif", "too small to register", "12 x 12 px", "32 x 32"), set()


def c_band_2_of_single_band_moving(d, pair):
    # --band 2 for a two-band REF; MOVING (one band) follows it: the message says so and how to pick MOVING's band
    with rasterio.open(pair["ref"]) as ds:
        r = ds.read(1)
    ref2 = write_geotiff(d / "ref2.tif", np.stack([r, r]), T, CRS)
    return (_reg(ref2, pair["mov"], d / "o.tif", "--band", "2"), 1,
            ("mov.tif", "band 2 out of range: it has 1 band", "--moving-band"), set())


def c_weights_directory(d, pair):
    (d / "w").mkdir()
    return (["register", pair["ref"], pair["mov"], d / "o.tif", "--weights", d / "w"], 1, ("is a directory",),
            set())


def c_weights_random_bytes(d, pair):
    (d / "random.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    return (["register", pair["ref"], pair["mov"], d / "o.tif", "--weights", d / "random.bin"], 1,
            ("random.bin", "not a readable PyTorch checkpoint", "neither a zip archive nor a pickle"), set())


def c_batch_weights_random_bytes(d, pair):
    (d / "random.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    return (["batch", pair["ref"], pair["mov"], "-o", d / "out", "--weights", d / "random.bin"], 1,
            ("random.bin", "not a readable"), set())


def c_batch_weights_directory(d, pair):
    (d / "w").mkdir()
    return (["batch", pair["ref"], pair["mov"], "-o", d / "out", "--weights", d / "w"], 1, ("is a directory",),
            set())


def c_batch_list_is_a_run_file(d, pair):
    (d / "out").mkdir()
    (d / "out" / "summary.csv").write_text(f"{pair['mov']}\n")
    return (["batch", pair["ref"], "--from-list", d / "out" / "summary.csv", "-o", d / "out"], 1,
            ("summary.csv", "same file as input"), set())


def c_zero_pixel_size(d, pair):
    with rasterio.open(pair["mov"]) as ds:
        a = ds.read(1)
    m = write_geotiff(d / "zero.tif", a, Affine(0.0, 0, 500000.0, 0, 0.0, 5000000.0), CRS, nodata=0.0)
    return _reg(pair["ref"], m, d / "o.tif"), 1, ("zero.tif", "zero pixel size"), set()


def c_truncated_tiff(d, pair):
    data = pair["ref"].read_bytes()
    (d / "trunc.tif").write_bytes(data[: len(data) // 2])
    return _reg(d / "trunc.tif", pair["mov"], d / "o.tif"), 1, ("trunc.tif",), set()


def _extract(*args: str) -> Case:
    def case(d, pair):
        return ["extract", pair["ref"], "-o", d, *args], 2, ("sarreg extract --help",), set()
    return case


def c_extract_min_scale_above_max(d, pair):
    return (["extract", pair["ref"], "-o", d, "--min-scale", "0.9", "--max-scale", "0.1"], 2,
            ("--min-scale 0.9 > --max-scale 0.1",), set())


def c_extract_duplicate_names(d, pair):
    for sub in ("a", "b"):
        (d / sub).mkdir()
        shutil.copyfile(pair["ref"], d / sub / "scene.tif")
    (d / "out").mkdir()
    return (["extract", d / "a" / "scene.tif", d / "b" / "scene.tif", "-o", d / "out"], 1,
            ("scene.tif.r2d2", "would both write"), set())


def c_extract_quicklook_named_like_its_keypoints(d, pair):
    """--quicklook named like the image's own .r2d2: said so, not "ref.tif and ref.tif would both write"."""
    return (["extract", pair["ref"], "-o", d, "--quicklook", d / "ref.tif.r2d2"], 1,
            ("ref.tif.r2d2", "--quicklook names a file extract writes for"), set())


def c_extract_output_exists(d, pair):
    (d / "ref.tif.r2d2").write_text("keep me")
    return ["extract", pair["ref"], "-o", d], 1, ("ref.tif.r2d2", "exists"), set()


def c_extract_out_dir_is_a_file(d, pair):
    (d / "afile").write_text("x")
    return ["extract", pair["ref"], "-o", d / "afile"], 1, ("afile", "not a directory"), set()


def c_apply_out_is_report(d, pair):
    r = _copy(pair, d, "report")
    return ["apply", r, pair["mov"], r, "--overwrite"], 1, ("r.report.json", "same file as input"), set()


def c_apply_out_hardlinks_moving(d, pair):
    m = _copy(pair, d)
    os.link(m, d / "o.tif")
    return ["apply", pair["report"], m, d / "o.tif", "--overwrite"], 1, ("o.tif", "same file as input"), set()


def c_apply_out_exists(d, pair):
    (d / "o.tif").write_text("keep me")
    return ["apply", pair["report"], pair["mov"], d / "o.tif"], 1, ("o.tif", "exists"), set()


def c_apply_absurd_transform(d, pair):
    rep = json.loads(pair["report"].read_text())
    rep["transform"]["matrix"][0][2] += 1e6
    (d / "absurd.report.json").write_text(json.dumps(rep))
    return (["apply", d / "absurd.report.json", pair["mov"], d / "o.tif"], 1, ("outside the reference grid",),
            set())


def c_apply_all_nodata(d, pair):
    """Extent overlaps the grid, but only the moving raster's nodata lands there."""
    with rasterio.open(pair["mov"]) as ds:
        a = ds.read(1)
    a[:, N // 2:] = 0.0
    m = write_geotiff(d / "left.tif", a, T, CRS, nodata=0.0)
    rep = json.loads(pair["report"].read_text())
    rep["transform"] = {"model": "shift", "matrix": [[1, 0, -0.75 * N], [0, 1, 0], [0, 0, 1]]}
    rep["stages"]["relate"]["moving_grid"] = None
    (d / "left.report.json").write_text(json.dumps(rep))
    return ["apply", d / "left.report.json", m, d / "o.tif"], 1, ("left.tif", "all-nodata"), set()


def c_apply_pixel_space_other_size(d, pair):
    with rasterio.open(pair["mov"]) as ds:
        a = ds.read(1)
    m = write_geotiff(d / "px.tif", a[:200, :200], nodata=0.0)
    return ["apply", pair["report"], m, d / "o.tif"], 1, ("px.tif", "cannot be related"), set()


def c_moving_crs_without_geotransform(d, pair):
    """A CRS and the identity geotransform (the georeferencing lost in an export): said so, not "no CRS"."""
    with rasterio.open(pair["mov"]) as ds:
        a = ds.read(1)
    m = write_geotiff(d / "idcrs.tif", a, None, CRS, nodata=0.0)
    return ["register", pair["ref"], m, d / "o.tif"], 1, ("idcrs.tif", "has a CRS but nothing that places it"), set()


def c_geojson_in_pixel_space(d, pair):
    """--geojson between plain images: GeoJSON has no pixel space (readers take the numbers for lon/lat)."""
    with rasterio.open(pair["ref"]) as r, rasterio.open(pair["mov"]) as m:
        a, b = r.read(1), m.read(1)
    ref, mov = write_geotiff(d / "pr.tif", a), write_geotiff(d / "pm.tif", b, nodata=0.0)
    return _reg(ref, mov, d / "o.tif", "--geojson"), 1, ("pr.tif", "--geojson needs a georeferenced"), set()


def c_update_georef_plain_moving(d, pair):
    """--update-georef with a georeferenced reference and a plain moving image: the moving image is named (not the
    GCP message, which is for a reference located by GCPs alone)."""
    with rasterio.open(pair["mov"]) as m:
        b = m.read(1)
    mov = write_geotiff(d / "pm.tif", b, nodata=0.0)
    return (_reg(pair["ref"], mov, d / "o.tif", "--update-georef"), 1,
            ("pm.tif: --update-georef needs georeferenced rasters",), set())


def c_resolution_absurd(d, pair):
    """--resolution giving 3.2 M x 3.2 M pixels: refused before any work, naming the reference (it came after the
    registration, naming no file)."""
    return _reg(pair["ref"], pair["mov"], d / "o.tif", "--resolution", "0.001"), 1, (
        "ref.tif: --resolution 0.001: the output would be",), set()


def c_update_georef_gcp_reference(d, pair):
    """--update-georef onto a reference located by GCPs: it has no grid to write, said so (not "needs georeferenced
    rasters", which it is)."""
    from rasterio.control import GroundControlPoint

    with rasterio.open(pair["ref"]) as ds:
        a = ds.read(1)
    gcps = [GroundControlPoint(r, c, *(T * (c, r))) for r in (0, N) for c in (0, N // 2, N)]
    r = d / "gcpref.tif"
    with rasterio.open(r, "w", driver="GTiff", width=N, height=N, count=1, dtype="float32", gcps=gcps,
                       crs=CRS) as ds:
        ds.write(a, 1)
    return (["register", r, pair["mov"], d / "o.tif", "--update-georef"], 1, ("gcpref.tif", "located by GCPs"),
            set())


CASES: dict[str, Case] = {
    "points_is_moving": c_points_is_moving, "report_is_reference": c_report_is_reference,
    "matches_hardlinks_moving": c_matches_hardlinks_moving, "tiepoints_symlinks_ref": c_tiepoints_symlinks_reference,
    "geojson_is_moving": c_geojson_is_moving, "quicklook_is_reference": c_quicklook_is_reference,
    "out_hardlinks_moving": c_out_hardlinks_moving, "quicklook_is_a_sidecar": c_quicklook_is_a_sidecar,
    "weights_is_a_sidecar": c_weights_is_a_sidecar,
    "points_exists": _exists(".points"), "tiepoints_exists": _exists(".tiepoints.gpkg"),
    "matches_exists": _exists(".matches.npz"), "report_exists": _exists(".report.json"),
    "geojson_exists": _exists(".tiepoints.geojson", "--geojson"), "raster_exists": _exists(".tif"),
    "raster_exists_no_warp_sidecar": _exists(".points", "--no-warp"), "quicklook_exists": c_quicklook_exists,
    "out_folder_missing": c_out_folder_missing, "stale_temporaries_cleaned": c_stale_temporaries_cleaned,
    "max_shift_0": c_max_shift_zero, "max_shift_2": c_max_shift_two,
    "overlap_1pct": _overlap(1), "overlap_1.5pct": _overlap(1.5), "moving_12px_chip": c_moving_12px_chip,
    "band_2_of_single_band_moving": c_band_2_of_single_band_moving,
    "weights_directory": c_weights_directory, "weights_random_bytes": c_weights_random_bytes,
    "batch_weights_random_bytes": c_batch_weights_random_bytes, "batch_weights_directory": c_batch_weights_directory,
    "batch_list_is_a_run_file": c_batch_list_is_a_run_file,
    "zero_pixel_size": c_zero_pixel_size, "truncated_tiff": c_truncated_tiff,
    "extract_scale_f_1": _extract("--scale-f", "1.0"), "extract_scale_f_0.5": _extract("--scale-f", "0.5"),
    "extract_scale_f_0": _extract("--scale-f", "0"), "extract_tile_size_neg": _extract("--tile-size", "-5"),
    "extract_tile_size_tiny": _extract("--tile-size", "10"), "extract_top_k_neg": _extract("--top-k", "-1"),
    "extract_despeckle_neg": _extract("--despeckle", "-3"),
    "extract_min_scale_above_max": c_extract_min_scale_above_max,
    "extract_duplicate_names": c_extract_duplicate_names, "extract_output_exists": c_extract_output_exists,
    "extract_quicklook_named_like_its_keypoints": c_extract_quicklook_named_like_its_keypoints,
    "extract_out_dir_is_a_file": c_extract_out_dir_is_a_file,
    "apply_out_is_report": c_apply_out_is_report, "apply_out_hardlinks_moving": c_apply_out_hardlinks_moving,
    "apply_out_exists": c_apply_out_exists, "apply_absurd_transform": c_apply_absurd_transform,
    "apply_all_nodata": c_apply_all_nodata, "apply_pixel_space_other_size": c_apply_pixel_space_other_size,
    "moving_crs_without_geotransform": c_moving_crs_without_geotransform,
    "update_georef_gcp_reference": c_update_georef_gcp_reference, "geojson_in_pixel_space": c_geojson_in_pixel_space,
    "resolution_absurd": c_resolution_absurd, "update_georef_plain_moving": c_update_georef_plain_moving,
}


def _files(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): (_sha(p) if p.is_file() else "") for p in sorted(d.rglob("*"))
            if not p.is_symlink()}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(pair, tmp_path, name):
    d = tmp_path
    args, code, needles, may_add = CASES[name](d, pair)
    inputs = {p: _sha(p) for p in (pair["ref"], pair["mov"], pair["report"])}
    before = _files(d)
    res = _cli(*args)
    codes = code if isinstance(code, tuple) else (code,)
    assert res.exit_code in codes, (res.exit_code, res.stderr, res.stdout)
    err = res.stderr
    if res.exit_code != 0:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("sarreg: error: "), err
        assert "Traceback" not in err and "previous exception" not in err
        for n in needles:
            assert n in lines[0], (n, lines[0])
    else:
        assert err.strip() == "", err
    after = _files(d)
    added = set(after) - set(before)
    assert added <= may_add, added - may_add  # nothing left behind (no temporaries, no partial sets)
    for k in set(before) & set(after):  # existing files untouched unless the case expects them rewritten
        if k not in may_add:
            assert before[k] == after[k], k
    assert {p: _sha(p) for p in inputs} == inputs
    if name == "stale_temporaries_cleaned":
        assert not any(str(_dead_pid()) in k for k in after)  # the dead run's leftovers are gone
        assert sorted(k for k in after if k.startswith(".")) == [f".o.tif.{os.getppid()}.warp.tmp.tif"]
        assert _truth_error(json.loads((d / "o.report.json").read_text())["matrix"]) < 0.5
    if name == "max_shift_2":
        rep = json.loads((d / "o.report.json").read_text())
        assert rep["status"] == "low_quality" and "--max-shift" in rep["message"] and not (d / "o.tif").exists()


# --------------------------------------------------------------------------------------- accepted awkward inputs
def _awkward_moving(d: Path, pair, kind: str) -> tuple[Path, Path]:
    rng = np.random.default_rng(11)
    f = pair["_field"]
    ref = pair["ref"]
    mov = _moving_from(f, rng)
    if kind == "cfloat32":
        z = np.sqrt(mov) * np.exp(1j * rng.uniform(0, 2 * np.pi, mov.shape))
        return ref, write_geotiff(d / "m.tif", z.astype(np.complex64), T, CRS, nodata=0.0)
    if kind == "cint16":
        z = np.sqrt(mov) * 300 * np.exp(1j * rng.uniform(0, 2 * np.pi, mov.shape))
        p = d / "m.tif"
        with rasterio.open(p, "w", driver="GTiff", width=N, height=N, count=1, dtype="complex_int16", crs=CRS,
                           transform=T, nodata=0) as ds:
            ds.write(np.round(z).astype(np.complex64)[None])
        return ref, p
    if kind == "uint16":
        return ref, write_geotiff(d / "m.tif", np.clip(np.sqrt(mov) * 400, 0, 65535).astype(np.uint16), T, CRS,
                                  nodata=0)
    if kind == "int16_db":  # dB x 100 in int16 (scaled backscatter products), nodata -32768
        db = np.where(mov > 0, np.round(1000 * np.log10(np.maximum(mov, 1e-6))), -32768).astype(np.int16)
        return ref, write_geotiff(d / "m.tif", db, T, CRS, nodata=-32768)
    if kind == "db":
        with rasterio.open(ref) as ds:
            r = ds.read(1)
        db = np.where(mov > 0, 10 * np.log10(np.maximum(mov, 1e-6)), np.nan).astype(np.float32)
        return (write_geotiff(d / "r_db.tif", 10 * np.log10(r), T, CRS),
                write_geotiff(d / "m.tif", db, T, CRS, nodata=np.nan))
    # linear power with 0.5 % slightly negative pixels (calibration noise): must stay "linear"
    neg = rng.random(mov.shape) < 0.005
    mov = np.where(neg & (mov > 0), -1e-3, mov).astype(np.float32)
    return ref, write_geotiff(d / "m.tif", mov, T, CRS, nodata=0.0)


@pytest.mark.parametrize("kind", ["cfloat32", "cint16", "uint16", "int16_db", "db", "linear_with_negatives"])
def test_awkward_input_registers_within_half_a_pixel(pair, tmp_path, kind):
    ref, mov = _awkward_moving(tmp_path, pair, kind)
    inputs = {p: _sha(p) for p in (ref, mov)}
    out = tmp_path / "out"
    out.mkdir()
    res = _cli(*_reg(ref, mov, out / "o.tif"))
    assert res.exit_code == 0, res.output
    assert res.stderr == ""
    assert {p.name for p in out.iterdir()} == _ok_files(out)
    rep = json.loads((out / "o.report.json").read_text())
    assert _truth_error(rep["matrix"]) < 0.5, rep["matrix"]
    if kind == "linear_with_negatives":
        assert rep["stages"]["relate"]["kind"]["moving"] == "linear"
    if kind == "int16_db":
        assert rep["stages"]["relate"]["kind"]["moving"] == "db"
    with rasterio.open(out / "o.tif") as o, rasterio.open(mov) as m:
        assert o.dtypes[0] == m.dtypes[0]
    assert {p: _sha(p) for p in inputs} == inputs


def test_apply_to_the_same_scene_on_a_20m_grid(pair, tmp_path):
    """The other resolution of the registered scene lands on the reference (composed through its georeferencing)."""
    from rasterio.enums import Resampling

    from sarreg.reapply import target_transform

    with rasterio.open(pair["mov"]) as ds:
        a = ds.read(1, out_shape=(N // 2, N // 2), resampling=Resampling.average)
    m20 = write_geotiff(tmp_path / "m20.tif", a, Affine(20.0, 0, T.c, 0, -20.0, T.f), CRS, nodata=0.0)
    data = json.loads(pair["report"].read_text())
    tr, _ = target_transform(data, pair["report"], m20)
    assert _truth_error(tr.matrix, scale=2.0) < 0.5
    res = _cli("apply", pair["report"], m20, tmp_path / "o.tif")
    assert res.exit_code == 0 and res.stderr == "", res.output
    with rasterio.open(tmp_path / "o.tif") as o, rasterio.open(pair["ref"]) as r:
        assert o.transform == r.transform and (o.width, o.height) == (r.width, r.height)
        assert (o.read_masks(1) > 0).mean() > 0.9  # covers the grid, not a quarter of it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m20.tif", "o.tif"]


def test_overlap_fraction_is_over_the_smaller_whole_footprint(tmp_path):
    """40 % of the scene overlaps: reported as 0.4 (was near 1 with the clipped moving read)."""
    from sarreg.config import RegisterConfig
    from sarreg.pipeline import register

    rng = np.random.default_rng(3)
    f = reflectivity(N, 2 * N, seed=9)
    r = write_geotiff(tmp_path / "r.tif", speckle(f, 4, rng)[:, :N], T, CRS)
    x0 = N - round(N * 0.4)
    m = write_geotiff(tmp_path / "m.tif", speckle(f, 4, rng)[:, x0:x0 + N], T @ Affine.translation(x0, 0), CRS)
    rep = register(r, m, tmp_path / "o.tif", RegisterConfig(features="sift", warp=False))
    assert abs(rep.stages["relate"]["overlap_fraction"] - 0.4) < 0.03


# ------------------------------------------------------------------------------------------------------ signals
@pytest.fixture(scope="module")
def big_pair(tmp_path_factory) -> dict[str, Path]:
    """A pair large enough (1024 px) that the warp lasts long enough to be interrupted."""
    d = tmp_path_factory.mktemp("big")
    n, pad = 1024, 32
    rng = np.random.default_rng(5)
    f = reflectivity(n + 2 * pad, n + 2 * pad, seed=13)
    m = np.array([[1, 0, pad + 2.0], [0, 1, pad + 1.0], [0, 0, 1.0]])
    return {"ref": write_geotiff(d / "ref.tif", speckle(f, 4, rng)[pad:pad + n, pad:pad + n], T, CRS),
            "mov": write_geotiff(d / "mov.tif", np.nan_to_num(warp_image(speckle(f, 4, rng), m, (n, n)), nan=0.0),
                                 T, CRS, nodata=0.0)}


def _signal_while_writing(big_pair, tmp_path: Path, sig: int, preexec_fn: Callable[[], None]
                          ) -> tuple[subprocess.Popen, bytes, Path]:
    """Run ``register`` on ``big_pair`` into ``tmp_path / "out"`` and send ``sig`` once its first (hidden) output
    file appears: the outputs are being written. -> (the ended process, its stderr, the output folder)."""
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "sarreg.cli", "register", "--features", "sift", "--tiles", "1",
           "--resampling", "lanczos", str(big_pair["ref"]), str(big_pair["mov"]), str(out / "o.tif")]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path,
                         preexec_fn=preexec_fn)
    t0 = time.monotonic()
    while p.poll() is None and time.monotonic() - t0 < 60 and not any(out.iterdir()):
        time.sleep(0.002)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    return p, err, out


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_signal_during_the_warp_leaves_nothing(big_pair, tmp_path, sig, code):
    inputs = {p: _sha(p) for p in big_pair.values()}
    p, err, out = _signal_while_writing(big_pair, tmp_path, sig, terminal_signals)
    if p.returncode == 0:
        pytest.skip("the run finished before the signal arrived (machine too fast for this scene size)")
    assert p.returncode == code, err
    lines = err.decode().splitlines()
    assert lines == [f"sarreg: interrupted ({signal.Signals(sig).name})"], lines
    assert list(out.iterdir()) == []
    assert {q: _sha(q) for q in inputs} == inputs
    # and a later run is neither blocked nor polluted
    res = _cli("register", "--features", "sift", "--tiles", "1", big_pair["ref"], big_pair["mov"], out / "o.tif")
    assert res.exit_code == 0, res.output
    assert {q.name for q in out.iterdir()} == _ok_files(out)


def _nohup() -> None:
    """``preexec_fn``: the signals as ``nohup`` leaves them (SIGHUP ignored, the others at their defaults)."""
    terminal_signals()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def test_a_hangup_that_nohup_ignores_stays_ignored(big_pair, tmp_path):
    """``nohup sarreg register ...`` (or batch): the run outlives its terminal. Before, sarreg's own handler replaced
    the ignored SIGHUP and a hangup during the warp ended the run (exit 129, nothing written)."""
    p, err, out = _signal_while_writing(big_pair, tmp_path, signal.SIGHUP, _nohup)
    assert p.returncode == 0, err
    assert {q.name for q in out.iterdir()} == _ok_files(out)


def test_gdal_warnings_of_a_damaged_header_are_for_verbose_only(pair, tmp_path):
    """A TIFF cut inside its header: GDAL warns about every GeoTIFF tag it cannot read (logged by rasterio), then
    the read fails. The user sees the one error line (a separate process: the CLI's own logging set-up); -v shows
    the warnings too."""
    import subprocess
    import sys

    (tmp_path / "head.tif").write_bytes(pair["mov"].read_bytes()[:250])
    args = [sys.executable, "-m", "sarreg.cli", "register", "--features", "sift", str(pair["ref"]),
            str(tmp_path / "head.tif"), str(tmp_path / "o.tif")]
    quiet = subprocess.run(args, capture_output=True, text=True, timeout=120)
    lines = quiet.stderr.strip().splitlines()
    assert quiet.returncode == 1 and len(lines) == 1 and lines[0].startswith("sarreg: error: "), quiet.stderr
    assert "head.tif" in lines[0] and not list(tmp_path.glob("o*"))
    loud = subprocess.run(args[:3] + ["-v"] + args[3:], capture_output=True, text=True, timeout=120)
    assert loud.returncode == 1 and "CPLE_" in loud.stderr, loud.stderr


def test_a_small_image_inside_a_large_one_without_georeference_says_it_is_not_searched_for(tmp_path):
    """A 96 px chip of a 1024 px image, neither georeferenced: MOVING sits at the reference's origin (0.9 % of it) and
    the coarse stage failed with "no overlap on the coarse grid", twice, without saying why or what to do."""
    rng = np.random.default_rng(4)
    refl = reflectivity(1024, 1024, 5)
    write_geotiff(tmp_path / "ref.tif", speckle(refl, 4, rng).astype(np.float32))
    write_geotiff(tmp_path / "chip.tif", speckle(refl[500:596, 400:496], 4, rng).astype(np.float32))
    r = CliRunner().invoke(cli, ["register", str(tmp_path / "ref.tif"), str(tmp_path / "chip.tif"),
                                 str(tmp_path / "out.tif")])
    assert r.exit_code == 3, r.output
    assert "not searched for inside it: crop the reference" in r.output
    assert r.output.count("no overlap on the coarse grid") == 1
    assert not (tmp_path / "out.tif").exists()


def _with_float_alpha(d: Path, pair) -> Path:
    """The moving scene as ``gdalwarp -dstalpha`` leaves float data: band 2 a float32 alpha (0 / 255), which GDAL's
    mask does not follow (only Byte / UInt16 alphas). Where alpha is 0 the data band holds the scene 11 px off (a
    stale neighbour of a mosaic), which must not be matched."""
    rng = np.random.default_rng(13)
    f = pair["_field"]
    alpha = np.full((N, N), 255, np.float32)
    alpha[:, : N // 2] = 0
    data = np.where(alpha > 0, _moving_from(f, rng), _moving_from(f, rng, (SHIFT[0] + 11, SHIFT[1] + 7)))
    return write_geotiff(d / "m_alpha.tif", np.stack([data, alpha]), T, CRS, alpha="YES")


def test_a_float_alpha_band_is_the_validity_not_data(pair, tmp_path):
    """An alpha band of any type masks the data as GDAL's warp reads it: ``info`` names it and counts the masked half
    invalid, ``register`` matches the valid half only (within 0.5 px; it was low_quality), and the alpha band is refused
    as data (the keypoints and correlation ran on it)."""
    mov = _with_float_alpha(tmp_path, pair)
    res = _cli("info", "--json", mov)
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)[0]
    assert d["band"] == 1 and d["alpha_band"] == 2 and abs(d["valid_fraction"] - 0.5) < 0.02, d
    assert "band 2: alpha" in _cli("info", mov).stdout
    out = tmp_path / "out"
    out.mkdir()
    res = _cli("register", pair["ref"], mov, out / "o.tif")  # (the network's keypoints: the masked half, 11 px off,
    assert res.exit_code == 0, res.output                   # made them disagree: low_quality)
    rep = json.loads((out / "o.report.json").read_text())
    assert rep["stages"]["relate"]["band"]["moving"]["alpha"] == 2
    assert _truth_error(rep["matrix"]) < 0.5, rep["matrix"]
    res = _cli(*_reg(pair["ref"], mov, out / "o2.tif", "--moving-band", "2"))
    assert res.exit_code == 1 and "m_alpha.tif: band 2 is the alpha band" in res.stderr, res.stderr
    assert not (out / "o2.tif").exists()


def test_a_reference_with_data_on_a_small_island_registers(pair, tmp_path):
    """Reference data on a 120 px island of the 320 px scene (14 % of its one fine tile; nodata around): the tile
    was skipped (reference data on under a fifth of it) and the registration failed after a right coarse estimate
    ("too few matches"); the share is now of the overlap's part of the tile, as for the moving raster."""
    with rasterio.open(pair["ref"]) as ds:
        a = ds.read(1)
    island = np.full_like(a, np.nan)
    island[100:220, 100:220] = a[100:220, 100:220]
    ref = write_geotiff(tmp_path / "island.tif", island, T, CRS, nodata=float("nan"))
    res = _cli("register", ref, pair["mov"], tmp_path / "o.tif", "--no-warp")
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "o.report.json").read_text())
    assert _truth_error(rep["matrix"]) < 0.5, rep["matrix"]
