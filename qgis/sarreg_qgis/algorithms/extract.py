"""Processing algorithm ``sarreg:extract``: ``sarreg extract IMAGE... -o DIR --geo`` (keypoints)."""
from __future__ import annotations

from pathlib import Path

from qgis.core import (QgsProcessing, QgsProcessingOutputMultipleLayers, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterMultipleLayers)

from .base import SarregAlgorithm


class ExtractAlgorithm(SarregAlgorithm):
    COMMAND, NAME, DISPLAY = "extract", "extract", "Extract keypoints"
    OPTIONS = (("top_k", False), ("band", False), ("kind", True), ("nodata", True), ("despeckle", True),
               ("tile_size", True), ("min_scale", True), ("max_scale", True), ("weights", True), ("device", True),
               ("backend", True), ("precision", True))

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers("IMAGES", "Rasters (IMAGE...)",
                                                               QgsProcessing.TypeRaster))
        self.add_cli_options()
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_DIR", "Output folder (-o)"))
        self.addOutput(QgsProcessingOutputMultipleLayers("KEYPOINTS", "Keypoint layers"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        layers = self.parameterAsLayerList(parameters, "IMAGES", context)
        if not layers:
            from qgis.core import QgsProcessingException

            raise QgsProcessingException("no raster given")
        images = [self.raster_source(lyr, "Raster") for lyr in layers]
        outdir = self.parameterAsString(parameters, "OUTPUT_DIR", context)
        self.make_folder(outdir)
        geo = all(lyr.crs().isValid() for lyr in layers)  # --geo needs georeferenced rasters
        args = [*images, "-o", outdir, "--overwrite", *(["--geo"] if geo else []),
                *self.option_args(parameters, context)]
        res = self.run_sarreg(args, feedback)
        gpkgs = [p for p in (res.final or {}).get("outputs", []) if p.endswith(".keypoints.gpkg")]
        for p in gpkgs:
            self.load_on_completion(context, p, Path(p).name.replace(".keypoints.gpkg", " keypoints"), "KEYPOINTS",
                                    "keypoints")
        if not geo:
            feedback.pushInfo("rasters without georeference: keypoints written as .r2d2 files only (no layer)")
        return {"OUTPUT_DIR": outdir, "KEYPOINTS": gpkgs}
