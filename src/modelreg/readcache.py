"""What a long-running reader may remember between requests: reads keyed by digest.

A manifest read by digest never changes (its bytes are verified against the digest),
so a process that lists a repository again and again (``modelreg ui``) keeps the
parsed manifests it has read, and the push time each version record gave, and the
next listing asks the registry only what can have changed: the tag list, and where
each tag points *now* (one ``HEAD`` per tag, or one read of the local store's index).
Nothing here maps a tag to a digest: tags move, and a moved version or stage tag
must show as moved on the next request.

The push time is keyed by repository, model digest and version number: modelreg
writes a version's record once (a lost claim is recorded again under another number
with the same time). A digest deleted by ``gc`` and pushed again as the *same* number
keeps its first push time here until the record tag is seen missing (the entry is
dropped) or the process ends.

Bounded: the least recently used entries go when the manifests held pass
``max_bytes`` (counted by their serialized size) or the push times ``max_times``.
Thread-safe: a listing reads in parallel.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable

from .oci import Descriptor, Manifest

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_TIMES = 200_000

TimeKey = tuple[str, str, str, int]


class ReadCache:
    def __init__(
        self, max_bytes: int = DEFAULT_MAX_BYTES, max_times: int = DEFAULT_MAX_TIMES
    ) -> None:
        self.max_bytes = max_bytes
        self.max_times = max_times
        self._lock = threading.Lock()
        self._manifests: OrderedDict[str, tuple[Descriptor, Manifest]] = OrderedDict()
        self._bytes = 0
        self._times: OrderedDict[TimeKey, str] = OrderedDict()
        self._listed: OrderedDict[tuple[str, str], None] = OrderedDict()

    # ----- manifests, by digest ------------------------------------------------------------

    def manifest(self, digest: str) -> tuple[Descriptor, Manifest] | None:
        with self._lock:
            found = self._manifests.get(digest)
            if found is not None:
                self._manifests.move_to_end(digest)
            return found

    def knows(self, digests: Iterable[str]) -> int:
        """How many of ``digests`` have their manifest here."""
        with self._lock:
            return sum(1 for digest in digests if digest in self._manifests)

    def remember_manifest(self, descriptor: Descriptor, manifest: Manifest) -> None:
        """Keep a manifest whose bytes were verified against ``descriptor.digest``."""
        if descriptor.size > self.max_bytes:
            return
        with self._lock:
            if descriptor.digest in self._manifests:
                self._manifests.move_to_end(descriptor.digest)
                return
            self._manifests[descriptor.digest] = (descriptor, manifest)
            self._bytes += descriptor.size
            while self._bytes > self.max_bytes:
                _, (dropped, _) = self._manifests.popitem(last=False)
                self._bytes -= dropped.size

    def listed(self, repository: tuple[str, str]) -> bool:
        """Whether a listing of ``repository`` was kept here before (then marks it so)."""
        with self._lock:
            seen = repository in self._listed
            self._listed[repository] = None
            self._listed.move_to_end(repository)
            while len(self._listed) > self.max_times:
                self._listed.popitem(last=False)
            return seen

    # ----- version push times ----------------------------------------------------------------

    def known_push_time(self, key: TimeKey) -> str | None:
        with self._lock:
            return self._times.get(key)

    def push_time(self, key: TimeKey, read: Callable[[], str]) -> str:
        """The push time under ``key``, or ``read()`` it (an empty answer is not kept)."""
        with self._lock:
            found = self._times.get(key)
            if found is not None:
                self._times.move_to_end(key)
                return found
        value = read()
        if value:
            with self._lock:
                self._times[key] = value
                while len(self._times) > self.max_times:
                    self._times.popitem(last=False)
        return value

    def forget_push_time(self, key: TimeKey) -> None:
        with self._lock:
            self._times.pop(key, None)
