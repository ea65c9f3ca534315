"""Reference-feature cache: the reference's keypoints computed once per batch (and kept on disk for later runs).

Scene tasks pass ``register`` their own extractor through the pipeline's public hook ``register(...,
extractor=)``: a ``CachingExtractor`` that wraps this process's ``Extractor`` (kept per worker process, so the
network is loaded once, not per scene) and answers an extraction call from the cache when its input image and
arguments are exactly (content hash) those of a recorded call. Anything else goes to the pipeline's extractor
unchanged, so results are identical with and without the cache.

Recording (``prepare_reference``, one task before the scenes): the reference is registered with the first scene
to do (a real pair, through the public ``register``) with a recording ``CachingExtractor``; every extraction of
that run is stored, so the cache holds precisely the reference reads ``register`` makes for a scene with that
footprint, whatever the pipeline's internals (plus that one scene's own features, which its task then reuses).
Later scenes whose overlap differs simply miss the tiles that differ.

Cache folder ``ref-<key>``: keyed by the reference sha256, the feature type, the network (weights sha256), the
device type and every parameter that changes reference features; ``index.json`` is written last, so a folder
without it is incomplete and recorded again. Existing folders are reused (repeated runs, other batches). A
recording writes only names of its own (``work-<pid>-<id>/``, ``<pid>-<id>-NNN.npz``) and deletes nothing it did not
write: batches recording at the same time each keep a whole cache, the last ``index.json`` wins. It holds the lock
file ``work-<pid>-<id>.lock`` (flock) from its start to its end; what a recording killed mid-way left (a lock nobody
holds) is removed by the next batch's reference task (``clean_dead_recordings``), and so is the work folder of an
older version's recording (no lock file) untouched for a day.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sarreg.batch.files import atomic_write, dumps, error_text, locked
from sarreg.batch.results import SceneWarnings
from sarreg.config import RegisterConfig
from sarreg.features import Features
from sarreg.pipeline import Extractor

log = logging.getLogger(__name__)

CACHE_DIR = ".cache"
INDEX = "index.json"
LOCK = ".lock"  # work-<tag>.lock: held by a running recording
PROBES = 3  # scenes tried in turn to record the reference's features (an unreadable one is skipped)
# options that change the reference's features (the cache key)
FEATURE_OPTIONS = ("features", "weights", "coarse_size", "coarse_top_k", "fine_tile", "n_tiles", "fine_top_k",
                   "keypoints", "preprocess")


def feature_key(unit: np.ndarray, valid: np.ndarray, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """Content key of one extractor call: the image, its validity mask and the call's arguments."""
    h = hashlib.blake2b(digest_size=20)
    u = np.ascontiguousarray(unit, dtype=np.float32)
    h.update(repr((u.shape, args, sorted(kwargs.items()))).encode())
    h.update(u.tobytes())
    h.update(np.packbits(np.ascontiguousarray(valid, dtype=bool)).tobytes())
    return h.hexdigest()


class FeatureIndex:
    """Cached features of one reference: content key of an extractor call -> Features (npz files on disk)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.entries: dict[str, str] = json.loads((folder / INDEX).read_text(encoding="utf-8"))["entries"]
        self._mem: dict[str, Features] = {}

    def get(self, key: str) -> Features | None:
        """The recorded features of a call, or None; loaded from disk once per process."""
        name = self.entries.get(key)
        if name is None:
            return None
        if key not in self._mem:
            self._mem[key] = Features.load_npz(self.folder / name)
        return self._mem[key]


@functools.lru_cache(maxsize=8)
def load_index(folder: str) -> FeatureIndex:
    """This process's index of a cache folder (its features stay in memory for the following scenes)."""
    return FeatureIndex(Path(folder))


class CachingExtractor(Extractor):
    """An ``Extractor`` for ``register(..., extractor=)`` that serves calls from ``index`` and records every call
    it computes into ``record`` (either may be None). It wraps ``inner`` (its network is not loaded again);
    ``hits`` counts the calls served from the index."""

    def __init__(self, inner: Extractor, index: FeatureIndex | None = None,
                 record: dict[str, Features] | None = None):
        # deliberately no Extractor.__init__: the network and settings are the inner extractor's
        self.inner, self.index, self.record, self.hits = inner, index, record, 0

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)  # kind, name, sha256, ... of the wrapped extractor

    def many(self, images: list[tuple[np.ndarray, np.ndarray]], top_k: int) -> list[Features]:
        """One call each, so every tile goes through the cache (no GPU batching here)."""
        return [self(u, v, multiscale=False, top_k=top_k) for u, v in images]

    def __call__(self, unit: np.ndarray, valid: np.ndarray, *args: Any, **kwargs: Any) -> Features:
        key = feature_key(unit, valid, args, kwargs)
        f = self.index.get(key) if self.index is not None else None
        if f is not None:
            self.hits += 1
            return f
        f = self.inner(unit, valid, *args, **kwargs)
        if self.record is not None:
            self.record[key] = f
        return f


_EXTRACTORS: dict[tuple[Any, ...], Extractor] = {}
_EXTRACTORS_LOCK = threading.Lock()


def process_extractor(config: RegisterConfig) -> Extractor:
    """This process's extractor for ``config`` (created once, so the network is loaded once per worker)."""
    key = (config.features, config.weights, config.device, config.preprocess)
    with _EXTRACTORS_LOCK:
        ext = _EXTRACTORS.get(key)
        if ext is None:
            ext = _EXTRACTORS[key] = Extractor(config)
    return ext


def cache_folder(cache_dir: Path, ref_sha: str, config: RegisterConfig, ext: Extractor) -> Path:
    """``cache_dir/ref-<key>``: the key covers everything that changes the reference's features."""
    from sarreg.extract import resolve_device

    d = config.to_dict()
    params = {k: d[k] for k in FEATURE_OPTIONS if k in d}
    key = hashlib.sha256(dumps({"ref": ref_sha, "features": config.features, "net": ext.sha256 or ext.name,
                                "device": resolve_device(config.device).type, "params": params})).hexdigest()[:24]
    return cache_dir / f"ref-{key}"


def record_reference(ref: str, ref_sha: str, probes: list[str], config: RegisterConfig, ext: Extractor,
                     folder: Path) -> int:
    """Register ``ref`` with the first probe scene that opens, recording every extraction into ``folder``.

    Returns the number of entries (0 when the probe needed no keypoints); raises when no probe could be
    registered.
    """
    # names of this recording only: another batch on the same reference and --cache-dir may record at the same
    # time (its rmtree of the folder deleted this one's work folder and npz files, its npz files replaced ours)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    with _recording(folder / f"work-{tag}{LOCK}"):
        return _record(ref, ref_sha, probes, config, ext, folder, tag)


def _record(ref: str, ref_sha: str, probes: list[str], config: RegisterConfig, ext: Extractor, folder: Path,
            tag: str) -> int:
    """``record_reference`` under its lock: the probe registration in ``work-<tag>/``, then the npz files and the
    index."""
    from sarreg.pipeline import register

    work = folder / f"work-{tag}"
    work.mkdir()
    quiet = config.with_(warp=False, tiepoints=False, geojson=False, points=False, matches_npz=False,
                         quicklook=None, overwrite=True)
    record: dict[str, Features] = {}
    rec = CachingExtractor(ext, record=record)
    errors: list[str] = []
    registered = False
    try:
        for probe in probes[:PROBES]:
            try:
                register(ref, probe, work / "probe.tif", quiet, extractor=rec)
                registered = True
                break
            except Exception as e:  # noqa: BLE001 - a bad probe scene: try the next one (its task reports it)
                errors.append(f"{Path(probe).name}: {error_text(e)}")
                log.info("reference features not recorded with %s: %s", probe, errors[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not registered:
        raise RuntimeError("no scene could be registered to record them (" + "; ".join(errors) + ")")
    # an empty record is a valid cache: correlation settled the probe without keypoints (scenes that do need
    # them extract the reference themselves)
    entries: dict[str, str] = {}
    for i, (k, f) in enumerate(record.items()):
        entries[k] = f"{tag}-{i:03d}.npz"
        f.save_npz(folder / entries[k])
    atomic_write(folder / INDEX, dumps({"reference": ref, "sha256": ref_sha, "entries": entries}))
    return len(entries)


@contextlib.contextmanager
def _recording(lock: Path) -> Iterator[None]:
    """Hold ``lock`` (flock; the kernel releases it when the process dies) for a recording, removed at its end."""
    try:  # (a cleaner that took it between our open and flock removed it: ``locked`` takes the new one)
        fh = locked(lock)
    except OSError:  # no locks on this file system: never taken by ``clean_dead_recordings`` either
        fh = None
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        if fh is not None:
            fh.close()


def clean_dead_recordings(cache_dir: Path) -> int:
    """Remove what recordings killed mid-way (SIGKILL, a lost node) left in ``cache_dir``: their work folder and the
    npz files the index does not list; returns how many. A recording whose lock (``work-<tag>.lock``) can be taken is
    gone: those of other running batches sharing the cache dir are never touched. Also what older versions' recordings
    left (``_clean_lockless_work``)."""
    n = 0
    for lock in cache_dir.glob(f"ref-*/work-*{LOCK}"):
        tag, folder = lock.name.removeprefix("work-").removesuffix(LOCK), lock.parent
        if tag.startswith(f"{os.getpid()}-"):  # this process's own (locks emulated by fcntl, as on NFS, let it in)
            continue
        try:
            fh = open(lock, "r+")  # (not created: one just removed belonged to a recording that ended)
        except OSError:
            continue
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its recording is running (or the file system has no locks: left alone)
            try:
                listed = set(json.loads((folder / INDEX).read_text(encoding="utf-8"))["entries"].values())
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                listed = set()
            shutil.rmtree(folder / f"work-{tag}", ignore_errors=True)
            for p in [*folder.glob(f"{tag}-*.npz"), *folder.glob(f".{tag}-*")]:  # (and atomic writes' temps)
                if p.name not in listed:
                    p.unlink(missing_ok=True)
            lock.unlink(missing_ok=True)
            n += 1
    return n + _clean_lockless_work(cache_dir)


# a work folder of an older sarreg (no lock file: ``work/``, then ``work-<pid>-<id>/``) untouched this long is dead:
# it only lives through one probe registration (it holds at most that probe's report), and its pid may be another
# node's (the cache dir on shared storage), so age is the test
LOCKLESS_DEAD_S = 24 * 3600.0
_LOCKLESS = re.compile(r"work(-\d+-[0-9a-f]{8})?")


def _clean_lockless_work(cache_dir: Path, now: float | None = None) -> int:
    """Remove the work folders older sarreg versions' recordings left when killed (they took no lock): named so,
    without a ``work-<tag>.lock`` beside them (this version creates it before the folder and removes it after) and
    nothing in them modified for ``LOCKLESS_DEAD_S``. Their npz files are left: nothing tells those of a killed
    recording from those of a finished one that a running batch's workers may still read (an older index.json)."""
    now = time.time() if now is None else now
    n = 0
    for work in cache_dir.glob("ref-*/work*/"):
        if not _LOCKLESS.fullmatch(work.name) or (work.parent / f"{work.name}{LOCK}").exists():
            continue
        try:
            newest = max(p.lstat().st_mtime for p in [work, *work.rglob("*")])
        except OSError:  # (removed meanwhile)
            continue
        if now - newest > LOCKLESS_DEAD_S:
            shutil.rmtree(work, ignore_errors=True)
            n += 1
    return n


def prepare_reference(ref: str, ref_sha: str, config: RegisterConfig, cache_dir: str | None,
                      probes: list[str]) -> dict[str, Any]:
    """Worker task run once per batch: the reference's features in ``cache_dir`` (found there or recorded).

    Returns ``features`` (folder or None), ``cache_hit``, ``entries``, ``time_s`` and ``error`` (why there is no
    cache; the scenes then extract the reference themselves). Never raises: the cache is an optimisation.
    """
    t0 = time.perf_counter()
    info: dict[str, Any] = {"features": None, "cache_hit": False, "entries": 0, "error": None}
    if cache_dir is None:
        return info
    with SceneWarnings(ref, *probes) as seen:  # (the scenes' results repeat them: not printed by the worker)
        try:
            if removed := clean_dead_recordings(Path(cache_dir)):
                log.info("removed what %d killed recording(s) left in the feature cache", removed)
            ext = process_extractor(config)
            folder = cache_folder(Path(cache_dir), ref_sha, config, ext)
            if (folder / INDEX).is_file():
                info["cache_hit"] = True
            else:
                record_reference(ref, ref_sha, probes, config, ext, folder)
            info["entries"] = len(load_index(str(folder)).entries)
            info["features"] = str(folder)
        except Exception as e:  # noqa: BLE001 - logged and returned; scenes still run without the cache
            info["error"] = error_text(e)
            # (info, on the worker: the client adds it to the run's warnings, which -q and the summary govern)
            log.info("reference features not cached: %s", info["error"])
    if seen.lines:
        info["warnings"] = seen.lines
    info["time_s"] = round(time.perf_counter() - t0, 3)
    return info
