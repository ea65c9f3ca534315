"""Quicklook PNGs that let a person judge a result at a glance (decimated reads only)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sarreg.errors import OutputError
from sarreg.outputs import write_atomic
from sarreg.io.raster import Scene, decimated_shape, read_unit

QUICKLOOK_SIDE = 1024


def scene_preview(scene: Scene, max_side: int = QUICKLOOK_SIDE) -> tuple[np.ndarray, float]:
    """Decimated 8-bit grey preview of a scene and its scale (preview px per scene px)."""
    s = min(1.0, max_side / max(scene.width, scene.height))
    unit, valid = read_unit(scene, None, decimated_shape(scene, s) if s < 1 else None)
    img = (unit * 255).astype(np.uint8)
    img[~valid] = 0
    return img, s


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a PNG atomically."""
    path = Path(path)
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise OutputError(f"{path}: PNG encoding failed")
    return write_atomic(path, buf.tobytes())


def keypoint_quicklook(scene: Scene, keypoints: np.ndarray, path: str | Path, max_points: int = 5000) -> Path:
    """Keypoints (N x 3: x, y, scale in scene pixels) drawn on the scaled scene; colour = scale."""
    img, s = scene_preview(scene)
    rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    kp = keypoints[-max_points:]
    if len(kp):
        scales = kp[:, 2]
        lo, hi = float(scales.min()), float(scales.max())
        for x, y, sc in kp:
            t = 0.0 if hi <= lo else (sc - lo) / (hi - lo)
            colour = (int(255 * (1 - t)), int(200 * t), 255)  # BGR: small=orange/red, large=magenta
            cv2.circle(rgb, (int(round((x + 0.5) * s - 0.5)), int(round((y + 0.5) * s - 0.5))),
                       max(2, int(round(sc * s / 8))), colour, 1, cv2.LINE_AA)
    return write_png(path, rgb)
