"""Reading SAR rasters: dtypes, nodata, band choice and the bad inputs that must fail clearly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from sarreg.config import PreprocessConfig
from sarreg.errors import InputError
from sarreg.io.raster import image_to_unit, open_scene, read_unit
from sarreg.synth import reflectivity, speckle


@pytest.fixture
def intensity(rng: np.random.Generator) -> np.ndarray:
    return speckle(reflectivity(96, 128, seed=1), 4, rng).astype(np.float32)


def test_linear_db_amplitude_complex_agree(geotiff_factory, intensity: np.ndarray) -> None:
    """The same scene stored as linear power, dB, uint16 amplitude or complex gives the same network input."""
    amp = np.sqrt(intensity)
    files = {
        "linear": geotiff_factory(intensity, "lin.tif"),
        "db": geotiff_factory(10 * np.log10(intensity), "db.tif"),
        "amplitude": geotiff_factory(np.round(amp / amp.max() * 60000).clip(1), "amp.tif", dtype="uint16"),
        "complex": geotiff_factory(amp * np.exp(1j * 0.3), "c.tif", dtype="complex64"),
    }
    units = {}
    for kind, path in files.items():
        sc = open_scene(path)
        assert sc.kind == {"db": "db", "amplitude": "amplitude"}.get(kind, "linear")
        units[kind], valid = read_unit(sc)
        assert valid.all() and units[kind].min() >= 0 and units[kind].max() <= 1
    for kind in ("db", "complex"):
        assert np.abs(units[kind] - units["linear"]).max() < 1e-3
    assert np.abs(units["amplitude"] - units["linear"]).max() < 0.02  # uint16 quantisation


def test_nodata_and_nan_are_masked(geotiff_factory, intensity: np.ndarray) -> None:
    a = intensity.copy()
    a[:10] = 0
    a[50, 50] = np.nan
    sc = open_scene(geotiff_factory(a, nodata=0))
    unit, valid = read_unit(sc)
    assert not valid[:10].any() and not valid[50, 50] and valid[20:40].all()
    assert np.isfinite(unit).all()


def test_windowed_decimated_read(geotiff_factory, intensity: np.ndarray) -> None:
    sc = open_scene(geotiff_factory(intensity))
    unit, valid = read_unit(sc, Window(8, 4, 64, 32), (16, 32))
    assert unit.shape == valid.shape == (16, 32)


def test_vv_band_chosen_by_description(tmp_path: Path, intensity: np.ndarray) -> None:
    p = tmp_path / "dual.tif"
    with rasterio.open(p, "w", driver="GTiff", width=128, height=96, count=2, dtype="float32",
                       crs="EPSG:32631", transform=rasterio.transform.from_origin(0, 0, 10, 10)) as d:
        d.write(np.stack([intensity * 0.1, intensity]))
        d.set_band_description(1, "VH")
        d.set_band_description(2, "VV")
    assert open_scene(p).band == 2
    assert open_scene(p, PreprocessConfig(band=1)).band == 1
    with pytest.raises(InputError, match="band 3 out of range"):
        open_scene(p, PreprocessConfig(band=3))


def test_bad_inputs(tmp_path: Path, geotiff_factory) -> None:
    with pytest.raises(InputError, match="file not found"):
        open_scene(tmp_path / "missing.tif")
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        open_scene(tmp_path / "empty.tif")
    (tmp_path / "text.tif").write_text("not a raster at all\n" * 10)
    with pytest.raises(InputError, match="not a readable raster"):
        open_scene(tmp_path / "text.tif")
    with pytest.raises(InputError, match="all pixels are nodata"):
        open_scene(geotiff_factory(np.zeros((32, 32)), "nd.tif", nodata=0))
    with pytest.raises(InputError, match="constant image"):
        open_scene(geotiff_factory(np.full((32, 32), 3.0), "const.tif"))
    with pytest.raises(InputError, match="all pixels are nodata"):
        open_scene(geotiff_factory(np.full((32, 32), np.nan), "nan.tif"))


def test_truncated_file(tmp_path: Path, geotiff_factory, intensity: np.ndarray) -> None:
    p = geotiff_factory(intensity, "full.tif")
    data = p.read_bytes()
    t = tmp_path / "trunc.tif"
    t.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=str(t.name)):
        sc = open_scene(t)
        read_unit(sc)


def test_image_to_unit_matches_file_path(geotiff_factory, intensity: np.ndarray) -> None:
    u_mem, _ = image_to_unit(intensity)
    u_file, _ = read_unit(open_scene(geotiff_factory(intensity)))
    assert np.abs(u_mem - u_file).max() < 1e-5


def test_pixel_centre_map_convention(geotiff_factory, intensity: np.ndarray) -> None:
    sc = open_scene(geotiff_factory(intensity))  # origin (500000, 5000000), 10 m pixels
    m = sc.xy_to_map(np.array([[0.0, 0.0], [2.0, 3.0]]))
    assert np.allclose(m, [[500005.0, 4999995.0], [500025.0, 4999965.0]])
    assert np.allclose(sc.map_to_xy(m), [[0, 0], [2, 3]])


def test_display_images_treat_zero_as_fill(tmp_path: Path, intensity: np.ndarray) -> None:
    import cv2

    img = np.clip(10 * np.log10(intensity) * 8 + 128, 1, 255).astype(np.uint8)
    img[:, :30] = 0  # black border left by a warp
    p = tmp_path / "q.png"
    cv2.imwrite(str(p), img)
    sc = open_scene(p)
    assert sc.kind == "display"
    unit, valid = read_unit(sc)
    assert not valid[:, :30].any() and valid[:, 30:].all()
