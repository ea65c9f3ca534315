"""GDAL errors raised in any thread of a block of code (a multithreaded warp's worker threads report a failed read of
the source only to GDAL's process-wide error handler; the warp itself then returns without raising)."""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger(__name__)

_COLLECTORS: list[list[str]] = []  # the lists of the ``thread_errors`` blocks running (threads of one process)
_COLLECTORS_LOCK = threading.Lock()


def _collect(cls: int, no: int, msg: str) -> None:
    """GDAL's process-wide error handler while a ``thread_errors`` block runs: failures to every block's list."""
    if cls >= 3:  # CE_Failure, CE_Fatal
        for c in list(_COLLECTORS):
            c.append(str(msg))
    else:
        log.info("GDAL: %s", msg)


@contextmanager
def thread_errors(on: bool = True) -> Iterator[list[str]]:
    """Collect the messages of GDAL errors raised in any thread during the block (warnings are logged), with GDAL's
    process-wide handler: the worker threads of a multithreaded warp report a failed read of the source only there,
    and the warp then returns 0 without raising. Blocks may overlap (threads): the last one out restores GDAL's
    handlers. Off: an empty list (the calling thread's errors raise)."""
    failed: list[str] = []
    if not on:
        yield failed
        return
    from osgeo import gdal

    with _COLLECTORS_LOCK:
        if not _COLLECTORS:
            gdal.SetErrorHandler(_collect)
        _COLLECTORS.append(failed)
    try:
        yield failed
    finally:
        with _COLLECTORS_LOCK:
            _COLLECTORS[:] = [c for c in _COLLECTORS if c is not failed]
            if not _COLLECTORS:  # GDAL's own handler, then the bindings' (GDAL < 3.7 raises exceptions through it)
                gdal.SetErrorHandler("CPLDefaultErrorHandler")
                gdal.DontUseExceptions()
                gdal.UseExceptions()
