"""File primitives of a batch folder: sha256 of outputs, atomic writes, strict JSON, temp-name rule, error text.

Everything the batch writes goes through ``atomic_write`` (sarreg's one atomic writer, durable: temp file in the
same folder, fsync, rename), so a run killed at any moment leaves each file either old or new, never partial.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
from pathlib import Path
from typing import IO, Any

from sarreg.errors import SarregError
from sarreg.outputs import sha256_file, write_atomic

__all__ = ["sha256_file", "input_sha256", "fingerprint", "atomic_write", "dumps", "is_temp", "error_text", "task_error",
           "locked", "software"]


def locked(path: Path, wait: bool = True) -> IO[str]:
    """``path`` opened (created) and locked exclusively (flock: released by the kernel when the process dies), the
    lock being on the file that is at ``path`` now: one removed meanwhile (by whoever held it) is opened and locked
    again. OSError (the file closed) when ``wait`` is False and another process holds it, or the file system has no
    locks."""
    while True:
        fh = open(path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError:
            fh.close()
            raise
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(fh.fileno()), os.stat(path)):
                return fh
        fh.close()


def fingerprint(path: str | Path) -> dict[str, int] | None:
    """Size and mtime of an input (local or remote, via GDAL's VSIStatL; None when it cannot be stat'ed): a changed
    input makes its committed scene stale; of the file a subdataset name reads."""
    from sarreg.io.source import is_remote
    from sarreg.io.subdataset import subdataset_file

    path = subdataset_file(str(path)) or path
    if not is_remote(path):
        p = Path(path)
        if not p.exists():
            return None
        st = p.stat()
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    from osgeo import gdal

    st = gdal.VSIStatL(str(path))
    return None if st is None else {"size": int(st.size), "mtime_ns": int(st.mtime) * 10 ** 9}


def input_sha256(path: str | Path) -> str:
    """sha256 of a local input's bytes; of a remote input's name, size and mtime (reading a whole remote file
    just to identify it would defeat windowed reads); of a subdataset name: of the name and its file's."""
    import hashlib

    from sarreg.io.source import is_remote
    from sarreg.io.subdataset import subdataset_file

    if (file := subdataset_file(str(path))) is not None:
        return hashlib.sha256(dumps({"subdataset": str(path), "file": input_sha256(file)})).hexdigest()
    if not is_remote(path):
        return sha256_file(path)

    return hashlib.sha256(dumps({"remote": str(path), "stat": fingerprint(path)})).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Durable atomic write (``sarreg.outputs.write_atomic``: temp file, fsync, rename, fsync the folder)."""
    write_atomic(path, data, durable=True)


def dumps(data: Any) -> bytes:
    """Strict, indented JSON bytes (NumPy values and paths converted, NaN / inf -> null)."""
    from sarreg.export import to_jsonable

    return (json.dumps(to_jsonable(data), indent=2) + "\n").encode()


def is_temp(name: str) -> bool:
    """Hidden temp names (``.NAME.<pid>.tmp...`` of ``sarreg.outputs.temp_path``, also of other processes)."""
    return name.startswith(".") and ".tmp" in name


def error_text(e: BaseException) -> str:
    """One line for a summary row: our errors as they are, others with their type."""
    if isinstance(e, SarregError):
        return str(e)
    return f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"


def task_error(e: BaseException) -> str:
    """One line for a task that raised: a SarregError is the task's own (its worker runs other software:
    ``guard.checked``), anything else a lost worker (killed, out of memory)."""
    return error_text(e) if isinstance(e, SarregError) else f"worker lost: {error_text(e)}"


@functools.cache
def software() -> dict[str, str]:
    """What every worker of a cluster must share with the client: sarreg's version, a digest of its Python files
    (another checkout of the same version computes other results) and GDAL's version."""
    import hashlib

    from osgeo import gdal

    import sarreg

    root = Path(sarreg.__file__).parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return {"sarreg": sarreg.__version__, "code": h.hexdigest()[:12], "gdal": gdal.__version__}
