"""Packaging: the package imports, the console script and the ``cli.py`` shim run, metadata and licence."""
from __future__ import annotations

import configparser
import json
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import sarreg


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_package_imports_with_version():
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", sarreg.__version__)


def test_installed_metadata_matches_package(repo_root):
    dist = importlib.metadata.distribution("sarreg")
    assert dist.version == sarreg.__version__
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts.get("sarreg") == "sarreg.cli:main"
    # the installed package is this checkout (editable install), not a stale copy elsewhere
    assert Path(sarreg.__file__).resolve().parent == repo_root / "sarreg"


def test_console_script_version(sarreg_exe, tmp_path):
    r = _run([str(sarreg_exe), "--version"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sarreg.__version__ in r.stdout and "sarreg" in r.stdout


def test_console_script_help_lists_commands(sarreg_exe, tmp_path):
    r = _run([str(sarreg_exe), "--help"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Usage: sarreg" in r.stdout
    assert re.search(r"^\s+extract\b", r.stdout, re.M), r.stdout


def test_console_script_rejects_unknown_command(sarreg_exe, tmp_path):
    r = _run([str(sarreg_exe), "no-such-command"], cwd=tmp_path)
    assert r.returncode == 2
    assert "no-such-command" in r.stderr


def test_cli_shim_from_checkout(repo_root):
    r = _run([sys.executable, "cli.py", "--help"], cwd=repo_root)
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout


def test_license_is_mit(repo_root):
    text = (repo_root / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 The sarreg developers" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND" in text
    cfg = configparser.ConfigParser()
    cfg.read(repo_root / "setup.cfg")
    assert cfg["metadata"]["license"] == "MIT"
    assert cfg["options"]["python_requires"] == ">=3.11"


def test_non_editable_install_ships_default_model(repo_root, tmp_path):
    """``pip install .`` (not editable) into a fresh venv puts the shipped weights into the wheel: from outside
    the checkout the default model loads from the installed package and ``sarreg register`` runs with it.

    The venv sees this environment's packages (torch, GDAL, ...) through a .pth path line; sarreg itself comes
    only from the fresh install (no PYTHONPATH, the parent's editable finder is not activated by a path line).
    """
    import shutil
    import sysconfig

    import numpy as np
    from affine import Affine

    from sarreg import synth

    src = tmp_path / "src"  # a copy: the in-tree build must not write build/ or *.egg-info into the checkout
    shutil.copytree(repo_root, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "demo_out", "runs", "out",
        "tests", "benchmarks", "*.tif", "*.png"))
    venv = tmp_path / "venv"
    r = _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path).stdout.strip())
    (site / "_parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)

    r = run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(src)])
    assert r.returncode == 0, r.stderr
    r = run([str(py), "-c", "import sarreg; from sarreg.model.weights import default_weights_path, load_model; "
                            "m = load_model(None); print(sarreg.__file__); print(default_weights_path()); "
                            "print(m.name, m.arch, m.in_channels); "
                            "print(default_weights_path('sarreg_fast_sar_v5xa.pt'))"])
    assert r.returncode == 0, r.stderr
    mod, weights, model, extract_weights = r.stdout.splitlines()
    assert Path(mod).is_relative_to(site) and Path(weights) == site / "sarreg" / "_models" / "sarreg_fast_sar_v5.pt"
    assert model == "sarreg_fast_sar_v5.pt Fast_Quad_L2Net_ConfCFS 1"
    assert Path(extract_weights) == site / "sarreg" / "_models" / "sarreg_fast_sar_v5xa.pt"  # extract's model

    # the console script of the install registers a pair with the default (packaged) model
    rng = np.random.default_rng(1)
    big = synth.reflectivity(320, 320, seed=1)
    t = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)
    for name, dx, dy in (("ref.tif", 0.0, 0.0), ("mov.tif", 3.0, -2.0)):
        h = np.array([[1, 0, 32 + dx], [0, 1, 32 + dy], [0, 0, 1.0]])
        synth.write_geotiff(work / name, synth.speckle(synth.warp_image(big, h, (256, 256)), 4.0, rng), t,
                            "EPSG:32631")
    r = run([str(venv / "bin" / "sarreg"), "register", "--model", "shift", "ref.tif", "mov.tif",
             "out.tif"])
    assert r.returncode == 0, r.stderr
    rep = json.loads((work / "out.report.json").read_text())
    assert rep["status"] == "ok" and rep["weights"]["name"] == "sarreg_fast_sar_v5.pt"
    assert abs(rep["correction"]["dx_px"] - 3.0) < 0.5 and abs(rep["correction"]["dy_px"] + 2.0) < 0.5


def test_cli_import_is_light(repo_root):
    """Building the command line (``sarreg --help``, option parsing) imports none of the heavy packages: they load
    when a subcommand runs. Checked in a fresh interpreter (this test process has them all loaded)."""
    heavy = ("torch", "cv2", "rasterio", "numpy", "dask", "distributed", "matplotlib", "pyogrio", "shapely", "pyproj",
             "osgeo", "tqdm")
    code = ("import sys, sarreg, sarreg.cli; "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    r = _run([sys.executable, "-c", code], cwd=repo_root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"imported at start-up: {r.stdout.strip()}"


def test_lazy_public_api():
    """The public names resolve on first use; ``sarreg.batch`` stays the function even after the submodule loads."""
    import sarreg.batch  # noqa: F401 - binds the submodule on the package

    assert callable(sarreg.batch) and sarreg.batch.__module__.startswith("sarreg.batch")
    assert sarreg.register.__module__ == "sarreg.pipeline"
    assert set(sarreg.__all__) <= set(dir(sarreg))
    for name in sarreg.__all__:
        assert getattr(sarreg, name) is not None
