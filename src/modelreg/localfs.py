"""The local file system's refusals as ModelregErrors: a full disk, a read-only one, a long name.

Pulling into a directory, caching in the resolver and writing the local store
all write files. When the kernel refuses (``ENOSPC``, ``EDQUOT``, ``EROFS``,
``ENAMETOOLONG``) the caller gets one line, a hint and an exit code instead of an
``OSError``. Every writer already removes its partial files on the way out
(staging directories, temporary names renamed into place only when complete), so
translating the error where the operation starts keeps "nothing partial".

A name component longer than any file system allows (``NAME_MAX``, 255 bytes)
inside a layer is not the local disk's fault: ``packing`` refuses it as a
hostile layer (exit 6) before writing anything.
"""

from __future__ import annotations

import contextlib
import errno
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from .errors import InvalidInput, LocalStorageError, ModelregError

NAME_MAX = 255  # bytes in one path component on ext4, xfs, btrfs, tmpfs, overlayfs, APFS

_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

P = ParamSpec("P")
T = TypeVar("T")


@contextlib.contextmanager
def local_writes(what: str, where: str | Path) -> Iterator[None]:
    """Run a block that writes below ``where``; its file-system refusals become ModelregErrors.

    ``what`` says what was being done ("pulling …", "caching …") for the message.
    Other OSErrors pass through unchanged.
    """
    try:
        yield
    except OSError as exc:
        error = local_error(exc, what, where)
        if error is None:
            raise
        raise error from None


def local_error(exc: OSError, what: str, where: str | Path) -> ModelregError | None:
    """The ModelregError for a full, read-only or name-refusing file system, else None."""
    if exc.errno in _FULL:
        kind = "disk quota exceeded" if exc.errno == errno.EDQUOT else "no space left on device"
        return LocalStorageError(
            f"{what} failed: {kind} (writing below {where})",
            "free space there, or write somewhere else (the destination, the resolver's "
            "cache_dir, MODELREG_HOME), and run it again; nothing partial was kept",
        )
    if exc.errno == errno.EROFS:
        return LocalStorageError(
            f"{what} failed: {where} is on a read-only file system",
            "write somewhere writable (the destination, the resolver's cache_dir, MODELREG_HOME)",
        )
    if exc.errno == errno.ENAMETOOLONG:
        return InvalidInput(
            f"{what} failed: a path below {where} is too long for the file system",
            "use a shorter destination path",
        )
    return None


def writes_below(
    what: str, where: Callable[[Any], str | Path]
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """A method decorator: ``local_writes(what, where(self))`` around the whole call."""

    def decorate(method: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(method)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            with local_writes(what, where(args[0])):
                return method(*args, **kwargs)

        return wrapper

    return decorate
