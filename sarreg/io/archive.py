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
    gdal.ErrorReset()
    try:
        names = gdal.ReadDirRecursive(vsi(archive))
        msg = gdal.GetLastErrorMsg()
    except RuntimeError as e:  # (with gdal.UseExceptions())
        names, msg = None, str(e)
    finally:
        gdal.PopErrorHandler()
    if names is None:
        why = unreachable(archive) if is_network(archive) else None  # missing / denied, not a bad zip
        if why:
            raise InputError(f"{label or archive}: cannot reach remote zip archive ({why})")
        if "range downloading not supported" in msg.lower() or refuses_ranges(archive):
            raise InputError(f"{label or archive}: the server does not support HTTP range requests, which reading a "
                             "zip archive in place needs (GDAL /vsizip/ over /vsicurl/); download the file first and "
                             "give its local path")
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


def refuses_ranges(name: str | Path) -> bool:
    """Whether the HTTP(S) server behind a URL or ``/vsicurl/`` name serves no byte ranges: it answers a ``Range``
    request with the whole file (HTTP 200, not 206 Partial Content). One request, whose body is not read; False for
    other names and when the server cannot be asked."""
    import urllib.request

    from sarreg.io.source import query_url

    s = str(name)
    url = s[len("/vsicurl/"):] if s.startswith("/vsicurl/") else query_url(s) if s.startswith("/vsicurl?") else s
    if url is None or not url.lower().startswith(("http://", "https://")):
        return False
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=0-0"}), timeout=10) as r:
            return r.status == 200 or r.headers.get("Accept-Ranges", "").strip().lower() == "none"
    except (OSError, ValueError):  # (HTTP errors, no answer: said by ``unreachable`` or not at all)
        return False
