"""Checks run inside QGIS's own Python (``/usr/bin/python3`` with python3-qgis), started by ``tests/test_qgis.py``;
not a pytest module (sarreg's venv has no qgis, QGIS's Python has no sarreg).

    python3 tests/qgis_checks.py JSON   (keys: ref, moving, work, raster, report, tiepoints, offsets)

Prints one JSON object: what the test asserts on.
1. the runner with a ``QgsProcessingFeedback`` canceled at the first progress line: SIGTERM, nothing left;
2. the Register algorithm through ``processing.run`` with such a feedback: a failed algorithm, nothing left;
3. the styles on a real tie point layer and offsets raster (every feature drawn by the rule of its class);
4. Apply transform and Extract keypoints through ``processing.run`` (the keypoint layer queued for loading with
   its styling post-processor);
5. the screenshot renderer (``qgis/make_screenshot.render``) on them.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(REPO / "qgis"))


def main() -> None:
    args = json.loads(sys.argv[1])
    import make_screenshot
    from qgis.core import (QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback, QgsRasterLayer,
                           QgsRenderContext, QgsVectorLayer)

    app, _provider = make_screenshot.start_qgis()
    import processing
    from sarreg_qgis import runner
    from sarreg_qgis.styles import style_offsets, style_tiepoints

    class CancelAtFirstStage(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.texts: list[str] = []
            self.infos: list[str] = []

        def setProgressText(self, text):  # noqa: N802
            self.texts.append(text)
            self.cancel()

        def pushInfo(self, info):  # noqa: N802
            self.infos.append(info)

    out: dict = {}
    work = Path(args["work"])
    ref, mov = args["ref"], args["moving"]

    # 1. the runner, canceled as soon as the first stage is reported
    d = work / "cancel_runner"
    d.mkdir()
    fb = CancelAtFirstStage()
    t0 = time.monotonic()
    res = runner.run_cli(["register", "--features", "sift", ref, mov, str(d / "o.tif")], fb)
    out["runner"] = {"canceled": res.canceled, "returncode": res.returncode, "final": res.final,
                     "stderr": res.stderr, "files": sorted(os.listdir(d)), "texts": fb.texts,
                     "is_canceled": fb.isCanceled(), "seconds": round(time.monotonic() - t0, 2)}

    # 2. the algorithm through processing.run
    d = work / "cancel_alg"
    d.mkdir()
    fb = CancelAtFirstStage()
    try:
        processing.run("sarreg:register", {"REFERENCE": ref, "MOVING": mov, "FEATURES": "sift",
                                           "OUTPUT": str(d / "o.tif")}, feedback=fb)
        out["alg"] = {"raised": None}
    except QgsProcessingException as e:
        out["alg"] = {"raised": str(e)}
    out["alg"].update(files=sorted(os.listdir(d)), infos=fb.infos, texts=fb.texts)

    # 3. styles
    lyr = QgsVectorLayer(args["tiepoints"], "tie points", "ogr")
    style_tiepoints(lyr, 1.5)
    r = lyr.renderer()
    ctx = QgsRenderContext()
    r.startRender(ctx, lyr.fields())
    drawn = []
    for f in lyr.getFeatures():  # the rules with a symbol that draw the feature (not the "inliers" group)
        rules = [r.rootRule().findRuleByKey(k) for k in r.legendKeysForFeature(f, ctx)]
        drawn.append({"inlier": f["inlier"], "residual": f["residual_px"],
                      "classes": [rule.label() for rule in rules if rule is not None and rule.symbol() is not None]})
    r.stopRender(ctx)
    labels = {item.ruleKey(): item.label() for item in r.legendSymbolItems()}
    out["tiepoints"] = {"renderer": r.type(), "fields": lyr.fields().names(), "features": drawn,
                        "legend": list(labels.values())}
    ras = QgsRasterLayer(args["offsets"], "offsets")
    style_offsets(ras)
    out["offsets"] = {"valid": ras.isValid(), "bands": ras.bandCount(), "renderer": ras.renderer().type()}

    # 4. apply and extract through processing.run; extract's keypoint layer is queued for loading with its styler
    d = work / "apply"
    res = processing.run("sarreg:apply", {"REPORT": args["report"], "MOVING": mov, "RESAMPLING": "cubic",
                                          "OUTPUT": str(d / "a.tif")}, feedback=QgsProcessingFeedback())
    out["apply"] = {"output": res["OUTPUT"], "exists": Path(res["OUTPUT"]).is_file()}
    context = QgsProcessingContext()
    res = processing.run("sarreg:extract", {"IMAGES": [ref], "TOP_K": 200, "BACKEND": "torch",  # no OpenVINO cache
                                            "OUTPUT_DIR": str(work / "kp")},
                         context=context, feedback=QgsProcessingFeedback())
    queued = context.layersToLoadOnCompletion()
    kp = res["KEYPOINTS"]
    out["extract"] = {"keypoints": kp, "queued": sorted(queued)}
    if kp and kp[0] in queued:
        lyr = QgsVectorLayer(kp[0], "kp", "ogr")
        queued[kp[0]].postProcessor().postProcessLayer(lyr, context, QgsProcessingFeedback())
        out["extract"].update(features=lyr.featureCount(), renderer=lyr.renderer().type(),
                              classes=len(lyr.renderer().ranges()))

    # 5. the screenshot renderer
    png = make_screenshot.render(args["raster"], args["tiepoints"], "test", "subtitle", work / "shot.png",
                                 (400, 300))
    out["png"] = {"path": str(png), "bytes": png.stat().st_size}
    print("RESULT " + json.dumps(out, default=str))
    app.exitQgis()


if __name__ == "__main__":
    main()
