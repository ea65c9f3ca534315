"""Click options shared by subcommands (one definition each, as rasterio's ``rio`` does), and the one way the
commands turn option values into a config (``config_from_params``).

Options of a config field are declared with ``config_option``: default, choices and range come from the field in
``sarreg.config`` (written there once), the command adds the flag name and help text.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, TypeVar

import click

from sarreg.errors import OutputError

from sarreg.config import DEVICES, PreprocessConfig, RegisterConfig, default

C = TypeVar("C")


def _click_type(meta: dict[str, Any]) -> click.ParamType | None:
    if "choices" in meta:
        return click.Choice(meta["choices"], case_sensitive=meta["case_sensitive"])
    if "min" in meta:
        rng = click.IntRange if meta["type"] is int else click.FloatRange
        kw = {"min_open": True} if meta["min_open"] else {}
        lo, hi = (int(v) if isinstance(v, float) and v.is_integer() else v for v in (meta["min"], meta["max"]))
        return rng(lo, hi, **kw)  # (integral bounds as ints: help shows x>0, not x>0.0)
    return None


def config_option(cls: type, name: str, *decls: str, **kw: Any) -> Callable[[Callable], Callable]:
    """A click option for field ``name`` of config dataclass ``cls``, stored under the field's name: its default,
    choices (``click.Choice``) and range (``click.IntRange`` / ``FloatRange``) read from the field (``_opt``
    metadata in ``sarreg.config``); ``decls`` default to ``--field-name``; ``kw`` adds help text or overrides."""
    f = cls.__dataclass_fields__[name]
    kw.setdefault("default", default(cls, name))
    if not kw.get("is_flag"):
        t = _click_type(dict(f.metadata))
        if t is not None:
            kw.setdefault("type", t)
    kw.setdefault("show_default", kw["default"] is not None and not kw.get("is_flag"))
    return click.option(*(decls or ("--" + name.replace("_", "-"),)), name, **kw)


# --kind of register and extract: what "auto" decides (sarreg.io.raster._resolve_kind)
KIND_HELP = ("How pixel values are interpreted. auto: complex = intensity; a band's unit dB / intensity / amplitude "
             "names it; uint8 = display, other unsigned integers = amplitude, float or signed integers mostly negative "
             "= dB, else linear power (float) or amplitude. A declared scale / offset is applied first (then as "
             "float).")
# Old option names kept as hidden aliases: dest of the alias -> the config field it sets.
ALIASES = {"tile_size_alias": "fine_tile"}


def config_from_params(cls: type[C], params: dict[str, Any]) -> C:
    """Build config ``cls`` (RegisterConfig or ExtractConfig) from click parameter values (name -> value): the one
    builder of the commands. Names that are fields of ``cls`` or of its ``PreprocessConfig`` are used, others
    ignored; ``no_warp`` sets ``warp``; paths become strings; hidden aliases (``ALIASES``) set their field."""
    d: dict[str, Any] = {}
    pre: dict[str, Any] = {}
    own = {f.name for f in fields(cls)} - {"preprocess"}
    pre_fields = {f.name for f in fields(PreprocessConfig)}
    for k, v in params.items():
        if k in ALIASES:
            if v is None:
                continue
            target = ALIASES[k]
            if params.get(target, default(cls, target)) != default(cls, target) and params[target] != v:
                raise click.UsageError(f"--{k.removesuffix('_alias').replace('_', '-')} is the old name of "
                                       f"--{target.replace('_', '-')}: give one of them")
            d[target] = v
        elif k == "no_warp":
            d["warp"] = not v
        elif k in pre_fields and k not in own:
            pre[k] = v
        elif k in own and k not in d:
            d[k] = _normalise(cls, k, str(v) if isinstance(v, Path) else v)
    return cls(**d, preprocess=PreprocessConfig(**pre))


def _normalise(cls: type, name: str, v: Any) -> Any:
    """A case-insensitive choice (``--compress lzw``) as declared (``LZW``)."""
    m = cls.__dataclass_fields__[name].metadata
    if isinstance(v, str) and "choices" in m and not m["case_sensitive"]:
        return next((c for c in m["choices"] if c.lower() == v.lower()), v)
    return v


overwrite_opt = click.option("--overwrite", is_flag=True, help="Replace existing outputs (never an input).")
format_opt = config_option(RegisterConfig, "fmt", "--format",
                           help="Output raster format. auto: a COG; with --update-georef a local GeoTIFF keeps its "
                                "own encoding (its bytes are copied, only the georeferencing changes).")
compress_opt = config_option(RegisterConfig, "compress", help="Output compression.")
resampling_opt = config_option(RegisterConfig, "resampling",
                               help="Resampling of the warp. auto: nearest for complex (SLC) data, whose phases an "
                                    "interpolation mixes, else bilinear.")
resolution_opt = config_option(
    RegisterConfig, "resolution", metavar="reference|moving|RES",
    help="Output pixel size on the reference's extent and CRS: the reference's, the moving raster's (a 1 m scene "
         "onto a 10 m reference stays 1 m), or RES map units.")
mem_opt = config_option(RegisterConfig, "warp_mem_mb", "--mem",
                        help="GDAL warp buffer limit (MB; the multithreaded warp uses about 2.5x this).")
def output_options(f: Callable) -> Callable:
    """The raster-writing options ``register`` and ``apply`` share: --overwrite, --format, --compress, --resampling,
    --resolution, --mem (in that order in --help)."""
    for opt in reversed((overwrite_opt, format_opt, compress_opt, resampling_opt, resolution_opt, mem_opt)):
        f = opt(f)
    return f


update_georef_opt = click.option("--update-georef", is_flag=True,
                                 help="Write a copy of MOVING with corrected georeferencing instead of resampling it "
                                      "(shift / similarity / affine only).")
device_opt = click.option("--device", type=click.Choice(DEVICES), default=default(RegisterConfig, "device"),
                          show_default=True)


class LocalPath(click.Path):
    """A local output path (click.Path -> Path); a URL or /vsi name is refused as it was typed (Path would fold its
    "//")."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from sarreg.io.source import is_remote

        if isinstance(value, str) and is_remote(value):
            raise OutputError(f"{value}: outputs must be local files (remote or /vsi paths cannot be written)")
        return super().convert(value, param, ctx)


path_arg = click.Path(path_type=Path)
out_arg = LocalPath(path_type=Path)  # an output file or folder
asset_opt = click.option("--asset", default=None, metavar="KEY",
                         help="STAC Item inputs: the asset to read (default: the asset named VV, else HH, by key, "
                              "title or role, else the item's only raster asset).")

POLS = ("VV", "VH", "HH", "HV")
pol_opt = click.option("--pol", default=None, type=click.Choice(POLS, case_sensitive=False),
                       help="Sentinel-1 product inputs (X.SAFE, its manifest.safe or the zip): the polarisation to "
                            "read (default: VV, else HH).")
ref_pol_opt = click.option("--ref-pol", default=None, type=click.Choice(POLS, case_sensitive=False),
                           help="Sentinel-1 product REF: its polarisation, when not the one of --pol (default: as "
                                "--pol).")


class InputArg(click.ParamType):
    """A raster input: a local path (``Path``) or a URL / GDAL virtual path kept as a string, since ``Path`` would
    collapse the ``//`` of ``https://`` (``sarreg.io.source``; existence is checked by opening it)."""

    name = "input"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str | Path:
        from sarreg.io.source import is_remote

        if isinstance(value, Path) or not is_remote(str(value)):
            return Path(value)
        return str(value)


input_arg = InputArg()


class NodataArg(click.ParamType):
    """A nodata value: a number, nan, or none (the raster has none); ``sarreg.config.nodata_value``."""

    name = "nodata"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float | str | None:
        from sarreg.config import nodata_value

        try:
            return nodata_value(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


NODATA_HELP = ("Value that marks no data in {what}, over the file's own nodata tag: a number, nan, or none (the "
               "file has no nodata value: its tag is ignored, no fill value is searched). Default: the tag, and a "
               "fill value found far outside the data (in place of a tag that marks almost no pixel, beside one "
               "that marks holes).")
exclude_opt = click.option(
    "--exclude", multiple=True, default=(), type=input_arg, metavar="FILE",
    help="Areas not to match in (water, changed fields, layover), repeatable: a vector file (GeoPackage, GeoJSON, "
         "shapefile...; polygons in any CRS) or a mask raster (non-zero = excluded; on the image's grid or "
         "georeferenced). Nodata for matching only: the output still carries them.")


@contextmanager
def output_dir(path: Path | None) -> Iterator[None]:
    """``writable_dir(path)`` around the body; a folder it created is removed again (if still empty) when the body
    fails, so that a refused or failed run leaves no new folder."""
    made = [] if path is None else [p for p in (path, *path.parents) if not p.exists()]  # (deepest first)
    if path is not None:
        writable_dir(path)
    try:
        yield
    except BaseException:
        for p in made:
            with suppress(OSError):
                p.rmdir()
        raise


def writable_dir(path: Path) -> Path:
    """Create ``path`` if needed and check it is a writable directory (OutputError naming it otherwise)."""
    if not path.exists():
        try:
            path.mkdir(parents=True)
        except OSError as e:
            raise OutputError(f"{path}: cannot create output directory ({e.strerror})") from None
    if not path.is_dir():
        raise OutputError(f"{path}: output directory path is an existing file, not a directory")
    if not os.access(path, os.W_OK):
        raise OutputError(f"{path}: output directory is not writable")
    return path
