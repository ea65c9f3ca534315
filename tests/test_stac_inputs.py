"""STAC Item inputs (issue #14): an item JSON (local file or URL) as REF / MOVING, its asset picked by ``--asset`` or
by default (VV, else HH, else the only raster asset), relative hrefs resolved against the item's location.

Real GDAL reads of local files and of the test HTTP server (``server`` in conftest); skipped without pystac.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pystac")

from test_remote_inputs import REPO, SHIFT, _cli, _shift_error, small  # noqa: E402,F401  (fixture reused)

COG = "image/tiff; application=geotiff; profile=cloud-optimized"


def _item(path: Path, item_id: str, assets: dict[str, dict], when: str = "2024-05-01T05:30:00Z") -> Path:
    """Write a minimal STAC Item with ``assets`` (href, type, roles, title) to ``path``."""
    doc = {"type": "Feature", "stac_version": "1.0.0", "id": item_id,
           "geometry": {"type": "Polygon", "coordinates": [[[15, 45], [15.1, 45], [15.1, 45.1], [15, 45.1], [15, 45]]]},
           "bbox": [15, 45, 15.1, 45.1], "properties": {"datetime": when}, "links": [], "assets": assets}
    path.write_text(json.dumps(doc))
    return path


def _local_items(folder: Path, ref: Path, mov: Path) -> tuple[Path, Path]:
    """Items in ``folder/items/`` whose assets point at ``folder/data/{ref,mov}.tif`` by relative hrefs."""
    data, items = folder / "data", folder / "items"
    data.mkdir()
    items.mkdir()
    (data / "ref.tif").write_bytes(ref.read_bytes())
    (data / "mov.tif").write_bytes(mov.read_bytes())
    ir = _item(items / "ref_item.json", "S1_REF", {
        "vv": {"href": "../data/ref.tif", "type": COG, "roles": ["data"]},
        "thumbnail": {"href": "../data/ref.png", "type": "image/png", "roles": ["thumbnail"]}})
    im = _item(items / "mov_item.json", "S1_MOV", {
        "amplitude_a": {"href": "../data/mov.tif", "type": COG, "roles": ["data"], "title": "VV amplitude"},
        "amplitude_b": {"href": "../data/ref.tif", "type": COG, "roles": ["data"], "title": "VH amplitude"},
        "metadata": {"href": "meta.xml", "type": "application/xml", "roles": ["metadata"]}},
        when="2024-05-13T05:30:00Z")
    return ir, im


def test_register_local_items_default_asset(small, tmp_path: Path) -> None:
    ref, mov = small
    ir, im = _local_items(tmp_path, ref, mov)
    res = _cli("register", "--features", "sift", ir, im, tmp_path / "out.tif")
    assert res.exit_code == 0, res.output
    assert _shift_error(tmp_path / "out.report.json") < 0.5
    stac = json.loads((tmp_path / "out.report.json").read_text())["stages"]["relate"]["stac"]
    assert stac["reference"]["id"] == "S1_REF" and stac["reference"]["asset"] == "vv"
    assert stac["moving"]["id"] == "S1_MOV" and stac["moving"]["asset"] == "amplitude_a"
    assert stac["moving"]["datetime"].startswith("2024-05-13T05:30:00")


def test_register_items_over_http_with_asset(server, small, tmp_path: Path) -> None:
    base, srv = server
    _item(srv.root / "ref_item.json", "REF", {"band1": {"href": "ref.tif", "type": COG, "roles": ["data"]}})
    _item(srv.root / "mov_item.json", "MOV", {"a": {"href": "mov.tif", "type": COG},
                                              "b": {"href": "ref.tif", "type": COG}})
    # ref: its only raster asset; moving: two rasters, none VV/HH -> --asset a (the REF has no "a": --ref-asset)
    res = _cli("register", "--features", "sift", "--no-warp", f"{base}/ref_item.json", f"{base}/mov_item.json",
               tmp_path / "h.tif")
    assert res.exit_code == 1 and "--asset" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = _cli("register", "--features", "sift", "--no-warp", "--asset", "a", "--ref-asset", "band1",
               f"{base}/ref_item.json", f"{base}/mov_item.json", tmp_path / "h.tif")
    assert res.exit_code == 0, res.output
    assert _shift_error(tmp_path / "h.report.json") < 0.5
    rep = json.loads((tmp_path / "h.report.json").read_text())
    assert rep["moving"].startswith("/vsicurl/http://") and rep["moving"].endswith("/mov.tif")
    assert rep["stages"]["relate"]["stac"]["moving"]["id"] == "MOV"


def test_missing_asset_and_item_are_one_line(server, small, tmp_path: Path) -> None:
    ref, mov = small
    ir, im = _local_items(tmp_path, ref, mov)
    out = tmp_path / "o"
    out.mkdir()
    res = _cli("register", "--features", "sift", "--asset", "nope", ir, im, out / "x.tif")
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope" in lines[0] and str(ir) in lines[0], res.stderr
    base, _ = server
    res = _cli("register", "--features", "sift", ir, f"{base}/missing_item.json", out / "x.tif")
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing_item.json" in lines[0], res.stderr
    assert list(out.iterdir()) == []
    # in a fresh process: GDAL's own warnings must not add stderr lines
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "sarreg.cli", "register", "--features", "sift", str(ir),
                        f"{base}/missing_item.json", str(out / "x.tif")], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=120)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 1 and len(lines) == 1 and "missing_item.json" in lines[0], p.stderr
    assert list(out.iterdir()) == []


def test_apply_and_extract_take_items(small, tmp_path: Path) -> None:
    ref, mov = small
    ir, im = _local_items(tmp_path, ref, mov)
    res = _cli("register", "--features", "sift", "--no-warp", ref, mov, tmp_path / "r.tif")
    assert res.exit_code == 0, res.output
    res = _cli("apply", "--asset", "amplitude_a", tmp_path / "r.report.json", im, tmp_path / "a.tif")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a.tif").is_file()
    res = _cli("extract", "--no-progress", "--top-k", "100", "--tile-size", "0", "-o", tmp_path / "k", ir)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "k" / "ref.tif.r2d2").is_file()


def test_an_item_given_as_input_is_never_overwritten(small, tmp_path: Path) -> None:
    """An output named like a STAC Item given as REF / MOVING / an image is refused, even with --overwrite (--quicklook
    item.json replaced the item with a PNG: only the asset it resolves to was checked)."""
    ref, mov = small
    ir, im = _local_items(tmp_path, ref, mov)
    before = {p: p.read_bytes() for p in (ir, im)}
    for args in (("register", "--features", "sift", "--no-warp", ir, im, tmp_path / "x.tif", "--quicklook", im),
                 ("register", "--features", "sift", "--no-warp", ir, im, tmp_path / "x.tif", "--quicklook", ir),
                 ("extract", "--no-progress", "--top-k", "50", "--tile-size", "0", "-o", tmp_path / "k", im,
                  "--quicklook", im),
                 ("apply", tmp_path / "none.report.json", im, im)):
        res = _cli(*args, "--overwrite")
        assert res.exit_code == 1 and "same file as input" in res.output, (args, res.output)
    assert all(p.read_bytes() == b for p, b in before.items())


def test_default_asset_rules() -> None:
    import pystac

    from sarreg.errors import InputError
    from sarreg.io.source import pick_asset

    def item(assets: dict[str, dict]) -> pystac.Item:
        return pystac.Item.from_dict({"type": "Feature", "stac_version": "1.0.0", "id": "x", "geometry": None,
                                      "properties": {"datetime": "2024-01-01T00:00:00Z"}, "links": [],
                                      "assets": assets})

    assert pick_asset(item({"HH": {"href": "a.tif"}, "HV": {"href": "b.tif"}}), None, "i") == "HH"
    assert pick_asset(item({"x": {"href": "a.tif", "roles": ["data", "vh"]},
                            "y": {"href": "b.tif", "roles": ["data", "VV"]}}), None, "i") == "y"
    only = item({"img": {"href": "a", "type": "image/tiff"}, "t": {"href": "t.png", "roles": ["thumbnail"]}})
    assert pick_asset(only, None, "i") == "img"
    assert pick_asset(item({"Data": {"href": "a.tif"}}), "data", "i") == "Data"  # case-insensitive key
    with pytest.raises(InputError, match="2 raster assets"):
        pick_asset(item({"a": {"href": "a.tif"}, "b": {"href": "b.tif"}}), None, "i")
    with pytest.raises(InputError, match="no asset 'c'"):
        pick_asset(item({"a": {"href": "a.tif"}}), "c", "i")


def test_batch_item_collection_over_http(server, small, tmp_path: Path) -> None:
    """``batch`` takes a STAC Item as REF and an ItemCollection as the scene list (items named by id, dated by
    their datetime, assets resolved against the collection's URL); 1-worker LocalCluster."""
    base, srv = server
    (srv.root / "mov_b.tif").write_bytes((srv.root / "mov.tif").read_bytes())
    _item(srv.root / "ref_item2.json", "REF2", {"VV": {"href": "ref.tif", "type": COG, "roles": ["data"]}})
    feats = []
    for iid, href, when in (("S1_B", "mov_b.tif", "2024-06-02T05:30:00Z"), ("S1_A", "mov.tif", "2024-05-01T05:30:00Z")):
        p = _item(tmp_path / f"{iid}.json", iid, {"vv": {"href": href, "type": COG, "roles": ["data"]},
                                                  "vh": {"href": "nope.tif", "type": COG, "roles": ["data"]}}, when)
        feats.append(json.loads(p.read_text()))
    (srv.root / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    res = _cli("batch", "--features", "sift", "--workers", "1", "--no-progress", "-o", tmp_path / "out",
               f"{base}/ref_item2.json", f"{base}/items.json")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())
    by = {r["scene"]: r for r in doc["scenes"]}
    assert list(by) == ["S1_A", "S1_B"]  # time order from the items' datetimes
    for r in by.values():
        assert abs(r["shift_x_px"] - SHIFT[0]) < 0.5 and abs(r["shift_y_px"] - SHIFT[1]) < 0.5, r
    assert str(by["S1_A"].get("date", "")).startswith("2024-05-01"), by["S1_A"]
    res = _cli("batch", "--features", "sift", "--workers", "1", "--no-progress", "--asset", "nope", "-o",
               tmp_path / "out2", f"{base}/ref_item2.json", f"{base}/items.json")
    assert res.exit_code == 1 and "nope" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_batch_list_of_item_urls_records_item_id_and_datetime(server, small, tmp_path: Path) -> None:
    """``--from-list`` takes a plain list of STAC Items (URLs and a path relative to the list, one per line): each
    item's chosen asset is a scene, and the summary rows (CSV and JSON) record the item id, datetime and asset; a scene
    given as a raster has none. 1-worker LocalCluster."""
    import csv

    base, srv = server
    (srv.root / "mov_c.tif").write_bytes((srv.root / "mov.tif").read_bytes())
    (srv.root / "items").mkdir(exist_ok=True)
    _item(srv.root / "items" / "L_A.json", "S1_LIST_A", {"vv": {"href": "../mov.tif", "type": COG, "roles": ["data"]}},
          "2024-07-01T05:30:00Z")
    _item(srv.root / "items" / "L_B.json", "S1_LIST_B", {"VV": {"href": "../mov_c.tif", "type": COG, "roles": ["data"]}},
          "2024-06-01T05:30:00Z")
    local = tmp_path / "local"
    local.mkdir()
    (local / "mov_d.tif").write_bytes((srv.root / "mov.tif").read_bytes())
    _item(local / "L_C.json", "S1_LIST_C", {"vv": {"href": "mov_d.tif", "type": COG, "roles": ["data"]}},
          "2024-08-01T05:30:00.250000Z")
    (tmp_path / "plain.tif").write_bytes((srv.root / "mov.tif").read_bytes())
    lst = tmp_path / "scenes.txt"
    lst.write_text(f"# items\n{base}/items/L_A.json\n{base}/items/L_B.json\n\nlocal/L_C.json\nplain.tif\n")
    res = _cli("batch", "--features", "sift", "--workers", "1", "--no-progress", "-o", tmp_path / "out",
               "--from-list", lst, f"{base}/ref.tif")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())
    by = {r["scene"]: r for r in doc["scenes"]}
    assert set(by) == {"S1_LIST_A", "S1_LIST_B", "S1_LIST_C", "plain"}, list(by)
    for r in by.values():
        assert r["status"] == "ok" and abs(r["shift_x_px"] - SHIFT[0]) < 0.5, r
    assert by["S1_LIST_A"]["stac_item"] == "S1_LIST_A" and by["S1_LIST_A"]["stac_asset"] == "vv"
    assert by["S1_LIST_A"]["stac_datetime"].startswith("2024-07-01T05:30:00")
    assert by["S1_LIST_B"]["stac_asset"] == "VV" and by["S1_LIST_C"]["stac_datetime"].startswith("2024-08-01T05:30:00.25")
    assert by["plain"]["stac_item"] is None and by["plain"]["stac_datetime"] is None
    with (tmp_path / "out" / "summary.csv").open() as f:
        rows = {r["scene"]: r for r in csv.DictReader(f)}
    assert rows["S1_LIST_B"]["stac_item"] == "S1_LIST_B" and rows["S1_LIST_B"]["stac_datetime"].startswith("2024-06-01")
    assert rows["plain"]["stac_item"] == "" and rows["plain"]["stac_datetime"] == ""


def test_stac_api_item_urls_without_suffix(server, small, tmp_path: Path) -> None:
    """A STAC API item endpoint (``.../collections/C/items/ID``, no ``.json``) is read as an Item."""
    from sarreg.io.source import is_stac

    base, srv = server
    items = srv.root / "collections" / "s1" / "items"
    items.mkdir(parents=True, exist_ok=True)
    _item(items / "REF_ID", "REF_ID", {"vv": {"href": f"{base}/ref.tif", "type": COG, "roles": ["data"]}})
    _item(items / "MOV_ID", "MOV_ID", {"vv": {"href": f"{base}/mov.tif", "type": COG, "roles": ["data"]}})
    assert is_stac(f"{base}/collections/s1/items/MOV_ID") and is_stac(f"{base}/search?collections=s1")
    assert not is_stac(f"{base}/collections/s1/items/MOV_ID/mov.tif") and not is_stac(str(tmp_path / "items"))
    res = _cli("register", "--features", "sift", "--no-warp", f"{base}/collections/s1/items/REF_ID",
               f"{base}/collections/s1/items/MOV_ID", tmp_path / "api.tif")
    assert res.exit_code == 0, res.output
    assert _shift_error(tmp_path / "api.report.json") < 0.5
    stac = json.loads((tmp_path / "api.report.json").read_text())["stages"]["relate"]["stac"]
    assert stac["moving"]["id"] == "MOV_ID" and stac["reference"]["asset"] == "vv"


def test_file_url_inputs_are_local_files(small, tmp_path: Path) -> None:
    """A ``file://`` asset href or MOVING is the local file: refused as OUT (even with --overwrite) and read by the
    warp as any local path."""
    import shutil

    ref, mov = (Path(shutil.copy(p, tmp_path / p.name)) for p in small)
    item = _item(tmp_path / "ref.json", "R", {"vv": {"href": ref.as_uri(), "type": "image/tiff", "roles": ["data"]}})
    before = ref.read_bytes()
    res = _cli("register", "--overwrite", "--features", "sift", item, mov, ref)
    assert res.exit_code == 1 and "same file as input" in res.output, res.output
    assert ref.read_bytes() == before
    out = tmp_path / "o.tif"
    res = _cli("register", "--features", "sift", ref, mov.as_uri(), out)
    assert res.exit_code == 0 and out.is_file(), res.output
    assert _shift_error(tmp_path / "o.report.json") < 0.5


def test_a_paged_search_result_is_followed_to_its_last_page(server, tmp_path: Path) -> None:
    """A STAC API search answers page by page (rel="next"): every page's items are scenes, over HTTP (absolute and
    relative next hrefs) and from local files; a next page behind a POST request or a loop of next links is one
    error line, not a silently shorter series."""
    from sarreg.errors import InputError
    from sarreg.io.source import expand_stac

    base, srv = server

    def page(folder: Path, name: str, ids: list[str], nxt: dict | None) -> None:
        feats = [json.loads(_item(tmp_path / f"{i}.json", i, {"vv": {"href": f"{i}.tif", "type": COG,
                                                                          "roles": ["data"]}}).read_text())
                 for i in ids]
        doc = {"type": "FeatureCollection", "features": feats, "numberMatched": 3, "links": [nxt] if nxt else []}
        (folder / name).write_text(json.dumps(doc))

    for folder, first in ((srv.root, f"{base}/p1.json"), (tmp_path, str(tmp_path / "p1.json"))):
        page(folder, "p1.json", ["A", "B"], {"rel": "next", "href": "p2.json"})
        page(folder, "p2.json", ["C"], {"rel": "self", "href": "p2.json"})
        names = [str(s) for s in expand_stac(first)]
        assert len(names) == 3 and [n.rsplit("/", 1)[-1] for n in names] == ["A.tif", "B.tif", "C.tif"], names
    page(tmp_path, "p1.json", ["A"], {"rel": "next", "href": f"{base}/search", "method": "POST", "body": {}})
    with pytest.raises(InputError, match="POST request"):
        expand_stac(tmp_path / "p1.json")
    page(tmp_path, "p1.json", ["A"], {"rel": "next", "href": "p2.json"})
    page(tmp_path, "p2.json", ["B"], {"rel": "next", "href": str(tmp_path / "p1.json")})
    with pytest.raises(InputError, match="lead back"):
        expand_stac(tmp_path / "p1.json")


def test_a_scene_list_behind_a_url(server, tmp_path: Path) -> None:
    """``--from-list https://.../list.txt``: read over HTTP (it was taken for the local path "https:/..."); its
    relative lines are resolved against the list's URL, absolute URLs kept, comments skipped."""
    from sarreg.cli.batch import _scene_list
    from sarreg.cli.options import input_arg

    base, srv = server
    (srv.root / "lists").mkdir(exist_ok=True)
    (srv.root / "lists" / "list.txt").write_text(f"# two dates\nscenes/a.tif\n\n{base}/b.tif\n")
    given = input_arg.convert(f"{base}/lists/list.txt", None, None)
    assert _scene_list((), given) == [f"{base}/lists/scenes/a.tif", f"{base}/b.tif"]
