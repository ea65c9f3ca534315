"""Fixtures shared by all sarreg tests.

* ``repo_root``      the checkout's root folder.
* ``shared_dir``     read-only reference data in ../shared (skips the test when it is absent, e.g. on a laptop).
* ``rng``            a seeded NumPy generator (tests are deterministic).
* ``geotiff_factory`` writes a small real GeoTIFF (rasterio/GDAL) from an array into ``tmp_path``:
  UTM zone 31N (EPSG:32631), 10 m pixels, north-up, float32 unless told otherwise.
* ``sarreg_exe``     the ``sarreg`` console script of the environment running the tests.

Matplotlib is forced onto the non-interactive Agg backend (no display in CI). Torch threads are left alone.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from affine import Affine  # noqa: E402
from sarreg.synth import write_geotiff  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"

UTM_CRS = "EPSG:32631"
PIXEL_M = 10.0
ORIGIN = (500_000.0, 5_000_000.0)  # map coordinates (easting, northing) of the top-left CORNER of the raster


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (reference data, read-only); the test is skipped when it is not there."""
    if not SHARED.is_dir():
        pytest.skip(f"reference data folder {SHARED} is absent")
    return SHARED


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261125)


GeoTiffFactory = Callable[..., Path]


@pytest.fixture
def geotiff_factory(tmp_path: Path) -> GeoTiffFactory:
    """Return ``make(array, name="scene.tif", *, transform=None, crs=UTM_CRS, nodata=None, dtype="float32",
    origin=ORIGIN, pixel=PIXEL_M, **profile) -> Path``.

    ``array`` is H x W (one band) or B x H x W. Without ``transform`` the raster is north-up with ``pixel``
    metre pixels whose top-left corner is at ``origin``; pass ``crs=None`` for a file without georeference.
    Extra keywords go to the rasterio profile (e.g. ``compress="deflate"``). Files land in ``tmp_path``.
    """

    def make(array: np.ndarray, name: str = "scene.tif", *, transform: Affine | None = None,
             crs: Any = UTM_CRS, nodata: float | None = None, dtype: str | None = "float32",
             origin: tuple[float, float] = ORIGIN, pixel: float = PIXEL_M, **profile: Any) -> Path:
        if transform is None:
            transform = Affine(pixel, 0.0, origin[0], 0.0, -pixel, origin[1]) if crs is not None \
                else Affine.identity()
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_geotiff(path, array, transform, crs, nodata=nodata, dtype=dtype, **profile)

    return make


@pytest.fixture(scope="session")
def sarreg_exe() -> Path:
    """The ``sarreg`` console script installed next to the running interpreter (``make install`` makes it)."""
    exe = Path(sys.executable).parent / "sarreg"
    if not exe.is_file():
        pytest.fail(f"console script {exe} missing: install the package (make install / pip install -e .)")
    return exe
