"""S3 inputs against a real local S3 endpoint (issue #14): moto's standalone server on 127.0.0.1, GDAL's /vsis3/.

Skipped when ``moto[server]`` is not installed (it is in the ``test`` extra). The GDAL variables of a custom
endpoint (as for MinIO) are set per test with ``monkeypatch``; GDAL reads them from the environment at each request.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

from test_remote_inputs import REPO, _cli, _pair, _shift_error  # noqa: E402

BUCKET = "scenes"


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A moto S3 server holding ``s3://scenes/ref.tif`` and ``s3://scenes/mov.tif`` (COGs, known shift); yields the
    environment GDAL needs to reach it."""
    srv = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    env = {"AWS_S3_ENDPOINT": f"{host}:{port}", "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
    try:
        client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket=BUCKET)
        ref, mov = _pair(tmp_path_factory.mktemp("s3data"), 320, 5, "")
        for p in (ref, mov):
            client.upload_file(str(p), BUCKET, p.name)
        yield env
    finally:
        srv.stop()


@pytest.fixture
def s3_env(s3: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_NO_SIGN_REQUEST", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(k, raising=False)
    for k, v in s3.items():
        monkeypatch.setenv(k, v)
    return s3


def test_register_s3_urls(s3_env, tmp_path: Path) -> None:
    """In process (click's runner): GDAL picks up the endpoint variables set by the test."""
    out = tmp_path / "out.tif"
    res = _cli("register", "--features", "sift", f"s3://{BUCKET}/ref.tif", f"s3://{BUCKET}/mov.tif", out)
    assert res.exit_code == 0, res.output
    assert out.is_file()
    assert _shift_error(tmp_path / "out.report.json") < 0.5


def test_register_s3_subprocess_and_missing_key(s3_env, tmp_path: Path) -> None:
    """The installed command in a fresh process: a registration, then a missing key -> one line, exit 1."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "sarreg.cli", "register", "--features", "sift", "--no-warp"]
    p = subprocess.run(cmd + [f"s3://{BUCKET}/ref.tif", f"s3://{BUCKET}/mov.tif", str(tmp_path / "ok.tif")],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stderr
    assert _shift_error(tmp_path / "ok.report.json") < 0.5
    missing = f"s3://{BUCKET}/nope.tif"
    out = tmp_path / "bad"
    out.mkdir()
    p = subprocess.run(cmd + [f"s3://{BUCKET}/ref.tif", missing, str(out / "o.tif")], capture_output=True, text=True,
                       env=env, cwd=REPO, timeout=120)
    assert p.returncode == 1, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "nope.tif" in lines[0], p.stderr
    assert list(out.iterdir()) == []


def test_missing_credentials_are_named(s3_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An object that exists, read without credentials: the one error line says so (it said "not found, or the
    server did not answer")."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    res = _cli("info", f"s3://{BUCKET}/mov.tif")
    assert res.exit_code == 1 and "cannot reach remote raster" in res.output, res.output
    assert "AWS_SECRET_ACCESS_KEY" in res.output and "not found" not in res.output, res.output
