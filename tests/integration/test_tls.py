"""HTTPS registries with a private CA, against real TLS registries started by the tests.

Loopback registries are probed over HTTPS first; plain HTTP is used only when
the server answers TLS with plain HTTP.  A private CA comes from ``--ca-cert``,
``MODELREG_CA_CERT``, ``REQUESTS_CA_BUNDLE`` or ``SSL_CERT_FILE`` and is added to
the default trust, not put in its place.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.cli import Cli
from helpers.models import unique_repo
from helpers.registry import Registry
from helpers.tls import make_tls_cert
from helpers.token_issuer import TokenIssuer, make_ca_signed_cert

from modelreg import api
from modelreg.store import RegistryOptions, Stores

FAST = 30.0
CA_ENV = ("MODELREG_CA_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def tls_registry(make_registry: Callable[..., Registry], tmp_path: Path) -> tuple[Registry, Path]:
    """A registry on https://127.0.0.1 with a self-signed certificate; returns (registry, CA)."""
    cert, key = make_tls_cert(tmp_path / "tls")
    return make_registry(tls=(cert, key)), cert


def test_tls_registry_without_the_ca_says_how_to_pass_it(
    tls_registry: tuple[Registry, Path], model_dir: Path, tmp_path: Path, cli: Cli
) -> None:
    registry, ca = tls_registry
    target = f"{registry.host}/ml/fraud"
    started = time.monotonic()
    failed = cli.process("push", str(model_dir), target, "--no-capture")
    assert time.monotonic() - started < FAST
    assert failed.returncode == 5, failed.stderr
    assert "Traceback" not in failed.stderr
    assert (
        f"error: TLS with registry {registry.host} failed: certificate verify failed"
        in failed.stderr
    )
    assert "hint: pass --ca-cert (or set MODELREG_CA_CERT)" in failed.stderr
    # the same command with the CA: works, over https (the only thing that server speaks)
    ok = cli.process("--ca-cert", str(ca), "push", str(model_dir), target, "--no-capture", "--json")
    assert ok.returncode == 0, ok.stderr
    reference = json.loads(ok.stdout)["reference"]
    pulled = cli("--ca-cert", str(ca), "pull", reference, str(tmp_path / "out"))
    assert pulled.returncode == 0, pulled.stderr
    assert files_of(tmp_path / "out") == files_of(model_dir)


@pytest.mark.parametrize("variable", CA_ENV)
def test_ca_from_the_environment(
    tls_registry: tuple[Registry, Path],
    model_dir: Path,
    tmp_path: Path,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    registry, ca = tls_registry
    monkeypatch.setenv(variable, str(ca))
    pushed = cli("push", str(model_dir), f"{registry.host}/ml/fraud", "--no-capture", "--json")
    assert pushed.returncode == 0, pushed.stderr
    reference = json.loads(pushed.stdout)["reference"]
    inspected = cli("inspect", reference, "--json")
    assert inspected.returncode == 0, inspected.stderr
    assert "HTTP request to an HTTPS server" not in registry.log_path.read_text(errors="replace")


def test_plain_http_loopback_registry_still_works_with_a_ca_set(
    registry: Registry, model_dir: Path, tmp_path: Path, cli: Cli
) -> None:
    cert, _ = make_tls_cert(tmp_path / "tls")
    target = f"{registry.host}/{unique_repo()}"
    result = cli("--ca-cert", str(cert), "push", str(model_dir), target, "--no-capture")
    assert result.returncode == 0, result.stderr


def test_a_different_ca_is_refused(
    tls_registry: tuple[Registry, Path], model_dir: Path, tmp_path: Path, cli: Cli
) -> None:
    registry, _ = tls_registry
    other, _ = make_tls_cert(tmp_path / "other")
    result = cli("--ca-cert", str(other), "inspect", f"{registry.host}/ml/fraud:v1")
    assert result.returncode == 5
    assert "certificate verify failed" in result.stderr
    assert "--ca-cert" in result.stderr


def test_missing_or_unreadable_ca_file(
    tls_registry: tuple[Registry, Path], tmp_path: Path, cli: Cli
) -> None:
    registry, _ = tls_registry
    reference = f"{registry.host}/ml/fraud:v1"
    missing = cli("--ca-cert", str(tmp_path / "nope.pem"), "inspect", reference)
    assert missing.returncode == 2
    assert f"CA certificate {tmp_path / 'nope.pem'} does not exist" in missing.stderr
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    unreadable = cli("--ca-cert", str(garbage), "inspect", reference)
    assert unreadable.returncode == 2
    assert f"CA certificate {garbage} could not be loaded" in unreadable.stderr


def test_custom_ca_is_added_to_the_default_trust(
    make_registry: Callable[..., Registry],
    tmp_path: Path,
    model_dir: Path,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Registry signed by one private CA, its token service by another (the "default" trust)."""
    registry_ca, registry_cert, registry_key = make_ca_signed_cert(tmp_path / "reg", "registry CA")
    issuer_ca, issuer_cert, issuer_key = make_ca_signed_cert(tmp_path / "iss", "issuer CA")
    with TokenIssuer(
        tmp_path / "issuer", {"alice": "pw-alice-1"}, tls=(issuer_cert, issuer_key)
    ) as issuer:
        assert issuer.realm.startswith("https://")
        registry = make_registry(
            tls=(registry_cert, registry_key), extra_config=issuer.registry_config()
        )
        host = registry.host
        login = ("--ca-cert", str(registry_ca), "login", host, "-u", "alice", "--password-stdin")
        # only the registry's CA: the token service cannot be verified
        refused = cli(*login, input="pw-alice-1")
        assert refused.returncode == 5
        assert f"TLS with the token service of {host} (127.0.0.1:" in refused.stderr
        assert "certificate verify failed" in refused.stderr
        # the issuer's CA as the system trust (SSL_CERT_FILE) plus --ca-cert: both verify
        monkeypatch.setenv("SSL_CERT_FILE", str(issuer_ca))
        assert cli(*login, input="pw-alice-1").returncode == 0
        stores = Stores(home=tmp_path / "h", options=RegistryOptions(ca_cert=str(registry_ca)))
        try:
            pushed = api.push(model_dir, f"{host}/ml/fraud", capture=False, stores=stores)
            api.pull(pushed.reference, tmp_path / "out", stores=stores)
        finally:
            stores.close()
        assert files_of(tmp_path / "out") == files_of(model_dir)
        assert issuer.count() >= 2
