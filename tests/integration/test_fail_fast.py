"""A dead or black-holed registry ends the command within its timeout, without retries.

Retries are for registries that answered before and broke mid-way (test_faults.py);
one that never answered is reported at the first request that goes unanswered.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers.cli import Cli

from modelreg import api
from modelreg.errors import RegistryUnavailable
from modelreg.store import RegistryOptions, Stores


class BlackHole:
    """A listener that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            self._held.append(connection)

    def close(self) -> None:
        self.server.close()
        for connection in self._held:
            connection.close()


@contextmanager
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    try:
        yield hole
    finally:
        hole.close()


@pytest.mark.parametrize("plain_http", [False, True], ids=["probed", "plain-http"])
@pytest.mark.parametrize("command", ["pull", "push", "versions"])
def test_a_black_holed_registry_fails_at_the_first_unanswered_request(
    command: str, plain_http: bool, model_dir: Path, tmp_path: Path
) -> None:
    with black_hole() as hole:
        args = {
            "pull": ["pull", f"{hole.host}/ml/x:v1", str(tmp_path / "out")],
            "push": ["push", str(model_dir), f"{hole.host}/ml/x"],
            "versions": ["versions", f"{hole.host}/ml/x"],
        }[command]
        started = time.monotonic()
        result = Cli.process(
            "--timeout", "2", *args, env={"MODELREG_PLAIN_HTTP": "1"} if plain_http else {}
        )
        elapsed = time.monotonic() - started
        accepted = hole.accepted
    assert result.returncode == 5, result.stderr
    assert "did not answer within 2 s" in result.stderr and "hint: " in result.stderr
    # one connection (the TLS probe or the first request), never a retry
    assert accepted == 1
    # before: a probe, two quick attempts and a full one, each waiting 3x the timeout
    assert elapsed < 12
    assert not (tmp_path / "out").exists()


def test_a_refused_connection_is_not_retried_before_the_registry_ever_answered(
    tmp_path: Path,
) -> None:
    from helpers.processes import free_port

    stores = Stores(home=tmp_path / "home", options=RegistryOptions(timeout=2, retries=5))
    try:
        with pytest.raises(RegistryUnavailable, match="cannot reach registry"):
            api.pull(f"127.0.0.1:{free_port()}/ml/x:v1", tmp_path / "out", stores=stores)
    finally:
        stores.close()
    assert not (tmp_path / "out").exists()


def test_the_library_fails_fast_too(tmp_path: Path) -> None:
    stores = Stores(home=tmp_path / "home", options=RegistryOptions(timeout=1, retries=5))
    try:
        with black_hole() as hole, pytest.raises(RegistryUnavailable, match="did not answer"):
            api.pull(f"{hole.host}/ml/x:v1", tmp_path / "out", stores=stores)
        assert hole.accepted == 1
    finally:
        stores.close()
