"""Vector layers for QGIS (tie points, keypoints, outlines): GeoPackage / GeoJSON written with pyogrio, CRS set,
atomically."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sarreg.errors import OutputError
from sarreg.outputs import write_atomic, write_error


def write_points(path: str | Path, xy: np.ndarray, attributes: dict[str, np.ndarray], crs: Any | None,
                 layer: str | None = None, driver: str | None = None) -> Path:
    """Write N points (N x 2 map coordinates) with per-point attributes; driver from the suffix
    (.gpkg -> GPKG, .geojson -> GeoJSON: see ``geojson_crs`` for its CRS)."""
    import shapely

    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    geoms = shapely.points(xy[:, 0], xy[:, 1]) if len(xy) else np.zeros(0, dtype=object)
    return write_features(path, geoms, "Point", attributes, crs, layer, driver)


def write_features(path: str | Path, geoms: np.ndarray, geometry_type: str, attributes: dict[str, np.ndarray],
                   crs: Any | None, layer: str | None = None, driver: str | None = None) -> Path:
    """Write shapely geometries (map coordinates, all of ``geometry_type``) with per-feature attributes, atomically;
    driver from the suffix as in ``write_points``."""
    import pyogrio
    import shapely

    path = Path(path)
    driver = driver or {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON"}.get(path.suffix.lower(), "GPKG")
    # GeoPackage 1.2: what GDAL < 3.7 (QGIS 3.22 .. 3.28 LTR) reads without a warning; pyogrio's GDAL writes 1.4
    wkb = shapely.to_wkb(np.asarray(geoms, dtype=object)) if len(geoms) else np.zeros(0, dtype=object)
    fields = {k: np.asarray(v) for k, v in attributes.items()}
    crs_wkt = crs.to_wkt() if hasattr(crs, "to_wkt") else (str(crs) if crs else None)
    rfc7946 = None
    if driver == "GeoJSON" and crs_wkt:
        crs_wkt, rfc7946 = geojson_crs(crs_wkt)

    def write(tmp: Path) -> None:
        tmp.unlink(missing_ok=True)
        pyogrio.raw.write(tmp, geometry=wkb, field_data=list(fields.values()), fields=list(fields.keys()),
                          crs=crs_wkt, driver=driver, layer=layer or path.stem.replace(".", "_"),
                          geometry_type=geometry_type, encoding="UTF-8",
                          dataset_options={"VERSION": "1.2"} if driver == "GPKG" else None, layer_options=rfc7946)

    try:
        return write_atomic(path, write)
    except OutputError:
        raise
    except Exception as e:  # pyogrio / GDAL errors of several types
        raise write_error(path, e, "cannot write vector layer") from None


def geojson_crs(crs_wkt: str) -> tuple[str, dict[str, str] | None]:
    """(CRS to give GDAL, layer options) of a GeoJSON layer: GeoJSON names a CRS only by an EPSG code (the ``crs``
    member GDAL and QGIS read); any other CRS would leave the bare numbers, which every reader takes for WGS 84
    lon/lat, so such a layer is written as RFC 7946 WGS 84 lon/lat (GDAL reprojects it)."""
    from pyproj import CRS

    code = CRS.from_user_input(crs_wkt).to_epsg(min_confidence=100)
    return (f"EPSG:{code}", None) if code is not None else (crs_wkt, {"RFC7946": "YES"})
