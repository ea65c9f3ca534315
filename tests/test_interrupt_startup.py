"""Ctrl-C early (issue #10): a SIGINT while the ``sarreg`` command starts (its imports, click, the command's heavy lazy
imports) is one line ``sarreg: interrupted (SIGINT)`` and exit 130, never a Python traceback.

Deterministic: the command runs with ``-X importtime`` and the signal is sent as soon as a given module has been
imported (stderr says so), at each phase of the start-up. Then by the clock (0.05 s, 0.3 s): before the package's
first line runs (Python's own start-up, its site packages) the process may still die of the signal (-2) or show
Python's traceback, which no code of sarreg can catch; once sarreg's code runs, only 130 and the one line.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from test_bad_inputs import REPO, pair  # noqa: F401  (fixture reused)

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
ENV.pop("SARREG_PROGRESS_JSON", None)


def _command(pair, tmp_path, how: str, *python_opts: str) -> list[str]:
    args = ["register", "--features", "sift", str(pair["ref"]), str(pair["mov"]), str(tmp_path / "o.tif")]
    if how == "script":
        exe = os.path.join(os.path.dirname(sys.executable), "sarreg")
        if not os.path.exists(exe):
            pytest.skip("no sarreg console script next to this Python")
        return [sys.executable, *python_opts, exe, *args]
    return [sys.executable, *python_opts, "-m", "sarreg.cli", *args]


def _lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("import time:")]


@pytest.mark.parametrize("how", ["module", "script"])
@pytest.mark.parametrize("after", ["sarreg.config", "click", "sarreg.cli", "rasterio", "sarreg.pipeline"])
def test_sigint_after_an_import_is_one_line(pair, tmp_path, how, after):
    p = subprocess.Popen(_command(pair, tmp_path, how, "-X", "importtime"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path)
    seen = []
    for line in p.stderr:  # type: ignore[union-attr]
        seen.append(line)
        if line.startswith("import time:") and line.rsplit("|", 1)[-1].strip() == after:
            p.send_signal(signal.SIGINT)
            break
    else:
        pytest.fail(f"{after} was never imported: {''.join(seen)[-2000:]}")
    _, err = p.communicate(timeout=120)
    assert "Traceback" not in err, err
    assert p.returncode == 130, err
    assert _lines(err) == ["sarreg: interrupted (SIGINT)"], _lines(err)
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize("how", ["module", "script"])
@pytest.mark.parametrize("delay", [0.05, 0.3])
def test_sigint_by_the_clock(pair, tmp_path, how, delay):
    p = subprocess.Popen(_command(pair, tmp_path, how), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=ENV, cwd=tmp_path)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    if p.returncode == 130:
        assert "Traceback" not in err and _lines(err) == ["sarreg: interrupted (SIGINT)"], err
    else:  # Python's own start-up, or the first lines of sarreg/__init__.py before its handler is installed
        assert p.returncode in (-signal.SIGINT, 1), (p.returncode, err)
        frames = [ln for ln in err.splitlines() if ln.strip().startswith("File ")]
        ours = [ln for ln in frames if f"{os.sep}sarreg{os.sep}" in ln.replace(f"{os.sep}bin{os.sep}sarreg", "")]
        assert all(f"sarreg{os.sep}__init__.py" in ln for ln in ours), err
    assert not (tmp_path / "o.tif").exists()
