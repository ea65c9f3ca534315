"""Ctrl-C early (issue #10): a SIGINT while the ``sarreg`` command starts (its imports, click, the command's heavy lazy
imports) is one line ``sarreg: interrupted (SIGINT)`` and exit 130, never a Python traceback.

Deterministic: the command runs with ``-X importtime`` and the signal is sent as soon as a given module has been
imported (stderr says so), at each phase of the start-up; and inside GDAL's module init, from an audit hook. Then by
the clock (0.05 s, a quarter and half of a whole run): before the package's first line runs (Python's own start-up,
its site packages) the process may still die of the signal (-2) or show Python's traceback, which no code of sarreg
can catch; once sarreg's code runs, only 130 and the one line.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import terminal_signals
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
                         stderr=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path, preexec_fn=terminal_signals)
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


@pytest.fixture(scope="module")
def run_time(pair, tmp_path_factory) -> float:
    """Seconds of one whole uninterrupted run of the command on this machine (so that "mid-run" is mid-run on a fast
    or a loaded machine alike)."""
    times = []
    for _ in range(2):  # the faster of two: the first may pay for a cold disk cache
        d = tmp_path_factory.mktemp("timed")
        t0 = time.perf_counter()
        p = subprocess.run(_command(pair, d, "module"), capture_output=True, text=True, env=ENV, cwd=d)
        assert p.returncode == 0, p.stderr
        times.append(time.perf_counter() - t0)
    return min(times)


def _wait_for_exec(p: subprocess.Popen, timeout: float = 30.0) -> None:
    """Until the child runs the command (Linux: its /proc cmdline is the command's): a signal that lands between the
    fork and the exec goes to a copy of this test process, whose handler only sets a flag the exec then discards,
    so on a loaded machine the command would run unsignalled to the end."""
    cmdline = f"/proc/{p.pid}/cmdline"
    if not os.path.exists(cmdline):
        return
    with open("/proc/self/cmdline", "rb") as f:
        ours = f.read()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout and p.poll() is None:
        try:
            with open(cmdline, "rb") as f:
                if f.read() != ours:
                    return
        except OSError:
            return
        time.sleep(0.001)


@pytest.mark.parametrize("how", ["module", "script"])
@pytest.mark.parametrize("when", [0.05, "25%", "50%"])
def test_sigint_by_the_clock(pair, tmp_path, run_time, how, when):
    delay = when if isinstance(when, float) else run_time * float(when[:-1]) / 100
    p = subprocess.Popen(_command(pair, tmp_path, how), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=ENV, cwd=tmp_path, preexec_fn=terminal_signals)
    _wait_for_exec(p)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    if p.returncode == 130:
        assert "Traceback" not in err and _lines(err) == ["sarreg: interrupted (SIGINT)"], err
    else:  # Python's own start-up, or the first lines of sarreg/__init__.py before its handler is installed
        assert isinstance(when, float), f"interrupted {delay:.2f} s into a {run_time:.2f} s run: {p.returncode} {err}"
        assert p.returncode in (-signal.SIGINT, 1), (p.returncode, err)
        frames = [ln for ln in err.splitlines() if ln.strip().startswith("File ")]
        ours = [ln for ln in frames if f"{os.sep}sarreg{os.sep}" in ln.replace(f"{os.sep}bin{os.sep}sarreg", "")]
        assert all(f"sarreg{os.sep}__init__.py" in ln for ln in ours), err
    assert not (tmp_path / "o.tif").exists()


# The command's first GDAL import happens mid-run; GDAL's SWIG module init imports an optional module and clears
# whatever error that raised, so an interrupt landing there used to vanish: the run went on and wrote its outputs
# with exit 0. The signal is sent exactly there, from an audit hook, in a real run of the command.
_IN_SWIG_INIT = """
import importlib.machinery, runpy, signal, sys
sent = []
def inside_gdal_init():
    f = sys._getframe(1)
    while f is not None:
        s = f.f_locals.get("self") if f.f_code.co_name in ("create_module", "exec_module") else None
        if isinstance(s, importlib.machinery.ExtensionFileLoader) and s.name == "osgeo._gdal":
            return True
        f = f.f_back
    return False
def hook(event, args):
    if event == "import" and not sent and args[0] != "osgeo._gdal" and inside_gdal_init():
        sent.append(args[0])
        signal.raise_signal(signal.SIGINT)
sys.addaudithook(hook)
sys.argv = ["sarreg", *sys.argv[1:]]
try:
    runpy.run_module("sarreg.cli", run_name="__main__")
finally:
    if not sent:
        sys.stderr.write("never inside GDAL module init\\n")
"""


def test_sigint_inside_gdals_module_init_is_not_lost(pair, tmp_path):
    cmd = _command(pair, tmp_path, "module")
    p = subprocess.run([sys.executable, "-c", _IN_SWIG_INIT, *cmd[3:]], capture_output=True, text=True, env=ENV,
                       cwd=tmp_path, timeout=120, preexec_fn=terminal_signals)
    assert p.returncode == 130, (p.returncode, p.stderr)
    assert _lines(p.stderr) == ["sarreg: interrupted (SIGINT)"], p.stderr
    assert not list(tmp_path.glob("o.*")) and not list(tmp_path.glob(".o.*"))


def test_worker_process_of_the_command_leaves_quietly(tmp_path):
    """A process spawned by the command (Dask's nanny starts its workers with the command's ``sys.argv``) leaves
    on a signal with 128 + signum and prints nothing: the command says "interrupted" once, not once per worker."""
    script = tmp_path / "spawn_child.py"
    script.write_text(
        "import multiprocessing as mp, os, signal, sys, time\n"
        "def child():\n"
        "    import sarreg\n"
        "    assert sarreg.IS_COMMAND and sarreg.IS_CHILD\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(10)\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = os.path.join(os.path.dirname(sys.executable), 'sarreg')\n"
        "    p = mp.get_context('spawn').Process(target=child)\n"
        "    p.start(); p.join(); print('exit', p.exitcode)\n")
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=ENV, timeout=120,
                         preexec_fn=terminal_signals)
    assert res.stdout.strip() == f"exit {128 + signal.SIGTERM}", res.stdout + res.stderr
    assert "interrupted" not in res.stderr, res.stderr


def test_cleanup_that_hangs_after_a_signal_is_cut_short():
    """A clean-up that never ends after a signal (a Dask cluster waiting on a worker that never got it) does not
    keep the command alive: after ``CLEANUP_LIMIT_S`` it leaves with 128 + signum and one "interrupted" line."""
    code = (
        "import os, signal, time\n"
        "import click\n"
        "import sarreg.cli as c\n"
        "c.CLEANUP_LIMIT_S = 1.0\n"
        "@c.cli.command()\n"
        "def hang():\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(30)\n"
        "    finally:\n"
        "        time.sleep(60)  # a clean-up that never ends\n"
        "c.cli(['hang'])\n")
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=50,
                         preexec_fn=terminal_signals)
    assert res.returncode == 128 + signal.SIGTERM, (res.returncode, res.stderr)
    assert _lines(res.stderr) == ["sarreg: interrupted (SIGTERM)"], res.stderr
    assert time.monotonic() - t0 < 30


def test_a_signal_while_click_parses_is_one_line(monkeypatch, capsys):
    """The window the importtime test above hits by chance: the signal lands in click's own parsing of the group's
    arguments, before the command's handlers (click's standalone main would print "Aborted!" and exit 1)."""
    import click

    from sarreg.cli import Interrupted, cli

    def interrupted(*args, **kwargs):
        raise Interrupted(signal.SIGINT)  # what the start-up handler raises in the main thread

    monkeypatch.setattr(click.Group, "make_context", interrupted)
    with pytest.raises(SystemExit) as e:
        cli.main(["info", "x.tif"], prog_name="sarreg")
    assert e.value.code == 130
    assert capsys.readouterr().err.splitlines() == ["sarreg: interrupted (SIGINT)"]
