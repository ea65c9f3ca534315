"""What the four algorithms share: parameters built from the CLI spec, the command line, running sarreg through
``runner.run_cli``, loading and styling output layers, and the report in the log."""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from qgis.core import (QgsProcessing, QgsProcessingAlgorithm, QgsProcessingContext, QgsProcessingException,
                       QgsProcessingParameterBoolean, QgsProcessingParameterDefinition, QgsProcessingParameterEnum,
                       QgsProcessingParameterFile, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber,
                       QgsProcessingParameterString, QgsProcessingUtils,
                       QgsProviderRegistry, QgsVectorFileWriter, QgsVectorLayer)

from .. import runner, spec
from ..styles import Styler


class SarregAlgorithm(QgsProcessingAlgorithm):
    """One ``sarreg COMMAND``. Subclasses set ``COMMAND``, ``NAME``, ``DISPLAY`` and declare their inputs; options
    mirrored from the CLI are added with ``add_option`` (type, choices, default and help from the CLI)."""

    COMMAND = ""
    NAME = ""
    DISPLAY = ""
    # (click option name, advanced?) of the CLI options offered as parameters
    OPTIONS: tuple[tuple[str, bool], ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self._options: dict[str, dict[str, Any]] = {}  # parameter name -> option spec

    def createInstance(self):  # noqa: N802
        return type(self)()

    def name(self) -> str:
        return self.NAME

    def displayName(self) -> str:  # noqa: N802
        return self.DISPLAY

    def shortHelpString(self) -> str:  # noqa: N802
        lines = [spec.command(self.COMMAND)["help"], "",
                 f"Runs <code>sarreg {self.COMMAND}</code> in its own environment (the executable is set in "
                 "Processing > Options > Providers > sarreg). Options:"]
        for name, _ in self.OPTIONS:
            p = spec.option(self.COMMAND, name)
            lines.append(f"<b>{spec.label(p)}</b> ({p['opt']}): {p.get('help') or ''}")
        return "<br>".join(lines)

    # ------------------------------------------------------------------------------------------- parameters
    def add_cli_options(self) -> None:
        for name, advanced in self.OPTIONS:
            self.add_option(name, advanced)
        if any(p["name"] == "exclude" for p in spec.command(self.COMMAND)["params"]):
            param = QgsProcessingParameterMultipleLayers(
                "EXCLUDE", "Areas not to match in (polygon layers or mask rasters)",
                layerType=QgsProcessing.TypeMapLayer, optional=True)
            param.setHelp(spec.help_text(self.COMMAND, "exclude"))
            self.addParameter(param)

    def add_option(self, name: str, advanced: bool = False) -> None:
        p = spec.option(self.COMMAND, name)
        pname = spec.param_name(p)
        label, default, t = spec.label(p), p.get("default"), p["type"]
        if t == "flag":
            param = QgsProcessingParameterBoolean(pname, label, defaultValue=bool(default))
        elif t == "choice":
            param = QgsProcessingParameterEnum(pname, label, options=p["choices"], defaultValue=default,
                                               optional=default is None, usesStaticStrings=True)
        elif t in ("int", "float"):
            kind = QgsProcessingParameterNumber.Integer if t == "int" else QgsProcessingParameterNumber.Double
            param = QgsProcessingParameterNumber(pname, label, type=kind, defaultValue=default,
                                                 optional=default is None)
            if p.get("min") is not None:  # (an open bound: the CLI refuses the bound itself, e.g. a 0 threshold)
                step = (1e-6 if t == "float" else 1) if p.get("min_open") else 0
                param.setMinimum(p["min"] + step)
            if p.get("max") is not None:
                param.setMaximum(p["max"])
        elif t == "path":
            param = QgsProcessingParameterFile(pname, label, optional=True)
        elif t == "string":
            param = QgsProcessingParameterString(pname, label, defaultValue=default, optional=True)
        else:
            raise ValueError(f"no parameter type for sarreg {self.COMMAND} option {name} ({t})")
        param.setHelp(spec.help_text(self.COMMAND, name))
        if advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(param)
        self._options[pname] = p

    def option_args(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        """Command-line arguments of the mirrored options whose values differ from the CLI's defaults."""
        args: list[str] = []
        for pname, p in self._options.items():
            if parameters.get(pname) is None:
                continue
            t = p["type"]
            if t == "flag":
                value = self.parameterAsBoolean(parameters, pname, context)
            elif t == "choice":
                value = self.parameterAsEnumString(parameters, pname, context)
            elif t == "int":
                value = self.parameterAsInt(parameters, pname, context)
            elif t == "float":
                value = self.parameterAsDouble(parameters, pname, context)
            elif t == "path":
                value = self.parameterAsFile(parameters, pname, context)
            else:
                value = self.parameterAsString(parameters, pname, context)
            args += spec.option_args(p, value)
        for layer in self.parameterAsLayerList(parameters, "EXCLUDE", context) if "EXCLUDE" in parameters else []:
            args += ["--exclude", self.exclude_file(layer, context)]
        return args

    def exclude_file(self, layer, context: QgsProcessingContext) -> str:
        """The file for ``--exclude`` of one layer. sarreg excludes every polygon layer of a vector file, so a layer
        named as one of several in its file (``x.gpkg|layername=water``), filtered (a subset string) or not a file (a
        memory layer) is written alone to a GeoPackage in Processing's temporary folder first."""
        if not isinstance(layer, QgsVectorLayer):
            return self.raster_source(layer, "Exclude")
        if layer.providerType() == "ogr" and not layer.subsetString():
            parts = QgsProviderRegistry.instance().decodeUri("ogr", layer.source())
            path = parts.get("path") or layer.source()
            if parts.get("vsiPrefix"):  # a file in a zip: /vsizip/ + the zip + /member (no |layername=...)
                path = f"{parts['vsiPrefix']}{path}{parts.get('vsiSuffix') or ''}"
            named = parts.get("layerName") or parts.get("layerId") not in (None, "")
            if not named or _layer_count(path) <= 1:  # (a file named alone: all its polygon layers, as in the CLI)
                return os.path.abspath(path) if os.path.exists(path) else path  # the CLI runs in another folder
        out = os.path.join(tempfile.mkdtemp(dir=QgsProcessingUtils.tempFolder()), f"{_safe_name(layer.name())}.gpkg")
        opts = QgsVectorFileWriter.SaveVectorOptions()
        opts.driverName, opts.layerName = "GPKG", _safe_name(layer.name())
        err = QgsVectorFileWriter.writeAsVectorFormatV2(layer, out, context.transformContext(), opts)
        if err[0] != QgsVectorFileWriter.NoError:
            raise QgsProcessingException(f"Exclude: cannot write {layer.name()} to {out}: {err[1]}")
        return out

    @staticmethod
    def layer_file(layer, what: str) -> str:
        """The file (or GDAL path) behind a vector or raster layer; every polygon layer of that file is used."""
        if layer.providerType() not in ("ogr", "gdal"):
            raise QgsProcessingException(f"{what}: {layer.name()} is not a file layer (provider "
                                         f"{layer.providerType()}); save it to a file first")
        if layer.source().startswith("/vsi"):  # a zip member, a URL: the whole GDAL path (decodeUri cuts it)
            return layer.source()
        parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
        path = parts.get("path") or layer.source()
        if layer.providerType() == "gdal" and (parts.get("layerName") or (
                not os.path.exists(path) and re.match(r"^[A-Z][A-Z0-9_]*:", layer.source()))):
            # one raster of a file holding several (GPKG:file.gpkg:table, NETCDF:"f.nc":var): sarreg opens files,
            # and the file alone is another raster (or none): a VRT of that one raster stands for it
            return _subdataset_vrt(layer.source(), layer.name(), what)
        return os.path.abspath(path) if os.path.exists(path) else path  # the CLI runs in another folder

    def raster_source(self, layer, what: str) -> str:
        """The file (or GDAL path: /vsicurl/..., /vsizip/...) behind a raster layer parameter."""
        if layer is None:
            raise QgsProcessingException(f"{what}: no raster layer")
        if layer.providerType() != "gdal":
            raise QgsProcessingException(f"{what}: {layer.name()} is not a GDAL raster (provider "
                                         f"{layer.providerType()}); sarreg reads files GDAL opens")
        return self.layer_file(layer, what)

    # ----------------------------------------------------------------------------------------------- running
    def run_sarreg(self, args: list[str], feedback, ok_codes: tuple[int, ...] = (0,)) -> runner.Result:
        from ..provider import executable_setting

        try:
            res = runner.run_cli([self.COMMAND, *args], feedback, executable=runner.find_executable(
                executable_setting()))
        except runner.SarregNotFound as e:
            raise QgsProcessingException(str(e)) from None
        if res.canceled:
            raise QgsProcessingException("Canceled: sarreg was stopped and removed its partial outputs")
        if not res.is_result(ok_codes):
            self.log_report(res, feedback)
            raise QgsProcessingException(res.message)
        return res

    @staticmethod
    def read_report(res: runner.Result) -> dict[str, Any] | None:
        path = (res.final or {}).get("report")
        if not path:
            return None
        try:
            return json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def log_report(self, res: runner.Result, feedback) -> dict[str, Any] | None:
        """The report's status and numbers in the log; -> the report (None when there is none)."""
        rep = self.read_report(res)
        if rep is None or feedback is None:
            return rep
        q, c = rep.get("quality") or {}, rep.get("correction") or {}
        feedback.pushInfo(f"sarreg report: status {rep.get('status')} ({rep.get('message')}), model "
                          f"{q.get('model', rep.get('model'))}")
        if q:
            feedback.pushInfo(f"  inliers {q.get('inliers')} of {q.get('matches')} matches, RMSE {q.get('rmse_px')} px "
                              f"(held-out {q.get('heldout_rmse_px')}), coverage {q.get('coverage')}, overlap "
                              f"{q.get('overlap_fraction')}")
        if c:
            feedback.pushInfo(f"  correction at the reference centre: dx {_f(c.get('dx_px'))} px, dy "
                              f"{_f(c.get('dy_px'))} px (shift {_f(c.get('shift_px'))} px = {_f(c.get('shift_map'))} "
                              f"{c.get('map_units', '')}), rotation {_f(c.get('rotation_deg'), 4)} deg")
        off = (rep.get("stages") or {}).get("offsets")
        if off:
            scalars = {k: v for k, v in off.items() if not isinstance(v, (list, dict))}
            feedback.pushInfo(f"  offsets field: {json.dumps(scalars)}")
        t = (rep.get("timings_s") or {}).get("total")
        feedback.pushInfo(f"  report: {res.final.get('report')}" + (f" ({t} s)" if t is not None else ""))
        return rep

    def output_raster(self, parameters, context: QgsProcessingContext) -> str:
        """The OUTPUT raster's path: checked to be a GeoTIFF name, its folder made."""
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        self.check_geotiff(out)
        self.make_folder(Path(out).parent)
        return out

    def run_to_inspect(self, args: list[str], feedback) -> runner.Result:
        """``run_sarreg`` where low quality (exit 2) is a result to inspect, reported as a warning, not a failure."""
        res = self.run_sarreg(args, feedback, ok_codes=(0, 2))
        if res.returncode == 2:
            feedback.reportError(res.message, fatalError=False)
        return res

    @staticmethod
    def make_folder(folder: str | Path, what: str = "output folder") -> None:
        """Create an output folder (and its parents); a folder that cannot be created is one error line."""
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise QgsProcessingException(f"{folder}: cannot create the {what} ({e.strerror or e})") from None

    @staticmethod
    def check_geotiff(out: str) -> None:
        """sarreg writes GeoTIFF (COG) only: another extension the output field offers would name a GeoTIFF wrongly."""
        if Path(out).suffix.lower() not in (".tif", ".tiff"):
            raise QgsProcessingException(f"{out}: sarreg writes GeoTIFF; give the output a .tif name")

    @staticmethod
    def drop_from_loading(context: QgsProcessingContext, path: str) -> None:
        """Take an output that was not written off the layers QGIS loads when the algorithm ends."""
        layers = dict(context.layersToLoadOnCompletion())
        for key in [k for k in layers if os.path.normpath(k) == os.path.normpath(path)]:
            del layers[key]
        context.setLayersToLoadOnCompletion(layers)

    @staticmethod
    def load_on_completion(context: QgsProcessingContext, path: str | Path, name: str, output: str,
                           style: str | None = None, threshold: float = 1.5, vector: bool = True) -> None:
        hint = QgsProcessingUtils.LayerHint.Vector if vector else QgsProcessingUtils.LayerHint.Raster
        details = QgsProcessingContext.LayerDetails(name, context.project(), output, hint)
        try:
            details.forceName = True  # (QGIS's default names layers after the file, cut at the first dot: "out")
        except AttributeError:
            pass
        if style:
            details.setPostProcessor(Styler.create(style, threshold))
        context.addLayerToLoadOnCompletion(str(path), details)


def _f(v: Any, nd: int = 2) -> str:
    return f"{v:.{nd}f}" if isinstance(v, (int, float)) and math.isfinite(v) else str(v)


def _safe_name(name: str) -> str:
    """A layer name as a file / table name."""
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "layer"


def _layer_count(path: str) -> int:
    """Vector layers in a file (1 when OGR cannot tell)."""
    from osgeo import ogr

    try:
        ds = ogr.Open(path)
    except RuntimeError:  # (ogr.UseExceptions() in effect)
        return 1
    return ds.GetLayerCount() if ds is not None else 1


def _subdataset_vrt(source: str, name: str, what: str) -> str:
    """A VRT (in Processing's temporary folder) of the GDAL raster ``source`` (a subdataset name)."""
    from osgeo import gdal

    out = os.path.join(tempfile.mkdtemp(dir=QgsProcessingUtils.tempFolder()), f"{_safe_name(name)}.vrt")
    try:  # (Translate, not BuildVRT: keeps GCPs and takes rasters without georeferencing)
        ds = gdal.Translate(out, source, format="VRT")
    except RuntimeError as e:  # (gdal.UseExceptions() in effect)
        raise QgsProcessingException(f"{what}: cannot read {source} ({e})") from None
    if ds is None:
        raise QgsProcessingException(f"{what}: cannot read {source} ({gdal.GetLastErrorMsg()})")
    ds = None
    return out
