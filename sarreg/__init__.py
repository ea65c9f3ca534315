"""sarreg: co-register SAR scenes with a learned R2D2-family keypoint network.

Public API::

    register(ref, moving, out, config) -> Report        one pair, coarse-to-fine (sarreg.pipeline)
    batch(...) -> BatchSummary                          a time series on Dask (sarreg.batch)
    extract_file(path, model, cfg) -> Features          tiled keypoint extraction (sarreg.extract)
    extract_array(model, unit, valid, cfg) -> Features  the same on an in-memory [0, 1] image
    match_mnn(desc1, desc2) -> Matches                  mutual nearest neighbours (sarreg.match)
    load_model(path | None) -> Model                    our checkpoints or original R2D2 ones
    ExtractConfig, PreprocessConfig, RegisterConfig     frozen option sets (sarreg.config)
    SarregError and subclasses                          typed errors (sarreg.errors)

Pixel convention everywhere: x = column, y = row, (0, 0) = centre of the top-left pixel.
"""
__version__ = "0.1.0"

import os
import signal
import sys

# The ``sarreg`` command (console script, ``python -m sarreg.cli``, the checkout's cli.py), never a program or a test
# importing the package: a signal during start-up (these imports, the command's heavy ones) ends it at once with one
# line and 128 + signum instead of a traceback; ``sarreg.cli`` turns signals into exceptions while a command runs.
_ARGV = getattr(sys, "orig_argv", sys.argv)
IS_COMMAND = os.path.basename(sys.argv[0] if sys.argv else "") in ("sarreg", "cli.py") or \
    ("-m" in _ARGV[:-1] and _ARGV[_ARGV.index("-m") + 1] in ("sarreg.cli", "sarreg.cli.__main__"))
# (a signal the launcher ignores stays ignored, as Python leaves an ignored SIGINT alone: ``nohup sarreg batch ...``
# ignores SIGHUP so that the run outlives its terminal, a non-interactive shell's background job ignores SIGINT)
SIGNALS = tuple(s for s in (getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))
                if signal.getsignal(s) is not signal.SIG_IGN)
# a worker process of the command (Dask's nanny spawns them with the command's sys.argv): it leaves quietly on a
# signal, the command itself says "interrupted" once
IS_CHILD = "--multiprocessing-fork" in _ARGV or any(a.startswith("from multiprocessing") for a in _ARGV)


def _exit_on_signal(signum: int, frame: object) -> None:
    """Start-up handler: nothing to clean up yet, so leave at once (also the final JSON line of --progress-json)."""
    name = signal.Signals(signum).name
    if IS_CHILD:
        os._exit(128 + signum)
    os.write(2, f"sarreg: interrupted ({name})\n".encode())
    if os.environ.get("SARREG_PROGRESS_JSON", "").strip().lower() not in ("", "0", "false", "no"):
        os.write(2, f'{{"status": "interrupted", "exit_code": {128 + signum}, "signal": "{name}"}}\n'.encode())
    os._exit(128 + signum)


if IS_COMMAND:
    for _s in SIGNALS:
        signal.signal(_s, _exit_on_signal)

import types  # noqa: E402  (after the handler: the window before it stays as short as possible)
from typing import TYPE_CHECKING, Any  # noqa: E402

from sarreg.config import ExtractConfig, PreprocessConfig, RegisterConfig  # noqa: E402
from sarreg.errors import (  # noqa: E402
    CRSError, InputError, LowQuality, OutputError, OverlapError, RegistrationFailed, SarregError, WeightsError,
)

# The heavy parts of the API (torch, OpenCV, rasterio, the pipeline) load on first use, not on ``import sarreg``:
# ``sarreg --help`` and every subcommand import this package first, and most of them need only a few modules.
_LAZY = {
    "Features": "sarreg.extract", "extract_array": "sarreg.extract", "extract_file": "sarreg.extract",
    "extract_scene": "sarreg.extract", "Matches": "sarreg.match", "match_mnn": "sarreg.match",
    "Model": "sarreg.model.weights", "load_model": "sarreg.model.weights", "Report": "sarreg.pipeline",
    "register": "sarreg.pipeline", "BatchSummary": "sarreg.batch", "SceneResult": "sarreg.batch",
    "batch": "sarreg.batch",
}

if TYPE_CHECKING:
    from sarreg.batch import BatchSummary, SceneResult, batch
    from sarreg.extract import Features, extract_array, extract_file, extract_scene
    from sarreg.match import Matches, match_mnn
    from sarreg.model.weights import Model, load_model
    from sarreg.pipeline import Report, register


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562) and cache the name in this namespace."""
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'sarreg' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """``sarreg.batch`` is both a submodule and the public function: keep the function bound on the package
    when the import system binds the submodule (as the former eager ``from sarreg.batch import batch`` did)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "batch" and isinstance(value, types.ModuleType) and hasattr(value, "batch"):
            value = value.batch
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = [
    "__version__", "register", "Report", "batch", "BatchSummary", "SceneResult", "extract_file", "extract_array",
    "extract_scene", "Features", "match_mnn", "Matches", "load_model", "Model", "ExtractConfig",
    "PreprocessConfig", "RegisterConfig", "SarregError", "InputError", "CRSError", "OverlapError", "WeightsError",
    "OutputError", "RegistrationFailed", "LowQuality",
]
