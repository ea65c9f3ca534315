"""Input names: local files, URLs, object storage and archives, turned into what GDAL opens.

* a local path stays a ``Path``; a GDAL subdataset name (``NETCDF:"f.nc":VV``) a string (``sarreg.io.subdataset``);
* ``/vsicurl/``, ``/vsis3/``, ``/vsigs/``, ``/vsiaz/``, ``/vsizip/`` and other ``/vsi...`` paths go to GDAL as is;
* ``http(s)://`` URLs become ``/vsicurl/<url>``, ``s3://b/k`` ``/vsis3/b/k``, ``gs://`` / ``az://`` ``/vsigs/`` ...;
* a ``.zip`` holding one raster, local or a URL / object name, is opened as ``/vsizip/<zip>/<member>`` (a remote
  one by range requests, never downloaded whole); a local ``archive.zip/inner.tif`` picks a member;
* a Sentinel-1 product (``X.SAFE`` folder, its ``manifest.safe`` or a zip of it, local or remote) becomes the name
  of its measurement raster in the polarisation asked for (``sarreg.io.safe``);
* a STAC Item (a ``.json`` file, URL or object, parsed with pystac) becomes the name of one of its assets: the one
  given (``asset``), else the asset whose key, title or roles name VV (else HH), else its only raster asset;
  relative asset hrefs are resolved against the item's location (``stac_info`` gives the item's id and datetime).

Remote names are kept as strings everywhere: ``pathlib.Path`` would collapse the ``//`` of a URL. Remote reads use
GDAL's HTTP options from ``REMOTE_DEFAULTS`` unless the user's environment sets them.
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sarreg.errors import InputError
from sarreg.io.subdataset import subdataset_file, subdataset_file_name, subdataset_name

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
    "GDAL_HTTP_LOW_SPEED_TIME": "30",  # a server sending nothing (< 1 byte/s) for 30 s fails the read, not retried:
    "GDAL_HTTP_LOW_SPEED_LIMIT": "1",  # without it, 5 attempts x GDAL_HTTP_TIMEOUT (333 s to the error)
}
# Only while opening a remote raster: no directory listing and no probing for sidecar files (.aux.xml, .ovr, .msk)
OPEN_DEFAULTS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


def is_remote(src: Source) -> bool:
    """True for names GDAL reads through a virtual file system (URLs, ``/vsi...`` paths)."""
    return str(src).startswith("/vsi") or _URL.match(str(src)) is not None


NETWORK_VSI = ("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift", "/vsiwebhdfs")


def is_network(src: Source) -> bool:
    """True for a GDAL name read over the network (also inside ``/vsizip/``): not a local archive member."""
    return any(v in str(src) for v in NETWORK_VSI)


def apply_remote_defaults() -> None:
    """``REMOTE_DEFAULTS`` into the environment where unset (rasterio's, osgeo's GDAL and batch workers read it)."""
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


# the one stat of ``unreachable``: the failed open has already retried and waited; a second round would double the
# time to the error (HTTP 500: 42 s, no answer: 644 s)
STAT_OPTIONS = {"GDAL_HTTP_MAX_RETRY": "0", "GDAL_HTTP_TIMEOUT": "10"}


def unreachable(path: Source) -> str | None:
    """Why GDAL cannot stat a network path (it does not exist, access is denied, a server error, no credentials, no
    answer), or None when it can: GDAL's open error ("not recognized as being in a supported file format") would
    blame the format. One request, no retries (``STAT_OPTIONS``): called after an open that failed."""
    from osgeo import gdal

    old = {k: gdal.GetThreadLocalConfigOption(k, None) for k in STAT_OPTIONS}
    gdal.PushErrorHandler("CPLQuietErrorHandler")  # (GDAL's "HTTP response code" warning: the error line is ours)
    try:
        for k, v in STAT_OPTIONS.items():
            gdal.SetThreadLocalConfigOption(k, v)
        gdal.VSICurlPartialClearCache(str(path))  # (a failure cached by an earlier read would come back unexplained)
        gdal.VSIErrorReset()
        gdal.ErrorReset()
        with open_options(path):
            if gdal.VSIStatL(str(path)) is not None:
                return None
        cpl = gdal.GetLastErrorMsg()  # (first: with exceptions on, GDAL < 3.7's next call would reset it)
        why = (gdal.VSIGetLastErrorMsg() or cpl or "").strip().splitlines()
    finally:
        gdal.PopErrorHandler()
        for k, v in old.items():
            gdal.SetThreadLocalConfigOption(k, v)
    return network_reason(why[0] if why else "")


def network_reason(msg: str) -> str:
    """GDAL's message of a failed network read -> the reason in words (denied / server error / GDAL's own, such as
    missing AWS credentials / not found)."""
    code = re.search(r"response code\b.*\b(\d{3})\s*$", msg)  # "HTTP response code on URL: 403"
    if code and code.group(1) in ("401", "403"):
        return f"access denied, HTTP {code.group(1)}: check the credentials or the URL's signature"
    if code and code.group(1).startswith("5"):
        return f"server error, HTTP {code.group(1)}"
    if not msg or code and code.group(1) in ("404", "410"):  # (GDAL's stat of a missing file says nothing)
        return "not found" + (f", HTTP {code.group(1)}" if code else "")
    if re.search(r"response code\b.*\b0\s*$|too slow|timed out", msg):  # code 0: no HTTP answer at all
        return "no answer from the server: down, refusing connections or too slow"
    if msg and not code and "response code" not in msg:  # GDAL's own reason (e.g. no AWS credentials)
        return msg[:160]
    return "not found, or the server did not answer"


def is_zip_name(src: Source) -> bool:
    """A name ending in ``.zip`` (a URL's query and fragment left out)."""
    return str(src).split("?", 1)[0].split("#", 1)[0].lower().endswith(".zip")


def file_url_path(src: Source) -> Source:
    """A ``file://`` URL (``file:///a/b.tif``, ``file://localhost/a/b.tif``; e.g. a STAC asset href) -> the local
    ``Path`` it names, so it is read and protected as the local file it is; other names unchanged."""
    s = str(src)
    if not s[:7].lower() == "file://":
        return src
    from urllib.parse import unquote, urlsplit

    u = urlsplit(s)
    if u.netloc not in ("", "localhost"):
        raise InputError(f"{s}: file:// URL of another host ({u.netloc}); give a local path or an http(s) URL")
    return Path(unquote(u.path))


def _zipped_raster(name: Source, z: Path | str) -> str:
    """The GDAL name of the one raster in zip ``z`` (user's name ``name``); InputError when it holds none or
    several."""
    from sarreg.io import archive

    members = [n for n in archive.members(z, name) if n.lower().endswith(RASTER_SUFFIXES)]
    if len(members) == 1:
        return archive.vsi(z, members[0])
    if not members:
        raise InputError(f"{name}: zip archive holds no raster ({', '.join(RASTER_SUFFIXES[:2])}, ...)")
    raise InputError(f"{name}: zip archive holds {len(members)} rasters ({', '.join(members[:8])}"
                     f"{', ...' if len(members) > 8 else ''}); name one as {name}/{members[0]}")


def _split_zip(p: Path) -> tuple[Path, str] | None:
    """``archive.zip/inner/name.tif`` (archive a local file) -> (archive, "inner/name.tif")."""
    for parent in p.parents:
        if parent.suffix.lower() == ".zip" and parent.is_file():
            return parent, str(p.relative_to(parent))
    return None


def resolve_input(src: Source, asset: str | None = None, pol: str | None = None) -> Source:
    """A user's input name -> what GDAL opens: a local ``Path`` or a ``/vsi...`` string (see module docstring).

    ``asset`` picks the asset of a STAC Item, ``pol`` the measurement of a Sentinel-1 product (``sarreg.io.safe``);
    both are ignored for other inputs. Idempotent. Raises InputError (one line naming the input) for a zip without
    exactly one raster, an unreadable STAC item, a missing asset or polarisation, or a broken SAFE product."""
    src = file_url_path(src)
    s = str(src)
    if (sub := subdataset_name(s)) is not None or is_stac_input(s):  # (GDAL subdataset names go to GDAL as they are)
        return sub or resolve_stac(src, asset, pol)
    from sarreg.io.safe import resolve_safe

    if s.startswith("/vsi"):
        return s
    for scheme, vsi in _SCHEMES.items():
        if s.lower().startswith(scheme):
            rest = s[len(scheme):]
            name = vsi + (s if vsi == "/vsicurl/" else rest)
            k = s.lower().find(".zip/") if "?" not in s else -1
            if k > 0 and s[k + 5:].rstrip("/").lower().endswith((".safe/manifest.safe", ".safe")):  # its product
                s, name, k = s[:k + 4], name[:len(name) - len(s) + k + 4], -1  # (--pol picks its measurement)
            if k > 0:  # a member of a remote archive (https://host/a.zip/inner/b.tif): read inside the zip
                from sarreg.io import archive

                return archive.vsi(name[:len(name) - len(s) + k + 4], s[k + 5:])
            if is_zip_name(s):  # a remote archive: product or single raster
                with open_options(name):
                    return resolve_safe(s, pol, remote_zip=name) or _zipped_raster(s, name)
            return name
    if "://" in s:
        return s  # another URL scheme GDAL may know (e.g. a driver connection string)

    measurement = resolve_safe(src, pol)
    if measurement is not None:
        return measurement
    p = Path(src)
    if p.suffix.lower() == ".zip" and p.is_file():
        return _zipped_raster(p, p)
    if not p.exists():
        z = _split_zip(p)
        if z is not None:
            member = z[1].rstrip("/")
            if member.lower().endswith((".safe/manifest.safe", ".safe")):  # a product named inside its zip
                measurement = resolve_safe(z[0], pol)
                if measurement is not None:
                    return measurement
            return f"/vsizip/{z[0]}/{z[1]}"
    return p


_STAC_API = re.compile(r"^https?://.*/(collections/[^/]+/items(/[^/]+)?|search)/?$", re.IGNORECASE)


def is_stac(src: Source) -> bool:
    """True for a name that looks like a STAC JSON document: ``.json`` / ``.geojson`` (a URL's query ignored), or
    a STAC API URL without suffix (``.../collections/C/items/ID``, ``.../collections/C/items``, ``.../search``)."""
    s = str(src).split("?", 1)[0].split("#", 1)[0]
    return s.lower().endswith((".json", ".geojson")) or bool(_STAC_API.match(s))


def _json_like(s: str) -> bool:
    """A remote ``.json`` name, or a local file whose first non-blank byte is ``{`` (not a raster so named)."""
    if is_remote(s):
        return True
    try:
        with open(s, "rb") as f:
            return f.read(4096).lstrip().startswith(b"{")
    except OSError:
        return False  # missing / unreadable: reported as for any other input


def is_stac_input(src: Source) -> bool:
    """A ``.json`` name that is read as a STAC document (see ``_json_like``)."""
    return is_stac(src) and _json_like(str(src))


def _gdal_name(s: str) -> str:
    """A URL or object name -> the /vsi name GDAL reads it by (no STAC or zip handling)."""
    for scheme, vsi in _SCHEMES.items():
        if s.lower().startswith(scheme):
            return vsi + (s if vsi == "/vsicurl/" else s[len(scheme):])
    return s


def read_text(src: Source) -> str:
    """Text of a small document (local file, URL, object, /vsi path), remote ones read through GDAL's VSI (so the
    same AWS/GDAL variables apply). InputError naming ``src`` when it cannot be read."""
    s = str(src)
    if not is_remote(s):
        try:
            return Path(s).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"{s}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    apply_remote_defaults()
    from osgeo import gdal

    name = _gdal_name(s)
    prev = gdal.GetUseExceptions()
    gdal.UseExceptions()
    gdal.PushErrorHandler("CPLQuietErrorHandler")  # GDAL's warnings would be extra stderr lines: the reason is ours
    try:
        gdal.VSIErrorReset()
        gdal.ErrorReset()
        try:
            f = gdal.VSIFOpenL(name, "rb")
        except RuntimeError as e:
            f, why = None, str(e).strip()
        else:
            cpl = gdal.GetLastErrorMsg()  # (first: with exceptions on, GDAL < 3.7's next call would reset it)
            why = (gdal.VSIGetLastErrorMsg() or cpl).strip()
        if f is None:
            raise InputError(f"{s}: cannot read ({network_reason(why.splitlines()[0] if why else '')})")
        try:
            chunks = []
            while True:
                b = gdal.VSIFReadL(1, 1 << 20, f)
                if not b:
                    break
                chunks.append(b)
        finally:
            gdal.VSIFCloseL(f)
    finally:
        gdal.PopErrorHandler()
        if not prev:
            gdal.DontUseExceptions()
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{s}: not a UTF-8 JSON document") from None


def load_stac(src: Source) -> dict:
    """The JSON object of a STAC document at ``src`` (InputError naming it when unreadable or not JSON)."""
    import json

    try:
        d = json.loads(read_text(src))
    except json.JSONDecodeError as e:
        raise InputError(f"{src}: not a JSON document ({e.msg} at line {e.lineno})") from None
    if not isinstance(d, dict):
        raise InputError(f"{src}: not a STAC Item (a JSON object is expected)")
    return d


def _self_href(src: Source) -> str:
    """Location of a STAC document that pystac resolves relative hrefs against (absolute; URLs as URLs)."""
    s = str(src)
    if s.startswith("/vsicurl/"):
        return s[len("/vsicurl/"):]
    if is_remote(s):
        return s
    return str(Path(s).resolve())


_POL = {p: re.compile(rf"(?<![a-z]){p}(?![a-z])") for p in ("vv", "vh", "hh", "hv")}
_NOT_DATA_ROLES = {"thumbnail", "overview", "metadata", "visual"}
_STAC_INFO: dict[str, dict] = {}


def _is_raster(asset: object) -> bool:
    """A raster data asset: a GeoTIFF/COG/JP2 media type, the ``data`` role or a raster file suffix."""
    roles = {r.lower() for r in (getattr(asset, "roles", None) or [])}
    if roles & _NOT_DATA_ROLES and "data" not in roles:
        return False
    mt = (getattr(asset, "media_type", None) or "").lower()
    href = str(getattr(asset, "href", "")).split("?", 1)[0].lower()
    return ("image/tiff" in mt or "geotiff" in mt or "image/jp2" in mt or "data" in roles
            or href.endswith(RASTER_SUFFIXES))


def _names_pol(key: str, asset: object, pol: str) -> bool:
    words = [key, getattr(asset, "title", None) or "", *(getattr(asset, "roles", None) or [])]
    return any(_POL[pol].search(w.lower()) for w in words)


def pick_asset(item: object, asset: str | None, name: str, pol: str | None = None) -> str:
    """Key of the asset to read from a pystac Item (see module docstring); InputError naming ``name`` otherwise.

    ``pol`` (without ``asset``): the raster asset naming that polarisation; an item whose assets name others but
    not it is refused (its default VV asset would silently stand for it); else the default choice (a Sentinel-1
    product asset then resolves ``pol`` itself)."""
    assets = getattr(item, "assets")
    keys = ", ".join(assets) or "none"
    if asset:
        if asset in assets:
            return asset
        same = [k for k in assets if k.lower() == asset.lower()]
        if len(same) == 1:
            return same[0]
        raise InputError(f"{name}: STAC item {getattr(item, 'id', '?')} has no asset {asset!r} (assets: {keys})")
    raster = [k for k, a in assets.items() if _is_raster(a)]
    if pol and pol.lower() in _POL:
        hits = [k for k in raster if _names_pol(k, assets[k], pol.lower())]
        if len(hits) == 1:
            return hits[0]
        named = [k for k in raster if any(_names_pol(k, assets[k], p) for p in _POL)]
        if hits or named:
            what = f"{len(hits)} {pol.upper()} assets ({', '.join(hits)})" if hits else \
                f"no {pol.upper()} asset (raster assets: {', '.join(raster)})"
            raise InputError(f"{name}: STAC item {getattr(item, 'id', '?')} has {what}; pick one with --asset")
    for pol in ("vv", "hh"):
        hits = [k for k in raster if _names_pol(k, assets[k], pol)]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise InputError(f"{name}: STAC item {getattr(item, 'id', '?')} has {len(hits)} {pol.upper()} assets "
                             f"({', '.join(hits)}); pick one with --asset")
    if len(raster) == 1:
        return raster[0]
    what = f"{len(raster)} raster assets ({', '.join(raster)})" if raster else f"no raster asset (assets: {keys})"
    raise InputError(f"{name}: STAC item {getattr(item, 'id', '?')} has no VV/HH asset and {what}; "
                     f"pick one with --asset")


def _pystac():  # noqa: ANN202 - the pystac module
    try:
        import pystac
    except ImportError:
        raise InputError("STAC inputs need pystac (pip install 'sarreg[stac]')") from None
    return pystac


def _asset_source(item: object, asset: str | None, name: str, base: str, origin: dict,
                  pol: str | None = None) -> Source:
    """The GDAL name of the chosen asset of a pystac Item (a Sentinel-1 product asset: its ``pol`` measurement);
    relative hrefs against ``base`` (a file or URL)."""
    from pystac.utils import make_absolute_href

    key = pick_asset(item, asset, name, pol)
    a = item.assets[key]  # type: ignore[attr-defined]
    href = a.get_absolute_href() if item.get_self_href() else None  # type: ignore[attr-defined]
    href = href or make_absolute_href(a.href, base)
    try:
        out = resolve_input(href, pol=pol)
    except InputError as e:  # (the product's own message names the zip; say which item led there)
        raise InputError(f"{name}: asset {key!r}: {e}") from None
    if is_stac(out):
        raise InputError(f"{name}: asset {key!r} of STAC item {item.id} is not a raster ({href})")  # type: ignore
    info = {**origin, "id": item.id, "asset": key,  # type: ignore[attr-defined]
            "datetime": item.datetime.isoformat() if item.datetime else  # type: ignore[attr-defined]
            item.properties.get("start_datetime")}  # type: ignore[attr-defined]
    _STAC_INFO[str(out)] = info
    if isinstance(out, Path):
        _STAC_INFO[str(out.resolve())] = info
    return out


def resolve_stac(src: Source, asset: str | None = None, pol: str | None = None) -> Source:
    """A STAC Item name -> the GDAL name of its chosen asset (its id, datetime and asset kept for ``stac_info``)."""
    pystac = _pystac()
    d = load_stac(src)
    if d.get("type") != "Feature":
        kind = d.get("type") or ("Collection" if "extent" in d else "unknown")
        what = "give one of its items" if kind == "FeatureCollection" else "give an item"
        raise InputError(f"{src}: not a STAC Item (type {kind}); {what} (batch takes an ItemCollection)")
    try:
        item = pystac.Item.from_dict(d, href=_self_href(src), migrate=True, preserve_dict=False)
    except Exception as e:  # pystac raises KeyError / STACTypeError / ValueError on malformed items
        raise InputError(f"{src}: not a valid STAC Item ({type(e).__name__}: {e})") from None
    return _asset_source(item, asset, str(src), _self_href(src), {"item": str(src)}, pol)


def expand_stac(src: Source, asset: str | None = None, pol: str | None = None) -> list[Source]:
    """A STAC ItemCollection (or Item) name -> the GDAL names of the chosen asset of each of its items."""
    pystac = _pystac()
    d = load_stac(src)
    if d.get("type") == "Feature":
        return [resolve_stac(src, asset, pol)]
    if d.get("type") != "FeatureCollection":
        raise InputError(f"{src}: not a STAC Item or ItemCollection (type {d.get('type') or 'unknown'})")
    from sarreg.io.stac_search import pages

    out: list[Source] = []
    for page, d in pages(src, d):
        try:
            items = pystac.ItemCollection.from_dict(d, preserve_dict=False)
        except Exception as e:  # noqa: BLE001 - malformed features
            raise InputError(f"{page}: not a valid STAC ItemCollection ({type(e).__name__}: {e})") from None
        base = _self_href(page)
        out += [_asset_source(it, asset, f"{page} (item {it.id})", base, {"collection": str(src)}, pol) for it in items]
    if not out:
        raise InputError(f"{src}: STAC ItemCollection holds no item")
    return out


def stac_info(src: Source) -> dict | None:
    """STAC item id, datetime, asset key and item name behind a resolved input, if it came from a STAC Item."""
    return _STAC_INFO.get(str(src))


def local_path(src: Source) -> Path | None:
    """The local file behind an input (for write-set checks; of a subdataset name too), or None for remote names."""
    src = subdataset_file(str(src)) or file_url_path(src)
    if is_remote(src):
        s = str(src)
        if s.startswith("/vsizip/") and ".zip" in s.lower():  # a local archive: the archive file itself
            head = s[len("/vsizip/"):]
            i = head.lower().index(".zip") + 4
            if not head.startswith("/vsi"):
                return Path(head[:i])
        return None
    return Path(src)


_VSI_QUERY_URL = re.compile(r"^/vsi[a-z0-9_]+\?(?:.*?&)??url=([^&]*)", re.IGNORECASE)  # (the first url=)


def query_url(name: str) -> str | None:
    """The URL of a GDAL name that gives it as an option (``/vsicurl?[opt=val&]*url=<url-encoded url>``), or None."""
    from urllib.parse import unquote

    m = _VSI_QUERY_URL.match(name)
    return unquote(m.group(1)) if m else None


def input_name(src: Source) -> str:
    """File name of an input: last part of its path, URL (less query), archive member or subdataset name."""
    s = str(src)
    if s.startswith("/vsizip/{") and "}/" in s:  # a member of a braced archive name (``archive.vsi``)
        s = s.split("}/", 1)[1]
    s = query_url(s) or s  # /vsicurl?[opt=val&]*url=<url>: named after the file the URL names
    s = s.split("?", 1)[0].rstrip("/")
    return subdataset_file_name(str(src)) or s.rsplit("/", 1)[-1]


def input_folder(src: Source) -> Path | None:
    """Local folder of an input (of the archive for a local zip, of a SAFE product: all of it is input), where outputs
    go by default; None when remote."""
    from sarreg.io.safe import product_folder
    p = product_folder(r := resolve_input(src)) or local_path(r)
    return p.parent if p is not None else None
