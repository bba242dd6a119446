"""Blob bodies in flight: a download that resumes where it broke, an upload that hashes as it goes.

A body whose connection breaks or stalls is :class:`RegistryUnavailable`, one
that cannot be decoded :class:`IntegrityError`: never a traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

from ..errors import IntegrityError, RegistryUnavailable
from .base import BytesCallback
from .pacing import read_paced

if TYPE_CHECKING:
    import requests

    from .remote import RemoteRepository

_T = TypeVar("_T")
_PIECE = 256 << 10  # bytes lost at most when a connection breaks mid-read


class ResponseBody:
    """A response body whose transport failures are modelreg errors, not tracebacks.

    Raw blob bytes are read straight from ``http.client`` (``readinto`` fills the
    caller's buffer from the socket, with none of urllib3's intermediate copies);
    ``decode`` bodies go through urllib3, which undoes a content encoding. A
    connection that breaks or stalls mid-body, or ends before its Content-Length, is
    :class:`RegistryUnavailable` (try again); a body that cannot be decoded is
    :class:`IntegrityError`.
    """

    def __init__(
        self, response: requests.Response, host: str, what: str, *, decode: bool = False
    ) -> None:
        self._raw = response.raw
        fp = getattr(response.raw, "_fp", None)
        self._fp = fp if isinstance(fp, http.client.HTTPResponse) and not decode else None
        self._host = host
        self._what = what
        self._decode = decode
        declared = response.headers.get("Content-Length")
        self._remaining = int(declared) if declared and declared.isdigit() else None
        self._broken_by: RegistryUnavailable | None = None

    def read(self, size: int = -1, /) -> bytes:
        amount = None if size < 0 else size
        self._raise_held_break()
        with self._guard():
            if self._fp is not None:
                data = self._fp.read(amount)
            else:
                data = self._raw.read(amount, decode_content=self._decode)
        self._account(len(data), wanted=size != 0)
        return data

    def read_small(self, limit: int, grace: float) -> bytes:
        """Up to ``limit`` bytes of a small answer, which must not trickle (``pacing``)."""

        def read1(size: int) -> bytes:
            with self._guard():  # through urllib3 (raw or decoded): small answers only
                piece = self._raw.read1(size, decode_content=self._decode)
            self._account(len(piece), wanted=True)
            return piece

        return read_paced(read1, limit, grace, self._host)

    def readinto(self, buffer: memoryview | bytearray, /) -> int:
        """Fill ``buffer`` in pieces, handing out what arrived before a break.

        ``http.client`` fills one buffer in several socket reads and drops them all
        when a later one fails; read piece by piece, the bytes received before a
        break are returned (and kept by a resumable pull) and the break is raised
        on the next call.
        """
        self._raise_held_break()
        if self._fp is None:
            data = self.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        view = memoryview(buffer)
        filled = 0
        while filled < len(view):
            piece = view[filled : filled + _PIECE]
            try:
                with self._guard():
                    count = self._fp.readinto(piece)
                self._account(count, wanted=True)
            except RegistryUnavailable as broken:
                if not filled:
                    raise
                self._broken_by = broken
                break
            filled += count
            if count < len(piece):
                break
        return filled

    def _raise_held_break(self) -> None:
        if self._broken_by is not None:
            broken, self._broken_by = self._broken_by, None
            raise broken

    def _account(self, count: int, *, wanted: bool) -> None:
        """An early end of a body with a known length is a broken connection, not EOF."""
        if self._remaining is None or self._decode:
            return
        if count == 0 and wanted and self._remaining > 0:
            raise self._broken("connection broke")
        self._remaining -= count

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        import urllib3  # loaded already: this body came through requests

        try:
            yield
        except urllib3.exceptions.DecodeError:
            raise IntegrityError(
                f"{self._what}: registry {self._host} sent a body that cannot be decoded"
            ) from None
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
            reason = "read timed out" if "timed out" in str(exc).lower() else "connection broke"
            raise self._broken(reason) from None

    def _broken(self, reason: str) -> RegistryUnavailable:
        return RegistryUnavailable(
            f"{self._what}: the connection to registry {self._host} broke mid-transfer ({reason})",
            "nothing unverified was trusted; try again (a pull resumes where it broke)",
        )


class ResumingBlob:
    """A blob download that picks up where a broken connection left it.

    The distribution spec lets registries serve blobs by range, and registry:2 and
    the cloud registries do; so a body that breaks mid-transfer is asked again with
    ``Range: bytes=<received>-`` (up to ``retries`` times, with backoff) and the bytes
    already handed out are not fetched again. The caller's digest check over the
    whole stream still decides whether the result is trusted. A registry that ignores
    the range and sends the whole blob is read from its start, skipping what we had.
    """

    def __init__(self, repository: RemoteRepository, digest: str, offset: int = 0) -> None:
        self._repository = repository
        self._digest = digest
        self._offset = offset
        self._resumes = 0
        self._response: requests.Response | None = None
        self._body = self._open()

    def read(self, size: int = -1, /) -> bytes:
        data = self._resuming(lambda body: body.read(size))
        self._offset += len(data)
        return data

    def readinto(self, buffer: memoryview | bytearray, /) -> int:
        count = self._resuming(lambda body: body.readinto(buffer))
        self._offset += count
        return count

    def _resuming(self, read: Callable[[ResponseBody], _T]) -> _T:
        while True:
            try:
                return read(self._body)
            except RegistryUnavailable as broken:
                self._resume(broken)

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def _open(self) -> ResponseBody:
        response, skip = self._repository._get_blob(self._digest, self._offset)
        self._response = response
        body = ResponseBody(response, self._repository.transport.host, f"blob {self._digest}")
        while skip:
            skipped = len(body.read(min(skip, 1 << 20)))
            if not skipped:
                raise body._broken("the registry sent less than it had sent before")
            skip -= skipped
        return body

    def _resume(self, broken: RegistryUnavailable) -> None:
        retries = self._repository.transport.options.retries
        while True:
            self.close()
            if self._resumes >= retries:
                raise broken
            self._resumes += 1
            self._repository.transport.pause_before_retry(self._resumes)
            try:
                self._body = self._open()
                return
            except RegistryUnavailable as again:
                broken = again


class HashingBody:
    """A request body of known length that hashes its chunks as they are sent."""

    def __init__(self, chunks: Iterable[bytes], size: int, on_bytes: BytesCallback | None) -> None:
        self._chunks = chunks
        self._size = size
        self._on_bytes = on_bytes
        self._hash = hashlib.sha256()
        self.sent = 0
        self.restartable = True

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        self.restartable = not isinstance(self._chunks, Iterator)
        for chunk in self._chunks:
            self._hash.update(chunk)
            self.sent += len(chunk)
            if self.sent > self._size:
                raise IntegrityError(f"blob stream is longer than the declared {self._size} bytes")
            if self._on_bytes:
                self._on_bytes(len(chunk))
            yield chunk

    def digest(self) -> str:
        return f"sha256:{self._hash.hexdigest()}"
