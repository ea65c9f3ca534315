"""The QGIS plugin (``qgis/sarreg_qgis``): its CLI spec in sync with click, its subprocess runner, and — with a real
QGIS (Debian's ``qgis`` / ``python3-qgis``; skipped when absent) — the ``sarreg`` Processing provider through
``qgis_process`` (listing, a registration, a bad input) and, inside QGIS's own Python (``tests/qgis_checks.py``),
Cancel, the layer styles and the screenshot renderer.

QGIS runs with a temporary HOME (its profile, where ``qgis_process plugins enable`` writes) and
QT_QPA_PLATFORM=offscreen; the plugin finds the checkout's sarreg through SARREG_EXECUTABLE (a wrapper running
this interpreter with the checkout on PYTHONPATH).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from sarreg.synth import reflectivity, speckle, warp_image, write_geotiff

REPO = Path(__file__).resolve().parents[1]
QGIS_DIR = REPO / "qgis"
N = 320
T = Affine(10.0, 0, 500000.0, 0, -10.0, 5000000.0)
UTM = "EPSG:32631"
QGIS_PYTHON = "/usr/bin/python3"

sys.path.insert(0, str(QGIS_DIR))  # sarreg_qgis.spec / .runner are plain Python (no qgis import)
from sarreg_qgis import runner, spec  # noqa: E402


def _qgis_process() -> str | None:
    """qgis_process; Debian's /usr/bin/qgis_process wrapper passes --noversioncheck from /etc/default/qgis, which
    qgis_process 3.22 refuses, so its qgis_process.bin is preferred."""
    for name in ("qgis_process.bin", "qgis_process"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _has_qgis_python() -> bool:
    if not os.access(QGIS_PYTHON, os.X_OK):
        return False
    return subprocess.run([QGIS_PYTHON, "-c", "import qgis.core"], capture_output=True,
                          env={"PATH": os.environ.get("PATH", ""), "QT_QPA_PLATFORM": "offscreen"}).returncode == 0


# ------------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> dict[str, Path]:
    """ref / moving (shift 5.5, -3.25 px, 1 degree), plus a raster far away (no overlap)."""
    d = tmp_path_factory.mktemp("qgis_pair")
    rng = np.random.default_rng(3)
    pad = 48
    field = reflectivity(N + 2 * pad, N + 2 * pad, seed=11)
    a, c = np.radians(1.0), N / 2
    m = np.array([[np.cos(a), -np.sin(a), c - np.cos(a) * c + np.sin(a) * c + 5.5 + pad],
                  [np.sin(a), np.cos(a), c - np.sin(a) * c - np.cos(a) * c - 3.25 + pad], [0, 0, 1]])
    ref = speckle(field, 4.0, rng)[pad:pad + N, pad:pad + N]
    mov = np.nan_to_num(warp_image(speckle(field, 4.0, rng), m, (N, N)), nan=0.0)
    return {"ref": write_geotiff(d / "ref.tif", ref, T, UTM),
            "moving": write_geotiff(d / "moving.tif", mov, T, UTM, nodata=0.0),
            "far": write_geotiff(d / "far.tif", ref[:128, :128], Affine(10.0, 0, 700000.0, 0, -10.0, 5000000.0), UTM),
            "corner": _corner_polygon(d / "corner.geojson")}


def _corner_polygon(path: Path) -> Path:
    """A GeoJSON polygon over the reference's top-left 64 x 64 px (an area --exclude keeps out of matching)."""
    import pyogrio
    import shapely

    x0, y0 = T.c, T.f
    poly = shapely.box(x0, y0 - 64 * T.a, x0 + 64 * T.a, y0)
    pyogrio.raw.write(path, geometry=shapely.to_wkb(np.asarray([poly], dtype=object)), field_data=[], fields=[],
                      crs=UTM, driver="GeoJSON", geometry_type="Polygon")
    return path


@pytest.fixture(scope="module")
def sarreg_cmd(tmp_path_factory) -> str:
    """An executable running this checkout's CLI with this interpreter (what SARREG_EXECUTABLE names)."""
    p = tmp_path_factory.mktemp("bin") / "sarreg"
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    p.write_text(f'#!/bin/sh\nPYTHONPATH="{pythonpath}" exec "{sys.executable}" -m sarreg.cli "$@"\n')
    p.chmod(0o755)
    return str(p)


@pytest.fixture(scope="module")
def qgis_env(tmp_path_factory, sarreg_cmd) -> dict[str, str]:
    """Environment of QGIS: a temporary HOME / profile, offscreen Qt, the plugin folder, our sarreg."""
    if _qgis_process() is None:
        pytest.skip("QGIS is not installed (no qgis_process); make install installs it as root with apt")
    home = tmp_path_factory.mktemp("qgis_home")
    run = home / "run"
    run.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HOME=str(home), XDG_RUNTIME_DIR=str(run), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local/share"), XDG_CACHE_HOME=str(home / ".cache"),
               QT_QPA_PLATFORM="offscreen", QGIS_PLUGINPATH=str(QGIS_DIR), SARREG_EXECUTABLE=sarreg_cmd)
    r = subprocess.run([_qgis_process(), "plugins", "enable", "sarreg_qgis"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return env


def qgis_process(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([_qgis_process(), *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def registered(qgis_env, pair, tmp_path_factory) -> dict:
    """``qgis_process run sarreg:register`` with --model local (so the offsets field comes back too)."""
    d = tmp_path_factory.mktemp("qgis_out")
    r = qgis_process(qgis_env, "--json", "run", "sarreg:register", "--", f"REFERENCE={pair['ref']}",
                     f"MOVING={pair['moving']}", "FEATURES=sift", "MODEL=local", f"EXCLUDE={pair['corner']}",
                     f"OUTPUT={d / 'out.tif'}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return {"dir": d, **json.loads(r.stdout)}


# ------------------------------------------------------------------------------------------ without QGIS
def test_cli_spec_is_in_sync_with_click():
    """cli_spec.json is what qgis/make_spec.py generates from the click commands now (`make qgis-plugin`)."""
    s = importlib.util.spec_from_file_location("make_spec", QGIS_DIR / "make_spec.py")
    make_spec = importlib.util.module_from_spec(s)
    s.loader.exec_module(make_spec)
    text = make_spec.render(make_spec.build_spec())
    assert spec.SPEC_PATH.read_text(encoding="utf-8") == text, "run: python qgis/make_spec.py"
    assert set(json.loads(text)["commands"]) == {"register", "apply", "batch", "extract"}


def _build_zip(out: Path) -> Path:
    s = importlib.util.spec_from_file_location("build_plugin", QGIS_DIR / "build_plugin.py")
    mod = importlib.util.module_from_spec(s)
    s.loader.exec_module(mod)
    return mod.build_zip(out)


def test_plugin_zip_layout(tmp_path):
    """`make qgis-plugin`'s zip: one root folder sarreg_qgis/ with every plugin file, no caches."""
    import zipfile

    (QGIS_DIR / "sarreg_qgis" / "__pycache__").mkdir(exist_ok=True)  # present after any import: never zipped
    with zipfile.ZipFile(_build_zip(tmp_path / "sarreg_qgis.zip")) as z:
        names = set(z.namelist())
    expected = {f"sarreg_qgis/{p.relative_to(QGIS_DIR / 'sarreg_qgis').as_posix()}"
                for p in (QGIS_DIR / "sarreg_qgis").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert names == expected
    assert {"sarreg_qgis/metadata.txt", "sarreg_qgis/__init__.py", "sarreg_qgis/cli_spec.json",
            "sarreg_qgis/algorithms/register.py"} <= names


def test_plugin_metadata():
    import configparser

    import sarreg

    meta = configparser.ConfigParser()
    meta.read(QGIS_DIR / "sarreg_qgis" / "metadata.txt", encoding="utf-8")
    g = meta["general"]
    assert g["name"] == "sarreg" and g["hasProcessingProvider"] == "yes" and g["version"] == sarreg.__version__
    assert tuple(map(int, g["qgisMinimumVersion"].split("."))) >= (3, 22)


def test_spec_option_args():
    p = spec.option("register", "threshold")
    assert p["default"] == 1.5 and p["help"] and spec.param_name(p) == "THRESHOLD"
    assert spec.option_args(p, 1.5) == [] and spec.option_args(p, 2.25) == ["--threshold", "2.25"]
    assert spec.option_args(spec.option("register", "max_shift"), None) == []
    assert spec.option_args(spec.option("register", "force"), True) == ["--force"]
    assert spec.option_args(spec.option("batch", "resume"), False) == ["--no-resume"]
    assert spec.option_args(spec.option("register", "model"), "local") == ["--model", "local"]
    assert spec.param_name(spec.option("register", "fmt")) == "FORMAT"
    nodata = spec.option("register", "nodata")  # free text (a number, nan, none), checked by the CLI
    assert nodata["type"] == "string" and spec.param_name(nodata) == "NODATA"
    assert spec.option_args(nodata, "") == [] and spec.option_args(nodata, "-9999") == ["--nodata", "-9999"]
    with pytest.raises(KeyError):
        spec.option("register", "nonsense")


class FakeFeedback:
    """The QgsProcessingFeedback methods the runner calls, recorded (cancel at a chosen stage text)."""

    def __init__(self, cancel_at: str | None = None):
        self.cancel_at, self.canceled = cancel_at, False
        self.progress: list[float] = []
        self.texts: list[str] = []
        self.info: list[str] = []

    def isCanceled(self):  # noqa: N802
        return self.canceled

    def setProgress(self, p):  # noqa: N802
        self.progress.append(p)

    def setProgressText(self, t):  # noqa: N802
        self.texts.append(t)
        if self.cancel_at and self.cancel_at in t:
            self.canceled = True

    def pushInfo(self, t):  # noqa: N802
        self.info.append(t)


def test_runner_streams_progress_and_result(pair, sarreg_cmd, tmp_path):
    fb = FakeFeedback()
    res = runner.run_cli(["register", "--features", "sift", pair["ref"], pair["moving"], tmp_path / "o.tif"], fb,
                         executable=sarreg_cmd)
    assert res.returncode == 0 and res.status == "ok" and not res.canceled, res.stderr
    assert res.final["report"] == str(tmp_path / "o.report.json")
    assert fb.progress[0] == 0 and fb.progress == sorted(fb.progress) and len(fb.progress) >= 6
    assert fb.texts[0] == "sarreg: relating the scenes"
    assert any(line.startswith("ok: ") for line in res.stdout) and res.stderr == []
    assert fb.info[0].startswith(sarreg_cmd)  # the command line is logged (pushCommandInfo -> pushInfo)


def test_runner_error_is_the_cli_line(pair, sarreg_cmd, tmp_path):
    res = runner.run_cli(["register", "--features", "sift", pair["ref"], pair["far"], tmp_path / "o.tif"],
                         FakeFeedback(), executable=sarreg_cmd)
    assert res.returncode == 1 and res.status == "error"
    assert res.message.startswith("sarreg: error: ") and "does not overlap" in res.message
    assert os.listdir(tmp_path) == []


def test_runner_tells_a_usage_error_from_a_low_quality_result(pair, sarreg_cmd, tmp_path, monkeypatch):
    """Exit 2 is a low-quality verdict only with that final status: a refused option (click's exit 2) is an error
    the algorithm must raise (it succeeded with a warning); QGIS's PYTHONPATH never reaches the venv's sarreg."""
    res = runner.run_cli(["register", "--features", "sift", "--threshold", "0", pair["ref"], pair["moving"],
                          tmp_path / "o.tif"], FakeFeedback(), executable=sarreg_cmd)
    assert res.returncode == 2 and res.status == "error" and not res.is_result((0, 2))
    assert "threshold" in res.message, res.message
    low = runner.run_cli(["register", "--features", "sift", "--max-shift", "0.5", "--moving-nodata", "0",
                          pair["ref"], pair["moving"], tmp_path / "l.tif"], FakeFeedback(), executable=sarreg_cmd)
    assert low.returncode == 2 and low.status == "low_quality" and low.is_result((0, 2))
    monkeypatch.setenv("PYTHONPATH", "/usr/share/qgis/python")
    assert "PYTHONPATH" not in runner.child_env() and runner.child_env()["SARREG_PROGRESS_JSON"] == "1"


def test_runner_cancel_terminates_and_leaves_nothing(pair, sarreg_cmd, tmp_path):
    fb = FakeFeedback(cancel_at="relating")
    res = runner.run_cli(["register", "--features", "sift", pair["ref"], pair["moving"], tmp_path / "o.tif"], fb,
                         executable=sarreg_cmd)
    assert res.canceled and res.status == "canceled"
    assert res.returncode == 128 + signal.SIGTERM, res.stderr
    assert res.final == {"status": "interrupted", "exit_code": 143, "signal": "SIGTERM"}
    assert os.listdir(tmp_path) == []


def test_runner_finds_no_executable(monkeypatch, tmp_path):
    monkeypatch.setenv(runner.ENV_EXECUTABLE, str(tmp_path / "nope"))
    with pytest.raises(runner.SarregNotFound, match="SARREG_EXECUTABLE"):
        runner.find_executable()
    monkeypatch.delenv(runner.ENV_EXECUTABLE)
    assert runner.find_executable(sys.executable) == sys.executable  # the setting wins


# --------------------------------------------------------------------------------------------- with QGIS
def test_qgis_process_lists_the_provider(qgis_env):
    r = qgis_process(qgis_env, "list")
    assert r.returncode == 0, r.stderr
    for alg in ("sarreg:register", "sarreg:apply", "sarreg:batch", "sarreg:extract"):
        assert alg in r.stdout, r.stdout[-2000:]
    h = qgis_process(qgis_env, "help", "sarreg:register")
    assert "Inlier distance (reference pixels; " in h.stdout  # the CLI's help
    assert "decimated grid). (sarreg register --threshold)" in h.stdout


def test_qgis_process_loads_the_installed_zip(qgis_env, tmp_path):
    """The zip unpacked into a plugins folder (what Install from ZIP does) gives the provider."""
    import zipfile

    with zipfile.ZipFile(_build_zip(tmp_path / "sarreg_qgis.zip")) as z:
        z.extractall(tmp_path / "plugins")
    r = qgis_process({**qgis_env, "QGIS_PLUGINPATH": str(tmp_path / "plugins")}, "list")
    assert r.returncode == 0 and "sarreg:extract" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]


def test_qgis_process_register(registered, pair):
    res = registered["results"]
    out = Path(res["OUTPUT"])
    assert out == registered["dir"] / "out.tif" and res["STATUS"] == "ok" and res["INLIERS"] > 50
    with rasterio.open(out) as o, rasterio.open(pair["ref"]) as r:  # on the reference grid
        assert o.crs == r.crs and o.transform == r.transform and (o.width, o.height) == (r.width, r.height)
    import pyogrio

    info = pyogrio.read_info(res["TIEPOINTS"])
    assert info["features"] > 50 and {"residual_px", "inlier", "score"} <= set(info["fields"])
    with rasterio.open(res["OFFSETS"]) as off:
        assert off.count == 3
    rep = json.loads(Path(res["REPORT"]).read_text())
    assert rep["options"]["preprocess"]["exclude"] == [str(pair["corner"])]  # EXCLUDE -> --exclude
    assert 0.03 < rep["stages"]["relate"]["excluded"]["reference"] < 0.05
    log = "\n".join(registered["log"]["info"])
    assert "sarreg report: status ok" in log and "inliers" in log and "offsets field" in log


def test_qgis_process_low_quality_is_a_result_to_inspect(qgis_env, pair, tmp_path):
    """Exit 2 (low quality) is not a crash in QGIS: the status, the tie points and the reason come back, no raster."""
    r = qgis_process(qgis_env, "--json", "run", "sarreg:register", "--", f"REFERENCE={pair['ref']}",
                     f"MOVING={pair['moving']}", "FEATURES=sift", "MAX_SHIFT=0.5", "MOVING_NODATA=0",
                     f"OUTPUT={tmp_path / 'out.tif'}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(r.stdout)["results"]
    assert res["STATUS"] == "low_quality" and res["OUTPUT"] is None and not (tmp_path / "out.tif").exists()
    assert Path(res["TIEPOINTS"]).exists() and Path(res["REPORT"]).exists()
    rep = json.loads(Path(res["REPORT"]).read_text())
    assert "exceeds --max-shift" in rep["message"]
    assert rep["options"]["moving_nodata"] == 0.0 and rep["stages"]["relate"]["nodata"]["moving"]["from"] == "option"


def test_qgis_process_bad_input_fails_with_the_cli_error(qgis_env, pair, tmp_path):
    r = qgis_process(qgis_env, "run", "sarreg:register", "--", f"REFERENCE={pair['ref']}", f"MOVING={pair['far']}",
                     "FEATURES=sift", f"OUTPUT={tmp_path / 'out.tif'}")
    assert r.returncode != 0
    assert f"sarreg: error: {pair['far']}: does not overlap" in r.stderr, r.stderr[-2000:]
    assert os.listdir(tmp_path) == []
    # a value the CLI refuses (click's exit 2, like low quality's): the algorithm fails with the CLI's line
    r = qgis_process(qgis_env, "run", "sarreg:register", "--", f"REFERENCE={pair['ref']}", f"MOVING={pair['moving']}",
                     "FEATURES=sift", "NODATA=abc", f"OUTPUT={tmp_path / 'out.tif'}")
    assert r.returncode != 0 and "sarreg: error:" in r.stderr and "nodata" in r.stderr.lower(), r.stderr[-2000:]
    assert os.listdir(tmp_path) == []


def test_inside_qgis_python_cancel_styles_render(qgis_env, registered, pair, tmp_path):
    """In QGIS's Python: a canceled QgsProcessingFeedback stops sarreg (runner and algorithm) and leaves no output;
    the tie point rules draw every feature in the class of its residual; Apply and Extract run, the keypoints come
    back styled; the screenshot renderer works."""
    if not _has_qgis_python():
        pytest.skip(f"{QGIS_PYTHON} cannot import qgis.core (python3-qgis)")
    res = registered["results"]
    args = {"ref": str(pair["ref"]), "moving": str(pair["moving"]), "work": str(tmp_path),
            "tiepoints": res["TIEPOINTS"], "offsets": res["OFFSETS"], "raster": res["OUTPUT"],
            "report": res["REPORT"]}
    r = subprocess.run([QGIS_PYTHON, str(REPO / "tests" / "qgis_checks.py"), json.dumps(args)], env=qgis_env,
                       capture_output=True, text=True, timeout=300)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])

    run = out["runner"]
    assert run["canceled"] and run["is_canceled"] and run["returncode"] == 143, run
    assert run["final"]["status"] == "interrupted" and run["files"] == [] and run["texts"][0].startswith("sarreg: ")
    alg = out["alg"]
    assert alg["raised"] is not None and alg["files"] == [], alg
    assert any("Canceled" in i for i in alg["infos"]), alg

    tp = out["tiepoints"]
    assert tp["renderer"] == "RuleRenderer" and "outliers" in tp["legend"]
    assert tp["features"] and all(len(f["classes"]) == 1 for f in tp["features"]), tp["features"][:5]
    for f in tp["features"]:
        if f["inlier"] == 0:
            assert f["classes"] == ["outliers"]
        else:
            lo, _, hi = f["classes"][0].partition(" - ")
            assert float(lo) <= f["residual"] + 0.005 and (not hi or f["residual"] < float(hi) + 0.005), f
    assert out["offsets"] == {"valid": True, "bands": 3, "renderer": "singlebandpseudocolor"}
    assert out["apply"]["exists"] and out["apply"]["output"] == str(tmp_path / "apply" / "a.tif")
    ex = out["extract"]
    assert ex["keypoints"] == [str(tmp_path / "kp" / "ref.tif.keypoints.gpkg")] and ex["queued"] == ex["keypoints"]
    assert ex["features"] == 200 and ex["renderer"] == "graduatedSymbol" and ex["classes"] == 5, ex
    assert out["png"]["bytes"] > 1000


def test_inside_qgis_layers_that_are_part_of_a_file(qgis_env, pair, tmp_path):
    """A raster layer that is one table of a GeoPackage (GPKG:file:table) registers that table (it was the whole
    file: "zero-size raster (0 bands)"); an Exclude layer that is one of two in its GeoPackage excludes its own
    polygons only (both layers were excluded: 0.36 of the scene instead of 0.04); one in a zip named with
    |layername= is read (the name with that suffix was "unreadable exclusion file")."""
    import pyogrio
    import shapely
    from osgeo import gdal

    gpkg = tmp_path / "two.gpkg"
    for table, src in (("far", pair["far"]), ("mov", pair["moving"])):
        gdal.Translate(str(gpkg), str(src), format="GPKG", outputType=gdal.GDT_Float32,
                       creationOptions=[f"RASTER_TABLE={table}", "APPEND_SUBDATASET=YES"])
    areas = tmp_path / "areas.gpkg"
    x0, y0 = T.c, T.f
    for name, poly in (("water", shapely.box(x0, y0 - 640, x0 + 640, y0)),
                       ("fields", shapely.box(x0 + 1000, y0 - 3000, x0 + 3000, y0 - 1000))):
        pyogrio.raw.write(areas, geometry=shapely.to_wkb(np.asarray([poly], dtype=object)), field_data=[], fields=[],
                          crs=UTM, driver="GPKG", geometry_type="Polygon", layer=name, append=name == "fields")
    import zipfile

    with zipfile.ZipFile(tmp_path / "corner.zip", "w") as z:  # the same corner, as a layer in a zip
        z.write(pair["corner"], "corner.geojson")
    if not _has_qgis_python():
        pytest.skip(f"{QGIS_PYTHON} cannot import qgis.core (python3-qgis)")
    # layers as QGIS makes them (a string GPKG:file:table is no layer to qgis_process)
    script = f"""import json, sys
sys.path.insert(0, {str(QGIS_DIR)!r})
import make_screenshot
from qgis.core import QgsProcessingFeedback, QgsProject, QgsRasterLayer, QgsVectorLayer
app, _ = make_screenshot.start_qgis()
import processing
mov = QgsRasterLayer("GPKG:{gpkg}:mov", "mov")
water = QgsVectorLayer("{areas}|layername=water", "water", "ogr")
zipped = QgsVectorLayer("/vsizip/{tmp_path / 'corner.zip'}/corner.geojson|layername=corner", "corner", "ogr")
QgsProject.instance().addMapLayers([mov, water, zipped])
res = processing.run("sarreg:register", {{"REFERENCE": "{pair['ref']}", "MOVING": mov, "FEATURES": "sift",
                     "EXCLUDE": [water, zipped], "OUTPUT": "{tmp_path / 'out' / 'out.tif'}"}},
                     feedback=QgsProcessingFeedback())
print("RESULT " + json.dumps(res))
"""
    r = subprocess.run([QGIS_PYTHON, "-c", script], env=qgis_env, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(lines[-1][len("RESULT "):])
    assert res["STATUS"] == "ok" and res["INLIERS"] > 50
    rep = json.loads(Path(res["REPORT"]).read_text())
    m = np.asarray(rep["matrix"])
    assert abs(np.degrees(np.arctan2(m[1, 0], m[0, 0])) - 1.0) < 0.05, m
    assert 0.03 < rep["stages"]["relate"]["excluded"]["reference"] < 0.05, rep["stages"]["relate"]["excluded"]


def test_qgis_process_output_folder_that_cannot_be_created(qgis_env, pair, tmp_path):
    """An output folder that cannot be created is one error line, not a Python traceback."""
    (tmp_path / "file").write_text("x")
    r = qgis_process(qgis_env, "run", "sarreg:register", "--", f"REFERENCE={pair['ref']}",
                     f"MOVING={pair['moving']}", "FEATURES=sift", f"OUTPUT={tmp_path / 'file' / 'sub' / 'out.tif'}")
    assert r.returncode != 0
    assert "cannot create the output folder (Not a directory)" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stdout + r.stderr, r.stderr[-2000:]


def test_qgis_process_apply_a_low_quality_report_with_force(qgis_env, pair, sarreg_cmd, tmp_path):
    """Apply with Force on a low-quality report: sarreg writes the raster and exits 2 (status low_quality); the
    algorithm succeeds with the reason as a warning (it failed, the written raster neither returned nor loaded);
    without Force it fails with the CLI's line and writes nothing."""
    low = runner.run_cli(["register", "--features", "sift", "--max-shift", "0.5", "--moving-nodata", "0", "--no-warp",
                          pair["ref"], pair["moving"], tmp_path / "l.tif"], FakeFeedback(), executable=sarreg_cmd)
    assert low.status == "low_quality", low.stderr
    base = ["--json", "run", "sarreg:apply", "--", f"REPORT={tmp_path / 'l.report.json'}", f"MOVING={pair['moving']}"]
    r = qgis_process(qgis_env, *base, "FORCE=true", f"OUTPUT={tmp_path / 'a.tif'}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(r.stdout)["results"]
    assert res["OUTPUT"] == str(tmp_path / "a.tif") and (tmp_path / "a.tif").is_file()
    assert res["STATUS"] == "low_quality"
    r = qgis_process(qgis_env, *base, f"OUTPUT={tmp_path / 'b.tif'}")
    assert r.returncode != 0 and "no raster written (--force applies it)" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "b.tif").exists()


def test_runner_returns_when_sarreg_exits_and_leaves_a_process_holding_its_output(tmp_path):
    """A process the command left behind (a Dask worker stuck in shutdown) keeps stdout / stderr open: the runner
    waited for it (40 s here, as long as it lived); now it returns 2 s after the command exited, with its result,
    and ends that process."""
    import time

    exe = tmp_path / "sarreg"
    exe.write_text("#!/bin/sh\nsleep 40 &\necho $! > \"$1\"\n"
                   "echo '{\"status\": \"ok\", \"exit_code\": 0, \"report\": \"x.report.json\"}' >&2\nexit 0\n")
    exe.chmod(0o755)
    t0 = time.monotonic()
    res = runner.run_cli([tmp_path / "pid"], FakeFeedback(), executable=str(exe))
    assert time.monotonic() - t0 < 10
    assert res.returncode == 0 and res.final["report"] == "x.report.json" and res.status == "ok"
    pid = int((tmp_path / "pid").read_text())
    for _ in range(50):
        if not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        raise AssertionError("the process left behind still runs")
