"""Client side of a batch: ``batch(ref, scenes, outdir, config) -> BatchSummary`` as a chain of steps.

check the run -> order the scenes by date -> lock OUTDIR -> resume from the manifest -> Dask (once connected, clean
what dead runs left): reference features, then one task per scene (or the chain) -> commit each result as it
completes -> summary files. Assumes shared storage: the client and every worker see the inputs and OUTDIR under
the same paths.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from sarreg.batch.cache import CACHE_DIR, prepare_reference
from sarreg.batch.chain import CHAIN_MODELS, run_chain
from sarreg.batch.dates import scene_date
from sarreg.batch.files import error_text, fingerprint, input_sha256, sha256_file, task_error
from sarreg.batch.guard import submit
from sarreg.batch.manifest import MANIFEST, WORK_DIR, Manifest, claim_outdir, clean_stale, run_key
from sarreg.batch.results import OUT_SUFFIX, BatchSummary, SceneResult, reference_grid, scene_output_names
from sarreg.batch.summary import SUMMARY_FILES, drop_summary, write_summary
from sarreg.batch.tasks import run_scene_with_ref
from sarreg.config import RegisterConfig
from sarreg.errors import InputError, OutputError
from sarreg.io.source import input_name, is_remote, resolve_input, stac_info

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0  # to reach an existing scheduler (--scheduler), and again for its answer


def default_workers(threads_per_worker: int = 1) -> int:
    """Worker processes for a LocalCluster: one per (threads_per_worker) cores, at most 4 (memory)."""
    return max(1, min(4, (os.cpu_count() or 1) // max(1, threads_per_worker)))


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None, threads_per_worker: int = 1,
                memory_limit: str | float = "auto", dashboard_address: str = ":8787",
                connect_timeout: float | None = None) -> Iterator[Any]:
    """A ``distributed.Client``: to ``scheduler`` (address or scheduler-file path) when given, else to a new
    ``LocalCluster`` of ``workers`` processes (processes=True) x ``threads_per_worker`` threads, closed on exit.
    ``connect_timeout``: seconds to reach the scheduler (an InputError past it and as much again for its answer;
    default ``CONNECT_TIMEOUT_S``).

    Each local worker gets OMP/MKL threads = cores / (workers x threads), so PyTorch and OpenCV do not
    oversubscribe the machine.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        if not Path(scheduler).is_file() and "://" not in scheduler and \
                (scheduler.lower().endswith((".json", ".yaml", ".yml")) or os.sep in scheduler):
            raise InputError(f"{scheduler}: scheduler file not found (or give the scheduler's address, "
                             "tcp://host:8786)")
        kw: dict[str, Any] = {"scheduler_file": scheduler} if Path(scheduler).is_file() else {"address": scheduler}
        client = _connect(Client, scheduler, CONNECT_TIMEOUT_S if connect_timeout is None else connect_timeout, kw)
        try:
            check_workers(client, scheduler)
            yield client
        finally:
            client.close()
        return
    threads_per_worker = max(1, int(threads_per_worker))
    n = int(workers) if workers else default_workers(threads_per_worker)
    if n < 1:
        raise InputError(f"--workers must be >= 1, got {n}")
    _quiet_cluster_atexit()
    inner = str(max(1, (os.cpu_count() or 1) // (n * threads_per_worker)))
    env = {"OMP_NUM_THREADS": inner, "MKL_NUM_THREADS": inner, "OPENBLAS_NUM_THREADS": inner}
    with LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=True,
                      memory_limit=memory_limit, dashboard_address=dashboard_address,
                      silence_logs=logging.ERROR, env=env) as cluster, Client(cluster) as client:
        yield client


def check_workers(client: Any, scheduler: str) -> None:
    """InputError when a worker of an existing cluster runs other software than this client (``files.software``):
    tasks are sarreg functions sent by name, so its scenes would be registered by other code, silently. Workers
    that join the cluster later are checked by each task (``guard.checked``)."""
    from sarreg.batch.files import software

    mine = software()
    try:
        theirs = client.run(software)
    except Exception as e:  # noqa: BLE001 - a worker without this function (an older sarreg) fails to unpickle it
        raise InputError(f"{scheduler}: the workers cannot run this sarreg's tasks ({error_text(e)[:160]}); install "
                         f"sarreg {mine['sarreg']} (code {mine['code']}) on every worker") from None
    other = {w: s for w, s in theirs.items() if s != mine}
    if other:
        w, s = next(iter(other.items()))
        show = ", ".join(f"{k} {v}" for k, v in s.items())
        raise InputError(f"{scheduler}: {len(other)} of {len(theirs)} workers run other software than this client "
                         f"(worker {w}: {show}; here: {', '.join(f'{k} {v}' for k, v in mine.items())}); install "
                         "the same sarreg and GDAL on every worker")


def _connect(client_type: Any, scheduler: str, timeout: float, kw: dict[str, Any]) -> Any:
    """``Client(**kw)`` to an existing scheduler, or an InputError within about 2 x ``timeout`` seconds.

    Dask's own timeout covers reaching the address only: a port that accepts the connection but never answers as a
    scheduler (its dashboard's, 8787, given for 8786; another service) kept the batch waiting forever, silently. The
    client is made in a daemon thread; one still waiting at the deadline is left behind (it holds no resources of
    this run and ends with the process).
    """
    box: dict[str, Any] = {}

    def make() -> None:
        try:
            box["client"] = client_type(timeout=f"{timeout}s", **kw)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = e

    t = threading.Thread(target=make, name="sarreg-dask-connect", daemon=True)
    t.start()
    t.join(2 * timeout)
    if t.is_alive():
        raise InputError(f"{scheduler}: no answer from a Dask scheduler within {2 * timeout:g} s (the scheduler's "
                         "address, e.g. tcp://host:8786, not its dashboard's?)")
    e = box.get("error")
    if isinstance(e, (OSError, TimeoutError, ValueError)):
        raise InputError(f"{scheduler}: cannot connect to the Dask scheduler ({e})") from None
    if e is not None:
        raise e
    return box["client"]


def _quiet_cluster_atexit() -> None:
    """Dask closes leftover clusters at exit (``distributed.deploy.spec.close_clusters``); one interrupted while it
    started (Ctrl-C during the workers' start-up) fails that with a traceback after "sarreg: interrupted". The same
    closing, with its errors dropped: the process is leaving anyway and the workers die with it."""
    import atexit
    import contextlib

    from distributed.deploy import spec

    def close_clusters_quietly() -> None:
        with contextlib.suppress(Exception):
            spec.close_clusters()

    if not getattr(spec, "_sarreg_quiet", False):
        atexit.unregister(spec.close_clusters)
        atexit.register(close_clusters_quietly)
        spec._sarreg_quiet = True


def _called_from_mp_main() -> bool:
    """True when a caller is the script being re-imported as ``__mp_main__`` by a new (spawned) process."""
    f = sys._getframe(1)
    while f is not None:
        if f.f_globals.get("__name__") == "__mp_main__":
            return True
        f = f.f_back
    return False


def _absolute(src: str | Path) -> str | Path:
    """A scene input as workers open it: a resolved local Path, a subdataset name of an absolute file, or a GDAL
    name (URL, /vsi...) as is."""
    from sarreg.io.subdataset import with_absolute_file

    try:
        src = resolve_input(src)
    except InputError:  # e.g. a zip of several rasters: that scene's registration reports it
        src = Path(src)
    return src.resolve() if isinstance(src, Path) else with_absolute_file(src)


def without_reference(reference: str | Path, scenes: Sequence[str | Path],
                      outdir: str | Path | None = None) -> list[str | Path]:
    """The scenes less the reference itself (a glob over the stack may include it) and, with ``outdir``, less the
    outputs that batch folder's manifest lists with their sha256 (``-o`` the stack's own folder: a rerun's glob
    matched them, and the batch refused them as inputs it would overwrite), as given."""
    ref = _absolute(reference)
    kept = [s for s in scenes if _absolute(s) != ref]
    out = Path(outdir).resolve() if outdir is not None else None
    own = {s: a for s in kept if isinstance(a := _absolute(s), Path) and a.parent == out and
           a.name.endswith(OUT_SUFFIX)}
    if not own or not (out / MANIFEST).is_file():
        return kept
    try:
        listed = {n: d for e in Manifest(out).entries.values() for n, d in (e.get("outputs") or {}).items()}
    except (InputError, AttributeError, TypeError):  # (an unreadable manifest: the batch says so itself)
        return kept
    drop = {s for s, a in own.items() if a.name in listed and a.is_file() and sha256_file(a) == listed[a.name]}
    if drop:
        log.warning("%d input(s) left out: outputs of the batch in %s (%s)", len(drop), out,
                    ", ".join(sorted(own[s].name for s in drop)))
    return [s for s in kept if s not in drop]


def unique_keys(paths: Sequence[str | Path]) -> list[str]:
    """Scene names (file stems, or STAC item ids, made file-name safe and unique): the names of its outputs and
    manifest keys."""
    names = [Path(f"{i['id']}.tif") if (i := stac_info(q)) else Path(input_name(q)) for q in paths]
    stems = [re.sub(r"[^A-Za-z0-9._+-]", "_", p.name.split(".")[0] if p.name.startswith(".") else p.stem) or "scene"
             for p in names]
    keys: list[str] = []
    used, taken = set(), set(stems)  # a repeated name gets the first free _N, never another scene's own name
    for stem in stems:
        key, n = stem, 1
        while key in used or (n > 1 and key in taken):
            n += 1
            key = f"{stem}_{n}"
        keys.append(key)
        used.add(key)
    return keys


def check_run(reference: str | Path, config: RegisterConfig) -> None:
    """Validate the reference, the run's options and its weights (loaded once here, on the client): a bad
    ``--weights`` is one InputError / WeightsError (exit 1) up front, not a failure of every scene on the cluster."""
    from sarreg.io.raster import open_scene

    config.validate()  # the check ``register`` makes before any work
    open_scene(reference, config.preprocess)
    if config.features == "r2d2":
        from sarreg.model.weights import load_model

        load_model(config.weights, "cpu")


class Run:
    """Client-side state of one batch run: submits tasks, commits results to the manifest as they complete."""

    def __init__(self, client: Any, ref: Path, ref_sha: str, out: Path, config: RegisterConfig, run_key: str,
                 run_id: str, cache: Path | None, manifest: Manifest, by_key: dict[str, Path],
                 dates: dict[str, str | None], warnings: dict[str, list[str]], results: dict[str, SceneResult],
                 progress: Callable[[SceneResult], None] | None):
        self.client, self.ref, self.ref_sha, self.out, self.config = client, ref, ref_sha, out, config
        self.reference_cache: dict[str, Any] = {}
        self.run_key, self.run_id, self.cache, self.manifest = run_key, run_id, cache, manifest
        self.by_key, self.dates, self.warnings, self.results = by_key, dates, warnings, results
        self.progress = progress
        self.grid = reference_grid(ref)
        self.inputs: dict[str, dict[str, int] | None] = {}  # fingerprint of each scene before its first task read it

    def task(self, key: str, ref: str, config: RegisterConfig, tag: str = "") -> dict[str, Any]:
        """The plain-dict task of one scene (its staging folder is unique per run, scene and step). The scene's
        input is fingerprinted here, before any task reads it: the committed result is for that file."""
        if key not in self.inputs:
            self.inputs[key] = fingerprint(self.by_key[key])
        return {"key": key, "moving": str(self.by_key[key]), "ref": ref, "outdir": str(self.out),
                "stage": str(self.out / WORK_DIR / self.run_id / (key + tag)), "config": config, "grid": self.grid}

    def commit(self, key: str, res: SceneResult, outputs: dict[str, str], extra: dict[str, Any]) -> None:
        """Record a finished scene in the manifest (the commit point) and report it."""
        res.date = self.dates.get(key)
        if info := stac_info(self.by_key[key]):  # a scene given as a STAC Item: its identity in the summary
            res.stac_item, res.stac_datetime, res.stac_asset = info.get("id"), info.get("datetime"), info.get("asset")
        res.outputs = outputs
        res.warnings = [*self.warnings.get(key, []), *res.warnings]
        self.results[key] = res
        # (taken after the task, an input rewritten while it ran was committed as done with the result of the old)
        fp = self.inputs[key] if key in self.inputs else fingerprint(self.by_key[key])
        if res.status == "failed" and fp is None and (self.manifest.entries.get(key) or {}).get("status") in (
                "ok", "low_quality"):  # (a share not mounted for a moment): not committed, earlier outputs kept
            res.warnings.append("the input is missing now: the result committed earlier and its files are kept")
            log.warning("%s: %s is missing; its result committed earlier and its files are kept", key,
                        self.by_key[key])
        else:
            self.manifest.commit(key, {"run_key": self.run_key, "input": fp, "status": res.status,
                                       "outputs": outputs, "result": res.to_dict(), **extra}, scene_output_names(key))
        if self.progress:
            self.progress(res)

    def result_of(self, fut: Any, key: str) -> dict[str, Any]:
        """A scene task's result; a lost worker (out of memory, killed) or one running other software makes a failed
        scene, the batch goes on."""
        try:
            return fut.result()
        except Exception as e:  # noqa: BLE001 - recorded as the scene's error
            log.warning("%s: %s", key, task_error(e))
            return {"key": key, "result": {"scene": key, "path": str(self.by_key[key]), "status": "failed",
                                           "error": task_error(e)}, "outputs": {}}

    def to_reference(self, todo: list[str]) -> None:
        """Every scene onto the reference: one reference task (features), then one task per scene."""
        from distributed import as_completed

        ref_fut = submit(self.client, prepare_reference, str(self.ref), self.ref_sha, self.config,
                         str(self.cache) if self.cache else None, [str(self.by_key[k]) for k in todo],
                         key=f"sarreg-reference-{self.run_id}", pure=False,
                         on_mismatch={"features": None, "cache_hit": False, "entries": 0, "time_s": None})
        futs = {}
        for k in todo:
            task = self.task(k, str(self.ref), self.config)
            futs[submit(self.client, run_scene_with_ref, task, deps=(ref_fut,), key=f"sarreg-{k}-{self.run_id}",
                        pure=False)] = k
        for fut in as_completed(list(futs)):
            k = futs.pop(fut)
            r = self.result_of(fut, k)
            fut.release()  # (held, a finished scene is recomputed, its committed files rewritten, when a worker dies)
            self.commit(k, SceneResult.from_dict(r["result"]), r.get("outputs", {}),
                        {"input_sha256": r.get("input_sha256")})
        try:
            info = ref_fut.result()
        except Exception as e:  # noqa: BLE001 - the worker of the reference task died; scenes are committed
            info = {"features": None, "cache_hit": False, "entries": 0, "time_s": None, "error": task_error(e)}
        self.reference_cache = {k: info.get(k) for k in ("features", "cache_hit", "entries", "time_s", "error")}
        log.info("reference prepared in %.2f s (feature cache: %s, %s entries)", info.get("time_s") or 0.0,
                 "hit" if info.get("cache_hit") else ("written" if info.get("features") else "off"),
                 info.get("entries"))


def batch(reference: str | Path, scenes: Sequence[str | Path], outdir: str | Path,
          config: RegisterConfig = RegisterConfig(), *, chain: bool = False, resume: bool = True,
          client: Any = None, scheduler: str | None = None, workers: int | None = None,
          threads_per_worker: int = 1, cache_dir: str | Path | None = None, reference_cache: bool = True,
          progress: Callable[[SceneResult], None] | None = None,
          on_cluster: Callable[[Any], None] | None = None, checked: bool = False) -> BatchSummary:
    """Co-register ``scenes`` with ``reference`` on Dask; write per-scene outputs and the run summary to ``outdir``.

    config: the one ``RegisterConfig`` every scene uses. chain: register each scene to its predecessor (time order
    when every scene has a date, else the given order) and compose the pixel matrices (shift / similarity /
    affine / homography models). resume: skip scenes committed in ``OUTDIR/manifest.json`` that still verify.
    client / scheduler / workers / threads_per_worker: an existing ``distributed.Client``, a scheduler address
    (or scheduler file), else a new LocalCluster of that size. reference_cache / cache_dir: reuse reference
    features from disk (default folder ``OUTDIR/.cache``; shared by workers and later runs). progress: called
    with each ``SceneResult`` as it completes (resumed ones first). on_cluster: called with the Dask client once
    connected (only when there is work; e.g. to show the dashboard). checked: the caller ran ``check_run`` on this
    reference and config already (the CLI, before its progress bar): not again.

    Scene failures never raise: they are recorded (status "failed", ``error``). Raises ``InputError`` for an
    unusable reference or an empty scene list, ``OutputError`` for an unwritable OUTDIR.
    """
    if _called_from_mp_main():
        # a local cluster's worker process re-importing the user's script: the call is not under a main guard
        raise InputError("sarreg.batch was called while a worker process imported the calling script: put the "
                         "call under `if __name__ == \"__main__\":` (local Dask workers are new processes)")
    t_start = time.perf_counter()
    ref = _absolute(reference)
    if config.preprocess.exclude:  # workers may run in another folder
        config = config.with_(preprocess=replace(config.preprocess, exclude=tuple(
            e if is_remote(e) else str(Path(e).resolve()) for e in config.preprocess.exclude)))
    if not checked:
        check_run(ref, config)  # fail fast (exit 1) on an unusable reference, bad options or weights
    out = Path(outdir).resolve()
    # (a scene given twice, also as another spelling of its path, is registered once: the CLI's list does the same)
    paths = list(dict.fromkeys(_absolute(s) for s in without_reference(ref, scenes, out)))
    if not paths:
        raise InputError(f"{outdir}: no scenes to register (besides the reference and this folder's outputs)")
    if chain and config.model not in CHAIN_MODELS:
        raise InputError(f"--chain composes 3 x 3 matrices: use --model {'/'.join(CHAIN_MODELS)}, "
                         f"not {config.model}")
    for p in (ref, *paths):  # (the reference too: a KEY_reg.tif in OUTDIR given as the reference was overwritten)
        if isinstance(p, Path) and p.resolve().parent == out and p.resolve().name.endswith(OUT_SUFFIX):
            raise OutputError(f"{p}: input is an output of this batch folder; refusing to overwrite an input")
    keys = unique_keys(paths)
    warnings: dict[str, list[str]] = {k: [] for k in keys}
    dates = {k: scene_date(p, warnings[k]) for k, p in zip(keys, paths)}
    order = list(range(len(keys)))
    if all(dates[k] for k in keys):
        order.sort(key=lambda i: (dates[keys[i]], i))
    elif chain:
        log.warning("not every scene has a date: chaining in the given order")
    keys = [keys[i] for i in order]
    by_key = dict(zip(keys, (paths[i] for i in order)))
    mode = "chain" if chain else "reference"
    ref_sha = input_sha256(ref)
    key_of_run = run_key(config, mode, ref_sha)
    cache = (Path(cache_dir).resolve() if cache_dir else out / CACHE_DIR) if reference_cache else None

    with claim_outdir(out) as claim:  # (a failed start leaves no trace: no OUTDIR, no lock file)
        if not (out / MANIFEST).exists():
            _check_foreign_files(out, keys)
        manifest = _open_manifest(out, resume)
        results = _resumed(manifest, keys, by_key, key_of_run, out, progress) if resume else {}
        todo = [k for k in keys if k not in results]
        log.info("%d scene(s): %d already done, %d to register", len(keys), len(results), len(todo))
        summary = BatchSummary(reference=str(ref), outdir=str(out), mode=mode, scenes=[])
        if todo:
            run_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            ctx = contextlib.nullcontext(client) if client is not None else \
                dask_client(scheduler, workers, threads_per_worker)
            with ctx as cl:
                summary.dashboard = getattr(cl, "dashboard_link", None)
                summary.workers = len(cl.scheduler_info().get("workers", {}))
                log.info("Dask dashboard: %s (%d workers)", summary.dashboard, summary.workers)
                if on_cluster:
                    on_cluster(cl)
                claim.started = True
                _clean_stale(out)
                drop_summary(out)  # (until this run writes its own: the folder is about to change)
                if manifest.fresh:
                    manifest.save()  # before any task publishes: a run killed before its first commit resumes
                run = Run(cl, ref, ref_sha, out, config, key_of_run, run_id, cache, manifest, by_key, dates,
                          warnings, results, progress)
                try:
                    (out / WORK_DIR / run_id).mkdir(parents=True)  # (its tasks' staging folders go in it)
                    run_chain(run, keys, todo) if chain else run.to_reference(todo)
                    summary.reference_cache = run.reference_cache
                    if run.reference_cache.get("error"):
                        summary.warnings.append(f"reference features not cached: {run.reference_cache['error']}")
                finally:
                    shutil.rmtree(out / WORK_DIR / run_id, ignore_errors=True)
                    with contextlib.suppress(OSError):  # other runs' staging folders keep it (not an error)
                        (out / WORK_DIR).rmdir()
        else:
            claim.started = True
            _clean_stale(out)
        summary.scenes = [results[k] for k in keys]
        summary.wall_s = round(time.perf_counter() - t_start, 3)
        write_summary(summary, out, chain_matrices={k: results[k].matrix for k in keys} if chain else None)
    return summary


def _clean_stale(out: Path) -> None:
    """``clean_stale`` once the run has started (a start that fails, e.g. an unreachable --scheduler, changes
    nothing in OUTDIR, not even dead runs' leftovers)."""
    if removed := clean_stale(out):
        log.info("removed %d staging folder(s) / temp file(s) left by an interrupted run", removed)


def _check_foreign_files(out: Path, keys: list[str]) -> None:
    """OutputError for a file in OUTDIR named like an output of this batch while no batch wrote into OUTDIR (no
    manifest): batch has no --overwrite, and it replaced such files (a user's summary.json, a KEY_reg.tif) silently."""
    names = [n for k in keys for n in scene_output_names(k)]
    for name in [*names, *SUMMARY_FILES]:
        if (out / name).exists() or (out / name).is_symlink():
            raise OutputError(f"{out / name}: exists, and no batch wrote into {out} (no {MANIFEST}); batch would "
                              "replace it: move it away or choose another -o")


def _open_manifest(out: Path, resume: bool) -> Manifest:
    """The folder's manifest; an unreadable one is an error when resuming, else replaced (at the first save, once
    the run has started: a failed start keeps it)."""
    try:
        return Manifest(out)
    except InputError:
        if resume:
            raise
        return Manifest(out, fresh=True)


def _resumed(manifest: Manifest, keys: list[str], by_key: dict[str, Path], key_of_run: str, out: Path,
             progress: Callable[[SceneResult], None] | None) -> dict[str, SceneResult]:
    """Committed scenes that still verify (outputs re-hashed in parallel threads: hashlib releases the GIL)."""
    def check(k: str) -> SceneResult | None:
        fp = fingerprint(by_key[k])
        return manifest.done(k, key_of_run, fp, out, by_key[k]) if fp is not None else None

    results: dict[str, SceneResult] = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        for k, r in zip(keys, pool.map(check, keys)):
            if r is not None:
                results[k] = r
                if progress:
                    progress(r)
    return results
