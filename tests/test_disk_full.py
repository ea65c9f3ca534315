"""A full disk (issue #10): outputs on a small tmpfs (mounted by the test; skipped where mounting is not permitted).

Whatever runs out of space (the warped raster, a sidecar, a ``.r2d2`` file), the command exits 1 with one line naming
the output and saying "no space left on device (ENOSPC)", leaves no partial or temporary file and does not touch the
files already there (also with --overwrite). ``register`` runs as a subprocess (what a user sees on stderr, up to the
interpreter's exit), ``apply`` and ``extract`` in-process.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_bad_inputs import REPO, _cli, _sha, pair  # noqa: F401  (fixture reused)


@pytest.fixture
def small_disk(tmp_path, request):
    """A factory mounting a tmpfs of the given size on a new folder under tmp_path (unmounted after the test)."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        d = tmp_path / f"disk{len(mounted)}"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True,
                           text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        if subprocess.run(["umount", str(d)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _register(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "sarreg.cli", "register", "--features", "sift",
                           *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def _check_full(err: str, name: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("sarreg: error: ") and name in lines[0], lines
    assert "no space left on device (ENOSPC)" in lines[0], lines


@pytest.mark.parametrize("size,options,failing", [
    ("256k", [], "o.tif"),  # the warp's temporary raster does not fit
    ("360k", ["--format", "GTiff"], "o.tiepoints.gpkg"),  # the raster fits, the tie points do not
])
def test_register_on_a_full_disk(pair, small_disk, size, options, failing):
    d = small_disk(size)
    (d / "keep.txt").write_text("keep")
    (d / "o.tif").write_bytes(b"old raster")
    inputs = {p: _sha(p) for p in (pair["ref"], pair["mov"])}
    res = _register(*options, "--overwrite", pair["ref"], pair["mov"], d / "o.tif")
    assert res.returncode == 1, res.stderr
    _check_full(res.stderr, failing)
    assert sorted(p.name for p in d.iterdir()) == ["keep.txt", "o.tif"]
    assert (d / "keep.txt").read_text() == "keep" and (d / "o.tif").read_bytes() == b"old raster"
    assert {p: _sha(p) for p in inputs} == inputs


def test_apply_and_extract_on_a_full_disk(pair, small_disk):
    d = small_disk("256k")
    (d / "keep.txt").write_text("keep")
    res = _cli("apply", pair["report"], pair["mov"], d / "o.tif")
    assert res.exit_code == 1, res.output
    _check_full(res.stderr, "o.tif")
    res = _cli("extract", "--no-progress", "-o", d, pair["mov"])  # 5000 keypoints: ~2.6 MB of descriptors
    assert res.exit_code == 1, res.output
    _check_full(res.stderr, "mov.tif.r2d2")
    assert [p.name for p in d.iterdir()] == ["keep.txt"] and (d / "keep.txt").read_text() == "keep"


@pytest.mark.parametrize("size", ["7m", "8m"])
def test_a_cog_copy_that_runs_out_of_space_is_an_error(tmp_path, small_disk, size):
    """A 1024² warp fits, its COG copy does not: GDAL's compression threads only print the full disk and the close
    cannot raise (GDAL < 3.7); the truncated COG was renamed into place and register said ok. Now checked block by
    block (``warp.check_complete``): ENOSPC, nothing left, an older file untouched."""
    import numpy as np
    from affine import Affine
    from rasterio.crs import CRS

    from sarreg.errors import OutputError
    from sarreg.grid import Grid, PixelTransform
    from sarreg.synth import reflectivity, speckle, write_geotiff
    from sarreg.warp import warp_to_grid

    t = Affine(10, 0, 500000, 0, -10, 5000000)
    mov = write_geotiff(tmp_path / "mov.tif", speckle(reflectivity(1024, 1024, seed=3), 4, np.random.default_rng(1)),
                        t, "EPSG:32631", nodata=0.0)
    d = small_disk(size)
    (d / "o.tif").write_bytes(b"old raster")
    grid = Grid(1024, 1024, t, CRS.from_epsg(32631).to_wkt())
    with pytest.raises(OutputError, match="no space left on device"):
        warp_to_grid(mov, PixelTransform("shift", np.array([[1, 0, 2.5], [0, 1, -1.5], [0, 0, 1.0]])), grid,
                     d / "o.tif", threads=2, overwrite=True)
    assert [p.name for p in d.iterdir()] == ["o.tif"] and (d / "o.tif").read_bytes() == b"old raster"
