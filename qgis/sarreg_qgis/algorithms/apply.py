"""Processing algorithm ``sarreg:apply``: ``sarreg apply REPORT MOVING OUT`` (re-apply a saved transform)."""
from __future__ import annotations

from qgis.core import (QgsProcessingOutputString, QgsProcessingParameterFile,
                       QgsProcessingParameterRasterDestination, QgsProcessingParameterRasterLayer)

from .base import SarregAlgorithm


class ApplyAlgorithm(SarregAlgorithm):
    COMMAND, NAME, DISPLAY = "apply", "apply", "Apply transform (re-apply a saved registration)"
    OPTIONS = (("update_georef", False), ("force", False), ("resampling", False), ("fmt", False),
               ("resolution", True), ("compress", True), ("warp_mem_mb", True), ("nodata", True))

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile("REPORT", "Registration report (OUT.report.json)",
                                                     fileFilter="sarreg report (*.report.json *.json)"))
        self.addParameter(QgsProcessingParameterRasterLayer("MOVING", "Raster to transform (MOVING)"))
        self.add_cli_options()
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Transformed raster (OUT)"))
        self.addOutput(QgsProcessingOutputString("STATUS", "Status of the registration applied"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        report = self.parameterAsFile(parameters, "REPORT", context)
        mov = self.raster_source(self.parameterAsRasterLayer(parameters, "MOVING", context), "Moving")
        out = self.output_raster(parameters, context)
        # a low-quality report applied with Force: the raster is written, exit 2 with status low_quality (without
        # Force the CLI refuses, status error: the algorithm fails with its line)
        res = self.run_to_inspect([report, mov, out, "--overwrite", *self.option_args(parameters, context)], feedback)
        return {"OUTPUT": (res.final or {}).get("output") or out, "STATUS": res.status}
