"""Stores: where models live. One ``Repository`` interface, a local and a remote kind."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from ..reference import Reference
from . import credentials
from .base import Repository, Store
from .layout import LayoutRepository, LayoutStore, layout_directory
from .options import RegistryOptions
from .remote import RemoteRepository
from .transport import Transport

if TYPE_CHECKING:
    from ..readcache import ReadCache


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    home = env.get("MODELREG_HOME")
    return Path(home).expanduser() if home else Path.home() / ".modelreg"


class Stores:
    """Opens repositories for references, reusing one connection pool per registry host.

    Configuration is read when a ``Stores`` is made, never at import time. Use it as
    a context manager (``with Stores() as stores:``) or call :meth:`close`.
    """

    def __init__(
        self,
        home: Path | None = None,
        options: RegistryOptions | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.home = home if home is not None else default_home(environ)
        self.options = options if options is not None else RegistryOptions.from_env(environ)
        self._environ = environ
        self._transports: dict[str, Transport] = {}
        self._lock = threading.Lock()
        self.local = LayoutStore(self.home / "oci")
        self._reads: ReadCache | None = None

    @property
    def reads(self) -> ReadCache:
        """What digests name, kept while these stores live (see :mod:`..readcache`)."""
        with self._lock:
            if self._reads is None:
                from ..readcache import ReadCache

                self._reads = ReadCache()
            return self._reads

    def transport(self, host: str) -> Transport:
        with self._lock:
            transport = self._transports.get(host)
            if transport is None:
                transport = Transport(
                    host,
                    self.options,
                    lambda: credentials.lookup(host, self._environ, self.options.helper_timeout),
                )
                self._transports[host] = transport
            return transport

    def repository(self, reference: Reference) -> Repository:
        if reference.layout is not None:
            return layout_directory(Path(reference.layout))
        if reference.registry is None:
            return self.local.repository(reference.repository)
        return RemoteRepository(self.transport(reference.registry), reference.repository)

    def close(self) -> None:
        for transport in self._transports.values():
            transport.close()

    def __enter__(self) -> Stores:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@contextmanager
def opened(stores: Stores | None) -> Iterator[Stores]:
    """The caller's stores (left open), or our own for this one call (closed after it)."""
    if stores is not None:
        yield stores
        return
    with Stores() as own:
        yield own


__all__ = [
    "LayoutRepository",
    "LayoutStore",
    "RegistryOptions",
    "RemoteRepository",
    "Repository",
    "Store",
    "Stores",
    "default_home",
    "opened",
]
