"""What sarreg reads from a raster, before a registration runs (``sarreg info``).

The same reading as ``register`` and ``extract`` (``sarreg.io.raster.open_scene``): the band, how its values are
interpreted, the nodata value and where it comes from (the file's tag, a fill value found in the data, or
``--nodata``), the share of valid pixels, the grey-level range the network sees, and where the raster sits on the
ground. Two decimated reads at most (bounded memory), no network.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from sarreg.config import PreprocessConfig, nodata_value
from sarreg.io.gcps import located
from sarreg.io.raster import STATS_MAX_SIDE, Scene, decimated_shape, open_dataset, open_scene, read_unit
from sarreg.io.source import Source

UNITS = {"linear": "dB", "amplitude": "dB", "db": "dB", "display": "grey level"}


def describe(path: Source, pre: PreprocessConfig = PreprocessConfig()) -> dict[str, Any]:
    """A JSON-ready description of one raster as sarreg reads it (InputError for what ``register`` would refuse)."""
    scene = open_scene(path, pre)
    s = min(1.0, STATS_MAX_SIDE / max(scene.width, scene.height))
    _, valid = read_unit(scene, None, decimated_shape(scene, s) if s < 1 else None, pre)
    with open_dataset(scene.path) as ds:
        profile = ds.profile
        desc = ds.descriptions[scene.band - 1] if ds.descriptions else None
        tag = ds.nodatavals[scene.band - 1]
        overviews = len(ds.overviews(scene.band))
    d: dict[str, Any] = {
        "path": str(scene.path), "driver": profile.get("driver"), "width": scene.width, "height": scene.height,
        "bands": scene.count, "alpha_band": scene.alpha, "dtype": scene.dtype, "band": scene.band,
        "band_description": desc or None,
        "kind": scene.kind, "nodata": {"value": nodata_value(scene.nodata), "from": scene.nodata_from},
        "valid_fraction": round(float(valid.mean()), 4),
        "range": {"low": round(scene.lo, 2), "high": round(scene.hi, 2), "unit": _unit(scene),
                  "percentiles": [pre.lo_pct, pre.hi_pct]},
        "located_by": "geotransform" if scene.georeferenced else
        located(scene.gcps) if scene.gcps is not None else
        "geotransform without CRS" if scene.local else None,
        "compression": profile.get("compress"), "tiled": bool(profile.get("tiled")),
        "block": [profile.get("blockxsize"), profile.get("blockysize")], "overviews": overviews,
    }
    if scene.undeclared is not None and scene.nodata_from == "file":  # a second fill beside a tag that marks holes
        d["nodata"]["also"] = {"value": nodata_value(scene.undeclared.value), "share": round(scene.undeclared.share, 4)}
    elif scene.undeclared is not None:  # (with the file's own tag, which marks almost no pixel, when it has one)
        d["nodata"].update(share=round(scene.undeclared.share, 4), tag=nodata_value(tag))
        if scene.zero is not None:  # 0 of an unsigned or linear float band that declares nothing: no measurement
            d["nodata"]["rule"] = f"0 is no measurement in {scene.dtype} data"
    if scene.scaling.scaled or scene.scaling.unit:  # the band's declared scale / offset / unit, applied on reading
        d["scaling"] = scene.scaling.to_dict()
    if scene.exclude is not None:
        d["excluded_fraction"] = scene.exclude.fraction
    if scene.crs is not None and scene.geolocated:  # (by a geotransform, or by GCPs in that CRS)
        d["crs"] = scene.crs.to_string() if scene.crs.to_epsg() is None else f"EPSG:{scene.crs.to_epsg()}"
    if scene.georeferenced and scene.crs is not None:
        a = scene.transform
        d["pixel_size"] = [round(math.hypot(a.a, a.d), 6), round(math.hypot(a.b, a.e), 6)]
        w, h = scene.width - 0.5, scene.height - 0.5  # all four corners: a rotated geotransform's envelope
        corners = scene.xy_to_map(np.array([[-0.5, -0.5], [w, -0.5], [-0.5, h], [w, h]]))
        d["bounds"] = [round(float(v), 6) for v in (*corners.min(0), *corners.max(0))]
    return d


def _unit(scene: Scene) -> str:
    """The grey range's unit: integer dB files are often dB x 10 or x 100, which the file does not always say (when
    it declares a scale, the values are read scaled: dB)."""
    if scene.kind == "db" and not scene.dtype.startswith("float") and not scene.scaling.scaled:
        return "integer dB as stored (scale unknown, e.g. dB x 100)"
    return UNITS.get(scene.kind, "dB")


def _scaling(s: dict[str, Any] | None) -> str:
    """" x 0.01 - 40 (unit dB)": the declared scaling as applied to the stored values, or ""."""
    if not s:
        return ""
    text = (f" x {s['scale']:g}" if s["scale"] != 1 else "") + \
        (f" {'-' if s['offset'] < 0 else '+'} {abs(s['offset']):g}" if s["offset"] else "")
    return text + (f" (unit {s['unit']})" if s["unit"] else "")


def _value(v: float | str | None) -> str:
    return "none" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def summary_lines(d: dict[str, Any]) -> list[str]:
    """``describe``'s result as a few lines of text (``sarreg info`` without --json)."""
    nd = d["nodata"]
    tag = ("the file declares none" if nd.get("tag") is None else
           f"the file's tag {_value(nd['tag'])} marks almost no pixel")
    also = nd.get("also")
    origin = {"file": "the file's tag" if nd["value"] is not None else "the file declares none",
              "found": f"found in the data, {100 * nd.get('share', 0):.1f} % of the pixels; {tag}" if "rule" not in nd
              else f"found: undeclared fill value, {nd['rule']}; {100 * nd['share']:.1f} % of the pixels; {tag}",
              "option": "--nodata"}[nd["from"]]
    if also:
        origin += f"), and {_value(also['value'])} (found in the data, {100 * also['share']:.1f} % of the pixels"
    band = f"band {d['band']} of {d['bands']}" + (f" ({d['band_description']})" if d["band_description"] else "")
    if d.get("alpha_band"):
        band += f" (band {d['alpha_band']}: alpha, read as the validity mask)"
    where = d["located_by"] or "pixel space (no georeference)"
    if d.get("crs"):
        where += f", {d['crs']}"
    if d.get("pixel_size"):
        where += f", pixel {d['pixel_size'][0]:g} x {d['pixel_size'][1]:g}"
    store = f"{d['driver']}, {d['compression'] or 'uncompressed'}, {'tiled' if d['tiled'] else 'striped'}, " \
            f"{d['overviews']} overview(s)"
    rng = d["range"]
    lines = [f"{d['path']}",
             f"  {d['width']} x {d['height']} px, {band}, {d['dtype']}{_scaling(d.get('scaling'))} read as {d['kind']}",
             f"  nodata: {_value(nd['value'])} ({origin}); valid: {100 * d['valid_fraction']:.1f} % of the pixels",
             f"  grey range ({rng['percentiles'][0]:g}-{rng['percentiles'][1]:g} %): {rng['low']:g} .. {rng['high']:g} "
             f"{rng['unit']}",
             f"  located by: {where}",
             f"  stored as: {store}"]
    if "excluded_fraction" in d:
        lines.append(f"  excluded (--exclude): {100 * d['excluded_fraction']:.1f} % of the valid pixels")
    return lines
