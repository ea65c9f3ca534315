"""``sarreg train``: self-supervised training of the SAR keypoint network."""
from __future__ import annotations

import json
import logging
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sarreg import progress as json_progress
from sarreg.errors import InputError

if TYPE_CHECKING:
    from sarreg.train.pairs import Source

log = logging.getLogger(__name__)
PROBABILITY = click.FloatRange(0.0, 1.0)


def _load_config(path: Path) -> dict:
    try:
        text = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read config ({e.strerror})") from None
    try:
        if path.suffix.lower() == ".toml":
            return tomllib.loads(text.decode())
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: invalid {'TOML' if path.suffix.lower() == '.toml' else 'JSON'} ({e})") from None


def build_sources(data: list[str], stacks: list[str], synthetic: bool, crop: int, val_holdout: int,
                  weights: dict[str, float], terrain: float = 0.0, polar: float = 0.0,
                  modal: list[tuple[str, str]] | None = None) -> tuple[list[Source], list[Source]]:
    """CLI data arguments -> (training sources, validation sources).

    A file is a single image; a folder with BEFORE/ and AFTER/ is a set of two-date pairs (the last
    ``val_holdout`` pairs are held out for validation); any other folder is a set of single images; each
    ``--stack`` folder holds co-registered dates of one scene. ``polar``: probability that a multi-channel single
    image (a Pauli RGB) gives two of its channels, a real cross-polarisation pair. ``modal``: (radar, optical)
    images of one scene on the same pixel grid.
    """
    from sarreg.train.images import IMAGE_EXTS, find_date_pairs, list_images
    from sarreg.train.pairs import Source

    singles, pairs, stack_items = [], [], []
    for d in data:
        p = Path(d)
        if p.is_file():
            if p.suffix.lower() not in IMAGE_EXTS:
                raise InputError(f"{p}: not a supported image file ({', '.join(sorted(IMAGE_EXTS))})")
            singles.append(p)
        elif p.is_dir():
            if {c.name.upper() for c in p.iterdir() if c.is_dir()} >= {"BEFORE", "AFTER"}:
                pairs.extend(find_date_pairs(p))
            else:
                found = list_images(p)
                if not found:
                    raise InputError(f"{p}: no image files found")
                singles.extend(found)
        else:
            raise InputError(f"{p}: file or folder not found")
    for d in stacks:
        found = list_images(d) if Path(d).is_dir() else []
        if len(found) < 2:
            raise InputError(f"{d}: a stack folder needs at least two co-registered images")
        stack_items.append(found)
    modal_items = []
    for radar, optical in modal or []:
        for f in (radar, optical):
            if not Path(f).is_file():
                raise InputError(f"{f}: --modal needs two image files (radar, optical)")
        modal_items.append((Path(radar), Path(optical)))

    sources, val_sources = [], []
    if synthetic:
        sources.append(Source("synthetic", weights.get("synthetic", 1.0), size=2 * crop, terrain=terrain))
        val_sources.append(Source("synthetic", 1.0, size=384))
    if pairs:
        hold = min(val_holdout, len(pairs) // 5)
        train_pairs = pairs[:len(pairs) - hold] if hold else pairs
        sources.append(Source("pairs", weights.get("pairs", 1.0), train_pairs))
        if hold:
            val_sources.append(Source("pairs", 1.0, pairs[len(pairs) - hold:]))
    if singles:
        sources.append(Source("single", weights.get("single", 0.5), singles, polar=polar))
    if stack_items:
        sources.append(Source("stack", weights.get("stack", 1.0), stack_items))
    if modal_items:
        sources.append(Source("modal", weights.get("modal", 0.3), modal_items))
    if not sources:
        raise InputError("no training data: give image files/folders or keep --synthetic")
    if not val_sources:
        val_sources = sources
    return sources, val_sources


@click.command("train")
@click.argument("data", nargs=-1, type=click.Path(path_type=str))
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
              help="JSON or TOML file with any of these options (underscored names) plus 'data' and 'stacks' lists.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("runs/train"),
              show_default=True, help="Run folder: last.pt, best.pt, logs, curves.png.")
@click.option("--stack", "stacks", multiple=True, type=click.Path(path_type=str),
              help="Folder of co-registered dates of one scene (repeatable).")
@click.option("--modal", "modal", multiple=True, nargs=2, type=click.Path(path_type=str),
              metavar="RADAR OPTICAL", help="A radar image and an optical image of one scene on the same pixel grid "
              "(a cross-modal pair: descriptors of shapes, not grey levels; repeatable).")
@click.option("--iterations", type=click.IntRange(min=1), default=1500, show_default=True)
@click.option("--crop", type=int, default=160, show_default=True, help="Training crop side (even).")
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--mchan", type=click.IntRange(min=1), default=4, show_default=True,
              help="Width multiplier of the network.")
@click.option("--arch", type=click.Choice(["Fast_Quad_L2Net_ConfCFS", "Quad_L2Net_ConfCFS"]),
              default="Fast_Quad_L2Net_ConfCFS", show_default=True,
              help="Network: Fast (half-resolution trunk) or full resolution (slower, more precise). A Fast --init "
                   "checkpoint is converted to the full-resolution network (same weights, sarreg.train.atrous).")
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt (weights, optimizer, iteration).")
@click.option("--synthetic/--no-synthetic", default=True, show_default=True, help="Use sarreg.synth scenes.")
@click.option("--synthetic-weight", type=float, default=1.0, show_default=True)
@click.option("--pairs-weight", type=float, default=1.0, show_default=True)
@click.option("--single-weight", type=float, default=0.5, show_default=True)
@click.option("--stack-weight", type=float, default=1.0, show_default=True)
@click.option("--modal-weight", type=float, default=0.3, show_default=True)
@click.option("--val-holdout", type=click.IntRange(min=0), default=4, show_default=True,
              help="Two-date pairs held out of training for validation.")
@click.option("--val-every", type=click.IntRange(min=1), default=100, show_default=True,
              help="Validate every this many iterations.")
@click.option("--val-pairs", type=click.IntRange(min=1), default=8, show_default=True,
              help="Fixed validation pairs (256 px; best.pt is the checkpoint that scores best on them).")
@click.option("--w-reliability", type=float, default=1.0, show_default=True)
@click.option("--w-cosim", type=float, default=1.0, show_default=True)
@click.option("--w-peaky", type=float, default=1.0, show_default=True)
@click.option("--w-sharpen", type=float, default=0.0, show_default=True)
@click.option("--w-ap", type=float, default=0.0, show_default=True,
              help="Weight of an ungated 1 - AP term (keeps descriptors learning while reliability is low).")
@click.option("--maxpool-pos/--no-maxpool-pos", default=True, show_default=True,
              help="Keep only the best of the positives (NAVER) or all of them (SAR fork).")
@click.option("--pos-d", type=int, default=3, show_default=True,
              help="AP loss: positives within this many px of the true position (R2D2: 3; smaller = more precise).")
@click.option("--neg-d", type=int, default=5, show_default=True,
              help="AP loss: negatives from this many px on (R2D2: 5; above --pos-d, at most 7).")
@click.option("--rel-lr-mult", type=float, default=1.0, show_default=True,
              help="Learning-rate multiplier for the reliability head.")
@click.option("--lr-decay-from", type=click.IntRange(min=0), default=0, show_default=True,
              help="From this iteration on the learning rate follows a cosine down to 0 at --iterations "
                   "(an annealed end of a fine-tune; 0 = constant).")
@click.option("--amp/--no-amp", default=False, show_default=True,
              help="bfloat16 autocast for the convolution trunk (about 2x faster on CPUs with AVX512-BF16 or AMX; "
                   "where bfloat16 is emulated it warns and trains in float32).")
@click.option("--init", default="", metavar="CHECKPOINT",
              help="Start from these weights (our format; fresh optimizer, iteration 0) instead of random ones; "
                   "a narrower checkpoint (smaller mchan) is widened with the same outputs (Net2WiderNet).")
@click.option("--bn-batches", type=int, default=25, show_default=True,
              help="Training batches that re-estimate BatchNorm statistics after a Fast -> full conversion.")
@click.option("--val-rank", type=click.Choice(["rep_rel", "rep"]), default="rep_rel", show_default=True,
              help="Validation ranks keypoints by repeatability x reliability, or by repeatability alone "
                   "(for models shipped with a constant reliability).")
@click.option("--sensor", type=PROBABILITY, default=0.0, show_default=True,
              help="Per-view probability of another sensor's look: resolution, noise floor, 8/16-bit storage.")
@click.option("--distort", type=PROBABILITY, default=0.0, show_default=True,
              help="Probability of a smooth non-projective distortion of the second view (terrain, ground range).")
@click.option("--terrain", type=PROBABILITY, default=0.0, show_default=True,
              help="Probability that a synthetic scene is mountains (topographic shading, snow lines).")
@click.option("--season", type=PROBABILITY, default=0.0, show_default=True,
              help="Probability of strong temporal change of the second view (regional level changes, +-6 dB gain).")
@click.option("--polar", type=PROBABILITY, default=0.0, show_default=True,
              help="Probability of a cross-polarisation pair: one view as VH/HV would show it, or two channels "
                   "of a multi-channel (Pauli RGB) image.")
@click.option("--jpeg", type=PROBABILITY, default=0.0, show_default=True,
              help="Per-view probability of an 8-bit JPEG file (dB stretch, quality 40-95: block artefacts).")
@click.option("--single-look", type=PROBABILITY, default=0.0, show_default=True,
              help="Per-view probability that a real two-date pair's view gets 1-2-look speckle (single-look "
                   "products; the shipped real scenes are multi-looked).")
@click.option("--near-identity", type=PROBABILITY, default=0.0, show_default=True,
              help="Probability of a georeferenced-style warp (any shift, at most ~1 px of rotation, scale and "
                   "shear) instead of a random homography: sub-pixel accuracy where most real pairs are.")
@click.option("--contrast", type=PROBABILITY, default=0.0, show_default=True,
              help="Probability that one view goes through a random intensity transfer curve (contrast "
                   "reversals, regional changes): descriptors of shapes, not grey levels, for unseen sensors.")
@click.option("--freeze-bn", is_flag=True,
              help="BatchNorm layers normalise with their stored statistics, as at inference, and keep them (a "
                   "fine-tune of a trained model); the convolutions still learn.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=1, show_default=True,
              help="Pair-generation worker processes.")
@click.option("--checkpoint-minutes", type=float, default=5.0, show_default=True)
@click.option("--max-minutes", type=float, default=0.0, show_default=True, help="Stop after this time (0 = off).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def train(ctx: click.Context, data: tuple[str, ...], config_file: Path | None, out_dir: Path,
          stacks: tuple[str, ...], modal: tuple[tuple[str, str], ...], no_progress: bool, **opts: Any) -> None:
    """Train the keypoint network on DATA (images, folders, BEFORE/AFTER pair folders) + synthetic scenes."""
    from click.core import ParameterSource

    from sarreg.train.loop import TrainConfig, check_train
    from sarreg.train.loop import train as run_train

    data, stacks, modal_pairs = list(data), list(stacks), [tuple(m) for m in modal]
    if config_file is not None:
        conf = _load_config(config_file)
        known = set(opts) | {"data", "stacks", "modal", "out"}
        unknown = set(conf) - known
        if unknown:
            raise InputError(f"{config_file}: unknown option(s) {', '.join(sorted(unknown))}")
        for k, v in conf.items():
            if k == "data" and not data:
                data = [str(x) for x in v]
            elif k == "stacks" and not stacks:
                stacks = [str(x) for x in v]
            elif k == "modal" and not modal_pairs:
                modal_pairs = [(str(a), str(b)) for a, b in v]
            elif k == "out" and ctx.get_parameter_source("out_dir") == ParameterSource.DEFAULT:
                out_dir = Path(v)
            elif k in opts and ctx.get_parameter_source(k) == ParameterSource.DEFAULT:
                param = next(p for p in ctx.command.params if p.name == k)
                try:  # the option's own type and range, as on the command line
                    opts[k] = param.type_cast_value(ctx, v)
                except click.BadParameter as e:
                    raise InputError(f"{config_file}: {k}: {e.message}") from None
    weights = {k: opts.pop(f"{k}_weight") for k in ("synthetic", "pairs", "single", "stack", "modal")}
    synthetic, val_holdout, resume = opts.pop("synthetic"), opts.pop("val_holdout"), opts.pop("resume")
    cfg = TrainConfig(**opts)
    check_train(out_dir, cfg, resume)
    sources, val_sources = build_sources(data, stacks, synthetic, cfg.crop, val_holdout, weights, cfg.terrain,
                                         cfg.polar, modal_pairs)
    for s in sources:
        if not json_progress.is_quiet():
            click.echo(f"training data: {s.describe()}, weight {s.weight:g}", err=True)
    state = run_train(sources, out_dir, cfg, val_sources=val_sources, resume=resume, progress=not no_progress)
    if not json_progress.is_quiet():
        click.echo(f"stopped at iteration {state.iteration}; best validation M-score {state.best:.4f}; "
                   f"checkpoints in {out_dir}", err=True)
