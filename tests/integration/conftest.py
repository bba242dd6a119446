"""Fixtures for the tests that run against real services.

Engines: ``registry``, ``make_registry``, ``containerd``, ``dockerd``, ``skopeo``
(launchers in ``helpers/registry.py`` and ``helpers/engines.py``); ``target`` (a fresh
repository on the local store and on the shared registry); ``hostile`` (a registry
that lies on purpose, ``helpers/hostile_registry.py``).

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
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.engines import Containerd, Dockerd, run_containerd, run_dockerd
from helpers.fault_proxy import FaultProxy, fault_proxy
from helpers.hostile_registry import HostileRegistry
from helpers.models import unique_repo
from helpers.processes import (
    remove_tree,
    short_tempdir,
    sweep_stale_tempdirs,
)
from helpers.registry import Registry, run_registry
from helpers.skips import binary_or_skip, service_or_skip


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
    with service_or_skip("registry", run_registry(engines_tmp / "registry")) as reg:
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
        reg: Registry = stack.enter_context(
            service_or_skip("registry", run_registry(workdir, **kwargs))
        )
        return reg

    with stack:
        yield factory


@pytest.fixture(scope="session")
def containerd(engines_tmp: Path) -> Iterator[Containerd]:
    """A private containerd; ``containerd.ctr(...)`` runs ctr in namespace modelreg-test."""
    with service_or_skip("containerd", run_containerd(engines_tmp / "ctd")) as cd:
        yield cd


@pytest.fixture(scope="session")
def dockerd(engines_tmp: Path, containerd: Containerd) -> Iterator[Dockerd]:
    """A private dockerd (vfs, no networking) over the ``containerd`` fixture."""
    with service_or_skip("dockerd", run_dockerd(engines_tmp / "dd", containerd)) as dd:
        yield dd


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the ``registry`` fixture (tests add its rules)."""
    with fault_proxy(registry.host) as running:
        yield running


@pytest.fixture(scope="session")
def skopeo() -> str:
    """Path of the skopeo binary (a peer OCI client); skip/fail when missing."""
    return binary_or_skip("skopeo")


@pytest.fixture(params=["local", "registry"])
def target(request: pytest.FixtureRequest) -> str:
    """A fresh repository name on the local store and on the shared real registry."""
    if request.param == "local":
        return unique_repo("fraud")
    registry: Registry = request.getfixturevalue("registry")
    return f"{registry.host}/{unique_repo()}"


@pytest.fixture
def hostile() -> Iterator[HostileRegistry]:
    """A registry that lies on purpose (helpers/hostile_registry.py), on a free loopback port."""
    with HostileRegistry() as server:
        yield server


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for this test (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
