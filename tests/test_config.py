"""Options defined once (sarreg.config): defaults, choices and ranges shared by the CLI and validate()."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields

import click
import pytest
from click.testing import CliRunner

from sarreg.cli import cli
from sarreg.cli.options import config_from_params
from sarreg.config import ExtractConfig, PreprocessConfig, RegisterConfig, check_config, default
from sarreg.errors import InputError


def _config_options(command: str, cls: type) -> list[tuple[click.Option, type]]:
    """The options of ``sarreg COMMAND`` that set a field of ``cls`` or of its PreprocessConfig."""
    own = {f.name for f in fields(cls)}
    pre = {f.name for f in fields(PreprocessConfig)}
    out = []
    for p in cli.commands[command].params:
        if isinstance(p, click.Option) and p.name in own:
            out.append((p, cls))
        elif isinstance(p, click.Option) and p.name in pre:
            out.append((p, PreprocessConfig))
    return out


@pytest.mark.parametrize("command,cls", [("register", RegisterConfig), ("batch", RegisterConfig),
                                         ("extract", ExtractConfig)])
def test_click_defaults_are_the_config_defaults(command, cls):
    opts = _config_options(command, cls)
    assert len(opts) >= 12
    ctx = click.Context(cli.commands[command])
    for p, owner in opts:
        assert p.get_default(ctx) == default(owner, p.name), p.name
    # what the command builds from its defaults is the config's default
    params = {p.name: p.get_default(ctx) for p in cli.commands[command].params if isinstance(p, click.Option)}
    assert config_from_params(cls, params) == cls()


def test_click_ranges_and_choices_come_from_the_fields():
    params = {p.name: p for p in cli.commands["register"].params}
    assert list(params["model"].type.choices) == list(RegisterConfig.__dataclass_fields__["model"].metadata["choices"])
    thr = params["threshold"].type
    assert isinstance(thr, click.FloatRange) and thr.min == 0 and thr.min_open
    assert params["fine_tile"].type.min == 64 and params["n_tiles"].opts == ["--tiles"]
    assert params["compress"].type.case_sensitive is False


def test_validate_checks_choices_ranges_and_combinations():
    assert RegisterConfig().validate() == RegisterConfig()
    for bad, needle in ((dict(model="rigid"), "unknown model 'rigid'"), (dict(robust="x"), "unknown robust"),
                        (dict(threshold=0.0), "threshold must be > 0"), (dict(ratio=1.5), "ratio must be within"),
                        (dict(fine_tile=10), "fine_tile must be >= 64"), (dict(compress="deflate"), "compress"),
                        (dict(min_coverage=float("nan")), "min_coverage"), (dict(features="orb"), "features"),
                        (dict(preprocess=PreprocessConfig(kind="raw")), "unknown kind"),
                        (dict(preprocess=PreprocessConfig(band=0)), "band must be >= 1"),
                        (dict(update_georef=True, model="homography"), "--update-georef needs"),
                        (dict(update_georef=True, warp=False), "--no-warp writes no raster"),
                        (dict(seed=-5), r"seed must be within \[0, 2147483647\]"), (dict(seed=2 ** 64), "seed"),
                        (dict(grid_spacing=8), r"--grid-spacing must be 0 \(auto\) or >= 32 px")):
        with pytest.raises(InputError, match=needle):
            RegisterConfig(**bad).validate()
    RegisterConfig(max_shift=None, ratio=None, moving_band=None, device="cuda:1").validate()  # None where allowed
    check_config(ExtractConfig(precision="bf16"))
    with pytest.raises(InputError, match="unknown precision"):
        check_config(ExtractConfig(precision="fp16"))


def test_library_rejects_bad_options_before_any_work(tmp_path):
    from sarreg.batch import check_run
    from sarreg.pipeline import register

    with pytest.raises(InputError, match="threshold must be > 0"):
        register(tmp_path / "missing_ref.tif", tmp_path / "missing_mov.tif", tmp_path / "o.tif",
                 RegisterConfig(threshold=-1.0))
    with pytest.raises(InputError, match="unknown resampling"):
        check_run(tmp_path / "missing_ref.tif", RegisterConfig(resampling="sinc"))
    assert not list(tmp_path.iterdir())


def test_fine_tile_keeps_the_old_tile_size_name():
    cfg = RegisterConfig(tile_size=256)  # the keyword of earlier versions
    assert cfg.fine_tile == 256 and cfg.tile_size == 256 and "tile_size" not in cfg.to_dict()
    assert cfg.with_(n_tiles=3).fine_tile == 256 and cfg.with_(tile_size=128).fine_tile == 128
    assert RegisterConfig().fine_tile == 384 and ExtractConfig().tile_size == 1024  # two meanings, two names
    # the CLI: --fine-tile, and --tile-size as a hidden alias of it on register / batch
    assert config_from_params(RegisterConfig, {"fine_tile": 384, "tile_size_alias": 128}).fine_tile == 128
    assert config_from_params(RegisterConfig, {"fine_tile": 200, "tile_size_alias": None}).fine_tile == 200
    with pytest.raises(click.UsageError, match="old name of --fine-tile"):
        config_from_params(RegisterConfig, {"fine_tile": 200, "tile_size_alias": 128})
    for command in ("register", "batch"):
        p = {q.name: q for q in cli.commands[command].params}["tile_size_alias"]
        assert p.hidden and p.opts == ["--tile-size"]
        assert "--tile-size" not in CliRunner().invoke(cli, [command, "--help"]).output
    res = CliRunner().invoke(cli, ["register", "a.tif", "b.tif", "o.tif", "--tile-size", "10"])
    assert res.exit_code == 2 and "--tile-size" in res.stderr  # parsed (and range-checked) as before


def test_config_from_params_normalises_cli_values(tmp_path):
    cfg = config_from_params(RegisterConfig, {"compress": "zstd", "no_warp": True, "weights": tmp_path / "w.pt",
                                              "kind": "db", "despeckle": 3, "as_json": True})
    assert (cfg.compress, cfg.warp, cfg.weights) == ("ZSTD", False, str(tmp_path / "w.pt"))
    assert cfg.preprocess == PreprocessConfig(kind="db", despeckle=3)
    ext = config_from_params(ExtractConfig, {"top_k": 10, "tile_size": 0, "band": 2, "precision": "bf16"})
    assert (ext.top_k, ext.tile_size, ext.precision, ext.preprocess.band) == (10, 0, "bf16", 2)


def test_environment_is_set_by_a_command_not_on_import():
    env = {k: v for k, v in os.environ.items() if k not in ("GDAL_CACHEMAX", "THP_MEM_ALLOC_ENABLE")}
    code = ("import os, sarreg.cli as c\n"
            "print(os.environ.get('GDAL_CACHEMAX'), os.environ.get('THP_MEM_ALLOC_ENABLE'))\n"
            "try:\n    c.cli(['extract', '--help'], prog_name='sarreg')\nexcept SystemExit:\n    pass\n"
            "print(os.environ.get('GDAL_CACHEMAX'), os.environ.get('THP_MEM_ALLOC_ENABLE'))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    lines = out.stdout.splitlines()
    assert lines[0] == "None None" and lines[-1] == "256 1", out.stdout + out.stderr
    env["GDAL_CACHEMAX"] = "64"  # the user's own value wins
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.splitlines()[-1] == "64 1", out.stdout + out.stderr
