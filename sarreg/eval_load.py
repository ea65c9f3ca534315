"""Evaluation pairs of ``sarreg.evaluate``: the pairs-folder layout (``ref.*``, ``moving.*``, ``gt.json`` per pair, or
a benchmark folder with ``index.json``), ground-truth parsing and the checks made before any pair runs (every id
asked for exists, every image opens and has the size gt.json gives)."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from sarreg.errors import InputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


# ------------------------------------------------------------------------------------------------ pairs
@dataclass
class Pair:
    """One evaluation pair. H: 3 x 3 moving -> reference pixel (None when there is no ground truth)."""

    id: str
    ref: Path
    moving: Path
    H: np.ndarray | None
    ref_size: tuple[int, int] | None = None      # (W, H) from gt.json, checked against the file when read
    moving_size: tuple[int, int] | None = None
    source: str = ""
    difficulty: str = ""
    large: bool = False


def _find_image(folder: Path, stem: str, hint: str | None) -> Path:
    if hint:
        p = folder / hint
        if p.is_file():
            return p
    cands = sorted(p for p in folder.iterdir() if p.stem == stem and p.suffix.lower() in IMAGE_SUFFIXES)
    if not cands:
        raise InputError(f"{folder}: no {stem}.* image ({'/'.join(IMAGE_SUFFIXES)})")
    return cands[0]


def read_gt(path: Path) -> dict[str, Any]:
    """Parse and check one gt.json (key "H": finite, invertible 3 x 3)."""
    try:
        gt = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable ground truth ({e})") from None
    try:
        H = np.asarray(gt["H"], dtype=np.float64)
    except (TypeError, KeyError, ValueError):
        H = None
    if H is None or H.shape != (3, 3) or not np.isfinite(H).all() or abs(np.linalg.det(H)) < 1e-12:
        raise InputError(f"{path}: key 'H' must be a finite invertible 3x3 matrix")
    gt["H"] = H
    return gt


class PairList(list):
    """``load_pairs``' pairs (a list of ``Pair``) and the sub-folders it skipped: ``skipped`` {name: why}."""

    skipped: dict[str, str]

    def __init__(self, pairs: Iterable[Pair] = (), skipped: dict[str, str] | None = None) -> None:
        super().__init__(pairs)
        self.skipped = dict(skipped or {})


def load_pairs(pairs_dir: str | Path, ids: Iterable[str] | None = None, skip_large: bool = False,
               all_ids: bool = False) -> PairList:
    """All pairs of a folder; optionally only ``ids`` (``all_ids``: each of them must be there). With an
    ``index.json`` (a list of {"id", "set", "source", ...}) in the index's order, a pair's folder being ``<id>`` or,
    as in ../shared/eval, ``pairs/<id>`` (set "sar") / ``geo_pairs/<id>`` (set "geo"); else the sub-folders
    holding gt.json, sorted by name: one without gt.json is skipped with a warning naming it (a table over fewer
    pairs must not pass for the whole folder's score) and listed in the result's ``skipped``; hidden ones
    (``.name``, e.g. make-pairs' temporary folders) are ignored."""
    root = Path(pairs_dir)
    if not root.is_dir():
        raise InputError(f"{root}: pairs folder not found")
    want = None if ids is None else set(ids)
    folders, skipped = _pair_folders(root, want)
    missing = sorted((want or set()) - {sub.name for sub, _ in folders}) if all_ids else []
    asked = [pid for pid in missing if pid in skipped]
    if asked:
        more = f"; {len(asked) - 1} more ids asked for have none either" if len(asked) > 1 else ""
        raise InputError(f"{root / asked[0]}: {skipped[asked[0]]}, cannot evaluate pair {asked[0]!r} (asked for{more})")
    if skipped:
        names = [f"{k} ({v})" for k, v in skipped.items()]
        log.warning("%s: %d sub-folder(s) skipped, not evaluated: %s%s", root, len(names), ", ".join(names[:5]),
                    " ..." if len(names) > 5 else "")
    if missing:  # (a table over fewer pairs than asked for would read as the score of those asked for)
        raise InputError(f"{root}: no pair {', '.join(map(repr, missing[:5]))}{' ...' if len(missing) > 5 else ''} "
                         f"({len(missing)} of the {len(want or ())} ids asked for not found)")
    out = []
    for sub, entry in folders:
        gt = read_gt(sub / "gt.json")
        pair = Pair(id=str(gt.get("id", sub.name)),
                    ref=_find_image(sub, "ref", gt.get("ref")), moving=_find_image(sub, "moving", gt.get("moving")),
                    H=gt["H"], ref_size=_wh(gt.get("ref_size_wh")), moving_size=_wh(gt.get("moving_size_wh")),
                    source=str(gt.get("source", entry.get("source", ""))),
                    difficulty=str(gt.get("difficulty", entry.get("difficulty", ""))),
                    large=bool(gt.get("large", entry.get("large", False))))
        if skip_large and pair.large:
            continue
        out.append(pair)
    if not out:
        raise InputError(f"{root}: no pairs (sub-folders with ref.*, moving.*, gt.json)")
    return PairList(out, skipped)


def _pair_folders(root: Path, want: set[str] | None) -> tuple[list[tuple[Path, dict[str, Any]]], dict[str, str]]:
    """-> ([(pair folder, index entry)], {skipped sub-folder name: why}). A gt.json that is there but cannot be read
    (a directory, a broken link) is read_gt's error, not a skip."""
    index = root / "index.json"
    if not index.is_file():
        subs = [p for p in sorted(root.iterdir())
                if p.is_dir() and not p.name.startswith(".") and (want is None or p.name in want)]
        has_gt = {p: os.path.lexists(p / "gt.json") for p in subs}
        return [(p, {}) for p in subs if has_gt[p]], {p.name: "no gt.json" for p in subs if not has_gt[p]}
    try:
        entries = json.loads(index.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{index}: unreadable index ({e})") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "id" in e for e in entries):
        raise InputError(f"{index}: expected a list of {{\"id\": ...}} entries")
    out = []
    for e in entries:
        pid = str(e["id"])
        if want is not None and pid not in want:
            continue
        cands = [root / pid, root / ("geo_pairs" if e.get("set") == "geo" else "pairs") / pid]
        sub = next((c for c in cands if (c / "gt.json").is_file()), None)
        if sub is None:
            raise InputError(f"{index}: pair {pid!r} has no folder with gt.json ({cands[0]} or {cands[1]})")
        out.append((sub, e))
    return out, {}


def _wh(v: Any) -> tuple[int, int] | None:
    return None if v is None else (int(v[0]), int(v[1]))


def image_wh(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, from its header."""
    from sarreg.io.raster import open_dataset

    with open_dataset(path) as ds:
        return ds.width, ds.height


def check_sizes(pair: Pair, ref_wh: tuple[int, int], mov_wh: tuple[int, int]) -> None:
    """InputError when an image's (width, height) differs from the size its gt.json gives."""
    for name, wh, got, path in (("ref", pair.ref_size, ref_wh, pair.ref), ("moving", pair.moving_size, mov_wh,
                                                                          pair.moving)):
        if wh is not None and tuple(wh) != tuple(got):
            raise InputError(f"{path}: size {got[0]}x{got[1]} differs from gt.json {name}_size_wh {wh}")


def check_pairs(pairs: Sequence[Pair]) -> None:
    """Open every image of ``pairs`` (its header only) and compare its size with gt.json's: an image that is not a
    raster or does not have the size of its ground truth is one error before any pair runs (found mid-run, it
    would end an evaluation that has run for hours). Two pairs with one id (a pair folder copied with its gt.json
    "id") are refused: their predictions would share one file and their rows one name."""
    seen: dict[str, Path] = {}
    for pair in pairs:
        if pair.id in seen:
            raise InputError(f"{pair.moving.parent}: pair id {pair.id!r} is also the id of {seen[pair.id].parent} "
                             "(gt.json \"id\"); give each pair its own")
        seen[pair.id] = pair.moving
        check_sizes(pair, image_wh(pair.ref), image_wh(pair.moving))

