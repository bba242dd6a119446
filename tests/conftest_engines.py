"""pytest fixtures for real engines: ``registry``, ``make_registry``, ``containerd``, ``dockerd``.

Import them from the real ``conftest.py``::

    from conftest_engines import *  # noqa: F401,F403

When a machine cannot run a service (binary missing, not root, kernel refuses)
the fixture skips with the reason; with ``MODELREG_TEST_STRICT=1`` (CI) it
fails instead, so a broken CI image cannot turn the engine tests green by
skipping them.

Scopes: ``containerd``, ``dockerd`` and ``registry`` are session-scoped: one
of each per run, so tests must use unique repository names (the registry, the
docker image store and the containerd namespace are shared).  Tests that need
a registry of their own (fault injection, auth, TLS, an empty catalogue, a
restart) use the ``make_registry`` factory (start-up ~0.1 s), whose registries
are stopped when the test ends.  Never stop/kill the shared ``registry``.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

# services.py lives next to this file; make that importable whatever pytest's
# import mode (prepend puts tests/ on sys.path, importlib does not).
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
import services  # noqa: E402

# One module object under both names, so ``except ServiceUnavailable`` matches
# (and fixtures are not defined twice) however a test module imported it.
sys.modules.setdefault("services", services)
sys.modules.setdefault("tests.services", services)
sys.modules.setdefault("conftest_engines", sys.modules[__name__])
sys.modules.setdefault("tests.conftest_engines", sys.modules[__name__])

from services import (  # noqa: E402
    Containerd,
    Dockerd,
    Registry,
    ServiceUnavailable,
    remove_tree,
    require_binary,
    run_containerd,
    run_dockerd,
    run_registry,
    short_tempdir,
    sweep_stale_tempdirs,
)

__all__ = [
    "containerd",
    "dockerd",
    "engines_tmp",
    "make_registry",
    "registry",
    "skopeo",
    "strict_mode",
    "unavailable",
]

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
def _service(what: str, cm: contextlib.AbstractContextManager[T]) -> Iterator[T]:
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


@pytest.fixture(scope="session")
def engines_tmp() -> Iterator[Path]:
    """A short directory under /tmp for all engine state; removed (mounts first) at the end.

    Also sweeps dirs left by earlier runs that were SIGKILLed (their services
    died with them through PDEATHSIG, but dirs and dockerd's bind mount stay).
    """
    sweep_stale_tempdirs("mr-")
    path = short_tempdir("mr-")
    try:
        yield path
    finally:
        remove_tree(path)


@pytest.fixture(scope="session")
def registry(engines_tmp: Path) -> Iterator[Registry]:
    """A plain registry (no auth, plain HTTP, delete enabled) shared by the session."""
    with _service("registry", run_registry(engines_tmp / "registry")) as reg:
        yield reg


_counter = iter(range(1, 1 << 30))


@pytest.fixture
def make_registry(
    engines_tmp: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Registry]]:
    """Factory: ``make_registry(htpasswd=…, tls=…, extra_config=…, port=…)`` -> a started Registry.

    Each call gets fresh storage; all are stopped when the test ends.
    """
    stack = contextlib.ExitStack()
    safe = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:40]

    def factory(**kwargs: Any) -> Registry:
        workdir = engines_tmp / f"reg-{next(_counter)}-{safe}"
        reg: Registry = stack.enter_context(_service("registry", run_registry(workdir, **kwargs)))
        return reg

    with stack:
        yield factory


@pytest.fixture(scope="session")
def containerd(engines_tmp: Path) -> Iterator[Containerd]:
    """A private containerd; ``containerd.ctr(...)`` runs ctr in namespace modelreg-test."""
    with _service("containerd", run_containerd(engines_tmp / "ctd")) as cd:
        yield cd


@pytest.fixture(scope="session")
def dockerd(engines_tmp: Path, containerd: Containerd) -> Iterator[Dockerd]:
    """A private dockerd (vfs, no networking) over the ``containerd`` fixture."""
    with _service("dockerd", run_dockerd(engines_tmp / "dd", containerd)) as dd:
        yield dd


@pytest.fixture(scope="session")
def skopeo() -> str:
    """Path of the skopeo binary (a peer OCI client); skip/fail when missing."""
    try:
        return require_binary("skopeo")
    except ServiceUnavailable as e:
        unavailable(e, "skopeo")
