"""``sarreg info``: what register / extract will read from a raster, on real files written here."""
from __future__ import annotations

import json

import numpy as np
from affine import Affine
from click.testing import CliRunner

from sarreg.cli import cli
from sarreg.synth import reflectivity, speckle


def _info(*args: str):
    return CliRunner().invoke(cli, ["info", *args])


def test_info_reports_the_reading_of_each_raster(geotiff_factory, rng) -> None:
    """Kind, nodata and its origin (a fill found behind a tag that marks no pixel, the tag, --nodata), the share of
    valid pixels, the grey range and the georeferencing, as JSON and as text; the options change the reading."""
    p = speckle(reflectivity(160, 200, seed=2), 4, rng).astype(np.float32)
    db = 10 * np.log10(p)
    db[:, :40] = -9999.0
    wrong = geotiff_factory(db, "wrong.tif", nodata=0.0)
    tagged = geotiff_factory(p, "tagged.tif", nodata=0.0)
    plain = geotiff_factory(np.asarray(p), "plain.tif", crs=None)
    r = _info("--json", str(wrong), str(tagged), str(plain))
    assert r.exit_code == 0, r.output
    a, b, c = json.loads(r.stdout)
    assert a["kind"] == "db" and a["nodata"] == {"value": -9999.0, "from": "found", "share": 0.2, "tag": 0.0}
    assert a["valid_fraction"] == 0.8 and a["range"]["unit"] == "dB"
    assert -40 < a["range"]["low"] < a["range"]["high"] < 20
    assert a["crs"] == "EPSG:32631" and a["pixel_size"] == [10.0, 10.0] and a["located_by"] == "geotransform"
    assert b["kind"] == "linear" and b["nodata"] == {"value": 0.0, "from": "file"} and b["valid_fraction"] == 1.0
    assert c["located_by"] is None and "crs" not in c
    r = _info("--json", "--nodata", "none", str(wrong))
    d = json.loads(r.stdout)[0]
    assert d["nodata"] == {"value": None, "from": "option"} and d["valid_fraction"] == 1.0
    r = _info(str(wrong))
    assert r.exit_code == 0 and "nodata: -9999 (found in the data, 20.0 % of the pixels; the file's tag 0 marks " \
                                "almost no pixel); valid: 80.0 %" in r.stdout
    assert "pixel space" in _info(str(plain)).stdout
    db[:20] = 0.0  # the tag 0 now marks holes, and -9999 beside it is found as a second nodata value
    both = geotiff_factory(db, "both.tif", nodata=0.0)
    d = json.loads(_info("--json", str(both)).stdout)[0]
    assert d["nodata"] == {"value": 0.0, "from": "file", "also": {"value": -9999.0, "share": 0.2}}
    assert d["valid_fraction"] == 0.7
    assert "nodata: 0 (the file's tag), and -9999 (found in the data, 20.0 % of the pixels); valid: 70.0 %" \
        in _info(str(both)).stdout


def test_info_refuses_what_register_refuses(tmp_path, geotiff_factory) -> None:
    """A missing file and an all-nodata raster: exit 1 and register's one-line error."""
    r = _info(str(tmp_path / "nope.tif"))
    assert r.exit_code == 1 and r.output.strip() == f"sarreg: error: {tmp_path / 'nope.tif'}: file not found"
    empty = geotiff_factory(np.zeros((64, 64), np.float32), "empty.tif", nodata=0.0)
    r = _info(str(empty))
    assert r.exit_code == 1 and "all pixels are nodata/invalid in band 1" in r.output


def test_info_bounds_hold_all_four_corners_of_a_rotated_grid(geotiff_factory, rng) -> None:
    """A rotated geotransform (30 deg): the bounds are the envelope of the four corners, as gdalinfo lists them;
    integer dB (often dB x 100) is not labelled plain dB."""
    img = (100 * 10 * np.log10(speckle(reflectivity(80, 120, seed=3), 4, rng))).astype(np.int16)
    t = Affine.translation(500000, 4600000) * Affine.rotation(-30) * Affine.scale(10, -10)
    d = json.loads(_info("--json", str(geotiff_factory(img, "rot.tif", transform=t, dtype="int16"))).stdout)[0]
    corners = np.array([t @ c for c in ((0, 0), (120, 0), (0, 80), (120, 80))])
    assert np.allclose(d["bounds"], [*corners.min(0), *corners.max(0)], atol=1e-3), d["bounds"]
    assert d["kind"] == "db" and d["range"]["unit"].startswith("integer dB as stored")


def test_info_reads_a_declared_scale_offset_and_unit(tmp_path, rng) -> None:
    """int16 (dB + 40) x 100 declaring scale 0.01, offset -40, unit dB: read as dB in dB (it printed "read as
    amplitude", 63.69 .. 72.5 dB), and dB x 100 declaring scale 0.01 no longer says "scale unknown"."""
    import rasterio

    db = 10 * np.log10(speckle(reflectivity(160, 200, seed=2), 4, rng))
    paths = []
    for name, raw, offset in (("o.tif", (db + 40) * 100, -40.0), ("s.tif", db * 100, 0.0)):
        with rasterio.open(tmp_path / name, "w", driver="GTiff", width=200, height=160, count=1, dtype="int16",
                           nodata=-32768) as ds:
            ds.write(np.round(raw).astype(np.int16), 1)
            ds.scales, ds.offsets, ds.units = (0.01,), (offset,), ("dB",)
        paths.append(str(tmp_path / name))
    r = _info("--json", *paths)
    assert r.exit_code == 0, r.output
    for d, offset in zip(json.loads(r.stdout), (-40.0, 0.0)):
        assert d["kind"] == "db" and d["range"]["unit"] == "dB" and -40 < d["range"]["low"] < d["range"]["high"] < 20
        assert d["scaling"] == {"scale": 0.01, "offset": offset, "unit": "dB"}
    r = _info(*paths)
    assert "int16 x 0.01 - 40 (unit dB) read as db" in r.stdout and "scale unknown" not in r.stdout, r.stdout


def test_info_reports_zero_of_an_untagged_unsigned_raster_as_register_reads_it(geotiff_factory, rng) -> None:
    """uint8 (display) and uint16 (amplitude) without a nodata tag: register reads 0 as no data (invalid on reading,
    the warp's source nodata), and info says so: "nodata: 0 (found: ...)", not "nodata: none (the file declares
    none)"; the same Scene (``open_scene``) gives both. Read as dB (``--kind db``), 0 is data and none is found."""
    from sarreg.io.raster import open_scene

    db = 10 * np.log10(speckle(reflectivity(160, 200, seed=2), 4, rng))
    u8 = np.clip(5 * db + 128, 1, 255).astype(np.uint8)
    u8[:, :40] = 0
    u16 = np.clip(10 ** (db / 20) * 1000, 1, 65535).astype(np.uint16)
    u16[:32] = 0
    paths = [str(geotiff_factory(u8, "u8.tif", dtype="uint8")), str(geotiff_factory(u16, "u16.tif", dtype="uint16"))]
    r = _info("--json", *paths)
    assert r.exit_code == 0, r.output
    for d, share, dtype in zip(json.loads(r.stdout), (0.2, 0.2), ("uint8", "uint16")):
        assert d["nodata"] == {"value": 0.0, "from": "found", "share": share, "tag": None,
                               "rule": f"0 is no measurement in {dtype} data"}, d["nodata"]
        assert d["valid_fraction"] == 0.8
    text = _info(paths[0]).stdout
    assert "nodata: 0 (found: undeclared fill value, 0 is no measurement in uint8 data; 20.0 % of the pixels; the " \
           "file declares none); valid: 80.0 %" in text, text
    sc = open_scene(paths[0])
    assert sc.nodata == 0.0 and sc.nodata_from == "found" and sc.undeclared.value == 0.0 and sc.warp_nodata == 0.0
    d = json.loads(_info("--json", "--kind", "db", paths[1]).stdout)[0]
    assert d["nodata"] == {"value": None, "from": "file"}
