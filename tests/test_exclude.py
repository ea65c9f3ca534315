"""``--exclude``: polygons (any CRS) and mask rasters (any grid) removed from matching, on real files in tmp_path."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyogrio
import rasterio
import pytest
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.features import rasterize
from rasterio.windows import Window

from sarreg import register
from sarreg.config import PreprocessConfig, RegisterConfig
from sarreg.errors import InputError
from sarreg.io.raster import open_scene, read_unit
from sarreg.synth import reflectivity, speckle, warp_image, write_geotiff

UTM = "EPSG:32631"
REF_T = Affine(10.0, 0, 500000.0, 0, -10.0, 5000000.0)
BLOCK = (300, 60, 470, 230)  # x0, y0, x1, y1 in reference pixel-edge coordinates: the "glacier"


def _map_polygon(x0: float, y0: float, x1: float, y1: float, t: Affine = REF_T) -> shapely.Polygon:
    """A pixel-edge rectangle of a raster as a polygon in its map coordinates."""
    return shapely.Polygon([t @ (x0, y0), t @ (x1, y0), t @ (x1, y1), t @ (x0, y1)])


def _write_polygons(path, geoms, crs: str, geometry_type: str = "Polygon"):
    pyogrio.raw.write(path, geometry=shapely.to_wkb(np.asarray(geoms, dtype=object)), field_data=[], fields=[],
                      crs=crs, driver="GPKG" if str(path).endswith(".gpkg") else "GeoJSON",
                      geometry_type=geometry_type)
    return path


def _scene(tmp_path, shape=(240, 320)):
    a = speckle(reflectivity(*shape, seed=3), 4.0, np.random.default_rng(1))
    return write_geotiff(tmp_path / "scene.tif", a, REF_T, UTM)


def test_polygons_in_another_crs_exclude_the_pixels_under_them(tmp_path):
    path = _scene(tmp_path)
    poly = _map_polygon(40.3, 30.7, 200.2, 150.6)  # pixel-edge box, UTM
    to_ll = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    ll = shapely.transform(shapely.segmentize(poly, 10.0), lambda xy: np.stack(to_ll.transform(*xy.T), axis=1))
    gpkg = _write_polygons(tmp_path / "area.gpkg", [ll], "EPSG:4326")
    truth = rasterize([(poly, 1)], out_shape=(240, 320), transform=REF_T) > 0

    plain = open_scene(path)
    scene = open_scene(path, PreprocessConfig(exclude=(str(gpkg),)))
    _, v0 = read_unit(plain)
    _, v1 = read_unit(scene)
    excluded = v0 & ~v1
    assert (excluded != (truth & v0)).sum() <= 4  # only pixels whose centre sits on the edge may differ
    assert abs(scene.exclude.fraction - truth.mean()) < 0.02
    # a window, and a decimated read of it, see the same area
    _, vw = read_unit(scene, Window(100, 80, 120, 100))
    assert (~vw == truth[80:180, 100:220]).mean() > 0.99
    _, vd = read_unit(scene, None, (120, 160))
    assert abs((~vd).mean() - truth.mean()) < 0.02


def test_a_geojson_without_crs_member_in_projected_numbers_is_in_the_images_crs(tmp_path):
    """OGR reads every GeoJSON as WGS84 when it has no "crs" member; UTM numbers cannot be lon / lat, so the layer
    is taken in the image's CRS (as the README says of a layer without a CRS), not dropped as far away."""
    path = _scene(tmp_path)
    poly = _map_polygon(40.3, 30.7, 200.2, 150.6)
    gj = tmp_path / "area.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(poly)}]}))
    truth = rasterize([(poly, 1)], out_shape=(240, 320), transform=REF_T) > 0
    assert abs(open_scene(path, PreprocessConfig(exclude=(str(gj),))).exclude.fraction - truth.mean()) < 0.02


def test_mask_rasters_on_the_image_grid_and_on_another(tmp_path):
    path = _scene(tmp_path)
    bad = np.zeros((240, 320), np.uint8)
    bad[50:120, 10:90] = 1
    same = write_geotiff(tmp_path / "same.tif", bad, REF_T, UTM, dtype="uint8")
    # the same area on a 20 m grid in another CRS position (UTM 31N, offset origin), 255 = bad, nodata border
    coarse = np.zeros((140, 180), np.uint8)
    t20 = Affine(20.0, 0, REF_T.c - 200.0, 0, -20.0, REF_T.f + 100.0)  # 10 px left, 5 px up of the scene
    coarse[5 + 25:5 + 60, 10 + 5:10 + 45] = 255
    coarse[:, :3] = 99  # nodata of the mask: not excluded
    other = write_geotiff(tmp_path / "other.tif", coarse, t20, UTM, dtype="uint8", nodata=99)
    for mask in (same, other):
        scene = open_scene(path, PreprocessConfig(exclude=(str(mask),)))
        assert bool(scene.exclude.rasters) == (mask == same)
        _, v = read_unit(scene)
        assert (~v == (bad > 0)).mean() > 0.995, mask.name
    # a pixel-space mask (no georeferencing) of the image's size applies as it is
    plain = write_geotiff(tmp_path / "plain.tif", bad, None, None, dtype="uint8")
    _, v = read_unit(open_scene(path, PreprocessConfig(exclude=(str(plain),))))
    assert (~v == (bad > 0)).all()


def test_bad_exclusions_are_one_line_errors_naming_the_file(tmp_path):
    path = _scene(tmp_path)
    with pytest.raises(InputError, match="missing.gpkg: exclusion file not found"):
        open_scene(path, PreprocessConfig(exclude=(str(tmp_path / "missing.gpkg"),)))
    junk = tmp_path / "junk.gpkg"
    junk.write_text("not a file format")
    with pytest.raises(InputError, match="junk.gpkg: unreadable exclusion file"):
        open_scene(path, PreprocessConfig(exclude=(str(junk),)))
    pts = _write_polygons(tmp_path / "pts.geojson", [shapely.Point(REF_T @ (5, 5))], UTM, "Point")
    with pytest.raises(InputError, match=r"pts.geojson: no polygons to exclude \(found point\)"):
        open_scene(path, PreprocessConfig(exclude=(str(pts),)))
    everything = _write_polygons(tmp_path / "all.gpkg", [_map_polygon(-5, -5, 400, 300)], UTM)
    with pytest.raises(InputError, match="scene.tif: every valid pixel is excluded by .*all.gpkg"):
        open_scene(path, PreprocessConfig(exclude=(str(everything),)))
    ramp = np.arange(240 * 320, dtype=np.float32).reshape(240, 320) + 1
    pixel_space = write_geotiff(tmp_path / "plain.tif", ramp, None, None)
    with pytest.raises(InputError, match="need a georeferenced image; .*plain.tif has no georeferencing"):
        open_scene(pixel_space, PreprocessConfig(exclude=(str(everything),)))
    small = write_geotiff(tmp_path / "small.tif", np.ones((10, 10), np.uint8), None, None, dtype="uint8")
    with pytest.raises(InputError, match="small.tif: mask raster is 10x10 without georeferencing"):
        open_scene(path, PreprocessConfig(exclude=(str(small),)))


@pytest.fixture(scope="module")
def glacier(tmp_path_factory):
    """A georeferenced two-date pair (moving 6.5, -3.25 px off) in which a "glacier" moved 24 px more on its own,
    and the glacier's outline as GeoJSON (UTM)."""
    tmp = tmp_path_factory.mktemp("glacier")
    n, pad = 512, 48
    field = reflectivity(n + 2 * pad, n + 2 * pad, seed=11)
    rng = np.random.default_rng(5)
    ref = speckle(field, 4.0, rng)[pad:pad + n, pad:pad + n]
    m = np.array([[1, 0, pad + 6.5], [0, 1, pad - 3.25], [0, 0, 1]], float)  # moving px -> field px
    mov = warp_image(speckle(field, 4.0, rng), m, (n, n))
    moved = warp_image(speckle(field, 4.0, rng), m @ np.array([[1, 0, 24.0], [0, 1, 0], [0, 0, 1]]), (n, n))
    x0, y0, x1, y1 = BLOCK
    mov[y0:y1, x0:x1] = moved[y0:y1, x0:x1]
    return {"ref": write_geotiff(tmp / "ref.tif", ref, REF_T, UTM), "moving": write_geotiff(tmp / "moving.tif", mov,
                                                                                            REF_T, UTM),
            "area": _write_polygons(tmp / "glacier.geojson", [_map_polygon(*BLOCK)], UTM), "n": n}


def _inside(xy: np.ndarray, margin: float = 2.0) -> np.ndarray:
    """Points (pixel centres convention) inside BLOCK shrunk by ``margin`` px."""
    x0, y0, x1, y1 = BLOCK
    return ((xy[:, 0] > x0 - 0.5 + margin) & (xy[:, 0] < x1 - 0.5 - margin)
            & (xy[:, 1] > y0 - 0.5 + margin) & (xy[:, 1] < y1 - 0.5 - margin))


def _tie_points(path) -> np.ndarray:
    meta, _, _, values = pyogrio.raw.read(path, read_geometry=False)
    cols = dict(zip(list(meta["fields"]), values))
    return np.stack([cols["ref_col"], cols["ref_row"]], axis=1)


def test_register_matches_nowhere_in_the_excluded_area(glacier, tmp_path):
    """Excluded, the glacier gives no tie point and the registration is the rest of the scene's."""
    cfg = RegisterConfig(features="sift", keypoints="always", warp=False)
    base = register(glacier["ref"], glacier["moving"], tmp_path / "a.tif", cfg)
    assert _inside(_tie_points(base.outputs["tiepoints"])).any()  # the glacier has matchable texture

    area = glacier["area"]
    rep = register(glacier["ref"], glacier["moving"], tmp_path / "b.tif",
                   cfg.with_(preprocess=PreprocessConfig(exclude=(str(area),))))
    assert rep.status == "ok", rep.message
    assert not _inside(_tie_points(rep.outputs["tiepoints"])).any()
    np.testing.assert_allclose(np.asarray(rep.matrix)[:2, 2], [6.5, -3.25], atol=0.3)
    ex = json.loads(Path(rep.outputs["report"]).read_text())["stages"]["relate"]["excluded"]
    x0, y0, x1, y1 = BLOCK
    frac = (x1 - x0) * (y1 - y0) / glacier["n"] ** 2
    assert ex["files"] == [str(area)] and abs(ex["reference"] - frac) < 0.01 and abs(ex["moving"] - frac) < 0.01


def test_cli_register_and_extract_take_exclude(glacier, tmp_path):
    from click.testing import CliRunner

    from sarreg.cli import cli

    bad = np.zeros((glacier["n"], glacier["n"]), np.uint8)
    bad[:64, :64] = 1
    mask = write_geotiff(tmp_path / "corner.tif", bad, REF_T, UTM, dtype="uint8")
    out = tmp_path / "o.tif"
    res = CliRunner().invoke(cli, ["register", "--features", "sift", "--keypoints", "always", "--no-warp",
                                   "--exclude", str(glacier["area"]), "--exclude", str(mask),
                                   str(glacier["ref"]), str(glacier["moving"]), str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.with_name("o.report.json").read_text())
    assert report["options"]["preprocess"]["exclude"] == [str(glacier["area"]), str(mask)]
    xy = _tie_points(out.with_name("o.tiepoints.gpkg"))
    assert not _inside(xy).any() and not ((xy[:, 0] < 61) & (xy[:, 1] < 61)).any()

    res = CliRunner().invoke(cli, ["extract", "--exclude", str(glacier["area"]), "-o", str(tmp_path),
                                   "--no-progress", str(glacier["ref"])])
    assert res.exit_code == 0, res.output
    kp = np.load(tmp_path / "ref.tif.r2d2")["keypoints"]
    assert len(kp) > 100 and not _inside(kp[:, :2], 0.0).any()


def test_a_part_that_moved_on_its_own_is_flagged_until_excluded(tmp_path):
    """The right 40 % of the moving scene moved 12 px further (a mosaic of two dates, a landslide): no single
    answer holds for the whole scene, so the result is low_quality with the reason; with that part excluded the
    rest registers ok."""
    n, pad = 512, 48
    field = reflectivity(n + 2 * pad, n + 2 * pad, seed=21)
    rng = np.random.default_rng(8)
    ref = speckle(field, 4.0, rng)[pad:pad + n, pad:pad + n]

    def moving(dx: float, dy: float, seed: int) -> np.ndarray:
        m = np.array([[1, 0, pad + dx], [0, 1, pad + dy], [0, 0, 1]], float)
        return warp_image(speckle(field, 4.0, np.random.default_rng(seed)), m, (n, n))

    mov = moving(3.0, -2.0, 9)
    cut = int(0.6 * n)
    mov[:, cut:] = moving(15.0, 8.0, 10)[:, cut:]
    r = write_geotiff(tmp_path / "ref.tif", ref, REF_T, UTM)
    mv = write_geotiff(tmp_path / "moving.tif", mov, REF_T, UTM)
    cfg = RegisterConfig(features="sift", warp=False)
    rep = register(r, mv, tmp_path / "a.tif", cfg)
    assert rep.status == "low_quality" and "part of the scene moves differently" in rep.message, rep.message
    sm = rep.stages["second_motion"]
    assert sm["second"] >= 0.2 * sm["windows"] and 10 < sm["distance_px"] < 20

    # the outline of the part that moved, written beside OUT, is what --exclude takes
    moved = Path(rep.outputs["moved"])
    assert moved.name == "a.moved.gpkg" and ".moved.gpkg" in rep.message
    meta, _, wkb, fields = pyogrio.raw.read(moved)
    outline = shapely.transform(shapely.from_wkb(wkb[0]), lambda xy: np.asarray(~REF_T @ xy.T).T - 0.5)
    assert meta["crs"].endswith("32631") and outline.covers(shapely.box(cut + 40, 40, n - 40, n - 40))
    assert outline.intersection(shapely.box(0, 0, cut - 80, n)).area < 0.02 * n * n  # not the part that stayed
    rep = register(r, mv, tmp_path / "b.tif", cfg.with_(preprocess=PreprocessConfig(exclude=(str(moved),))))
    assert rep.status == "ok", rep.message
    assert "moved" not in rep.outputs
    np.testing.assert_allclose(np.asarray(rep.matrix)[:2, 2], [3.0, -2.0], atol=0.3)
    assert rep.stages["second_motion"]["second"] < 0.2 * rep.stages["second_motion"]["windows"]


def test_large_layers_are_read_near_the_image_only(tmp_path):
    """A layer of many polygons far away (a whole country's water) and one over the image: only the one counts, and
    a layer with none near the image is no error (that scene has no water)."""
    path = _scene(tmp_path)
    far = [_map_polygon(x, y, x + 5, y + 5) for x in range(2000, 20000, 400) for y in range(2000, 20000, 400)]
    near = _map_polygon(20, 20, 60, 80)
    big = _write_polygons(tmp_path / "country.gpkg", far + [near], UTM)
    scene = open_scene(path, PreprocessConfig(exclude=(str(big),)))
    truth = rasterize([(near, 1)], out_shape=(240, 320), transform=REF_T) > 0
    _, v = read_unit(scene)
    assert (~v == truth).all() and len(far) > 2000
    elsewhere = _write_polygons(tmp_path / "elsewhere.gpkg", far, UTM)
    scene = open_scene(path, PreprocessConfig(exclude=(str(elsewhere),)))
    assert scene.exclude.polygons is None and read_unit(scene)[1].all()


def test_polygons_on_an_image_located_by_gcps(tmp_path):
    """A GCP-only raster (a Sentinel-1 GRD measurement's way of being located): the polygons go through its GCPs."""
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS

    a = speckle(reflectivity(240, 320, seed=3), 4.0, np.random.default_rng(1)).astype(np.float32)
    gcps = [GroundControlPoint(row=r, col=c, x=(REF_T @ (c, r))[0], y=(REF_T @ (c, r))[1])
            for r in np.linspace(0, 240, 5) for c in np.linspace(0, 320, 6)]
    path = tmp_path / "gcp.tif"
    with rasterio.open(path, "w", driver="GTiff", width=320, height=240, count=1, dtype="float32") as ds:
        ds.write(a, 1)
        ds.gcps = (gcps, CRS.from_string(UTM))
    poly = _map_polygon(40.3, 30.7, 200.2, 150.6)
    area = _write_polygons(tmp_path / "area.geojson", [poly], UTM)
    scene = open_scene(path, PreprocessConfig(exclude=(str(area),)))
    assert scene.gcps is not None and not scene.georeferenced
    truth = rasterize([(poly, 1)], out_shape=(240, 320), transform=REF_T) > 0
    _, v = read_unit(scene)
    assert (~v != truth).sum() <= 4
