"""Reads served from a scene's overview (the statistics read kept by ``open_scene``) instead of the file."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from rasterio.windows import Window

from sarreg.errors import InputError
from sarreg.io.raster import STATS_MAX_SIDE, open_scene, read_unit
from sarreg.synth import reflectivity, speckle


def _scene(rows: int, cols: int, looks: int = 16) -> np.ndarray:
    a = speckle(reflectivity(rows, cols, seed=5), looks, np.random.default_rng(2)).astype(np.float32)
    a[:, : cols // 9] = 0  # nodata border
    return a


def test_a_large_scene_coarse_reads_come_from_the_overview(geotiff_factory) -> None:
    """Above STATS_MAX_SIDE the statistics read is decimated; coarser reads (the relate stage's coarse images and
    footprint) are its area-weighted means, close to GDAL's own decimated read, and touch no file."""
    p = geotiff_factory(_scene(1200, 1700), "big.tif", nodata=0, compress="deflate", tiled=True)
    scene = open_scene(p)
    assert scene.overview is not None and max(scene.overview.vals.shape) == STATS_MAX_SIDE
    direct = replace(scene, overview=None)
    for window, shape in ((None, (452, 640)), (Window(150, 100, 1400, 1000), (300, 420)), (None, (64, 90))):
        u, v = read_unit(scene, window, shape)
        du, dv = read_unit(direct, window, shape)
        assert u.shape == du.shape == shape
        assert (v == dv).mean() > 0.99
        both = v & dv
        assert np.abs(u[both] - du[both]).mean() < 0.02
        assert np.corrcoef(u[both], du[both])[0, 1] > 0.97
    p.unlink()  # served from memory: no file needed, but a full-resolution read is
    read_unit(scene, None, (452, 640))
    with pytest.raises(InputError):
        read_unit(scene, Window(0, 0, 256, 256))


def test_a_small_scene_is_served_only_as_read(geotiff_factory) -> None:
    """A scene read whole at open: full-resolution windows come from memory, equal to the file's; decimated reads
    still go to the file (GDAL's arithmetic, bit for bit)."""
    a = _scene(300, 420, looks=4)
    p = geotiff_factory(a, "small.tif", nodata=0)
    scene = open_scene(p)
    assert scene.overview.vals.shape == a.shape
    win = Window(37, 11, 200, 150)
    u, v = read_unit(scene, win)
    du, dv = read_unit(replace(scene, overview=None), win)
    assert np.array_equal(u, du) and np.array_equal(v, dv)
    u[:] = 0  # the caller's copy, not the overview
    assert np.array_equal(read_unit(scene, win)[0], du)
    p.unlink()
    read_unit(scene, win)
    with pytest.raises(InputError):
        read_unit(scene, None, (150, 210))


@pytest.mark.parametrize("dtype", ["uint16", "complex64"])
def test_large_integer_and_complex_scenes_keep_their_values(geotiff_factory, dtype: str) -> None:
    """Integer data stays integer (rounded means), complex data takes the nearest overview cell (no phase mixing):
    served coarse reads agree with the file's."""
    a = np.sqrt(_scene(1100, 1300))
    arr = (np.round(a / a.max() * 60000).astype(np.uint16) if dtype == "uint16"
           else (a * np.exp(1j * np.random.default_rng(1).uniform(0, 6.28, a.shape))).astype(np.complex64))
    scene = open_scene(geotiff_factory(arr, f"{dtype}.tif", dtype=dtype, nodata=0, tiled=True))
    assert scene.overview.vals.dtype == arr.dtype
    served = scene.overview.serve(None, (400, 470), dtype == "complex64")
    assert served is not None and served[0].dtype == arr.dtype
    u, v = read_unit(scene, None, (400, 470))
    du, dv = read_unit(replace(scene, overview=None), None, (400, 470))
    both = v & dv
    assert (v == dv).mean() > 0.99 and np.corrcoef(u[both], du[both])[0, 1] > 0.9


def test_a_file_in_one_huge_compressed_strip_gets_a_warning(geotiff_factory, monkeypatch, caplog) -> None:
    """Every read of a one-strip DEFLATE file decodes the whole strip (16384²: 3.8 GB peak): said once, with the
    way out; a tiled file of the same data is not."""
    import logging

    import sarreg.io.raster as raster

    monkeypatch.setattr(raster, "BIG_BLOCK_MB", 1)  # (the real limit, 256 MB, needs an 8k² file)
    a = _scene(700, 800)
    strip = geotiff_factory(a, "strip.tif", nodata=0, compress="deflate", tiled=False, blockysize=700)
    tiled = geotiff_factory(a, "tiled.tif", nodata=0, compress="deflate", tiled=True)
    with caplog.at_level(logging.WARNING, logger="sarreg.io.raster"):
        open_scene(tiled)
        assert not [r for r in caplog.records if "compressed blocks" in r.getMessage()]
        open_scene(strip)
    msgs = [r.getMessage() for r in caplog.records if "compressed blocks" in r.getMessage()]
    assert len(msgs) == 1 and "strip.tif" in msgs[0] and "gdal_translate -co TILED=YES" in msgs[0], msgs
