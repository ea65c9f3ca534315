"""Processing algorithm ``sarreg:register``: ``sarreg register REF MOVING OUT``."""
from __future__ import annotations

from pathlib import Path

from qgis.core import (QgsProcessingOutputFile, QgsProcessingOutputNumber, QgsProcessingOutputRasterLayer,
                       QgsProcessingOutputString, QgsProcessingOutputVectorLayer,
                       QgsProcessingParameterRasterDestination, QgsProcessingParameterRasterLayer)

from .base import SarregAlgorithm

# register options mirrored as parameters (click name, advanced?); also those of batch
REGISTER_OPTIONS = (
    ("features", False), ("model", False), ("threshold", False), ("max_shift", False), ("force", False),
    ("update_georef", False), ("resampling", False), ("fmt", False), ("grid_spacing", True), ("robust", True),
    ("ratio", True), ("min_inliers", True), ("max_rmse", True), ("min_coverage", True), ("band", True),
    ("moving_band", True), ("kind", True), ("nodata", True), ("moving_nodata", True), ("coarse_size", True),
    ("fine_tile", True), ("n_tiles", True), ("compress", True), ("warp_mem_mb", True), ("weights", True),
    ("device", True), ("backend", True), ("seed", True), ("resolution", True),
)


class RegisterAlgorithm(SarregAlgorithm):
    COMMAND, NAME, DISPLAY = "register", "register", "Register (co-register MOVING onto REFERENCE)"
    OPTIONS = REGISTER_OPTIONS

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("REFERENCE", "Reference raster (REF)"))
        self.addParameter(QgsProcessingParameterRasterLayer("MOVING", "Moving raster (MOVING)"))
        self.add_cli_options()
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Co-registered raster (OUT)"))
        self.addOutput(QgsProcessingOutputVectorLayer("TIEPOINTS", "Tie points"))
        self.addOutput(QgsProcessingOutputRasterLayer("OFFSETS", "Offsets field (--model local)"))
        self.addOutput(QgsProcessingOutputVectorLayer("MOVED", "Part that moved on its own (outline, for Exclude)"))
        self.addOutput(QgsProcessingOutputFile("REPORT", "Report (JSON)"))
        self.addOutput(QgsProcessingOutputString("STATUS", "Status"))
        self.addOutput(QgsProcessingOutputNumber("INLIERS", "Inliers"))
        self.addOutput(QgsProcessingOutputNumber("RMSE_PX", "Inlier RMSE (px)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        ref = self.raster_source(self.parameterAsRasterLayer(parameters, "REFERENCE", context), "Reference")
        mov = self.raster_source(self.parameterAsRasterLayer(parameters, "MOVING", context), "Moving")
        out = self.output_raster(parameters, context)
        # low quality (exit 2) is a result to inspect, not a crash: the tie points (and the outline of a part that
        # moved on its own) are loaded; the raster exists only with Force
        res = self.run_to_inspect([ref, mov, out, "--overwrite", *self.option_args(parameters, context)], feedback)
        rep = self.log_report(res, feedback) or {}
        outputs = rep.get("outputs") or {}
        q = rep.get("quality") or {}
        results = {"OUTPUT": outputs.get("raster"), "REPORT": res.final.get("report") if res.final else None,
                   "STATUS": rep.get("status", res.status), "INLIERS": q.get("inliers"), "RMSE_PX": q.get("rmse_px"),
                   "TIEPOINTS": outputs.get("tiepoints"), "OFFSETS": outputs.get("offsets"),
                   "MOVED": outputs.get("moved")}
        if not outputs.get("raster"):  # low quality without Force: no raster to load (QGIS would report it missing)
            self.drop_from_loading(context, out)
        stem = Path(out).stem
        if outputs.get("tiepoints"):
            self.load_on_completion(context, outputs["tiepoints"], f"{stem} tie points", "TIEPOINTS", "tiepoints",
                                    float(q.get("threshold_px") or 1.5))
        if outputs.get("offsets"):
            self.load_on_completion(context, outputs["offsets"], f"{stem} offsets dx (px)", "OFFSETS", "offsets",
                                    vector=False)
        if outputs.get("moved"):
            self.load_on_completion(context, outputs["moved"], f"{stem} part that moved", "MOVED")
        return results
