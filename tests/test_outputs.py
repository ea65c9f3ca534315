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
