"""Skip (or, under MODELREG_TEST_STRICT=1, fail) when a real service cannot run here."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import NoReturn, TypeVar

import pytest

from helpers.processes import ServiceUnavailable

STRICT_ENV = "MODELREG_TEST_STRICT"
T = TypeVar("T")


def strict_mode() -> bool:
    """True when missing engines must fail the run instead of skipping (CI)."""
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes")


def unavailable(exc: ServiceUnavailable, what: str) -> NoReturn:
    """Skip (or, in strict mode, fail) because ``what`` cannot run here."""
    msg = f"{what} unavailable: {exc.reason}"
    if strict_mode():
        details = f"\n{exc.details}" if getattr(exc, "details", "") else ""
        pytest.fail(
            f"{msg} [{STRICT_ENV}=1 turns this skip into a failure]{details}", pytrace=False
        )
    pytest.skip(msg)


@contextlib.contextmanager
def service_or_skip(what: str, cm: contextlib.AbstractContextManager[T]) -> Iterator[T]:
    """Enter ``cm``; ServiceUnavailable raised while *starting* becomes skip/fail."""
    started = False
    refused: ServiceUnavailable | None = None
    try:
        with cm as value:
            started = True
            yield value
    except ServiceUnavailable as e:
        if started:
            raise
        refused = e
    if refused is not None:  # outside the except: no "during handling" noise
        unavailable(refused, what)


def binary_or_skip(name: str) -> str:
    """The path of the tool ``name``; skip (fail under strict mode) when it is not installed."""
    from helpers.processes import require_binary

    try:
        return require_binary(name)
    except ServiceUnavailable as exc:
        unavailable(exc, name)
