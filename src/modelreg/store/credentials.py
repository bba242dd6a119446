"""Registry credentials, read and written the way the docker CLI does.

``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``): inline
``auths`` entries, ``credHelpers`` per host and a default ``credsStore``, both
run as ``docker-credential-<name>``. The containers tools' ``auth.json`` files
(podman/skopeo/buildah logins, same format) are read after it (``auth_files``).
Secrets never leave this module except as the ``Credentials`` handed to the
transport, whose ``repr`` hides them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import tempfile
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AuthError, InvalidInput

HELPER_TIMEOUT = 10.0
_NOT_FOUND = "credentials not found"


IDENTITY_TOKEN_USER = "<token>"


@dataclass(frozen=True)
class Credentials:
    """A user name and its secret: a password, or an OAuth2 identity (refresh) token.

    Docker's convention: the user name ``<token>`` means the secret is an identity
    token (``identitytoken`` in config.json, or what a helper returns for it), to be
    exchanged for bearer tokens with the ``refresh_token`` grant.
    """

    username: str
    secret: str = field(repr=False)

    @property
    def is_identity_token(self) -> bool:
        return self.username == IDENTITY_TOKEN_USER

    def basic_header(self) -> str:
        return f"Basic {self._encoded()}"

    def _encoded(self) -> str:
        return base64.b64encode(f"{self.username}:{self.secret}".encode()).decode()

    def secret_forms(self) -> tuple[str, ...]:
        """Every way the secret could show up in text a server sends back: masked in messages."""
        return tuple(
            form
            for form in (
                self.secret,
                self._encoded(),
                urllib.parse.quote(self.secret, safe=""),
                urllib.parse.quote_plus(self.secret),
            )
            if form
        )


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    directory = env.get("DOCKER_CONFIG")
    base = Path(directory) if directory else Path.home() / ".docker"
    return base / "config.json"


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    try:
        config = json.loads(data or b"{}")
    except ValueError:
        raise InvalidInput(
            f"{path} is not valid JSON", "fix or remove the file, then log in again"
        ) from None
    if not isinstance(config, dict):
        raise InvalidInput(f"{path} must hold a JSON object")
    return config


def _host_keys(host: str) -> list[str]:
    keys = [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]
    name, _, port = host.partition(":")
    if name in ("127.0.0.1", "localhost"):
        other = "localhost" if name == "127.0.0.1" else "127.0.0.1"
        keys.append(f"{other}:{port}" if port else other)
    return keys


def auth_files(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where credentials are read from, in order; the first file with an entry wins.

    Docker's ``config.json`` first: ``modelreg login``/``logout`` write there, so they
    always take effect. Then the containers tools' files (podman, skopeo, buildah;
    containers-auth.json(5)): ``$REGISTRY_AUTH_FILE`` alone when set, otherwise
    ``$XDG_RUNTIME_DIR/containers/auth.json`` (``/run/containers/UID/auth.json``
    without it) and ``${XDG_CONFIG_HOME:-~/.config}/containers/auth.json``.
    """
    env = os.environ if environ is None else environ
    files = [config_path(env)]
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]).expanduser())
    else:
        runtime = env.get("XDG_RUNTIME_DIR")
        files.append(
            Path(runtime) / "containers" / "auth.json"
            if runtime
            else Path(f"/run/containers/{os.getuid()}/auth.json")
        )
        home = Path(env["HOME"]) if env.get("HOME") else Path.home()
        config_home = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else None
        files.append((config_home or home / ".config") / "containers" / "auth.json")
    return list(dict.fromkeys(files))


def lookup(
    host: str,
    environ: Mapping[str, str] | None = None,
    helper_timeout: float = HELPER_TIMEOUT,
) -> Credentials | None:
    """Credentials for ``host`` from the first of ``auth_files`` that has some, or None."""
    for path in auth_files(environ):
        found = _lookup_in(_read_config(path), host, environ, helper_timeout)
        if found is not None:
            return found
    return None


def _lookup_in(
    config: Mapping[str, Any],
    host: str,
    environ: Mapping[str, str] | None,
    helper_timeout: float,
) -> Credentials | None:
    """Credentials for ``host`` in one docker-format file (and the helpers it names), or None."""
    helpers = config.get("credHelpers") or {}
    for key in _host_keys(host):
        if isinstance(helpers, dict) and isinstance(helpers.get(key), str) and helpers[key]:
            return _from_helper(helpers[key], key, environ, helper_timeout)
    auths = config.get("auths") or {}
    for key in _host_keys(host):
        entry = auths.get(key) if isinstance(auths, dict) else None
        if isinstance(entry, dict):
            found = _from_entry(entry)
            if found:
                return found
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        for key in _host_keys(host)[:2]:
            found = _from_helper(store, key, environ, helper_timeout)
            if found:
                return found
    return None


def _from_entry(entry: Mapping[str, Any]) -> Credentials | None:
    identity = entry.get("identitytoken")
    if isinstance(identity, str) and identity:
        return Credentials(IDENTITY_TOKEN_USER, identity)
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidInput(
                "a docker config 'auth' entry is not valid base64",
                "log in again with 'modelreg login HOST'",
            ) from None
        username, sep, secret = decoded.partition(":")
        if sep:
            return Credentials(username, secret)
    user, password = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(password, str):
        return Credentials(user, password)
    return None


def _run_helper(
    helper: str, action: str, stdin: bytes, environ: Mapping[str, str] | None, timeout: float
) -> tuple[int, str]:
    """Run ``docker-credential-<helper> <action>``; returns (exit status, stdout).

    The helper runs in its own process group so that on a timeout it is killed
    with everything it started (a shell script's children keep the pipes open).
    """
    import signal  # here: a registry without a credential helper never pays for them
    import subprocess

    binary = f"docker-credential-{helper}"
    try:
        process = subprocess.Popen(
            [binary, action],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=None if environ is None else dict(environ),
        )
    except (FileNotFoundError, PermissionError):
        raise AuthError(
            f"credential helper {binary} is not installed (or not executable)",
            "install it on PATH, or remove it from credHelpers/credsStore in your docker "
            "config.json",
        ) from None
    try:
        out, err = process.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.communicate(timeout=5)
        raise AuthError(
            f"credential helper {binary} did not answer within {timeout:g} s ({action})",
            "check the helper (does it wait for a password prompt?); MODELREG_HELPER_TIMEOUT "
            "sets how long to wait",
        ) from None
    text = out.decode("utf-8", "replace").strip() or err.decode("utf-8", "replace").strip()
    return process.returncode, text


def _helper_failed(helper: str, action: str, text: str, secret: str | None = None) -> AuthError:
    first = text.splitlines()[0][:160] if text else "no message"
    if secret:
        for form in Credentials("", secret).secret_forms():
            first = first.replace(form, "***")
    return AuthError(
        f"credential helper docker-credential-{helper} failed to {action} credentials: {first}",
        "fix the helper, or remove it from credHelpers/credsStore in your docker config.json",
    )


def _from_helper(
    helper: str, server: str, environ: Mapping[str, str] | None, timeout: float
) -> Credentials | None:
    status, text = _run_helper(helper, "get", server.encode(), environ, timeout)
    if status != 0:
        if _NOT_FOUND in text.lower():
            return None
        raise _helper_failed(helper, "get", text)
    try:
        payload = json.loads(text)
        username, secret = payload["Username"], payload["Secret"]
    except (ValueError, KeyError, TypeError):
        raise AuthError(
            f"credential helper docker-credential-{helper} gave an unreadable answer",
            'it must print {"Username": …, "Secret": …}; fix or replace the helper',
        ) from None
    if not isinstance(username, str) or not isinstance(secret, str) or not secret:
        return None
    return Credentials(username, secret)


def _helper_for(config: Mapping[str, Any], host: str) -> str | None:
    helpers = config.get("credHelpers")
    helper = helpers.get(host) if isinstance(helpers, dict) else None
    if not helper:
        helper = config.get("credsStore")
    return helper if isinstance(helper, str) and helper else None


def save(
    host: str,
    credentials: Credentials,
    environ: Mapping[str, str] | None = None,
    helper_timeout: float = HELPER_TIMEOUT,
) -> str:
    """Store credentials as ``docker login`` would; returns where they went.

    With a credential helper for ``host`` the secret goes to the helper and
    config.json keeps only an empty ``auths`` entry (as docker writes it);
    otherwise config.json gets ``auths[host].auth`` = base64(user:secret), mode 0600.
    """
    path = config_path(environ)
    config = _read_config(path)
    auths = config.setdefault("auths", {})
    if not isinstance(auths, dict):
        raise InvalidInput(f"{path}: 'auths' must be an object", "fix or remove the file")
    helper = _helper_for(config, host)
    if helper:
        payload = json.dumps(
            {"ServerURL": host, "Username": credentials.username, "Secret": credentials.secret}
        ).encode()
        status, text = _run_helper(helper, "store", payload, environ, helper_timeout)
        if status != 0:
            raise _helper_failed(helper, "store", text, credentials.secret)
        if auths.get(host) != {}:
            auths[host] = {}  # drop any inline secret a stale entry still had
            _write_private(path, _dump(config))
        return f"docker-credential-{helper}"
    auths[host] = {"auth": credentials._encoded()}
    _write_private(path, _dump(config))
    return str(path)


def remove(
    host: str, environ: Mapping[str, str] | None = None, helper_timeout: float = HELPER_TIMEOUT
) -> bool:
    """Forget the credentials for ``host`` (helper and config.json); whether there were any."""
    path = config_path(environ)
    config = _read_config(path)
    removed = False
    helper = _helper_for(config, host)
    if helper:
        status, text = _run_helper(helper, "erase", host.encode(), environ, helper_timeout)
        if status == 0:
            removed = True
        elif _NOT_FOUND not in text.lower():
            raise _helper_failed(helper, "erase", text)
    auths = config.get("auths")
    if isinstance(auths, dict) and host in auths:
        removed = removed or bool(auths[host])
        del auths[host]
        _write_private(path, _dump(config))
    return removed


def _dump(config: Mapping[str, Any]) -> bytes:
    return json.dumps(config, indent="\t").encode() + b"\n"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix=".config-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(name, path)
    finally:
        Path(name).unlink(missing_ok=True)
