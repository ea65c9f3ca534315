"""``sarreg --progress-json`` / ``SARREG_PROGRESS_JSON=1``: JSON progress lines on stderr and one final status line
(what the QGIS plugin reads), for register, apply, extract, errors and an interrupt."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from click.testing import CliRunner

from sarreg.cli import cli
from sarreg.synth import reflectivity, speckle, warp_image, write_geotiff

from conftest import terminal_signals

N = 256
T = Affine(10.0, 0, 500000.0, 0, -10.0, 5000000.0)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pj")
    rng = np.random.default_rng(7)
    f = reflectivity(N + 32, N + 32, seed=5)
    m = np.array([[1, 0, 16 + 3.5], [0, 1, 16 - 2.0], [0, 0, 1.0]])
    return {"ref": write_geotiff(d / "ref.tif", speckle(f, 4, rng)[16:16 + N, 16:16 + N], T, "EPSG:32631"),
            "mov": write_geotiff(d / "mov.tif", np.nan_to_num(warp_image(speckle(f, 4, rng), m, (N, N)), nan=0.0),
                                 T, "EPSG:32631", nodata=0.0)}


def _json_lines(text: str) -> tuple[list[dict], list[str]]:
    objs, other = [], []
    for line in text.splitlines():
        try:
            o = json.loads(line)
        except ValueError:
            other.append(line)
            continue
        (objs if isinstance(o, dict) else other).append(o)
    return objs, other


def _check_stream(objs: list[dict]) -> dict:
    """Progress lines first (0..1, non-decreasing), exactly one final status line, last."""
    *stages, last = objs
    assert stages and all("stage" in o and "status" not in o for o in stages), objs
    p = [o["progress"] for o in stages]
    assert all(0 <= a <= b <= 1 for a, b in zip(p, p[1:])), p
    assert "status" in last and "exit_code" in last, last
    return last


def test_register_streams_stages_and_final_status(pair, tmp_path):
    out = tmp_path / "o.tif"
    res = CliRunner().invoke(cli, ["--progress-json", "register", "--features", "sift", str(pair["ref"]),
                                   str(pair["mov"]), str(out)])
    assert res.exit_code == 0, res.output
    objs, other = _json_lines(res.stderr)
    assert other == [], other
    last = _check_stream(objs)
    assert [o["stage"] for o in objs[:-1]][:5] == ["relate", "model", "coarse", "fine", "estimate"]
    assert last["status"] == "ok" and last["exit_code"] == 0
    assert Path(last["report"]) == out.with_name("o.report.json") and Path(last["output"]) == out
    assert res.stdout.startswith("ok: ")  # stdout unchanged


def test_errors_are_one_final_line_after_the_message(pair, tmp_path, monkeypatch):
    monkeypatch.setenv("SARREG_PROGRESS_JSON", "1")
    res = CliRunner().invoke(cli, ["register", "--features", "sift", str(pair["ref"]), str(tmp_path / "nope.tif"),
                                   str(tmp_path / "o.tif")])
    assert res.exit_code == 1
    objs, other = _json_lines(res.stderr)
    assert len(other) == 1 and other[0].startswith("sarreg: error: ") and "nope.tif" in other[0]
    assert objs[-1] == {"status": "error", "exit_code": 1, "message": other[0]}
    assert sum("status" in o for o in objs) == 1
    # a usage error too
    res = CliRunner().invoke(cli, ["register", "--model", "nonsense", "a", "b", "c"])
    objs, _ = _json_lines(res.stderr)
    assert res.exit_code == 2 and objs[-1]["status"] == "error" and "--model" in objs[-1]["message"]
    # a low-quality registration: one final line with its status and report, not a second "error" line
    res = CliRunner().invoke(cli, ["register", "--features", "sift", "--min-inliers", "100000", str(pair["ref"]),
                                   str(pair["mov"]), str(tmp_path / "lq.tif")])
    objs, _ = _json_lines(res.stderr)
    finals = [o for o in objs if "status" in o]
    assert res.exit_code == 2 and len(finals) == 1 and finals[0]["status"] == "low_quality", objs
    assert finals[0]["exit_code"] == 2 and Path(finals[0]["report"]).is_file()


def test_without_the_flag_nothing_changes(pair, tmp_path, monkeypatch):
    monkeypatch.delenv("SARREG_PROGRESS_JSON", raising=False)
    res = CliRunner().invoke(cli, ["register", "--features", "sift", str(pair["ref"]), str(pair["mov"]),
                                   str(tmp_path / "o.tif")])
    assert res.exit_code == 0 and res.stderr == "", res.stderr


def test_apply_and_extract(pair, tmp_path, monkeypatch):
    monkeypatch.setenv("SARREG_PROGRESS_JSON", "1")
    out = tmp_path / "o.tif"
    assert CliRunner().invoke(cli, ["register", "--features", "sift", "--no-warp", str(pair["ref"]),
                                    str(pair["mov"]), str(out)]).exit_code == 0
    res = CliRunner().invoke(cli, ["apply", str(tmp_path / "o.report.json"), str(pair["mov"]),
                                   str(tmp_path / "a.tif")])
    assert res.exit_code == 0, res.output
    last = _check_stream(_json_lines(res.stderr)[0])
    assert last["status"] == "ok" and Path(last["output"]) == tmp_path / "a.tif"
    res = CliRunner().invoke(cli, ["extract", "--top-k", "200", "--geo", "-o", str(tmp_path / "kp"),
                                   str(pair["ref"])])
    assert res.exit_code == 0, res.output
    objs, other = _json_lines(res.stderr)
    assert other == [], other  # no tqdm bar in this mode
    last = _check_stream(objs)
    assert objs[-2]["progress"] == 1.0 and objs[-2]["stage"] == "extract"
    assert last["status"] == "ok" and any(p.endswith("ref.tif.keypoints.gpkg") for p in last["outputs"])


def test_sigterm_gives_an_interrupted_line_and_no_output(pair, tmp_path):
    """Progress lines arrive while the command runs (read line by line); SIGTERM at the fine stage -> exit 143, an
    ``interrupted`` final line, no output file."""
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "SARREG_PROGRESS_JSON": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "sarreg.cli", "register", "--features", "sift", str(pair["ref"]), str(pair["mov"]),
           str(out / "o.tif")]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True,
                         preexec_fn=terminal_signals)
    seen = []
    t0 = time.monotonic()
    for line in p.stderr:
        seen.append(line)
        if '"stage": "coarse"' in line:
            p.send_signal(signal.SIGTERM)
            break
        assert time.monotonic() - t0 < 60
    rest = p.stderr.read()
    p.wait(timeout=60)
    if p.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert p.returncode == 143, rest
    objs, other = _json_lines("".join(seen) + rest)
    assert other == ["sarreg: interrupted (SIGTERM)"]
    assert objs[-1] == {"status": "interrupted", "exit_code": 143, "signal": "SIGTERM"}
    assert list(out.iterdir()) == []
