"""Sealed files: streamed both ways, and any change, cut or move is refused."""

import os
from pathlib import Path

import pytest

from encryption.data_keys import data_key_current
from encryption.files import (
    CHUNK_BYTES,
    FileUnreadable,
    SealedFileWriter,
    sealed_file_key_id,
    sealed_file_open,
)

pytestmark = pytest.mark.django_db


def _seal(path: Path, body: bytes, purpose: str = "test:one") -> SealedFileWriter:
    writer = SealedFileWriter(path=path, purpose=purpose)
    for start in range(0, len(body), 10_000):
        writer.write(body[start : start + 10_000])
    writer.close()
    return writer


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES + 7])
def test_any_length_reads_back_exactly(tmp_path: Path, size: int) -> None:
    body = os.urandom(size)
    writer = _seal(tmp_path / "f", body)
    with sealed_file_open(path=tmp_path / "f", purpose="test:one") as opened:
        assert opened.read() == body
    assert writer.size == size
    assert sealed_file_key_id(path=tmp_path / "f") == data_key_current().id


def test_a_file_cut_at_a_chunk_boundary_is_refused(tmp_path: Path) -> None:
    _seal(tmp_path / "f", os.urandom(2 * CHUNK_BYTES + 5))
    sealed = (tmp_path / "f").read_bytes()
    header = len(sealed) - (2 * CHUNK_BYTES + 5) - 3 * 16
    (tmp_path / "f").write_bytes(sealed[: header + 2 * (CHUNK_BYTES + 16)])
    with (
        pytest.raises(FileUnreadable, match="cut short"),
        sealed_file_open(path=tmp_path / "f", purpose="test:one") as f,
    ):
        f.read()


def test_a_changed_byte_is_refused(tmp_path: Path) -> None:
    _seal(tmp_path / "f", b"plain text " * 100)
    sealed = bytearray((tmp_path / "f").read_bytes())
    sealed[-20] ^= 1
    (tmp_path / "f").write_bytes(bytes(sealed))
    with pytest.raises(FileUnreadable), sealed_file_open(path=tmp_path / "f", purpose="test:one") as f:
        f.read()


def test_a_file_moved_to_another_purpose_is_refused(tmp_path: Path) -> None:
    _seal(tmp_path / "f", b"for export one")
    with pytest.raises(FileUnreadable), sealed_file_open(path=tmp_path / "f", purpose="test:two") as f:
        f.read()


def test_a_plain_file_is_not_taken_for_a_sealed_one(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"PK\x03\x04 a plain zip")
    assert sealed_file_key_id(path=tmp_path / "f") is None
    with pytest.raises(FileUnreadable, match="not a sealed file"):
        sealed_file_open(path=tmp_path / "f", purpose="test:one")


def test_a_writer_left_by_an_error_deletes_what_it_wrote(tmp_path: Path) -> None:
    path = tmp_path / "cut-short"
    writer = SealedFileWriter(path=path, purpose="test:one")

    def write_then_fail() -> None:
        with writer:
            writer.write(os.urandom(CHUNK_BYTES + 10))  # a whole chunk reached the disk
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_then_fail()
    assert writer.closed
    assert not path.exists()


def test_a_discarded_writer_deletes_its_file_and_a_finished_one_keeps_it(tmp_path: Path) -> None:
    discarded, finished = tmp_path / "discarded", tmp_path / "finished"
    writer = SealedFileWriter(path=discarded, purpose="test:one")
    writer.write(b"half")
    writer.discard()
    writer.close()  # a later close (as garbage collection makes) finishes nothing
    assert not discarded.exists()
    with SealedFileWriter(path=finished, purpose="test:one") as writer:
        writer.write(b"whole")
    with sealed_file_open(path=finished, purpose="test:one") as opened:
        assert opened.read() == b"whole"
