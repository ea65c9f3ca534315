"""Crash safety and resume of a batch folder: the manifest (commit point), staging, publishing and the lock.

A task writes into its own staging folder ``OUTDIR/.work/<run>/<scene>/``, hashes the finished files (sha256) and
renames them into ``OUTDIR`` (``publish``); the client then records the scene in ``OUTDIR/manifest.json``
(``Manifest.commit``, atomic). A scene is done only when its entry exists, the run options (``run_key``: config,
mode, reference checksum) and the input's path, size / mtime match, and every output still has its recorded sha256.
A killed run therefore leaves only complete files, and a rerun redoes exactly the scenes not committed (failed
ones are retried) after ``clean_stale`` removed the staging folders and temp files of dead runs.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from sarreg.batch.files import atomic_write, dumps, input_sha256, is_temp, locked, sha256_file
from sarreg.batch.results import SceneResult
from sarreg.config import RegisterConfig
from sarreg.errors import InputError, OutputError
from sarreg.outputs import dead_temp

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
WORK_DIR = ".work"
MANIFEST_VERSION = 1
# run options that do not change results (never a reason to redo a committed scene)
NEUTRAL_OPTIONS = ("overwrite", "device", "warp_mem_mb")


class Manifest:
    """``OUTDIR/manifest.json``: the committed scenes of a batch folder (single writer: the client).

    Per scene: run key, input path and fingerprint (size, mtime), status, outputs (name -> sha256) and the
    ``SceneResult``. Every ``commit`` rewrites the whole file atomically, so a kill leaves the previous version.
    """

    def __init__(self, outdir: Path, fresh: bool = False):
        """``fresh``: start empty, not reading the file (replaced at the first save); also when there is none."""
        self.path = outdir / MANIFEST
        self.entries: dict[str, dict[str, Any]] = {}
        self.fresh = fresh or not self.path.exists()
        if not self.fresh:
            try:
                doc = json.loads(self.path.read_text(encoding="utf-8"))
                self.entries = dict(doc["scenes"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise InputError(f"{self.path}: unreadable batch manifest ({e}); remove it or use --no-resume")\
                    from None

    def commit(self, key: str, entry: dict[str, Any], names: Iterable[str] = ()) -> None:
        """Record one finished scene (the whole file is rewritten atomically). A redone scene's earlier outputs that
        this result does not have (the raster of an ok run, now low quality) are removed first: a kill in between
        leaves the old entry naming a missing file, so the next run redoes the scene. So are files of the scene's
        output ``names`` that no entry lists: published by a run killed before it committed them (its tasks on an
        existing cluster run on after the client is gone), they stood beside this result as if they were its own."""
        stale = set((self.entries.get(key) or {}).get("outputs", {})) | set(names)
        for name in stale - set(entry.get("outputs", {})):
            if Path(name).name == name:  # (a file of OUTDIR, as every output is)
                (self.path.parent / name).unlink(missing_ok=True)
        self.entries[key] = entry
        self.save()

    def save(self) -> None:
        """Write the file (atomically), also with no scene yet: the folder is then a batch's, whose tasks may
        publish files before its first commit (a chain's links), and a rerun resumes instead of refusing them as
        another program's files."""
        doc = {"version": MANIFEST_VERSION, "updated": datetime.now().isoformat(timespec="seconds"),
               "scenes": self.entries}
        atomic_write(self.path, dumps(doc))
        self.fresh = False

    def done(self, key: str, run_key: str, fingerprint: dict[str, int], outdir: Path,
             path: str | Path | None = None) -> SceneResult | None:
        """The committed result of ``key`` if it is complete and still verifies, else None (redo it). ``path``: the
        scene's input now; a key committed for another file (same name in another folder, another asset of a STAC
        Item) is redone unless that file has the committed input's sha256 (the same scene, moved)."""
        e = self.entries.get(key)
        if not e or e.get("run_key") != run_key or e.get("input") != fingerprint:
            return None
        if e.get("status") not in ("ok", "low_quality"):
            return None  # failures are retried
        was = (e.get("result") or {}).get("path")
        if path is not None and was != str(path):
            if not e.get("input_sha256") or input_sha256(path) != e["input_sha256"]:
                log.info("%s: committed for %s, now %s; redoing the scene", key, was, path)
                return None
        for name, digest in e.get("outputs", {}).items():
            p = outdir / name
            if not p.is_file() or sha256_file(p) != digest:
                log.info("%s: output %s missing or changed since it was committed; redoing the scene", key, name)
                return None
        r = SceneResult.from_dict(e["result"])
        r.resumed = True
        r.path = str(path) if path is not None else r.path
        return r


def run_key(config: RegisterConfig, mode: str, ref_sha: str) -> str:
    """Identity of a run's results: options that change them, the mode and the reference's sha256."""
    d = {k: v for k, v in config.to_dict().items() if k not in NEUTRAL_OPTIONS}
    files = {}  # what the options name, by content: a mask or checkpoint rewritten in place changes the results
    if config.features == "r2d2":
        from sarreg.model.files import default_weights_path

        w = config.weights or default_weights_path()
        files["weights"] = sha256_file(Path(w)) if w and Path(w).is_file() else None
    files["exclude"] = [sha256_file(Path(p)) if Path(p).is_file() else None for p in config.preprocess.exclude]
    return hashlib.sha256(dumps({"config": d, "mode": mode, "reference": ref_sha, "files": files})).hexdigest()[:32]


def clean_stale(outdir: Path) -> int:
    """Remove staging folders of earlier (dead) runs and temp files in OUTDIR; returns how many were removed.

    Only names this package or the pipeline writes are touched: ``.work/`` (the run lock keeps other batches out) and
    hidden ``*.tmp*`` files whose writer is gone (a ``register`` writing into the folder keeps its own).
    """
    n = 0
    work = outdir / WORK_DIR
    if work.is_dir():
        for d in work.iterdir():
            shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink(missing_ok=True)
            n += 1
    for p in outdir.iterdir():
        if p.is_file() and dead_temp(p.name):
            p.unlink(missing_ok=True)
            n += 1
    return n


def fresh_stage(stage: Path) -> Path:
    """The task's staging folder, emptied: Dask reruns the task of a lost worker under the same folder, where the
    killed attempt may have left finished files (``register`` then refused them as existing outputs: the scene
    failed, 'use --overwrite', an option batch does not have).

    Made inside its run's folder ``.work/<run>/`` (the client's), never with it: a later batch's ``clean_stale``
    removed that folder, and a task of the dead client (on an existing cluster) that starts or publishes after that
    replaced the files the later batch committed. It now fails, publishing nothing."""
    shutil.rmtree(stage, ignore_errors=True)
    try:
        stage.mkdir(exist_ok=True)
    except FileNotFoundError:
        raise OutputError(f"{stage.parent}: staging folder of this run removed (a later batch took over the output "
                          "folder); nothing published") from None
    return stage


def publish(stage: Path, outdir: Path | None, names: Iterable[str] | None = None) -> dict[str, str]:
    """Hash the finished files of a staging folder (``names`` of them, when given) and rename them into OUTDIR
    (same file system); OUTDIR None: hash them only (held for a later publish)."""
    outputs: dict[str, str] = {}
    for p in sorted(stage.iterdir()):
        if p.is_file() and not is_temp(p.name) and (names is None or p.name in names):
            outputs[p.name] = sha256_file(p)
    for name in outputs if outdir is not None else ():
        os.replace(stage / name, outdir / name)
    return outputs


@contextlib.contextmanager
def outdir_lock(outdir: Path) -> Iterator[None]:
    """One batch at a time per OUTDIR (flock; released by the kernel even when the process is killed). A lock taken
    on a ``.lock`` that a failed start removed meanwhile (``claim_outdir``) is taken again on the new file."""
    try:
        fh = locked(outdir / ".lock", wait=False)
    except OSError:
        raise OutputError(f"{outdir}: another sarreg batch is running in this folder") from None
    try:
        yield
    finally:
        fh.close()


class Claim:
    """A batch's hold on OUTDIR (``claim_outdir``); ``started``: the batch has begun to write into it."""

    started = False


@contextlib.contextmanager
def claim_outdir(outdir: Path) -> Iterator[Claim]:
    """OUTDIR created (when missing) and locked for one batch. A failure before the caller sets ``started`` (an
    unreachable --scheduler, workers refused) leaves the file system as it was: the lock file is removed when this
    call made it, and so are the folders it created (an empty OUTDIR with a lock file was left behind)."""
    created = [p for p in (outdir, *outdir.parents) if not p.exists()]  # innermost first
    prepare_outdir(outdir)
    claim = Claim()
    try:
        new_lock = not (outdir / ".lock").exists()
        with outdir_lock(outdir):
            try:
                yield claim
            except BaseException:
                if new_lock and not claim.started:  # (while locked: another batch's lock is never removed)
                    (outdir / ".lock").unlink(missing_ok=True)
                raise
    except BaseException:
        if not claim.started:
            for d in created:
                try:
                    d.rmdir()  # (only when empty: nothing another process put there is removed)
                except OSError:
                    break
        raise


def prepare_outdir(outdir: Path) -> Path:
    """Create OUTDIR; OutputError when that fails or it is not writable."""
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{outdir}: cannot create output folder ({e.strerror or e})") from None
    if not os.access(outdir, os.W_OK | os.X_OK):
        raise OutputError(f"{outdir}: output folder is not writable")
    return outdir
