#!/usr/bin/env python3
"""Build the installable QGIS plugin zip (``make qgis-plugin``): regenerate ``sarreg_qgis/cli_spec.json`` from the
click commands (``make_spec.py``), then zip ``qgis/sarreg_qgis/`` as ``sarreg_qgis/...`` (no caches), the layout
QGIS's *Plugins > Manage and Install Plugins > Install from ZIP* expects.

    python qgis/build_plugin.py [--out dist/sarreg_qgis.zip] [--no-spec]
"""
from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGIN = HERE / "sarreg_qgis"


def plugin_files() -> list[Path]:
    return sorted(p for p in PLUGIN.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"))


def build_zip(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for p in plugin_files():
            z.write(p, Path(PLUGIN.name) / p.relative_to(PLUGIN))
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE.parent / "dist" / "sarreg_qgis.zip")
    ap.add_argument("--no-spec", action="store_true", help="zip the committed cli_spec.json as it is")
    a = ap.parse_args(argv)
    if not a.no_spec:
        sys.path.insert(0, str(HERE))
        import make_spec

        make_spec.main([])
    out = build_zip(a.out)
    print(f"wrote {out} ({len(plugin_files())} files); install it with QGIS's Plugins > Manage and Install "
          "Plugins > Install from ZIP")
    return 0


if __name__ == "__main__":
    sys.exit(main())
