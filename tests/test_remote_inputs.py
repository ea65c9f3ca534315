"""Remote and archived inputs (issue #14, first part): URLs, /vsicurl/, zips, /vsizip/.

A real HTTP server on 127.0.0.1 started by the tests (``server`` in conftest: threaded, honours single and multiple
``Range`` requests, logs the bytes it serves) serves COGs made with ``gdal.Translate(format="COG")`` from a speckled
synthetic pair with a known shift. No internet, no mocks: GDAL's /vsicurl/ talks to the server.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from click.testing import CliRunner

from sarreg.cli import cli
from sarreg.synth import reflectivity, speckle, warp_image, write_geotiff

from conftest import terminal_signals

CRS = "EPSG:32633"
T = Affine(10.0, 0, 500000.0, 0, -10.0, 5000000.0)
SHIFT = (3.4, -2.1)  # moving px + SHIFT = reference px
PAD, LOOKS = 48, 8.0
REPO = Path(__file__).resolve().parents[1]


def _cog(src: Path, dst: Path, blocksize: int = 256) -> Path:
    from osgeo import gdal

    gdal.UseExceptions()
    gdal.Translate(str(dst), str(src), format="COG",
                   creationOptions=["COMPRESS=DEFLATE", f"BLOCKSIZE={blocksize}", "OVERVIEWS=AUTO",
                                    "RESAMPLING=AVERAGE"])
    return dst


def _pair(folder: Path, n: int, seed: int, prefix: str) -> tuple[Path, Path]:
    """COGs ``<prefix>ref.tif`` / ``<prefix>mov.tif`` (n x n linear power, moving shifted by SHIFT) in folder."""
    rng = np.random.default_rng(seed)
    f = reflectivity(n + 2 * PAD, n + 2 * PAD, seed=seed)
    m = np.array([[1, 0, PAD + SHIFT[0]], [0, 1, PAD + SHIFT[1]], [0, 0, 1.0]])
    mov = np.nan_to_num(warp_image(speckle(f, LOOKS, rng), m, (n, n)), nan=0.0).astype(np.float32)
    ref = speckle(f, LOOKS, rng)[PAD:PAD + n, PAD:PAD + n].astype(np.float32)
    tmp = folder / "plain"
    tmp.mkdir(exist_ok=True)
    r = _cog(write_geotiff(tmp / f"{prefix}ref.tif", ref, T, CRS), folder / f"{prefix}ref.tif")
    mv = _cog(write_geotiff(tmp / f"{prefix}mov.tif", mov, T, CRS, nodata=0.0), folder / f"{prefix}mov.tif")
    return r, mv


@pytest.fixture(scope="module")
def small(server) -> tuple[Path, Path]:
    return _pair(server[1].root, 320, 5, "")


def _cli(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _shift_error(report: Path) -> float:
    """Largest distance (px) between the recovered moving -> reference matrix and the known shift."""
    m = np.asarray(json.loads(report.read_text())["matrix"], dtype=np.float64)
    g = np.stack(np.meshgrid(np.linspace(32, 288, 9), np.linspace(32, 288, 9)), -1).reshape(-1, 2)
    p = np.c_[g, np.ones(len(g))] @ m.T
    return float(np.hypot(*(p[:, :2] / p[:, 2:] - (g + np.asarray(SHIFT))).T).max())


def test_register_http_urls(server, small, tmp_path):
    base, _ = server
    out = tmp_path / "out.tif"
    res = _cli("register", "--features", "sift", f"{base}/ref.tif", f"{base}/mov.tif", out)
    assert res.exit_code == 0, res.output
    assert out.is_file()
    assert _shift_error(tmp_path / "out.report.json") < 0.5


def test_register_vsicurl_and_vsizip(server, small, tmp_path):
    base, _ = server
    ref, mov = small
    z = tmp_path / "mov.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(mov, "inner/mov.tif")
    out = tmp_path / "a.tif"
    res = _cli("register", "--features", "sift", "--no-warp", f"/vsicurl/{base}/ref.tif", f"/vsizip/{z}/inner/mov.tif",
               out)
    assert res.exit_code == 0, res.output
    assert _shift_error(tmp_path / "a.report.json") < 0.5


def test_register_local_zip(small, tmp_path):
    ref, mov = small
    z = tmp_path / "mov.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(mov, "mov.tif")
    res = _cli("register", "--features", "sift", ref, z, tmp_path / "z.tif")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "z.tif").is_file()
    assert _shift_error(tmp_path / "z.report.json") < 0.5
    # several rasters: one line listing them; naming one inside the archive works
    z2 = tmp_path / "two.zip"
    with zipfile.ZipFile(z2, "w") as zf:
        zf.write(mov, "a.tif")
        zf.write(ref, "b.tif")
    res = _cli("register", "--features", "sift", ref, z2, tmp_path / "t.tif")
    assert res.exit_code == 1
    assert "a.tif" in res.stderr and "b.tif" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t.tif").exists()
    res = _cli("register", "--features", "sift", "--no-warp", ref, z2 / "a.tif", tmp_path / "t.tif")
    assert res.exit_code == 0, res.output
    assert _shift_error(tmp_path / "t.report.json") < 0.5


def test_404_url_is_one_line(server, small, tmp_path):
    base, _ = server
    url = f"{base}/missing.tif"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "sarreg.cli", "register", "--features", "sift", f"{base}/ref.tif", url,
                        str(tmp_path / "o.tif")], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert p.returncode == 1, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and url in lines[0], p.stderr
    assert "cannot reach remote raster (not found)" in lines[0], lines[0]  # not "not recognized as ... format"
    # a server that refuses the connection: the same one line, not GDAL's "HTTP response code ... 0" warning first
    refused = "http://127.0.0.1:9/x.tif"
    p = subprocess.run([sys.executable, "-m", "sarreg.cli", "info", refused], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=120)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 1 and len(lines) == 1 and "(no answer from the server: " in lines[0], p.stderr
    assert list(tmp_path.iterdir()) == []


def test_remote_output_is_refused(server, small, tmp_path):
    base, _ = server
    res = _cli("register", "--features", "sift", f"{base}/ref.tif", f"{base}/mov.tif", f"{base}/out.tif")
    assert res.exit_code == 1
    assert "local" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_remote_reads_are_windowed(server, tmp_path):
    """Registering a 4096² remote COG pair (no warp) fetches overviews and a few tiles, not the files.

    The fine stage reads 9 windows of 384² at full resolution, i.e. ~60 of the 256² blocks of each file whatever
    its size: on a 2048² pair (64 blocks per file) that is nearly everything (97 % measured), on 4096² about a
    quarter (24 % measured), on a 10k² scene a few percent."""
    base, srv = server
    ref, mov = _pair(srv.root, 4096, 11, "big_")
    size = ref.stat().st_size + mov.stat().st_size
    srv.served.clear()
    res = _cli("register", "--features", "sift", "--no-warp", f"{base}/{ref.name}", f"{base}/{mov.name}",
               tmp_path / "big.tif")
    assert res.exit_code == 0, res.output
    served = srv.served[ref.name] + srv.served[mov.name]
    frac = served / size
    print(f"\nremote 4096² COG pair: {served} of {size} bytes served ({100 * frac:.1f} %)")
    assert frac < 0.6, (served, size)


def test_apply_remote_moving(server, small, tmp_path):
    """``apply`` re-applies a saved transform to a raster read over HTTP."""
    base, _ = server
    ref, mov = small
    res = _cli("register", "--features", "sift", "--no-warp", ref, mov, tmp_path / "r.tif")
    assert res.exit_code == 0, res.output
    res = _cli("apply", tmp_path / "r.report.json", f"{base}/mov.tif", tmp_path / "a.tif")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a.tif").is_file()


def test_input_names_map_to_gdal():
    from sarreg.io.source import is_remote, resolve_input

    assert resolve_input("https://h.example/a/b.tif") == "/vsicurl/https://h.example/a/b.tif"
    assert resolve_input("s3://bucket/key/x.tif") == "/vsis3/bucket/key/x.tif"
    assert resolve_input("gs://bucket/x.tif") == "/vsigs/bucket/x.tif"
    assert resolve_input("/vsiaz/c/x.tif") == "/vsiaz/c/x.tif"
    assert resolve_input("/vsicurl/http://h/x.tif") == "/vsicurl/http://h/x.tif"
    assert resolve_input("local/x.tif") == Path("local/x.tif")
    assert is_remote(Path("https://h/x.tif"))  # a URL collapsed by pathlib is still recognised (and refused as OUT)
    assert not is_remote(Path("x.tif"))


def test_remote_defaults_do_not_override_user(monkeypatch):
    from sarreg.io.source import REMOTE_DEFAULTS, apply_remote_defaults

    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "9")
    for k in REMOTE_DEFAULTS:
        if k != "GDAL_HTTP_MAX_RETRY":
            monkeypatch.delenv(k, raising=False)
    apply_remote_defaults()
    assert os.environ["GDAL_HTTP_MAX_RETRY"] == "9"
    assert os.environ["GDAL_HTTP_TIMEOUT"] == REMOTE_DEFAULTS["GDAL_HTTP_TIMEOUT"]


def test_batch_remote_scenes_and_resume(server, small, tmp_path):
    """``sarreg batch`` with a URL reference, a URL scene and a zipped local scene (its own 1-worker LocalCluster);
    a second run resumes both scenes (the remote fingerprint is GDAL's stat of the URL) without a cluster."""
    base, _ = server
    ref, mov = small
    z = tmp_path / "zipped.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(mov, "zipped.tif")
    args = ["batch", "--features", "sift", "--workers", "1", "--no-progress", "-o", tmp_path / "out",
            f"{base}/ref.tif", f"{base}/mov.tif", z]
    res = _cli(*args)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())
    by = {r["scene"]: r for r in doc["scenes"]}
    assert set(by) == {"mov", "zipped"}
    for r in by.values():
        assert abs(r["shift_x_px"] - SHIFT[0]) < 0.5 and abs(r["shift_y_px"] - SHIFT[1]) < 0.5, r
        assert (tmp_path / "out" / f"{r['scene']}_reg.tif").is_file()
    res = _cli(*args)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert doc["counts"]["resumed"] == 2


def test_extract_remote_image(server, small, tmp_path):
    """``extract`` reads a URL; its outputs go to -o (a remote input has no folder of its own)."""
    base, _ = server
    url = f"{base}/ref.tif"
    res = _cli("extract", "--no-progress", url)
    assert res.exit_code == 1 and "--out-dir" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = _cli("extract", "--no-progress", "--top-k", "200", "--tile-size", "0", "-o", tmp_path, url)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ref.tif.r2d2").is_file()


def test_extract_names_a_vsicurl_query_input_after_the_file_its_url_names(server, small, tmp_path):
    """``/vsicurl?url=<url>`` and ``/vsicurl?<options>&url=<encoded url>`` inputs: the default output is named after
    the file the URL names (``ref.tif.r2d2``, as for the plain URL), not after ``vsicurl`` (``vsicurl.r2d2``)."""
    from urllib.parse import quote

    from sarreg.io.source import input_name

    base, _ = server
    url = f"{base}/ref.tif"
    for i, name in enumerate((f"/vsicurl?url={url}", f"/vsicurl?max_retry=1&url={quote(url + '?v=1', safe='')}")):
        assert input_name(name) == "ref.tif"
        out = tmp_path / f"o{i}"
        res = _cli("extract", "--no-progress", "--top-k", "200", "--tile-size", "0", "-o", out, name)
        assert res.exit_code == 0, res.output
        assert sorted(p.name for p in out.iterdir()) == ["ref.tif.r2d2"]
        assert res.stdout.strip().endswith(f"-> {out / 'ref.tif.r2d2'}"), res.stdout


def test_register_remote_zip_by_range_requests(server, small, tmp_path):
    """``https://.../scene.zip`` holding one raster is read through /vsizip//vsicurl/: the zip's directory and the
    raster's blocks by range requests, never the whole archive; two rasters in a remote zip: one line naming them."""
    base, srv = server
    ref, mov = small
    pad = np.random.default_rng(0).integers(0, 255, 3_000_000, dtype=np.uint8).tobytes()
    with zipfile.ZipFile(srv.root / "remote.zip", "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("notes/padding.bin", pad)  # a big member the registration must not download
        zf.write(mov, "S/mov.tif")
    res = _cli("register", "--features", "sift", "--no-warp", f"{base}/ref.tif", f"{base}/remote.zip",
               tmp_path / "r.tif")
    assert res.exit_code == 0, res.output
    assert _shift_error(tmp_path / "r.report.json") < 0.5
    assert 0 < srv.served["remote.zip"] < 0.5 * (srv.root / "remote.zip").stat().st_size
    with zipfile.ZipFile(srv.root / "two.zip", "w") as zf:
        zf.write(mov, "a.tif")
        zf.write(ref, "b.tif")
    res = _cli("register", "--features", "sift", f"{base}/ref.tif", f"{base}/two.zip", tmp_path / "t.tif")
    assert res.exit_code == 1
    assert "two.zip" in res.stderr and "a.tif" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t.tif").exists()


def test_failed_reads_during_the_warp_fail_the_run(server, small, tmp_path, monkeypatch):
    """The server fails (HTTP 500) once the warp starts reading the moving raster's pixels: register and apply
    fail with one line naming the input (not ok with an all-nodata OUT, nor a wrong reason), and write nothing."""
    from osgeo import gdal

    from sarreg import register
    from sarreg.config import RegisterConfig
    from sarreg.errors import InputError

    base, srv = server
    ref, mov = small
    url = f"{base}/mov.tif"
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")

    def failing(step: str) -> None:
        if step == "warp":  # from here on only the first 16 KiB (the header) is served; no block cached before
            srv.fail_from = 16384
            gdal.VSICurlClearCache()

    out = tmp_path / "reg" / "o.tif"
    out.parent.mkdir()
    try:
        with pytest.raises(InputError, match=r"mov\.tif: cannot read its pixels during the warp \(.*\); no output"):
            register(ref, url, out, RegisterConfig(features="sift"), progress=failing)
        assert list(out.parent.iterdir()) == []
        res = _cli("register", "--features", "sift", "--no-warp", ref, mov, tmp_path / "r.tif")
        assert res.exit_code == 0, res.output
        gdal.VSICurlClearCache()
        res = _cli("apply", tmp_path / "r.report.json", url, out)
        lines = res.output.strip().splitlines()
        assert res.exit_code == 1 and len(lines) == 1 and url in lines[0], res.output
        assert "cannot read its pixels during the warp" in lines[0]
        assert list(out.parent.iterdir()) == []
        gdal.VSICurlClearCache()
        res = _cli("apply", "--update-georef", tmp_path / "r.report.json", url, out)  # a copy, not a warp
        lines = res.output.strip().splitlines()
        assert res.exit_code == 1 and len(lines) == 1 and url in lines[0], res.output
        assert "cannot read its pixels during the copy" in lines[0]
        assert list(out.parent.iterdir()) == []
    finally:
        srv.fail_from = None


class _Failing(BaseHTTPRequestHandler):
    """Answers every request with HTTP ``server.status`` (default 500) and counts them (``server.requests``)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _fail(self) -> None:
        self.server.requests += 1  # type: ignore[attr-defined]
        self.send_response(getattr(self.server, "status", 500))
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _fail


def test_server_error_is_one_round_of_retries(small, tmp_path, monkeypatch):
    """A server answering HTTP 500: the open's retries are the only ones (the check of why it failed is one
    request, not another round), and the error line says it is a server error."""
    import threading
    from http.server import ThreadingHTTPServer

    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "2")
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.1")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    srv.daemon_threads, srv.requests = True, 0  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/ref.tif"
        res = _cli("register", url, small[1], tmp_path / "o.tif")
        lines = res.output.strip().splitlines()
        assert res.exit_code == 1 and len(lines) == 1 and url in lines[0], res.output
        assert "cannot reach remote raster (server error, HTTP 500)" in lines[0]
        assert srv.requests <= 2 + 1 + 1, srv.requests  # the open: 1 + 2 retries; the check: 1
    finally:
        srv.shutdown()
        srv.server_close()
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_gdal_retries_a_failing_server_is_one_line(small, tmp_path):
    """SIGINT while GDAL retries a read that a server keeps failing (HTTP 500): GDAL logs each retry through a C
    callback, where the interrupt was swallowed with a Python traceback and the run went on to the error (exit 1,
    18 s later). Now it is deferred until the callback returns: exit 130, one line, within seconds."""
    import signal
    import threading
    import time
    from http.server import ThreadingHTTPServer

    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    srv.daemon_threads, srv.requests = True, 0  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "GDAL_HTTP_MAX_RETRY": "30", "GDAL_HTTP_RETRY_DELAY": "0.5"}
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/ref.tif"
        p = subprocess.Popen([sys.executable, "-m", "sarreg.cli", "register", url, str(small[1]),
                              str(tmp_path / "o.tif")], stderr=subprocess.PIPE, env=env, cwd=tmp_path,
                             preexec_fn=terminal_signals)
        t0 = time.monotonic()
        while srv.requests < 3 and time.monotonic() - t0 < 60:  # type: ignore[attr-defined]
            time.sleep(0.05)  # (GDAL is retrying)
        p.send_signal(signal.SIGINT)
        t1 = time.monotonic()
        _, err = p.communicate(timeout=60)
        lines = err.decode().strip().splitlines()
        assert p.returncode == 130 and lines == ["sarreg: interrupted (SIGINT)"], (p.returncode, lines)
        assert time.monotonic() - t1 < 10
    finally:
        srv.shutdown()
        srv.server_close()
    assert list(tmp_path.iterdir()) == []


def test_missing_or_denied_remote_zip_and_item_say_so(server, small, tmp_path):
    """A remote .zip that is missing (404) or denied (403), or a denied STAC item: one line with the reason, not
    'not a readable zip archive' / 'not found or unreachable' (and no GDAL warning line)."""
    import threading
    from http.server import ThreadingHTTPServer

    base, _ = server
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    srv.daemon_threads, srv.requests, srv.status = True, 0, 403  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    denied = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        for url, why in ((f"{base}/missing.zip", "cannot reach remote zip archive (not found"),
                         (f"{denied}/x.zip", "cannot reach remote zip archive (access denied, HTTP 403"),
                         (f"{denied}/item.json", "cannot read (access denied, HTTP 403")):
            res = _cli("register", small[0], url, tmp_path / "o.tif")
            lines = res.output.strip().splitlines()
            assert res.exit_code == 1 and len(lines) == 1 and url in lines[0] and why in lines[0], res.output
    finally:
        srv.shutdown()
        srv.server_close()


def test_remote_zip_on_a_server_without_range_requests_says_so(server, small, tmp_path):
    """A zip served by a server that ignores ``Range`` (``python -m http.server``: HTTP 200 and the whole file) cannot
    be read in place by /vsizip//vsicurl/: one line naming the URL and saying so (it said "not a readable zip
    archive"); the same zip from a server with ranges is read, and a damaged zip there is still "not a readable zip"."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    base, srv = server
    with zipfile.ZipFile(srv.root / "whole.zip", "w") as zf:
        zf.write(small[1], "mov.tif")
    (srv.root / "broken.zip").write_bytes(b"PK\x03\x04" + b"\0" * 4000)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    class Plain(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # (a client that closes after the headers: a broken pipe here, not test output)

    plain = Plain(("127.0.0.1", 0), functools.partial(Quiet, directory=str(srv.root)))
    plain.daemon_threads = True
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{plain.server_address[1]}/whole.zip"
        res = _cli("info", url)
        lines = res.output.strip().splitlines()
        assert res.exit_code == 1 and len(lines) == 1 and lines[0].startswith(f"sarreg: error: {url}: "), res.output
        assert "not a readable zip" not in lines[0] and "range requests" in lines[0] and "download" in lines[0]
        from sarreg.io.archive import refuses_ranges  # (the check alone: a range request answered with the file)

        assert refuses_ranges(f"/vsicurl/{url}") and refuses_ranges(f"/vsicurl?url={url}") and refuses_ranges(url)
        assert not refuses_ranges(f"/vsicurl/{base}/whole.zip") and not refuses_ranges(f"{base}/whole.zip")
    finally:
        plain.shutdown()
        plain.server_close()
    assert _cli("info", f"{base}/whole.zip").exit_code == 0
    res = _cli("info", f"{base}/broken.zip")
    assert res.exit_code == 1 and res.output.strip().endswith("broken.zip: not a readable zip archive"), res.output


def test_concurrent_warps_fail_alone(server, small, tmp_path, monkeypatch):
    """Two multithreaded warps at once in one process (batch workers with several threads): the one whose server
    fails mid-read fails, naming its input; the local one is written whole; GDAL raises as before afterwards."""
    import threading

    from osgeo import gdal

    from sarreg.grid import Grid, PixelTransform
    from sarreg.io.raster import open_scene
    from sarreg.warp import warp_to_grid

    base, srv = server
    ref, mov = small
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    grid, tr = Grid.from_scene(open_scene(ref)), PixelTransform("shift", np.eye(3))
    got: dict[str, str] = {}

    def run(name: str, src: object) -> None:
        try:
            warp_to_grid(src, tr, grid, tmp_path / f"{name}.tif", threads=2)
            got[name] = "ok"
        except Exception as e:  # noqa: BLE001 - recorded for the asserts
            got[name] = f"{type(e).__name__}: {e}"

    gdal.VSICurlClearCache()
    srv.fail_from = 16384
    try:
        ths = [threading.Thread(target=run, args=("remote", f"{base}/mov.tif")),
               threading.Thread(target=run, args=("local", mov))]
        [t.start() for t in ths]
        [t.join() for t in ths]
    finally:
        srv.fail_from = None
    assert got["local"] == "ok" and got["remote"].startswith("InputError: /vsicurl/"), got
    assert "cannot read its pixels during the warp" in got["remote"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local.tif"]
    import rasterio

    with rasterio.open(tmp_path / "local.tif") as a, rasterio.open(mov) as b:
        assert a.read(1, masked=True).count() == b.read(1, masked=True).count()
    with pytest.raises(RuntimeError):
        gdal.Open(str(tmp_path / "missing.tif"))
