"""The QGIS plugin object: registers the Processing provider (in QGIS and in qgis_process)."""
from __future__ import annotations

from qgis.core import QgsApplication

from .provider import SarregProvider


class SarregPlugin:
    def __init__(self, iface=None):
        self.iface = iface
        self.provider: SarregProvider | None = None

    def initProcessing(self) -> None:  # noqa: N802
        if self.provider is None:
            self.provider = SarregProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
