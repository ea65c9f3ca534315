"""The software check of every task, on its worker: ``submit(client, fn, *args, deps=..., on_mismatch=...)``.

``runner.check_workers`` checks the workers present when the client connects; a worker that joins later (a restart,
an autoscaler, a second pool) ran sarreg functions sent by name with its own code, silently. Every task is therefore
sent wrapped in ``checked``, shipped by value (``ByValue``; cloudpickle, this module is registered for it): it runs
on the worker whatever sarreg is installed there, compares the worker's ``files.software()`` (computed once per worker
process) with the client's, and only then unpickles the task's arguments and calls the task by name.
"""
from __future__ import annotations

import pickle
import sys
from collections.abc import Callable
from typing import Any

import cloudpickle

MISMATCH = "runs other software than this client"


def checked(expected: dict[str, str], name: str, payload: bytes, on_mismatch: dict[str, Any] | None,
            *deps: Any) -> Any:
    """Worker side: ``name`` ("module:function") called with the pickled ``payload`` arguments and ``deps`` (results
    of other tasks) when this worker's software is ``expected``; else ``on_mismatch`` with the ``error`` line, or that
    line raised (an InputError: the scene's error on the client). Self-contained: shipped by value."""
    import importlib

    try:
        from sarreg.batch.files import software

        theirs = software()
    except Exception as e:  # noqa: BLE001 - a sarreg without it (older) or broken: other software
        theirs = {"software": f"unknown ({type(e).__name__}: {e})"}
    if theirs != expected:
        try:
            from distributed import get_worker

            where = get_worker().address
        except Exception:  # noqa: BLE001 - only for the message
            where = "?"
        line = (f"worker {where} {MISMATCH} ({', '.join(f'{k} {v}' for k, v in theirs.items())}; here: "
                f"{', '.join(f'{k} {v}' for k, v in expected.items())}); install the same sarreg and GDAL on every "
                "worker")
        if on_mismatch is not None:
            return {**on_mismatch, "error": line}
        try:
            from sarreg.errors import InputError
        except Exception:  # noqa: BLE001 - raised as a builtin then
            raise RuntimeError(line) from None
        raise InputError(line)
    module, _, fn = name.partition(":")
    return getattr(importlib.import_module(module), fn)(*pickle.loads(payload), *deps)


cloudpickle.register_pickle_by_value(sys.modules[__name__])


class ByValue:
    """``fn`` that pickles by value even inside a Dask task (Dask pickles a task with ``pickle``, which names the
    function: a worker without this module failed to read the task and the batch waited for it forever)."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn

    def __reduce__(self) -> tuple[Any, ...]:
        return cloudpickle.loads, (cloudpickle.dumps(self.fn),)  # (the worker needs only pickle itself)

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


def submit(client: Any, fn: Callable[..., Any], *args: Any, deps: tuple[Any, ...] = (),
           on_mismatch: dict[str, Any] | None = None, **kw: Any) -> Any:
    """``client.submit(fn, *args, *deps, **kw)`` through ``checked``: the worker runs ``fn`` only with the client's
    software. ``deps``: futures whose results are appended to the arguments (Dask passes them)."""
    from sarreg.batch.files import software

    return client.submit(ByValue(checked), software(), f"{fn.__module__}:{fn.__name__}", pickle.dumps(args),
                         on_mismatch, *deps, **kw)
