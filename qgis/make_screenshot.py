#!/usr/bin/python3
"""Render the README's QGIS screenshot headless: run the plugin's Register algorithm on a pair of scenes and
render the co-registered raster with the styled tie points, a legend and the report's numbers as a QGIS print
layout (QT_QPA_PLATFORM=offscreen, no display).

Runs with QGIS's Python (Debian: /usr/bin/python3 with python3-qgis), not sarreg's venv; the algorithm starts
the sarreg command (``--sarreg``, else the plugin's usual lookup).

    make qgis-screenshot          # samples/make_samples.py, then this script -> docs/qgis_screenshot.png
    /usr/bin/python3 qgis/make_screenshot.py --ref A.tif --moving B.tif [--sarreg .venv/bin/sarreg]
                                             [--work DIR] [--out docs/qgis_screenshot.png] [--size 820x600]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def start_qgis():
    """A QgsApplication without GUI, Processing initialised and the sarreg provider registered."""
    from qgis.core import QgsApplication

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    for p in (str(HERE), os.path.join(QgsApplication.pkgDataPath(), "python", "plugins")):
        if p not in sys.path:
            sys.path.append(p)
    from processing.core.Processing import Processing

    Processing.initialize()
    from sarreg_qgis.provider import SarregProvider

    provider = SarregProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    return app, provider


def render(raster_path: str, tiepoints_path: str, title: str, subtitle: str, out_png: str | Path,
           size: tuple[int, int] = (820, 600), threshold: float = 1.5) -> Path:
    """A print layout: the raster (grey, 2-98 % stretch) with the tie points styled by ``sarreg_qgis.styles``, a
    legend, a title; exported to ``out_png`` as an 8-bit palette PNG."""
    from qgis.core import (QgsContrastEnhancement, QgsLayoutExporter, QgsLayoutItemLabel, QgsLayoutItemLegend,
                           QgsLayoutItemMap, QgsLayoutPoint, QgsLayoutSize, QgsPrintLayout, QgsProject,
                           QgsRasterLayer, QgsRasterMinMaxOrigin, QgsUnitTypes, QgsVectorLayer)
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QFont, QImage

    from sarreg_qgis.styles import style_tiepoints

    project = QgsProject.instance()
    project.clear()
    ras = QgsRasterLayer(str(raster_path), "co-registered raster")
    tie = QgsVectorLayer(str(tiepoints_path), "tie points", "ogr")
    if not ras.isValid() or not tie.isValid():
        raise RuntimeError(f"cannot open {raster_path} / {tiepoints_path} in QGIS")
    ras.setContrastEnhancement(QgsContrastEnhancement.StretchToMinimumMaximum, QgsRasterMinMaxOrigin.CumulativeCut)
    ras.brightnessFilter().setGamma(2.2)  # linear power looks dark: brighten the mid-tones (amplitude-like)
    style_tiepoints(tie, threshold)
    project.addMapLayers([ras, tie])

    w_px, h_px = size
    mm = 0.5  # layout millimetres per output pixel at the export DPI below
    layout = QgsPrintLayout(project)
    layout.initializeDefaults()
    page = layout.pageCollection().page(0)
    page.setPageSize(QgsLayoutSize(w_px * mm, h_px * mm, QgsUnitTypes.LayoutMillimeters))
    title_h = 26.0
    ext = ras.extent()
    map_h = h_px * mm - title_h - 4
    map_w = min(map_h * ext.width() / ext.height(), w_px * mm * 0.75)  # the raster's aspect, room for the legend
    m = QgsLayoutItemMap(layout)
    m.attemptMove(QgsLayoutPoint(4, title_h))
    m.attemptResize(QgsLayoutSize(map_w, map_h))
    m.setLayers([tie, ras])
    m.setCrs(ras.crs())
    m.setExtent(ras.extent())
    m.setFrameEnabled(True)
    layout.addLayoutItem(m)
    for text, y, pt, bold in ((title, 3, 15, True), (subtitle, 14, 10, False)):
        lab = QgsLayoutItemLabel(layout)
        lab.setText(text)
        f = QFont("DejaVu Sans", pt)
        f.setBold(bold)
        lab.setFont(f)
        lab.attemptMove(QgsLayoutPoint(4, y))
        lab.attemptResize(QgsLayoutSize(w_px * mm - 8, 11))
        layout.addLayoutItem(lab)
    leg = QgsLayoutItemLegend(layout)
    leg.setTitle("Layers")
    leg.setLinkedMap(m)
    leg.setAutoUpdateModel(True)
    leg.attemptMove(QgsLayoutPoint(map_w + 10, title_h))
    layout.addLayoutItem(leg)
    dpi = 25.4 / mm
    img = QgsLayoutExporter(layout).renderPageToImage(0, QSize(w_px, h_px), dpi)
    if img.isNull():
        raise RuntimeError("the layout rendered no image")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    if not img.convertToFormat(QImage.Format_RGB888).save(str(out_png), "PNG"):
        raise RuntimeError(f"cannot write {out_png}")
    _to_palette(out_png)
    return out_png


def _to_palette(png: Path) -> None:
    """256-colour palette PNG (half the RGB size for a speckled SAR scene): 240 grey levels plus the colours of
    the tie point classes, no dithering; left as RGB when Pillow is missing."""
    try:
        from PIL import Image
    except ImportError:
        return
    from sarreg_qgis.styles import RESIDUAL_CLASSES

    colours = [(round(i * 255 / 239),) * 3 for i in range(240)]
    colours += [tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for _, c in RESIDUAL_CLASSES]
    colours += [(140, 140, 140), (34, 34, 34)]
    pal = Image.new("P", (1, 1))
    pal.putpalette([v for c in colours for v in c] + [0] * 3 * (256 - len(colours)))
    with Image.open(png) as im:
        out = im.convert("RGB").quantize(palette=pal, dither=Image.Dither.NONE)
    out.save(png, optimize=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", required=True, help="reference raster")
    ap.add_argument("--moving", required=True, help="moving raster")
    ap.add_argument("--sarreg", default=None, help="sarreg executable (default: the plugin's lookup)")
    ap.add_argument("--features", default="r2d2", choices=["r2d2", "sift"])
    ap.add_argument("--work", type=Path, default=None, help="folder for the registration outputs (default: temp)")
    ap.add_argument("--out", type=Path, default=HERE.parent / "docs" / "qgis_screenshot.png")
    ap.add_argument("--size", default="820x600", help="WIDTHxHEIGHT in pixels")
    a = ap.parse_args(argv)
    if a.sarreg:
        os.environ["SARREG_EXECUTABLE"] = a.sarreg
    app, _provider = start_qgis()
    import processing
    from qgis.core import QgsProcessingFeedback

    work = a.work or Path(tempfile.mkdtemp(prefix="sarreg_qgis_shot_"))
    work.mkdir(parents=True, exist_ok=True)
    res = processing.run("sarreg:register", {"REFERENCE": str(Path(a.ref).resolve()),
                                             "MOVING": str(Path(a.moving).resolve()), "FEATURES": a.features,
                                             "OUTPUT": str(work / "registered.tif")},
                         feedback=QgsProcessingFeedback())
    rep = json.loads(Path(res["REPORT"]).read_text(encoding="utf-8"))
    q, c = rep["quality"], rep["correction"]
    title = (f"sarreg:register in QGIS: {rep['status']}, {q['model']}, {q['inliers']} / {q['matches']} tie points, "
             f"RMSE {q['rmse_px']:.2f} px")
    rot = round(c["rotation_deg"], 2) + 0.0  # no "-0.00"
    subtitle = (f"{Path(a.moving).name} onto {Path(a.ref).name}: corrected by {c['shift_px']:.1f} px "
                f"({c.get('shift_map', 0):.0f} {c.get('map_units', '')}), rotation {rot:.2f} deg; "
                f"tie points by residual (px), outliers as crosses")
    w, h = (int(v) for v in a.size.lower().split("x"))
    out = render(res["OUTPUT"], res["TIEPOINTS"], title, subtitle, a.out, (w, h), float(q.get("threshold_px", 1.5)))
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
