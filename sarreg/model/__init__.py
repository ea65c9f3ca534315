"""Networks and checkpoint loading (imported lazily: ``sarreg.model.files`` must not cost the torch import)."""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"Fast_Quad_L2Net_ConfCFS": "r2d2", "Quad_L2Net_ConfCFS": "r2d2", "build_network": "r2d2",
          "fold_batchnorm": "r2d2", "Model": "weights", "load_model": "weights", "save_checkpoint": "weights",
          "default_weights_path": "files", "DEFAULT_MODEL_NAME": "files", "EXTRACT_MODEL_NAME": "files"}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"sarreg.model.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'sarreg.model' has no attribute {name!r}")
