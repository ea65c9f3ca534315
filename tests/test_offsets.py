"""``--model local``: a smooth terrain-like distortion recovered by the correlation offsets field."""
from __future__ import annotations

import math

import cv2
import numpy as np
import rasterio
from affine import Affine

from sarreg.config import RegisterConfig
from sarreg.estimate import ThinPlateSpline, apply_matrix
from sarreg.pipeline import register
from sarreg.synth import reflectivity, smooth_noise, speckle, write_geotiff

UTM = "EPSG:32631"
REF_T = Affine(10.0, 0, 500000.0, 0, -10.0, 5000000.0)
N, PAD = 512, 48
SHIFT = np.array([3.2, -2.1])


def _bump(xy: np.ndarray) -> np.ndarray:
    """Smooth local displacement (px) of up to ~2.5 px, as terrain-induced offsets (moving px -> extra ref px)."""
    x, y = xy[..., 0] / N, xy[..., 1] / N
    return np.stack([2.5 * np.sin(math.pi * x) * np.sin(math.pi * y), 1.5 * np.sin(2 * math.pi * x) * y], -1)


def _truth(u: np.ndarray) -> np.ndarray:
    """Moving px -> reference px."""
    return u + SHIFT + _bump(u)


def _pair(tmp, truth=_truth):
    """Reference and moving GeoTIFFs of one speckled scene, the moving one resampled through ``truth``."""
    field = reflectivity(N + 2 * PAD, N + 2 * PAD, seed=17)
    rng = np.random.default_rng(2)
    ref = speckle(field, 4.0, rng)[PAD:PAD + N, PAD:PAD + N]
    u = np.stack(np.meshgrid(np.arange(N, dtype=np.float64), np.arange(N, dtype=np.float64)), -1)
    m = (truth(u) + PAD).astype(np.float32)
    mov = cv2.remap(speckle(field, 4.0, rng), m[..., 0], m[..., 1], cv2.INTER_LANCZOS4, borderValue=0)
    r = write_geotiff(tmp / "ref.tif", ref, REF_T, UTM)
    mv = write_geotiff(tmp / "moving.tif", np.maximum(mov, 0), REF_T, UTM, nodata=0.0)
    return r, mv


def test_local_model_recovers_smooth_distortion(tmp_path):
    r, m = _pair(tmp_path)
    cfg = RegisterConfig(features="sift", model="local", grid_spacing=32, tiepoints=False, matches_npz=False)
    out = tmp_path / "o.tif"
    rep = register(r, m, out, cfg)
    assert rep.model == "local" and rep.status == "ok", rep.message
    # the best global affine is > 1 px off somewhere: the field is needed
    g = np.stack(np.meshgrid(np.linspace(40, N - 40, 12), np.linspace(40, N - 40, 12)), -1).reshape(-1, 2)
    glob_err = np.hypot(*(apply_matrix(np.array(rep.matrix), g) - _truth(g)).T)
    assert glob_err.max() > 1.0
    # field nodes read back from OUT.offsets.tif (its own georeferencing) vs the truth
    T = np.array(rep.matrix)
    with rasterio.open(tmp_path / "o.offsets.tif") as ds:
        assert ds.count == 3 and ds.crs.to_epsg() == 32631 and ds.dtypes[0] == "float32"
        dx, dy, q = ds.read()
        rows, cols = np.mgrid[:ds.height, :ds.width]
        xs, ys = rasterio.transform.xy(ds.transform, rows.ravel(), cols.ravel())  # node centres, map coords
    inv = ~REF_T
    px = np.array([inv * (x, y) for x, y in zip(xs, ys)]) - 0.5  # reference pixel centres of the nodes
    d = np.c_[dx.ravel(), dy.ravel()]
    ok = np.isfinite(d).all(1) & (px > 40).all(1) & (px < N - 40).all(1)
    assert ok.sum() > 50
    # the content T puts at p comes from u = T^-1(p) and truly lies at truth(u)
    u = apply_matrix(np.linalg.inv(T), px[ok])
    true_d = _truth(u) - px[ok]
    resid = np.hypot(*(d[ok] - true_d).T)
    assert np.median(resid) <= 0.3, np.median(resid)
    assert rep.stages["offsets"]["known"] > 50 and rep.stages["offsets"]["max_px"] > 0.5
    # the warped raster is on the reference grid
    with rasterio.open(out) as o:
        assert o.transform == REF_T and (o.width, o.height) == (N, N)
    assert rep.outputs["offsets"].endswith("o.offsets.tif")


def test_local_field_rejects_a_wrong_global_model(tmp_path):
    """Unrelated moving scene under a forced local model: the field must not make it ok."""
    rng = np.random.default_rng(4)
    a = speckle(reflectivity(320, 320, seed=41), 4.0, rng)
    b = speckle(reflectivity(320, 320, seed=42), 4.0, rng)
    r = write_geotiff(tmp_path / "ref.tif", a, REF_T, UTM)
    m = write_geotiff(tmp_path / "moving.tif", b, REF_T, UTM)
    rep = register(r, m, tmp_path / "o.tif", RegisterConfig(features="sift", model="local", warp=False))
    assert rep.status != "ok"


def test_field_gain_tells_a_distortion_from_noise():
    """Leave-one-out: a smooth field with measurement noise predicts its nodes well (gain well under 1); noise alone
    (speckle, temporal change: deviations with no spatial structure) does not (gain about 1 or more)."""
    from sarreg.offsets import FIELD_GAIN, field_gain

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:16, :16] / 16.0
    smooth = np.stack([2.5 * np.sin(math.pi * xx) * np.sin(math.pi * yy), 1.5 * np.sin(2 * math.pi * xx) * yy], -1)
    noise = rng.normal(0.0, 0.3, smooth.shape)
    assert field_gain(smooth + noise) < 0.5
    assert field_gain(noise) > FIELD_GAIN
    holes = noise.copy()
    holes[rng.random(holes.shape[:2]) < 0.5] = np.nan  # half the nodes unmeasured: still judged on the rest
    assert field_gain(holes) > FIELD_GAIN
    assert field_gain(np.full((2, 3, 2), 0.1)) is None  # too few nodes to predict


def test_local_field_not_kept_where_it_follows_noise(tmp_path):
    """A pure shift under strong temporal change: the field's nodes scatter with no distortion behind them, so the
    global model is kept exactly (the field followed that noise 2.3 px off at places on a seasonal pair where the
    global model was within 0.04 px)."""
    from sarreg.synth import temporal_change

    field = reflectivity(N + 2 * PAD, N + 2 * PAD, seed=23)
    rng = np.random.default_rng(4)
    ref = speckle(field, 1.0, rng)[PAD:PAD + N, PAD:PAD + N]
    u = np.stack(np.meshgrid(np.arange(N, dtype=np.float32), np.arange(N, dtype=np.float32)), -1) + SHIFT + PAD
    changed = temporal_change(field, rng, 0.5)
    mov = cv2.remap(speckle(changed, 1.0, rng), u[..., 0].astype(np.float32), u[..., 1].astype(np.float32),
                    cv2.INTER_LANCZOS4, borderValue=0)
    r = write_geotiff(tmp_path / "ref.tif", ref, REF_T, UTM)
    m = write_geotiff(tmp_path / "moving.tif", np.maximum(mov, 0), REF_T, UTM, nodata=0.0)
    cfg = RegisterConfig(model="local", grid_spacing=32, tiepoints=False, matches_npz=False)
    rep = register(r, m, tmp_path / "o.tif", cfg)
    st = rep.stages["offsets"]
    assert st["field_gain"] is not None and st["field_gain"] > 0.8, st
    assert st["field"].startswith("not kept"), st
    assert rep.transform["model"] != "tps" and rep.transform.get("tiepoints") is None, rep.transform["model"]
    g = np.stack(np.meshgrid(np.linspace(40, N - 40, 8), np.linspace(40, N - 40, 8)), -1).reshape(-1, 2)
    assert np.hypot(*(apply_matrix(np.array(rep.matrix), g) - (g + SHIFT)).T).max() < 1.0


def test_local_field_coarser_than_the_distortion_is_not_ok(tmp_path):
    """Height-dependent offsets that vary over ~40 px (layover over rough relief): a 32 px grid of 64 px windows
    cannot follow them; the local result is pixels off between nodes and must say so (it was ok)."""
    h = smooth_noise(np.random.default_rng(5), N + 1, N + 1, 40.0)

    def truth(u: np.ndarray) -> np.ndarray:
        hx = cv2.remap(h, u[..., 0].astype(np.float32), u[..., 1].astype(np.float32), cv2.INTER_LINEAR)
        return u + SHIFT + np.stack([3.0 * hx, np.zeros_like(hx)], -1)

    r, mv = _pair(tmp_path, truth)
    cfg = RegisterConfig(features="sift", model="local", grid_spacing=32, tiepoints=False, matches_npz=False,
                         warp=False)
    rep = register(r, mv, tmp_path / "o.tif", cfg)
    tp = np.array(rep.transform["tiepoints"])
    g = np.stack(np.meshgrid(np.linspace(40, N - 40, 20), np.linspace(40, N - 40, 20)), -1).reshape(-1, 2)
    err = np.hypot(*(ThinPlateSpline(tp[:, :2], tp[:, 2:]).apply(g) - truth(g[None])[0]).T)
    assert err.max() > 2.0  # the mapping the warp uses is pixels off at places
    assert rep.stages["offsets"]["field_loo_px"] > 0.5
    assert rep.status == "low_quality" and "predicts its own nodes only to" in rep.message, rep.message


def _strip_georef(src, dst, gcps: bool = False, identity: bool = False):
    """A copy of ``src`` without geotransform: pixel space, or (``gcps``) located by 5 x 5 GCPs of its grid, or
    (``identity``) storing the identity geotransform as rasterio writes for a plain array."""
    from osgeo import gdal, osr

    gdal.UseExceptions()
    s = gdal.Open(str(src))
    d = gdal.GetDriverByName("GTiff").Create(str(dst), s.RasterXSize, s.RasterYSize, 1, gdal.GDT_Float32)
    d.GetRasterBand(1).WriteArray(s.GetRasterBand(1).ReadAsArray())
    if s.GetRasterBand(1).GetNoDataValue() is not None:
        d.GetRasterBand(1).SetNoDataValue(s.GetRasterBand(1).GetNoDataValue())
    if gcps:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(32631)
        d.SetGCPs([gdal.GCP(*(REF_T @ (p, q)), 0, p, q) for p in range(0, N + 1, N // 4)
                   for q in range(0, N + 1, N // 4)], srs.ExportToWkt())
    if identity:
        d.SetGeoTransform((0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    d = None
    return dst


def test_offsets_field_lies_where_qgis_shows_the_reference(tmp_path):
    """OUT.offsets.tif of a reference without geotransform is placed as QGIS shows such a raster (y = -row, pixel
    edges, like the output and the tie points; it was drawn mirrored at y = +row, off the scene); of a GCP-only
    reference, through its GCPs (it was in pixel space); of a reference that stores the identity geotransform, by
    it (y = +row, as GDAL and QGIS place that reference; it was at y = -row). Each node's dx, dy matches the truth
    at the reference pixel its own georeferencing names."""
    from osgeo import gdal

    r, m = _pair(tmp_path)
    cfg = RegisterConfig(features="sift", model="local", grid_spacing=32, tiepoints=False, matches_npz=False,
                         points=False)
    for kind in ("pixel", "gcps", "identity"):
        ref = _strip_georef(r, tmp_path / f"ref_{kind}.tif", gcps=kind == "gcps", identity=kind == "identity")
        mov = m if kind == "gcps" else _strip_georef(m, tmp_path / f"mov_{kind}.tif", identity=kind == "identity")
        rep = register(ref, mov, tmp_path / f"o_{kind}.tif", cfg)
        assert rep.model == "local" and rep.status == "ok", rep.message
        ds = gdal.Open(str(tmp_path / f"o_{kind}.offsets.tif"))
        dx, dy = ds.GetRasterBand(1).ReadAsArray(), ds.GetRasterBand(2).ReadAsArray()
        rows, cols = np.mgrid[:ds.RasterYSize, :ds.RasterXSize]
        tr = gdal.Transformer(ds, None, [])
        xy = np.array(tr.TransformPoints(0, np.c_[cols.ravel() + 0.5, rows.ravel() + 0.5].tolist())[0])[:, :2]
        if kind == "pixel":
            px = np.c_[xy[:, 0], -xy[:, 1]] - 0.5
        elif kind == "identity":
            assert ds.GetGeoTransform()[5] > 0
            px = xy - 0.5
        else:
            assert ds.GetGCPCount() == 25 and "32631" in ds.GetGCPProjection()
            inv = ~REF_T
            px = np.array([inv @ (x, y) for x, y in xy]) - 0.5
        d = np.c_[dx.ravel(), dy.ravel()]
        ok = np.isfinite(d).all(1) & (px > 40).all(1) & (px < N - 40).all(1)
        assert ok.sum() > 50, (kind, ok.sum())
        u = apply_matrix(np.linalg.inv(np.array(rep.matrix)), px[ok])
        assert np.median(np.hypot(*(d[ok] - (_truth(u) - px[ok])).T)) <= 0.3, kind
