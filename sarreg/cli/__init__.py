"""The ``sarreg`` command: a click group of thin subcommands over the library API.

Errors are handled here, in one place: any ``SarregError`` becomes a one-line ``sarreg: error: ...``
message on stderr and the error's exit code (1 by default, 2 low quality, 3 failed registration).
"""
from __future__ import annotations

import logging
import os
import sys

# PyTorch's CPU allocator: transparent huge pages remove most page-fault time (spec section 9).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
# GDAL's block cache defaults to 5 % of RAM and grows with every block read: bound it so that peak memory of a
# windowed pass over a big scene stays flat (the user's own GDAL_CACHEMAX wins).
os.environ.setdefault("GDAL_CACHEMAX", "256")

import click  # noqa: E402

from sarreg import __version__  # noqa: E402
from sarreg.errors import SarregError  # noqa: E402


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SarregError as e:
            click.echo(f"sarreg: error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("sarreg: interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="sarreg")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
def cli(verbose: int, quiet: bool) -> None:
    """Co-register SAR scenes with a learned keypoint network."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="sarreg")


# Subcommands, one module each (as rasterio's rio does).
from sarreg.cli.extract import extract  # noqa: E402

cli.add_command(extract)

from sarreg.cli.train import train  # noqa: E402
cli.add_command(train)

from sarreg.cli.evaluate import evaluate  # noqa: E402
cli.add_command(evaluate)

from sarreg.cli.register import apply, register  # noqa: E402
cli.add_command(register)
cli.add_command(apply)

from sarreg.cli.batch import batch  # noqa: E402
cli.add_command(batch)
