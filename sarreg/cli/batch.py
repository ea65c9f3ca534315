"""``sarreg batch``: register a time series on Dask (thin: options -> one RegisterConfig -> ``sarreg.batch``)."""
from __future__ import annotations

import copy
import glob
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import click

from sarreg import progress as json_progress
from sarreg.cli.options import config_from_params, input_arg, out_arg, path_arg
from sarreg.cli.register import register as _register_cmd
from sarreg.config import RegisterConfig
from sarreg.errors import InputError
from sarreg.io.safe import resolve_safe
from sarreg.io.source import expand_stac, is_remote, is_stac_input, is_zip_name, read_text, resolve_input

if TYPE_CHECKING:
    from distributed import Client

    from sarreg.batch.results import SceneResult

# Register options that make no sense per batch (one output per scene, written by the batch itself).
_NOT_IN_BATCH = {"overwrite", "quicklook", "as_json"}


def _register_options() -> list[click.Parameter]:
    """The options of ``sarreg register`` (one definition, so both commands stay in step)."""
    return [copy.copy(p) for p in _register_cmd.params
            if isinstance(p, click.Option) and p.name not in _NOT_IN_BATCH]


def config_from_options(kw: dict[str, Any]) -> RegisterConfig:
    """Build the ONE RegisterConfig of the run from ``sarreg register`` option values (name -> value), as
    ``sarreg register`` does (``cli.options.config_from_params``)."""
    return config_from_params(RegisterConfig, kw)


def _scene_list(scenes: tuple[str, ...], from_list: str | Path | None, asset: str | None = None,
                pol: str | None = None) -> list[str | Path]:
    """Scenes from arguments (local globs expanded, also when the shell did not; URLs and /vsi paths as given;
    a STAC ItemCollection or Item -> the chosen asset of each item; a Sentinel-1 product -> its ``pol``
    measurement) and from a list file."""
    out: list[str | Path] = []
    for s in scenes:
        if not glob.has_magic(s) and is_stac_input(s):
            out += expand_stac(s, asset, pol)
            continue
        if is_remote(s):
            out.append(s)
            continue
        hits = sorted(glob.glob(s)) if glob.has_magic(s) else [s]
        if not hits:
            raise InputError(f"{s}: pattern matches no file")
        out += [Path(h) for h in hits]
    if from_list is not None:
        remote = is_remote(from_list)  # (a list behind a URL: its relative lines against the URL)
        if remote:
            lines = read_text(from_list).splitlines()
        else:
            try:
                lines = Path(from_list).read_text(encoding="utf-8").splitlines()
            except OSError as e:
                raise InputError(f"{from_list}: cannot read scene list ({e.strerror or e})") from None
        for line in (raw.strip() for raw in lines):
            if not line or line.startswith("#"):
                continue
            name = line if is_remote(line) or (Path(line).is_absolute() and not remote) else \
                urljoin(str(from_list), line) if remote else str(Path(from_list).parent / line)
            if is_stac_input(name):
                out += expand_stac(name, asset, pol)
            else:
                out.append(name if is_remote(name) else Path(name))
    seen: set[str | Path] = set()
    uniq = []
    for p in out:
        p = resolve_safe(p, pol) or p
        if pol and is_remote(p) and not str(p).startswith("/vsi") and is_zip_name(p):  # a product behind a URL
            p = resolve_input(p, pol=pol)
        r = p.resolve() if isinstance(p, Path) else p
        if r not in seen:
            seen.add(r)
            uniq.append(p)
    return uniq


RUN_FILES = ("summary.csv", "summary.json", "summary.png", "tiepoints.gpkg", "manifest.json")


def _check_run_files(outdir: Path, inputs: list[str | Path | None]) -> None:
    """The run files of OUTDIR (rewritten by every run) must not be an input (also through links)."""
    from sarreg.errors import OutputError
    from sarreg.outputs import same_file

    for name in RUN_FILES:
        for p in inputs:
            if p is not None and not is_remote(p) and same_file(outdir / name, p):
                raise OutputError(f"{outdir / name}: output path is the same file as input {p}; refusing to "
                                  "overwrite an input")


@click.command(context_settings={"show_default": True})
@click.argument("ref", type=input_arg)
@click.argument("scenes", nargs=-1)
@click.option("-o", "--out-dir", "outdir", type=out_arg, required=True, help="Output folder (created).")
@click.option("--from-list", type=input_arg, default=None,
              help="Text file (or its URL) with one scene path per line (relative to the file; # comments).")
@click.option("--chain", is_flag=True,
              help="Register each scene to its predecessor in time and compose the transforms (long series with "
                   "strong change); default: every scene to REF.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes of the local Dask cluster [default: cores / threads, at most 4].")
@click.option("--threads-per-worker", type=click.IntRange(min=1), default=1, help="Threads per local worker.")
@click.option("--scheduler", default=None,
              help="Address (tcp://host:8786) or scheduler file of an existing Dask cluster to use instead.")
@click.option("--resume/--no-resume", default=True,
              help="Skip scenes already done in OUT_DIR (manifest.json, outputs verified by sha256).")
@click.option("--cache/--no-cache", "reference_cache", default=True,
              help="Compute the reference's features once and reuse them from disk (all workers, later runs).")
@click.option("--cache-dir", type=path_arg, default=None,
              help="Folder of the reference-feature cache [default: OUT_DIR/.cache].")
@click.option("--progress/--no-progress", default=True, help="Progress bar over scenes.")
def batch(ref: str | Path, scenes: tuple[str, ...], outdir: Path, from_list: str | Path | None, chain: bool,
          workers: int | None, threads_per_worker: int, scheduler: str | None, resume: bool,
          reference_cache: bool, cache_dir: Path | None, progress: bool, **register_options: Any) -> None:
    """Register every SCENE (paths, globs, STAC Items or an ItemCollection) onto REF with Dask; per-scene outputs
    and summary.csv / .json / .png and tiepoints.gpkg in OUT_DIR. Register options are those of `sarreg register`.
    Exit 0 all ok, 2 some low quality, 3 some failed."""
    import logging

    import distributed  # noqa: F401 - imported first: it sets its loggers' levels on import
    from tqdm import tqdm

    from sarreg.batch import batch as run_batch, check_run
    from sarreg.batch.runner import without_reference

    asset, ref_asset = register_options.pop("asset", None), register_options.pop("ref_asset", None)
    pol, ref_pol = register_options.pop("pol", None), register_options.pop("ref_pol", None)
    ref = resolve_input(ref, ref_asset or asset, ref_pol or pol)  # a STAC Item -> its asset, a product -> a raster
    paths = _scene_list(scenes, from_list, asset, pol)
    if paths and not (paths := without_reference(ref, paths, outdir)):  # (a glob over the stack may include REF)
        raise InputError(f"{outdir}: no scenes to register (besides the reference and this folder's outputs)")
    if not paths:
        raise click.UsageError("no scenes given (arguments, a glob or --from-list)")
    cfg = config_from_options(register_options)
    check_run(ref, cfg)  # before the progress bar and any cluster: bad input is one line, exit 1
    _check_run_files(outdir, [ref, from_list, Path(cfg.weights) if cfg.weights else None, *paths])
    root = logging.getLogger()
    if root.getEffectiveLevel() > logging.DEBUG:  # Dask logs its cluster life at INFO; keep it for -vv
        for name in ("distributed", "bokeh", "tornado"):
            logging.getLogger(name).setLevel(max(root.getEffectiveLevel(), logging.WARNING))
    bar = tqdm(total=len(paths), unit="scene", disable=not json_progress.bars(progress), file=sys.stderr,
               dynamic_ncols=True)
    json_progress.stage("scenes", 0.0, done=0, total=len(paths))
    done = [0]

    def on_result(r: SceneResult) -> None:
        bar.update(1)
        done[0] += 1
        json_progress.stage("scenes", done[0] / len(paths), done=done[0], total=len(paths), scene=r.scene,
                            scene_status=r.status)
        bar.set_postfix_str(f"{r.scene}: {r.status}{' (resumed)' if r.resumed else ''}", refresh=False)
        if r.status == "failed" and not r.resumed:
            bar.write(f"sarreg: {r.scene}: failed: {r.error}", file=sys.stderr)

    def on_cluster(client: Client) -> None:
        if json_progress.is_quiet():
            return
        bar.write(f"Dask dashboard: {client.dashboard_link} "
                  f"({len(client.scheduler_info().get('workers', {}))} workers)", file=sys.stderr)

    try:
        summary = run_batch(ref, paths, outdir, cfg, chain=chain, resume=resume, scheduler=scheduler,
                            workers=workers, threads_per_worker=threads_per_worker, cache_dir=cache_dir,
                            reference_cache=reference_cache,
                            progress=on_result, on_cluster=on_cluster, checked=True)
    finally:
        bar.close()
    c = summary.counts
    click.echo(f"{len(summary.scenes)} scenes: {c['ok']} ok, {c['low_quality']} low quality, {c['failed']} failed "
               f"({c['resumed']} already done) in {summary.wall_s:.1f} s -> {summary.files.get('csv')}")
    status = {0: "ok", 2: "low_quality"}.get(summary.exit_code, "failed")
    json_progress.final(status, summary.exit_code, summary=summary.files.get("json"), counts=c,
                        outputs=summary.files)
    sys.exit(summary.exit_code)


batch.params.extend(_register_options())
