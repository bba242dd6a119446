"""Shared fixtures: an isolated MODELREG_HOME, model directories, stores, the CLI, keys.

Fixtures that start real services (registries, containerd, dockerd, the hostile
registry) are in integration/conftest.py; plain helpers are modules in helpers/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.cli import Cli
from helpers.models import write_model

from modelreg.store import RegistryOptions, Stores


@pytest.fixture(autouse=True)
def _isolated_env(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test reads or writes the developer's ~/.modelreg or ~/.docker."""
    monkeypatch.setenv("MODELREG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    # nor the containers tools' logins (podman/skopeo/buildah auth.json)
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    # podman refuses a missing one; outside tmp_path, which tests expect to hold only their files
    runtime = tmp_path_factory.mktemp("xdg-runtime")
    runtime.chmod(0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
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


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return write_model(tmp_path / "model")


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
