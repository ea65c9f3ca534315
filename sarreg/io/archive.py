"""Zip archives as inputs, local or remote, read through GDAL's virtual file systems.

One code path for ``product.zip`` on disk and ``https://.../product.zip`` or ``s3://.../product.zip``: the archive
is named by its GDAL name (a local path, or ``/vsicurl/<url>``, ``/vsis3/...``) and its members by
``/vsizip/<archive>/<member>``. A remote archive is read by HTTP range requests (its central directory, then the
members asked for), never downloaded whole.
"""
from __future__ import annotations

from pathlib import Path

from sarreg.errors import InputError


def vsi(archive: str | Path, member: str = "") -> str:
    """GDAL name of ``member`` of ``archive`` (the archive's root for an empty member). An archive name that does
    not end in ``.zip`` (a signed URL's query: ``.../X.zip?sig=...``) is braced, ``/vsizip/{name}/member``: GDAL
    would otherwise split the name at its ``.zip`` and ask the server for members appended to the query."""
    a = str(archive)
    base = f"/vsizip/{a}" if a.lower().endswith(".zip") else f"/vsizip/{{{a}}}"
    return f"{base}/{member}" if member else base


def members(archive: str | Path, label: str | Path | None = None) -> list[str]:
    """Files of the archive (paths inside it, folders left out); InputError naming ``label`` (default: the
    archive) when it is not a readable zip."""
    from osgeo import gdal

    from sarreg.io.source import is_network, unreachable

    gdal.PushErrorHandler("CPLQuietErrorHandler")  # (GDAL's "HTTP response code" warning: the error line is ours)
    try:
        names = gdal.ReadDirRecursive(vsi(archive))
    except RuntimeError:  # (with gdal.UseExceptions())
        names = None
    finally:
        gdal.PopErrorHandler()
    if names is None:
        why = unreachable(archive) if is_network(archive) else None  # missing / denied, not a bad zip
        if why:
            raise InputError(f"{label or archive}: cannot reach remote zip archive ({why})")
        raise InputError(f"{label or archive}: not a readable zip archive")
    return sorted(n for n in names if not n.endswith("/"))


def read(archive: str | Path, member: str, label: str | Path | None = None) -> bytes:
    """The bytes of one member; InputError naming ``label`` when it is missing or unreadable."""
    from osgeo import gdal

    name = vsi(archive, member)
    data = None
    try:
        st = gdal.VSIStatL(name)
        f = gdal.VSIFOpenL(name, "rb") if st is not None else None
        if f is not None:
            try:
                data = gdal.VSIFReadL(1, st.size, f)
            finally:
                gdal.VSIFCloseL(f)
    except RuntimeError:
        data = None
    if data is None or len(data) != st.size:
        raise InputError(f"{label or archive}: cannot read {member} from the zip archive")
    return bytes(data)
