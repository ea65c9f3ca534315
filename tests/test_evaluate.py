"""``sarreg evaluate``: pair building, metrics agreeing with the official scorer, the register method (the
pipeline) and the single-stage SIFT / learned paths, per-source summaries, outputs."""
from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sarreg.cli import cli
from sarreg.errors import InputError
from sarreg.eval_pairs import make_pairs, random_homography
from sarreg.evaluate import (EvalOptions, Method, apply_h, evaluate, grid_points, homography_error, load_pairs,
                             match_accuracy)
from sarreg.model.weights import default_weights_path
from sarreg.synth import make_pair, reflectivity, warp_image, write_geotiff


def _run(*args: str):
    return CliRunner().invoke(cli, ["evaluate", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def dates(tmp_path_factory) -> Path:
    """A folder holding two co-registered 'dates' of one synthetic scene (independent 16-look speckle)."""
    d = tmp_path_factory.mktemp("dates")
    _, a, b = make_pair(320, 320, seed=3, looks=16.0)
    write_geotiff(d / "date1.tif", a.astype(np.float32))
    write_geotiff(d / "date2.tif", b.astype(np.float32))
    return d


@pytest.fixture(scope="module")
def pairs(dates: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pairs") / "p"
    r = _run("make-pairs", str(dates), "-o", str(out), "--n", "3", "--seed", "1", "--size", "256")
    assert r.exit_code == 0, r.output
    return out


def test_make_pairs_layout_and_gt(pairs: Path) -> None:
    subs = sorted(p.name for p in pairs.iterdir() if p.is_dir())
    assert subs == ["pair_0000", "pair_0001", "pair_0002"]
    index = json.loads((pairs / "index.json").read_text())
    assert [i["id"] for i in index] == subs
    for s in subs:
        gt = json.loads((pairs / s / "gt.json").read_text())
        assert (pairs / s / gt["ref"]).is_file() and (pairs / s / gt["moving"]).is_file()
        H = np.asarray(gt["H"])
        assert H.shape == (3, 3) and gt["ref_size_wh"] == [256, 256] == gt["moving_size_wh"]
        w = gt["warp"]
        assert abs(w["rotation_deg"]) <= 15 and 0.8 <= w["scale"] <= 1.25 and abs(w["tx"]) <= 40
    assert not list(pairs.glob(".*tmp*"))  # no partial folders left behind
    ps = load_pairs(pairs)
    assert [p.id for p in ps] == subs


def test_make_pairs_same_seed_same_pairs(dates: Path, tmp_path: Path) -> None:
    a = make_pairs([dates], tmp_path / "a", 2, seed=7, size=128)
    b = make_pairs([dates], tmp_path / "b", 2, seed=7, size=128)
    c = make_pairs([dates], tmp_path / "c", 2, seed=8, size=128)
    ga = [json.loads((p / "gt.json").read_text())["H"] for p in a]
    assert ga == [json.loads((p / "gt.json").read_text())["H"] for p in b]
    assert ga != [json.loads((p / "gt.json").read_text())["H"] for p in c]


def test_make_pairs_labels_the_warp_kind(dates: Path, tmp_path: Path) -> None:
    """A shift-only or similarity-only warp range gives pairs of that kind, labelled as the evaluation sets label
    theirs (``difficulty``); the default range is a homography."""
    from sarreg.eval_pairs import WarpRange, warp_kind

    shift = WarpRange(rotation=0.0, scale=(1.0, 1.0), perspective=0.0)
    similar = WarpRange(rotation=5.0, scale=(0.95, 1.05), perspective=0.0)
    assert [warp_kind(w) for w in (shift, similar, WarpRange(), WarpRange(perspective=0.0, shear=0.1))] == [
        "shift", "similarity", "homography", "affine"]
    for w, kind in ((shift, "shift"), (similar, "similarity")):
        out = tmp_path / kind
        for p in make_pairs([dates], out, 3, seed=4, size=128, warp=w):
            H = np.asarray(json.loads((p / "gt.json").read_text())["H"])
            assert np.allclose(H[2], [0, 0, 1])  # no perspective
            lin = H[:2, :2]
            if kind == "shift":
                assert np.allclose(lin, np.eye(2))
            else:
                assert np.isclose(lin[0, 0], lin[1, 1]) and np.isclose(lin[0, 1], -lin[1, 0])
                assert not np.allclose(lin, np.eye(2))
        assert {e["difficulty"] for e in json.loads((out / "index.json").read_text())} == {kind}


def test_make_pairs_gt_maps_moving_onto_reference(tmp_path: Path) -> None:
    """Two identical 'dates': pulling the moving image back with the written H reproduces the reference crop,
    while a 3 px error in H does not (so the check can fail)."""
    src = tmp_path / "src"
    src.mkdir()
    img = reflectivity(300, 300, seed=5).astype(np.float32)
    write_geotiff(src / "d1.tif", img)
    write_geotiff(src / "d2.tif", img)
    (pdir,) = make_pairs([src], tmp_path / "pairs", 1, seed=2, size=200)
    gt = json.loads((pdir / "gt.json").read_text())
    import rasterio

    with rasterio.open(pdir / "ref.tif") as r, rasterio.open(pdir / "moving.tif") as m:
        ref, mov = r.read(1), m.read(1)

    def misfit(H: np.ndarray) -> float:
        back = warp_image(np.where(mov > 0, mov, np.nan), np.linalg.inv(H), ref.shape)
        ok = np.isfinite(back) & (ref > 0)
        assert ok.mean() > 0.3
        return float(np.median(np.abs(np.log(back[ok]) - np.log(ref[ok]))))

    H = np.asarray(gt["H"])
    wrong = np.array([[1, 0, 3.0], [0, 1, 0], [0, 0, 1]]) @ H
    assert misfit(H) < 0.05
    assert misfit(wrong) > 2 * misfit(H)


def test_make_pairs_single_image_gets_speckle(tmp_path: Path) -> None:
    f = tmp_path / "one.tif"
    write_geotiff(f, reflectivity(200, 220, seed=1).astype(np.float32))
    (p,) = make_pairs([f], tmp_path / "out", 1, seed=0, size=160)
    gt = json.loads((p / "gt.json").read_text())
    assert gt["source_info"]["synthetic_speckle_looks"] == 4.0
    import rasterio

    with rasterio.open(p / "ref.tif") as r:
        a = r.read(1)
    x0, y0 = gt["warp"]["crop_xy"]
    clean = reflectivity(200, 220, seed=1)[y0:y0 + 160, x0:x0 + 160]
    ratio = a[a > 0] / clean[a > 0]
    # speckled: the crop is the clean reflectivity times unit-mean noise of variance 1/looks
    assert abs(ratio.mean() - 1) < 0.05 and 0.15 < ratio.var() < 0.35


def test_homography_error_and_mma() -> None:
    rng = np.random.default_rng(0)
    H, _ = random_homography(200, 150, rng)
    assert homography_error(H, H, (200, 150), (200, 150)) == pytest.approx(0.0, abs=1e-9)
    shifted = np.array([[1, 0, 2.0], [0, 1, 0], [0, 0, 1]]) @ H
    assert homography_error(H, shifted, (200, 150), (200, 150)) == pytest.approx(2.0, rel=1e-9)
    assert math.isinf(homography_error(H, None, (200, 150), (200, 150)))
    assert math.isinf(homography_error(H, np.full((3, 3), np.nan), (200, 150), (200, 150)))
    xy = grid_points(200, 150)
    ref = apply_h(H, xy)
    ref[:50] += [2.5, 0]  # half the matches 2.5 px off
    mma = match_accuracy(H, xy, ref)
    assert mma[0] == pytest.approx(0.5) and mma[2] == pytest.approx(1.0)
    assert match_accuracy(H, np.zeros((0, 2)), np.zeros((0, 2))) == [0.0] * 10


def test_error_matches_official_scorer(shared_dir: Path) -> None:
    """Our grid error is the error of ../shared/eval/score.py (read from there, never copied)."""
    score_py = shared_dir / "eval" / "score.py"
    if not score_py.is_file():
        pytest.skip("eval scorer absent")
    spec = importlib.util.spec_from_file_location("official_score", score_py)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    rng = np.random.default_rng(4)
    for _ in range(5):
        Hg, _ = random_homography(300, 260, rng)
        Hp = Hg @ np.array([[1.01, 0.0, rng.normal(0, 3)], [0.0, 0.99, rng.normal(0, 3)], [1e-5, 0, 1]])
        gt = {"H": Hg.tolist(), "moving_size_wh": [300, 260], "ref_size_wh": [310, 250]}
        want, _ = mod.pair_errors(gt, Hp.tolist())
        assert homography_error(Hg, Hp, (300, 260), (310, 250)) == pytest.approx(want, rel=1e-12)


def test_sift_succeeds_with_true_gt_and_fails_with_wrong_gt(pairs: Path, tmp_path: Path) -> None:
    res = evaluate(pairs, ["sift"], EvalOptions(), pred_dir=tmp_path / "pred")
    s = res.summary("sift")
    assert s.n == 3 and s.success["3"] == 1.0
    assert s.mma[2] > 0.3 and s.mean_inliers >= 10
    # predictions in the scorer's format
    for pid in res.pairs:
        doc = json.loads((tmp_path / "pred" / "sift" / f"{pid}.json").read_text())
        assert np.asarray(doc["matrix"]).shape == (3, 3) and not doc.get("failed")  # success 1.0: all estimated
        assert doc["time_s"] >= 0
    # a deliberately wrong ground truth (8 px off) must turn the same matches into failures
    bad = tmp_path / "bad"
    shutil.copytree(pairs, bad)
    for g in bad.glob("*/gt.json"):
        gt = json.loads(g.read_text())
        gt["H"] = (np.array([[1, 0, 8.0], [0, 1, 0], [0, 0, 1]]) @ np.asarray(gt["H"])).tolist()
        g.write_text(json.dumps(gt))
    s_bad = evaluate(bad, ["sift"], EvalOptions()).summary("sift")
    assert s_bad.success["3"] == 0.0 and s_bad.success["5"] == 0.0
    assert s_bad.mma[2] < 0.1
    # a gt.json whose size contradicts the image: refused for register too (it was scored on the wrong grid)
    g = sorted(bad.glob("*/gt.json"))[0]
    g.write_text(json.dumps({**json.loads(g.read_text()), "ref_size_wh": [100, 100]}))
    for method in ("sift", "register-sift"):
        with pytest.raises(InputError, match=r"differs from gt.json ref_size_wh"):
            evaluate(bad, [method], EvalOptions())


def test_learned_path_random_weights_and_outputs(dates: Path, tmp_path: Path) -> None:
    from sarreg.model.weights import random_model, save_checkpoint

    pairs = tmp_path / "small"
    make_pairs([dates], pairs, 3, seed=4, size=128)  # smaller than min_size: the pyramid falls back to scale 1

    m = random_model("Fast_Quad_L2Net_ConfCFS", 1, seed=0)
    w = save_checkpoint(tmp_path / "rand_net.pt", m.net, m.arch, m.mchan, m.in_channels)
    out, pred = tmp_path / "out", tmp_path / "pred"
    r = _run(str(pairs), "--methods", "orb", "--weights", str(w), "--rel-thr", "0", "--rep-thr", "0",
             "--top-k", "300", "-o", str(out), "--pred-dir", str(pred), "--no-progress")
    assert r.exit_code == 0, r.output
    assert "| rand_net |" in r.output and "| orb |" in r.output
    md = (out / "eval.md").read_text().splitlines()
    assert md[0].startswith("| method |") and md[2].startswith("| orb |") and md[3].startswith("| rand_net |")
    # per source: one source and the overall row for each method
    assert md[5].startswith("| method | source |") and len(md) == 11
    assert md[7].startswith("| orb | make_pairs:") and md[8].startswith("| orb | all | 3 |")
    doc = json.loads((out / "eval.json").read_text())
    assert doc["methods"] == ["orb", "rand_net"] and len(doc["results"]) == 6
    learned = [x for x in doc["results"] if x["method"] == "rand_net"]
    assert all(x["keypoints"][0] > 50 and x["status"] in ("ok", "failed") for x in learned)
    assert len(doc["summaries"][1]["mma"]) == 10
    from PIL import Image

    with Image.open(out / "mma.png") as im:
        assert im.format == "PNG" and im.size[0] > 100
    assert sorted(p.name for p in (pred / "rand_net").iterdir()) == [f"pair_000{i}.json" for i in range(3)]


def test_method_parse() -> None:
    assert Method.parse("register") == Method("register", "register")
    assert Method.parse("register-sift") == Method("register-sift", "register", None, "sift")
    assert Method.parse("register:/x/mine.pt") == Method("register:mine", "register", "/x/mine.pt")
    assert Method.parse("SIFT") == Method("sift", "sift")
    assert Method.parse("/x/faster2d2_WASF_N16.pt") == Method("faster2d2_WASF_N16", "learned",
                                                              "/x/faster2d2_WASF_N16.pt")
    with pytest.raises(ValueError):
        Method.parse("surf")


@pytest.mark.parametrize("case", ["missing_dir", "bad_gt", "no_moving", "missing_weights"])
def test_bad_input_one_line_error(case: str, pairs: Path, tmp_path: Path) -> None:
    d = tmp_path / "pairs"
    shutil.copytree(pairs, d)
    extra: list[str] = []
    if case == "missing_dir":
        d = tmp_path / "nope"
    elif case == "bad_gt":
        (d / "pair_0001" / "gt.json").write_text('{"H": [[1, 0], [0, 1]]}')
    elif case == "no_moving":
        (d / "pair_0002" / "moving.tif").unlink()
    else:
        extra = ["--weights", str(tmp_path / "absent.pt")]
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["evaluate", str(d), "--methods", "sift", *extra, "-o", str(out), "--no-progress"])
    assert r.exit_code == 1
    msg = r.output.strip().splitlines()
    assert len(msg) == 1 and msg[0].startswith("sarreg: error:")
    assert {"missing_dir": "nope", "bad_gt": "gt.json", "no_moving": "pair_0002",
            "missing_weights": "absent.pt"}[case] in msg[0]
    assert not (out / "eval.json").exists()


@pytest.mark.parametrize("opt", ["-o", "--pred-dir"])
def test_remote_output_dir_is_refused_as_typed(opt: str, pairs: Path, tmp_path: Path, monkeypatch) -> None:
    """A URL as -o / --pred-dir: one line naming it as typed (``s3://b/ev``; a plain click.Path folded it into the
    local folder ``s3:/b/ev``), before any pair is run, and no folder made."""
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.rglob("*"))
    r = CliRunner().invoke(cli, ["evaluate", str(pairs), "--methods", "sift", opt, "s3://b/ev", "--no-progress"])
    msg = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(msg) == 1, r.output
    assert msg[0].startswith("sarreg: error: s3://b/ev: ") and "local" in msg[0]
    assert set(tmp_path.rglob("*")) == before


needs_model = pytest.mark.skipif(default_weights_path() is None, reason="no shipped model")


@pytest.fixture(scope="module")
def three_ways(pairs: Path):
    """The pipeline (default method) and two single-stage methods on the same generated pairs."""
    return evaluate(pairs, ["register", "model", "sift"], EvalOptions())


@needs_model
def test_register_and_single_stage_recover_homographies(three_ways, pairs: Path) -> None:
    res = three_ways
    assert res.methods == ["register", Method.parse("model").label, "sift"]
    gts = {p.id: p for p in load_pairs(pairs)}
    off = np.array([[1, 0, 0], [0, 1, 4.0], [0, 0, 1]])
    for r in res.results:
        assert r.source.startswith("make_pairs:dates")
        assert r.status in ("ok", "low_quality"), (r.method, r.pair, r.message)
        # the recorded matrix maps moving px -> reference px: compare with the ground truth directly
        H, p = np.asarray(r.matrix), gts[r.pair]
        err = homography_error(p.H, H, p.moving_size, p.ref_size)
        assert err == pytest.approx(r.error) and err < 3.0, (r.method, r.pair, err)
        # against a ground truth 4 px off the same estimate misses (the success below is real)
        assert homography_error(off @ p.H, H, p.moving_size, p.ref_size) > 3.0
    reg = res.summary("register")  # the pipeline (model auto: affine unless a homography clearly fits better)
    assert reg.n == 3 and reg.failed == 0 and reg.success["3"] == 1.0 and reg.median_error < 0.5
    assert reg.success_ok["3"] == (3 - reg.low_quality) / 3
    assert all(math.isnan(v) for v in reg.mma) and reg.mean_inliers >= 10  # no tentative matches: no MMA
    for m in res.methods[1:]:
        s = res.summary(m)
        assert s.success["3"] == 1.0 and s.mma[2] > 0.2
    (src,) = reg.by_source  # one source, whose scores are the overall ones
    assert reg.by_source[src].success == reg.success and reg.by_source[src].n == 3


@needs_model
def test_cli_default_is_register_per_source_tables(pairs: Path, tmp_path: Path) -> None:
    """`sarreg evaluate` on a benchmark folder (index.json with sets, pairs/ and geo_pairs/ as ../shared/eval):
    the default method is register; pairs come in index order; per-source rows in the table and eval.json."""
    bench = tmp_path / "bench"
    ids = ["pair_0002", "pair_0000"]
    index = []
    for pid, (set_, src) in zip(ids, [("sar", "alpha"), ("geo", "beta")]):
        shutil.copytree(pairs / pid, bench / ("geo_pairs" if set_ == "geo" else "pairs") / pid)
        g = bench / ("geo_pairs" if set_ == "geo" else "pairs") / pid / "gt.json"
        gt = json.loads(g.read_text())
        gt["source"] = src
        g.write_text(json.dumps(gt))
        index.append({"id": pid, "source": src, "set": set_, "large": False})
    (bench / "index.json").write_text(json.dumps(index))
    assert [p.id for p in load_pairs(bench)] == ids
    out, pred = tmp_path / "out", tmp_path / "pred"
    r = _run(str(bench), "-o", str(out), "--pred-dir", str(pred), "--no-progress")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[2].startswith("| register | 2 | 0 |")
    rows = {tuple(c.strip() for c in ln.split("|")[1:3]): ln for ln in lines if ln.startswith("| register | ")}
    assert {("register", "alpha"), ("register", "beta"), ("register", "all")} <= set(rows)
    assert rows[("register", "alpha")].split("|")[3].strip() == "1"
    doc = json.loads((out / "eval.json").read_text())
    assert doc["methods"] == ["register"] and doc["pairs"] == ids
    summ = doc["summaries"][0]
    assert set(summ["by_source"]) == {"alpha", "beta"} and summ["by_source"]["alpha"]["n"] == 1
    assert summ["success"]["3"] == 1.0
    for pid in ids:
        pd = json.loads((pred / "register" / f"{pid}.json").read_text())
        assert pd["status"] in ("ok", "low_quality") and np.asarray(pd["matrix"]).shape == (3, 3)


def _moving(pair_dir: Path) -> Path:
    return pair_dir / json.loads((pair_dir / "gt.json").read_text())["moving"]


def test_unreadable_pixels_fail_that_pair_only(pairs: Path, tmp_path: Path, caplog) -> None:
    """A moving image whose header opens but whose pixels cannot be read (a truncated GeoTIFF) is a failed pair
    named on stderr, as the register method records it; the other pairs are scored (it used to end the whole run,
    exit 1, no table: every pair run before it lost)."""
    d = tmp_path / "pairs"
    shutil.copytree(pairs, d)
    mov = _moving(d / "pair_0001")
    mov.write_bytes(mov.read_bytes()[:3000])
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["evaluate", str(d), "--methods", "sift", "-o", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output + r.stderr
    doc = json.loads((out / "eval.json").read_text())
    st = {x["pair"]: x["status"] for x in doc["results"]}
    assert st == {"pair_0000": "ok", "pair_0001": "error", "pair_0002": "ok"}
    bad = next(x for x in doc["results"] if x["pair"] == "pair_0001")
    assert bad["error"] is None and "unreadable pixel data" in bad["message"]  # (inf -> null in JSON)
    s = doc["summaries"][0]
    assert s["n"] == 3 and s["failed"] == 1 and s["success"]["3"] == pytest.approx(2 / 3)
    warned = [x.getMessage() for x in caplog.records if x.levelname == "WARNING"]
    assert any("pair_0001" in w and "unreadable pixel data" in w for w in warned), warned


def test_unreadable_image_refused_before_any_pair_runs(pairs: Path, tmp_path: Path) -> None:
    """An image of the last pair that is not a raster: one error line naming it before the first pair runs (no
    prediction written); it used to surface only when that pair's turn came."""
    d = tmp_path / "pairs"
    shutil.copytree(pairs, d)
    mov = _moving(d / "pair_0002")
    mov.write_text("not a raster")
    pred = tmp_path / "pred"
    r = CliRunner().invoke(cli, ["evaluate", str(d), "--methods", "sift", "--pred-dir", str(pred), "--no-progress"])
    msg = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(msg) == 1 and msg[0].startswith(f"sarreg: error: {mov}: "), r.output
    assert not list(pred.rglob("*.json"))


def test_ids_not_found_is_an_error(pairs: Path, tmp_path: Path) -> None:
    """--ids naming a pair the folder does not hold: one line naming it (it used to score the others silently, a
    table over fewer pairs than asked for)."""
    ids = tmp_path / "ids.txt"
    ids.write_text("pair_0000\npair_0009\n")
    r = CliRunner().invoke(cli, ["evaluate", str(pairs), "--methods", "sift", "--ids", str(ids), "--no-progress"])
    msg = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(msg) == 1 and "'pair_0009'" in msg[0] and "1 of the 2" in msg[0], r.output
    assert [p.id for p in load_pairs(pairs, ["pair_0000", "pair_0009"])] == ["pair_0000"]  # the library's default


@pytest.mark.parametrize("opt,value", [("--threshold", "0"), ("--threshold", "-1"), ("--orb-features", "0"),
                                       ("--ratio", "1.5")])
def test_single_stage_option_out_of_range_is_a_usage_error(pairs: Path, opt: str, value: str) -> None:
    """A MAGSAC threshold <= 0 or ORB with 0 features made every pair 'failed' (s@3px 0.000, exit 0): a table
    that reads as the method's score. Now one usage line, exit 2 (the ranges of register's --threshold /
    --ratio)."""
    r = CliRunner().invoke(cli, ["evaluate", str(pairs), "--methods", "orb", opt, value, "--no-progress"])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and opt in lines[0], r.output


def test_two_pairs_with_one_id_are_refused(pairs: Path, tmp_path: Path) -> None:
    """A pair folder copied with its gt.json "id": both were scored (pairs 2 in the table) but --pred-dir held one
    file, the second overwriting the first (the official scorer then saw 1 of 2). Now one line naming both."""
    d = tmp_path / "pairs"
    for name, src in (("a", "pair_0000"), ("b", "pair_0001")):
        shutil.copytree(pairs / src, d / name)
        gt = json.loads((d / name / "gt.json").read_text())
        gt["id"] = "same"
        (d / name / "gt.json").write_text(json.dumps(gt))
    pred = tmp_path / "pred"
    r = CliRunner().invoke(cli, ["evaluate", str(d), "--methods", "orb", "--pred-dir", str(pred), "--no-progress"])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1, r.output
    assert lines[0].startswith(f"sarreg: error: {d / 'b'}: pair id 'same'") and str(d / "a") in lines[0]
    assert not list(pred.rglob("*.json"))


def test_pair_folder_without_gt_json_is_named_and_counted(pairs: Path, tmp_path: Path, caplog) -> None:
    """A pair folder without gt.json (no index.json) was skipped without a word: a table over 2 pairs, exit 0, read
    as the folder's score. Now a warning names it, the report counts it (markdown and eval.json "skipped"), --ids
    naming it is an error, and a gt.json that is there but unreadable (a broken link) is an error, not a skip."""
    d = tmp_path / "pairs"
    shutil.copytree(pairs, d)
    (d / "index.json").unlink()
    (d / "pair_0001" / "gt.json").unlink()
    (d / ".pair_0009.tmp12").mkdir()  # (a killed make-pairs' temporary folder: hidden, ignored)
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["evaluate", str(d), "--methods", "orb", "-o", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "1 sub-folder(s) of the pairs folder skipped, not evaluated: pair_0001 (no gt.json)" in r.output
    doc = json.loads((out / "eval.json").read_text())
    assert doc["skipped"] == {"pair_0001": "no gt.json"} and doc["pairs"] == ["pair_0000", "pair_0002"]
    warned = [x.getMessage() for x in caplog.records if x.levelname == "WARNING"]
    assert any(str(d) in w and "pair_0001 (no gt.json)" in w for w in warned), warned
    ids = tmp_path / "ids.txt"
    ids.write_text("pair_0000\npair_0001\n")
    r = CliRunner().invoke(cli, ["evaluate", str(d), "--methods", "orb", "--ids", str(ids), "--no-progress"])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1, r.output
    assert lines[0].startswith(f"sarreg: error: {d / 'pair_0001'}: no gt.json"), lines[0]
    (d / "pair_0001" / "gt.json").symlink_to(tmp_path / "absent.json")
    r = CliRunner().invoke(cli, ["evaluate", str(d), "--methods", "orb", "--no-progress"])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1, r.output
    assert lines[0].startswith(f"sarreg: error: {d / 'pair_0001' / 'gt.json'}: unreadable ground truth"), lines[0]


def test_phasecorr_baseline_finds_a_shift_in_pixel_space_and_after_the_georeferencing(tmp_path: Path) -> None:
    """``phasecorr``: one phase correlation after the georeferencing. The moving date shows the scene 3.5 / -2.25
    px off the reference; in pixel space that is the whole shift, between georeferenced rasters whose georeference
    is 5 / 4 px off the correlation finds the rest (the truth is in pixels: the same H for both pairs)."""
    from affine import Affine

    from sarreg.synth import speckle

    n, t = 256, Affine(10.0, 0, 500000.0, 0, -10.0, 5000000.0)
    field = reflectivity(n + 64, n + 64, seed=4)
    rng = np.random.default_rng(9)
    ref = speckle(field, 4.0, rng)[32:32 + n, 32:32 + n].astype("float32")
    m = np.array([[1.0, 0, 35.5], [0, 1.0, 29.75], [0, 0, 1]])  # moving px -> field px (the reference: + 32)
    mov = np.nan_to_num(warp_image(speckle(field, 4.0, rng), m, (n, n)), nan=0.0).astype("float32")
    H = [[1.0, 0, 3.5], [0, 1.0, -2.25], [0, 0, 1.0]]
    for name, geo in (("plain", None), ("geo", t * Affine.translation(3.5 + 5.0, -2.25 - 4.0))):
        d = tmp_path / "pairs" / name
        d.mkdir(parents=True)
        write_geotiff(d / "ref.tif", ref, t if geo else None, "EPSG:32631" if geo else None)
        write_geotiff(d / "moving.tif", mov, geo, "EPSG:32631" if geo else None, nodata=0.0)
        (d / "gt.json").write_text(json.dumps({"H": H, "source": name}))
    res = evaluate(tmp_path / "pairs", ["phasecorr"])
    errs = {r.pair: r.error for r in res.results}
    assert set(errs) == {"plain", "geo"} and all(e < 0.1 for e in errs.values()), errs
    geo = next(r for r in res.results if r.pair == "geo")
    assert geo.message.startswith("shift (-5.0") and np.allclose(geo.matrix, H, atol=0.1)
