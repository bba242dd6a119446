"""Downloads that survive a kill: what arrived of each blob is kept, and only the rest is asked.

Every blob downloaded from a registry is also written, as it streams, to
``<area>/sha256-<hex>`` (the area is ``$MODELREG_HOME/partial``). Nothing trusts
those files: the next download of the same blob — by any process — reads their
bytes back through the caller's digest check as if they came off the wire, and
asks the registry only for the bytes after them (``Range``; a registry that
ignores it is read past what we had). A blob whose bytes do not verify has its
file removed. The caller removes the files once what it built from them is in
place (a pull's directory, the resolver's layer cache).

One process at a time writes a blob's file (an exclusive ``flock``); another
process downloading the same blob meanwhile streams it without keeping anything.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from .digest import Readable, hex_part, is_digest
from .errors import RegistryError, RegistryUnavailable
from .oci import Descriptor
from .store.base import Repository

PARTIAL_DIR = "partial"


class PartialArea:
    """Kept blob prefixes under ``root``, keyed by digest."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        return self.root / f"sha256-{hex_part(digest)}"

    @contextlib.contextmanager
    def open_blob(self, repository: Repository, descriptor: Descriptor) -> Iterator[Readable]:
        """The blob's bytes: the kept prefix first, then the registry's rest, kept as read.

        Stores that are local files already (or that cannot serve from an offset)
        are read directly, keeping nothing.
        """
        open_from = getattr(repository, "open_blob_from", None)
        handle = self._claim(descriptor) if open_from is not None else None
        if handle is None:
            with repository.open_blob(descriptor) as raw:
                yield raw
            return
        try:
            kept = os.fstat(handle).st_size
            if kept > descriptor.size:
                os.ftruncate(handle, 0)
                kept = 0
            if kept == descriptor.size:  # all there: nothing to ask (a range past the end is 416)
                yield _Resumed(handle, kept, _Nothing())
                return
            assert open_from is not None
            with contextlib.ExitStack() as stack:
                try:
                    rest = stack.enter_context(open_from(descriptor, kept))
                except RegistryError:
                    if not kept:
                        raise
                    # a registry that mishandles ranges: start over rather than fail forever
                    os.ftruncate(handle, 0)
                    kept = 0
                    rest = stack.enter_context(open_from(descriptor, 0))
                yield _Resumed(handle, kept, rest)
        finally:
            os.close(handle)

    def _claim(self, descriptor: Descriptor) -> int | None:
        """This blob's file, opened for appending and locked; None when not keepable."""
        if not is_digest(descriptor.digest):
            return None
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            handle = os.open(
                self.path(descriptor.digest),
                os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
        except OSError:
            return None  # a read-only home or a full disk: download without keeping
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(handle)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None  # another process is downloading it right now
            return None
        return handle

    @contextlib.contextmanager
    def kept_only_for_the_transport(self, digest: str) -> Iterator[None]:
        """Forget ``digest``'s kept bytes when the block fails for any other reason.

        A broken or refused connection (or an interrupted process) leaves bytes worth
        resuming from. Any other failure — a digest mismatch, a layer refused for what
        it holds, a full disk — may have come from the kept bytes themselves, which
        would then be replayed into every later download of the blob, from any registry.
        """
        try:
            yield
        except (RegistryUnavailable, RegistryError):
            raise
        except Exception:
            self.discard([digest])
            raise

    def discard(self, digests: Iterable[str]) -> None:
        """Forget the kept bytes of ``digests`` (done with them, or they did not verify)."""
        for digest in digests:
            if is_digest(digest):
                with contextlib.suppress(OSError):
                    self.path(digest).unlink()


class _Resumed:
    """The kept prefix from ``handle``, then ``rest`` (appended to ``handle`` as read)."""

    def __init__(self, handle: int, kept: int, rest: Readable) -> None:
        self._handle = handle
        self._kept = kept
        self._position = 0
        self._rest = rest
        self._rest_readinto = getattr(rest, "readinto", None)
        self._keeping = True
        self.resumed_from = kept

    def read(self, size: int = -1, /) -> bytes:
        if self._position < self._kept:
            want = (
                self._kept - self._position if size < 0 else min(size, self._kept - self._position)
            )
            data = os.pread(self._handle, want, self._position)
            self._position += len(data)
            return data
        data = self._rest.read(size)
        self._keep(data)
        return data

    def readinto(self, buffer: memoryview | bytearray, /) -> int:
        if self._position < self._kept or self._rest_readinto is None:
            data = self.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        count = int(self._rest_readinto(buffer) or 0)
        self._keep(memoryview(buffer)[:count])
        return count

    def _keep(self, data: bytes | memoryview) -> None:
        if not self._keeping or not data:
            self._position += len(data)
            return
        try:
            os.pwrite(self._handle, data, self._position)
        except OSError:
            self._keeping = False  # a full disk: keep streaming, stop keeping
        self._position += len(data)


class _Nothing:
    def read(self, size: int = -1, /) -> bytes:
        return b""
