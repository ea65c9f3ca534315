"""Machine-readable progress: one JSON object per line on stderr, for programs that run the ``sarreg`` command
(the QGIS plugin, ``qgis/sarreg_qgis``) and want to show its progress and result.

Turned on by ``sarreg --progress-json COMMAND ...`` or the environment variable ``SARREG_PROGRESS_JSON=1`` (which
also covers an interrupt during start-up). Lines are

* ``{"stage": "fine", "progress": 0.2}`` while a command runs (``progress`` from 0 to 1, non-decreasing; extra keys
  such as ``"scene"`` may follow), and
* one final ``{"status": "ok", "exit_code": 0, ...}``: ``status`` is a registration status (``ok``,
  ``low_quality``, ``failed``; with ``"report": PATH``), ``error`` (with ``"message"``, the one-line error) or
  ``interrupted`` (with ``"signal"``).

Other stderr lines (log messages, the ``sarreg: error: ...`` line) are unchanged; a reader keeps the lines that
parse as a JSON object. Human progress bars (tqdm) are off in this mode. No heavy imports here.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

ENV = "SARREG_PROGRESS_JSON"

# start of each ``sarreg.pipeline.register`` step as a fraction of the run (measured: the fine stage dominates)
REGISTER_STAGES = {"relate": 0.0, "model": 0.04, "coarse": 0.08, "fine": 0.18, "estimate": 0.6, "refine": 0.62,
                   "offsets": 0.72, "warp": 0.82, "sidecars": 0.94}

_state = {"flag": False, "final": False, "quiet": False}


def enable(on: bool = True) -> None:
    """Turn JSON progress on (``--progress-json``) for this process; the environment variable also does."""
    _state["flag"] = on
    _state["final"] = False


def enabled() -> bool:
    """JSON progress on (flag or environment variable): emitters write only then and human progress bars stay off."""
    return _state["flag"] or os.environ.get(ENV, "").strip().lower() not in ("", "0", "false", "no")


def quiet(on: bool = True) -> None:
    """``sarreg -q`` (only errors) for this process: no human progress bars (``bars``)."""
    _state["quiet"] = on


def is_quiet() -> bool:
    """``sarreg -q``: only errors on stderr."""
    return bool(_state.get("quiet", False))


def bars(wanted: bool) -> bool:
    """Human progress bars on: asked for (``--progress``), no JSON progress, and not ``sarreg -q``."""
    return wanted and not enabled() and not _state.get("quiet", False)


def emit(**obj: Any) -> None:
    """Write ``obj`` as one JSON line on stderr (when enabled)."""
    if not enabled():
        return
    try:
        sys.stderr.write(json.dumps(obj, default=str) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # closed pipe: the reader is gone, progress is not worth an error
        pass


def stage(name: str, progress: float, **extra: Any) -> None:
    """A step started (or advanced): ``{"stage": name, "progress": p, ...}``."""
    emit(stage=name, progress=round(min(1.0, max(0.0, float(progress))), 4), **extra)


def register_step(name: str) -> None:
    """``progress`` callback of ``sarreg.pipeline.register``: its step names mapped to fractions."""
    stage(name, REGISTER_STAGES.get(name, 0.0))


def final(status: str, exit_code: int, **extra: Any) -> None:
    """The one final line of a command; later calls (e.g. the error after a low-quality report) are ignored."""
    if _state["final"]:
        return
    _state["final"] = True
    emit(status=status, exit_code=exit_code, **{k: v for k, v in extra.items() if v is not None})


def final_sent() -> bool:
    """True once the final line was written: later ones are ignored, so a caller knows whether it still owes one."""
    return _state["final"]
