"""Values passed between the registration stages (tie points of a stage, full-resolution tile pairs)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sarreg.features import Features

if TYPE_CHECKING:
    from sarreg.io.raster import Scene


@dataclass(frozen=True)
class StageResult:
    """Matches of one stage in full-scene pixels plus the features they come from."""

    src: np.ndarray  # moving px (M x 2)
    dst: np.ndarray  # reference px (M x 2)
    similarity: np.ndarray
    ref_feats: Features
    mov_feats: Features
    idx1: np.ndarray
    idx2: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    tiles: list["TilePair"] = field(default_factory=list, repr=False)
    # correlation stages: per tie point, whether its offset is the dense descriptors' alone (``sarreg.dense``)
    alone: np.ndarray | None = field(default=None, repr=False)

    def alone_inliers(self, inliers: np.ndarray) -> int:
        """How many of ``inliers`` (a bool per tie point) are tie points the dense descriptors alone measured."""
        if self.alone is None or len(self.alone) != len(inliers):
            return 0
        return int((inliers & self.alone).sum())

    @staticmethod
    def empty(ref: Scene, mov: Scene, info: dict[str, Any] | None = None) -> "StageResult":
        """No matches (a stage that did not run or found nothing); ``ref`` / ``mov`` give the scene sizes."""
        return StageResult(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, np.float32),
                           Features.empty((ref.width, ref.height)), Features.empty((mov.width, mov.height)),
                           np.zeros(0, np.int64), np.zeros(0, np.int64), dict(info or {}))


@dataclass(frozen=True)
class TilePair:
    """One full-resolution reference tile and the moving read covering it (kept for area-based refinement).

    ru / rv: reference [0, 1] tile and validity, at reference pixels (c0, r0) + tile px; mu / mv: the moving read;
    Dm: moving read px -> full moving px; k: local scale of the transform the read was planned with (reference px
    per moving px).
    """

    c0: int
    r0: int
    ru: np.ndarray
    rv: np.ndarray
    mu: np.ndarray
    mv: np.ndarray
    Dm: np.ndarray
    k: float = 1.0
