"""Acquisition dates of scenes (metadata tags, else the file name): the order of a series and of a chain."""
from __future__ import annotations

import logging
import re
from datetime import datetime
from pathlib import Path

log = logging.getLogger(__name__)

_DATE_RE = re.compile(r"(?<!\d)(\d{4})(-?)(\d{2})\2(\d{2})(?:[T_ ]?(\d{2}):?(\d{2}):?(\d{2}))?(?!\d)")
_DATE_TAGS = ("ACQUISITION_START_TIME", "ACQUISITION_START", "ACQUISITION_DATE", "ACQUISITION_TIME",
              "FIRST_LINE_TIME", "TIFFTAG_DATETIME", "DATE_ACQUIRED", "DATETIME")


def parse_date(text: str) -> str | None:
    """First plausible date (and time) in a string -> ISO 8601 ('2024-01-31' or '2024-01-31T05:40:12').

    Understands TIFF's '2024:01:31 05:40:12', ISO '2024-01-31T05:40:12.1Z', compact '20240131T054012' (Sentinel-1
    names) and '20240131' / '2024-01-31' anywhere in a file name.
    """
    s = str(text).strip()
    m = re.match(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})", s)  # TIFF DateTime
    if m:
        parts: list[str | None] = [m.group(i) for i in range(1, 7)]
    else:
        for m in _DATE_RE.finditer(s):
            parts = [m.group(1), m.group(3), m.group(4), m.group(5), m.group(6), m.group(7)]
            if _valid_date(parts):
                break
        else:
            return None
    if not _valid_date(parts):
        return None
    y, mo, d, hh, mi, ss = parts
    try:
        if hh is None:
            return datetime(int(y), int(mo), int(d)).date().isoformat()  # type: ignore[arg-type]
        return datetime(int(y), int(mo), int(d), int(hh), int(mi), int(ss)).isoformat()  # type: ignore[arg-type]
    except ValueError:  # e.g. 31 February
        return None


def _valid_date(parts: list[str | None]) -> bool:
    y, mo, d = int(parts[0]), int(parts[1]), int(parts[2])  # type: ignore[arg-type]
    if not (1950 <= y <= 2100 and 1 <= mo <= 12 and 1 <= d <= 31):
        return False
    if parts[3] is not None and not (int(parts[3]) < 24 and int(parts[4]) < 60 and int(parts[5]) < 61):  # type: ignore
        return False
    return True


def _tags(path: str | Path) -> dict[str, str]:
    """Upper-cased metadata of the default and IMAGE_STRUCTURE domains and of band 1 (dataset tags win)."""
    from sarreg.io.raster import open_dataset

    tags: dict[str, str] = {}
    with open_dataset(path) as ds:
        for domain in (None, "IMAGE_STRUCTURE"):
            tags.update({k.upper(): v for k, v in ds.tags(ns=domain).items()})
        if ds.count:
            tags.update({k.upper(): v for k, v in ds.tags(1).items() if k.upper() not in tags})
    return tags


def scene_date(path: str | Path, warnings: list[str] | None = None) -> str | None:
    """Acquisition date of a raster: its STAC item's datetime, metadata (ACQUISITION* / TIFFTAG_DATETIME tags), else
    the file name.

    An unreadable file is no error here (its registration reports it): the reason is logged and appended to
    ``warnings`` when given, and the date comes from the file name.
    """
    from sarreg.io.source import input_name, resolve_input, stac_info

    info = stac_info(path)
    if info and info.get("datetime") and (d := parse_date(str(info["datetime"]))):
        return d  # a STAC item's datetime
    try:
        path = resolve_input(path)
        tags = _tags(path)
    except Exception as e:  # noqa: BLE001 - rasterio / GDAL raise several types for unreadable files
        from sarreg.batch.files import error_text

        msg = f"date from the file name: metadata unreadable ({error_text(e)})"
        log.info("%s: %s", path, msg)
        if warnings is not None:
            warnings.append(msg)
        tags = {}
    for key in _DATE_TAGS:
        if key in tags and (d := parse_date(tags[key])):
            return d
    for key, value in tags.items():
        if "ACQUISITION" in key and (d := parse_date(value)):
            return d
    return parse_date(input_name(path))
