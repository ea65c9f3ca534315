"""Write sets of ``apply`` and ``extract`` staged as ``register``'s (issue #10): every file goes to a hidden stage name
in its final folder and the set is renamed when complete; an error or a signal after the first file leaves nothing
new, and existing files are untouched (also with --overwrite). Errors are injected after the first file is written
with a directory at a later file's stage name (the pid is this process's: the CLI runs in-process) or by
interrupting a writer. Real GeoTIFFs, the pair of ``test_bad_inputs``.
"""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

import sarreg.io.vector
import sarreg.warp
from sarreg.cli import Interrupted
from sarreg.errors import OutputError
from sarreg.outputs import Staging, temp_path

from test_bad_inputs import _cli, _sha, pair  # noqa: F401  (fixture reused)


def _names(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


def _one_line(res) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_extract_error_after_the_first_file_leaves_nothing(pair, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    blocker = temp_path(out / "mov.tif.keypoints.geojson", stage=True)
    blocker.mkdir()  # the .r2d2 and .gpkg are written, then the GeoJSON cannot be
    res = _cli("extract", "--no-progress", "--top-k", "200", "--geo", "-o", out, pair["mov"])
    assert res.exit_code == 1, res.output
    line = _one_line(res)
    assert "mov.tif.keypoints.geojson" in line and ".stage" not in line, line
    assert _names(out) == {blocker.name}


def test_extract_second_image_fails_first_is_not_committed(pair, tmp_path):
    """Two images: the second one's first file fails, the first image's finished files are not committed either;
    an existing output replaced by --overwrite keeps its old bytes."""
    out = tmp_path / "out"
    out.mkdir()
    old = out / "ref.tif.r2d2"
    old.write_bytes(b"old")
    blocker = temp_path(out / "mov.tif.r2d2", stage=True)
    blocker.mkdir()
    res = _cli("extract", "--no-progress", "--top-k", "200", "--overwrite", "-o", out, pair["ref"], pair["mov"])
    assert res.exit_code == 1, res.output
    assert "mov.tif.r2d2" in _one_line(res)
    assert _names(out) == {blocker.name, "ref.tif.r2d2"}
    assert old.read_bytes() == b"old"
    blocker.rmdir()
    res = _cli("extract", "--no-progress", "--top-k", "200", "--overwrite", "--geo", "-o", out, pair["ref"], pair["mov"])
    assert res.exit_code == 0, res.output
    assert _names(out) == {f"{n}.tif{s}" for n in ("ref", "mov") for s in (".r2d2", ".keypoints.gpkg",
                                                                           ".keypoints.geojson")}
    assert old.read_bytes() != b"old"
    import pyogrio

    assert pyogrio.list_layers(out / "mov.tif.keypoints.gpkg")[0][0] == "mov_tif_keypoints"  # named after OUT


def test_extract_interrupted_after_a_file_leaves_nothing(pair, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    real = sarreg.io.vector.write_points

    def write_then_sigterm(*a, **k):
        real(*a, **k)
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(sarreg.io.vector, "write_points", write_then_sigterm)
    res = _cli("extract", "--no-progress", "--top-k", "200", "--geo", "-o", out, pair["mov"])
    assert res.exit_code == 143, res.output
    assert _one_line(res) == "sarreg: interrupted (SIGTERM)"
    assert _names(out) == set()


def test_apply_error_keeps_the_existing_output(pair, tmp_path):
    out = tmp_path / "o.tif"
    out.write_bytes(b"old")
    blocker = temp_path(out, stage=True)
    blocker.mkdir()  # the warp cannot create its stage file
    inputs = {p: _sha(p) for p in (pair["report"], pair["mov"])}
    res = _cli("apply", "--overwrite", pair["report"], pair["mov"], out)
    assert res.exit_code == 1, res.output
    line = _one_line(res)
    assert "o.tif" in line and ".stage" not in line, line
    assert out.read_bytes() == b"old"
    assert _names(tmp_path) == {"o.tif", blocker.name}
    assert {p: _sha(p) for p in inputs} == inputs
    blocker.rmdir()
    res = _cli("apply", "--overwrite", pair["report"], pair["mov"], out)
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:2] in (b"II", b"MM") and _names(tmp_path) == {"o.tif"}


@pytest.mark.parametrize("georef", [False, True])
def test_apply_interrupted_after_the_raster_is_written(pair, tmp_path, monkeypatch, georef):
    out = tmp_path / "o.tif"
    out.write_bytes(b"old")
    name = "update_georef" if georef else "warp_to_grid"
    real = getattr(sarreg.warp, name)

    def write_then_sigint(*a, **k):
        p = real(*a, **k)
        assert Path(p).is_file() and Path(p).name.startswith(".o.tif.")  # a stage name, not OUT
        raise Interrupted(signal.SIGINT)

    monkeypatch.setattr(sarreg.warp, name, write_then_sigint)
    res = _cli("apply", "--overwrite", *(["--update-georef"] if georef else []), pair["report"], pair["mov"], out)
    assert res.exit_code == 130, res.output
    assert out.read_bytes() == b"old"
    assert _names(tmp_path) == {"o.tif"}


def test_staging_commit_failure_removes_what_it_renamed(tmp_path):
    """A rename that fails during the commit (a directory appeared at a final name) takes back the files the commit
    already created; files it replaced (--overwrite) cannot be restored and are the new ones."""
    finals = {"a": tmp_path / "a.txt", "b": tmp_path / "b.txt", "c": tmp_path / "c.txt"}
    with pytest.raises(OutputError, match="b.txt"):
        with Staging(finals) as st:
            for p in st.stages.values():
                p.write_text("new")
            finals["b"].mkdir()
            st.commit("c")
    assert _names(tmp_path) == {"b.txt"}
    finals["b"].rmdir()
    with Staging(finals) as st:
        for p in st.stages.values():
            p.write_text("new")
        done = st.commit("c")
    assert done == [finals["a"], finals["b"], finals["c"]] and _names(tmp_path) == {"a.txt", "b.txt", "c.txt"}
