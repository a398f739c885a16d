"""Files sealed under a data key, written and read as streams (exports can be large).

Layout: the magic line `GHENC1\\n`, the data key id (4 bytes, big-endian) and a random 7-byte
nonce prefix, then the content in chunks of `CHUNK_BYTES`, each sealed with AES-GCM under the
nonce `prefix + chunk number (4 bytes) + last-chunk flag (1 byte)` and the header plus the
file's purpose as associated data. That is the STREAM construction (Hoang, Reyhanitabar,
Rogaway, Vizár 2015): chunks cannot be reordered, dropped or moved to another file, and a file
cut short fails instead of reading as complete, because its last chunk no longer says so.
"""

import hashlib
import io
import secrets
import struct
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidTag

from encryption.data_keys import data_key_cipher, data_key_current

MAGIC = b"GHENC1\n"
CHUNK_BYTES = 64 * 1024
_TAG_BYTES = 16
_PREFIX_BYTES = 7
_HEADER_BYTES = len(MAGIC) + 4 + _PREFIX_BYTES


class FileUnreadable(Exception):
    """The file is not one this code sealed, was altered, was cut short, or names another purpose."""


def _nonce(prefix: bytes, number: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", number, 1 if last else 0)


class SealedFileWriter(io.RawIOBase):
    """A write-only stream that seals what it is given into `path`; close it to finish the file.

    It keeps the SHA-256 and length of the plain content it was given (`sha256`, `size`). It
    has no `tell`/`seek`, so `zipfile` writes into it as into a pipe. Left by an exception (in
    a `with` block), or told to `discard`, it deletes what it wrote: no file that stops short
    is ever finished as if it were whole.
    """

    def __init__(self, *, path: Path, purpose: str) -> None:
        super().__init__()
        key = data_key_current()
        self._cipher = key.cipher
        self._prefix = secrets.token_bytes(_PREFIX_BYTES)
        self._header = MAGIC + struct.pack(">I", key.id) + self._prefix
        self._context = self._header + purpose.encode()
        self._path = path
        self._handle: IO[bytes] = path.open("wb")
        self._handle.write(self._header)
        self._pending = bytearray()
        self._number = 0
        self._digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._pending += chunk
        self._digest.update(chunk)
        self.size += len(chunk)
        # Keep at least one byte back: the last chunk is only known at close.
        while len(self._pending) > CHUNK_BYTES:
            self._seal(bytes(self._pending[:CHUNK_BYTES]), last=False)
            del self._pending[:CHUNK_BYTES]
        return len(chunk)

    def _seal(self, plain: bytes, *, last: bool) -> None:
        nonce = _nonce(self._prefix, self._number, last)
        self._handle.write(self._cipher.encrypt(nonce, plain, self._context))
        self._number += 1

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def close(self) -> None:
        if not self.closed:
            self._seal(bytes(self._pending), last=True)
            self._handle.close()
        super().close()

    def discard(self) -> None:
        """Stop without finishing the file, and delete it."""
        if not self.closed:
            self._handle.close()
            self._path.unlink(missing_ok=True)
        super().close()

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()


class SealedFileReader(io.RawIOBase):
    """A read-only stream of a sealed file's plain content; FileUnreadable on any tampering."""

    def __init__(self, *, path: Path, purpose: str) -> None:
        super().__init__()
        self._handle: IO[bytes] = path.open("rb")
        header = self._handle.read(_HEADER_BYTES)
        if len(header) != _HEADER_BYTES or not header.startswith(MAGIC):
            self._handle.close()
            raise FileUnreadable(f"{path.name} is not a sealed file.")
        (self.key_id,) = struct.unpack(">I", header[len(MAGIC) : len(MAGIC) + 4])
        self._prefix = header[-_PREFIX_BYTES:]
        self._context = header + purpose.encode()
        self._cipher = data_key_cipher(key_id=self.key_id)
        self._number = 0
        self._sealed = self._handle.read(CHUNK_BYTES + _TAG_BYTES)
        self._plain = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> None:
        following = self._handle.read(CHUNK_BYTES + _TAG_BYTES)
        last = not following
        try:
            self._plain = self._cipher.decrypt(
                _nonce(self._prefix, self._number, last), self._sealed, self._context
            )
        except InvalidTag:
            raise FileUnreadable(
                f"chunk {self._number} of a sealed file does not decrypt (altered or cut short)."
            ) from None
        self._number += 1
        self._sealed = following
        self._done = last

    def readinto(self, buffer: Any) -> int:
        while not self._plain and not self._done:
            self._next_chunk()
        size = min(len(buffer), len(self._plain))
        buffer[:size] = self._plain[:size]
        self._plain = self._plain[size:]
        return size

    def close(self) -> None:
        self._handle.close()
        super().close()


def sealed_file_key_id(*, path: Path) -> int | None:
    """The data key a file was sealed under; None when it is not a sealed file."""
    with path.open("rb") as handle:
        header = handle.read(_HEADER_BYTES)
    if len(header) != _HEADER_BYTES or not header.startswith(MAGIC):
        return None
    key_id: int = struct.unpack(">I", header[len(MAGIC) : len(MAGIC) + 4])[0]
    return key_id


def sealed_file_open(*, path: Path, purpose: str) -> io.BufferedReader:
    """Open a sealed file for reading its plain content (buffered)."""
    return io.BufferedReader(SealedFileReader(path=path, purpose=purpose))
