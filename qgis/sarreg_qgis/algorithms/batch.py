"""Processing algorithm ``sarreg:batch``: ``sarreg batch REF SCENE... -o DIR`` (a time series on Dask)."""
from __future__ import annotations

import json
from pathlib import Path

from qgis.core import (QgsProcessing, QgsProcessingOutputFile, QgsProcessingOutputMultipleLayers,
                       QgsProcessingOutputVectorLayer, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterRasterLayer)

from .base import SarregAlgorithm
from .register import REGISTER_OPTIONS


class BatchAlgorithm(SarregAlgorithm):
    COMMAND, NAME, DISPLAY = "batch", "batch", "Batch register (time series onto one reference)"
    OPTIONS = (("chain", False), ("resume", False), ("workers", True), ("threads_per_worker", True),
               ("scheduler", True), ("reference_cache", True), *REGISTER_OPTIONS)

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("REFERENCE", "Reference raster (REF)"))
        self.addParameter(QgsProcessingParameterMultipleLayers("SCENES", "Scenes (SCENE...)",
                                                               QgsProcessing.TypeRaster))
        self.add_cli_options()
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_DIR", "Output folder (-o)"))
        self.addOutput(QgsProcessingOutputFile("SUMMARY", "Summary (CSV)"))
        self.addOutput(QgsProcessingOutputVectorLayer("TIEPOINTS", "Tie points of all scenes"))
        self.addOutput(QgsProcessingOutputMultipleLayers("REGISTERED", "Co-registered scenes"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        ref = self.raster_source(self.parameterAsRasterLayer(parameters, "REFERENCE", context), "Reference")
        scenes = [self.raster_source(lyr, "Scene") for lyr in self.parameterAsLayerList(parameters, "SCENES", context)]
        outdir = self.parameterAsString(parameters, "OUTPUT_DIR", context)
        args = [ref, *scenes, "-o", outdir, *self.option_args(parameters, context)]
        # 2 / 3: some scenes low quality / failed; the others are done and their outputs are returned
        res = self.run_sarreg(args, feedback, ok_codes=(0, 2, 3))
        final = res.final or {}
        files = final.get("outputs") or {}
        if res.returncode:
            feedback.reportError(f"sarreg batch: {final.get('counts')}: some scenes are not ok (see the summary)",
                                 False)
        summary = {}
        if final.get("summary"):
            try:
                summary = json.loads(Path(final["summary"]).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                summary = {}
        rasters = []
        for sc in summary.get("scenes", []):
            feedback.pushInfo(f"{sc.get('scene')}: {sc.get('status')}, shift {sc.get('shift_x_px')}, "
                              f"{sc.get('shift_y_px')} px, RMSE {sc.get('rmse_px')} px, {sc.get('inliers')} inliers"
                              + (f" ({sc['error']})" if sc.get("error") else ""))
            for name in sc.get("outputs") or {}:
                if name.endswith("_reg.tif") and (Path(outdir) / name).is_file():
                    rasters.append(str(Path(outdir) / name))
                    self.load_on_completion(context, rasters[-1], Path(name).stem, "REGISTERED", vector=False)
        threshold = (self.parameterAsDouble(parameters, "THRESHOLD", context) if parameters.get("THRESHOLD") is not None
                     else float(self._options["THRESHOLD"]["default"]))
        if files.get("tiepoints"):
            self.load_on_completion(context, files["tiepoints"], "batch tie points", "TIEPOINTS", "tiepoints",
                                    threshold)
        return {"OUTPUT_DIR": outdir, "SUMMARY": files.get("csv"), "TIEPOINTS": files.get("tiepoints"),
                "REGISTERED": rasters}
