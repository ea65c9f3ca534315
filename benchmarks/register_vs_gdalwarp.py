"""``sarreg register`` against a plain ``gdalwarp`` of the moving scene, side by side in one run, on inputs shaped
like users' products: float32, DEFLATE, 256 px tiles, nodata 0 with a nodata border, no overviews.

Generates (once, by windows with ``register_speed.generate``; bounded memory) a reference and a moving scene per
size (moving = reference shifted by (37.25, -18.5) px and rotated by 0.2 deg, same georeferencing, so the
mis-registration is the known pixel transform). Then, per size, each command in a fresh process:

* ``gdalwarp -r bilinear -of COG -co COMPRESS=DEFLATE -multi -wo NUM_THREADS=ALL_CPUS`` of the moving scene onto
  the reference grid: the resampling cost a user already accepts;
* ``sarreg register`` (defaults: keypoints + correlation, warped COG) and ``sarreg register --update-georef``
  (corrected georeferencing, no resampling), once per sarreg source tree given with ``--code`` (e.g. the main
  branch and a work branch: before/after in the same run).

Per run: wall time of the whole process, the child's peak RSS (``ru_maxrss`` from ``os.wait4``), the error of the
recovered transform against the truth (mean over a 10 x 10 grid of moving pixels), the ratio register / gdalwarp,
the load average before the run, and for each sarreg tree the peak RSS ratio between the largest and smallest size.

Usage::

    python benchmarks/register_vs_gdalwarp.py WORK_DIR [--sizes 4096,10240] [--code DIR,DIR] [--weights PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import register_speed as rs  # noqa: E402

TILE = 256
BORDER_FRAC = 0.03  # nodata border: 3 % of the side, slanted left edge (register_speed.generate)
PROFILE = dict(blockxsize=TILE, blockysize=TILE, compress="deflate", nodata=0.0)


def make_pair(work: Path, size: int, looks: float = 4.0, change: float = 0.0, name: str = "real"
              ) -> tuple[Path, Path]:
    """Reference and moving scene of ``size``² in the realistic shape (reused when present); ``looks`` of the
    speckle, ``change``: fraction of the moving date's landscape changed (``synth.temporal_change``)."""
    from sarreg.synth import reflectivity, temporal_change

    ref, mov = work / f"{name}_ref_{size}.tif", work / f"{name}_moving_{size}.tif"
    if ref.exists() and mov.exists():
        return ref, mov
    t0 = time.perf_counter()
    nb = size // rs.BASE_FACTOR + 4
    base = reflectivity(nb, nb, seed=size)
    later = temporal_change(base, np.random.default_rng(size), change) if change else base
    pts = rs._points(size, seed=1)
    border = int(size * BORDER_FRAC)
    rs.generate(ref, size, np.eye(3), base, pts, 10, PROFILE, border, looks)
    rs.generate(mov, size, rs.truth(size), later, pts, 20, PROFILE, border, looks)
    print(f"generated {size}^2 pair in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    return ref, mov


SHAPES = ("default", "cog", "striped", "int16", "cfloat32")


def convert(src: Path, shape: str) -> Path:
    """``src`` (the default shape) as another product shape, written once next to it (window by window):
    cog = DEFLATE COG with overviews; striped = uncompressed, strips (no tiles); int16 = amplitude DN
    (100 x sqrt(power), nodata 0); cfloat32 = complex SLC-like values (amplitude sqrt(power), random phase)."""
    if shape == "default":
        return src
    dst = src.with_name(f"{src.stem}_{shape}.tif")
    if dst.exists():
        return dst
    tmp = dst.with_name(dst.name + ".tmp.tif")
    if shape in ("cog", "striped"):
        opts = (["-of", "COG", "-co", "COMPRESS=DEFLATE", "-co", "OVERVIEWS=AUTO", "-co", "BIGTIFF=IF_SAFER"]
                if shape == "cog" else ["-co", "TILED=NO", "-co", "COMPRESS=NONE", "-co", "BIGTIFF=IF_SAFER"])
        subprocess.run(["gdal_translate", "-q", *opts, str(src), str(tmp)], check=True)
    else:
        import rasterio

        rng = np.random.default_rng(0)
        with rasterio.open(src) as s:
            prof = dict(s.profile)
            prof.update(dtype="int16" if shape == "int16" else "complex64", nodata=0, BIGTIFF="IF_SAFER")
            with rasterio.open(tmp, "w", **prof) as d:
                for _, w in s.block_windows(1):
                    p = np.maximum(s.read(1, window=w), 0)
                    amp = np.sqrt(p)
                    if shape == "int16":
                        v = np.clip(np.round(100.0 * amp), 0, 32767).astype(np.int16)
                    else:
                        v = (amp * np.exp(1j * rng.uniform(0, 2 * np.pi, amp.shape))).astype(np.complex64)
                    d.write(v, 1, window=w)
    tmp.replace(dst)
    return dst


def run_child(cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> dict:
    """Run ``cmd`` in a fresh process; wall time, exit code and that child's own peak RSS (MB)."""
    load = os.getloadavg()[0]
    with open(log, "w") as f:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return {"exit": p.returncode, "wall_s": round(wall, 2), "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),
            "user_s": round(ru.ru_utime, 1), "sys_s": round(ru.ru_stime, 1), "load_before": round(load, 2)}


def georef_error(ref: Path, out: Path, size: int) -> float | None:
    """Mean distance (reference px) over a 10 x 10 grid of moving pixels between where a georeference-corrected
    copy ``out`` puts them on the map and where the truth does (both through the affine transforms, pixel
    centres): the accuracy of an ``--update-georef`` / AROSICS output whatever its shift convention."""
    import rasterio
    from sarreg.estimate import apply_matrix

    if not out.exists():
        return None
    with rasterio.open(ref) as r, rasterio.open(out) as o:
        tr, to = r.transform, o.transform
    g = np.stack(np.meshgrid(np.linspace(0, size - 1, 10), np.linspace(0, size - 1, 10)), -1).reshape(-1, 2)
    at_out = np.array([to * (u + 0.5, v + 0.5) for u, v in g])
    at_ref = np.array([tr * (x + 0.5, y + 0.5) for x, y in apply_matrix(rs.truth(size), g)])
    return round(float(np.hypot(*(at_out - at_ref).T).mean() / abs(tr.a)), 4)


def arosics(python: str, ref: Path, mov: Path, out: Path, log: Path, size: int) -> dict:
    """AROSICS global (``arosics_global.py``) with its own Python in a fresh process."""
    for p in out.parent.glob(out.stem + "*"):
        p.unlink()
    r = run_child([python, str(HERE / "arosics_global.py"), str(ref), str(mov), str(out)], dict(os.environ), log)
    r["grid_error_px"] = georef_error(ref, out, size)
    return r


def grid_error(matrix: list | None, size: int) -> float | None:
    """Mean distance (px) between the recovered and the true transform over a 10 x 10 grid of moving pixels."""
    from sarreg.estimate import apply_matrix

    if not matrix:
        return None
    g = np.stack(np.meshgrid(np.linspace(0, size - 1, 10), np.linspace(0, size - 1, 10)), -1).reshape(-1, 2)
    d = apply_matrix(np.array(matrix), g) - apply_matrix(rs.truth(size), g)
    return round(float(np.hypot(*d.T).mean()), 4)


def gdalwarp_cmd(ref: Path, mov: Path, out: Path) -> list[str]:
    """The plain warp of the moving scene onto the reference grid (same CRS, extent and size)."""
    import rasterio

    with rasterio.open(ref) as ds:
        b, w, h, crs = ds.bounds, ds.width, ds.height, ds.crs.to_string()
    with rasterio.open(mov) as ds:
        complex_ = ds.dtypes[0].startswith("complex")
    # GDAL's COG overviews default to CUBIC, which complex data does not support
    extra = ["-co", "RESAMPLING=NEAREST"] if complex_ else []
    return ["gdalwarp", "-q", "-overwrite", "-r", "bilinear", "-of", "COG", "-co", "COMPRESS=DEFLATE", *extra, "-multi",
            "-wo", "NUM_THREADS=ALL_CPUS", "-t_srs", crs, "-te", str(b.left), str(b.bottom), str(b.right),
            str(b.top), "-ts", str(w), str(h), str(mov), str(out)]


def code_env(code: Path) -> dict[str, str]:
    """Environment of a child running sarreg from source tree ``code``.

    ``python -m`` puts the working directory first on sys.path, so children also run with ``cwd=code``; an
    editable install elsewhere comes after both.
    """
    return {**os.environ, "PYTHONPATH": str(code)}


def check_code(code: Path) -> None:
    """Fail early unless a child started like the register runs imports sarreg from ``code``."""
    out = subprocess.run([sys.executable, "-c", "import sarreg; print(sarreg.__file__)"], env=code_env(code),
                         cwd=code, capture_output=True, text=True, check=True).stdout.strip()
    if not Path(out).resolve().is_relative_to(code):
        raise SystemExit(f"sarreg imported from {out}, not from {code}")


def register(code: Path, ref: Path, mov: Path, out: Path, weights: str | None, extra: list[str],
             log: Path) -> dict:
    """``sarreg register`` from source tree ``code`` in a fresh process; adds the report's numbers."""
    for p in out.parent.glob(out.stem + "*"):
        p.unlink()
    cmd = [sys.executable, "-m", "sarreg.cli", "register", str(ref), str(mov), str(out), "--device", "cpu",
           "--overwrite", *extra]
    if weights:
        cmd += ["--weights", weights]
    r = run_child(cmd, code_env(code), log, cwd=code)
    rp = out.with_name(out.stem + ".report.json")
    rep = json.loads(rp.read_text()) if rp.exists() else {}
    r.update(status=rep.get("status"), timings_s=rep.get("timings_s"), model=rep.get("model"))
    r["matrix"] = rep.get("matrix")
    return r


def _has_shipped_model() -> bool:
    from sarreg.model.files import default_weights_path

    return default_weights_path() is not None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--sizes", default="4096,10240")
    ap.add_argument("--code", default=str(REPO),
                    help="comma-separated sarreg source trees (PYTHONPATH of the register runs), in run order")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--no-georef", action="store_true", help="skip the --update-georef runs")
    ap.add_argument("--shift-only", action="store_true",
                    help="pairs related by the shift alone (no rotation): what a global-shift tool can recover")
    ap.add_argument("--shape", default="default", choices=SHAPES,
                    help="product shape of both inputs: default (float32 DEFLATE 256 px tiles, no overviews), a COG "
                         "with overviews, an uncompressed striped file, int16 amplitude or CFloat32")
    ap.add_argument("--arosics", default=None, metavar="PYTHON",
                    help="also run AROSICS global (benchmarks/arosics_global.py) with this Python interpreter")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    if a.shift_only:
        rs.ANGLE = 0.0  # truth() and the generated pairs become a pure shift
        a.work = a.work / "shift_only"
        a.work.mkdir(exist_ok=True)
    sizes = [int(s) for s in a.sizes.split(",")]
    pairs = {s: tuple(convert(p, a.shape) for p in make_pair(a.work, s)) for s in sizes}
    if a.generate_only:
        return 0
    if shutil.which("gdalwarp") is None:
        print("gdalwarp not found on PATH", file=sys.stderr)
        return 1
    # no --weights: each tree runs its own shipped model the way users do (loaded only when a stage needs it)
    weights = a.weights if a.weights else (None if _has_shipped_model() else rs.pick_weights(None))
    codes = [Path(c).resolve() for c in a.code.split(",")]
    for c in codes:
        check_code(c)
    labels = [c.name for c in codes]
    if len(set(labels)) < len(labels):
        labels = [str(c) for c in codes]
    rows: list[dict] = []
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()}", flush=True)
    for size in sizes:
        ref, mov = pairs[size]
        logs = a.work / "logs"
        logs.mkdir(exist_ok=True)
        gw = run_child(gdalwarp_cmd(ref, mov, a.work / f"gdalwarp_{size}.tif"), dict(os.environ),
                       logs / f"gdalwarp_{size}.log")
        row = {"size": size, "run": "gdalwarp" + ("" if a.shape == "default" else f" ({a.shape})"), **gw}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if a.arosics:
            r = arosics(a.arosics, ref, mov, a.work / f"arosics_{size}.tif", logs / f"arosics_{size}.log", size)
            r["ratio_vs_gdalwarp"] = round(r["wall_s"] / gw["wall_s"], 2)
            rows.append({"size": size, "run": "AROSICS global (256 px window, corrected copy)", **r})
            print(json.dumps(rows[-1]), flush=True)
        for code, label in zip(codes, labels):
            variants = [("register", [])] + ([] if a.no_georef else [
                ("register --update-georef", ["--update-georef"]),
                ("register --update-georef --format GTiff", ["--update-georef", "--format", "GTiff",
                                                             "--compress", "deflate"])])
            for name, extra in variants:
                tag = name.replace(" --", "_").replace("-", "_").replace(" ", "_")
                out = a.work / f"out_{label}_{tag}_{size}.tif"
                r = register(code, ref, mov, out, weights, extra, logs / f"{label}_{tag}_{size}.log")
                matrix = r.pop("matrix")
                r["grid_error_px"] = georef_error(ref, out, size) if "--update-georef" in extra else \
                    grid_error(matrix, size)
                r["ratio_vs_gdalwarp"] = round(r["wall_s"] / gw["wall_s"], 2)
                row = {"size": size, "run": f"{name} [{label}]" + ("" if a.shape == "default" else f" ({a.shape})"),
                       **r}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| size | run | exit | status | wall s | / gdalwarp | peak RSS MB | user s | sys s | error px "
          "| load |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        err = "" if r.get("grid_error_px") is None else format(r["grid_error_px"], ".3f")
        print(f"| {r['size']}² | {r['run']} | {r['exit']} | {r.get('status') or ''} | {r['wall_s']:.1f} | "
              f"{r.get('ratio_vs_gdalwarp', 1.0):.2f} | {r['peak_rss_mb']:.0f} | {r['user_s']:.1f} | "
              f"{r['sys_s']:.1f} | {err} | {r['load_before']:.1f} |")
    if len(sizes) > 1:
        lo, hi = min(sizes), max(sizes)
        print()
        for run in dict.fromkeys(r["run"] for r in rows):
            p = {r["size"]: r["peak_rss_mb"] for r in rows if r["run"] == run}
            if lo in p and hi in p and p[lo]:
                print(f"peak RSS {hi}²/{lo}² [{run}]: {p[hi] / p[lo]:.2f}")
    (a.work / "results.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
