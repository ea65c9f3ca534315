#!/usr/bin/env python3
"""Write the QGIS plugin's copy of the CLI's options: ``qgis/sarreg_qgis/cli_spec.json``.

The plugin runs inside QGIS's Python, where sarreg (torch, ...) is not importable; it takes the names, types,
choices, defaults and help strings of its parameters from this JSON, generated here from the click commands
themselves (``make qgis-plugin`` runs it; ``tests/test_qgis.py`` checks that the committed file is in sync).

    python qgis/make_spec.py [--check] [-o qgis/sarreg_qgis/cli_spec.json]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import click

COMMANDS = ("register", "apply", "batch", "extract")
DEFAULT_OUT = Path(__file__).resolve().parent / "sarreg_qgis" / "cli_spec.json"


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return round(v, 6) if math.isfinite(v) else None
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return str(v)


def _unset(v: Any) -> bool:
    return type(v).__name__ == "Sentinel" or str(v).startswith("Sentinel.")


def _type(t: click.ParamType) -> dict[str, Any]:
    if isinstance(t, click.Choice):
        return {"type": "choice", "choices": [str(c) for c in t.choices]}
    if isinstance(t, click.types.BoolParamType):
        return {"type": "bool"}
    if isinstance(t, (click.IntRange, click.FloatRange)):
        out = {"type": "int" if isinstance(t, click.IntRange) else "float"}
        for k in ("min", "max"):
            if getattr(t, k) is not None:
                out[k] = _jsonable(getattr(t, k))
                if getattr(t, f"{k}_open"):
                    out[f"{k}_open"] = True
        return out
    if isinstance(t, click.types.IntParamType):
        return {"type": "int"}
    if isinstance(t, click.types.FloatParamType):
        return {"type": "float"}
    if isinstance(t, click.Path):
        return {"type": "path"}
    # (--nodata's values are text: a number, nan or none, checked by the CLI)
    return {"type": "string" if t.name in ("text", "string", "nodata") else t.name}


def param_spec(p: click.Parameter) -> dict[str, Any]:
    d: dict[str, Any] = {"name": p.name, **_type(p.type)}
    if isinstance(p, click.Argument):
        d.update(kind="argument", required=bool(p.required), nargs=p.nargs)
        return d
    assert isinstance(p, click.Option)
    longest = max(p.opts, key=len)
    default = None if _unset(p.default) else p.default  # click >= 8.2: an UNSET sentinel when none is given
    d.update(kind="option", opt=longest, default=_jsonable(default), help=" ".join((p.help or "").split()))
    if p.is_flag:
        d["type"] = "flag"
        d["default"] = bool(default)
        if p.secondary_opts:
            d["off_opt"] = max(p.secondary_opts, key=len)
    if p.multiple:
        d["multiple"] = True
    if p.metavar:
        d["metavar"] = p.metavar
    return d


def build_spec() -> dict[str, Any]:
    from sarreg.cli import cli

    spec: dict[str, Any] = {"generated_by": "qgis/make_spec.py", "commands": {}}
    for name in COMMANDS:
        cmd = cli.commands[name]
        spec["commands"][name] = {
            "help": " ".join((cmd.help or "").split("\n\n")[0].split()),
            "params": [param_spec(p) for p in cmd.params if p.name != "help" and not getattr(p, "hidden", False)],
        }
    return spec


def render(spec: dict[str, Any]) -> str:
    return json.dumps(spec, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="only compare: exit 1 when the file is out of date")
    a = ap.parse_args(argv)
    text = render(build_spec())
    if a.check:
        if not a.out.is_file() or a.out.read_text(encoding="utf-8") != text:
            print(f"{a.out} is out of date: run python qgis/make_spec.py", file=sys.stderr)
            return 1
        return 0
    a.out.write_text(text, encoding="utf-8")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
