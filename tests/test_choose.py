"""``sarreg.train.choose``: the validation sets are built from an OMBRIA-shaped folder, candidates are scored
against the shipped model single-stage and through ``register``, and the release rule is applied."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from sarreg.errors import InputError
from sarreg.model.weights import EXTRACT_MODEL_NAME, default_weights_path
from sarreg.synth import make_pair, write_geotiff
from sarreg.train.choose import HELD_OUT, HELD_OUT_B, OTHER, SETS, Choice, build_sets, main, release, score


@pytest.fixture(scope="module")
def ombria(tmp_path_factory) -> Path:
    """BEFORE/ and AFTER/ 8-bit PNGs (log intensity over 30 dB, as OMBRIA stores them) of synthetic two-date
    scenes under the held-out ids."""
    root = tmp_path_factory.mktemp("ombria")
    for i, k in enumerate(HELD_OUT + HELD_OUT_B):
        _, a, b = make_pair(256, 256, seed=40 + i, looks=8.0)
        for name, img in (("BEFORE/S1_before", a), ("AFTER/S1_after", b)):
            db = 10 * np.log10(np.maximum(img, 1e-6))
            v = np.clip((db - db.min()) / 30 * 255, 1, 255).astype(np.uint8)
            f = root / f"{name}_{k}.png"
            f.parent.mkdir(exist_ok=True)
            cv2.imwrite(str(f), v)
    return root


def test_build_sets_derives_looks_and_resumes(ombria: Path, tmp_path: Path) -> None:
    a, xa = build_sets(tmp_path, ombria, ["A", "XA"], n=2)
    assert [p.name for p in (a, xa)] == ["A", "XA"]
    for d in (a, xa):
        assert len(list(d.glob("*/gt.json"))) == 2
    gt_a = json.loads((a / "pair_0000" / "gt.json").read_text())
    gt_x = json.loads((xa / "pair_0000" / "gt.json").read_text())
    assert gt_x["H"] == gt_a["H"] and gt_x["source"].startswith("change:")
    before = (xa / "pair_0000" / "moving.tif").stat().st_mtime_ns
    build_sets(tmp_path, ombria, ["XA"], n=2)  # already there: kept
    assert (xa / "pair_0000" / "moving.tif").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="unknown sets"):
        build_sets(tmp_path, ombria, ["ZZ"])
    assert {"A", "SD", "HA", "LD", "MD"} <= set(SETS)


def test_other_sensor_sets_come_from_the_gefolki_images(ombria: Path, tmp_path: Path) -> None:
    """Sets "O..." cut pairs from the allowed non-OMBRIA images (single images: two speckle draws each)."""
    gef = tmp_path / "gefolki"
    for i, name in enumerate(OTHER):
        _, a, _ = make_pair(300, 300, seed=60 + i, looks=8.0)
        f = gef / name
        f.parent.mkdir(parents=True, exist_ok=True)
        if f.suffix == ".png":
            db = 10 * np.log10(np.maximum(a, 1e-6))
            cv2.imwrite(str(f), np.clip((db - db.min()) / 30 * 255, 1, 255).astype(np.uint8))
        else:
            write_geotiff(f, a.astype(np.float32))
    o, ol = build_sets(tmp_path / "sets", ombria, ["O", "OL"], n=3, gefolki=gef)
    srcs = [json.loads(p.read_text())["source"] for p in sorted(o.glob("*/gt.json"))]
    assert len(srcs) == 3 and all(any(Path(n).stem in s for n in OTHER) for s in srcs)
    assert len(list(ol.glob("*/moving.tif"))) == 3
    with pytest.raises(InputError, match="not found"):
        build_sets(tmp_path / "sets2", ombria, ["O"], n=1, gefolki=tmp_path / "absent")


def test_same_weights_fail_the_rule_on_clause_one(ombria: Path, tmp_path: Path, capsys) -> None:
    build_sets(tmp_path / "sets", ombria, ["A", "XA"], n=2)
    # the baseline is the shipped pair of models: extract's single-stage, register's through register
    same, same_x = tmp_path / "same.pt", tmp_path / "same_x.pt"
    shutil.copy(default_weights_path(), same)
    shutil.copy(default_weights_path(EXTRACT_MODEL_NAME), same_x)
    ch = score(tmp_path / "sets", [same, same_x], single_sets=["A", "XA"], check_sets=["A"], progress=False)
    base = ch.labels[0]
    assert ch.labels[1:] == ["same", "same_x"]
    for s in ("A", "XA"):
        assert ch.single[s][base] == ch.single[s]["same_x"]
    assert ch.register[base] == ch.register["same"] and ch.register[base]["pairs"] == 2
    assert ch.verdicts["same_x"][0].startswith("(1) mean s@3")
    assert ch.register[base]["within_3"] >= 1  # easy 8-look synthetic pairs
    assert len(ch.pairs) == 6 and {p["label"] for p in ch.pairs} == {base, "same", "same_x"}
    assert sum(p["error_px"] is not None and p["error_px"] <= 3 for p in ch.pairs if p["label"] == base) \
        == ch.register[base]["within_3"]
    fails = ch.verdicts["same"]  # register's model: same register counts, single-stage against extract's model
    assert fails[0].startswith("(1) mean s@3") and not any(f.startswith(("(3)", "(4)")) for f in fails)
    out = tmp_path / "choice.json"
    main(["score", str(tmp_path / "sets"), str(same), "--sets", "A", "--check", "", "--json", str(out)])
    printed = capsys.readouterr().out
    assert "| same |" in printed and "fails: (1)" in printed
    assert json.loads(out.read_text())["verdicts"]["same"][0].startswith("(1)")
    # register only: the means are not measured, which is never a pass
    only = Choice({}, {base: ch.register[base], "same": ch.register["same"]}, [base, "same"])
    assert only.judge()["same"] == ["(1), (2) not measured: no single-stage sets scored"]
    # clause (3): ok results more than 3 px off, counted against the baseline's own
    counts = {"ok_off": 1, "within_3": 5, "within_1": 3}
    c = Choice({"A": {"b": (0.5, 0.9), "c": (0.6, 1.0)}}, {"b": counts, "c": counts}, ["b", "c"])
    assert c.judge()["c"] == []
    c.register["c"] = {**counts, "ok_off": 2}
    assert c.judge()["c"] == ["(3) 2 ok result(s) more than 3 px off (baseline 1)"]


def test_geo_set_has_known_georeference_errors_and_its_own_clause(ombria: Path, tmp_path: Path) -> None:
    """Set G: georeferenced two-date pairs; through the TRUE georeference a moving pixel centre lands where gt's H
    says, through the written one off by the recorded error; rule clause (4) compares estimates within 1 px there."""
    import rasterio
    from affine import Affine

    (g,) = build_sets(tmp_path, ombria, ["G"], n=4)
    gts = [json.loads(p.read_text()) for p in sorted(g.glob("*/gt.json"))]
    assert [x["difficulty"] for x in gts] == ["geo_noop", "geo_offset", "geo_offset", "geo_resampled"]
    cr = np.array([[0.0, 0.0], [40.0, 7.0], [100.0, 120.0]])
    for x in gts:
        d = g / x["id"]
        with rasterio.open(d / "ref.tif") as r, rasterio.open(d / "moving.tif") as m:
            assert r.crs == m.crs and m.nodata == 0 and m.dtypes[0] == "float32"
            assert (m.width, m.height) == tuple(x["moving_size_wh"])
            a_ref, a_mov = r.transform, m.transform
        want = cr @ np.array(x["H"])[:2, :2].T + np.array(x["H"])[:2, 2]
        for gt_key, err in (("moving_true_geotransform_gdal", 0.0), (None, np.array(x["georeference_error_px"]))):
            a = Affine.from_gdal(*x[gt_key]) if gt_key else a_mov
            got = np.array([~a_ref * (a * (c + 0.5, r_ + 0.5)) for c, r_ in cr]) - 0.5
            np.testing.assert_allclose(got, want + err, atol=1e-3)  # (GeoTIFF stores the origin rounded)
    assert gts[0]["georeference_error_px"] == [0.0, 0.0] and np.hypot(*gts[1]["georeference_error_px"]) >= 2.0
    (gh,) = build_sets(tmp_path, ombria, ["GH"], n=4)  # a look of G (change, 8-bit JPEG) keeps the georeference
    for x in gts:
        for name in ("ref.tif", "moving.tif"):
            with rasterio.open(g / x["id"] / name) as a, rasterio.open(gh / x["id"] / name) as b:
                assert (b.transform, b.crs) == (a.transform, a.crs) and not np.array_equal(a.read(1), b.read(1))
    (gt_set,) = build_sets(tmp_path, ombria, ["GT"], n=2)  # georeferences wrong by a turn and a scale as well
    for x in (json.loads(p.read_text()) for p in sorted(gt_set.glob("*/gt.json"))):
        assert x["difficulty"] == "geo_turned"
        with rasterio.open(gt_set / x["id"] / "moving.tif") as m:
            a_written = m.transform
        rel = ~Affine.from_gdal(*x["moving_true_geotransform_gdal"]) * a_written  # moving px -> moving px
        turn = np.degrees(np.arctan2(rel.d, rel.a))
        scale = np.hypot(rel.a, rel.d)
        assert 2.0 - 1e-6 <= abs(turn) <= 6.0 + 1e-6 and 0.03 - 1e-6 <= abs(scale - 1.0) <= 0.08 + 1e-6
    rows = [{"set": "G", "label": lab, "error_px": e} for lab, e in (("b", 0.4), ("b", 0.9), ("c", 0.5), ("c", 1.2))]
    ch = Choice({"A": {"b": (0.5, 0.9), "c": (0.6, 1.0)}}, {"b": {}, "c": {}}, ["b", "c"], pairs=rows)
    assert ch.judge()["c"] == ["(4) 1 estimates within 1 px on the georeferenced sets < 2"]
    rows.append({"set": "GL", "label": "c", "error_px": 0.3})  # the geo sets count together
    assert ch.judge()["c"] == []


def test_release_check_same_weights_pass(ombria: Path, tmp_path: Path) -> None:
    (a,) = build_sets(tmp_path / "sets", ombria, ["A"], n=2)
    same = tmp_path / "same.pt"
    shutil.copy(default_weights_path(), same)
    nums, fails = release(same, a, geo=a, unseen=[json.loads((a / "pair_0000" / "gt.json").read_text())["source"]])
    assert set(nums) == {"bench", "geo"}
    for key in nums:
        assert nums[key]["baseline"] == nums[key]["candidate"]
        assert nums[key]["baseline"]["pairs"] == 2 and nums[key]["baseline"]["s3"] > 0
    assert nums["bench"]["baseline"]["unseen_within_3"] >= 1  # the named source's pair is counted
    assert fails == []


def test_discordant_pairs_and_their_sign_test() -> None:
    # baseline b / candidate c on 12 pairs: 1 pair only b within 1 px, 9 only c, 2 both
    errs = [(0.5, 2.0)] + [(2.0, 0.5)] * 9 + [(0.2, 0.3)] * 2
    rows = [{"set": "A", "pair": f"p{i}", "label": lab, "error_px": e}
            for i, (eb, ec) in enumerate(errs) for lab, e in (("b", eb), ("c", ec))]
    rows.append({"set": "A", "pair": "p99", "label": "c", "error_px": 0.1})  # no baseline result: not counted
    ch = Choice({}, {}, ["b", "c"], pairs=rows)
    b, c, p = ch.discordant("c", 1.0)
    assert (b, c) == (1, 9) and p == pytest.approx(2 * 11 / 1024)  # P(X <= 1 | n = 10), two-sided
    assert ch.discordant("c", 3.0) == (0, 0, 1.0)
    assert "1 vs 9 (sign test p = 0.02)" in ch.to_markdown()
