"""Moving the blobs of one model several at a time: a bounded pool, one progress stream.

``run_layers`` runs one job per layer on at most ``concurrency`` threads (blob I/O
releases the GIL, hashing in ``hashlib`` too). Each job streams its blob in fixed
chunks, so memory grows with the worker count, never with the model size.

When a job fails, the jobs not started yet never start, the running ones stop at
their next chunk (their progress callback raises :class:`Cancelled`), and the first
error is raised with the layer it happened in named. Callers write the manifest only
after ``run_layers`` returned, so a failure leaves no manifest and no tag behind.

Progress events of all jobs go through one lock to the caller's callback, each
followed by a ``total`` event (empty title) summing every layer's bytes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from .errors import AuthError, InvalidInput, ModelregError

DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 64
TOTAL = "total"  # the action of the summed progress event

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


class Cancelled(BaseException):
    """Raised inside a job's progress callback once another job has failed.

    A ``BaseException``, so that the stores' retry loops (``except Exception``) let
    it through instead of retrying the upload it stopped.
    """


def concurrency_from(value: int | str | None) -> int:
    """The worker count: ``value``, else ``MODELREG_CONCURRENCY``, else the default."""
    if value is None:
        value = os.environ.get("MODELREG_CONCURRENCY") or DEFAULT_CONCURRENCY
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if not 1 <= count <= MAX_CONCURRENCY:
        raise InvalidInput(
            f"concurrency {value!r} is not a whole number from 1 to {MAX_CONCURRENCY}",
            f"pass --concurrency N (or MODELREG_CONCURRENCY) with 1 <= N <= {MAX_CONCURRENCY}",
        )
    return count


class ProgressHub:
    """Serialises the jobs' progress events and adds the running total after each."""

    def __init__(self, report: Callable[[Any], None], event_type: type, total: int) -> None:
        self._report = report
        self._event_type = event_type
        self._total = total
        self._done: dict[str, int] = {}
        self._lock = threading.Lock()
        self.stop = threading.Event()

    def __call__(self, event: Any) -> None:
        if self.stop.is_set():
            raise Cancelled
        with self._lock:
            title = getattr(event, "title", "")
            self._done[title] = max(self._done.get(title, 0), int(getattr(event, "done", 0)))
            self._report(event)
            done = sum(self._done.values())
            self._report(self._event_type(TOTAL, "", None, min(done, self._total), self._total))


def run_layers(
    items: Sequence[_Item],
    job: Callable[[_Item], _Result],
    *,
    name: Callable[[_Item], str],
    concurrency: int,
    hub: ProgressHub | None = None,
) -> list[_Result]:
    """``job(item)`` for every item, at most ``concurrency`` at once; results in order."""
    if concurrency <= 1 or len(items) <= 1:
        results = []
        for item in items:
            try:
                results.append(job(item))
            except ModelregError as error:
                raise _naming(error, name(item)) from None
        return results
    with ThreadPoolExecutor(
        max_workers=min(concurrency, len(items)), thread_name_prefix="modelreg-layer"
    ) as pool:
        futures: list[Future[_Result]] = [pool.submit(job, item) for item in items]
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f.done() and f.exception() is not None), None)
        if failed is None:
            return [f.result() for f in futures]
        if hub is not None:
            hub.stop.set()
        for future in futures:
            future.cancel()
        wait(futures)  # the running ones stop at their next chunk
    # the first real failure, not a job that stopped because of it
    for item, future in zip(items, futures, strict=True):
        failure = None if future.cancelled() else future.exception()
        if failure is not None and not isinstance(failure, Cancelled):
            if isinstance(failure, ModelregError):
                raise _naming(failure, name(item)) from None
            raise failure
    raise AssertionError("a layer job failed without an error")


# errors about the registry as a whole (auth, reachability, TLS), not about one layer
_REGISTRY_WIDE = ("registry ", "cannot reach registry ", "TLS with ", "token service ")


def _naming(error: ModelregError, layer: str) -> ModelregError:
    """``error`` with the layer it happened in named first (unless it already is, or the
    error is about the registry as a whole)."""
    if isinstance(error, AuthError) or error.message.startswith(_REGISTRY_WIDE):
        return error
    if layer and f"layer {layer}" not in error.message:
        error.message = f"layer {layer}: {error.message}"
        error.args = (error.message,)
    return error
