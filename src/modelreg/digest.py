"""Content digests: validation, hashing, and readers that verify as they stream."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Protocol

from .errors import IntegrityError, InvalidInput

ALGORITHM = "sha256"
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_ANY_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
CHUNK = 1 << 20


def parse_digest(value: str) -> str:
    """Return ``value`` if it is a sha256 digest in canonical form, else raise InvalidInput."""
    if _DIGEST.fullmatch(value):
        return value
    if _ANY_DIGEST.fullmatch(value) and not value.startswith("sha256:"):
        raise InvalidInput(
            f"unsupported digest algorithm in {value!r}",
            "modelreg reads and writes sha256 digests only",
        )
    raise InvalidInput(
        f"invalid digest {value!r}", "a digest is 'sha256:' followed by 64 lowercase hex digits"
    )


def is_digest(value: str) -> bool:
    return _DIGEST.fullmatch(value) is not None


def hex_part(digest: str) -> str:
    return digest.split(":", 1)[1]


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def sha256_file(path: Path) -> str:
    """Digest of a file's bytes, read in chunks (memory stays flat for any size)."""
    with open(path, "rb") as handle:
        return f"sha256:{hashlib.file_digest(handle, 'sha256').hexdigest()}"


def verify_bytes(data: bytes, digest: str, what: str) -> None:
    actual = sha256_digest(data)
    if actual != digest:
        raise IntegrityError(
            f"{what}: content digest {actual} does not match the expected {digest}",
            "the registry or store returned corrupted or substituted content; nothing was kept",
        )


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class VerifyingReader:
    """Wraps a byte stream; hashes and counts everything read; ``finish`` checks both.

    ``finish`` drains what the consumer did not read, so trailing bytes an attacker
    appended cannot escape the digest check.
    """

    def __init__(self, raw: Readable, digest: str, size: int, what: str) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self._expected = digest
        self._size = size
        self._read = 0
        self._what = what

    def read(self, size: int = -1, /) -> bytes:
        remaining = self._size - self._read
        if remaining <= 0:
            return b""
        data = self._raw.read(remaining if size < 0 else min(size, remaining))
        self._read += len(data)
        self._hash.update(data)
        return data

    def readinto(self, buffer: memoryview | bytearray, /) -> int:
        """Fill (part of) ``buffer`` from the stream, without an intermediate copy if it can."""
        view = memoryview(buffer)
        remaining = self._size - self._read
        if remaining <= 0:
            return 0
        if len(view) > remaining:
            view = view[:remaining]
        readinto = getattr(self._raw, "readinto", None)
        if readinto is not None:
            count = int(readinto(view) or 0)
        else:
            data = self._raw.read(len(view))
            count = len(data)
            view[:count] = data
        self._read += count
        self._hash.update(view[:count])
        return count

    @property
    def bytes_read(self) -> int:
        return self._read

    def finish(self) -> None:
        while self._read < self._size:
            if not self.read(CHUNK):
                break
        if self._raw.read(1):
            raise IntegrityError(
                f"{self._what}: more than the declared {self._size} bytes",
                "the registry or store returned content that does not match its descriptor",
            )
        if self._read != self._size:
            raise IntegrityError(
                f"{self._what}: got {self._read} bytes, expected {self._size}",
                "the transfer was cut short or the content was truncated; try again",
            )
        actual = f"sha256:{self._hash.hexdigest()}"
        if actual != self._expected:
            raise IntegrityError(
                f"{self._what}: content digest {actual} does not match the expected "
                f"{self._expected}",
                "the registry or store returned corrupted or substituted content; nothing was kept",
            )
