"""A real registry:2 (``docker-registry serve``) on loopback, and its htpasswd files."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.processes import (
    LOG_TAIL_LINES,
    ServiceUnavailable,
    _http_status,
    _Process,
    _wait_until,
    _which,
    free_port,
)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


@dataclass
class Registry:
    """A ``docker-registry serve`` (distribution 2.8) on 127.0.0.1.

    ``host`` is ``127.0.0.1:PORT`` (what goes in an image reference), ``url`` is
    ``http(s)://127.0.0.1:PORT``, ``root`` the filesystem storage directory.
    ``stop()``/``kill()`` and ``start()`` again keep the port and the storage.
    """

    port: int
    workdir: Path
    config_path: Path
    root: Path
    binary: str
    tls: tuple[Path, Path] | None = None
    htpasswd: Path | None = None
    timeout: float = 20.0
    _proc: _Process = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._proc = _Process(
            "registry", [self.binary, "serve", str(self.config_path)], self.workdir / "registry.log"
        )

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc.alive

    @property
    def log_path(self) -> Path:
        return self._proc.log_path

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return self._proc.log_tail(lines)

    def start(self) -> None:
        """Start (or restart) on the same port and storage; wait until /v2/ answers."""
        self._proc.start()
        cafile = self.tls[0] if self.tls else None

        def ready() -> bool:
            # "listening on" proves it is *our* process that bound the port.
            if "listening on" not in self._proc.log_text():
                return False
            return _http_status(f"{self.url}/v2/", cafile=cafile) in (200, 401)

        try:
            _wait_until(self._proc, ready, self.timeout)
        except BaseException:
            self._proc.kill()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after ``timeout``)."""
        self._proc.stop(timeout)

    def kill(self) -> None:
        """SIGKILL, no goodbye: for fault-injection tests."""
        self._proc.kill()

    def garbage_collect(
        self, *, delete_untagged: bool = False, dry_run: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``registry garbage-collect`` on the storage (stop the registry first)."""
        argv = [self.binary, "garbage-collect", str(self.config_path)]
        if delete_untagged:
            argv.append("--delete-untagged")
        if dry_run:
            argv.append("--dry-run")
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def _registry_config(
    root: Path,
    port: int,
    *,
    htpasswd: Path | None,
    tls: tuple[Path, Path] | None,
    delete_enabled: bool,
    extra_config: dict[str, Any] | None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        # No blobdescriptor cache: the in-memory cache keeps answering for
        # deleted blobs, which hides delete semantics from tests.
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": delete_enabled},
            # Do not let the periodic purge delete uploads a fault test resumes.
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {
            "addr": f"127.0.0.1:{port}",
            # Fixed per instance so an upload started before a restart can resume.
            "secret": secrets.token_hex(16),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "modelreg-test", "path": str(htpasswd)}}
    if tls is not None:
        cert, key = tls
        config["http"]["tls"] = {"certificate": str(cert), "key": str(key)}
    if extra_config:
        config = _deep_merge(config, extra_config)
    return config


@contextlib.contextmanager
def run_registry(
    workdir: Path,
    *,
    port: int | None = None,
    htpasswd: Path | None = None,
    tls: tuple[Path, Path] | None = None,
    delete_enabled: bool = True,
    extra_config: dict[str, Any] | None = None,
    timeout: float = 20.0,
) -> Iterator[Registry]:
    """Start ``docker-registry serve`` with storage under ``workdir``; stop it on exit.

    ``tls`` is ``(certificate, key)`` (see :func:`make_tls_cert`); ``htpasswd``
    a bcrypt htpasswd file (see :func:`write_htpasswd`); ``extra_config`` is
    deep-merged into the generated config.yml.  Raises ServiceUnavailable when
    neither ``docker-registry`` nor ``registry`` is installed.
    """
    binary = _which("docker-registry", "registry")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "storage"
    root.mkdir(exist_ok=True)
    config_path = workdir / "config.yml"

    attempts = 1 if port is not None else 3
    reg: Registry | None = None
    try:
        for attempt in range(attempts):
            chosen = port if port is not None else free_port()
            config = _registry_config(
                root,
                chosen,
                htpasswd=htpasswd,
                tls=tls,
                delete_enabled=delete_enabled,
                extra_config=extra_config,
            )
            # JSON is valid YAML, and needs no yaml library.
            config_path.write_text(json.dumps(config, indent=2) + "\n")
            reg = Registry(
                port=chosen,
                workdir=workdir,
                config_path=config_path,
                root=root,
                binary=binary,
                tls=tls,
                htpasswd=htpasswd,
                timeout=timeout,
            )
            try:
                reg.start()
                break
            except RuntimeError as e:
                if attempt + 1 < attempts and "address already in use" in str(e):
                    continue  # someone grabbed the port between free_port() and bind
                raise
        assert reg is not None
        yield reg
    finally:
        if reg is not None:
            reg.stop()


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    """Write a bcrypt htpasswd file (the only hash distribution accepts)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        lines = []
        for user, password in users.items():
            hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 5))
            if not hashed or not hashed.startswith("$2"):
                raise ServiceUnavailable("libcrypt here cannot make bcrypt hashes for htpasswd")
            lines.append(f"{user}:{hashed}\n")
    except ImportError:
        try:
            import bcrypt  # type: ignore[import-not-found]
        except ImportError as e:
            raise ServiceUnavailable(
                "need the crypt module or the bcrypt package to write htpasswd"
            ) from e
        lines = [
            f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
            for u, p in users.items()
        ]
    path = Path(path)
    path.write_text("".join(lines))
    return path
