"""Input names: local files, URLs, object storage and archives, turned into what GDAL opens.

* a local path stays a ``Path``;
* ``/vsicurl/``, ``/vsis3/``, ``/vsigs/``, ``/vsiaz/``, ``/vsizip/`` and other ``/vsi...`` paths go to GDAL as is;
* ``http://`` / ``https://`` URLs become ``/vsicurl/<url>``, ``s3://bucket/key`` ``/vsis3/bucket/key``,
  ``gs://`` ``/vsigs/`` and ``az://`` ``/vsiaz/``;
* a local ``.zip`` holding one raster is opened as ``/vsizip/<zip>/<member>``; ``archive.zip/inner.tif`` picks a
  member.

Remote names are kept as strings everywhere: ``pathlib.Path`` would collapse the ``//`` of a URL. Remote reads use
GDAL's HTTP options from ``REMOTE_DEFAULTS`` unless the user's environment sets them.
"""
from __future__ import annotations

import os
import re
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sarreg.errors import InputError

Source = str | Path

_SCHEMES = {"http://": "/vsicurl/", "https://": "/vsicurl/", "s3://": "/vsis3/", "gs://": "/vsigs/",
            "az://": "/vsiaz/"}
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")  # a URL scheme (also "https:/x", a URL collapsed by pathlib)
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".img", ".vrt", ".nc", ".h5", ".hdf5")

# GDAL options for network reads; an environment variable of the same name wins.
REMOTE_DEFAULTS = {
    "GDAL_HTTP_MAX_RETRY": "4",       # retries on 429/502/503/504 and connection errors
    "GDAL_HTTP_RETRY_DELAY": "1",     # seconds before the first retry (GDAL grows it)
    "GDAL_HTTP_TIMEOUT": "60",        # seconds per request
    "GDAL_HTTP_CONNECTTIMEOUT": "15",  # seconds to connect
}
# Only while opening a remote raster: no directory listing and no probing for sidecar files (.aux.xml, .ovr, .msk)
OPEN_DEFAULTS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


def is_remote(src: Source) -> bool:
    """True for names GDAL reads through a virtual file system (URLs, ``/vsi...`` paths)."""
    s = str(src)
    return s.startswith("/vsi") or _URL.match(s) is not None


def apply_remote_defaults() -> None:
    """Put ``REMOTE_DEFAULTS`` in the process environment where the user has not set them (GDAL reads its config
    options from the environment, so both rasterio's and osgeo's GDAL see them, also in batch workers)."""
    for k, v in REMOTE_DEFAULTS.items():
        os.environ.setdefault(k, v)


@contextmanager
def open_options(src: Source) -> Iterator[None]:
    """GDAL config options for opening ``src`` (``OPEN_DEFAULTS`` for remote names, unless set by the user)."""
    if not is_remote(src):
        yield
        return
    apply_remote_defaults()
    import rasterio

    opts = {k: v for k, v in OPEN_DEFAULTS.items() if k not in os.environ}
    with rasterio.Env(**opts):
        yield


def _zip_members(zpath: Path) -> list[str]:
    try:
        with zipfile.ZipFile(zpath) as z:
            names = [i.filename for i in z.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"{zpath}: not a readable zip archive ({e})") from None
    return [n for n in names if n.lower().endswith(RASTER_SUFFIXES)]


def _split_zip(p: Path) -> tuple[Path, str] | None:
    """``archive.zip/inner/name.tif`` (archive a local file) -> (archive, "inner/name.tif")."""
    for parent in p.parents:
        if parent.suffix.lower() == ".zip" and parent.is_file():
            return parent, str(p.relative_to(parent))
    return None


def resolve_input(src: Source) -> Source:
    """A user's input name -> what GDAL opens: a local ``Path`` or a ``/vsi...`` string (see module docstring).

    Idempotent. Raises InputError (one line naming the input) for a zip without exactly one raster.
    """
    s = str(src)
    if s.startswith("/vsi"):
        return s
    for scheme, vsi in _SCHEMES.items():
        if s.lower().startswith(scheme):
            rest = s[len(scheme):]
            return vsi + (s if vsi == "/vsicurl/" else rest)
    if "://" in s:
        return s  # another URL scheme GDAL may know (e.g. a driver connection string)
    p = Path(src)
    if p.suffix.lower() == ".zip" and p.is_file():
        members = _zip_members(p)
        if len(members) == 1:
            return f"/vsizip/{p}/{members[0]}"
        if not members:
            raise InputError(f"{p}: zip archive holds no raster ({', '.join(RASTER_SUFFIXES[:2])}, ...)")
        raise InputError(f"{p}: zip archive holds {len(members)} rasters ({', '.join(members[:8])}"
                         f"{', ...' if len(members) > 8 else ''}); name one as {p}/{members[0]}")
    if not p.exists():
        z = _split_zip(p)
        if z is not None:
            return f"/vsizip/{z[0]}/{z[1]}"
    return p


def local_path(src: Source) -> Path | None:
    """The local file behind an input (for write-set checks), or None for remote names."""
    if is_remote(src):
        s = str(src)
        if s.startswith("/vsizip/") and ".zip" in s.lower():  # a local archive: the archive file itself
            head = s[len("/vsizip/"):]
            i = head.lower().index(".zip") + 4
            if not head.startswith("/vsi"):
                return Path(head[:i])
        return None
    return Path(src)


def input_name(src: Source) -> str:
    """File name of an input: last component of its path, URL (without query) or archive member."""
    s = str(src).split("?", 1)[0].rstrip("/")
    return s.rsplit("/", 1)[-1]


def input_folder(src: Source) -> Path | None:
    """Local folder of an input (of the archive for a local zip), where outputs go by default; None when remote."""
    p = local_path(resolve_input(src))
    return p.parent if p is not None else None
