"""A facade call closes the stores it opened itself and leaves the caller's open;
which repositories can keep their own blobs is a capability, not a class."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.models import unique_repo
from helpers.registry import Registry

from modelreg import api
from modelreg.reference import parse_reference
from modelreg.store import Stores, opened
from modelreg.store.base import LocalMaintenance


def _connections_to(port: int) -> int:
    """This process's established TCP connections to ``port`` (read from /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


@pytest.fixture
def no_collector() -> Iterator[None]:
    """Connections left open must show: no cyclic collection closes them behind our back."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_call_without_stores_closes_the_connections_it_opened(
    registry: Registry, model_dir: Path, no_collector: None
) -> None:
    target = f"{registry.host}/{unique_repo()}"
    with Stores() as setup:
        api.push(model_dir, target, stores=setup, capture=False)
    assert _connections_to(registry.port) == 0
    for _ in range(3):
        assert [row.version for row in api.versions(target)] == [1]
        assert api.inspect(f"{target}:v1").version == 1
    assert _connections_to(registry.port) == 0


def test_given_stores_stay_open_and_with_closes_them(
    registry: Registry, model_dir: Path, home: Path, no_collector: None
) -> None:
    target = f"{registry.host}/{unique_repo()}"
    with Stores(home=home) as stores:
        api.push(model_dir, target, stores=stores, capture=False)
        with opened(stores) as same:
            assert same is stores
        # the caller's connection pool survives the calls that borrowed it
        assert _connections_to(registry.port) >= 1
        assert [row.version for row in api.versions(target, stores=stores)] == [1]
    assert _connections_to(registry.port) == 0


def test_local_maintenance_is_a_capability_of_the_local_store_only(
    registry: Registry, stores: Stores
) -> None:
    local = stores.repository(parse_reference(unique_repo()))
    remote = stores.repository(parse_reference(f"{registry.host}/{unique_repo()}"))
    assert isinstance(local, LocalMaintenance)
    assert not isinstance(remote, LocalMaintenance)
