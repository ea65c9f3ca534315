"""Fixtures shared by all sarreg tests.

* ``repo_root``      the checkout's root folder.
* ``shared_dir``     read-only reference data in ../shared (skips the test when it is absent, e.g. on a laptop).
* ``rng``            a seeded NumPy generator (tests are deterministic).
* ``geotiff_factory`` writes a small real GeoTIFF (rasterio/GDAL) from an array into ``tmp_path``:
  UTM zone 31N (EPSG:32631), 10 m pixels, north-up, float32 unless told otherwise.
* ``sarreg_exe``     the ``sarreg`` console script of the environment running the tests.
* ``server``         (base URL, server): a real HTTP server on 127.0.0.1 serving a module temp folder
  (``server.root``), with byte ranges; ``server.served`` counts the bytes served per file name.

Matplotlib is forced onto the non-interactive Agg backend (no display in CI). Torch threads are left alone.
"""
from __future__ import annotations

import os
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from affine import Affine  # noqa: E402
from sarreg.synth import write_geotiff  # noqa: E402


def terminal_signals() -> None:
    """``preexec_fn`` of a command a test signals: SIGINT / SIGTERM / SIGHUP at their defaults, as for a command typed
    in a terminal (a test run started in the background or under nohup hands ignored ones down, and sarreg keeps a
    signal its launcher ignores ignored)."""
    import signal

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"

UTM_CRS = "EPSG:32631"
PIXEL_M = 10.0
ORIGIN = (500_000.0, 5_000_000.0)  # map coordinates (easting, northing) of the top-left CORNER of the raster


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (reference data, read-only); the test is skipped when it is not there."""
    if not SHARED.is_dir():
        pytest.skip(f"reference data folder {SHARED} is absent")
    return SHARED


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261125)


GeoTiffFactory = Callable[..., Path]


@pytest.fixture
def geotiff_factory(tmp_path: Path) -> GeoTiffFactory:
    """Return ``make(array, name="scene.tif", *, transform=None, crs=UTM_CRS, nodata=None, dtype="float32",
    origin=ORIGIN, pixel=PIXEL_M, **profile) -> Path``.

    ``array`` is H x W (one band) or B x H x W. Without ``transform`` the raster is north-up with ``pixel``
    metre pixels whose top-left corner is at ``origin``; pass ``crs=None`` for a file without georeference.
    Extra keywords go to the rasterio profile (e.g. ``compress="deflate"``). Files land in ``tmp_path``.
    """

    def make(array: np.ndarray, name: str = "scene.tif", *, transform: Affine | None = None,
             crs: Any = UTM_CRS, nodata: float | None = None, dtype: str | None = "float32",
             origin: tuple[float, float] = ORIGIN, pixel: float = PIXEL_M, **profile: Any) -> Path:
        if transform is None:
            transform = Affine(pixel, 0.0, origin[0], 0.0, -pixel, origin[1]) if crs is not None \
                else Affine.identity()
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_geotiff(path, array, transform, crs, nodata=nodata, dtype=dtype, **profile)

    return make


@pytest.fixture
def utm_and_geographic(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """A moving raster in UTM over 200 km (``utm.tif``) and a reference in geographic coordinates made from it by
    GDAL's exact reprojection (``geo.tif``; the moving georeference is exact), and the reference's pixels: two CRSs
    whose pixels no affine relates to a pixel over the scene."""
    import rasterio
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    from sarreg.synth import reflectivity, speckle

    img = speckle(reflectivity(256, 256, seed=5), 4, np.random.default_rng(5)).astype(np.float32)
    mov = write_geotiff(tmp_path / "utm.tif", img, Affine(800, 0, 300000, 0, -800, 5200000), "EPSG:32633")
    with rasterio.open(mov) as src:
        t, w, h = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
        geo = np.full((h, w), np.nan, np.float32)
        reproject(img, geo, src_transform=src.transform, src_crs=src.crs, dst_transform=t, dst_crs="EPSG:4326",
                  resampling=Resampling.bilinear, dst_nodata=np.nan)
    return write_geotiff(tmp_path / "geo.tif", geo, t, "EPSG:4326", nodata=float("nan")), mov, geo


@pytest.fixture(scope="session")
def sarreg_exe() -> Path:
    """The ``sarreg`` console script installed next to the running interpreter (``make install`` makes it)."""
    exe = Path(sys.executable).parent / "sarreg"
    if not exe.is_file():
        pytest.fail(f"console script {exe} missing: install the package (make install / pip install -e .)")
    return exe


class RangeHandler(BaseHTTPRequestHandler):
    """GET / HEAD of files under ``server.root`` with ``Range: bytes=a-b[,c-d...]``; bytes served per file name
    are added to ``server.served``. ``server.fail_from`` (an offset, default None): GETs of ranges starting at or
    past it answer HTTP 500 (a server failing once the file's header has been read)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _file(self) -> Path | None:
        p = self.server.root / self.path.split("?", 1)[0].lstrip("/")  # type: ignore[attr-defined]
        return p if p.is_file() else None

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        p = self._file()
        if p is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = p.read_bytes()
        size = len(data)
        rng = self.headers.get("Range")
        ranges: list[tuple[int, int]] = []
        if rng and rng.startswith("bytes="):
            for part in rng[6:].split(","):
                a, _, b = part.strip().partition("-")
                if a == "":
                    start, end = max(0, size - int(b)), size - 1
                else:
                    start, end = int(a), min(size - 1, int(b) if b else size - 1)
                if start < size:
                    ranges.append((start, end))
            if not ranges:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        fail_from = getattr(self.server, "fail_from", None)
        if not head and fail_from is not None and ranges and ranges[0][0] >= fail_from:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if not ranges:
            body, ctype, status = data, "image/tiff", 200
        elif len(ranges) == 1:
            (s, e), = ranges
            body, ctype, status = data[s:e + 1], "image/tiff", 206
        else:
            sep = "SARREGBOUNDARY"
            chunks = []
            for s, e in ranges:
                chunks.append(f"--{sep}\r\nContent-Type: image/tiff\r\nContent-Range: bytes {s}-{e}/{size}\r\n\r\n"
                              .encode() + data[s:e + 1] + b"\r\n")
            body, ctype, status = b"".join(chunks) + f"--{sep}--\r\n".encode(), \
                f"multipart/byteranges; boundary={sep}", 206
        self.send_response(status)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", ctype)
        if status == 206 and len(ranges) == 1:
            self.send_header("Content-Range", f"bytes {ranges[0][0]}-{ranges[0][1]}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
            with self.server.lock:  # type: ignore[attr-defined]
                self.server.served[p.name] += len(body)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, ThreadingHTTPServer]]:
    """(base URL, server) serving a module temp folder; the folder is ``server.root``."""
    root = tmp_path_factory.mktemp("www")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    srv.daemon_threads = True
    srv.root, srv.served, srv.lock = root, defaultdict(int), threading.Lock()  # type: ignore[attr-defined]
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", srv
    srv.shutdown()
    srv.server_close()
