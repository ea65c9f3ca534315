"""``Features``: keypoints, descriptors and scores of one image, and their ``.r2d2`` npz layout.

A module of its own (no torch): the stages pass features around, and a registration that correlation settles
never imports the network's libraries.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sarreg.outputs import write_atomic


def model_keys(model: tuple[str, str] | None) -> dict[str, np.ndarray]:
    """npz entries naming the weights that made the descriptors (none when ``model`` is None)."""
    if model is None:
        return {}
    return {"model_name": np.array(model[0]), "model_sha256": np.array(model[1])}


@dataclass(frozen=True)
class Features:
    """Keypoints of one image.

    keypoints: N x 3 float32 (x, y, scale) in full-resolution pixel-centre coordinates; scale = 32 / s is the
    patch diameter in pixels. descriptors: N x D float32, L2-normalised. scores: N float32 (rel x rep).
    image_size: (W, H) of the full-resolution image. Order: ascending score (R2D2's file order).
    """

    keypoints: np.ndarray
    descriptors: np.ndarray
    scores: np.ndarray
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def xy(self) -> np.ndarray:
        """N x 2 float64 pixel coordinates (x, y)."""
        return self.keypoints[:, :2].astype(np.float64)

    def subset(self, idx: np.ndarray) -> "Features":
        return Features(self.keypoints[idx], self.descriptors[idx], self.scores[idx], self.image_size)

    @staticmethod
    def empty(image_size: tuple[int, int], dim: int = 128) -> "Features":
        return Features(np.zeros((0, 3), np.float32), np.zeros((0, dim), np.float32), np.zeros(0, np.float32),
                        image_size)

    @staticmethod
    def concat(parts: list["Features"], image_size: tuple[int, int]) -> "Features":
        parts = [p for p in parts if len(p)]
        if not parts:
            return Features.empty(image_size)
        return Features(np.concatenate([p.keypoints for p in parts]), np.concatenate([p.descriptors for p in parts]),
                        np.concatenate([p.scores for p in parts]), image_size)

    def top_k(self, k: int) -> "Features":
        """Keep the k best (k <= 0 keeps all), in ascending score order as R2D2 writes them."""
        order = np.argsort(self.scores, kind="stable")
        if k > 0:
            order = order[-k:]
        return self.subset(order)

    def save_npz(self, path: str | Path, model: tuple[str, str] | None = None) -> Path:
        """Write R2D2's ``.r2d2`` layout (uncompressed npz: imsize, keypoints, descriptors, scores), atomically.

        ``model`` (weights file name, sha256) adds ``model_name`` / ``model_sha256``: descriptors of different
        weights are not comparable (``extract`` and ``register`` ship different ones), so the file says which made
        it. R2D2 tooling reads its four keys and ignores these."""
        def save(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, imsize=np.asarray(self.image_size, dtype=np.int64),
                         keypoints=self.keypoints.astype(np.float32), descriptors=self.descriptors.astype(np.float32),
                         scores=self.scores.astype(np.float32), **model_keys(model))

        return write_atomic(Path(path), save)

    @staticmethod
    def load_npz(path: str | Path) -> "Features":
        with np.load(path) as z:
            size = tuple(int(v) for v in z["imsize"]) if "imsize" in z else (0, 0)
            return Features(z["keypoints"], z["descriptors"], z["scores"], size)  # type: ignore[arg-type]
