"""Styles of the layers the algorithms return (tie points, keypoints, offsets field), and the Processing
post-processors that apply them when the layers are loaded into the project.

Tie points (``OUT.tiepoints.gpkg``, ``tiepoints.gpkg`` of a batch): fields ``residual_px`` (-1 when unknown),
``score``, ``inlier`` (1/0), the reference / moving coordinates; inliers graduated by residual in classes relative
to the inlier threshold, outliers as grey crosses. Keypoints (``.keypoints.gpkg``): graduated by ``score``.
Offsets (``OUT.offsets.tif``, bands dx_px, dy_px, quality): dx on a diverging ramp centred on 0.
"""
from __future__ import annotations

import math

from qgis.core import (QgsClassificationQuantile, QgsColorRampShader, QgsGradientColorRamp, QgsGraduatedSymbolRenderer,
                       QgsMarkerSymbol, QgsProcessingLayerPostProcessorInterface, QgsRasterBandStats,
                       QgsRasterShader, QgsRuleBasedRenderer, QgsSingleBandPseudoColorRenderer)
from qgis.PyQt.QtGui import QColor

# (upper bound as a fraction of the threshold, colour): green -> red
RESIDUAL_CLASSES = ((0.25, "#1a9641"), (0.5, "#a6d96a"), (1.0, "#fdae61"), (math.inf, "#d7191c"))


def _marker(color: str, size: float = 2.4, name: str = "circle", outline: str = "#222222") -> QgsMarkerSymbol:
    return QgsMarkerSymbol.createSimple({"name": name, "color": color, "size": str(size), "outline_color": outline,
                                         "outline_width": "0.15"})


def tiepoint_renderer(threshold: float = 1.5) -> QgsRuleBasedRenderer:
    """Rule-based: outliers (grey crosses), then inliers graduated by ``residual_px`` (bounds relative to the
    inlier ``threshold`` in px), and points without a residual."""
    root = QgsRuleBasedRenderer.Rule(None)
    out = QgsRuleBasedRenderer.Rule(_marker("#8c8c8c", 2.0, "cross2", "#8c8c8c"), filterExp='"inlier" = 0',
                                    label="outliers")
    root.appendChild(out)
    inl = QgsRuleBasedRenderer.Rule(None, filterExp='"inlier" = 1', label="inliers: residual (px)")
    lo = 0.0
    for frac, color in RESIDUAL_CLASSES:
        hi = frac * threshold
        if math.isinf(hi):
            exp, lab = f'"residual_px" >= {lo:.6g}', f"> {lo:.2f}"
        else:
            exp, lab = f'"residual_px" >= {lo:.6g} AND "residual_px" < {hi:.6g}', f"{lo:.2f} - {hi:.2f}"
        inl.appendChild(QgsRuleBasedRenderer.Rule(_marker(color), filterExp=exp, label=lab))
        lo = hi
    inl.appendChild(QgsRuleBasedRenderer.Rule(_marker("#ffffff"), filterExp='"residual_px" < 0', label="unknown"))
    root.appendChild(inl)
    return QgsRuleBasedRenderer(root)


def style_tiepoints(layer, threshold: float = 1.5) -> None:
    layer.setRenderer(tiepoint_renderer(threshold))
    layer.triggerRepaint()


def style_keypoints(layer, classes: int = 5) -> None:
    """Graduated by detection score (quantiles, dark -> bright)."""
    r = QgsGraduatedSymbolRenderer("score")
    r.setSourceSymbol(_marker("#ffffff", 1.6, outline="#00000000"))
    r.setSourceColorRamp(QgsGradientColorRamp(QColor("#3b0f70"), QColor("#fcfdbf")))
    r.setClassificationMethod(QgsClassificationQuantile())
    r.updateClasses(layer, classes)
    layer.setRenderer(r)
    layer.triggerRepaint()


def style_offsets(layer) -> None:
    """Band 1 (dx, reference px) on a blue-white-red ramp symmetric about 0 (bound: the larger |dx|, |dy|)."""
    prov = layer.dataProvider()
    bound = 0.0
    for band in (1, 2):
        st = prov.bandStatistics(band, QgsRasterBandStats.Min | QgsRasterBandStats.Max)
        for v in (st.minimumValue, st.maximumValue):
            if math.isfinite(v):
                bound = max(bound, abs(v))
    bound = bound or 1.0
    fcn = QgsColorRampShader(-bound, bound)
    fcn.setColorRampType(QgsColorRampShader.Interpolated)
    fcn.setColorRampItemList([QgsColorRampShader.ColorRampItem(-bound, QColor("#2166ac"), f"{-bound:.2f} px"),
                              QgsColorRampShader.ColorRampItem(0.0, QColor("#f7f7f7"), "0"),
                              QgsColorRampShader.ColorRampItem(bound, QColor("#b2182b"), f"{bound:.2f} px")])
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(fcn)
    layer.setRenderer(QgsSingleBandPseudoColorRenderer(prov, 1, shader))
    layer.triggerRepaint()


class Styler(QgsProcessingLayerPostProcessorInterface):
    """Applies one of the styles above to a layer loaded on completion of an algorithm.

    Processing keeps only a plain pointer to a post-processor: instances are kept alive in ``_alive``."""

    _alive: list["Styler"] = []

    def __init__(self, kind: str, threshold: float = 1.5):
        super().__init__()
        self.kind, self.threshold = kind, threshold

    @classmethod
    def create(cls, kind: str, threshold: float = 1.5) -> "Styler":
        s = cls(kind, threshold)
        cls._alive.append(s)
        del cls._alive[:-64]
        return s

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (Qt naming)
        if self.kind == "tiepoints":
            style_tiepoints(layer, self.threshold)
        elif self.kind == "keypoints":
            style_keypoints(layer)
        elif self.kind == "offsets":
            style_offsets(layer)
