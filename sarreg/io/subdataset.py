"""GDAL subdataset names and files that hold several rasters (netCDF, HDF5, Zarr, NITF, multi-page TIFF ...).

A product in netCDF or HDF5 (SNAP's netCDF export, HDF5 SLC / GCOV products) holds its rasters as subdatasets, each
named by GDAL as ``DRIVER:"file":name`` (``NETCDF:"s1.nc":Sigma0_VV``, ``HDF5:"p.h5"://science/grids/HHHH``,
``NITF_IM:1:f.ntf``, ``GTIFF_DIR:2:f.tif``, ``SENTINEL1_CALIB:SIGMA0:X.SAFE/manifest.safe:IW_VV:AMPLITUDE``). Such a
name is an input as it is; the file itself, when it has no band of its own, is an error that lists the names.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sarreg.errors import InputError

_NAME = re.compile(r"^(?P<drv>[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*):(?P<rest>.+)$")
_QUOTED = re.compile(r'"([^"]+)"')
# subdataset prefixes that are not themselves a driver's name (GDAL's HDF4, NITF, GTiff and SAFE drivers)
_PREFIXES = {"HDF4_SDS", "HDF4_EOS", "HDF4_GR", "HDF4_GD", "NITF_IM", "GTIFF_DIR", "SENTINEL1_CALIB",
             "SENTINEL1_DS"}
SHOWN = 6  # subdataset names an error line lists


def _exists(s: str) -> bool:
    """A file of that name exists (a name the OS refuses, e.g. too long, does not)."""
    try:
        return Path(s).exists()
    except OSError:
        return False


def _match(s: str) -> re.Match | None:
    """The match of a GDAL subdataset name (its prefix a GDAL driver's, or one of ``_PREFIXES``), else None."""
    m = _NAME.match(s)
    if m is None or m["rest"].startswith("//") or _exists(s):
        return None
    drv = m["drv"].upper()
    if drv not in _PREFIXES:
        from osgeo import gdal

        if gdal.GetDriverByName(drv) is None:
            return None
    return m


def subdataset_name(s: str) -> str | None:
    """``s`` when it is a GDAL subdataset name, else None (URLs such as ``s3://``, Windows drive letters and
    existing files are not).

    Raises InputError naming the file when the local file it quotes does not exist (GDAL would only say it cannot
    open the name)."""
    m = _match(s)
    if m is None:
        return None
    q = _QUOTED.search(m["rest"])
    if q is not None and not q[1].startswith("/vsi") and not _exists(q[1]):
        raise InputError(f"{q[1]}: file not found (in the subdataset name {s})")
    return s


def container_error(path: Any, ds: Any) -> str | None:
    """The error line for a raster file that holds subdatasets and no band of its own (a netCDF / HDF5 container):
    what it holds and how to name one; None for any other dataset."""
    if ds.count > 0:
        return None
    tags = ds.tags(ns="SUBDATASETS")  # GDAL's names as it opens them, and what each holds
    subs = [f"{tags[k]} ({tags.get(k[:-4] + 'DESC', '')})".replace(" ()", "") for k in sorted(
        (k for k in tags if k.endswith("_NAME")), key=lambda k: int(k.split("_")[1]))]
    if not subs:
        return None
    shown = "; ".join(subs[:SHOWN]) + (f" ... ({len(subs) - SHOWN} more: gdalinfo lists them)"
                                       if len(subs) > SHOWN else "")
    return f"{path}: holds {len(subs)} subdataset(s) and no band of its own; name one as the input: {shown}"


def _parts(s: str) -> tuple[str, list[str]] | None:
    """(the file, the other parts) of a subdataset name; None for other names."""
    m = _match(s)
    if m is None:
        return None
    q = _QUOTED.search(m["rest"])
    if q is not None:
        return q[1], [m["rest"][:q.start()], m["rest"][q.end():]]
    rest = m["rest"].split(":")  # (unquoted: NETCDF:f.nc:VV, NITF_IM:1:f.ntf; the file is the part with a suffix)
    file = next((p for p in rest if Path(p).suffix), rest[-1])
    return file, [p for p in rest if p is not file]


def subdataset_file(s: str) -> str | None:
    """The file a subdataset name reads (an input that outputs must not overwrite); None for other names."""
    parts = _parts(s)
    return parts[0] if parts is not None else None


def subdataset_file_name(s: str) -> str | None:
    """A file name for a subdataset name (outputs, batch keys, dates are named after it): the file's stem, the
    subdataset's parts, the file's suffix (``NETCDF:"d/s1_20240101.nc":Sigma0_VV`` -> ``s1_20240101_Sigma0_VV.nc``;
    a ``manifest.safe`` is named after its product folder); None for other names."""
    parts = _parts(s)
    if parts is None:
        return None
    f = Path(parts[0])
    safe = f.name.lower() == "manifest.safe"
    sub = [p for part in parts[1] for p in re.split(r"[:/]+", part) if p]
    return "_".join([f.parent.stem if safe else f.stem, *sub]) + (".safe" if safe else f.suffix)


def with_absolute_file(s: str) -> str:
    """A subdataset name with the local file it reads made absolute (batch workers may run elsewhere); other names
    unchanged."""
    parts = _parts(s)
    if parts is None or parts[0].startswith("/vsi") or Path(parts[0]).is_absolute():
        return s
    f = parts[0]
    for old in (f'"{f}"', f":{f}"):
        if old in s:
            return s.replace(old, old.replace(f, str(Path(f).resolve())), 1)
    return s
