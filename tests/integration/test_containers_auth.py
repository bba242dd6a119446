"""Logins made by the containers tools (podman, skopeo, buildah) are read too.

Real ``podman login`` and ``skopeo login`` against a real htpasswd registry write
their ``auth.json`` where containers-auth.json(5) says; modelreg then pushes and
pulls with those credentials. Order: docker's config.json first (where
``modelreg login`` writes), then ``$REGISTRY_AUTH_FILE`` alone when set, otherwise
``$XDG_RUNTIME_DIR/containers/auth.json`` then ``$XDG_CONFIG_HOME/containers/auth.json``
(``~/.config`` without it).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.cli import Cli
from helpers.models import unique_repo
from helpers.registry import Registry, write_htpasswd
from helpers.skips import binary_or_skip

from modelreg.store import credentials

USER = "alice"
PASSWORD = "pw-" + secrets.token_hex(10)


@pytest.fixture(autouse=True)
def _home_without_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """podman 4 writes its login into $DOCKER_CONFIG/config.json when that is set: unset it."""
    monkeypatch.delenv("DOCKER_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))


def docker_config() -> Path:
    return Path(os.environ["HOME"]) / ".docker" / "config.json"


@pytest.fixture
def basic_registry(make_registry: Callable[..., Registry], tmp_path: Path) -> Registry:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {USER: PASSWORD, "bob": "bob-pw"})
    return make_registry(htpasswd=htpasswd)


def tool_login(tool: str, host: str, *extra: str, password: str = PASSWORD) -> None:
    binary = binary_or_skip(tool)
    done = subprocess.run(
        [binary, "login", "--tls-verify=false", "-u", USER, "--password-stdin", *extra, host],
        input=password,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def push(cli: Cli, model_dir: Path, host: str) -> tuple[int, str]:
    result = cli("push", str(model_dir), f"{host}/{unique_repo()}", "--no-capture")
    assert PASSWORD not in result.stdout + result.stderr
    return result.returncode, result.stderr


def runtime_auth() -> Path:
    return Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json"


@pytest.mark.parametrize("tool", ["podman", "skopeo"])
def test_login_by_the_containers_tools_in_the_runtime_dir(
    basic_registry: Registry, model_dir: Path, tmp_path: Path, cli: Cli, tool: str
) -> None:
    host = basic_registry.host
    code, stderr = push(cli, model_dir, host)
    assert code == 4 and "requires authentication" in stderr
    tool_login(tool, host)
    assert host in json.loads(runtime_auth().read_text())["auths"]
    assert not docker_config().exists()
    code, stderr = push(cli, model_dir, host)
    assert code == 0, stderr


def test_registry_auth_file_alone_replaces_the_containers_locations(
    basic_registry: Registry,
    model_dir: Path,
    tmp_path: Path,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = basic_registry.host
    authfile = tmp_path / "ci" / "auth.json"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(authfile))
    tool_login("podman", host)  # podman writes where REGISTRY_AUTH_FILE says
    assert host in json.loads(authfile.read_text())["auths"]
    assert not runtime_auth().exists()
    code, stderr = push(cli, model_dir, host)
    assert code == 0, stderr
    # a wrong password in the runtime dir is not read while REGISTRY_AUTH_FILE is set...
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    tool_login("skopeo", host)
    runtime = json.loads(runtime_auth().read_text())
    runtime["auths"][host]["auth"] = base64.b64encode(f"{USER}:wrong".encode()).decode()
    runtime_auth().write_text(json.dumps(runtime))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(authfile))
    code, stderr = push(cli, model_dir, host)
    assert code == 0, stderr
    # ... and is read (and refused by the registry) once it is unset
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    code, stderr = push(cli, model_dir, host)
    assert code == 4 and "rejected the stored credentials" in stderr


def test_config_home_is_read_after_the_runtime_dir(
    basic_registry: Registry, model_dir: Path, cli: Cli
) -> None:
    host = basic_registry.host
    config_home = Path(os.environ["XDG_CONFIG_HOME"]) / "containers" / "auth.json"
    tool_login("skopeo", host, "--authfile", str(config_home))
    code, stderr = push(cli, model_dir, host)
    assert code == 0, stderr
    # a login in the runtime dir comes first: bob's wrong password there now wins
    runtime_auth().parent.mkdir(parents=True)
    runtime_auth().write_text(
        json.dumps({"auths": {host: {"auth": base64.b64encode(b"bob:nope").decode()}}})
    )
    code, stderr = push(cli, model_dir, host)
    assert code == 4 and "rejected the stored credentials" in stderr


def test_docker_config_comes_first_so_modelreg_login_and_logout_take_effect(
    basic_registry: Registry, model_dir: Path, cli: Cli
) -> None:
    host = basic_registry.host
    tool_login("podman", host)
    assert not docker_config().exists()
    login = cli("login", host, "-u", "bob", "--password-stdin", input="bob-pw")
    assert login.returncode == 0, login.stderr
    found = credentials.lookup(host)
    assert found is not None and found.username == "bob"
    assert cli("logout", host).returncode == 0
    found = credentials.lookup(host)
    assert found is not None and found.username == USER  # podman's login again
    assert credentials.auth_files()[0] == docker_config()


def test_default_locations_without_the_environment() -> None:
    files = credentials.auth_files({"HOME": "/home/u", "DOCKER_CONFIG": "/d"})
    assert files == [
        Path("/d/config.json"),
        Path(f"/run/containers/{os.getuid()}/auth.json"),
        Path("/home/u/.config/containers/auth.json"),
    ]


def test_a_broken_auth_json_names_the_file(
    basic_registry: Registry, model_dir: Path, cli: Cli
) -> None:
    runtime_auth().parent.mkdir(parents=True)
    runtime_auth().write_text("{not json")
    code, stderr = push(cli, model_dir, basic_registry.host)
    assert code == 2
    assert f"{runtime_auth()} is not valid JSON" in stderr
