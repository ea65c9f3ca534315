"""The ``sarreg`` command: a click group of thin subcommands over the library API.

Errors are handled here, in one place: any ``SarregError`` becomes a one-line ``sarreg: error: ...``
message on stderr and the error's exit code (1 by default, 2 low quality, 3 failed registration).
SIGINT, SIGTERM and SIGHUP interrupt the command the same way (outputs in progress are removed) and exit with
128 + the signal number (130, 143, 129) after one ``sarreg: interrupted (SIGxxx)`` line.
"""
from __future__ import annotations

import importlib.machinery
import logging
import os
import signal
import sys
import threading
import warnings
from types import FrameType
from typing import Any

from sarreg import IS_COMMAND, SIGNALS as _SIGNALS  # noqa: I001 - first: sarreg installs the start-up handler
from sarreg.errors import Interrupted  # (re-exported: sarreg.cli.Interrupted)


# seconds the clean-up after a signal may take (finally blocks, a Dask cluster's shutdown) before the process
# leaves anyway: a clean-up stuck on a worker that never got the signal must not keep the command alive
CLEANUP_LIMIT_S = 30.0
_reported: list[int] = []  # the "interrupted" line was printed (by the command, or by the watchdog)
_watchdogs: list[threading.Timer] = []


def _watchdog(signum: int) -> None:
    """Leave with 128 + signum when the clean-up after a signal has not ended within ``CLEANUP_LIMIT_S``."""
    if not _reported:
        _reported.append(signum)
        os.write(2, f"sarreg: interrupted ({signal.Signals(signum).name})\n".encode())
        progress.final("interrupted", 128 + signum, signal=signal.Signals(signum).name)
    os._exit(128 + signum)


def _raise_on_signal(signum: int, frame: FrameType | None) -> None:
    if not _watchdogs:  # (the first signal starts the clock of the clean-up)
        t = threading.Timer(CLEANUP_LIMIT_S, _watchdog, (signum,))
        t.daemon = True
        t.start()
        _watchdogs.append(t)
    if _in_extension_init(frame) or _in_logging(frame):
        # a C module's init (GDAL's SWIG bindings import an optional module and clear any error), or a log call
        # from C (GDAL's error callback, while it retries a failing remote read) would swallow the exception with a
        # traceback and the command would go on as if never interrupted: deliver the signal again once it is done
        t = threading.Timer(0.01, signal.pthread_kill, (threading.main_thread().ident, signum))
        t.daemon = True
        t.start()
        return
    raise Interrupted(signum)


def _in_logging(frame: FrameType | None) -> bool:
    """True while the signal landed in a log call (the ``logging`` module below ``frame``; maybe from a C callback)."""
    while frame is not None:
        if frame.f_code.co_filename == logging.__file__:
            return True
        frame = frame.f_back
    return False


def _in_extension_init(frame: FrameType | None) -> bool:
    """True while an extension module is being created or executed below ``frame`` (a lazy import of the command)."""
    while frame is not None:
        if frame.f_code.co_name in ("create_module", "exec_module") and \
                isinstance(frame.f_locals.get("self"), importlib.machinery.ExtensionFileLoader):
            return True
        frame = frame.f_back
    return False


def _install(handler) -> dict[int, object]:
    """Set ``handler`` for SIGINT / SIGTERM / SIGHUP (main thread only); -> the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, handler) for s in _SIGNALS}


def _restore(old: dict[int, object]) -> None:
    for s, h in old.items():
        signal.signal(s, h)


import click  # noqa: E402

from sarreg import __version__, progress  # noqa: E402
from sarreg.errors import SarregError  # noqa: E402


class _Group(click.Group):
    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        """click's own parsing, before ``invoke``: a signal here is one line and 128 + signum too (click's
        standalone main would turn it into "Aborted!" and exit 1)."""
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt as e:
            signum = getattr(e, "signum", signal.SIGINT)
            click.echo(f"sarreg: interrupted ({signal.Signals(signum).name})", err=True)
            sys.exit(128 + signum)

    def invoke(self, ctx: click.Context) -> Any:
        old = _install(_raise_on_signal)
        _reported.clear()
        old_hook, sys.unraisablehook = sys.unraisablehook, _log_unraisable
        progress.enable(ctx.params.get("progress_json", False))
        code = None
        try:
            with warnings.catch_warnings():
                # library warnings (torch, rasterio, pyogrio, matplotlib) go to the log: shown with -v, never as
                # extra stderr lines
                logging.captureWarnings(True)
                warnings.simplefilter("default")
                try:
                    rv = super().invoke(ctx)
                finally:
                    # the command is over: its outputs are committed or removed and what follows only reports
                    # that, so a signal now is ignored (no second line, no click "Aborted!", no exit 130 over a
                    # finished result)
                    _install(signal.SIG_IGN)
            progress.final("ok", 0)  # commands without their own final line (ignored when they sent one)
            return rv
        except SarregError as e:
            click.echo(f"sarreg: error: {e}", err=True)
            progress.final("error", e.exit_code, message=f"sarreg: error: {e}")
            code = e.exit_code
        except click.UsageError as e:  # bad option values: one line too (click's exit code 2 for usage errors)
            cmd = f" (sarreg {e.ctx.command.name} --help)" if e.ctx is not None and e.ctx.command is not self else ""
            msg = " ".join(e.format_message().split())
            click.echo(f"sarreg: error: {msg}{cmd}", err=True)
            progress.final("error", e.exit_code, message=f"sarreg: error: {msg}{cmd}")
            code = e.exit_code
        except KeyboardInterrupt as e:
            signum = getattr(e, "signum", signal.SIGINT)
            if not _reported:
                _reported.append(signum)
                click.echo(f"sarreg: interrupted ({signal.Signals(signum).name})", err=True)
            progress.final("interrupted", 128 + signum, signal=signal.Signals(signum).name)
            code = 128 + signum
        finally:
            if code is not None:
                # the error is gone; what its frames held (a GDAL dataset whose close fails on a full disk) is
                # finalized now, while finalizer errors go to the log, not after the exit as extra stderr lines
                import gc

                gc.collect()
            logging.captureWarnings(False)
            sys.unraisablehook = old_hook
            if not IS_COMMAND:  # a program running the group in-process gets its own handlers back
                _restore(old)
                while _watchdogs:  # (the command's own process keeps them: its exit may still hang, in atexit)
                    _watchdogs.pop().cancel()
        sys.exit(code)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="sarreg")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.option("--progress-json", is_flag=True,
              help="Progress as JSON lines on stderr ({\"stage\": ..., \"progress\": 0..1}, then one final "
                   "{\"status\": ..., \"exit_code\": ...}); no progress bars. Also SARREG_PROGRESS_JSON=1.")
def cli(verbose: int, quiet: bool, progress_json: bool) -> None:
    """Co-register SAR scenes with a learned keypoint network."""
    _set_environment()
    progress.quiet(quiet)
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # warnings of libraries (captured into the log by the group; GDAL's, which rasterio logs, e.g. a damaged TIFF's
    # tags before the one error line) and "Exception ignored in ..." messages of finalizers (e.g. GDAL closing a
    # dataset on a full disk) are shown with -v only
    for name in ("py.warnings", "rasterio"):
        logging.getLogger(name).setLevel(logging.WARNING if verbose else logging.ERROR)


def _set_environment() -> None:
    """Process environment of a command (here, when a command runs, never on import: a program importing
    ``sarreg.cli`` keeps its own). Both are read later, when first used: torch is imported by the command, GDAL
    reads its cache size at the first raster block."""
    # PyTorch's CPU allocator: transparent huge pages remove most page-fault time (spec section 9).
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    # GDAL's block cache defaults to 5 % of RAM and grows with every block read: bound it so that peak memory of a
    # windowed pass over a big scene stays flat (the user's own GDAL_CACHEMAX wins).
    os.environ.setdefault("GDAL_CACHEMAX", "256")


def _log_unraisable(u) -> None:
    logging.getLogger("sarreg.cli").info("exception ignored in %r: %s: %s", getattr(u, "object", None),
                                          getattr(u.exc_type, "__name__", u.exc_type), u.exc_value)


def main() -> None:
    """Console-script entry point: a signal anywhere (start-up, click, the command) is one line and 128 + signum."""
    try:
        cli(prog_name="sarreg")
    except KeyboardInterrupt as e:  # outside a command (click's own start-up)
        signum = getattr(e, "signum", signal.SIGINT)
        click.echo(f"sarreg: interrupted ({signal.Signals(signum).name})", err=True)
        sys.exit(128 + signum)
    finally:
        if IS_COMMAND and threading.current_thread() is threading.main_thread():
            # the command is over and its exit code final: a signal while the interpreter shuts down (Python
            # restores the default handlers part way, which would end the process as killed by the signal) is ignored
            for s in _SIGNALS:
                signal.signal(s, signal.SIG_IGN)


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

from sarreg.cli.info import info  # noqa: E402
cli.add_command(info)
