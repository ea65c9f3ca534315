"""Oversampled inputs: register both scenes read decimated, then map the result back to the files' pixels.

A product resampled to a finer pixel than its resolution (an up-sampled image, many ground-range products) has
features several pixels wide, while the pipeline's pixel-sized constants (the inlier threshold, the bootstrap
spread gate, the correlation windows) are tuned to images whose pixel is their resolution. Read decimated by ``n``
the same pair has native-sized features again. Measured on training-split pairs up-sampled 2x (stop 59,
``models/HISTORY.md``): registered as they are, 4 of 8 (A) and 6 of 8 (XA) ended low_quality, the XA ones a median
1.5 native px off; read back at half size, 7 of 8 and 5 of 8 were ok, 0.55 and 0.81 native px off.

``--oversampling N`` reads both scenes decimated by N (``Scene.step``: every window of the decimated scene's cells
is read from the file's pixels by GDAL's averaging); ``auto`` registers as the files are and, only when that is
low_quality, tries 2 then 4 and keeps the first attempt that passes the gates. Nothing else changes for a pair that
registers ok as it is. The result is mapped back to the files' pixels (x_n = n (x_d + 0.5) - 0.5 for the pixel
centres): matrix, tie points, keypoints, the overlap and the quality numbers in pixels; the report's stage entries
of the attempt stay in its own (decimated) pixels, as ``stages.oversampling`` says.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import shapely.affinity
from affine import Affine

from sarreg.choice import spread_limit
from sarreg.config import RegisterConfig
from sarreg.decide import Decision
from sarreg.errors import OptionError
from sarreg.estimate import Estimate, apply_matrix
from sarreg.features import Features
from sarreg.geometry import decimation
from sarreg.io.raster import Scene
from sarreg.stage import StageResult

AUTO_FACTORS = (2, 4)  # auto: tried in this order when the pair registers low_quality as it is
MIN_SIDE = 160  # a decimated scene keeps at least this many cells on its shorter side
LINEAR = ("shift", "similarity", "affine", "homography")  # the models whose result is mapped back exactly


def factors(rs: Scene, ms: Scene, cfg: RegisterConfig, first: str, repeat: dict | None = None,
            flagged: bool = False) -> tuple[int, ...]:
    """The decimation factors to try for this pair: ``cfg.oversampling`` N alone, or for auto (when the first
    attempt ended ``first`` = low_quality, found no lattice in the reference, ``repeat``, and nothing about the scene
    itself, ``flagged``, ``scene_flags``) those of AUTO_FACTORS that leave both scenes MIN_SIDE cells; () for none.
    A failed first attempt is not retried: unrelated pairs would take twice as long to fail (57 -> 118 s, 1024 px).
    GCP-located rasters (their GCPs stay in the file's pixels) and models that are not one matrix are not read
    decimated; an explicit N on them is an OptionError."""
    from sarreg.quality import REPEAT_STRENGTH

    n = cfg.oversampling
    lattice = (repeat or {}).get("strength", 0.0) >= REPEAT_STRENGTH  # (a few pixels wide: aliased when decimated)
    if n == "1" or (n == "auto" and (first != "low_quality" or lattice or flagged)):
        return ()
    why = ("a GCP-located raster" if rs.gcps is not None or ms.gcps is not None
           else f"--model {cfg.model}" if cfg.model not in ("auto", *LINEAR) else None)
    if why is not None:
        if n != "auto":
            raise OptionError(f"--oversampling {n}: not available for {why}")
        return ()
    side = min(rs.width, rs.height, ms.width, ms.height)
    if n != "auto":
        if side // int(n) < 16:
            raise OptionError(f"--oversampling {n}: the smaller raster ({side} px) would be "
                              f"{side // int(n)} px read decimated")
        return (int(n),)
    return tuple(k for k in AUTO_FACTORS if side // k >= MIN_SIDE)


def scene_flags(dec: Decision | None, cfg: RegisterConfig) -> bool:
    """The first attempt found something about the scene itself that a coarser reading must not override: a part
    that moved on its own, a local distortion, or another answer from another start (``sarreg.quality``)."""
    from sarreg.quality import distorted_locally, rival_start, second_moves

    if dec is None or dec.est is None:
        return False
    info = dec.matches.info if dec.matches is not None else {}
    return second_moves(dec.second, cfg) or distorted_locally(dec.second, cfg) or bool(rival_start(info, cfg))


def tried(status: str, message: str, est: Estimate | None) -> dict[str, Any]:
    """The report's entry of one attempt (``stages.oversampling.tried``): status, message, inliers."""
    out: dict[str, Any] = {"status": status, "message": message}
    if est is not None:
        out["inliers"] = est.n_inliers
    return out


def refused(est: Estimate, first: Estimate, moved: float, cfg: RegisterConfig) -> str | None:
    """Why auto does not adopt an ok attempt read decimated (``est``, in the files' pixels) over the first,
    low_quality one (``first``): it rests on fewer inliers and moved the estimate more than ``--threshold`` over
    the overlap (``moved``, px). A product sampled at its resolution loses windows read decimated (n^2 fewer) and an
    oversampled one gains them (training-split pairs up-sampled 4x: 8-63 inliers as they are, 35-316 read
    decimated); a coastal scene at its resolution, right as it was (102 inliers, low_quality for a richer fit),
    was ok read 4x decimated on 31 inliers, 5 px from it and 2.7 px off (stop 61)."""
    if est.n_inliers < first.n_inliers and moved > cfg.threshold:
        return (f"fewer inliers ({est.n_inliers}) than as the files are ({first.n_inliers}), and {moved:.1f} px "
                f"from that estimate")
    return None


def decimated(scene: Scene, n: int) -> Scene:
    """``scene`` read decimated by ``n``: cells of n x n pixels (the last partial row / column left out), the
    geotransform scaled to them; reads go through ``read_unit`` (``Scene.step``)."""
    return replace(scene, width=scene.width // n, height=scene.height // n, transform=scene.transform @
                   Affine.scale(n), step=n)


def cells(n: int) -> np.ndarray:
    """Matrix: a cell of a scene read decimated by ``n`` -> the file's pixels (centre convention,
    x = n (x_cell + 0.5) - 0.5; ``geometry.decimation``)."""
    return decimation((n, n), (1, 1))


def scaled(m: np.ndarray, n: int) -> np.ndarray:
    """A matrix between decimated pixels (moving -> reference, centre convention) -> the same map between the
    files' pixels: D M D^-1 with D = ``cells(n)``."""
    d = cells(n)
    return d @ np.asarray(m, dtype=np.float64) @ np.linalg.inv(d)


def points(xy: np.ndarray, n: int) -> np.ndarray:
    """Decimated pixel coordinates (N x 2, centre convention) -> the files' pixels."""
    return apply_matrix(cells(n), xy)


def geometry(g: Any, n: int) -> Any:
    """A shapely geometry in decimated pixels -> the files' pixels (None stays None)."""
    d = cells(n)
    return None if g is None else shapely.affinity.affine_transform(g, [*d[0, :2], *d[1, :2], d[0, 2], d[1, 2]])


def estimate(est: Estimate, n: int) -> Estimate:
    """An estimate of a linear model on decimated pixels -> the files' pixels (residuals and thresholds too)."""
    assert est.model in LINEAR, est.model
    return replace(est, matrix=scaled(est.matrix, n), residuals=est.residuals * n, rmse=est.rmse * n,
                   heldout_rmse=est.heldout_rmse * n, threshold=est.threshold * n,
                   base=None if est.base is None else scaled(est.base, n))


def _features(f: Features, n: int, size: tuple[int, int]) -> Features:
    k = np.array(f.keypoints, dtype=np.float32, copy=True)
    if len(k):
        k[:, :2] = points(k[:, :2], n)
        k[:, 2] *= n
    return Features(k, f.descriptors, f.scores, size)


def stage_result(r: StageResult | None, n: int, rs: Scene, ms: Scene) -> StageResult | None:
    """Tie points and keypoints of a stage on decimated pixels -> the files' pixels (``rs`` / ``ms``: the scenes
    as the files are). The tile pairs are dropped: their images are decimated."""
    if r is None:
        return None
    return replace(r, src=points(r.src, n), dst=points(r.dst, n),
                   ref_feats=_features(r.ref_feats, n, (rs.width, rs.height)),
                   mov_feats=_features(r.mov_feats, n, (ms.width, ms.height)), tiles=[])


def limits(cfg: RegisterConfig, n: int) -> dict[str, float]:
    """The gates' pixel limits an attempt read decimated by ``n`` was judged by, in the files' pixels: its gates
    hold in its cells, so a report's ``rmse_px`` above ``--max-rmse`` can be ok (stop 60's left-undone note)."""
    return {"threshold": cfg.threshold * n, "max_rmse": cfg.max_rmse * n, "max_heldout_rmse": 2 * cfg.max_rmse * n,
            "max_spread": spread_limit(cfg) * n, "max_spread_confirmed": spread_limit(cfg, True) * n}


def gates(g: dict[str, Any], n: int) -> dict[str, Any]:
    """The gates' measurements in pixels (adequacy, spread, held-out blocks) -> the files' pixels."""
    out = dict(g)
    for k in ("adequacy", "spread", "extrap"):
        if isinstance(out.get(k), (int, float)):
            out[k] = out[k] * n
    return out
