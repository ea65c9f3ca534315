"""Where the weights files are: the shipped model's lookup, without importing torch.

Why a module of its own: the registration pipeline reports which weights it would use (name, sha256) and loads
the network only when a stage needs keypoints; finding the file must not cost the torch import.
"""
from __future__ import annotations

from pathlib import Path

from sarreg.errors import WeightsError

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"  # the checkout's models/ (source runs, editable installs)
MODELS_PACKAGE = "sarreg._models"  # the same files as package data of an installed wheel (copied by setup.py)
DEFAULT_MODEL_NAME = "sarreg_fast_sar_v5.pt"  # register's network (coarse keypoints, dense descriptor checks)
# extract's (and the single-stage evaluation's) network: the same lineage fine-tuned further; it matches better on
# its own (mutual nearest neighbours + one homography) but lands fewer register estimates within 1 px
# (models/README.md, "Two shipped models")
EXTRACT_MODEL_NAME = "sarreg_fast_sar_v5xa.pt"


def default_weights_path(name: str = DEFAULT_MODEL_NAME) -> Path | None:
    """The shipped model ``name``: package data of the installed wheel first, else the checkout's ``models/``
    (None when neither has it)."""
    for p in (packaged_weights(name), MODELS_DIR / name):
        if p is not None and p.is_file():
            return p
    return None


def packaged_weights(name: str) -> Path | None:
    """``sarreg/_models/<name>`` found with ``importlib.resources`` (None when the package or file is absent).

    Only an installation on a file system counts (torch loads from a path; a zipped install falls back to the
    checkout lookup).
    """
    from importlib import resources

    try:
        res = resources.files(MODELS_PACKAGE) / name
    except ModuleNotFoundError:
        return None
    return res if isinstance(res, Path) and res.is_file() else None


def weights_path(path: str | Path | None, default: str = DEFAULT_MODEL_NAME) -> Path:
    """The checkpoint to load: ``path``, or the shipped model ``default`` when None (WeightsError when there is
    none)."""
    if path is not None:
        return Path(path)
    found = default_weights_path(default)
    if found is None:
        raise WeightsError(
            f"no model weights: {default} is neither installed with sarreg ({MODELS_PACKAGE}) nor in "
            f"{MODELS_DIR}; pass --weights PATH (one of our checkpoints or an R2D2 .pt file)")
    return found
