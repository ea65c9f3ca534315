"""Co-register a time series on Dask distributed: ``batch(ref, scenes, outdir, config) -> BatchSummary``.

Every scene is one Dask task running ``sarreg.pipeline.register`` with the ONE ``RegisterConfig`` of the run
(default: every scene to the reference; ``chain=True``: every scene to its predecessor in time, transforms composed
as 3 x 3 pixel matrices, then one warp per scene onto the reference grid).

Outputs (``OUTDIR``): per scene ``<scene>_reg.tif`` and the sidecars ``register`` writes next to it; for the run
``summary.csv``, ``summary.json``, ``summary.png`` and ``tiepoints.gpkg`` (all tie points, a ``scene`` column).

Crash safety and resume. A task writes into its own staging folder ``OUTDIR/.work/<run>/<scene>/``, hashes the
finished files (sha256), and renames them into ``OUTDIR``; the client then records the scene in
``OUTDIR/manifest.json`` (written to a temp file, fsynced, renamed). The manifest is the commit point: a scene is
done only when its entry exists, the run options (config, mode, reference checksum) and the input's size / mtime
match, and every output still has its recorded sha256. A run killed at any moment therefore leaves only complete
files, and a rerun redoes exactly the scenes that are not committed (failed scenes are retried), after deleting
staging folders and temp files of dead runs.

Reference features: in the default all-to-reference mode a first task extracts the reference's features once into
``OUTDIR/.cache/ref-<key>/`` (or ``cache_dir``), keyed by the reference sha256, feature type, network, device and
parameters; every scene task depends on it and its worker reuses them (and keeps the loaded network per process);
later runs on the same reference find them on disk. See the note at ``ReferenceIndex`` on how they reach the
pipeline.

Assumes shared storage: the client and every worker see the inputs and ``OUTDIR`` under the same paths.
Pixel convention as everywhere in sarreg: x = column, y = row, (0, 0) = centre of the top-left pixel.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from sarreg.config import RegisterConfig
from sarreg.errors import InputError, OutputError, SarregError
from sarreg.pipeline import Extractor

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
WORK_DIR = ".work"
CACHE_DIR = ".cache"
OUT_SUFFIX = "_reg.tif"
STATUSES = ("ok", "low_quality", "failed")
CHAIN_MODELS = ("auto", "shift", "similarity", "affine", "homography")
MANIFEST_VERSION = 1
# run options that do not change results (never a reason to redo a committed scene)
_NEUTRAL_OPTIONS = ("overwrite", "device", "warp_mem_mb")


# --------------------------------------------------------------------------------------------------- results
@dataclass
class SceneResult:
    """One scene of a batch: what ``summary.csv`` holds per row, plus where its outputs are.

    shift_x_px / shift_y_px: correction of the scene's georeferencing at the reference centre, in reference pixels
    (where the scene pixel its georeferencing puts at the centre really lies, minus the centre); shift_x_m /
    shift_y_m: the same in the reference's map units (None for pixel-space references); rotation_deg: rotation
    relative to the georeferencing; rmse_px: inlier RMSE (chained: root-sum-square along the chain); inliers; coverage (0..1);
    time_s: wall time of this scene's task(s); resumed: True when taken from the manifest without recomputation.
    via: chain predecessor the scene was registered to. ref_cache_hits: reference extractions served from the cache.
    outputs: file name (in OUTDIR) -> sha256; timings: per-stage wall seconds (the pipeline's, plus ``publish``) and
    ``cpu`` (CPU seconds of the task); matrix: 3 x 3 moving px -> reference px.
    """

    scene: str
    path: str
    date: str | None = None
    status: str = "failed"
    shift_x_m: float | None = None
    shift_y_m: float | None = None
    shift_x_px: float | None = None
    shift_y_px: float | None = None
    rotation_deg: float | None = None
    rmse_px: float | None = None
    inliers: int | None = None
    coverage: float | None = None
    time_s: float | None = None
    error: str | None = None
    resumed: bool = False
    via: str | None = None
    ref_cache_hits: int | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    matrix: list[list[float]] | None = None

    @property
    def output(self) -> str | None:
        """File name of the warped raster in OUTDIR (None when the scene failed)."""
        name = self.scene + OUT_SUFFIX
        return name if name in self.outputs else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "SceneResult":
        known = SceneResult.__dataclass_fields__
        return SceneResult(**{k: v for k, v in d.items() if k in known})


CSV_COLUMNS = ("scene", "date", "status", "shift_x_m", "shift_y_m", "shift_x_px", "shift_y_px", "rotation_deg",
               "rmse_px", "inliers", "coverage", "time_s", "resumed", "via", "error", "path")


@dataclass
class BatchSummary:
    """Result of ``batch``: one ``SceneResult`` per scene (in time order when all dates are known)."""

    reference: str
    outdir: str
    mode: str
    scenes: list[SceneResult]
    wall_s: float = 0.0
    dashboard: str | None = None
    workers: int = 0
    files: dict[str, str] = field(default_factory=dict)
    reference_cache: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        c = {s: 0 for s in STATUSES}
        for r in self.scenes:
            c[r.status] = c.get(r.status, 0) + 1
        c["resumed"] = sum(r.resumed for r in self.scenes)
        return c

    @property
    def exit_code(self) -> int:
        """0 when every scene is ok, 2 when some are low quality (none failed), 3 when some failed."""
        c = self.counts
        return 3 if c["failed"] else 2 if c["low_quality"] else 0

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "outdir": self.outdir, "mode": self.mode, "wall_s": self.wall_s,
                "workers": self.workers, "dashboard": self.dashboard, "reference_cache": self.reference_cache, "counts": self.counts,
                "exit_code": self.exit_code, "files": self.files, "scenes": [r.to_dict() for r in self.scenes]}


# ------------------------------------------------------------------------------------------------ small tools
def sha256_file(path: str | Path, bufsize: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (streamed, 1 MiB at a time)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def _fingerprint(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _atomic_write(path: Path, data: bytes) -> None:
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
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _clean(o: Any) -> Any:
    """NaN / inf -> None recursively (strict JSON)."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def _dumps(data: Any) -> bytes:
    return (json.dumps(_clean(json.loads(json.dumps(data, default=_json_default))), indent=2) + "\n").encode()


def _is_temp(name: str) -> bool:
    return name.startswith(".") and ".tmp" in name


# ----------------------------------------------------------------------------------------------------- dates
_DATE_RE = re.compile(r"(?<!\d)(\d{4})(-?)(\d{2})\2(\d{2})(?:[T_ ]?(\d{2}):?(\d{2}):?(\d{2}))?(?!\d)")
_DATE_TAGS = ("ACQUISITION_START_TIME", "ACQUISITION_START", "ACQUISITION_DATE", "ACQUISITION_TIME",
              "FIRST_LINE_TIME", "TIFFTAG_DATETIME", "DATE_ACQUIRED", "DATETIME")


def parse_date(text: str) -> str | None:
    """First plausible date (and time) in a string -> ISO 8601 ('2024-01-31' or '2024-01-31T05:40:12').

    Understands TIFF's '2024:01:31 05:40:12', ISO '2024-01-31T05:40:12.1Z', compact '20240131T054012' (Sentinel-1
    names) and '20240131' / '2024-01-31' anywhere in a file name.
    """
    s = str(text).strip()
    m = re.match(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})", s)  # TIFF DateTime
    if m:
        parts = [m.group(i) for i in range(1, 7)]
    else:
        for m in _DATE_RE.finditer(s):
            parts = [m.group(1), m.group(3), m.group(4), m.group(5), m.group(6), m.group(7)]
            if _valid_date(parts):
                break
        else:
            return None
    if not _valid_date(parts):
        return None
    y, mo, d, hh, mi, ss = parts
    try:
        if hh is None:
            return datetime(int(y), int(mo), int(d)).date().isoformat()
        return datetime(int(y), int(mo), int(d), int(hh), int(mi), int(ss)).isoformat()
    except ValueError:
        return None


def _valid_date(parts: list[str | None]) -> bool:
    y, mo, d = int(parts[0]), int(parts[1]), int(parts[2])  # type: ignore[arg-type]
    if not (1950 <= y <= 2100 and 1 <= mo <= 12 and 1 <= d <= 31):
        return False
    if parts[3] is not None and not (int(parts[3]) < 24 and int(parts[4]) < 60 and int(parts[5]) < 61):  # type: ignore
        return False
    return True


def scene_date(path: str | Path) -> str | None:
    """Acquisition date of a raster: metadata (ACQUISITION* / TIFFTAG_DATETIME tags), else the file name."""
    path = Path(path)
    with contextlib.suppress(Exception):
        import rasterio

        with rasterio.open(path) as ds:
            tags: dict[str, str] = {}
            for domain in (None, "IMAGE_STRUCTURE"):
                with contextlib.suppress(Exception):
                    tags.update({k.upper(): v for k, v in ds.tags(ns=domain).items()})
            with contextlib.suppress(Exception):
                tags.update({k.upper(): v for k, v in ds.tags(1).items() if k.upper() not in tags})
        for key in _DATE_TAGS:
            if key in tags and (d := parse_date(tags[key])):
                return d
        for key, value in tags.items():
            if "ACQUISITION" in key and (d := parse_date(value)):
                return d
    return parse_date(path.name)


# -------------------------------------------------------------------------------------------------- manifest
class Manifest:
    """``OUTDIR/manifest.json``: the committed scenes of a batch folder (single writer: the client).

    Per scene: run key, input path and fingerprint (size, mtime), status, outputs (name -> sha256) and the
    ``SceneResult``. Every ``commit`` rewrites the whole file atomically, so a kill leaves the previous version.
    """

    def __init__(self, outdir: Path):
        self.path = outdir / MANIFEST
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                doc = json.loads(self.path.read_text(encoding="utf-8"))
                self.entries = dict(doc["scenes"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise InputError(f"{self.path}: unreadable batch manifest ({e}); remove it or use --no-resume")\
                    from None

    def commit(self, key: str, entry: dict[str, Any]) -> None:
        self.entries[key] = entry
        doc = {"version": MANIFEST_VERSION, "updated": datetime.now().isoformat(timespec="seconds"),
               "scenes": self.entries}
        _atomic_write(self.path, _dumps(doc))

    def done(self, key: str, run_key: str, fingerprint: dict[str, int], outdir: Path) -> SceneResult | None:
        """The committed result of ``key`` if it is complete and still verifies, else None (redo it)."""
        e = self.entries.get(key)
        if not e or e.get("run_key") != run_key or e.get("input") != fingerprint:
            return None
        if e.get("status") not in ("ok", "low_quality"):
            return None  # failures are retried
        for name, digest in e.get("outputs", {}).items():
            p = outdir / name
            if not p.is_file() or sha256_file(p) != digest:
                log.info("%s: output %s missing or changed since it was committed; redoing the scene", key, name)
                return None
        r = SceneResult.from_dict(e["result"])
        r.resumed = True
        return r


def clean_stale(outdir: Path) -> int:
    """Remove staging folders of earlier (dead) runs and temp files in OUTDIR; returns how many were removed.

    Only names this module or the pipeline writes are touched: ``.work/`` and hidden ``*.tmp*`` files.
    """
    n = 0
    work = outdir / WORK_DIR
    if work.is_dir():
        for d in work.iterdir():
            shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink(missing_ok=True)
            n += 1
    for p in outdir.iterdir():
        if p.is_file() and _is_temp(p.name):
            p.unlink(missing_ok=True)
            n += 1
    return n


# ----------------------------------------------------------------------------------------------- worker side
def _register(ref: str, moving: str, out: str, config: RegisterConfig, ref_info: dict[str, Any] | None):
    """Run the single-pair pipeline, with the worker's kept network and cached reference features."""
    from sarreg import pipeline

    folder = (ref_info or {}).get("features")
    index = ReferenceIndex.load(folder) if folder else None
    _TLS.index, _TLS.hits = index, 0
    try:
        return (pipeline.register(ref, moving, out, config, extractor=_batch_extractor(config)),
                _TLS.hits if index else None)
    finally:
        _TLS.index = None


def _report_dict(report: Any) -> dict[str, Any]:
    if isinstance(report, dict):
        return report
    for name in ("to_dict", "asdict", "to_json_dict"):
        if hasattr(report, name):
            return getattr(report, name)()
    return asdict(report)


def _result_fields(rep: dict[str, Any], grid: dict[str, Any] | None) -> dict[str, Any]:
    """Numbers for the summary from a pipeline ``Report`` dict (quality block, matrix and georeferencing prior)."""
    q = rep.get("quality") if isinstance(rep.get("quality"), dict) else {}
    out: dict[str, Any] = {"rmse_px": _num(q.get("rmse_px")), "inliers": _int(q.get("inliers")),
                           "coverage": _num(q.get("coverage"))}
    m = rep.get("matrix")
    if m is not None:
        relate = (rep.get("stages") or {}).get("relate") or {}
        prior = relate.get("prior")
        out.update(_matrix_fields(np.asarray(m, dtype=np.float64), grid,
                                  np.asarray(prior, dtype=np.float64) if prior is not None else None))
    return out


def _matrix_fields(m: np.ndarray, grid: dict[str, Any] | None, prior: np.ndarray | None) -> dict[str, Any]:
    """Correction of the georeferencing implied by ``m`` (moving px -> reference px), at the reference centre.

    ``prior`` is where the georeferencing alone puts the moving pixels (identity in pixel space). The shift is
    d = m(p) - c for the moving pixel p = prior^-1(c) that the georeferencing puts at the reference centre c:
    how far that pixel really is from where its georeferencing says (reference px; map units through the
    reference affine). rotation_deg: rotation of prior^-1 . m.
    """
    out: dict[str, Any] = {"matrix": m.tolist()}
    prior = np.eye(3) if prior is None else prior
    w, h = (grid["width"], grid["height"]) if grid else (1, 1)
    c = np.array([[(w - 1) / 2.0, (h - 1) / 2.0]])
    from sarreg.estimate import apply_matrix, decompose

    p = apply_matrix(np.linalg.inv(prior), c)
    d = (apply_matrix(m, p) - c)[0]
    out["shift_x_px"], out["shift_y_px"] = round(float(d[0]), 4), round(float(d[1]), 4)
    out["rotation_deg"] = round(float(decompose(np.linalg.inv(prior) @ m)["rotation_deg"]), 5)
    if grid and grid.get("crs_wkt"):
        g = grid["geotransform"]  # GDAL order: c, a, b, f, d, e
        out["shift_x_m"] = round(g[1] * d[0] + g[2] * d[1], 4)
        out["shift_y_m"] = round(g[4] * d[0] + g[5] * d[1], 4)
    return out


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return round(f, 4) if math.isfinite(f) else None


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _grid_of(path: str) -> dict[str, Any]:
    from sarreg.warp import Grid

    import rasterio

    with rasterio.open(path) as ds:
        geo = ds.crs is not None and ds.transform != rasterio.Affine.identity()
        return Grid(ds.width, ds.height, ds.transform if geo else rasterio.Affine.identity(),
                    ds.crs.to_wkt() if geo else None).to_dict()


def _error_text(e: BaseException) -> str:
    if isinstance(e, SarregError):
        return str(e)
    return f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"


def _publish(stage: Path, outdir: Path) -> dict[str, str]:
    """Hash the finished files of a staging folder and rename them into OUTDIR (same file system)."""
    outputs: dict[str, str] = {}
    for p in sorted(stage.iterdir()):
        if p.is_file() and not _is_temp(p.name):
            outputs[p.name] = sha256_file(p)
    for name in outputs:
        os.replace(stage / name, outdir / name)
    return outputs


# ------------------------------------------------------------------------------------ reference feature cache
# Batch workers pass ``register`` their own extractor (``register(..., extractor=)``): a subclass of the pipeline's
# ``Extractor`` that (1) is kept per worker process, so the network is loaded once, not per scene, and (2) answers
# an extraction call from the on-disk cache when its input image and arguments are exactly (content hash) those
# of a call recorded by ``prepare_reference``. Recording runs the pipeline's own ``register`` of the reference onto
# a link to itself, so the cache holds precisely the reference reads ``register`` makes for a scene covering the
# reference, whatever the pipeline's internals; anything else goes to the pipeline's code unchanged, so results
# are identical with and without cache.
_TLS = threading.local()
_EXTRACTORS: dict[tuple[Any, ...], "BatchExtractor"] = {}
_INDEXES: dict[str, "ReferenceIndex"] = {}
_EXTRACTOR_LOCK = threading.Lock()


def _array_key(unit: np.ndarray, valid: np.ndarray, args: tuple, kwargs: dict[str, Any]) -> str:
    h = hashlib.blake2b(digest_size=20)
    u = np.ascontiguousarray(unit, dtype=np.float32)
    h.update(repr((u.shape, args, sorted(kwargs.items()))).encode())
    h.update(u.tobytes())
    h.update(np.packbits(np.ascontiguousarray(valid, dtype=bool)).tobytes())
    return h.hexdigest()


class ReferenceIndex:
    """Cached reference features of one batch: content key of an extractor call -> Features (npz on disk)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.keys: dict[str, str] = json.loads((folder / "index.json").read_text())["entries"]
        self._mem: dict[str, Any] = {}

    @staticmethod
    def load(folder: str) -> "ReferenceIndex":
        idx = _INDEXES.get(folder)
        if idx is None:
            idx = _INDEXES[folder] = ReferenceIndex(Path(folder))
        return idx

    def get(self, key: str):
        name = self.keys.get(key)
        if name is None:
            return None
        if key not in self._mem:
            from sarreg.extract import Features

            self._mem[key] = Features.load_npz(self.folder / name)
        _TLS.hits = getattr(_TLS, "hits", 0) + 1
        return self._mem[key]


class BatchExtractor(Extractor):
    """The pipeline's Extractor, serving recorded reference features (``_TLS.index``) and recording them
    (``_TLS.record``) when the thread asks for it."""

    def __call__(self, unit, valid, *args, **kwargs):
        index, record = getattr(_TLS, "index", None), getattr(_TLS, "record", None)
        if index is None and record is None:
            return super().__call__(unit, valid, *args, **kwargs)
        key = _array_key(unit, valid, args, kwargs)
        f = index.get(key) if index is not None else None
        if f is None:
            f = super().__call__(unit, valid, *args, **kwargs)
            if record is not None:
                record[key] = f
        return f


def _batch_extractor(config: RegisterConfig) -> BatchExtractor:
    """This process's extractor for ``config`` (created once, so the network is loaded once per worker)."""
    key = (config.features, config.weights, config.device, config.preprocess)
    with _EXTRACTOR_LOCK:
        ext = _EXTRACTORS.get(key)
        if ext is None:
            ext = _EXTRACTORS[key] = BatchExtractor(config)
    return ext


def _self_link(ref: Path, folder: Path) -> Path:
    """A second name for the reference (hard link; a GDAL VRT across file systems) to register it onto itself."""
    link = folder / ("self" + (ref.suffix or ".tif"))
    link.unlink(missing_ok=True)
    try:
        os.link(ref, link)
    except OSError:
        from osgeo import gdal

        gdal.UseExceptions()
        link = folder / "self.vrt"
        gdal.Translate(str(link), str(ref), format="VRT")
    return link


def prepare_reference(ref: str, ref_sha: str, config: RegisterConfig, cache_dir: str | None) -> dict[str, Any]:
    """Worker task run once per batch: the reference's features recorded into ``cache_dir`` (when given).

    Cache folder ``ref-<key>`` keyed by the reference sha256, the feature type, the network (weights sha256),
    the device type and every parameter that changes reference features; ``index.json`` is written last, so a
    folder without it is incomplete and rebuilt. Existing folders are reused (repeated runs, other batches).
    Never raises: without a usable cache the scenes simply extract the reference themselves.
    """
    t0 = time.perf_counter()
    info: dict[str, Any] = {"features": None, "cache_hit": False, "entries": 0}
    if cache_dir is None:
        return info
    try:
        from sarreg import pipeline
        from sarreg.extract import resolve_device

        ext = _batch_extractor(config)
        key = hashlib.sha256(_dumps({"ref": ref_sha, "features": config.features, "net": ext.sha256 or ext.name,
                                     "device": resolve_device(config.device).type,
                                     "params": _feature_params(config)})).hexdigest()[:24]
        folder = Path(cache_dir) / f"ref-{key}"
        if (folder / "index.json").is_file():
            info["cache_hit"] = True
        else:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            link = _self_link(Path(ref), folder)
            quiet = config.with_(warp=False, tiepoints=False, geojson=False, points=False, matches_npz=False,
                                 quicklook=None, overwrite=True)
            _TLS.record = record = {}
            try:
                pipeline.register(ref, link, folder / "record.tif", quiet, extractor=ext)
            finally:
                _TLS.record = None
                for p in folder.iterdir():
                    p.unlink()
            entries: dict[str, str] = {}
            for i, (k, f) in enumerate(record.items()):
                entries[k] = f"{i:03d}.npz"
                f.save_npz(folder / entries[k])
            _atomic_write(folder / "index.json", _dumps({"reference": ref, "sha256": ref_sha, "entries": entries}))
        info["features"] = str(folder)
        info["entries"] = len(ReferenceIndex.load(str(folder)).keys)
    except Exception as e:  # noqa: BLE001 - the cache is an optimisation; scenes still run without it
        log.warning("reference features not cached: %s", _error_text(e))
    info["time_s"] = round(time.perf_counter() - t0, 3)
    return info


def _feature_params(config: RegisterConfig) -> dict[str, Any]:
    d = config.to_dict()
    keep = ("features", "weights", "coarse_size", "coarse_top_k", "tile_size", "n_tiles", "fine_top_k",
            "preprocess")
    return {k: d[k] for k in keep if k in d}


def run_scene(task: dict[str, Any]) -> dict[str, Any]:
    """Worker task: register one scene (to the reference or, in a chain, to its predecessor); never raises.

    Writes into the task's staging folder and publishes the finished files into OUTDIR. Returns a plain dict:
    ``result`` (``SceneResult`` fields), ``outputs`` (name -> sha256), ``report`` (the pipeline report) and the
    input's sha256.
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    key, moving, outdir = task["key"], task["moving"], Path(task["outdir"])
    stage = Path(task["stage"])
    res: dict[str, Any] = {"scene": key, "path": moving, "status": "failed"}
    out: dict[str, Any] = {"key": key, "result": res, "outputs": {}, "report": None, "host": socket.gethostname()}
    try:
        stage.mkdir(parents=True, exist_ok=True)
        timings: dict[str, float] = {}
        report, res["ref_cache_hits"] = _register(task["ref"], moving, str(stage / (key + OUT_SUFFIX)),
                                                  task["config"], task.get("ref_info"))
        rep = _report_dict(report)
        out["report"] = json.loads(_dumps(rep))
        res["status"] = str(rep.get("status", "failed"))
        if res["status"] not in STATUSES:
            res["status"] = "failed"
        res["error"] = (rep.get("message") or "registration failed") if res["status"] != "ok" else None
        res.update(_result_fields(rep, task["grid"]))
        for k, v in (rep.get("timings_s") or {}).items():
            timings[k] = v
        t = time.perf_counter()
        out["input_sha256"] = sha256_file(moving)
        out["outputs"] = _publish(stage, outdir)
        timings["publish"] = time.perf_counter() - t
        timings["cpu"] = time.process_time() - cpu0  # CPU seconds of the worker process (all its threads)
        res["timings"] = {k: round(float(v), 3) for k, v in timings.items() if _num(v) is not None}
    except BaseException as e:  # noqa: BLE001 - a scene's failure must never stop the batch
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        res["status"], res["error"] = "failed", _error_text(e)
        if not isinstance(e, SarregError):
            log.warning("%s: unexpected error\n%s", moving, traceback.format_exc())
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    res["time_s"] = round(time.perf_counter() - t0, 3)
    return out


def warp_scene(task: dict[str, Any]) -> dict[str, Any]:
    """Worker task of a chain: warp one scene onto the reference grid with its composed matrix; never raises.

    Also writes ``<scene>_reg.chain.json`` (composed matrix, the chain link, the pair's quality).
    """
    t0 = time.perf_counter()
    key, moving, outdir, stage = task["key"], task["moving"], Path(task["outdir"]), Path(task["stage"])
    out: dict[str, Any] = {"key": key, "outputs": {}, "error": None, "timings": {}}
    cfg: RegisterConfig = task["config"]
    try:
        from sarreg.io.raster import open_scene
        from sarreg.pipeline import prior_matrix
        from sarreg.warp import Grid, PixelTransform, update_georef, warp_to_grid

        stage.mkdir(parents=True, exist_ok=True)
        m = np.asarray(task["matrix"], dtype=np.float64)
        out["prior"] = prior_matrix(open_scene(task["ref"], cfg.preprocess), open_scene(moving, cfg.preprocess)).tolist()
        model = "affine" if np.allclose(m[2, :2], 0, atol=1e-12) else "homography"  # a product of the links
        tr = PixelTransform(model, m)
        grid = Grid.from_dict(task["grid"])
        target = stage / (key + OUT_SUFFIX)
        if cfg.warp:
            if cfg.update_georef:
                update_georef(moving, tr, grid, target, fmt=cfg.fmt, compress=cfg.compress)
            else:
                warp_to_grid(moving, tr, grid, target, resampling=cfg.resampling, fmt=cfg.fmt,
                             compress=cfg.compress, mem_mb=cfg.warp_mem_mb, threads=1)
        doc = {"scene": key, "moving": moving, "reference": task["ref"], "via": task["via"],
               "matrix": m.tolist(), "model": model, "link": task["link"]}
        _atomic_write(stage / (key + OUT_SUFFIX.replace(".tif", ".chain.json")), _dumps(doc))
        out["timings"]["warp"] = round(time.perf_counter() - t0, 3)
        out["outputs"] = _publish(stage, outdir)
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        out["error"] = _error_text(e)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    out["time_s"] = round(time.perf_counter() - t0, 3)
    return out


# ----------------------------------------------------------------------------------------------- client side
def default_workers(threads_per_worker: int = 1) -> int:
    """Worker processes for a LocalCluster: one per (threads_per_worker) cores, at most 4 (memory)."""
    return max(1, min(4, (os.cpu_count() or 1) // max(1, threads_per_worker)))


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None, threads_per_worker: int = 1,
                memory_limit: str | float = "auto", dashboard_address: str = ":8787") -> Iterator[Any]:
    """A ``distributed.Client``: to ``scheduler`` (address or scheduler-file path) when given, else to a new
    ``LocalCluster`` of ``workers`` processes (processes=True) x ``threads_per_worker`` threads, closed on exit.

    Each local worker gets OMP/MKL threads = cores / (workers x threads), so PyTorch and OpenCV do not
    oversubscribe the machine.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        kw: dict[str, Any] = {"scheduler_file": scheduler} if Path(scheduler).is_file() else {"address": scheduler}
        try:
            client = Client(timeout="30s", **kw)
        except (OSError, TimeoutError, ValueError) as e:
            raise InputError(f"{scheduler}: cannot connect to the Dask scheduler ({e})") from None
        try:
            yield client
        finally:
            client.close()
        return
    threads_per_worker = max(1, int(threads_per_worker))
    n = int(workers) if workers else default_workers(threads_per_worker)
    if n < 1:
        raise InputError(f"--workers must be >= 1, got {n}")
    inner = str(max(1, (os.cpu_count() or 1) // (n * threads_per_worker)))
    env = {"OMP_NUM_THREADS": inner, "MKL_NUM_THREADS": inner, "OPENBLAS_NUM_THREADS": inner}
    with LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=True,
                      memory_limit=memory_limit, dashboard_address=dashboard_address,
                      silence_logs=logging.ERROR, env=env) as cluster, Client(cluster) as client:
        yield client


def _unique_keys(paths: Sequence[Path]) -> list[str]:
    keys: list[str] = []
    seen: dict[str, int] = {}
    for p in paths:
        stem = re.sub(r"[^A-Za-z0-9._+-]", "_", p.name.split(".")[0] if p.name.startswith(".") else p.stem) or "scene"
        n = seen.get(stem, 0) + 1
        seen[stem] = n
        keys.append(stem if n == 1 else f"{stem}_{n}")
    return keys


def _run_key(config: RegisterConfig, mode: str, ref_sha: str) -> str:
    d = {k: v for k, v in config.to_dict().items() if k not in _NEUTRAL_OPTIONS}
    return hashlib.sha256(_dumps({"config": d, "mode": mode, "reference": ref_sha})).hexdigest()[:32]


@contextlib.contextmanager
def _outdir_lock(outdir: Path) -> Iterator[None]:
    """One batch at a time per OUTDIR (flock; released by the kernel even when the process is killed)."""
    import fcntl

    fh = open(outdir / ".lock", "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError(f"{outdir}: another sarreg batch is running in this folder") from None
        yield
    finally:
        fh.close()


def _prepare_outdir(outdir: Path) -> Path:
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{outdir}: cannot create output folder ({e.strerror or e})") from None
    if not os.access(outdir, os.W_OK | os.X_OK):
        raise OutputError(f"{outdir}: output folder is not writable")
    return outdir


def _worst(a: str, b: str) -> str:
    return a if STATUSES.index(a) >= STATUSES.index(b) else b


def check_run(reference: str | Path, config: RegisterConfig) -> None:
    """Validate the reference, the run's options and its weights (loaded once here, on the client): a bad
    ``--weights`` is one InputError / WeightsError (exit 1) up front, not a failure of every scene on the cluster."""
    from sarreg.io.raster import open_scene
    from sarreg.pipeline import _check_config

    open_scene(reference, config.preprocess)
    _check_config(config)
    if config.features == "r2d2":
        from sarreg.model.weights import load_model

        load_model(config.weights, "cpu")


def batch(reference: str | Path, scenes: Sequence[str | Path], outdir: str | Path,
          config: RegisterConfig = RegisterConfig(), *, chain: bool = False, resume: bool = True,
          client: Any = None, scheduler: str | None = None, workers: int | None = None,
          threads_per_worker: int = 1, cache_dir: str | Path | None = None, reference_cache: bool = True,
          progress: Callable[[SceneResult], None] | None = None,
          on_cluster: Callable[[Any], None] | None = None) -> BatchSummary:
    """Co-register ``scenes`` with ``reference`` on Dask; write per-scene outputs and the run summary to ``outdir``.

    config: the one ``RegisterConfig`` every scene uses. chain: register each scene to its predecessor (time order
    when every scene has a date, else the given order) and compose the pixel matrices (shift / similarity /
    affine / homography models). resume: skip scenes committed in ``OUTDIR/manifest.json`` that still verify.
    client / scheduler / workers / threads_per_worker: an existing ``distributed.Client``, a scheduler address
    (or scheduler file), else a new LocalCluster of that size. reference_cache / cache_dir: reuse reference
    features from disk (default folder ``OUTDIR/.cache``; shared by workers and later runs). progress: called with each ``SceneResult`` as it completes (resumed ones first).
    on_cluster: called with the Dask client once connected (only when there is work; e.g. to show the dashboard).

    Scene failures never raise: they are recorded (status "failed", ``error``). Raises ``InputError`` for an
    unusable reference or an empty scene list, ``OutputError`` for an unwritable OUTDIR.
    """
    from sarreg.io.raster import open_scene

    t_start = time.perf_counter()
    ref = Path(reference).resolve()
    check_run(ref, config)  # fail fast (exit 1) on an unusable reference, bad options or weights
    paths = [Path(s).resolve() for s in scenes]
    paths = [p for p in paths if p != ref]  # a glob may include the reference itself
    if not paths:
        raise InputError(f"{outdir}: no scenes to register (besides the reference)")
    if chain and config.model not in CHAIN_MODELS:
        raise InputError(f"--chain composes 3 x 3 matrices: use --model {'/'.join(CHAIN_MODELS)}, "
                         f"not {config.model}")
    out = Path(outdir).resolve()
    for p in paths:
        if p.parent == out and p.name.endswith(OUT_SUFFIX):
            raise OutputError(f"{p}: input is an output of this batch folder; refusing to overwrite an input")
    _prepare_outdir(out)
    keys = _unique_keys(paths)
    dates = {k: scene_date(p) for k, p in zip(keys, paths)}
    order = list(range(len(keys)))
    if all(dates[k] for k in keys):
        order.sort(key=lambda i: (dates[keys[i]], i))
    elif chain:
        log.warning("not every scene has a date: chaining in the given order")
    keys = [keys[i] for i in order]
    paths = [paths[i] for i in order]
    by_key = dict(zip(keys, paths))
    mode = "chain" if chain else "reference"
    ref_sha = sha256_file(ref)
    run_key = _run_key(config, mode, ref_sha)
    cache = (Path(cache_dir).resolve() if cache_dir else out / CACHE_DIR) if reference_cache else None

    with _outdir_lock(out):
        removed = clean_stale(out)
        if removed:
            log.info("removed %d staging folder(s) / temp file(s) left by an interrupted run", removed)
        try:
            manifest = Manifest(out)
        except InputError:
            if resume:
                raise
            (out / MANIFEST).unlink()
            manifest = Manifest(out)
        results: dict[str, SceneResult] = {}
        if resume:  # outputs are re-hashed to verify them: in parallel threads (hashlib releases the GIL)
            from concurrent.futures import ThreadPoolExecutor

            def check(k: str) -> SceneResult | None:
                return manifest.done(k, run_key, _fingerprint(by_key[k]), out) if by_key[k].exists() else None

            with ThreadPoolExecutor(max_workers=8) as pool:
                for k, r in zip(keys, pool.map(check, keys)):
                    if r is not None:
                        results[k] = r
                        if progress:
                            progress(r)
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
                run = _Run(cl, ref, ref_sha, out, config, run_key, run_id, cache, manifest, by_key, dates, results,
                           progress)
                try:
                    run.chain(keys, todo) if chain else run.to_reference(todo)
                    summary.reference_cache = run.reference_cache
                finally:
                    shutil.rmtree(out / WORK_DIR / run_id, ignore_errors=True)
                    with contextlib.suppress(OSError):
                        (out / WORK_DIR).rmdir()
        summary.scenes = [results[k] for k in keys]
        summary.wall_s = round(time.perf_counter() - t_start, 3)
        summary.files = write_summary(summary, out, chain_matrices={k: results[k].matrix for k in keys}
                                      if chain else None)
    return summary


class _Run:
    """Client-side state of one batch run: submits tasks, commits results to the manifest as they complete."""

    def __init__(self, client: Any, ref: Path, ref_sha: str, out: Path, config: RegisterConfig, run_key: str,
                 run_id: str, cache: Path | None, manifest: Manifest, by_key: dict[str, Path], dates: dict[str, str | None],
                 results: dict[str, SceneResult], progress: Callable[[SceneResult], None] | None):
        self.client, self.ref, self.ref_sha, self.out, self.config = client, ref, ref_sha, out, config
        self.reference_cache: dict[str, Any] = {}
        self.run_key, self.run_id, self.cache, self.manifest = run_key, run_id, cache, manifest
        self.by_key, self.dates, self.results, self.progress = by_key, dates, results, progress
        self.grid = _grid_of(str(ref))

    def _stage(self, key: str, tag: str = "") -> str:
        return str(self.out / WORK_DIR / self.run_id / (key + tag))

    def _task(self, key: str, ref: str, config: RegisterConfig, tag: str = "") -> dict[str, Any]:
        return {"key": key, "moving": str(self.by_key[key]), "ref": ref, "outdir": str(self.out),
                "stage": self._stage(key, tag), "config": config, "grid": self.grid}

    def _commit(self, key: str, res: SceneResult, outputs: dict[str, str], extra: dict[str, Any]) -> None:
        res.date = self.dates.get(key)
        res.outputs = outputs
        self.results[key] = res
        p = self.by_key[key]
        fp = _fingerprint(p) if p.exists() else None
        self.manifest.commit(key, {"run_key": self.run_key, "input": fp, "status": res.status, "outputs": outputs,
                                   "result": res.to_dict(), **extra})
        if self.progress:
            self.progress(res)

    @staticmethod
    def _get(fut: Any, key: str, path: Path) -> dict[str, Any]:
        try:
            return fut.result()
        except Exception as e:  # a worker died (out of memory, killed): the scene fails, the batch goes on
            return {"key": key, "result": {"scene": key, "path": str(path), "status": "failed",
                                           "error": f"worker lost: {_error_text(e)}"}, "outputs": {}}

    # ---------------------------------------------------------------------------------- all to the reference
    def to_reference(self, todo: list[str]) -> None:
        from distributed import as_completed

        ref_fut = self.client.submit(prepare_reference, str(self.ref), self.ref_sha, self.config,
                                     str(self.cache) if self.cache else None,
                                     key=f"sarreg-reference-{self.run_id}", pure=False)
        futs = {}
        for k in todo:
            task = self._task(k, str(self.ref), self.config)
            futs[self.client.submit(_run_scene_with_ref, task, ref_fut, key=f"sarreg-{k}-{self.run_id}",
                                    pure=False)] = k
        for fut in as_completed(list(futs)):
            k = futs[fut]
            r = self._get(fut, k, self.by_key[k])
            res = SceneResult.from_dict(r["result"])
            self._commit(k, res, r.get("outputs", {}), {"input_sha256": r.get("input_sha256")})
        with contextlib.suppress(Exception):
            info = ref_fut.result()
            self.reference_cache = {k: info.get(k) for k in ("features", "cache_hit", "entries", "time_s")}
            log.info("reference prepared in %.2f s (feature cache: %s, %s entries)", info.get("time_s") or 0.0,
                     "hit" if info.get("cache_hit") else ("written" if info.get("features") else "off"),
                     info.get("entries"))

    # ---------------------------------------------------------------------------------------------- chain
    def chain(self, keys: list[str], todo: list[str]) -> None:
        """Pairs (scene -> predecessor) run in parallel; composition walks the chain in order as results come
        in; a scene whose predecessor failed is re-linked to the last good one; warps run as soon as known."""
        from distributed import as_completed

        pending = set(todo)
        pair_cfg = self.config.with_(warp=False, update_georef=False)
        T: dict[str | None, np.ndarray] = {None: np.eye(3)}  # None = the reference
        worst: dict[str | None, str] = {None: "ok"}
        rss: dict[str | None, float] = {None: 0.0}
        via: dict[str, str | None] = {}
        pair_res: dict[str, dict[str, Any]] = {}
        kind: dict[Any, tuple[str, str]] = {}
        ac = as_completed()

        def submit_pair(k: str, prev: str | None) -> None:
            via[k] = prev
            ref = str(self.ref if prev is None else self.by_key[prev])
            task = self._task(k, ref, pair_cfg, tag=f"-pair-{prev or 'reference'}")
            task["grid"] = self.grid if prev is None else None
            f = self.client.submit(run_scene, task, key=f"sarreg-pair-{k}-{prev}-{self.run_id}", pure=False)
            kind[f] = ("pair", k)
            ac.add(f)

        prev: str | None = None
        for k in keys:
            if k in pending:
                submit_pair(k, prev)
            else:
                r = self.results[k]
                T[k] = np.asarray(r.matrix, dtype=np.float64)
                worst[k] = r.status
                rss[k] = (r.rmse_px or 0.0) ** 2
            prev = k

        state = {"i": 0, "last": None}

        def advance() -> None:
            while state["i"] < len(keys):
                k = keys[state["i"]]
                if k not in pending:
                    state["last"] = k
                    state["i"] += 1
                    continue
                if k not in pair_res:
                    return
                r = pair_res[k]
                last = state["last"]
                if via[k] != last:  # the predecessor failed: link to the last scene with a known transform
                    del pair_res[k]
                    submit_pair(k, last)
                    return
                res = SceneResult.from_dict(r["result"])
                if res.status == "failed":
                    res.via = via[k] or "reference"
                    self._commit(k, res, r.get("outputs", {}), {})
                    state["i"] += 1
                    continue
                m = np.asarray(res.matrix, dtype=np.float64)
                T[k] = T[last] @ m
                T[k] /= T[k][2, 2]
                worst[k] = _worst(worst[last], res.status)
                rss[k] = rss[last] + (res.rmse_px or 0.0) ** 2
                task = self._task(k, str(self.ref), self.config, tag="-warp")
                task.update(matrix=T[k].tolist(), via=last or "reference", link=_link_summary(r.get("report")))
                f = self.client.submit(warp_scene, task, key=f"sarreg-warp-{k}-{self.run_id}", pure=False)
                kind[f] = ("warp", k)
                ac.add(f)
                state["last"] = k
                state["i"] += 1

        for fut in ac:
            what, k = kind.pop(fut)
            if what == "pair":
                pair_res[k] = self._get(fut, k, self.by_key[k])
                advance()
                continue
            try:
                w = fut.result()
            except Exception as e:
                w = {"error": f"worker lost: {_error_text(e)}", "outputs": {}, "time_s": None}
            r = pair_res[k]
            res = SceneResult.from_dict(r["result"])
            res.via = via[k] or "reference"
            res.status = worst[k]
            res.rmse_px = round(math.sqrt(rss[k]), 4)
            prior = np.asarray(w["prior"], dtype=np.float64) if w.get("prior") is not None else None
            res.__dict__.update(_matrix_fields(T[k], self.grid, prior))
            res.timings = {**res.timings, **w.get("timings", {})}
            res.time_s = round((res.time_s or 0.0) + (w.get("time_s") or 0.0), 3)
            outputs = {**r.get("outputs", {}), **w.get("outputs", {})}
            if w.get("error"):
                res.status, res.error = "failed", w["error"]
            self._commit(k, res, outputs, {"input_sha256": r.get("input_sha256"), "via": res.via})


def _link_summary(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of a chain link's report worth repeating in ``<scene>_reg.chain.json`` (the rest is in its
    ``.report.json``)."""
    if not report:
        return None
    return {k: report.get(k) for k in ("status", "message", "ref", "moving", "matrix", "quality")}


def _run_scene_with_ref(task: dict[str, Any], ref_info: dict[str, Any]) -> dict[str, Any]:
    task = dict(task, ref_info=ref_info)
    return run_scene(task)


# --------------------------------------------------------------------------------------------------- summary
def write_summary(summary: BatchSummary, outdir: Path,
                  chain_matrices: dict[str, list[list[float]] | None] | None = None) -> dict[str, str]:
    """summary.json / summary.csv / summary.png / tiepoints.gpkg in ``outdir`` (each written atomically).

    Returns name -> path of what was written. The plot or the tie point layer failing never loses the tables.
    """
    files: dict[str, str] = {}
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in summary.scenes:
        w.writerow({k: ("" if v is None else v) for k, v in r.to_dict().items()})
    _atomic_write(outdir / "summary.csv", buf.getvalue().encode())
    files["csv"] = str(outdir / "summary.csv")
    try:
        plot_summary(summary, outdir / "summary.png")
        files["png"] = str(outdir / "summary.png")
    except Exception as e:  # noqa: BLE001 - a plot must not cost the tables
        log.warning("summary.png not written: %s", _error_text(e))
    try:
        n = merge_tiepoints(summary, outdir, outdir / "tiepoints.gpkg", chain_matrices)
        if n is not None:
            files["tiepoints"] = str(outdir / "tiepoints.gpkg")
    except Exception as e:  # noqa: BLE001
        log.warning("tiepoints.gpkg not written: %s", _error_text(e))
    files["json"] = str(outdir / "summary.json")
    summary.files = files
    _atomic_write(outdir / "summary.json", _dumps(summary.to_dict()))
    return files


def plot_summary(summary: BatchSummary, path: Path) -> Path:
    """Shift (x, y) and RMSE per scene against date (or scene order): ok dots, low quality orange, failed red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    rows = summary.scenes
    use_dates = bool(rows) and all(r.date for r in rows)
    xs: list[Any] = [datetime.fromisoformat(r.date) for r in rows] if use_dates else list(range(len(rows)))  # type: ignore
    geo = any(r.shift_x_m is not None for r in rows)
    unit = "map units" if geo else "px"
    sx = [(r.shift_x_m if geo else r.shift_x_px) for r in rows]
    sy = [(r.shift_y_m if geo else r.shift_y_px) for r in rows]
    colours = {"ok": "tab:green", "low_quality": "tab:orange", "failed": "tab:red"}
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(max(7.0, 0.35 * len(rows) + 4), 6.5), sharex=True,
                                 constrained_layout=True)
    for vals, lab, c in ((sx, "shift x", "tab:blue"), (sy, "shift y", "tab:purple")):
        pts = [(x, v) for x, v in zip(xs, vals) if v is not None]
        if pts:
            a1.plot(*zip(*pts), "-o", color=c, label=lab, ms=4, lw=1)
    rm = [(x, r.rmse_px, colours.get(r.status, "k")) for x, r in zip(xs, rows) if r.rmse_px is not None]
    if rm:
        a2.plot([p[0] for p in rm], [p[1] for p in rm], "-", color="0.6", lw=1)
        a2.scatter([p[0] for p in rm], [p[1] for p in rm], c=[p[2] for p in rm], s=30, zorder=3)
    for x, r in zip(xs, rows):
        if r.status == "failed":
            for a in (a1, a2):
                a.axvline(x, color="tab:red", alpha=0.35, lw=2)
        elif r.status == "low_quality":
            a1.axvline(x, color="tab:orange", alpha=0.25, lw=2)
    a1.axhline(0, color="k", lw=0.6)
    a1.set_ylabel(f"shift ({unit})")
    a1.legend(loc="best", fontsize=8)
    c = summary.counts
    a1.set_title(f"{Path(summary.reference).name}: {len(rows)} scenes, {c['ok']} ok, {c['low_quality']} low "
                 f"quality, {c['failed']} failed ({summary.mode}; red bands = failed)", fontsize=10)
    a2.set_ylabel("RMSE (px)")
    a2.set_ylim(bottom=0)
    for a in (a1, a2):
        a.grid(alpha=0.3)
    if use_dates:
        loc = mdates.AutoDateLocator()
        a2.xaxis.set_major_locator(loc)
        a2.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
        a2.set_xlabel("acquisition date")
    else:
        a2.set_xticks(xs)
        a2.set_xticklabels([r.scene for r in rows], rotation=60, ha="right", fontsize=7)
        a2.set_xlabel("scene")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    _atomic_write(path, buf.getvalue())
    return path


def merge_tiepoints(summary: BatchSummary, outdir: Path, path: Path,
                    chain_matrices: dict[str, list[list[float]] | None] | None = None) -> int | None:
    """One GeoPackage with every scene's tie points (from ``<scene>_reg.tiepoints.gpkg``) plus a ``scene`` column.

    Points sit at their reference map position; in a chain they are placed through the scene's composed matrix
    (the per-scene files of a chain hold positions in the predecessor's grid). Returns the number of points, or
    None when no scene has tie points.
    """
    import pyogrio

    from sarreg.io.vector import write_points
    from sarreg.warp import Grid

    xy_all, attrs_all, crs = [], [], None
    grid = None
    for r in summary.scenes:
        name = next((n for n in r.outputs if n.endswith(".tiepoints.gpkg")), None)
        if name is None or not (outdir / name).is_file():
            continue
        meta, _, geom, data = pyogrio.raw.read(outdir / name)
        fields = list(meta["fields"])
        cols = {f: np.asarray(v) for f, v in zip(fields, data)}
        if chain_matrices is not None and chain_matrices.get(r.scene) is not None and "moving_col" in cols:
            if grid is None:
                grid = Grid.from_dict(_grid_of(summary.reference))
                crs = grid.crs_wkt
            from sarreg.estimate import apply_matrix

            mov = np.c_[cols["moving_col"], cols["moving_row"]].astype(np.float64)
            ref_px = apply_matrix(np.asarray(chain_matrices[r.scene]), mov)
            xy = grid.px_to_map(ref_px)
            cols["ref_col"], cols["ref_row"] = ref_px[:, 0], ref_px[:, 1]
            cols["ref_x"], cols["ref_y"] = xy[:, 0], xy[:, 1]
        else:
            import shapely

            pts = shapely.from_wkb(geom) if len(geom) else np.zeros(0, dtype=object)
            xy = shapely.get_coordinates(pts) if len(pts) else np.zeros((0, 2))
            crs = crs or meta.get("crs")
        n = len(xy)
        attrs_all.append({"scene": np.array([r.scene] * n, dtype=object), "date": np.array([r.date or ""] * n,
                          dtype=object), "status": np.array([r.status] * n, dtype=object), **cols})
        xy_all.append(np.asarray(xy, dtype=np.float64).reshape(-1, 2))
    if not xy_all:
        return None
    names: list[str] = []
    for a in attrs_all:
        names += [k for k in a if k not in names]
    merged: dict[str, np.ndarray] = {}
    for k in names:
        parts = []
        for a, xy in zip(attrs_all, xy_all):
            if k in a:
                parts.append(np.asarray(a[k]))
            else:
                parts.append(np.full(len(xy), np.nan) if k not in ("scene", "date", "status")
                             else np.array([""] * len(xy), dtype=object))
        merged[k] = np.concatenate(parts) if parts else np.zeros(0)
    xy = np.concatenate(xy_all)
    if crs and not isinstance(crs, str):
        crs = str(crs)
    write_points(path, xy, merged, crs, layer="tiepoints")
    return int(len(xy))
