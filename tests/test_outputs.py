"""The one atomic writer and the one sha256 of ``sarreg.outputs`` (real files in tmp_path)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sarreg.errors import OutputError
from sarreg.outputs import is_temp, sha256_file, write_atomic


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("durable", [False, True])
def test_write_atomic_bytes_and_callable(tmp_path, durable):
    p = tmp_path / "a.json"
    assert write_atomic(p, b"one", durable=durable) == p and p.read_bytes() == b"one"
    seen: list[Path] = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        assert tmp.parent == p.parent and tmp.suffix == ".json" and is_temp(tmp.name)  # drivers pick by suffix
        tmp.write_text("two")

    write_atomic(p, write, durable=durable)
    assert p.read_text() == "two" and _hidden(tmp_path) == [] and not seen[0].exists()


def test_write_atomic_failure_keeps_the_old_file_and_no_temp(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")

    def half(tmp: Path) -> None:
        tmp.write_text("partial")
        raise ValueError("encoder broke")

    with pytest.raises(ValueError, match="encoder broke"):
        write_atomic(p, half)
    assert p.read_text() == "old" and _hidden(tmp_path) == []
    with pytest.raises(OutputError, match=r"nope/a.txt: cannot write"):  # OS errors: one-line OutputError
        write_atomic(tmp_path / "nope" / "a.txt", b"x")


def test_sha256_file_known_answer(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2
    big = tmp_path / "big.bin"
    data = bytes(range(256)) * 9000  # > one 1 MiB chunk
    big.write_bytes(data)
    assert sha256_file(big, bufsize=4096) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("name,refused", [("x.png", True), ("x.gpkg", True), ("x.JSON", True), ("x.txt", True),
                                          ("x.tif", False), ("x.TIFF", False), ("x", False)])
def test_raster_names_of_other_formats_are_refused(name: str, refused: bool) -> None:
    """A GeoTIFF written as .gpkg / .json / .txt opened as that format elsewhere (GDAL reads .gpkg rasters)."""
    from sarreg.outputs import check_raster_name

    if refused:
        with pytest.raises(OutputError, match="name it .tif"):
            check_raster_name(name)
    else:
        check_raster_name(name)


def _staged(tmp_path: Path, run: str) -> "Staging":  # noqa: F821
    from sarreg.outputs import Staging

    finals = {"raster": tmp_path / "o.tif", "points": tmp_path / "o.points", "report": tmp_path / "o.report.json"}
    st = Staging(finals, {k: p.with_name(f".{p.name}.{run}.stage{p.suffix}") for k, p in finals.items()})
    for k in ("raster", "points"):
        st.stages[k].write_text(f"{run} {k}")
    return st


def _folder(tmp_path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(tmp_path.iterdir())}


def test_a_commit_that_fails_leaves_the_earlier_run_in_place(tmp_path: Path, monkeypatch) -> None:
    """--overwrite over an earlier run: the report (written last) failing on a full disk, or a rename failing, leaves
    the earlier run's files as they were (they were deleted and replaced by a mix of both runs)."""
    import errno

    with _staged(tmp_path, "old") as st:
        st.commit("report", lambda p: p.write_text("old report"), overwrite=False)
    before = _folder(tmp_path)

    def full(p: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="o.report.json: cannot write: no space left on device"):
        with _staged(tmp_path, "new") as st:
            st.commit("report", full, overwrite=True)
    assert _folder(tmp_path) == before
    import os

    real, calls = os.replace, []

    def flaky(a, b):  # the fourth rename (the old points moved aside, after the new raster) fails: an I/O error
        calls.append(b)
        if len(calls) == 4:
            raise OSError(errno.EIO, "Input/output error")
        real(a, b)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OutputError, match="o.points: cannot write"):
        with _staged(tmp_path, "new") as st:
            st.commit("report", lambda p: p.write_text("new report"), overwrite=True)
    monkeypatch.undo()
    assert _folder(tmp_path) == before
    with _staged(tmp_path, "new") as st:
        st.commit("report", lambda p: p.write_text("new report"), overwrite=True)
    assert _folder(tmp_path) == {"o.points": "new points", "o.report.json": "new report", "o.tif": "new raster"}


def test_a_commit_onto_files_another_process_wrote_meanwhile_is_refused(tmp_path: Path) -> None:
    """Two runs onto one OUT without --overwrite: both passed the write-set check; the second to commit is refused
    and the folder holds the first run's set, not a mix."""
    with _staged(tmp_path, "a") as a, _staged(tmp_path, "b") as b:
        a.commit("report", lambda p: p.write_text("a report"))
        with pytest.raises(OutputError, match="o.tif: output exists"):
            b.commit("report", lambda p: p.write_text("b report"))
    assert _folder(tmp_path) == {"o.points": "a points", "o.report.json": "a report", "o.tif": "a raster"}
