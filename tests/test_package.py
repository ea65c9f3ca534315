"""Packaging: the package imports, the console script and the ``cli.py`` shim run, metadata and licence."""
from __future__ import annotations

import configparser
import importlib.metadata
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

    assert callable(sarreg.batch) and sarreg.batch.__module__ == "sarreg.batch"
    assert sarreg.register.__module__ == "sarreg.pipeline"
    assert set(sarreg.__all__) <= set(dir(sarreg))
    for name in sarreg.__all__:
        assert getattr(sarreg, name) is not None
