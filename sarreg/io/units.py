"""A band's declared scale, offset and unit (GDAL band metadata): the values it stores turned into those it means.

Products store dB x 100 in int16 (``scale`` 0.01), dB + 40 x 100 (``offset`` -40) or calibrated power in scaled
integers, and say so in the band's metadata; read as stored, ``--kind auto`` took such a file for DN amplitude
(20 log10 of the raw numbers) and ``sarreg info`` printed meaningless ranges. Here the values of a registration read
become ``raw * scale + offset``, and a declared unit names the kind: "dB" (any case, also SNAP's "intensity_db",
"amplitude_db") is dB; SNAP's "intensity" / "power" is linear power, "amplitude" / "magnitude" amplitude. Complex
bands are read as intensity whatever they declare.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DB_UNITS = ("db", "decibel", "decibels")
LINEAR_UNITS = ("intensity", "power", "linear", "intensity_linear")
AMPLITUDE_UNITS = ("amplitude", "magnitude", "amplitude_linear")


@dataclass(frozen=True)
class Scaling:
    """The scale, offset and unit one band declares (1, 0, "" when it declares none)."""

    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""

    @property
    def scaled(self) -> bool:
        """True when the stored values are not the values meant (a scale other than 1 or an offset other than 0)."""
        return self.scale != 1.0 or self.offset != 0.0

    def apply(self, vals: np.ndarray) -> np.ndarray:
        """``vals * scale + offset`` as float32 (float64 kept), or ``vals`` itself when nothing is declared or the
        values are complex (read as intensity)."""
        if not self.scaled or np.iscomplexobj(vals):
            return vals
        v = vals.astype(np.float64 if vals.dtype == np.float64 else np.float32)
        return v * v.dtype.type(self.scale) + v.dtype.type(self.offset)

    def to_dict(self) -> dict[str, float | str]:
        """JSON-ready: scale, offset, unit."""
        return {"scale": self.scale, "offset": self.offset, "unit": self.unit}


def band_scaling(ds, band: int) -> Scaling:
    """The scale, offset and unit of ``band`` (1-based) of an open rasterio dataset."""
    scale, offset = ds.scales[band - 1], ds.offsets[band - 1]
    scale = 1.0 if scale is None or not np.isfinite(scale) or scale == 0 else float(scale)
    offset = 0.0 if offset is None or not np.isfinite(offset) else float(offset)
    return Scaling(scale, offset, (ds.units[band - 1] or "").strip() if ds.units else "")


def unit_kind(unit: str) -> str | None:
    """The input kind a declared unit names ("db", "linear", "amplitude"), or None for no or another unit."""
    u = unit.strip().lower().replace(" ", "_").replace("-", "_")
    if u in DB_UNITS or u.endswith("_db") or u.startswith("db_") or u == "db(m2/m2)":
        return "db"
    if u in LINEAR_UNITS:
        return "linear"
    if u in AMPLITUDE_UNITS:
        return "amplitude"
    return None
