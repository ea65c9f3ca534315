"""Click options shared by subcommands (one definition each, as rasterio's ``rio`` does)."""
from __future__ import annotations

import os
from pathlib import Path

import click

from sarreg.errors import OutputError

from sarreg.config import COMPRESSION, FORMATS, RESAMPLING

overwrite_opt = click.option("--overwrite", is_flag=True, help="Replace existing outputs (never an input).")
format_opt = click.option("--format", "fmt", type=click.Choice(FORMATS), default="COG", show_default=True,
                          help="Output raster format.")
compress_opt = click.option("--compress", type=click.Choice(COMPRESSION, case_sensitive=False), default="DEFLATE",
                            show_default=True, help="Output compression.")
resampling_opt = click.option("--resampling", type=click.Choice(RESAMPLING), default="bilinear", show_default=True,
                              help="Resampling of the warp.")
mem_opt = click.option("--mem", "warp_mem_mb", type=click.IntRange(16, 65536), default=128, show_default=True,
                       help="GDAL warp buffer limit (MB; the multithreaded warp uses about 2.5x this).")
update_georef_opt = click.option("--update-georef", is_flag=True,
                                 help="Write a copy of MOVING with corrected georeferencing instead of resampling it "
                                      "(shift / similarity / affine only).")
device_opt = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
path_arg = click.Path(path_type=Path)
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
