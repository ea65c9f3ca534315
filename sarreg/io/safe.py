"""Sentinel-1 products (SAFE) as inputs: the product folder ``X.SAFE``, its ``manifest.safe`` or the zipped product
(a ``.zip`` holding ``X.SAFE/manifest.safe``, local or behind a URL) stands for one of its measurement rasters.

The measurement is chosen by polarisation (``pol``: VV, VH, HH or HV; default VV, else HH) among the data objects
the manifest lists with ``repID="s1Level1MeasurementSchema"`` (GDAL's SENTINEL1 driver reads the same list), else
among the files of ``measurement/``; the polarisation and swath come from the ESA file name
``s1?-<swath>-<product>-<pol>-<start>-<stop>-<orbit>-<take>-<image>.tiff``. The input then becomes that TIFF (a local
path, or ``/vsizip/<zip>/X.SAFE/measurement/...``; a remote zip is read by range requests, ``sarreg.io.archive``):
sarreg reads its DN amplitude and its GCPs (the annotation's geolocation grid, which GRD measurement TIFFs carry),
without calibration. ``product_info`` gives the product,
polarisation and measurement behind a resolved name (for the report).
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from sarreg.errors import InputError
from sarreg.io import archive

POLARISATIONS = ("VV", "VH", "HH", "HV")
MANIFEST = "manifest.safe"
_MEASUREMENT = re.compile(r"^s1[a-d]?-(?P<swath>[a-z0-9]+)-(?P<product>[a-z]+)-(?P<pol>vv|vh|hh|hv)-.*\.tiff?$",
                          re.IGNORECASE)
_INFO: dict[str, dict] = {}
_FOLDER: dict[str, Path] = {}  # resolved measurement name -> its local product folder (outputs must stay out of it)


@dataclass(frozen=True)
class Product:
    """A located SAFE product: the name the user gave, its zip (a local path or a remote GDAL name such as
    ``/vsicurl/<url>``; None for a folder) and the product folder (a local path, or the folder's path inside the
    zip)."""

    name: str
    zip_path: Path | str | None
    root: str

    def gdal_name(self, member: str) -> str | Path:
        """GDAL name of a file of the product (``member`` relative to the product folder)."""
        if self.zip_path is None:
            return Path(self.root) / member
        return archive.vsi(self.zip_path, f"{self.root}/{member}" if self.root else member)

    def member(self, name: str) -> str:
        """Path inside the zip of a file of the product (``name`` relative to the product folder)."""
        return f"{self.root}/{name}" if self.root else name


def _zipped(name: str, z: Path | str) -> Product | None:
    """The SAFE product in zip ``z`` (user's name ``name``), None when the zip holds no manifest."""
    manifests = [n for n in archive.members(z, name) if n.rsplit("/", 1)[-1].lower() == MANIFEST]
    if not manifests:
        return None
    if len(manifests) > 1:
        raise InputError(f"{name}: zip archive holds {len(manifests)} SAFE products ({', '.join(manifests[:4])})")
    return Product(name, z, manifests[0].rsplit("/", 1)[0] if "/" in manifests[0] else "")


def find_product(src: str | Path, remote_zip: str | None = None) -> Product | None:
    """The SAFE product named by ``src`` (folder, manifest.safe or zip), None when ``src`` is not one.

    ``remote_zip``: the GDAL name (``/vsicurl/...``, ``/vsis3/...``) of a remote ``.zip`` that ``src`` names.
    InputError for a ``.SAFE`` folder without manifest and for a ``.zip`` that cannot be read."""
    s = str(src)
    if remote_zip is not None:
        return _zipped(s, remote_zip)
    if s.startswith("/vsi") or "://" in s:
        return None
    p = Path(src)
    if p.is_dir():
        if (p / MANIFEST).is_file():
            return Product(s, None, str(p))
        if p.suffix.upper() == ".SAFE":
            raise InputError(f"{p}: not a Sentinel-1 SAFE product (no {MANIFEST} in the folder)")
        return None
    if p.name.lower() == MANIFEST and p.is_file():
        return Product(s, None, str(p.parent))
    if p.suffix.lower() == ".zip" and p.is_file():
        return _zipped(s, p)
    return None


def _read(product: Product, member: str) -> bytes:
    if product.zip_path is not None:
        return archive.read(product.zip_path, product.member(member), product.name)
    try:
        return (Path(product.root) / member).read_bytes()
    except OSError as e:
        raise InputError(f"{product.name}: cannot read {member} of the SAFE product ({e})") from None


def _exists(product: Product, member: str) -> bool:
    if product.zip_path is None:
        return (Path(product.root) / member).is_file()
    return product.member(member) in archive.members(product.zip_path, product.name)


def _listed(product: Product) -> list[str]:
    """Files of the product's ``measurement/`` folder (the fallback when the manifest lists none)."""
    if product.zip_path is None:
        d = Path(product.root) / "measurement"
        return sorted(f"measurement/{f.name}" for f in d.iterdir() if f.is_file()) if d.is_dir() else []
    prefix = product.member("measurement/")
    return [n[len(prefix) - len("measurement/"):] for n in archive.members(product.zip_path, product.name)
            if n.startswith(prefix)]


def measurements(product: Product) -> list[str]:
    """Measurement files of a product (relative to its folder), from the manifest's data objects, else from
    ``measurement/``; only ESA-named Sentinel-1 measurement rasters. InputError when the manifest is not XML."""
    try:
        root = ET.fromstring(_read(product, MANIFEST))
    except ET.ParseError as e:
        raise InputError(f"{product.name}: {MANIFEST} is not valid XML ({e})") from None
    found = []
    for obj in root.iter():
        if obj.tag.rsplit("}", 1)[-1] == "dataObject" and obj.get("repID") == "s1Level1MeasurementSchema":
            for loc in obj.iter():
                href = loc.get("href") if loc.tag.rsplit("}", 1)[-1] == "fileLocation" else None
                if href:
                    found.append(href[2:] if href.startswith("./") else href)
    files = found or _listed(product)
    return [f for f in files if _MEASUREMENT.match(f.rsplit("/", 1)[-1])]


def resolve_product(product: Product, pol: str | None) -> str | Path:
    """GDAL name of the product's measurement in polarisation ``pol`` (default VV, else HH); InputError naming the
    product when it has none, several (an SLC's swaths) or the file is missing."""
    files = measurements(product)
    if not files:
        raise InputError(f"{product.name}: not a Sentinel-1 product (no measurement raster in {MANIFEST} or "
                         "measurement/)")
    by_pol: dict[str, list[str]] = {}
    for f in files:
        by_pol.setdefault(_MEASUREMENT.match(f.rsplit("/", 1)[-1])["pol"].upper(), []).append(f)
    have = ", ".join(p for p in POLARISATIONS if p in by_pol)
    if pol is not None:
        want = pol.upper()
        if want not in POLARISATIONS:
            raise InputError(f"{product.name}: unknown polarisation {pol!r}; choose from {', '.join(POLARISATIONS)}")
        if want not in by_pol:
            raise InputError(f"{product.name}: Sentinel-1 product has no {want} measurement (polarisations: {have})")
    else:
        want = "VV" if "VV" in by_pol else "HH" if "HH" in by_pol else None
        if want is None:
            raise InputError(f"{product.name}: Sentinel-1 product has no VV or HH measurement (polarisations: "
                             f"{have}); pick one with --pol")
    hits = by_pol[want]
    if len(hits) > 1:
        swaths = ", ".join(_MEASUREMENT.match(f.rsplit("/", 1)[-1])["swath"] for f in hits)
        one = product.gdal_name(hits[0]) if product.zip_path is None else f"{product.name}/{product.member(hits[0])}"
        raise InputError(f"{product.name}: Sentinel-1 product holds {len(hits)} {want} measurements (swaths "
                         f"{swaths}); name one as {one}")
    member = hits[0]
    if not _exists(product, member):
        raise InputError(f"{product.name}: measurement {member} listed in {MANIFEST} is missing from the product")
    out = product.gdal_name(member)
    m = _MEASUREMENT.match(member.rsplit("/", 1)[-1])
    info = {"product": product.name, "polarisation": want, "measurement": member, "swath": m["swath"].upper(),
            "product_type": m["product"].upper(), "calibration": "none (DN amplitude)"}
    _INFO[str(out)] = info
    if isinstance(out, Path):
        _INFO[str(out.resolve())] = info
        _FOLDER[str(out)] = _FOLDER[str(out.resolve())] = Path(product.root)
    return out


def resolve_safe(src: str | Path, pol: str | None = None, remote_zip: str | None = None) -> str | Path | None:
    """``src`` as a SAFE product -> the GDAL name of its chosen measurement; None when ``src`` is not a product."""
    product = find_product(src, remote_zip)
    return None if product is None else resolve_product(product, pol)


def product_folder(src: str | Path) -> Path | None:
    """The local SAFE folder a resolved input's measurement was picked from (None otherwise): every file in it is
    part of an input (``sarreg.outputs.check_write_set`` refuses outputs there)."""
    return _FOLDER.get(str(src))


def product_info(src: str | Path) -> dict | None:
    """Product, polarisation, swath and measurement behind a resolved input, if it came from a SAFE product."""
    return _INFO.get(str(src))
