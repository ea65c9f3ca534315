"""``sarreg evaluate``: compare registration methods on pairs with ground truth; ``make-pairs`` builds pairs.

``sarreg evaluate PAIRS_DIR [options]`` is short for ``sarreg evaluate run PAIRS_DIR [options]``. The default
method is the registration pipeline itself (``register``); single-stage methods measure features alone.
"""
from __future__ import annotations

import logging
from pathlib import Path

import click

from sarreg import progress as json_progress
from sarreg.cli.options import config_option, out_arg, writable_dir

from sarreg.config import MODELS, ExtractConfig, PreprocessConfig, RegisterConfig
from sarreg.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_METHODS = "register"


class _DefaultRunGroup(click.Group):
    """A group whose first argument, when it is not a subcommand, goes to the ``run`` subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultRunGroup)
def evaluate() -> None:
    """Benchmark methods on registration pairs with ground truth (run, make-pairs).

    \b
    sarreg evaluate PAIRS_DIR -o OUT              # = sarreg evaluate run PAIRS_DIR -o OUT
    sarreg evaluate make-pairs SRC... -o DIR --n 20 --seed 0
    """


@evaluate.command("run")
@click.argument("pairs_dir", type=click.Path(path_type=Path))
@click.option("--methods", default=DEFAULT_METHODS, show_default=True,
              help="Comma list of: register (the pipeline of 'sarreg register' with the shipped model; "
                   "register-sift when there is none and the methods are the default), register-sift, "
                   "register:CHECKPOINT.pt; phasecorr (the baseline: one phase correlation of the whole images "
                   "after the georeferencing, a shift); single-stage (one extraction per whole image, mutual nearest "
                   "neighbours, one homography): model (the shipped extraction model, as 'sarreg extract'), sift, "
                   "orb, or a checkpoint path.")
@click.option("--model", "reg_model", default="auto", show_default=True,
              type=click.Choice(("auto",) + MODELS + ("local",)),
              help="Transform model of the register methods (as 'sarreg register --model').")
@click.option("--weights", "weights", multiple=True, type=click.Path(path_type=Path),
              help="Extra single-stage checkpoint to compare (ours or an original R2D2 .pt), labelled by file name; "
                   "repeatable.")
@config_option(ExtractConfig, "top_k", help="Keypoints per image (single-stage learned / SIFT).")
@click.option("--rel-thr", type=float, default=None, help="Reliability threshold (default: each model's own).")
@click.option("--rep-thr", type=float, default=None, help="Repeatability threshold (default: each model's own).")
@config_option(ExtractConfig, "min_size", help="Smallest longer side of a pyramid level (px).")
@config_option(ExtractConfig, "max_size", help="Largest longer side of a level (px, 0 = none).")
@config_option(ExtractConfig, "max_scale", help="Largest pyramid scale (above 1: up-sampled levels).")
@config_option(ExtractConfig, "upsample_to",
               help="Images whose longer side is below this get up-sampled levels up to it (0 = off).")
@config_option(ExtractConfig, "subpixel", "--subpixel/--no-subpixel",
               help="Keypoints refined to sub-pixel on the repeatability peak.")
@click.option("--ratio", type=click.FloatRange(0.0, 1.0), default=None,
              help="Lowe ratio on the single-stage MNN matches (default: none).")
@click.option("--threshold", type=click.FloatRange(min=0.0, min_open=True), default=3.0, show_default=True,
              help="Single-stage MAGSAC inlier threshold (reference px, > 0).")
@click.option("--orb-features", type=click.IntRange(min=1), default=5000, show_default=True)
@click.option("--ids", "ids_file", type=click.Path(path_type=Path), default=None,
              help="Text file with one pair id per line: evaluate only these.")
@click.option("--skip-large", is_flag=True,
              help="Skip pairs flagged large in gt.json for single-stage learned methods.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("-o", "--out-dir", type=out_arg, default=None,
              help="Write eval.md, eval.json and mma.png (single-stage methods) here.")
@click.option("--pred-dir", type=out_arg, default=None,
              help="Write <pred-dir>/<method>/<id>.json predictions for the official score.py.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def run(pairs_dir: Path, methods: str, reg_model: str, weights: tuple[Path, ...], top_k: int, rel_thr: float | None,
        rep_thr: float | None, min_size: int, max_size: int, max_scale: float, upsample_to: int, subpixel: bool,
        ratio: float | None, threshold: float, orb_features: int,
        ids_file: Path | None, skip_large: bool, device: str, out_dir: Path | None, pred_dir: Path | None,
        progress: bool) -> None:
    """Run methods over PAIRS_DIR (sub-folders with ref.*, moving.*, gt.json; or a benchmark folder with
    index.json, pairs/, geo_pairs/) and print markdown tables: per method, then per method and source."""
    from tqdm import tqdm

    from sarreg.evaluate import EvalOptions, Method, evaluate as run_eval, load_pairs
    from sarreg.model.weights import default_weights_path

    ids = None
    if ids_file is not None:
        try:
            ids = [ln.strip() for ln in ids_file.read_text().splitlines() if ln.strip()]
        except OSError as e:
            raise InputError(f"{ids_file}: cannot read id list ({e.strerror})") from None
    pairs = load_pairs(pairs_dir, ids, all_ids=True)  # an id of --ids that is not there is an error
    specs = [s.strip() for s in methods.split(",") if s.strip()]
    meths = []
    for s in specs:
        if s.lower() == "register" and default_weights_path() is None and methods == DEFAULT_METHODS:
            log.warning("no shipped model in models/: evaluating register-sift")
            click.echo("sarreg: warning: no shipped model; evaluating method 'register-sift' instead", err=True)
            s = "register-sift"
        meths.append(Method.parse(s))
    for w in weights:
        if not w.is_file():
            raise InputError(f"{w}: weights file not found")
        meths.append(Method(w.stem, "learned", str(w)))
    for d in (out_dir, pred_dir):
        if d is not None:
            writable_dir(d)
    cfg = ExtractConfig(top_k=top_k, rel_thr=rel_thr, rep_thr=rep_thr, min_size=min_size, max_size=max_size,
                        max_scale=max_scale, upsample_to=upsample_to, subpixel=subpixel, device=device,
                        preprocess=PreprocessConfig())
    opt = EvalOptions(register=RegisterConfig(model=reg_model, device=device), extract=cfg, ratio=ratio,
                      threshold=threshold, orb_features=orb_features, skip_large_learned=skip_large)
    bar = tqdm(total=len(pairs) * len(meths), unit="run", disable=not json_progress.bars(progress), leave=False)

    def tick(done: int, total: int, label: str) -> None:
        bar.set_postfix_str(label[-40:])
        bar.update(done - bar.n)

    try:
        res = run_eval(pairs, meths, opt, pred_dir=pred_dir, progress=tick)
    finally:
        bar.close()
    md = res.to_markdown()
    click.echo(md, nl=False)
    if out_dir is not None:
        res.save_markdown(out_dir / "eval.md")
        res.save_json(out_dir / "eval.json")
        res.plot_mma(out_dir / "mma.png")
        click.echo(f"wrote {out_dir / 'eval.md'}, eval.json, mma.png", err=True)


@evaluate.command("make-pairs")
@click.argument("sources", nargs=-1, required=True)
@click.option("-o", "--out-dir", type=click.Path(path_type=Path), required=True, help="Pairs folder to write.")
@click.option("--n", "n", default=20, show_default=True, help="Number of pairs.")
@click.option("--seed", default=0, show_default=True, help="Random seed (same seed -> same pairs).")
@click.option("--size", default=512, show_default=True, help="Crop size in px (0 = whole image).")
@click.option("--looks", default=4.0, show_default=True,
              help="Looks of the synthetic speckle added to single-image sources.")
@click.option("--max-shift", default=40.0, show_default=True, help="Largest random shift (px).")
@click.option("--max-rotation", default=15.0, show_default=True, help="Largest random rotation (degrees).")
@click.option("--scale-range", nargs=2, type=float, default=(0.8, 1.25), show_default=True)
@click.option("--perspective", default=0.05, show_default=True,
              help="Perspective strength (largest change of the projective denominator at the image edge, ~ the "
                   "corner displacement as a fraction of the half-size).")
@click.option("--band", type=int, default=None, help="1-based band (default: VV if described, else 1).")
@click.option("--overwrite", is_flag=True, help="Replace existing pair folders.")
def make_pairs_cmd(sources: tuple[str, ...], out_dir: Path, n: int, seed: int, size: int, looks: float,
                   max_shift: float, max_rotation: float, scale_range: tuple[float, float], perspective: float,
                   band: int | None, overwrite: bool) -> None:
    """Build N pairs from SOURCES: co-registered dates (a folder of rasters, or 'a.tif,b.tif'), or single rasters
    (two independent synthetic speckle draws), warped by seeded random homographies."""
    from sarreg.eval_pairs import WarpRange, make_pairs

    written = make_pairs(sources, out_dir, n, seed=seed, size=size, looks=looks,
                         warp=WarpRange(rotation=max_rotation, scale=tuple(scale_range), perspective=perspective,
                                        shift=max_shift), band=band,
                         overwrite=overwrite)
    click.echo(f"wrote {len(written)} pairs to {out_dir}")


