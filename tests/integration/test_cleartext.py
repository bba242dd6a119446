"""Credentials never leave TLS: an https registry's http:// URLs are refused, not followed.

Against real HTTPS registries (registry:2 with a private certificate):

* behind a TLS-terminating proxy that hands out ``Location: http://<same host>/…``
  upload URLs (what a proxy without ``X-Forwarded-Proto`` does): the push is
  refused with a clear error and the plain-HTTP side of that port receives
  nothing — before the fix it received ``Authorization: Basic …``;
* with token auth whose realm is ``http://`` on another port: login, push and
  pull are refused and the plain-HTTP token service sees no request at all;
* loopback registries that speak no TLS keep working over plain HTTP (the rest
  of the suite runs that way), and so does an https realm.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.cli import Cli
from helpers.downgrade_proxy import DowngradeProxy
from helpers.models import unique_repo
from helpers.registry import Registry, write_htpasswd
from helpers.tls import make_tls_cert
from helpers.token_issuer import TokenIssuer

from modelreg import api
from modelreg.errors import RegistryError
from modelreg.store import RegistryOptions, Stores

USER = "alice"
PASSWORD = "pw-" + secrets.token_hex(10)
REFUSED = "refusing to talk to it without TLS"


def write_login(docker_config: Path, host: str) -> None:
    docker_config.mkdir(parents=True, exist_ok=True)
    encoded = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (docker_config / "config.json").write_text(json.dumps({"auths": {host: {"auth": encoded}}}))


def leaked(texts: list[str]) -> bool:
    encoded = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return any(PASSWORD in text or encoded in text for text in texts)


@pytest.fixture
def tls_cert(tmp_path: Path) -> tuple[Path, Path]:
    return make_tls_cert(tmp_path / "tls")


def test_http_upload_location_from_an_https_registry_gets_no_credentials(
    make_registry: Callable[..., Registry],
    tls_cert: tuple[Path, Path],
    model_dir: Path,
    tmp_path: Path,
    cli: Cli,
) -> None:
    cert, key = tls_cert
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {USER: PASSWORD})
    registry = make_registry(htpasswd=htpasswd, tls=(cert, key))
    with DowngradeProxy(registry.host, cert, key) as proxy:
        write_login(Path(os.environ["DOCKER_CONFIG"]), proxy.host)
        result = cli.process(
            "--ca-cert", str(cert), "push", str(model_dir), f"{proxy.host}/{unique_repo()}",
            "--no-capture",
        )  # fmt: skip
        assert proxy.forwarded > 0  # it did talk to the registry through the proxy, over TLS
        # what a listener on the wire saw in cleartext: nothing at all
        assert not leaked([str(headers) for headers in proxy.cleartext])
        assert proxy.cleartext == []
        assert result.returncode == 5, result.stderr
        assert "Traceback" not in result.stderr
        assert f"registry {proxy.host} sent a plain-HTTP URL for its own API" in result.stderr
        assert REFUSED in result.stderr
        assert "hint: a TLS-terminating proxy in front of the registry must pass" in result.stderr
        assert not leaked([result.stdout, result.stderr])

        # the library says the same, as a ModelregError
        stores = Stores(home=tmp_path / "lib", options=RegistryOptions(ca_cert=str(cert)))
        try:
            with pytest.raises(RegistryError, match=REFUSED):
                api.push(model_dir, f"{proxy.host}/{unique_repo()}", capture=False, stores=stores)
        finally:
            stores.close()
        assert proxy.cleartext == []

    # without the proxy the same registry takes the same push over TLS
    write_login(Path(os.environ["DOCKER_CONFIG"]), registry.host)
    direct = cli.process(
        "--ca-cert", str(cert), "push", str(model_dir), f"{registry.host}/{unique_repo()}",
        "--no-capture",
    )  # fmt: skip
    assert direct.returncode == 0, direct.stderr


def test_token_realm_on_plain_http_gets_no_credentials(
    make_registry: Callable[..., Registry],
    tls_cert: tuple[Path, Path],
    model_dir: Path,
    tmp_path: Path,
    cli: Cli,
) -> None:
    cert, key = tls_cert
    with TokenIssuer(tmp_path / "issuer", {USER: PASSWORD}) as issuer:
        assert issuer.realm.startswith("http://")
        registry = make_registry(tls=(cert, key), extra_config=issuer.registry_config())
        host = registry.host
        login = cli(
            "--ca-cert", str(cert), "login", host, "-u", USER, "--password-stdin", input=PASSWORD
        )
        assert login.returncode == 5, login.stderr
        assert f"registry {host} sent a plain-HTTP URL for its token service" in login.stderr
        assert not leaked([login.stdout, login.stderr])

        write_login(Path(os.environ["DOCKER_CONFIG"]), host)
        pushed = cli.process(
            "--ca-cert", str(cert), "push", str(model_dir), f"{host}/{unique_repo()}",
            "--no-capture",
        )  # fmt: skip
        assert pushed.returncode == 5, pushed.stderr
        assert REFUSED in pushed.stderr
        assert not leaked([pushed.stdout, pushed.stderr])
        # the plain-HTTP token service never heard from us: no password, no request
        assert issuer.requests == []


def test_token_realm_on_plain_http_is_fine_for_a_plain_http_loopback_registry(
    make_registry: Callable[..., Registry], model_dir: Path, tmp_path: Path, cli: Cli
) -> None:
    with TokenIssuer(tmp_path / "issuer", {USER: PASSWORD}) as issuer:
        registry = make_registry(extra_config=issuer.registry_config())
        write_login(Path(os.environ["DOCKER_CONFIG"]), registry.host)
        pushed = cli("push", str(model_dir), f"{registry.host}/{unique_repo()}", "--no-capture")
        assert pushed.returncode == 0, pushed.stderr
        assert issuer.count() >= 1
