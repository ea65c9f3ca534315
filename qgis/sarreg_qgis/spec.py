"""The CLI's options as seen by the plugin: ``cli_spec.json``, generated from the click commands by
``qgis/make_spec.py`` (names, types, choices, defaults, help strings). Pure Python, no qgis import."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

SPEC_PATH = Path(__file__).resolve().parent / "cli_spec.json"


@lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


def command(name: str) -> dict[str, Any]:
    return load()["commands"][name]


def option(cmd: str, name: str) -> dict[str, Any]:
    """The spec of option ``name`` (click's parameter name, e.g. ``max_shift``) of command ``cmd``."""
    for p in command(cmd)["params"]:
        if p["name"] == name and p["kind"] == "option":
            return p
    raise KeyError(f"sarreg {cmd} has no option {name!r} (regenerate cli_spec.json: python qgis/make_spec.py)")


LABELS = {"fmt": "Output format", "n_tiles": "Fine-stage tiles", "warp_mem_mb": "Warp memory (MB)",
          "max_shift": "Max shift (reference px)", "threshold": "Inlier threshold (reference px)",
          "max_rmse": "Max RMSE (px)", "grid_spacing": "Grid spacing (--model local, px)",
          "update_georef": "Correct the georeferencing only (no resampling)",
          "force": "Write the raster even when the quality gates fail", "weights": "Network weights (.pt)",
          "top_k": "Keypoints kept (top k)", "chain": "Chain: register each scene to its predecessor",
          "reference_cache": "Cache the reference's features", "resume": "Resume (skip scenes already done)",
          "features": "Keypoint features", "model": "Geometric model", "kind": "Pixel values are",
          "workers": "Dask workers (local cluster)", "scheduler": "Dask scheduler address (existing cluster)"}


def param_name(p: dict[str, Any]) -> str:
    """The Processing parameter name of an option: its long flag, e.g. ``--max-shift`` -> ``MAX_SHIFT``."""
    return p["opt"].lstrip("-").replace("-", "_").upper()


def label(p: dict[str, Any]) -> str:
    """A parameter label: ``LABELS`` or the flag, ``--min-inliers`` -> ``Min inliers``."""
    return LABELS.get(p["name"]) or p["opt"].lstrip("-").replace("-", " ").capitalize()


def help_text(cmd: str, name: str) -> str:
    p = option(cmd, name)
    text = p.get("help") or ""
    flag = p["opt"] + (f" / {p['off_opt']}" if p.get("off_opt") else "")
    return f"{text} (sarreg {cmd} {flag})".strip()


def option_args(p: dict[str, Any], value: Any) -> list[str]:
    """Command-line arguments for option spec ``p`` set to ``value``; [] for None or the CLI's default (so the
    CLI's defaults apply and the logged command line stays short)."""
    if value is None or value == "":
        return []
    if p["type"] == "flag":
        value = bool(value)
        if value == bool(p.get("default")):
            return []
        if value:
            return [p["opt"]]
        return [p["off_opt"]] if p.get("off_opt") else []
    if p["type"] == "int":
        value = int(value)
    elif p["type"] == "float":
        value = float(value)
    default = p.get("default")
    if default is not None:
        if p["type"] == "float" and abs(float(value) - float(default)) <= 1e-6 * max(1.0, abs(float(default))):
            return []
        if p["type"] == "choice" and str(value).lower() == str(default).lower():
            return []
        if value == default:
            return []
    return [p["opt"], repr(value) if isinstance(value, float) else str(value)]
