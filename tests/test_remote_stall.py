"""A server that accepts connections and never answers: one clear line, no round of retries per request."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_silent_server_fails_without_retries(tmp_path):
    from sarreg.io.source import REMOTE_DEFAULTS

    # the default: a read that receives nothing for 30 s fails (GDAL retries a timeout, not a stalled transfer)
    assert REMOTE_DEFAULTS["GDAL_HTTP_LOW_SPEED_TIME"] == "30" and REMOTE_DEFAULTS["GDAL_HTTP_LOW_SPEED_LIMIT"] == "1"
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(sock.accept()[0])  # kept open, never answered
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/ref.tif"
    env = {**os.environ, "PYTHONPATH": str(REPO), "GDAL_HTTP_LOW_SPEED_TIME": "2"}  # (the user's setting wins)
    try:
        p = subprocess.run([sys.executable, "-m", "sarreg.cli", "info", url], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=300)
    finally:
        sock.close()
        for c in held:
            c.close()
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 1 and len(lines) == 1 and url in lines[0], p.stderr
    assert "cannot reach remote raster (no answer from the server: " in lines[0], lines[0]
    assert len(held) <= 2, len(held)  # the open, the check of why: no retries (GDAL_HTTP_MAX_RETRY is 4)
