"""File primitives of a batch folder: sha256 of outputs, atomic writes, strict JSON, temp-name rule, error text.

Everything the batch writes goes through ``atomic_write`` (temp file in the same folder, fsync, rename), so a run
killed at any moment leaves each file either old or new, never partial.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

from sarreg.errors import OutputError, SarregError


def sha256_file(path: str | Path, bufsize: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (streamed, 1 MiB at a time)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(path: Path) -> dict[str, int]:
    """Size and mtime of an input: a changed input makes its committed scene stale."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def atomic_write(path: Path, data: bytes) -> None:
    """temp file in the same folder, fsync, rename, fsync the folder: the file is old or new, never partial."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
    # the rename is durable only once the folder is synced; some file systems cannot sync a folder (not an error)
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def dumps(data: Any) -> bytes:
    """Strict, indented JSON bytes (NumPy values and paths converted, NaN / inf -> null)."""
    from sarreg.export import to_jsonable

    return (json.dumps(to_jsonable(data), indent=2) + "\n").encode()


def is_temp(name: str) -> bool:
    """Hidden temp names written by ``atomic_write`` and the pipeline's staging (``.NAME...tmp...``)."""
    return name.startswith(".") and ".tmp" in name


def error_text(e: BaseException) -> str:
    """One line for a summary row: our errors as they are, others with their type."""
    if isinstance(e, SarregError):
        return str(e)
    return f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
