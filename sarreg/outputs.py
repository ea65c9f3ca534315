"""The write set of a command: every file it will write, checked before any work, then written as one set.

Rules (README, "What sarreg writes"):

* an output that exists is refused unless ``overwrite``;
* an output that is, resolves to or is a hard link of an input (same ``st_dev`` / ``st_ino``) is refused, even with
  ``overwrite``; so are two outputs of one command with the same path;
* temporaries are hidden names in the output's folder that carry the writing process id,
  ``.<name>.<pid>[.<tag>].tmp<suffix>`` or ``.<name>.<pid>.stage<suffix>`` (``temp_path``); those left by a dead
  process (a killed run) are removed before the next run writes there (``clean_stale``), those of live processes
  are left alone;
* a command's outputs are staged (``Staging``: ``register``, ``apply``, ``extract``): everything is written under
  stage names and renamed at the end, the last role last (``register``: the report, its commit marker), with
  SIGINT / SIGTERM / SIGHUP held back during the renames; on an error or a signal the stage files are removed and
  existing files are untouched.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import signal
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sarreg.errors import OutputError, SarregError

log = logging.getLogger(__name__)

# ".<anything>.<pid>[.<tag>].tmp..." or ".<anything>.<pid>.stage..."
_TEMP_RE = re.compile(r"\.(\d+)(?:\.[A-Za-z0-9_-]+)?\.(?:tmp|stage)(?:\.|$)")
_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def temp_path(path: str | Path, tag: str = "", stage: bool = False) -> Path:
    """Hidden per-process temporary name next to ``path`` (same suffix, so drivers picking by suffix agree)."""
    path = Path(path)
    kind = "stage" if stage else "tmp"
    return path.with_name(f".{path.name}.{os.getpid()}{'.' + tag if tag else ''}.{kind}{path.suffix}")


_NO_SPACE_RE = re.compile(r"no space|disk (?:is )?full|ENOSPC", re.IGNORECASE)
_NEARLY_FULL = 1 << 20  # bytes: a write that failed on a folder with less free space failed for want of space


def no_space(path: str | Path, e: BaseException) -> bool:
    """True when the failed write of ``path`` ran out of space: ENOSPC, a library's own words for it (SQLite's
    "database or disk is full"), or, as libtiff only says "Write error", a folder with less than 1 MiB free (call it
    before the temporaries are removed)."""
    import errno

    if isinstance(e, OSError) and e.errno is not None:  # the system said what failed
        return e.errno == errno.ENOSPC
    if _NO_SPACE_RE.search(str(e)):
        return True
    folder = Path(path).parent
    try:
        st = os.statvfs(folder if str(folder) else ".")
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _NEARLY_FULL


def write_error(path: str | Path, e: BaseException, what: str = "cannot write") -> OutputError:
    """The one-line OutputError of a failed write of ``path``: ``PATH: WHAT: no space left on device (ENOSPC)`` when
    it ran out of space (``no_space``), else ``PATH: WHAT (first line of the error)``. GDAL's, libtiff's and
    SQLite's messages can span lines; only the first is kept."""
    if no_space(path, e):
        return OutputError(f"{path}: {what}: no space left on device (ENOSPC)")
    msg = (e.strerror if isinstance(e, OSError) and e.strerror else None) or str(e)
    first = (msg.strip().splitlines() or [""])[0].strip()[:200] or type(e).__name__
    return OutputError(f"{path}: {what} ({first})")


def write_atomic(path: str | Path, write: Callable[[Path], Any] | bytes, durable: bool = False) -> Path:
    """The one atomic writer: ``write(tmp)`` (or the bytes) on ``temp_path(path)``, then rename onto ``path``, so
    the file is old or new, never partial. ``durable``: fsync the file before and its folder after the rename (a
    commit point that must survive a power cut, e.g. a batch manifest). OS errors become one-line OutputErrors;
    the temporary file is removed whatever fails."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        if isinstance(write, (bytes, bytearray)):
            with open(tmp, "wb") as f:
                f.write(write)
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
        else:
            write(tmp)
            if durable:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        os.replace(tmp, path)
    except Exception as e:  # noqa: BLE001 - the writer's library errors: ENOSPC is one line whatever raised it
        err = None if isinstance(e, OutputError) else \
            write_error(path, e) if isinstance(e, OSError) or no_space(tmp, e) else None
        tmp.unlink(missing_ok=True)
        if err is None:
            raise
        raise err from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:  # some file systems cannot sync a folder: the rename is then as durable as they make it
        with contextlib.suppress(OSError):
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    return path


def sha256_file(path: str | Path, bufsize: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, streamed (weights identity in reports, batch output verification)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def is_temp(name: str) -> bool:
    """True for a temporary name made by ``temp_path`` (any process)."""
    return name.startswith(".") and _TEMP_RE.search(name) is not None


def dead_temp(name: str) -> bool:
    """True for a temporary name made by ``temp_path`` whose writer (the process id in the name) is gone."""
    if not is_temp(name):
        return False
    pids = {int(m) for m in re.findall(r"\.(\d+)(?=(?:\.[A-Za-z0-9_-]+)?\.(?:tmp|stage)(?:\.|$))", name)}
    return bool(pids) and not any(_pid_alive(pid) for pid in pids)


def clean_stale(outputs: Iterable[str | Path]) -> int:
    """Remove temporaries of dead processes that belong to ``outputs`` (same folder, name prefix); -> count."""
    by_dir: dict[Path, set[str]] = {}
    for p in outputs:
        p = Path(p)
        by_dir.setdefault(p.parent, set()).update({p.name, p.stem + "."})
    n = 0
    for folder, prefixes in by_dir.items():
        try:
            entries = list(os.scandir(folder if str(folder) else "."))
        except OSError:
            continue
        for e in entries:
            if dead_temp(e.name) and e.name.lstrip(".").startswith(tuple(prefixes)):
                try:
                    os.unlink(e.path)
                    n += 1
                except OSError:
                    pass
    if n:
        log.info("removed %d temporary file(s) left by an interrupted run", n)
    return n


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when ``a`` and ``b`` name the same file: same resolved path, or same device and inode."""
    a, b = Path(a), Path(b)
    try:
        if a.resolve() == b.resolve():
            return True
        sa, sb = os.stat(a), os.stat(b)
    except (OSError, RuntimeError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _inside(path: Path, folder: Path) -> bool:
    """True when ``path`` (resolved, its folder's links followed) lies in ``folder`` or one of its subfolders."""
    try:
        return path.parent.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


def check_write_set(outputs: Iterable[str | Path], inputs: Iterable[str | Path | None],
                    overwrite: bool) -> list[Path]:
    """Refuse (OutputError, one line) the first output that is remote, is an input or lies in an input's SAFE
    product folder, repeats another output, exists without ``overwrite``, is a directory, or whose folder is
    missing or not writable. -> the outputs as Paths."""
    from sarreg.io.safe import product_folder
    from sarreg.io.source import is_remote, local_path

    outs = []
    for p in outputs:
        if is_remote(p):
            raise OutputError(f"{p}: outputs must be local files (remote or /vsi paths cannot be written)")
        outs.append(Path(p))
    # a remote input can never be an output: only local files (and the local zip behind a /vsizip/ input) count
    given = [p for p in inputs if p is not None and str(p) != ""]
    ins = [q for q in (local_path(p) for p in given) if q is not None]
    products = [f for f in (product_folder(p) for p in given) if f is not None]  # a SAFE input: all its files
    seen: dict[Path, Path] = {}
    for out in outs:
        for p in ins:
            if same_file(out, p):
                raise OutputError(f"{out}: output path is the same file as input {p}; refusing to overwrite an input "
                                  "(even with --overwrite)")
        for f in products:
            if _inside(out, f):
                raise OutputError(f"{out}: output path is inside input product {f}; refusing to overwrite an input "
                                  "(even with --overwrite)")
        key = Path(os.path.abspath(out))
        if key in seen:
            raise OutputError(f"{out}: written twice by this command (two outputs share the name)")
        seen[key] = out
    for out in outs:
        if out.is_dir():
            raise OutputError(f"{out}: output path is a directory")
        if (out.exists() or out.is_symlink()) and not overwrite:
            raise OutputError(f"{out}: output exists (use --overwrite to replace it)")
        parent = out.parent if str(out.parent) else Path(".")
        if not parent.is_dir():
            raise OutputError(f"{out}: output folder {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"{out}: output folder {parent} is not writable")
    return outs


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT / SIGTERM / SIGHUP back for a few renames (delivered right after); no-op off the main thread."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Staging:
    """Stage names for a set of final outputs (role -> path); ``commit`` renames what was written and writes the
    ``last`` role (the commit marker, e.g. the report) at the end; anything staged is removed when the block exits
    without a commit (error, interrupt, signal)."""

    def __init__(self, finals: dict[str, Path], stages: dict[str, Path] | None = None):
        self.finals = {k: Path(v) for k, v in finals.items()}
        self.stages = {k: Path(stages[k]) if stages else temp_path(v, stage=True) for k, v in self.finals.items()}
        self.committed = False

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        if not self.committed:
            self.discard()
        if isinstance(exc, SarregError) and exc.args and isinstance(exc.args[0], str):
            exc.args = (self.final_names(exc.args[0]), *exc.args[1:])  # the user's file names, not stage names

    def final_names(self, text: str) -> str:
        """``text`` with stage paths (and names) replaced by the final ones."""
        for k, st in self.stages.items():
            text = text.replace(str(st), str(self.finals[k])).replace(st.name, self.finals[k].name)
        return text

    def discard(self) -> None:
        for p in self.stages.values():
            for q in (p, *p.parent.glob(f".{p.name}.*")):
                try:
                    q.unlink(missing_ok=True)
                except OSError:
                    pass

    def mapping(self) -> dict[str, str]:
        """str(stage path) -> str(final path)."""
        return {str(self.stages[k]): str(self.finals[k]) for k in self.stages}

    def commit(self, last: str, write_last: Callable[[Path], Any] | None = None, overwrite: bool = False) -> list[Path]:
        """Rename every written stage file to its final name, the ``last`` role's last (``write_last(path)`` writes
        it first, onto its stage name: a full disk there fails before any file is touched).

        Existing final files are moved aside first (hidden names) and restored when anything fails, removed once
        all is in place: an error leaves the folder as it was, also with ``overwrite``. With ``overwrite`` and
        ``write_last``, the existing ``last`` (the commit marker) goes aside first and final files of the set this
        run did not produce (left by an earlier run) go too, so the folder never mixes two runs. Without
        ``overwrite`` a final file that appeared since the write set was checked (another process) is an error.
        Commits into one folder are serialised (a lock on the folder) so two processes cannot interleave theirs.
        """
        done: list[Path] = []
        aside: list[tuple[Path, Path]] = []

        def move_aside(fin: Path) -> None:
            if fin.exists() or fin.is_symlink():
                if not overwrite:
                    raise OutputError(f"{fin}: output exists (written meanwhile by another process?); use "
                                      "--overwrite to replace it")
                bak = temp_path(fin, "old", stage=True)
                os.replace(fin, bak)
                aside.append((fin, bak))

        with signals_held(), _folder_lock(self.finals[last].parent):
            try:
                if write_last is not None:
                    try:
                        write_last(self.stages[last])
                    except OutputError:
                        raise
                    except OSError as e:
                        raise write_error(self.finals[last], e) from None
                    if overwrite:
                        move_aside(self.finals[last])
                for k in [k for k in self.stages if k != last] + [last]:
                    st, fin = self.stages[k], self.finals[k]
                    try:
                        if st.exists():
                            move_aside(fin)
                            os.replace(st, fin)
                            done.append(fin)
                        elif overwrite and write_last is not None:
                            move_aside(fin)
                    except OutputError:
                        raise
                    except OSError as e:
                        raise write_error(fin, e) from None
            except BaseException:
                for p in done:
                    with contextlib.suppress(OSError):
                        p.unlink()
                for fin, bak in reversed(aside):
                    with contextlib.suppress(OSError):
                        os.replace(bak, fin)
                raise
            for _, bak in aside:
                with contextlib.suppress(OSError):
                    bak.unlink()
            self.committed = True
        return done


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock (flock) on ``folder`` itself for the block: no file is made; a no-op where it fails."""
    import fcntl

    try:
        fd = os.open(folder if str(folder) else ".", os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # (releases the lock)


# names of image formats a GeoTIFF must not be written under (a viewer would open it as that format and fail)
NOT_TIFF = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".jp2", ".vrt", ".nc", ".h5", ".hdf", ".zip",
            ".gpkg", ".json", ".geojson", ".txt", ".csv", ".xml", ".npz", ".points", ".shp", ".img", ".hdr"}


def check_raster_name(out: str | Path) -> None:
    """Refuse (OutputError) an output raster named like another format: sarreg writes GeoTIFF / COG only."""
    if Path(out).suffix.lower() in NOT_TIFF:
        raise OutputError(f"{out}: the output raster is a GeoTIFF; name it .tif (not {Path(out).suffix})")
