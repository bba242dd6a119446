"""Layer streams by media type: plain tar, tar+gzip, tar+zstd; decoded in bounded memory.

modelreg writes uncompressed tar layers. A copy made by another tool may carry the
same files recompressed (``skopeo copy`` and ``podman push`` gzip them, ``docker
push`` also converts to the Docker v2 schema 2 media types). Such a layer is the
same layer when its *uncompressed* stream hashes to the config's ``diff_id``; the
compressed blob is still verified against its own digest. The readers here decode
a stream chunk by chunk (memory stays flat for any layer size) and check the
``diff_id`` as they go:

    raw = VerifyingReader(blob, layer.digest, layer.size, what)   # the blob as stored
    tar = DecodingReader(raw, layer.media_type, diff_id, what)    # the files' bytes
    ... read tar ...
    tar.finish(); raw.finish()                                   # both digests checked
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

from .digest import CHUNK, Readable, VerifyingReader
from .errors import IntegrityError, InvalidInput
from .oci import LAYER_TAR

LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"

# media type -> compression ("" = none)
_COMPRESSION = {
    LAYER_TAR: "",
    DOCKER_LAYER_TAR: "",
    LAYER_TAR_GZIP: "gzip",
    DOCKER_LAYER_GZIP: "gzip",
    LAYER_TAR_ZSTD: "zstd",
}
ACCEPTED_LAYER_TYPES = tuple(_COMPRESSION)
# the largest zstd window a frame may ask for (zstd's own default limit): a frame asking
# for more would make us allocate what its header says
_ZSTD_MAX_WINDOW = 1 << 27


def compression_of(media_type: str, what: str = "layer") -> str:
    """``""``, ``"gzip"`` or ``"zstd"``; InvalidInput (exit 2) for any other media type."""
    try:
        return _COMPRESSION[media_type]
    except KeyError:
        raise InvalidInput(
            f"{what} has media type {media_type!r}, which is not a tar layer",
            "modelreg reads image layers of type "
            + ", ".join(ACCEPTED_LAYER_TYPES)
            + "; this is not a model image (inspect it with 'modelreg inspect')",
        ) from None


@contextlib.contextmanager
def verified_first(blob: VerifyingReader, directory: Path) -> Iterator[BinaryIO]:
    """The whole of ``blob``, checked against its digest, to be read again from its start.

    A compressed layer can decode to thousands of times its size (64 KiB of zstd
    are gigabytes of zeros), so its bytes are decoded only once they verify: a
    substituted blob cannot fill the disk before the digest check refuses it. The
    copy is an unnamed file in ``directory`` (the staging directory the layer is
    unpacked into), gone when the block ends.
    """
    with tempfile.TemporaryFile(dir=directory) as spool:
        buffer = memoryview(bytearray(CHUNK))
        while count := blob.readinto(buffer):
            spool.write(buffer[:count])
        blob.finish()
        spool.seek(0)
        yield spool


class DecodingReader:
    """The uncompressed bytes of a layer stream, hashed for its ``diff_id`` as they pass.

    ``finish`` drains what the consumer did not read (so nothing after the files
    escapes the hash) and checks the ``diff_id`` when one was given; a stream that
    does not decode is IntegrityError naming the layer.
    """

    def __init__(
        self, raw: Readable, media_type: str, diff_id: str | None, what: str = "layer"
    ) -> None:
        self._what = what
        self._expected = diff_id
        self._hash = hashlib.sha256()
        self._count = 0
        compression_of(media_type, what)  # refuse what is not a tar layer at all
        # the stream's own magic number decides, as containerd does: ``docker push``
        # labels every layer tar+gzip, also one it reuses uncompressed (the diff_id
        # check below proves the content whichever way it was stored)
        head = _read_exactly(raw, 4)
        self._decoder = _decoder(_Prefixed(head, raw), _sniff(head))

    @property
    def bytes_read(self) -> int:
        """Uncompressed bytes read so far."""
        return self._count

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            parts = []
            while chunk := self.read(CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        try:
            data: bytes = self._decoder.read(size)
        except (OSError, EOFError, zlib.error, _zstd_error()) as exc:
            raise IntegrityError(
                f"{self._what}: the compressed stream does not decode ({exc})",
                "the blob is corrupt or its media type is wrong; nothing from it was kept",
            ) from None
        self._count += len(data)
        self._hash.update(data)
        return data

    def finish(self) -> str:
        """Drain, check the ``diff_id`` (when given) and return the uncompressed digest."""
        while self.read(CHUNK):
            pass
        actual = f"sha256:{self._hash.hexdigest()}"
        if self._expected is not None and actual != self._expected:
            raise IntegrityError(
                f"{self._what}: uncompressed content {actual} does not match the config's "
                f"diff_id {self._expected}",
                "the layer is not the one the image config names; nothing from it was kept",
            )
        return actual


_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _sniff(head: bytes) -> str:
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return ""


def _read_exactly(raw: Readable, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = raw.read(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


class _Prefixed:
    """``head`` (already read) followed by the rest of ``raw``."""

    def __init__(self, head: bytes, raw: Readable) -> None:
        self._head = head
        self._raw = raw

    def read(self, size: int = -1, /) -> bytes:
        if self._head:
            if size is None or size < 0:
                data, self._head = self._head + self._raw.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._raw.read(size)


def _decoder(raw: Readable, compression: str) -> Any:
    if compression == "gzip":
        # GzipFile reads its source in small chunks and handles multi-member streams
        return gzip.GzipFile(fileobj=cast(Any, raw), mode="rb")
    if compression == "zstd":
        import zstandard  # imported here: only copies made by other tools need it

        return zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW).stream_reader(
            cast(Any, raw), read_across_frames=True, closefd=False
        )
    return raw


def _zstd_error() -> type[Exception]:
    try:
        import zstandard
    except ImportError:  # pragma: no cover - a runtime dependency
        return IntegrityError
    return zstandard.ZstdError
