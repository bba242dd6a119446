"""Shared fixtures: an isolated MODELREG_HOME, model directories, store targets, the CLI.

Services (registries, containerd, dockerd) come from conftest_engines.py and are
real processes on loopback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest_engines import *  # noqa: F403
from conftest_engines import Registry
from hostile_registry import HostileRegistry
from typer.testing import CliRunner

from modelreg.cli import app, format_error
from modelreg.errors import ModelregError
from modelreg.store import RegistryOptions, Stores


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the developer's ~/.modelreg or ~/.docker."""
    monkeypatch.setenv("MODELREG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    # nor the containers tools' logins (podman/skopeo/buildah auth.json)
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    (tmp_path / "xdg-runtime").mkdir(mode=0o700)  # podman refuses a missing one
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg-runtime"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    for name in ("MODELREG_CA_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "MODELREG_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def stores(home: Path) -> Iterator[Stores]:
    made = Stores(home=home, options=RegistryOptions(settle=0.05))
    yield made
    made.close()


def write_model(root: Path, *, large: int = 9 * 1024 * 1024, seed: bytes = b"") -> Path:
    """A model directory: one large weights file, small config files, a subdirectory."""
    root.mkdir(parents=True, exist_ok=True)
    block = (
        os.urandom(1024 * 1024) if not seed else (seed * (1024 * 1024 // len(seed) + 1))[: 1 << 20]
    )
    with open(root / "weights.bin", "wb") as handle:
        for index in range(large // len(block)):
            handle.write(block[:-8] + index.to_bytes(8, "big"))
        handle.write(block[: large % len(block)])
    (root / "config.json").write_text('{"hidden": 768}\n')
    (root / "tokenizer").mkdir(exist_ok=True)
    (root / "tokenizer" / "vocab.txt").write_text("a\nb\nc\n")
    run = root / "serve.sh"
    run.write_text("#!/bin/sh\necho serve\n")
    run.chmod(0o755)
    return root


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return write_model(tmp_path / "model")


_counter = iter(range(1_000_000))


def unique_repo(prefix: str = "ml/model") -> str:
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


@pytest.fixture(params=["local", "registry"])
def target(request: pytest.FixtureRequest) -> str:
    """A fresh repository name on the local store and on the shared real registry."""
    if request.param == "local":
        return unique_repo("fraud")
    registry: Registry = request.getfixturevalue("registry")
    return f"{registry.host}/{unique_repo()}"


class Cli:
    """Runs the real CLI in-process (fast) or as a subprocess (exit codes, signals)."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        from modelreg.cli import _app

        _app.settings._stores = None
        try:
            result = self.runner.invoke(app, list(args), input=input, catch_exceptions=True)
        finally:
            _app.settings._stores = None
        code = result.exit_code
        stderr = result.stderr if result.stderr_bytes is not None else ""
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            error = result.exception
            if not isinstance(error, ModelregError):
                raise error
            stderr += format_error(error)
            code = error.exit_code
        return subprocess.CompletedProcess(list(args), code, result.stdout, stderr)

    @staticmethod
    def process(
        *args: str,
        input: str | None = None,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "modelreg", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )


@pytest.fixture
def cli() -> Cli:
    return Cli()


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Signing key pairs ``NAME.key`` + ``NAME.pub`` for alice, bob, carol and mallory."""
    from modelreg.signing import generate_keypair

    directory = tmp_path_factory.mktemp("keys")
    for name in ("alice", "bob", "carol", "mallory"):
        generate_keypair(directory, name)
    return directory


@pytest.fixture
def hostile() -> Iterator[HostileRegistry]:
    """A registry that lies on purpose (tests/hostile_registry.py), on a free loopback port."""
    with HostileRegistry() as server:
        yield server


MakeModel = Callable[..., Path]
