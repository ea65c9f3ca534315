"""``--chain``: every scene registered to its predecessor in time, the 3 x 3 pixel matrices composed back to the
reference, then one warp per scene onto the reference grid.

Pairs run in parallel; composition walks the chain in order as results come in; a scene whose predecessor's own
link is not ``ok`` (failed, or low quality: an untrusted transform, maybe the georeferencing kept) is re-linked to
the last scene whose link is; warps run as soon as a scene's composed matrix is known, for a low-quality link only
with ``--force`` (as without --chain).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sarreg.batch.files import task_error
from sarreg.batch.guard import submit
from sarreg.batch.results import CHAIN_SUFFIX, SceneResult, matrix_fields, worst
from sarreg.batch.tasks import georef_prior, run_scene, warp_scene
from sarreg.reapply import registered_nodata
from sarreg.relate import moving_pre

if TYPE_CHECKING:
    from sarreg.batch.runner import Run

# what ``apply`` reads of a registration's relate stage besides the prior: how the scene was read, its grid
RELATE_KEYS = ("nodata", "undeclared_nodata", "moving_grid")
CHAIN_MODELS = ("auto", "shift", "similarity", "affine", "homography")  # models with a 3 x 3 matrix
CHAIN_NATIVE = ("a link of the chain is between CRSs that no affine relates over the scene: its composed matrix is "
                "pixels off at the edges; register the scenes to the reference without --chain")


def compose(previous: np.ndarray, link: np.ndarray) -> np.ndarray:
    """Scene -> reference from predecessor -> reference and scene -> predecessor (normalised homogeneous)."""
    t = previous @ link
    return t / t[2, 2]


def link_summary(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of a chain link's report worth repeating in ``<scene>_reg.chain.json`` (the rest is in its
    ``.report.json``)."""
    if not report:
        return None
    return {k: report.get(k) for k in ("status", "message", "ref", "moving", "matrix", "quality")}


def publish_held(r: dict[str, Any], outdir: Path) -> dict[str, str]:
    """A link's files held in its staging folder (``tasks.run_scene``), renamed into OUTDIR -> its outputs."""
    import shutil

    from sarreg.batch.manifest import publish

    if not r.get("held"):
        return r.get("outputs", {})
    try:
        return publish(Path(r["held"]), outdir, r.get("outputs", {}))
    except OSError:  # (a staging folder a later run removed: nothing to publish)
        return {}
    finally:
        shutil.rmtree(r["held"], ignore_errors=True)


def run_chain(run: "Run", keys: list[str], todo: list[str]) -> None:
    """Register the ``todo`` scenes of the time-ordered ``keys`` along the chain; commits each as it completes
    (scenes not in ``todo`` are already committed and serve as links with their recorded matrix)."""
    from distributed import as_completed

    pending = set(todo)
    pair_cfg = run.config.with_(warp=False, update_georef=False)
    # a link onto a predecessor pairs two scenes: both read as MOVING (--moving-band / --moving-nodata), not the
    # predecessor as REF (its --band named a band the scenes may not have, or silently another one)
    link_cfg = pair_cfg.with_(preprocess=moving_pre(pair_cfg), moving_band=None, moving_nodata=None)
    T: dict[str | None, np.ndarray] = {None: np.eye(3)}  # None = the reference
    status: dict[str | None, str] = {None: "ok"}
    rss: dict[str | None, float] = {None: 0.0}
    approx: dict[str | None, bool] = {None: False}  # a link's exact native transform became a composed matrix
    via: dict[str, str | None] = {}
    pair_res: dict[str, dict[str, Any]] = {}
    kind: dict[Any, tuple[str, str]] = {}
    ac = as_completed()

    def submit_pair(k: str, prev: str | None) -> None:
        via[k] = prev
        ref = str(run.ref if prev is None else run.by_key[prev])
        task = run.task(k, ref, pair_cfg if prev is None else link_cfg, tag=f"-pair-{prev or 'reference'}")
        task["grid"] = run.grid if prev is None else None
        task["hold"] = True  # its files published with its scene's commit (``tasks.run_scene``)
        if prev is not None:  # its report is onto the predecessor's grid: marked, so that apply refuses it
            task["chain_link"] = {"predecessor": ref, "composed": k + CHAIN_SUFFIX}
        f = submit(run.client, run_scene, task, key=f"sarreg-pair-{k}-{prev}-{run.run_id}", pure=False)
        kind[f] = ("pair", k)
        ac.add(f)

    prev: str | None = None
    for k in keys:
        if k in pending:
            submit_pair(k, prev)
        else:
            r = run.results[k]
            T[k] = np.asarray(r.matrix, dtype=np.float64)
            status[k] = r.status
            rss[k] = (r.rmse_px or 0.0) ** 2
            approx[k] = False
        prev = k

    state: dict[str, Any] = {"i": 0, "last": None}

    def advance() -> None:
        while state["i"] < len(keys):
            k = keys[state["i"]]
            if k not in pending:
                if run.results[k].status == "ok":
                    state["last"] = k
                state["i"] += 1
                continue
            if k not in pair_res:
                return
            r = pair_res[k]
            last = state["last"]
            if via[k] != last:  # the predecessor's link is not ok: link to the last scene whose link is
                del pair_res[k]
                submit_pair(k, last)
                return
            res = SceneResult.from_dict(r["result"])
            if res.status == "failed" or (res.status != "ok" and not run.config.force):  # no raster (as batch)
                res.via = via[k] or "reference"
                if res.matrix is not None:  # its numbers towards the reference, as every row's (not the link's)
                    prior = georef_prior(str(run.ref), str(run.by_key[k]), run.config)
                    for name, value in matrix_fields(compose(T[last], np.asarray(res.matrix, dtype=np.float64)),
                                                     run.grid, prior).items():
                        setattr(res, name, value)
                run.commit(k, res, publish_held(r, run.out), {})
                state["i"] += 1
                continue
            T[k] = compose(T[last], np.asarray(res.matrix, dtype=np.float64))
            status[k] = worst(status[last], res.status)
            # between CRSs that no affine relates, a link's warp is exact only on its own (sarreg.grid.Native)
            approx[k] = approx[last] or bool(((r.get("report") or {}).get("transform") or {}).get("native"))
            status[k] = worst(status[k], "low_quality") if approx[k] else status[k]
            rss[k] = rss[last] + (res.rmse_px or 0.0) ** 2
            task = run.task(k, str(run.ref), run.config, tag="-warp")
            relate = ((r.get("report") or {}).get("stages") or {}).get("relate") or {}
            task.update(matrix=T[k].tolist(), via=last or "reference", link=link_summary(r.get("report")),
                        held=r.get("held"),
                        nodata=registered_nodata(r.get("report") or {}, task["moving"]),  # as the link read it
                        status=status[k], relate={n: relate[n] for n in RELATE_KEYS if n in relate})
            if last is not None:  # its tie point sidecars, on the predecessor's grid, moved onto the reference's
                task.update(pred_matrix=T[last].tolist(), pred_grid=(r.get("report") or {}).get("reference_grid"))
            f = submit(run.client, warp_scene, task, key=f"sarreg-warp-{k}-{run.run_id}", pure=False)
            kind[f] = ("warp", k)
            ac.add(f)
            if res.status == "ok":  # (a low-quality link, warped with --force, links no later scene)
                state["last"] = k
            state["i"] += 1

    for fut in ac:
        what, k = kind.pop(fut)
        if what == "pair":
            pair_res[k] = run.result_of(fut, k)
            fut.release()  # (see ``Run.to_reference``)
            advance()
            continue
        try:
            w = fut.result()
        except Exception as e:  # noqa: BLE001 - a worker died (or runs other software): this scene's error
            w = {"error": task_error(e), "outputs": {}, "time_s": None}
        fut.release()
        r = pair_res[k]
        res = SceneResult.from_dict(r["result"])
        res.via = via[k] or "reference"
        res.status = status[k]
        if approx[k]:
            res.warnings = [*res.warnings, CHAIN_NATIVE]
        res.rmse_px = round(math.sqrt(rss[k]), 4)
        prior = np.asarray(w["prior"], dtype=np.float64) if w.get("prior") is not None else None
        for name, value in matrix_fields(T[k], run.grid, prior).items():
            setattr(res, name, value)
        res.timings = {**res.timings, **w.get("timings", {})}
        res.time_s = round((res.time_s or 0.0) + (w.get("time_s") or 0.0), 3)
        outputs = {**r.get("outputs", {}), **w.get("outputs", {})}
        if w.get("error"):
            res.status, res.error = "failed", w["error"]
        run.commit(k, res, outputs, {"input_sha256": r.get("input_sha256"), "via": res.via})
