"""Time to the error when a remote input cannot be read, side by side for several source trees in one run.

Local servers stand in for the failures a user meets: a server that accepts the connection and never answers
(hung service, firewall that swallows packets after the handshake), one that answers HTTP 500 to everything, a
missing file (HTTP 404) and a refused connection. Per case and tree (``--code DIR,DIR``, alternating), ``sarreg info
URL`` in a fresh process with sarreg's own GDAL defaults (the variables ``sarreg.io.source.REMOTE_DEFAULTS`` sets
are removed from the environment): wall seconds, requests the server saw, exit code and the error line.

Usage::

    python benchmarks/remote_failures.py --code /path/to/main,/path/to/branch [--cases silent,http500,404,refused]
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

GDAL_VARS = ("GDAL_HTTP_MAX_RETRY", "GDAL_HTTP_RETRY_DELAY", "GDAL_HTTP_TIMEOUT", "GDAL_HTTP_CONNECTTIMEOUT",
             "GDAL_HTTP_LOW_SPEED_TIME", "GDAL_HTTP_LOW_SPEED_LIMIT")


class Silent:
    """Accepts connections, never answers; counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/scene.tif"

    @property
    def requests(self) -> int:
        return len(self.held)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


def _http(code: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            srv.requests += 1  # type: ignore[attr-defined]
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = _answer

        def log_message(self, *a: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads, srv.requests = True, 0  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def run_case(case: str, code: Path, timeout: float) -> dict[str, object]:
    """One ``sarreg info URL`` against a fresh server of kind ``case``, from source tree ``code``."""
    srv: object = None
    if case == "silent":
        srv = Silent()
        url = srv.url
    elif case in ("http500", "404"):
        srv = _http(500 if case == "http500" else 404)
        url = f"http://127.0.0.1:{srv.server_address[1]}/scene.tif"  # type: ignore[attr-defined]
    else:  # refused: a port nobody listens on
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/scene.tif"
        s.close()
    env = {k: v for k, v in os.environ.items() if k not in GDAL_VARS}
    env["PYTHONPATH"] = str(code)
    t0 = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-m", "sarreg.cli", "info", url], cwd=code, env=env, capture_output=True,
                           text=True, timeout=timeout)
        rc, err = r.returncode, (r.stderr.strip().splitlines() or [""])[-1]
    except subprocess.TimeoutExpired:
        rc, err = None, f"no error within {timeout:g} s"
    wall = time.perf_counter() - t0
    n = getattr(srv, "requests", None)
    if isinstance(srv, Silent):
        srv.close()
    elif srv is not None:
        srv.shutdown()  # type: ignore[attr-defined]
        srv.server_close()  # type: ignore[attr-defined]
    return {"case": case, "code": code.name, "wall_s": round(wall, 1), "requests": n, "exit": rc,
            "error": err.replace(url, "URL")[:150]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", default=str(Path(__file__).resolve().parents[1]),
                    help="comma list of source trees (default: this one)")
    ap.add_argument("--cases", default="silent,http500,404,refused")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds before a run is stopped")
    a = ap.parse_args()
    codes = [Path(c).resolve() for c in a.code.split(",")]
    rows = [run_case(case, code, a.timeout) for case in a.cases.split(",") for code in codes]
    print("| case | code | wall s | requests | exit | error line |\n|---|---|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['case']} | {r['code']} | {r['wall_s']} | {r['requests'] if r['requests'] is not None else '-'} "
              f"| {r['exit']} | {r['error']} |")


if __name__ == "__main__":
    main()
