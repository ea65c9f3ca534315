"""Tiled extraction: same keypoints as whole-image, pixel convention, nodata borders, R2D2 npz layout."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sarreg.config import ExtractConfig
from sarreg.extract import Features, extract_array, extract_scene, pyramid_scales
from sarreg.io.raster import open_scene, read_unit
from sarreg.match import match_mnn
from sarreg.model.weights import random_model
from sarreg.synth import reflectivity, speckle

SINGLE = ExtractConfig(min_scale=1.0, max_size=0, rel_thr=0.0, rep_thr=0.0, top_k=0, border=0)


@pytest.fixture(scope="module")
def model():
    """A random net with its heads scaled up so that repeatability varies (a plain random net is nearly flat,
    which makes 3x3 maxima float-rounding ties)."""

    m = random_model("Fast_Quad_L2Net_ConfCFS", 1, seed=0)
    with torch.no_grad():
        m.net.sal.weight.mul_(300.0)
        m.net.clf.weight.mul_(300.0)
    return m


@pytest.fixture
def scene_array(rng: np.random.Generator) -> np.ndarray:
    return speckle(reflectivity(300, 340, seed=2), 4, rng).astype(np.float32)


def _key(f: Features) -> set[tuple[float, float]]:
    return {(round(float(x), 3), round(float(y), 3)) for x, y in f.keypoints[:, :2]}


def test_tiled_equals_whole_image(geotiff_factory, scene_array, model) -> None:
    """Halo >= receptive field: tiles reproduce the whole-image detections exactly (no duplicates, no losses)."""
    sc = open_scene(geotiff_factory(scene_array))
    whole = extract_scene(sc, model, SINGLE.with_(tile_size=0))
    tiled = extract_scene(sc, model, SINGLE.with_(tile_size=96, halo=64))
    assert len(whole) > 100
    assert len(tiled) == len(_key(tiled))  # no duplicates from overlaps
    assert _key(tiled) == _key(whole)
    wi = {k: i for i, k in enumerate(map(tuple, np.round(whole.keypoints[:, :2], 3)))}
    j = [wi[tuple(k)] for k in np.round(tiled.keypoints[:, :2], 3)]
    assert np.abs(whole.descriptors[j] - tiled.descriptors).max() < 1e-4


def test_scene_and_array_paths_agree(geotiff_factory, scene_array, model) -> None:
    sc = open_scene(geotiff_factory(scene_array))
    unit, valid = read_unit(sc)
    a = extract_array(model, unit, valid, SINGLE)
    b = extract_scene(sc, model, SINGLE)
    assert _key(a) == _key(b)


def test_integer_shift_moves_keypoints(model, scene_array) -> None:
    """x = column, y = row: cropping 8 columns and 6 rows shifts keypoints by exactly (-8, -6).

    (Even offsets: the Fast network's 2x2 pooling makes it equivariant to even shifts only.)"""
    from sarreg.io.raster import image_to_unit

    unit, _ = image_to_unit(scene_array)
    a = extract_array(model, unit, None, SINGLE.with_(border=40))
    b = extract_array(model, unit[6:, 8:], None, SINGLE.with_(border=33))
    shifted = {(round(x - 8, 3), round(y - 6, 3)) for x, y in a.keypoints[:, :2] if x >= 48 and y >= 46}
    common = shifted & _key(b)
    assert len(common) > 0.95 * len(shifted) > 20


def test_multiscale_keypoints_map_to_full_resolution(model, scene_array) -> None:
    from sarreg.io.raster import image_to_unit

    unit, _ = image_to_unit(scene_array)
    cfg = ExtractConfig(min_size=64, rel_thr=0, rep_thr=0, top_k=3000)
    f = extract_array(model, unit, None, cfg)
    assert len(pyramid_scales(340, 300, cfg)) > 3
    assert len(np.unique(f.keypoints[:, 2])) > 3
    assert f.keypoints[:, 0].min() >= -0.5 and f.keypoints[:, 0].max() <= 339.5
    assert f.keypoints[:, 1].min() >= -0.5 and f.keypoints[:, 1].max() <= 299.5
    assert np.all(np.diff(f.scores) >= 0)  # ascending, as R2D2 writes them
    assert np.allclose(np.linalg.norm(f.descriptors, axis=1), 1, atol=1e-4)


def test_no_keypoints_on_or_next_to_nodata(geotiff_factory, scene_array, model) -> None:
    a = scene_array.copy()
    a[:, :120] = 0
    sc = open_scene(geotiff_factory(a, nodata=0))
    f = extract_scene(sc, model, SINGLE.with_(border=6))
    assert len(f) > 50 and f.keypoints[:, 0].min() >= 120 + 6


def test_tiny_image_still_runs(model) -> None:
    f = extract_array(model, np.random.default_rng(0).random((40, 50), dtype=np.float32), None,
                      ExtractConfig(rel_thr=0, rep_thr=0))
    assert len(f) > 0 and f.image_size == (50, 40)


def test_npz_layout_is_r2d2_compatible(tmp_path: Path, model, scene_array) -> None:
    from sarreg.io.raster import image_to_unit

    f = extract_array(model, image_to_unit(scene_array)[0], None, SINGLE.with_(top_k=100))
    p = f.save_npz(tmp_path / "img.png.r2d2")
    with np.load(p) as z:
        assert set(z.files) == {"imsize", "keypoints", "descriptors", "scores"}
        assert z["keypoints"].dtype == np.float32 and z["keypoints"].shape == (100, 3)
        assert z["descriptors"].dtype == np.float32 and z["descriptors"].shape == (100, 128)
        assert z["scores"].dtype == np.float32 and z["scores"].shape == (100,)
        assert z["imsize"].tolist() == [340, 300]
    assert not list(tmp_path.glob(".*tmp"))


def test_mnn_matching() -> None:
    rng = np.random.default_rng(0)
    d = rng.normal(size=(50, 128)).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    perm = rng.permutation(50)
    m = match_mnn(d, d[perm], ratio=0.9, block=7)
    assert len(m) == 50 and np.array_equal(perm[m.idx2], m.idx1)
    assert len(match_mnn(d[:0], d)) == 0


def test_bf16_keypoints_match_fp32(tmp_path, rng):
    """--precision bf16 (autocast of the trunk): nearly the same keypoints and descriptors as fp32 with the shipped
    model, yet not bit-identical where the CPU computes bfloat16 natively (the reduced precision is really used);
    the CLI option runs."""
    from click.testing import CliRunner

    from sarreg.cli import cli
    from sarreg.io.raster import image_to_unit
    from sarreg.model.weights import load_model
    from sarreg.synth import write_geotiff

    try:
        shipped = load_model(None, "cpu")
    except Exception as e:  # noqa: BLE001 - a checkout without models/
        pytest.skip(f"no shipped model ({e})")
    img = speckle(reflectivity(256, 256, seed=5), 4, rng).astype(np.float32)
    unit, valid = image_to_unit(img, kind="linear")
    cfg = ExtractConfig(top_k=500, min_size=128, device="cpu", backend="torch")
    a = extract_array(shipped, unit, valid, cfg)
    b = extract_array(shipped, unit, valid, cfg.with_(precision="bf16"))
    assert len(a) == len(b) == 500
    d = np.linalg.norm(b.keypoints[:, None, :2] - a.keypoints[None, :, :2], axis=2)
    j, dist = d.argmin(axis=1), d.min(axis=1)
    assert (dist <= 1.0).mean() >= 0.95, (dist <= 1.0).mean()
    same = dist <= 0.01
    cos = np.sum(a.descriptors[j[same]] * b.descriptors[same], axis=1)
    assert cos.min() > 0.999, cos.min()
    from sarreg.network import native_bf16

    # bfloat16 really used where the CPU has it; where it is emulated (~8x slower) it falls back to float32
    assert np.array_equal(a.descriptors[j[same]], b.descriptors[same]) == (not native_bf16("cpu"))
    tif = write_geotiff(tmp_path / "s.tif", img)
    res = CliRunner().invoke(cli, ["extract", "--no-progress", "--precision", "bf16", "--top-k", "200", "-o",
                                   str(tmp_path), str(tif)])
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "s.tif.r2d2") as z:
        assert len(z["keypoints"]) == 200


def _tiles(sizes, seed=0):
    from sarreg.io.raster import image_to_unit
    from sarreg.synth import reflectivity, speckle

    rng = np.random.default_rng(seed)
    out = [image_to_unit(speckle(reflectivity(s, s, seed=i), 4, rng)) for i, s in enumerate(sizes)]
    out[1][1][:20] = False  # a nodata band in one tile
    return out


def test_extract_batch_equals_one_by_one():
    """Tiles batched through the network (B > 1, mixed sizes) give exactly the single-image keypoints."""
    from sarreg.extract import extract_batch
    from sarreg.model.weights import load_model

    model = load_model(None, torch.device("cpu"))
    images = _tiles([160, 160, 128, 160])
    cfg = ExtractConfig(top_k=600, device="cpu", backend="torch")
    got = extract_batch(model, images, cfg, batch=3)
    for (u, v), b in zip(images, got):
        a = extract_array(model, u, v, cfg.with_(min_scale=1.0, max_scale=1.0, max_size=0))
        assert len(a) == len(b) > 100
        assert np.array_equal(a.keypoints, b.keypoints) and np.allclose(a.descriptors, b.descriptors, atol=1e-6)
        assert np.allclose(a.scores, b.scores, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batched_tiles_match_cpu():
    """On a GPU the fine-stage tiles go through the network in batches: same keypoints as on the CPU (float
    tolerance), and a registration on the GPU recovers the shift."""
    from sarreg.extract import extract_batch
    from sarreg.keypoints import Extractor
    from sarreg.config import RegisterConfig
    from sarreg.model.weights import load_model

    images = _tiles([160, 160, 160])
    cpu = extract_batch(load_model(None, torch.device("cpu")), images, ExtractConfig(top_k=600, device="cpu",
                                                                                       backend="torch"))
    ext = Extractor(RegisterConfig(device="cuda", backend="torch"))
    gpu = ext.many(images, 600)
    for a, b in zip(cpu, gpu):
        d = np.linalg.norm(a.keypoints[:, None, :2] - b.keypoints[None, :, :2], axis=2).min(axis=1)
        assert (d <= 0.5).mean() >= 0.95


def test_small_images_get_up_sampled_levels(tmp_path):
    """Levels above scale 1 only for images smaller than ``upsample_to`` (and never above max_scale); a 120 px
    patch then gives keypoints on finer grids (patch size 32 / s < 32) and more of them, inside the image."""
    from sarreg.errors import InputError
    from sarreg.extract import extract_file, pyramid_scales
    from sarreg.synth import reflectivity, speckle, write_geotiff

    cfg = ExtractConfig(top_k=2000, device="cpu", backend="torch")
    assert max(pyramid_scales(120, 90, cfg)) == pytest.approx(2 ** 1.0, rel=0.01)
    assert max(pyramid_scales(256, 256, cfg)) == 1.0 and max(pyramid_scales(4000, 3000, cfg)) < 1
    assert max(pyramid_scales(120, 90, cfg.with_(upsample_to=0))) == 1.0
    assert max(pyramid_scales(120, 90, cfg.with_(max_scale=1.0))) == 1.0
    with pytest.raises(InputError, match="--max-size 100 < --min-size 128: no pyramid level"):
        pyramid_scales(512, 512, cfg.with_(max_size=100))  # (it ran the full, dearest level)
    path = write_geotiff(tmp_path / "p.tif", speckle(reflectivity(90, 120, seed=2), 4, np.random.default_rng(0)))
    up = extract_file(path, cfg=cfg)
    flat = extract_file(path, cfg=cfg.with_(upsample_to=0))
    assert len(up) > 1.3 * len(flat) and (up.keypoints[:, 2] < 32).any() and (flat.keypoints[:, 2] >= 32).all()
    x, y = up.keypoints[:, 0], up.keypoints[:, 1]
    assert x.min() >= -0.5 and x.max() <= 119.5 and y.min() >= -0.5 and y.max() <= 89.5


def test_wider_nms_keeps_a_subset_and_rejects_even_windows(geotiff_factory, scene_array, model) -> None:
    """A 5x5 suppression window keeps only maxima that are also 3x3 maxima, fewer of them; even windows are refused."""
    sc = open_scene(geotiff_factory(scene_array))
    k3 = _key(extract_scene(sc, model, SINGLE))
    k5 = _key(extract_scene(sc, model, SINGLE.with_(nms=5)))
    assert 0 < len(k5) < len(k3) and k5 <= k3
    from sarreg.errors import InputError

    with pytest.raises(InputError, match="odd"):
        extract_scene(sc, model, SINGLE.with_(nms=4))
