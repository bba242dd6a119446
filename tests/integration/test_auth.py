"""Registry authentication against real registries started by the tests.

* htpasswd Basic auth (distribution's ``auth: htpasswd``);
* bearer tokens (distribution's ``auth: token``) from the real issuer in
  ``token_issuer.py``;
* credentials from ``$DOCKER_CONFIG/config.json`` (or ``~/.docker``), written
  by hand, by ``modelreg login``, or kept by a real ``docker-credential-*``
  helper executable;
* no secret in any output, log line, ``repr`` or exception message.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
import stat
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from helpers.cli import Cli
from helpers.registry import Registry, write_htpasswd
from helpers.token_issuer import EchoRegistry, TokenIssuer

from modelreg import api
from modelreg.errors import AuthError, ModelregError, RegistryError
from modelreg.reference import parse_reference
from modelreg.store import RegistryOptions, Stores
from modelreg.transfer import TransferEvent

USER = "alice"
PASSWORD = "pw-" + secrets.token_hex(10)
# generous fail-fast bound for one CLI run (oras-py's token backend hangs ~130 s)
FAST = 30.0


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret_forms(password: str = PASSWORD, user: str = USER) -> list[str]:
    return [password, b64(f"{user}:{password}")]


def assert_clean(text: str, *extra: str) -> None:
    """No password, Basic credential or token in ``text``."""
    for secret in [*secret_forms(), *extra]:
        assert secret not in text, f"a secret leaked into: {text!r}"


def assert_clean_error(error: BaseException, *extra: str) -> None:
    texts = [str(error), repr(error), *map(str, error.args)]
    if isinstance(error, ModelregError):
        texts += [error.message, error.hint or ""]
    texts.append("".join(traceback.format_exception(error)))
    for text in texts:
        assert_clean(text, *extra)


def config_file() -> Path:
    return Path(os.environ["DOCKER_CONFIG"]) / "config.json"


def write_config(config: dict[str, Any]) -> None:
    config_file().parent.mkdir(parents=True, exist_ok=True)
    config_file().write_text(json.dumps(config))


def run(cli: Cli, *args: str, input: str | None = None, process: bool = False) -> Any:
    """The real CLI (in-process, or a subprocess), timed; its output must never hold a secret."""
    started = time.monotonic()
    result = cli.process(*args, input=input, timeout=120) if process else cli(*args, input=input)
    result.elapsed = time.monotonic() - started  # type: ignore[attr-defined]
    assert "Traceback" not in result.stderr, result.stderr
    assert_clean(result.stdout + result.stderr)
    return result


@pytest.fixture
def basic_registry(make_registry: Callable[..., Registry], tmp_path: Path) -> Registry:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {USER: PASSWORD, "bob": "bob-pw"})
    return make_registry(htpasswd=htpasswd)


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[TokenIssuer]:
    with TokenIssuer(tmp_path / "issuer", {USER: PASSWORD, "bob": "bob-pw-123"}) as started:
        yield started


@pytest.fixture
def token_registry(make_registry: Callable[..., Registry], issuer: TokenIssuer) -> Registry:
    return make_registry(extra_config=issuer.registry_config())


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


_ACCESS_LINE = re.compile(r'\] "(?:GET|HEAD|POST|PUT|PATCH|DELETE) /v2/')


def registry_requests(registry: Registry) -> int:
    """HTTP requests the registry served (from its access log), auth challenges included."""
    return len(_ACCESS_LINE.findall(registry.log_path.read_text(errors="replace")))


# ----- htpasswd Basic auth ---------------------------------------------------------------


def test_basic_registry_without_login_fails_fast_with_login_hint(
    basic_registry: Registry, model_dir: Path, tmp_path: Path, cli: Cli
) -> None:
    host = basic_registry.host
    for process, args in (
        (True, ("push", str(model_dir), f"{host}/ml/fraud", "--no-capture")),
        (False, ("pull", f"{host}/ml/fraud:v1", str(tmp_path / "out"))),
        (False, ("inspect", f"{host}/ml/fraud:v1")),
    ):
        result = run(cli, *args, process=process)
        assert result.returncode == 4, result.stderr
        assert f"error: registry {host} requires authentication" in result.stderr
        assert f"modelreg login {host}" in result.stderr
        assert result.elapsed < FAST
    assert not (tmp_path / "out").exists()


def test_login_checks_the_password_before_storing_anything(
    basic_registry: Registry, cli: Cli
) -> None:
    host = basic_registry.host
    result = run(cli, "login", host, "-u", USER, "--password-stdin", input="wrong-password\n")
    assert result.returncode == 4
    assert f"registry {host} rejected the username or password for 'alice'" in result.stderr
    assert "wrong-password" not in result.stderr + result.stdout
    assert not config_file().exists()


def test_login_push_pull_inspect_logout(
    basic_registry: Registry, model_dir: Path, tmp_path: Path, cli: Cli
) -> None:
    host = basic_registry.host
    result = run(
        cli, "login", host, "-u", USER, "--password-stdin", input=PASSWORD + "\n", process=True
    )
    assert result.returncode == 0, result.stderr
    assert f"logged in to {host}" in result.stdout
    # exactly what docker login writes, readable by the owner only
    assert json.loads(config_file().read_text()) == {
        "auths": {host: {"auth": b64(f"{USER}:{PASSWORD}")}}
    }
    assert stat.S_IMODE(config_file().stat().st_mode) == 0o600

    pushed = run(cli, "push", str(model_dir), f"{host}/ml/fraud", "--no-capture", "--json")
    assert pushed.returncode == 0, pushed.stderr
    reference = json.loads(pushed.stdout)["reference"]
    pulled = run(cli, "pull", reference, str(tmp_path / "out"))
    assert pulled.returncode == 0, pulled.stderr
    assert files_of(tmp_path / "out") == files_of(model_dir)
    inspected = run(cli, "inspect", reference, "--json")
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["digest"] == reference.rpartition("@")[2]

    out = run(cli, "logout", host)
    assert out.returncode == 0 and f"logged out of {host}" in out.stdout
    assert json.loads(config_file().read_text()) == {"auths": {}}
    again = run(cli, "inspect", reference)
    assert again.returncode == 4 and f"modelreg login {host}" in again.stderr


def test_login_accepts_url_forms_and_refuses_local_names(
    basic_registry: Registry, cli: Cli
) -> None:
    host = basic_registry.host
    ok = cli("login", f"http://{host}/", "-u", USER, "--password-stdin", input=PASSWORD)
    assert ok.returncode == 0, ok.stderr
    assert list(json.loads(config_file().read_text())["auths"]) == [host]
    bad = cli("login", "fraud", "-u", USER, "--password-stdin", input=PASSWORD)
    assert bad.returncode == 2 and "invalid registry host 'fraud'" in bad.stderr
    missing_user = cli("login", host, "--password-stdin", input=PASSWORD)
    assert (
        missing_user.returncode == 2 and "--password-stdin needs --username" in missing_user.stderr
    )


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(lambda: {"auth": b64(f"{USER}:{PASSWORD}")}, id="auth"),
        pytest.param(lambda: {"username": USER, "password": PASSWORD}, id="username-password"),
    ],
)
@pytest.mark.parametrize("key", ["{host}", "https://{host}"])
def test_hand_written_docker_config(
    basic_registry: Registry,
    model_dir: Path,
    cli: Cli,
    entry: Callable[[], dict[str, str]],
    key: str,
) -> None:
    host = basic_registry.host
    write_config({"auths": {key.format(host=host): entry()}})
    result = cli("push", str(model_dir), f"{host}/ml/fraud", "--no-capture")
    assert result.returncode == 0, result.stderr
    assert_clean(result.stdout + result.stderr)


def test_wrong_stored_password_is_an_auth_error(
    basic_registry: Registry, model_dir: Path, cli: Cli
) -> None:
    host = basic_registry.host
    write_config({"auths": {host: {"auth": b64(f"{USER}:not-{PASSWORD}")}}})
    result = run(cli, "push", str(model_dir), f"{host}/ml/fraud", "--no-capture")
    assert result.returncode == 4
    assert f"registry {host} rejected the stored credentials" in result.stderr
    assert f"modelreg login {host}" in result.stderr
    assert f"not-{PASSWORD}" not in result.stderr


def test_docker_config_env_is_honoured_and_home_docker_otherwise(
    basic_registry: Registry,
    model_dir: Path,
    tmp_path: Path,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = basic_registry.host
    # while $DOCKER_CONFIG is set, a decoy at ~/.docker is not read
    home = tmp_path / "home-dir"
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text(
        json.dumps({"auths": {host: {"auth": b64(f"{USER}:decoy")}}})
    )
    monkeypatch.setenv("HOME", str(home))
    write_config({"auths": {host: {"auth": b64(f"{USER}:{PASSWORD}")}}})
    result = run(cli, "push", str(model_dir), f"{host}/ml/fraud", "--no-capture")
    assert result.returncode == 0, result.stderr
    # without it, ~/.docker/config.json is read and written
    monkeypatch.delenv("DOCKER_CONFIG")
    decoyed = run(cli, "push", str(model_dir), f"{host}/ml/fraud", "--no-capture")
    assert decoyed.returncode == 4, decoyed.stderr
    login = run(cli, "login", host, "-u", USER, "--password-stdin", input=PASSWORD)
    assert login.returncode == 0, login.stderr
    written = home / ".docker" / "config.json"
    assert json.loads(written.read_text())["auths"][host] == {"auth": b64(f"{USER}:{PASSWORD}")}
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    pushed = run(cli, "push", str(model_dir), f"{host}/ml/fraud", "--no-capture", process=True)
    assert pushed.returncode == 0, pushed.stderr


# ----- credential helpers ------------------------------------------------------------------

HELPER = """#!{python}
# docker-credential-test: the docker-credential-helpers protocol over a JSON file.
import json, os, sys

store = os.environ["TEST_HELPER_STORE"]
action = sys.argv[1]
data = sys.stdin.read()
with open(store + ".log", "a") as log:
    log.write(action + "\\n")
if os.environ.get("TEST_HELPER_FAIL"):
    sys.stdout.write("the keychain is locked\\n")
    sys.exit(1)
try:
    with open(store) as handle:
        entries = json.load(handle)
except FileNotFoundError:
    entries = {{}}
if action == "get":
    server = data.strip()
    if server not in entries:
        sys.stdout.write("credentials not found in native keychain\\n")
        sys.exit(1)
    entry = entries[server]
    json.dump({{"ServerURL": server, "Username": entry[0], "Secret": entry[1]}}, sys.stdout)
elif action == "store":
    payload = json.loads(data)
    entries[payload["ServerURL"]] = [payload["Username"], payload["Secret"]]
elif action == "erase":
    server = data.strip()
    if server not in entries:
        sys.stdout.write("credentials not found in native keychain\\n")
        sys.exit(1)
    del entries[server]
elif action == "list":
    json.dump({{k: v[0] for k, v in entries.items()}}, sys.stdout)
else:
    sys.stdout.write("unknown action\\n")
    sys.exit(1)
if action in ("store", "erase"):
    with open(store, "w") as handle:
        json.dump(entries, handle)
"""

HANGING_HELPER = """#!/bin/sh
# answers nothing; its child keeps stdout open too
sleep 600 &
echo $! > "$TEST_HELPER_PIDFILE"
wait
"""


@pytest.fixture
def helper_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Real docker-credential-test and docker-credential-hang executables on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (
        ("test", HELPER.format(python=sys.executable)),
        ("hang", HANGING_HELPER),
    ):
        path = bin_dir / f"docker-credential-{name}"
        path.write_text(text)
        path.chmod(0o755)
    store = tmp_path / "helper-store.json"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("TEST_HELPER_STORE", str(store))
    monkeypatch.setenv("TEST_HELPER_PIDFILE", str(tmp_path / "helper.pid"))
    return store


@pytest.mark.parametrize("kind", ["credHelpers", "credsStore"])
def test_credential_helper_login_use_logout(
    basic_registry: Registry,
    helper_store: Path,
    model_dir: Path,
    cli: Cli,
    kind: str,
) -> None:
    host = basic_registry.host
    write_config(
        {"credHelpers": {host: "test"}} if kind == "credHelpers" else {"credsStore": "test"}
    )
    login = run(cli, "login", host, "-u", USER, "--password-stdin", input=PASSWORD)
    assert login.returncode == 0, login.stderr
    assert "docker-credential-test" in login.stdout
    assert json.loads(helper_store.read_text()) == {host: [USER, PASSWORD]}
    # config.json keeps no secret: only the empty entry docker writes too
    written = config_file().read_text()
    assert_clean(written)
    assert json.loads(written)["auths"] == {host: {}}

    pushed = run(cli, "push", str(model_dir), f"{host}/ml/fraud", "--no-capture")
    assert pushed.returncode == 0, pushed.stderr
    assert "get" in Path(f"{helper_store}.log").read_text().split()

    out = run(cli, "logout", host)
    assert out.returncode == 0 and "logged out" in out.stdout
    assert json.loads(helper_store.read_text()) == {}
    assert host not in json.loads(config_file().read_text())["auths"]
    again = run(cli, "push", str(model_dir), f"{host}/ml/fraud", "--no-capture")
    assert again.returncode == 4 and f"modelreg login {host}" in again.stderr


def test_credential_helper_that_fails_is_a_clear_error(
    basic_registry: Registry,
    helper_store: Path,
    model_dir: Path,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = basic_registry.host
    write_config({"credHelpers": {host: "test"}})
    monkeypatch.setenv("TEST_HELPER_FAIL", "1")
    result = run(cli, "push", str(model_dir), f"{host}/ml/fraud", "--no-capture")
    assert result.returncode == 4
    assert (
        "error: credential helper docker-credential-test failed to get credentials: "
        "the keychain is locked" in result.stderr
    )
    assert "hint: fix the helper" in result.stderr
    login = run(cli, "login", host, "-u", USER, "--password-stdin", input=PASSWORD)
    assert login.returncode == 4
    assert "docker-credential-test failed to store credentials" in login.stderr


def test_credential_helper_that_hangs_is_stopped(
    basic_registry: Registry,
    helper_store: Path,
    model_dir: Path,
    tmp_path: Path,
    cli: Cli,
) -> None:
    host = basic_registry.host
    write_config({"credHelpers": {host: "hang"}})
    result = cli.process(
        "push",
        str(model_dir),
        f"{host}/ml/fraud",
        "--no-capture",
        env={"MODELREG_HELPER_TIMEOUT": "1"},
        timeout=60,
    )
    assert result.returncode == 4, result.stderr
    assert "docker-credential-hang did not answer within 1 s" in result.stderr
    assert "MODELREG_HELPER_TIMEOUT" in result.stderr
    # the helper's own child (which held the pipe open) was killed with it
    child = int((tmp_path / "helper.pid").read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists()


def test_missing_credential_helper(basic_registry: Registry, model_dir: Path, cli: Cli) -> None:
    host = basic_registry.host
    write_config({"credsStore": "no-such-helper-xyz"})
    result = run(cli, "push", str(model_dir), f"{host}/ml/fraud", "--no-capture")
    assert result.returncode == 4
    assert "docker-credential-no-such-helper-xyz is not installed" in result.stderr


# ----- bearer tokens ------------------------------------------------------------------------


def login_token(cli: Cli, registry: Registry, user: str = USER, password: str = PASSWORD) -> None:
    result = cli("login", registry.host, "-u", user, "--password-stdin", input=password)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def logged_in(token_registry: Registry, cli: Cli) -> str:
    """The token registry's host, with alice logged in to it."""
    login_token(cli, token_registry)
    return token_registry.host


def test_token_auth_push_pull_tags_and_cross_repository_mount(
    logged_in: str,
    issuer: TokenIssuer,
    stores: Stores,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    host = logged_in
    pushed = api.push(model_dir, f"{host}/ml/fraud", capture=False, aliases=["best"], stores=stores)
    pulled = api.pull(pushed.reference, tmp_path / "out", stores=stores)
    assert pulled.digest == pushed.digest
    assert files_of(tmp_path / "out") == files_of(model_dir)
    tags = stores.repository(parse_reference(f"{host}/ml/fraud")).list_tags()
    assert {"v1", "best"} <= set(tags)

    events: list[TransferEvent] = []
    before = issuer.count()
    digest = api.copy(
        pushed.reference, f"{host}/ml/mirror", stores=stores, progress=events.append
    ).digest
    assert digest == pushed.digest
    assert "mounted" in {event.action for event in events}
    # one token to look at the mirror, one for the mount; the mount's token (pull,push on
    # the mirror) also covers the pushes that follow; one more (delete) removes the
    # version claim tag once the version is taken
    assert issuer.count() - before <= 3, issuer.requests[before:]
    assert issuer.requests[-1].scopes == ("repository:ml/mirror:delete,pull,push",)
    # the mount asked for one token covering both repositories
    assert any(
        set(request.scopes) == {"repository:ml/mirror:pull,push", "repository:ml/fraud:pull"}
        for request in issuer.requests
    )
    assert all(request.account == USER for request in issuer.requests)


def test_tokens_are_cached_per_scope(
    logged_in: str,
    token_registry: Registry,
    issuer: TokenIssuer,
    stores: Stores,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    host = logged_in
    before_tokens, before_calls = issuer.count(), registry_requests(token_registry)
    pushed = api.push(model_dir, f"{host}/ml/fraud", capture=False, stores=stores)
    tokens = issuer.count() - before_tokens
    calls = registry_requests(token_registry) - before_calls
    # one token for pull (the first HEAD) and one for pull+push, for a push of many requests
    assert calls >= 10
    assert tokens <= 2, issuer.requests
    # a pull on the same connection needs no new token: the pull,push token covers it
    api.pull(pushed.reference, tmp_path / "out", stores=stores)
    assert issuer.count() - before_tokens == tokens
    assert issuer.count(None) == issuer.count()  # no refused request on the way


def test_concurrent_requests_share_one_token_fetch(
    logged_in: str,
    issuer: TokenIssuer,
    stores: Stores,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    host = logged_in
    api.push(model_dir, f"{host}/ml/fraud", capture=False, stores=stores)
    fresh = Stores(home=tmp_path / "fresh", options=RegistryOptions())
    repository = fresh.repository(parse_reference(f"{host}/ml/fraud"))
    start = threading.Barrier(8)

    def resolve() -> object:
        start.wait(timeout=30)
        return repository.resolve("v1")

    before = issuer.count()
    try:
        with ThreadPoolExecutor(8) as pool:
            found = list(pool.map(lambda _: resolve(), range(8)))
    finally:
        fresh.close()
    assert all(f is not None for f in found)
    # eight simultaneous 401s, one token request
    assert issuer.count() - before == 1, issuer.requests[before:]


def test_token_expires_in_is_honoured(
    logged_in: str, issuer: TokenIssuer, stores: Stores, model_dir: Path
) -> None:
    host = logged_in
    pushed = api.push(model_dir, f"{host}/ml/fraud", capture=False, stores=stores)
    issuer.expires_in = 3
    fresh = Stores(home=stores.home, options=RegistryOptions())
    try:
        api.inspect(pushed.reference, stores=fresh)
        first = issuer.count()
        api.inspect(pushed.reference, stores=fresh)
        assert issuer.count() == first  # still valid: reused
        time.sleep(3.1)
        api.inspect(pushed.reference, stores=fresh)
        assert issuer.count() > first  # expired: a new one was fetched
    finally:
        fresh.close()


def test_token_auth_wrong_credentials(
    token_registry: Registry, issuer: TokenIssuer, model_dir: Path, cli: Cli
) -> None:
    host = token_registry.host
    login = run(cli, "login", host, "-u", USER, "--password-stdin", input="not-the-password")
    assert login.returncode == 4
    assert "rejected the username or password" in login.stderr
    assert not config_file().exists()
    write_config({"auths": {host: {"auth": b64(f"{USER}:not-the-password")}}})
    push = run(cli, "push", str(model_dir), f"{host}/ml/fraud", "--no-capture")
    assert push.returncode == 4
    assert f"registry {host} rejected the stored credentials" in push.stderr
    assert issuer.count(401) >= 2


def test_token_auth_without_login(
    token_registry: Registry, issuer: TokenIssuer, model_dir: Path, cli: Cli
) -> None:
    host = token_registry.host
    result = run(cli, "push", str(model_dir), f"{host}/ml/fraud", "--no-capture")
    assert result.returncode == 4
    assert f"registry {host} requires authentication" in result.stderr
    assert f"modelreg login {host}" in result.stderr
    assert result.elapsed < FAST


def test_issuer_that_refuses(
    logged_in: str, issuer: TokenIssuer, model_dir: Path, cli: Cli
) -> None:
    host = logged_in
    issuer.refuse = True
    result = run(cli, "push", str(model_dir), f"{host}/ml/fraud", "--no-capture")
    assert result.returncode == 4
    assert f"registry {host} rejected the stored credentials" in result.stderr


def test_token_without_the_needed_actions_is_denied(
    make_registry: Callable[..., Registry],
    tmp_path: Path,
    stores: Stores,
    model_dir: Path,
    cli: Cli,
) -> None:
    def grant(account: str | None, kind: str, name: str, actions: list[str]) -> list[str]:
        if account == USER:
            return actions
        return [a for a in actions if a == "pull"] if account == "bob" else []

    with TokenIssuer(
        tmp_path / "issuer", {USER: PASSWORD, "bob": "bob-pw-123"}, grant=grant
    ) as issuer:
        registry = make_registry(extra_config=issuer.registry_config())
        host = registry.host
        login_token(cli, registry)
        pushed = api.push(model_dir, f"{host}/ml/fraud", capture=False, stores=stores)
        login_token(cli, registry, "bob", "bob-pw-123")
        pulled = cli("pull", pushed.reference, str(tmp_path / "out"))
        assert pulled.returncode == 0, pulled.stderr
        denied = run(cli, "push", str(model_dir), f"{host}/ml/other", "--no-capture")
        assert denied.returncode == 4
        assert f"error: registry {host} denied 'bob' pull,push access to ml/other" in denied.stderr
        assert f"modelreg login {host}" in denied.stderr


@pytest.mark.parametrize("source", ["config", "helper"])
def test_identity_token_is_traded_for_access_tokens(
    token_registry: Registry,
    issuer: TokenIssuer,
    helper_store: Path,
    model_dir: Path,
    tmp_path: Path,
    cli: Cli,
    source: str,
) -> None:
    """docker's ``identitytoken`` (or a helper's ``<token>`` user): the OAuth2 refresh grant."""
    host = token_registry.host
    refresh = "refresh-" + secrets.token_hex(12)
    issuer.refresh_tokens[refresh] = USER
    if source == "config":
        write_config({"auths": {host: {"auth": b64(f"{USER}:"), "identitytoken": refresh}}})
    else:
        write_config({"credHelpers": {host: "test"}})
        helper_store.write_text(json.dumps({host: ["<token>", refresh]}))
    pushed = run(cli, "push", str(model_dir), f"{host}/ml/fraud", "--no-capture", "--json")
    assert pushed.returncode == 0, pushed.stderr
    assert_clean(pushed.stdout + pushed.stderr, refresh)
    assert issuer.requests and all(
        (r.method, r.account, r.status) == ("POST", USER, 200) for r in issuer.requests
    )
    # a revoked identity token is a rejected login, and never printed
    issuer.refresh_tokens.clear()
    failed = run(cli, "inspect", json.loads(pushed.stdout)["reference"])
    assert failed.returncode == 4
    assert f"registry {host} rejected the stored credentials" in failed.stderr
    assert_clean(failed.stdout + failed.stderr, refresh)


# ----- no secret anywhere ---------------------------------------------------------------


def test_no_secret_in_output_logs_reprs_or_errors(
    token_registry: Registry,
    issuer: TokenIssuer,
    model_dir: Path,
    tmp_path: Path,
    cli: Cli,
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = token_registry.host
    caplog.set_level(logging.DEBUG)
    login = run(cli, "login", host, "-u", USER, "--password-stdin", input=PASSWORD, process=True)
    assert login.returncode == 0
    stores = Stores(home=tmp_path / "h", options=RegistryOptions())
    try:
        pushed = api.push(model_dir, f"{host}/ml/fraud", capture=False, stores=stores)
        transport = stores.transport(host)
        tokens = list(issuer.tokens)
        assert tokens
        credentials = transport.credentials()
        for thing in (stores, transport, credentials, *transport._tokens.values()):
            assert_clean(repr(thing), *tokens)
            assert_clean(str(thing), *tokens)
        # failures with the tokens and credentials in hand: an unknown tag, a denied repo
        for action in (
            lambda: api.inspect(f"{host}/ml/fraud:nope", stores=stores),
            lambda: api.pull(f"{host}/ml/absent:v1", tmp_path / "x", stores=stores),
        ):
            with pytest.raises(ModelregError) as caught:
                action()
            assert_clean_error(caught.value, *tokens)
        # the token issuer fails and its error body echoes what we sent
        issuer.error_status = 500
        issuer.error_body = json.dumps(
            {"details": "cannot issue for {account} with {password} ({authorization})"}
        )
        transport._tokens.clear()
        with pytest.raises(RegistryError) as failed:
            api.inspect(pushed.reference, stores=stores)
        assert "token service of" in failed.value.message
        assert "HTTP 500: cannot issue for alice with *** (Basic ***)" in failed.value.message
        assert_clean_error(failed.value, *tokens)
        # and the same through the CLI
        result = run(cli, "inspect", pushed.reference, process=True)
        assert result.returncode == 5
        assert "HTTP 500: cannot issue for alice with ***" in result.stderr
        issuer.error_status = 401  # a refusal, with the echo
        refused = run(cli, "inspect", pushed.reference)
        assert refused.returncode == 4
    finally:
        stores.close()
    assert_clean(caplog.text, *tokens)


def test_no_secret_in_registry_error_messages(
    tmp_path: Path, stores: Stores, model_dir: Path, cli: Cli
) -> None:
    """A broken registry that echoes the Authorization header into its error messages."""
    with EchoRegistry({USER: PASSWORD}) as echo:
        write_config({"auths": {echo.host: {"auth": b64(f"{USER}:{PASSWORD}")}}})
        plain = Stores(home=tmp_path / "h", options=RegistryOptions(plain_http=True))
        try:
            with pytest.raises(RegistryError) as caught:
                api.versions(f"{echo.host}/ml/fraud", stores=plain)
        finally:
            plain.close()
        assert "HTTP 400: bad request; you sent Basic *** (alice:***)" in caught.value.message
        assert_clean_error(caught.value)
        result = run(cli, "--plain-http", "versions", f"{echo.host}/ml/fraud")
        assert result.returncode == 5
        assert "you sent Basic ***" in result.stderr


def test_auth_error_for_wrong_credentials_names_no_secret(
    basic_registry: Registry, stores: Stores
) -> None:
    write_config({"auths": {basic_registry.host: {"auth": b64(f"{USER}:{PASSWORD}x")}}})
    with pytest.raises(AuthError) as caught:
        api.versions(f"{basic_registry.host}/ml/fraud", stores=stores)
    assert_clean_error(caught.value, f"{PASSWORD}x")
    with pytest.raises(AuthError) as login_failed:
        api.login(basic_registry.host, USER, f"{PASSWORD}x", stores=stores)
    assert_clean_error(login_failed.value, f"{PASSWORD}x")
