"""File primitives of a batch folder: sha256 of outputs, atomic writes, strict JSON, temp-name rule, error text.

Everything the batch writes goes through ``atomic_write`` (sarreg's one atomic writer, durable: temp file in the
same folder, fsync, rename), so a run killed at any moment leaves each file either old or new, never partial.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sarreg.errors import SarregError
from sarreg.outputs import sha256_file, write_atomic

__all__ = ["sha256_file", "fingerprint", "atomic_write", "dumps", "is_temp", "error_text"]


def fingerprint(path: Path) -> dict[str, int]:
    """Size and mtime of an input: a changed input makes its committed scene stale."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


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
