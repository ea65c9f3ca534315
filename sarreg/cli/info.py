"""``sarreg info``: what sarreg reads from rasters (band, kind, nodata and its origin, valid share, grey range,
georeferencing), before a registration runs: a thin command over ``sarreg.io.describe``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from sarreg.cli.options import (KIND_HELP, NODATA_HELP, NodataArg, asset_opt, config_from_params, config_option,
                                exclude_opt, input_arg, pol_opt)
from sarreg.config import ExtractConfig, PreprocessConfig

P = PreprocessConfig


@click.command()
@click.argument("rasters", nargs=-1, required=True, type=input_arg)
@config_option(P, "band", help="1-based band (default: the VV band if described, else 1).")
@config_option(P, "kind", help=KIND_HELP)
@config_option(P, "nodata", type=NodataArg(), metavar="VALUE", help=NODATA_HELP.format(what="each raster"))
@exclude_opt
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (one object per raster) instead of text.")
@asset_opt
@pol_opt
def info(rasters: tuple[Path | str, ...], as_json: bool, asset: str | None, pol: str | None, **options: Any) -> None:
    """Show how sarreg reads each of RASTERS: the band, how its values are interpreted, the nodata value and where it
    comes from (the file's tag, a fill value found in the data, or --nodata), the share of valid pixels, the grey
    range the network sees and where the raster sits. The options are those of register and extract. Exit 1 with
    the error register would give for a raster it cannot use."""
    from sarreg.io.describe import describe, summary_lines
    from sarreg.io.source import resolve_input

    pre = config_from_params(ExtractConfig, options).preprocess
    docs = []
    for r in rasters:
        d = describe(resolve_input(r, asset, pol), pre)
        docs.append(d)
        if not as_json:
            click.echo("\n".join(summary_lines(d)))
    if as_json:
        click.echo(json.dumps(docs, indent=1))
