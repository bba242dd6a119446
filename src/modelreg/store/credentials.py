"""Registry credentials, read and written the way the docker CLI does.

``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``): inline
``auths`` entries, ``credHelpers`` per host and a default ``credsStore``, both
run as ``docker-credential-<name>``. Secrets never leave this module except as
the ``Credentials`` handed to the transport, whose ``repr`` hides them.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInput

_HELPER_TIMEOUT = 10.0


@dataclass(frozen=True)
class Credentials:
    username: str
    secret: str = field(repr=False)

    def basic_header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.secret}".encode()).decode()
        return f"Basic {token}"


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


def lookup(host: str, environ: Mapping[str, str] | None = None) -> Credentials | None:
    """Credentials for ``host`` from the docker config and its helpers, or None."""
    config = _read_config(config_path(environ))
    helpers = config.get("credHelpers") or {}
    for key in _host_keys(host):
        if isinstance(helpers, dict) and isinstance(helpers.get(key), str):
            return _from_helper(helpers[key], key)
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
            found = _from_helper(store, key)
            if found:
                return found
    return None


def _from_entry(entry: Mapping[str, Any]) -> Credentials | None:
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


def _run_helper(helper: str, action: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    binary = f"docker-credential-{helper}"
    try:
        return subprocess.run(
            [binary, action],
            input=stdin,
            capture_output=True,
            timeout=_HELPER_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise InvalidInput(
            f"credential helper {binary} is not installed",
            "install it, or remove it from your docker config.json",
        ) from None
    except subprocess.TimeoutExpired:
        raise InvalidInput(f"credential helper {binary} did not answer in time") from None


def _from_helper(helper: str, server: str) -> Credentials | None:
    result = _run_helper(helper, "get", server.encode())
    if result.returncode != 0:
        # helpers answer "credentials not found in native keychain" with a non-zero exit
        return None
    try:
        payload = json.loads(result.stdout)
        username, secret = payload["Username"], payload["Secret"]
    except (ValueError, KeyError, TypeError):
        raise InvalidInput(
            f"credential helper docker-credential-{helper} gave an unreadable answer"
        ) from None
    if not isinstance(username, str) or not isinstance(secret, str):
        return None
    return Credentials(username, secret)


def save(host: str, credentials: Credentials, environ: Mapping[str, str] | None = None) -> str:
    """Store credentials as ``docker login`` would; returns where they went."""
    path = config_path(environ)
    config = _read_config(path)
    helper = (config.get("credHelpers") or {}).get(host) or config.get("credsStore")
    if isinstance(helper, str) and helper:
        payload = json.dumps(
            {"ServerURL": host, "Username": credentials.username, "Secret": credentials.secret}
        ).encode()
        result = _run_helper(helper, "store", payload)
        if result.returncode != 0:
            raise InvalidInput(f"credential helper docker-credential-{helper} refused to store")
        return f"docker-credential-{helper}"
    auths = config.setdefault("auths", {})
    if not isinstance(auths, dict):
        raise InvalidInput(f"{path}: 'auths' must be an object")
    auths[host] = {
        "auth": base64.b64encode(f"{credentials.username}:{credentials.secret}".encode()).decode()
    }
    _write_private(path, json.dumps(config, indent="\t").encode() + b"\n")
    return str(path)


def remove(host: str, environ: Mapping[str, str] | None = None) -> bool:
    path = config_path(environ)
    config = _read_config(path)
    helper = (config.get("credHelpers") or {}).get(host) or config.get("credsStore")
    if isinstance(helper, str) and helper:
        return _run_helper(helper, "erase", host.encode()).returncode == 0
    auths = config.get("auths")
    if not isinstance(auths, dict) or host not in auths:
        return False
    del auths[host]
    _write_private(path, json.dumps(config, indent="\t").encode() + b"\n")
    return True


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix=".config-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(name, path)
    finally:
        Path(name).unlink(missing_ok=True)
