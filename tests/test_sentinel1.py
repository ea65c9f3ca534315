"""Sentinel-1 products and GCP georeferencing, on real files built here in tmp_path (no mocks).

A synthetic ground (``sarreg.synth``) in UTM 31N is seen by a map-projected reference GeoTIFF and by Sentinel-1-like
GRD measurements: uint16 DN amplitude rasters without a geotransform, whose pixels sit on the ground through a known
rotated affine and whose GCPs (EPSG:4326, a geolocation grid) are off by a known ground offset. The product folder
is laid out as GDAL's SENTINEL1 driver reads it (manifest.safe with measurement / annotation / calibration data
objects, annotation XML with the geolocation grid), VV and VH, as a folder and zipped.
"""
from __future__ import annotations

import json
import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from pyproj import Transformer

from sarreg import register
from sarreg.cli import cli
from sarreg.config import RegisterConfig
from sarreg.errors import InputError
from sarreg.estimate import apply_matrix
from sarreg.io.source import resolve_input
from sarreg.synth import reflectivity, speckle, warp_image, write_geotiff

SIFT = RegisterConfig(features="sift")
FIELD_N = 640
REF_OFF, REF_N = 128, 384          # reference = field pixels [128, 512) in both directions
PIX = 10.0
E0, N0 = 500_000.0 - REF_OFF * PIX, 5_000_000.0 + REF_OFF * PIX   # top-left corner of the field (UTM 31N)
REF_T = Affine(PIX, 0, E0 + REF_OFF * PIX, 0, -PIX, N0 - REF_OFF * PIX)
GRD_SHAPE = (360, 400)             # rows (azimuth lines), cols (range samples)
NAME = "S1A_IW_GRDH_1SDV_20240513T054012_20240513T054037_053843_068B7C_1A2B"
TO_LL = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)


def grd_to_field(deg: float, t: tuple[float, float]) -> np.ndarray:
    """GRD pixel -> field pixel: a rotation (descending pass, heading off north) about the GRD centre, moved to
    field position ``t``."""
    a = math.radians(deg)
    c = np.array([GRD_SHAPE[1] / 2, GRD_SHAPE[0] / 2])
    R = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    o = np.asarray(t) - R @ c
    return np.array([[R[0, 0], R[0, 1], o[0]], [R[1, 0], R[1, 1], o[1]], [0, 0, 1]])


def field_to_lonlat(f: np.ndarray) -> np.ndarray:
    e, n = E0 + (f[:, 0] + 0.5) * PIX, N0 - (f[:, 1] + 0.5) * PIX
    return np.c_[TO_LL.transform(e, n)]


def geolocation(A: np.ndarray, offset: tuple[float, float], nx: int = 10, ny: int = 8) -> list[tuple]:
    """Geolocation grid: (pixel, line, lon, lat) on GDAL's pixel-edge grid; the ground is off by ``offset`` field
    px."""
    g = np.stack(np.meshgrid(np.linspace(0, GRD_SHAPE[1] - 1, nx), np.linspace(0, GRD_SHAPE[0] - 1, ny)),
                 -1).reshape(-1, 2)
    ll = field_to_lonlat(apply_matrix(A, g) + np.asarray(offset))
    return [(float(p[0] + 0.5), float(p[1] + 0.5), float(q[0]), float(q[1])) for p, q in zip(g, ll)]


def write_measurement(path: Path, dn: np.ndarray, gcps: list[tuple]) -> Path:
    """A GRD measurement TIFF: uint16, tiled, GCPs in EPSG:4326 and no geotransform (as ESA writes them)."""
    from osgeo import gdal, osr

    gdal.UseExceptions()
    ds = gdal.GetDriverByName("GTiff").Create(str(path), dn.shape[1], dn.shape[0], 1, gdal.GDT_UInt16,
                                              ["TILED=YES", "BLOCKXSIZE=128", "BLOCKYSIZE=128"])
    ds.GetRasterBand(1).WriteArray(dn)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    ds.SetGCPs([gdal.GCP(x, y, 0.0, p, ln) for p, ln, x, y in gcps], srs.ExportToWkt())
    ds = None
    return path


def grd_dn(field: np.ndarray, A: np.ndarray, rng: np.random.Generator, gain_db: float = 0.0) -> np.ndarray:
    power = warp_image(speckle(field, 6.0, rng), A, GRD_SHAPE) * 10 ** (gain_db / 10)
    return np.clip(np.nan_to_num(np.sqrt(power) * 400.0, nan=0.0), 1, 65535).astype(np.uint16)


def _annotation(pol: str, gcps: list[tuple]) -> str:
    pts = "".join(f"<geolocationGridPoint><azimuthTime>2024-05-13T05:40:12</azimuthTime><slantRangeTime>0.005"
                  f"</slantRangeTime><line>{ln}</line><pixel>{p}</pixel><latitude>{y}</latitude><longitude>{x}"
                  f"</longitude><height>0</height><incidenceAngle>35</incidenceAngle><elevationAngle>30"
                  f"</elevationAngle></geolocationGridPoint>" for p, ln, x, y in gcps)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<product><adsHeader><missionId>S1A</missionId><productType>GRD'
            f"</productType><polarisation>{pol}</polarisation><mode>IW</mode><swath>IW</swath><startTime>"
            "2024-05-13T05:40:12.000000</startTime><stopTime>2024-05-13T05:40:37.000000</stopTime><absoluteOrbitNumber>"
            "53843</absoluteOrbitNumber><missionDataTakeId>428924</missionDataTakeId><imageNumber>001</imageNumber>"
            "</adsHeader><imageAnnotation><imageInformation><productFirstLineUtcTime>2024-05-13T05:40:12"
            "</productFirstLineUtcTime><rangePixelSpacing>1.0e+01</rangePixelSpacing><azimuthPixelSpacing>1.0e+01"
            f"</azimuthPixelSpacing><numberOfSamples>{GRD_SHAPE[1]}</numberOfSamples><numberOfLines>{GRD_SHAPE[0]}"
            "</numberOfLines><outputPixels>16 bit Unsigned Integer</outputPixels></imageInformation>"
            "<processingInformation><ellipsoidName>WGS84</ellipsoidName><ellipsoidSemiMajorAxis>6378137"
            "</ellipsoidSemiMajorAxis><ellipsoidSemiMinorAxis>6356752.314245179</ellipsoidSemiMinorAxis>"
            "</processingInformation></imageAnnotation><geolocationGrid>"
            f'<geolocationGridPointList count="{len(gcps)}">{pts}</geolocationGridPointList></geolocationGrid>'
            "</product>\n")


def _calibration(pol: str) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<calibration><adsHeader><missionId>S1A</missionId>'
            f"<polarisation>{pol}</polarisation><startTime>2024-05-13T05:40:12.000000</startTime><stopTime>"
            "2024-05-13T05:40:37.000000</stopTime></adsHeader><calibrationVectorList count=\"0\"/></calibration>\n")


def _manifest(files: dict[str, dict[str, str]]) -> str:
    """manifest.safe: per polarisation a Measurement Data Unit pointing at its measurement, with dmdIDs of its
    annotation and calibration (metadata objects -> data objects), as GDAL's SENTINEL1 driver follows them."""
    units, meta, objs = [], [], []
    for pol, f in files.items():
        p = pol.lower()
        units.append(f'<xfdu:contentUnit unitType="Measurement Data Unit" repID="s1Level1MeasurementSchema" '
                     f'dmdID="product_{p} calibration_{p}"><dataObjectPointer dataObjectID="measurement_{p}"/>'
                     "</xfdu:contentUnit>")
        for kind in ("product", "calibration"):
            meta.append(f'<metadataObject ID="{kind}_{p}" classification="DESCRIPTION" category="DMD">'
                        f'<dataObjectPointer dataObjectID="{kind}_{p}_data"/></metadataObject>')
        for oid, rep, href in ((f"measurement_{p}", "s1Level1MeasurementSchema", f["measurement"]),
                               (f"product_{p}_data", "s1Level1ProductSchema", f["annotation"]),
                               (f"calibration_{p}_data", "s1Level1CalibrationSchema", f["calibration"])):
            objs.append(f'<dataObject ID="{oid}" repID="{rep}"><byteStream mimeType="application/octet-stream">'
                        f'<fileLocation locatorType="URL" href="./{href}"/></byteStream></dataObject>')
    meta += [f'<metadataObject ID="{k}" classification="DESCRIPTION" category="DMD"><metadataWrap><xmlData>{v}'
             "</xmlData></metadataWrap></metadataObject>" for k, v in (
                 ("platform", "<safe:platform><safe:familyName>SENTINEL-1</safe:familyName><safe:number>A"
                              "</safe:number><safe:instrument><safe:familyName>SAR</safe:familyName>"
                              "</safe:instrument></safe:platform>"),
                 ("acquisitionPeriod", "<safe:acquisitionPeriod><safe:startTime>2024-05-13T05:40:12</safe:startTime>"
                                       "<safe:stopTime>2024-05-13T05:40:37</safe:stopTime></safe:acquisitionPeriod>"),
                 ("processing", '<safe:processing name="SLC Post Processing"/>'),
                 ("measurementOrbitReference", "<safe:orbitReference><safe:orbitNumber>53843</safe:orbitNumber>"
                                               "<safe:relativeOrbitNumber>37</safe:relativeOrbitNumber>"
                                               "<safe:extension><s1:orbitProperties xmlns:s1=\"http://www.esa.int/"
                                               "safe/sentinel-1.0/sentinel-1\"><s1:pass>DESCENDING</s1:pass>"
                                               "</s1:orbitProperties></safe:extension></safe:orbitReference>"))]
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1" '
            'xmlns:safe="http://www.esa.int/safe/sentinel-1.0" version="esa/safe/sentinel-1.0/sentinel-1/sar/level-1">'
            '<informationPackageMap><xfdu:contentUnit unitType="SAFE Archive Information Package">'
            + "".join(units) + "</xfdu:contentUnit></informationPackageMap><metadataSection>" + "".join(meta)
            + "</metadataSection><dataObjectSection>" + "".join(objs) + "</dataObjectSection></xfdu:XFDU>\n")


def make_product(folder: Path, layers: dict[str, np.ndarray], gcps: list[tuple], name: str = NAME) -> Path:
    """A Sentinel-1 GRD SAFE folder with one measurement per polarisation (``layers``: pol -> DN array)."""
    safe = folder / f"{name}.SAFE"
    for sub in ("measurement", "annotation/calibration"):
        (safe / sub).mkdir(parents=True, exist_ok=True)
    files = {}
    for i, (pol, dn) in enumerate(layers.items(), start=1):
        stem = f"s1a-iw-grd-{pol.lower()}-20240513t054012-20240513t054037-053843-068b7c-00{i}"
        f = {"measurement": f"measurement/{stem}.tiff", "annotation": f"annotation/{stem}.xml",
             "calibration": f"annotation/calibration/calibration-{stem}.xml"}
        write_measurement(safe / f["measurement"], dn, gcps)
        (safe / f["annotation"]).write_text(_annotation(pol, gcps))
        (safe / f["calibration"]).write_text(_calibration(pol))
        files[pol] = f
    (safe / "manifest.safe").write_text(_manifest(files))
    return safe


def zip_product(safe: Path) -> Path:
    z = safe.parent / (safe.stem + ".zip")
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(safe.rglob("*")):
            zf.write(f, f.relative_to(safe.parent).as_posix())
    return z


# ------------------------------------------------------------------------------------------------ scenes
GROUND_OFFSET = (2.6, -1.8)     # field px the GCPs of the first GRD are off by (26 m east, 18 m north)
A1 = grd_to_field(-12.0, (320.0, 318.0))


@pytest.fixture(scope="module")
def field() -> np.ndarray:
    return reflectivity(FIELD_N, FIELD_N, seed=11)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, field) -> dict[str, Path]:
    """ref.tif (UTM, map-projected), the product (folder and zip; VV and VH) and a second GRD of the same track."""
    d = tmp_path_factory.mktemp("s1")
    rng = np.random.default_rng(5)
    ref = speckle(field, 6.0, rng)[REF_OFF:REF_OFF + REF_N, REF_OFF:REF_OFF + REF_N]
    out = {"ref": write_geotiff(d / "ref.tif", ref, REF_T, "EPSG:32631")}
    gcps = geolocation(A1, GROUND_OFFSET)
    safe = make_product(d, {"VV": grd_dn(field, A1, rng), "VH": grd_dn(field, A1, rng, -6.0)}, gcps)
    out.update(safe=safe, zip=zip_product(safe))
    return out


def truth_to_ref(A: np.ndarray) -> np.ndarray:
    """GRD px -> reference px of the ground truth."""
    return np.array([[1, 0, -REF_OFF], [0, 1, -REF_OFF], [0, 0, 1]]) @ A


def grid_error(matrix, truth, shape=GRD_SHAPE, inside=None) -> tuple[float, float]:
    """Mean and max distance (px) between two moving -> reference maps over a grid of the moving raster (only
    points that land inside ``inside`` = (w, h) of the reference, when given)."""
    g = np.stack(np.meshgrid(np.linspace(0, shape[1] - 1, 12), np.linspace(0, shape[0] - 1, 12)), -1).reshape(-1, 2)
    t = apply_matrix(truth, g)
    if inside is not None:
        ok = (t[:, 0] >= 0) & (t[:, 1] >= 0) & (t[:, 0] <= inside[0] - 1) & (t[:, 1] <= inside[1] - 1)
        g, t = g[ok], t[ok]
    d = np.hypot(*(apply_matrix(np.asarray(matrix), g) - t).T)
    return float(d.mean()), float(d.max())


# ------------------------------------------------------------------------------------------------ tests
def test_gdal_safe_driver_reads_the_fixture(scenes):
    """The fixture is a product GDAL's SENTINEL1 driver opens: subdatasets per swath + polarisation, the
    measurement's size and the annotation's geolocation grid as GCPs (what sarreg reads from the TIFF)."""
    from osgeo import gdal

    gdal.UseExceptions()
    ds = gdal.Open(str(scenes["safe"] / "manifest.safe"))
    subs = [v for k, v in ds.GetMetadata("SUBDATASETS").items() if k.endswith("_NAME")]
    # SENTINEL1_DS:<manifest>:IW_VV, or SENTINEL1_CALIB:UNCALIB:<manifest>:IW_VV:AMPLITUDE (GDAL >= 3.3)
    names = {pol: [s for s in subs if re.search(f":IW_{pol}(:AMPLITUDE)?$", s)] for pol in ("VV", "VH")}
    assert names["VV"] and names["VH"], subs
    assert ds.GetMetadataItem("MISSION_ID") == "S1A" and ds.GetMetadataItem("PRODUCT_TYPE") == "GRD"
    vv = gdal.Open(names["VV"][0])
    tif = gdal.Open(str(resolve_input(scenes["safe"], pol="VV")))
    assert (vv.RasterXSize, vv.RasterYSize) == (tif.RasterXSize, tif.RasterYSize) == GRD_SHAPE[::-1]
    g1, g2 = vv.GetGCPs(), tif.GetGCPs()
    assert len(g1) == len(g2) == 80
    assert np.allclose([(g.GCPPixel, g.GCPLine, g.GCPX, g.GCPY) for g in g1],
                       [(g.GCPPixel, g.GCPLine, g.GCPX, g.GCPY) for g in g2], atol=1e-9)
    assert np.array_equal(vv.ReadAsArray(), tif.ReadAsArray())


@pytest.mark.parametrize("form", ["safe", "manifest", "zip", "zip_safe", "zip_manifest"])
def test_product_forms_resolve_to_the_measurement(scenes, form):
    src = {"safe": scenes["safe"], "manifest": scenes["safe"] / "manifest.safe", "zip": scenes["zip"],
           "zip_safe": scenes["zip"] / f"{NAME}.SAFE",  # the product named inside its zip
           "zip_manifest": scenes["zip"] / f"{NAME}.SAFE" / "manifest.safe"}[form]
    from sarreg.io.safe import product_info

    vv, vh = resolve_input(src), resolve_input(src, pol="vh")
    assert str(vv).endswith("-vv-20240513t054012-20240513t054037-053843-068b7c-001.tiff")
    assert str(vh).endswith("-vh-20240513t054012-20240513t054037-053843-068b7c-002.tiff")
    assert resolve_input(src, pol="VV") == vv and resolve_input(vv) == vv  # default VV; idempotent
    if form.startswith("zip"):
        assert str(vv).startswith(f"/vsizip/{scenes['zip']}/{NAME}.SAFE/measurement/")
    info = product_info(vh)
    product = scenes["zip"] if form.startswith("zip") else src
    assert info["polarisation"] == "VH" and info["product_type"] == "GRD" and info["product"] == str(product)
    with rasterio.open(vv) as ds:
        assert ds.gcps[0] and ds.gcps[1].to_epsg() == 4326 and ds.dtypes[0] == "uint16"


def test_grd_onto_map_reference(scenes, tmp_path):
    """GCP -> map: the zipped product (VV) onto the UTM reference; the known GCP error is recovered."""
    out = tmp_path / "vv.tif"
    rep = register(scenes["ref"], resolve_input(scenes["zip"], pol="VV"), out, SIFT)
    assert rep.status == "ok", rep.message
    truth = truth_to_ref(A1)
    mean, worst = grid_error(rep.matrix, truth, inside=(REF_N, REF_N))
    prior_err = grid_error(rep.stages["relate"]["prior"], truth, inside=(REF_N, REF_N))[0]
    print(f"GCP->map: error mean {mean:.3f} px, max {worst:.3f} px (prior {prior_err:.2f} px)")
    assert prior_err > 2.5   # the GCPs are off by ~3.2 px ...
    assert mean < 0.2 and worst < 0.4  # ... and the registration recovers it
    relate = rep.stages["relate"]
    assert relate["located_by"] == {"reference": "geotransform", "moving": "gcps (80, GCP_TPS)"}
    assert relate["sentinel1"]["moving"]["polarisation"] == "VV"
    with rasterio.open(out) as o:
        assert (o.width, o.height, o.transform) == (REF_N, REF_N, REF_T) and o.crs.to_epsg() == 32631
        assert o.dtypes[0] == "uint16"


def test_map_onto_grd_reference(scenes, tmp_path):
    """map -> GCP: the map-projected raster onto the GRD (the reverse pair); the output is on the GRD's grid."""
    out = tmp_path / "utm_on_grd.tif"
    rep = register(resolve_input(scenes["safe"], pol="VV"), scenes["ref"], out, SIFT)
    assert rep.status == "ok", rep.message
    truth = np.linalg.inv(truth_to_ref(A1))
    mean, worst = grid_error(rep.matrix, truth, shape=(REF_N, REF_N), inside=GRD_SHAPE[::-1])
    print(f"map->GCP: error mean {mean:.3f} px, max {worst:.3f} px")
    assert mean < 0.2 and worst < 0.4
    assert rep.stages["relate"]["located_by"]["reference"].startswith("gcps (80")
    with rasterio.open(out) as o:
        assert (o.height, o.width) == GRD_SHAPE and len(o.gcps[0]) == 80 and o.dtypes[0] == "float32"


def test_gcp_to_gcp_same_track(scenes, tmp_path, field):
    """GCP <-> GCP: a second GRD of the same track (shifted frame, its own GCP error) onto the first; the output is
    on the first GRD's pixel grid and carries its GCPs."""
    rng = np.random.default_rng(9)
    A2 = grd_to_field(-12.3, (338.0, 296.0))
    dn2, gcps2 = grd_dn(field, A2, rng), geolocation(A2, (-1.4, 2.2))
    mov = write_measurement(tmp_path / "grd2.tif", dn2, gcps2)
    ref = resolve_input(scenes["safe"], pol="VV")
    out = tmp_path / "out.tif"
    rep = register(ref, mov, out, SIFT)
    assert rep.status == "ok", rep.message
    truth = np.linalg.inv(A1) @ A2
    mean, worst = grid_error(rep.matrix, truth, inside=GRD_SHAPE[::-1])
    prior_err = grid_error(rep.stages["relate"]["prior"], truth, inside=GRD_SHAPE[::-1])[0]
    print(f"GCP->GCP: error mean {mean:.3f} px, max {worst:.3f} px (prior {prior_err:.2f} px)")
    assert prior_err > 3 and mean < 0.2 and worst < 0.4
    with rasterio.open(out) as o, rasterio.open(ref) as r:
        assert (o.width, o.height) == (r.width, r.height) and o.transform == Affine.identity()
        assert o.gcps[1].to_epsg() == 4326 and len(o.gcps[0]) == 80
        assert [(g.col, g.row, g.x, g.y) for g in o.gcps[0]] == [(g.col, g.row, g.x, g.y) for g in r.gcps[0]]
    assert rep.reference_grid["gcps"] and rep.reference_grid["crs_wkt"] is None
    # the QGIS .points: the GCPs' CRS, and the moving raster's source points on the ground through its GCPs (QGIS
    # opens a GCP-only raster warped by them), near the reference points, not in pixels
    head, _, *rows = Path(rep.outputs["points"]).read_text().splitlines()
    assert head.startswith("#CRS: ") and "WGS 84" in head
    pts = np.array([[float(v) for v in row.split(",")[:4]] for row in rows])
    assert np.abs(pts[:, 2:] - pts[:, :2]).max() < 0.01, pts[:3]
    # apply: a crop of the second GRD (another size, its own GCPs) is related through the GCPs and lands where the
    # registered raster did
    crop = write_measurement(tmp_path / "crop.tif", dn2[40:300, 30:350],
                             [(p - 30, ln - 40, x, y) for p, ln, x, y in gcps2])
    r = CliRunner().invoke(cli, ["apply", str(out.with_name("out.report.json")), str(crop),
                                 str(tmp_path / "crop_out.tif")])
    assert r.exit_code == 0, r.output
    with rasterio.open(out) as a, rasterio.open(tmp_path / "crop_out.tif") as b:
        assert len(b.gcps[0]) == 80 and (a.width, a.height) == (b.width, b.height)
        va, vb = a.read(1).astype(float), b.read(1).astype(float)
    both = (va > 0) & (vb > 0)
    rel = np.abs(va[both] - vb[both]) / va[both]
    print(f"apply on a crop: {both.mean():.2f} of the grid, median relative difference {np.median(rel):.4f}")
    assert both.mean() > 0.3 and np.median(rel) < 0.01


def test_cli_register_product_then_apply_other_pol(scenes, tmp_path):
    """sarreg register PRODUCT.zip --pol VV, then sarreg apply with --pol VH: VH follows VV."""
    run = CliRunner()
    out = tmp_path / "vv.tif"
    r = run.invoke(cli, ["register", str(scenes["ref"]), str(scenes["zip"]), str(out), "--pol", "VV",
                         "--features", "sift"])
    assert r.exit_code == 0, r.output
    report = out.with_name("vv.report.json")
    data = json.loads(report.read_text())
    assert data["stages"]["relate"]["sentinel1"]["moving"]["product"] == str(scenes["zip"])
    vh = tmp_path / "vh.tif"
    r = run.invoke(cli, ["apply", str(report), str(scenes["zip"]), str(vh), "--pol", "VH"])
    assert r.exit_code == 0, r.output
    with rasterio.open(out) as a, rasterio.open(vh) as b:
        assert (a.width, a.height, a.transform, a.crs) == (b.width, b.height, b.transform, b.crs)
        va, vb = a.read(1).astype(float), b.read(1).astype(float)
    both = (va > 0) & (vb > 0)
    assert both.mean() > 0.5
    la, lb = np.log(va[both]), np.log(vb[both])
    assert np.corrcoef(la, lb)[0, 1] > 0.5  # same ground, same place (independent speckle, -6 dB)
    assert abs(np.median(lb - la) * 20 / math.log(10) + 6.0) < 1.0


def _one_error_line(r, name: str) -> None:
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("sarreg: error: ") and name in lines[0], r.output


def test_errors_missing_pol_corrupt_zip_not_a_safe(scenes, tmp_path):
    run = CliRunner()
    out = tmp_path / "o.tif"
    r = run.invoke(cli, ["register", str(scenes["ref"]), str(scenes["zip"]), str(out), "--pol", "HV"])
    _one_error_line(r, str(scenes["zip"]))
    assert "no HV measurement (polarisations: VV, VH)" in r.output
    bad = tmp_path / "S1A_broken.zip"
    bad.write_bytes(scenes["zip"].read_bytes()[:5000])
    _one_error_line(run.invoke(cli, ["register", str(scenes["ref"]), str(bad), str(out)]), str(bad))
    empty = tmp_path / "S1B_empty.SAFE"
    empty.mkdir()
    _one_error_line(run.invoke(cli, ["register", str(scenes["ref"]), str(empty), str(out)]), str(empty))
    notxml = tmp_path / "S1C.SAFE"
    notxml.mkdir()
    (notxml / "manifest.safe").write_text("this is not XML")
    _one_error_line(run.invoke(cli, ["register", str(scenes["ref"]), str(notxml), str(out)]), str(notxml))
    s2 = tmp_path / "S2A_MSIL1C.SAFE"
    s2.mkdir()
    (s2 / "manifest.safe").write_text('<?xml version="1.0"?><xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1">'
                                      "<dataObjectSection/></xfdu:XFDU>")
    r = run.invoke(cli, ["register", str(scenes["ref"]), str(s2), str(out)])
    _one_error_line(r, str(s2))
    assert "not a Sentinel-1 product" in r.output
    report = tmp_path / "x.report.json"
    r = run.invoke(cli, ["apply", str(report), str(scenes["safe"]), str(out), "--pol", "HH"])
    _one_error_line(r, str(scenes["safe"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([bad.name, empty.name, notxml.name, s2.name])
    with pytest.raises(InputError, match="unknown polarisation"):
        resolve_input(scenes["safe"], pol="XX")


def test_batch_scene_list_resolves_products(scenes):
    """sarreg batch: a product among the scenes is its --pol measurement (resolved before any cluster starts)."""
    from sarreg.cli.batch import _scene_list

    got = _scene_list((str(scenes["zip"]), str(scenes["ref"])), None, pol="VH")
    assert got[0] == resolve_input(scenes["zip"], pol="VH") and got[1] == scenes["ref"]
    with pytest.raises(InputError, match="no HH measurement"):
        _scene_list((str(scenes["safe"]),), None, pol="HH")


def test_zipped_product_behind_a_url(scenes, server, tmp_path):
    """``https://.../S1A_....zip``: the product's manifest and chosen measurement are read from the remote zip
    (range requests); the result is the one the local zip gives."""
    import shutil

    from sarreg.io.safe import product_info

    base, srv = server
    shutil.copy(scenes["zip"], srv.root / scenes["zip"].name)
    url = f"{base}/{scenes['zip'].name}"
    vh = resolve_input(url, pol="VH")
    assert str(vh).startswith(f"/vsizip//vsicurl/{url}/{NAME}.SAFE/measurement/") and str(vh).endswith("-002.tiff")
    assert product_info(vh)["polarisation"] == "VH" and product_info(vh)["product"] == url
    with rasterio.open(resolve_input(url)) as a, rasterio.open(resolve_input(scenes["zip"])) as b:
        assert np.array_equal(a.read(1), b.read(1)) and len(a.gcps[0]) == len(b.gcps[0])
    r = CliRunner().invoke(cli, ["register", str(scenes["ref"]), url, str(tmp_path / "o.tif"), "--pol", "HV"])
    _one_error_line(r, url)
    assert "no HV measurement" in r.output


def test_files_of_an_input_product_are_refused_as_outputs(scenes, tmp_path):
    """OUT = the product's manifest.safe (the product given by its manifest), or its VH measurement while its VV
    is registered: refused as an input (one line, even with --overwrite), the product's files untouched."""
    import shutil

    safe = Path(shutil.copytree(scenes["safe"], tmp_path / scenes["safe"].name))
    vh = resolve_input(safe, pol="VH")
    before = {f: f.read_bytes() for f in safe.rglob("*") if f.is_file()}
    run = CliRunner()
    for moving, out in ((safe / "manifest.safe", safe / "manifest.safe"), (safe, vh),
                        (safe / "manifest.safe", safe / "annotation" / "new.tif")):
        r = run.invoke(cli, ["register", "--overwrite", "--features", "sift", str(scenes["ref"]), str(moving),
                             str(out)])
        _one_error_line(r, str(out))
        assert f"inside input product {safe}" in r.output
    assert {f: f.read_bytes() for f in safe.rglob("*") if f.is_file()} == before
    r = run.invoke(cli, ["apply", "--overwrite", str(tmp_path / "x.report.json"), str(safe), str(vh), "--pol", "VV"])
    _one_error_line(r, str(vh))
    assert "inside input product" in r.output


def _product_item(path: Path, href: str) -> Path:
    """A STAC Item whose one data asset is a zipped Sentinel-1 product."""
    doc = {"type": "Feature", "stac_version": "1.0.0", "id": "S1PROD", "geometry": None, "links": [],
           "properties": {"datetime": "2024-05-13T05:40:12Z"},
           "assets": {"product": {"href": href, "type": "application/zip", "roles": ["data"]}}}
    path.write_text(json.dumps(doc))
    return path


def test_pol_of_a_product_behind_an_item_or_a_url(scenes, server, tmp_path):
    """--pol reaches a zipped product that a STAC Item's asset names (register / info / batch) and a product URL
    in a batch scene list; a polarisation the product or item lacks is one error line."""
    import shutil

    from sarreg.cli.batch import _scene_list

    item = _product_item(tmp_path / "s1.json", str(scenes["zip"]))
    vh = resolve_input(scenes["zip"], pol="VH")
    assert resolve_input(item, pol="VH") == vh and str(resolve_input(item)).endswith("-001.tiff")
    r = CliRunner().invoke(cli, ["info", "--pol", "VH", str(item)])
    assert r.exit_code == 0 and r.output.splitlines()[0] == str(vh), r.output
    assert _scene_list((str(item),), None, pol="VH") == [vh]
    r = CliRunner().invoke(cli, ["register", "--pol", "HV", str(scenes["ref"]), str(item), str(tmp_path / "o.tif")])
    _one_error_line(r, str(item))
    assert "no HV measurement" in r.output
    base, srv = server
    shutil.copy(scenes["zip"], srv.root / scenes["zip"].name)
    url = f"{base}/{scenes['zip'].name}"
    got = _scene_list((url,), None, pol="VH")
    assert len(got) == 1 and str(got[0]).endswith("-vh-20240513t054012-20240513t054037-053843-068b7c-002.tiff")
    with pytest.raises(InputError, match="no HV measurement"):
        _scene_list((url,), None, pol="HV")
    # the product named inside the remote zip (X.zip/X.SAFE, X.zip/X.SAFE/manifest.safe): --pol picks as for the zip
    # (it opened GDAL's SENTINEL1 dataset of both polarisations and registered VV as VH)
    safe = scenes["zip"].name[:-4] + ".SAFE"
    for inner in (safe, f"{safe}/manifest.safe"):
        assert resolve_input(f"{url}/{inner}", pol="VH") == resolve_input(url, pol="VH")
        with pytest.raises(InputError, match="no HV measurement"):
            resolve_input(f"{url}/{inner}", pol="HV")
    # an item with per-polarisation raster assets: --pol picks the asset; one it lacks is refused (not VV instead)
    tif = str(vh)
    doc = json.loads(item.read_text())
    doc["assets"] = {"vv": {"href": tif, "type": "image/tiff", "roles": ["data"]},
                     "vh": {"href": str(scenes["ref"]), "type": "image/tiff", "roles": ["data"]}}
    item.write_text(json.dumps(doc))
    assert resolve_input(item, pol="VH") == scenes["ref"] and str(resolve_input(item, pol="vv")) == tif
    with pytest.raises(InputError, match="has no HH asset"):
        resolve_input(item, pol="HH")


def test_zipped_product_behind_a_signed_url(scenes, server):
    """``https://.../X.zip?sig=...`` (a presigned URL): read by range requests as without the query (GDAL's
    ``/vsizip/{...}`` form), not members appended to the query until 'zip archive holds no raster'."""
    import shutil

    from sarreg.io.safe import product_info
    from sarreg.io.source import input_name

    base, srv = server
    shutil.copy(scenes["zip"], srv.root / "signed.zip")
    url = f"{base}/signed.zip?sig=abc&exp=1"
    before = srv.served["signed.zip"]
    vh = resolve_input(url, pol="VH")
    assert str(vh).startswith(f"/vsizip/{{/vsicurl/{url}}}/{NAME}.SAFE/measurement/") and str(vh).endswith("-002.tiff")
    assert product_info(vh)["product"] == url and input_name(vh).endswith("-002.tiff")
    with rasterio.open(vh) as a, rasterio.open(resolve_input(scenes["zip"], pol="VH")) as b:
        assert np.array_equal(a.read(1), b.read(1))
    assert srv.served["signed.zip"] - before < scenes["zip"].stat().st_size  # ranges, not the whole zip


def test_the_names_an_error_suggests_open(scenes, server, tmp_path):
    """A product with two VV swaths (an SLC) and a zip of two rasters say "name one as NAME": that name opens, for
    a folder, a local zip and a zip behind a URL (it left out the zip's X.SAFE/ folder; a URL's zip member was not
    read inside the zip)."""
    import shutil

    from sarreg.errors import InputError

    base, srv = server
    slc = tmp_path / f"{NAME}.SAFE"
    shutil.copytree(scenes["safe"], slc)
    man = (slc / "manifest.safe").read_text()
    for f in sorted((slc / "measurement").glob("*.tiff")):  # the VH file becomes a second VV swath
        new = f.name.replace("-iw-grd-vh-", "-iw2-grd-vv-").replace("-iw-grd-vv-", "-iw1-grd-vv-")
        f.rename(f.parent / new)
        man = man.replace(f.name, new)
    (slc / "manifest.safe").write_text(man)
    z = zip_product(slc)
    shutil.copy(z, srv.root / f"slc-{z.name}")  # (another URL than the GRD zip's: GDAL caches what it read)
    multi = srv.root / "multi.zip"
    with zipfile.ZipFile(multi, "w", zipfile.ZIP_STORED) as zf:
        zf.write(scenes["ref"], "a.tif")
        zf.write(scenes["ref"], "b.tif")
    for given in (slc, z, f"{base}/slc-{z.name}", f"{base}/multi.zip"):
        with pytest.raises(InputError, match="name one as ") as e:
            resolve_input(given)
        hint = str(e.value).rsplit("name one as ", 1)[1]
        with rasterio.open(resolve_input(hint)) as ds:
            assert ds.width > 0, hint


def test_extract_of_a_product_folder_writes_beside_it(scenes, tmp_path):
    """``extract X.SAFE`` without -o: the keypoints go beside the product (its own folders are input: the default
    folder, measurement/, was refused as "inside input product", so the command never worked without -o)."""
    import shutil

    safe = Path(shutil.copytree(scenes["safe"], tmp_path / scenes["safe"].name))
    r = CliRunner().invoke(cli, ["extract", "--no-progress", "--top-k", "50", "--tile-size", "0", "--pol", "VH",
                                 str(safe)])
    assert r.exit_code == 0, r.output
    assert [p.name for p in tmp_path.glob("*.r2d2")] == [resolve_input(safe, pol="VH").name + ".r2d2"]
