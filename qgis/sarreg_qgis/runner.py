"""Run the ``sarreg`` command in a subprocess and stream its progress into a Processing feedback.

Pure Python (no qgis import): ``feedback`` is anything with the methods of ``QgsProcessingFeedback`` used here
(``isCanceled``, ``setProgress``, ``setProgressText``, ``pushInfo``, ``pushConsoleInfo``, ``pushCommandInfo``), so
this module is tested without QGIS too. QGIS's Python never imports sarreg: the command runs in its own
environment (its venv), started with ``SARREG_PROGRESS_JSON=1`` so that it prints one JSON object per stderr line
(``{"stage": ..., "progress": 0..1}``, then one final ``{"status": ..., "exit_code": ...}``; see
``sarreg/progress.py``).

Cancel: when ``feedback.isCanceled()`` turns true the command gets SIGTERM (sarreg removes its temporaries and
exits 143, leaving no partial output), then SIGKILL if it has not exited after ``term_timeout`` seconds.
"""
from __future__ import annotations

import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_EXECUTABLE = "SARREG_EXECUTABLE"
PLUGIN_DIR = Path(__file__).resolve().parent

STAGE_TEXT = {"relate": "relating the scenes", "model": "loading the network", "coarse": "coarse matching",
              "fine": "fine matching (full-resolution tiles)", "estimate": "estimating the transform",
              "refine": "refining by correlation", "offsets": "local offsets field", "warp": "warping",
              "sidecars": "writing tie points and report", "extract": "extracting keypoints",
              "scenes": "registering scenes"}


class SarregNotFound(RuntimeError):
    """No usable ``sarreg`` executable."""


@dataclass
class Result:
    returncode: int
    final: dict[str, Any] | None = None     # the final JSON line (None: an older sarreg or a crash)
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)  # non-JSON stderr lines (log, the one-line error)
    canceled: bool = False
    command: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.canceled:
            return "canceled"
        if self.final and self.final.get("status"):
            return str(self.final["status"])
        return "ok" if self.returncode == 0 else "error"

    def is_result(self, ok_codes: tuple[int, ...]) -> bool:
        """An exit in ``ok_codes`` that is a registration's verdict: 0, or 2 / 3 with a final ``low_quality`` /
        ``failed`` status (exit 2 is also click's usage error, and any program's: that is an error)."""
        if self.returncode not in ok_codes:
            return False
        return self.returncode == 0 or self.status in ("low_quality", "failed")

    @property
    def message(self) -> str:
        """The CLI's one-line error (or the last stderr lines when it printed none)."""
        if self.final and self.final.get("message") and self.final.get("status") in ("error", "interrupted"):
            return str(self.final["message"])
        for line in reversed(self.stderr):
            if line.startswith("sarreg: "):
                return line
        if self.returncode < 0:
            return f"sarreg was killed by {signal.Signals(-self.returncode).name}"
        tail = " | ".join(self.stderr[-3:])
        return f"sarreg exited with code {self.returncode}" + (f": {tail}" if tail else "")


def find_executable(setting: str | None = None) -> str:
    """The ``sarreg`` command to run: the Processing setting, else ``$SARREG_EXECUTABLE``, else ``sarreg`` on
    PATH, else the project's venv (``.venv/bin/sarreg`` of the checkout the plugin folder lives in, when the
    plugin is a symbolic link into a checkout)."""
    for value, origin in ((setting, "the Processing setting"), (os.environ.get(ENV_EXECUTABLE), ENV_EXECUTABLE)):
        value = (value or "").strip()
        if value:
            path = shutil.which(os.path.expanduser(value))
            if path is None:
                raise SarregNotFound(f"sarreg executable {value!r} (from {origin}) not found or not executable")
            return path
    path = shutil.which("sarreg")
    if path:
        return path
    cand = PLUGIN_DIR.parent.parent / ".venv" / "bin" / "sarreg"  # <checkout>/qgis/sarreg_qgis -> <checkout>
    if cand.is_file() and os.access(cand, os.X_OK):
        return str(cand)
    raise SarregNotFound("the sarreg command was not found: install sarreg, then set its path in Processing > "
                         "Options > Providers > sarreg (or SARREG_EXECUTABLE)")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the command: QGIS's, without its Python settings (PYTHONHOME would break the venv's
    interpreter, PYTHONPATH would put QGIS's packages before the venv's), with JSON progress on."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONSTARTUP", "PYTHONPATH")}
    env["SARREG_PROGRESS_JSON"] = "1"
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def _reader(stream, name: str, q: queue.Queue) -> None:
    try:
        for line in iter(stream.readline, ""):
            q.put((name, line.rstrip("\r\n")))
    finally:
        q.put((name, None))


def _parse(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and ("stage" in obj or "status" in obj) else None


def run_cli(args: list[str], feedback: Any, executable: str | None = None, env: dict[str, str] | None = None,
            cwd: str | None = None, poll_s: float = 0.1, term_timeout: float = 30.0, drain_s: float = 2.0) -> Result:
    """Run ``sarreg ARGS...``; progress lines -> ``feedback``; returns a ``Result`` (never raises for a failed
    command; raises ``SarregNotFound`` when there is no executable). Once the command has exited its output is read
    for at most ``drain_s`` more seconds: a process it left behind (a Dask worker stuck in shutdown) holds the
    pipes open, and waiting for their end hung the algorithm as long as that process lived."""
    exe = executable or find_executable()
    cmd = [exe, *[str(a) for a in args]]
    res = Result(returncode=0, command=cmd)
    _call(feedback, "pushCommandInfo", " ".join(shlex.quote(c) for c in cmd))
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, bufsize=1, encoding="utf-8", errors="replace", env=child_env(env),
                                cwd=cwd, start_new_session=True)  # its own group: QGIS's Ctrl-C is not ours
    except OSError as e:
        raise SarregNotFound(f"cannot run {exe}: {e.strerror or e}") from None
    q: queue.Queue = queue.Queue()
    threads = [threading.Thread(target=_reader, args=(s, n, q), daemon=True)
               for s, n in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))]
    for t in threads:
        t.start()
    open_streams, term_at, killed, exited_at = 2, None, False, None
    while open_streams or proc.poll() is None:
        if exited_at is None and proc.poll() is not None:
            exited_at = time.monotonic()
        elif exited_at is not None and time.monotonic() - exited_at > drain_s:
            _call(feedback, "pushConsoleInfo", "sarreg has exited; a process it started still holds its output")
            break
        if term_at is None and _canceled(feedback):
            res.canceled = True
            term_at = time.monotonic()
            _call(feedback, "pushInfo", "Canceled: stopping sarreg (SIGTERM)")
            _signal(proc, signal.SIGTERM)
        elif term_at is not None and not killed and time.monotonic() - term_at > term_timeout:
            killed = True
            _call(feedback, "pushInfo", f"sarreg did not stop within {term_timeout:g} s: SIGKILL")
            _signal(proc, signal.SIGKILL)
        try:
            name, line = q.get(timeout=poll_s)
        except queue.Empty:
            continue
        if line is None:
            open_streams -= 1
            continue
        _handle(name, line, res, feedback)
    res.returncode = proc.wait()
    if res.canceled or open_streams:
        _sweep_group(proc.pid)
    for t in threads:
        t.join(timeout=0.5 if open_streams else 5)
    while True:  # lines read but not handled yet
        try:
            name, line = q.get_nowait()
        except queue.Empty:
            break
        if line is not None:
            _handle(name, line, res, feedback)
    if not open_streams:  # (a stream a reader thread still blocks on is left to it: closing it would wait for it)
        for stream in (proc.stdout, proc.stderr):
            stream.close()
    return res


def _handle(name: str, line: str, res: Result, feedback: Any) -> None:
    if name == "stdout":
        res.stdout.append(line)
        if line.strip():
            _call(feedback, "pushInfo", line)
        return
    obj = _parse(line)
    if obj is None:
        res.stderr.append(line)
        if line.strip() and not line.startswith("sarreg: error: "):  # the error itself is raised by the caller
            _call(feedback, "pushConsoleInfo", line)
        return
    if "status" in obj:
        res.final = obj
        return
    p = obj.get("progress")
    if isinstance(p, (int, float)):
        _call(feedback, "setProgress", 100.0 * max(0.0, min(1.0, float(p))))
    stage = str(obj.get("stage"))
    text = STAGE_TEXT.get(stage, stage)
    if obj.get("scene"):
        text += f" ({obj.get('done')}/{obj.get('total')}: {obj['scene']} {obj.get('scene_status', '')})".rstrip()
        _call(feedback, "pushInfo", f"{obj['scene']}: {obj.get('scene_status')}")
    _call(feedback, "setProgressText", f"sarreg: {text}")


def _canceled(feedback: Any) -> bool:
    try:
        return bool(feedback is not None and feedback.isCanceled())
    except (AttributeError, RuntimeError):
        return False


def _call(feedback: Any, method: str, *args: Any) -> None:
    f = getattr(feedback, method, None) if feedback is not None else None
    if f is None and method in ("pushConsoleInfo", "pushCommandInfo"):
        f = getattr(feedback, "pushInfo", None)
    if f is not None:
        f(*args)


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _sweep_group(pgid: int) -> None:
    """Children the command left behind in its process group (e.g. Dask workers of a killed batch)."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError, OSError):
        pass
