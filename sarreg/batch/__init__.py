"""Co-register a time series on Dask distributed: ``batch(ref, scenes, outdir, config) -> BatchSummary``.

Every scene is one Dask task running ``sarreg.pipeline.register`` with the ONE ``RegisterConfig`` of the run
(default: every scene to the reference; ``chain=True``: every scene to its predecessor in time, transforms composed
as 3 x 3 pixel matrices, then one warp per scene onto the reference grid).

Outputs (``OUTDIR``): per scene ``<scene>_reg.tif`` and the sidecars ``register`` writes next to it; for the run
``summary.csv``, ``summary.json``, ``summary.png`` and ``tiepoints.gpkg`` (all tie points, a ``scene`` column),
``manifest.json`` (what is committed: resume after a crash).

One concern per module, in the order of a run:

- ``runner``    ``batch()`` itself: checks, scene order, the Dask client, submitting tasks and committing results
- ``dates``     acquisition dates from metadata or file names (the order of the series)
- ``manifest``  crash safety and resume: staging, publishing, the manifest (commit point), the OUTDIR lock
- ``cache``     the reference's features computed once and served to every scene (``register(..., extractor=)``)
- ``tasks``     the worker side: one registration per scene, one warp per chained scene
- ``chain``     ``--chain``: composition of the pixel matrices along the series, re-linking past failures
- ``summary``   summary.csv / .json / .png;  ``tiepoints``: the merged tie point layer
- ``results``   ``SceneResult``, ``BatchSummary`` and the summary numbers taken from a pipeline ``Report``
- ``files``     sha256, atomic writes, strict JSON
- ``guard``     every task checks, on its worker, that the worker runs the client's software

The package talks to the pipeline only through its public API: ``register(..., extractor=)``, ``Report``,
``Extractor`` and ``prior_matrix`` (``check_run`` checks the options with ``RegisterConfig.validate``).
Pixel convention as everywhere in sarreg: x = column, y = row, (0, 0) = centre of the top-left pixel.
"""
from __future__ import annotations

from sarreg.batch.cache import CACHE_DIR, prepare_reference
from sarreg.batch.chain import CHAIN_MODELS
from sarreg.batch.dates import parse_date, scene_date
from sarreg.batch.files import sha256_file
from sarreg.batch.manifest import MANIFEST, WORK_DIR, Manifest, clean_stale
from sarreg.batch.results import CSV_COLUMNS, OUT_SUFFIX, STATUSES, BatchSummary, SceneResult, matrix_fields
from sarreg.batch.runner import batch, check_run, dask_client, default_workers
from sarreg.batch.summary import plot_summary, write_summary
from sarreg.batch.tasks import run_scene, warp_scene
from sarreg.batch.tiepoints import merge_tiepoints

__all__ = [
    "batch", "check_run", "BatchSummary", "SceneResult", "dask_client", "default_workers", "parse_date",
    "scene_date", "sha256_file", "Manifest", "clean_stale", "prepare_reference", "run_scene", "warp_scene",
    "write_summary", "plot_summary", "merge_tiepoints", "matrix_fields", "MANIFEST", "WORK_DIR", "CACHE_DIR",
    "CHAIN_MODELS", "CSV_COLUMNS", "OUT_SUFFIX", "STATUSES",
]
