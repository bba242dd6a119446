"""When to try a request again, and the fail-fast rule until a registry has answered once.

Retries back off exponentially with jitter (and honour a short ``Retry-After``);
connection failures are retried only once the registry has answered (it broke
mid-way), never before: until then the first refused or silent connection ends
the command, and every other thread waiting on the same registry fails with that
error at once instead of each waiting a timeout.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..errors import RegistryUnavailable

if TYPE_CHECKING:
    import requests

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


def backoff(attempt: int) -> float:
    """Exponential from 0.1 s, capped at 2 s, with jitter so that clients spread out."""
    return min(2.0, 0.1 * 2.0 ** (attempt - 1)) * (0.5 + random.random())


def wait_to_retry(attempt: int, deadline: float, response: requests.Response | None = None) -> bool:
    """Sleep before retry ``attempt``; False (no sleep) if a connection retry would pass
    ``deadline``. A response's short ``Retry-After`` (at most 10 s) is honoured."""
    delay = backoff(attempt)
    retry_after = response.headers.get("Retry-After") if response is not None else None
    if retry_after and retry_after.isdigit():
        delay = max(delay, min(float(retry_after), 10.0))
    if response is None and time.monotonic() + delay > deadline:
        return False
    time.sleep(delay)
    return True


def silent(host: str, timeout: float) -> RegistryUnavailable:
    return RegistryUnavailable(
        f"registry {host} accepted the connection but did not answer within {timeout:g} s",
        "check that a registry (and not something else) listens there and is not hung "
        "(--timeout or MODELREG_TIMEOUT sets how long to wait)",
    )


class FirstContact:
    """Whether a registry has answered yet, and one request at a time until it has.

    Threads of a parallel transfer queue in ``guard``; when the one in front finds
    the registry silent or unreachable, the others fail with the same error at once
    (for ``timeout`` seconds) instead of each waiting a timeout of their own.
    """

    def __init__(self, timeout: float) -> None:
        self.answered = False
        self._timeout = timeout
        self._lock = threading.RLock()
        self._failed: tuple[RegistryUnavailable, float] | None = None

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        self._lock.acquire()
        if self.answered:
            self._lock.release()
            yield
            return
        try:
            failed = self._failed
            if failed is not None and time.monotonic() - failed[1] < self._timeout:
                raise RegistryUnavailable(failed[0].message, failed[0].hint)
            try:
                yield
            except RegistryUnavailable as error:
                if not self.answered:
                    self._failed = (error, time.monotonic())
                raise
        finally:
            self._lock.release()
