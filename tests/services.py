"""Real services for the test suite: an OCI registry, containerd and dockerd.

Plain Python, no pytest: every ``run_*`` function is a context manager that
starts one real process (in its own process group, with private sockets,
state and root directories under the ``workdir`` it is given), waits until the
service answers (bounded by ``timeout``) and stops it again on exit, even when
the body raised.  Nothing here touches ``/var/run/docker.sock``,
``/var/lib/docker``, ``/etc/containerd`` or any other system-wide state.

Failures to start raise :class:`RuntimeError` whose message ends with the last
lines of the service's log.  When the machine simply cannot run the service (a
binary is missing, we are not root, the kernel refuses) the error is the
subclass :class:`ServiceUnavailable`, so fixtures can turn it into a skip.

Findings baked in here (Debian 12: distribution 2.8.2, containerd 1.6.20,
dockerd 20.10.24):

* containerd's ``io.containerd.internal.v1.opt`` plugin creates ``/opt/containerd``
  unless its ``path`` is configured, so it is pointed into ``workdir``; the CRI
  plugin (CNI, a streaming server on a TCP port) and the aufs/btrfs/zfs/devmapper
  snapshotters are disabled.
* dockerd 20.10 writes its trust key to ``/etc/docker/key.json`` unless its
  daemon.json sets ``"deprecated-key-path"`` (not a CLI flag); it reads
  ``/etc/docker/daemon.json`` unless given ``--config-file``; the bridge driver flips
  ``net.ipv4.ip_forward`` unless ``--ip-forward=false``.  It also creates an
  empty ``/run/docker/plugins`` (hard-coded plugin discovery dir), and
  containerd's shims ``/run/containerd/s`` once a container starts; both are
  removed again if they did not exist before and are empty.
* dockerd bind-mounts its data-root onto itself (shared propagation) and only
  unmounts it on a clean shutdown; teardown lazily unmounts anything left
  below the workdir before deleting it.
* A registry port picked by :func:`free_port` can be taken by someone else
  before the registry binds it; a foreign server then answers ``/v2/`` while
  ours has died with "address already in use".  Readiness therefore requires
  our process to be alive *and* to have logged ``listening on``; with an
  automatic port the start is retried on a fresh port.
* If the test process is SIGKILLed no teardown runs: services get
  ``PR_SET_PDEATHSIG(SIGKILL)`` so the kernel kills them with it, and
  :func:`sweep_stale_tempdirs` removes the dirs (and mounts) such a run left.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CTR_NAMESPACE",
    "Containerd",
    "Dockerd",
    "Registry",
    "ServiceUnavailable",
    "free_port",
    "make_tls_cert",
    "remove_tree",
    "require_binary",
    "run_containerd",
    "run_dockerd",
    "run_registry",
    "short_tempdir",
    "sweep_stale_tempdirs",
    "write_htpasswd",
]

CTR_NAMESPACE = "modelreg-test"
LOG_TAIL_LINES = 30
# sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107

# Log fragments that mean "this machine/kernel will not let the engine run",
# as opposed to a bug in how we start it.
_REFUSAL_MARKERS = (
    "operation not permitted",
    "permission denied",
    "devices cgroup isn't mounted",
    "read-only file system",
    "are you trying to connect to a tls-enabled daemon",
)


class ServiceUnavailable(RuntimeError):
    """The service cannot run on this machine (missing binary, no root, kernel refuses).

    ``reason`` is a one-line explanation suitable for ``pytest.skip``;
    ``details`` (may be empty) carries the command and log tail.
    """

    def __init__(self, reason: str, details: str = "") -> None:
        super().__init__(f"{reason}\n{details}" if details else reason)
        self.reason = reason
        self.details = details


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_OWNER_FILE = ".modelreg-owner"


def _process_start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]  # field 22: starttime
    except (OSError, IndexError):
        return None


def short_tempdir(prefix: str = "mr-") -> Path:
    """A fresh directory directly under /tmp (unix socket paths must stay < 108 bytes).

    It records its owner (pid + process start time) so that
    :func:`sweep_stale_tempdirs` can clean it up if this process is SIGKILLed
    before its teardown runs.  The caller removes it with :func:`remove_tree`.
    """
    import tempfile

    base = "/tmp" if os.path.isdir("/tmp") else None
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    pid = os.getpid()
    (path / _OWNER_FILE).write_text(f"{pid} {_process_start_time(pid)}\n")
    return path


def sweep_stale_tempdirs(prefix: str = "mr-") -> list[Path]:
    """Remove ``/tmp/<prefix>*`` dirs made by :func:`short_tempdir` whose owner process is gone.

    Kills leftovers that still name such a dir on their command line and
    unmounts what is mounted below it (dockerd's self bind-mount of its
    data-root survives a SIGKILL).  Dirs of live owners are never touched.
    """
    removed = []
    for path in Path("/tmp").glob(f"{prefix}*"):
        owner = path / _OWNER_FILE
        try:
            pid_s, start = owner.read_text().split()
            pid = int(pid_s)
        except (OSError, ValueError):
            continue
        if _process_start_time(pid) == start:
            continue  # owner still alive
        _kill_pids(_pids_mentioning(str(path) + "/"))
        for record in [path / _CREATED_DIRS_FILE, *path.glob(f"*/{_CREATED_DIRS_FILE}")]:
            _remove_created_system_dirs(record.parent)
        remove_tree(path)
        removed.append(path)
    return removed


def remove_tree(path: Path) -> None:
    """Unmount anything still mounted below ``path``, then delete it."""
    path = Path(path)
    _unmount_below(path)
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():  # e.g. a busy mount that lazy-unmount left behind
        _unmount_below(path)
        shutil.rmtree(path, ignore_errors=True)


def _which(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    # Debian puts daemons in /usr/sbin, which is not on every user's PATH.
    for name in names:
        for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin"):
            candidate = os.path.join(d, name)
            if os.access(candidate, os.X_OK):
                return candidate
    raise ServiceUnavailable(
        f"{' / '.join(names)} not found on PATH "
        f"(Debian: apt-get install {_PACKAGE_HINT.get(names[0], names[0])})"
    )


_PACKAGE_HINT = {
    "docker-registry": "docker-registry",
    "containerd": "containerd",
    "ctr": "containerd",
    "dockerd": "docker.io",
    "docker": "docker.io",
    "skopeo": "skopeo",
}


def require_binary(*names: str) -> str:
    """Absolute path of the first of ``names`` found; ServiceUnavailable otherwise."""
    return _which(*names)


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise ServiceUnavailable(
            f"{what} needs root (rootless engines are not supported by these fixtures)"
        )


def _check_socket_path(path: Path) -> None:
    if len(os.fsencode(str(path))) > _MAX_SOCKET_PATH:
        raise RuntimeError(
            f"unix socket path too long ({len(str(path))} bytes > {_MAX_SOCKET_PATH}): {path}; "
            "use a short workdir such as short_tempdir()"
        )


def _mountpoints_below(path: Path) -> list[str]:
    prefix = str(Path(path).resolve())
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 5:
                    continue
                mnt = parts[4].encode().decode("unicode_escape")  # \040 etc.
                if mnt == prefix or mnt.startswith(prefix + "/"):
                    found.append(mnt)
    except OSError:
        pass
    return found


def _unmount_below(path: Path) -> None:
    # Deepest first; lazy so a busy mount cannot block teardown.
    for mnt in sorted(_mountpoints_below(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", mnt], capture_output=True, check=False)


def _pids_mentioning(marker: str) -> list[int]:
    """PIDs whose command line contains ``marker`` (a unique private path of ours)."""
    me = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if marker.encode() in cmdline:
            pids.append(int(entry))
    return pids


try:  # loaded in the parent: dlopen() after fork() is not async-signal-safe
    import ctypes

    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except (OSError, ImportError):  # pragma: no cover - non-glibc platforms
    _LIBC = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


_CREATED_DIRS_FILE = ".modelreg-created-dirs"


def _note_absent_system_dirs(workdir: Path, dirs: Sequence[str]) -> None:
    """Record which of ``dirs`` do not exist yet: the engine will create them."""
    absent = [d for d in dirs if not os.path.exists(d)]
    (workdir / _CREATED_DIRS_FILE).write_text("".join(f"{d}\n" for d in absent))


def _remove_created_system_dirs(workdir: Path) -> None:
    """rmdir (only if empty) the system dirs recorded by :func:`_note_absent_system_dirs`."""
    try:
        dirs = (workdir / _CREATED_DIRS_FILE).read_text().split()
    except OSError:
        return
    for d in sorted(dirs, key=len, reverse=True):  # children first
        with contextlib.suppress(OSError):
            os.rmdir(d)


def _kill_pids(pids: Sequence[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class _Process:
    """One child in its own session/process group, logging to a file."""

    def __init__(
        self, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None
    ):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.popen: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self) -> None:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running (pid {self.popen.pid})")  # type: ignore[union-attr]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            log.write(
                f"===== {time.strftime('%H:%M:%S')} starting: {' '.join(self.argv)}\n".encode()
            )
            log.flush()
            # If the test process is SIGKILLed, no teardown runs: have the kernel
            # kill the service too.  PDEATHSIG fires when the *thread* that
            # forked exits, so only use it from the main thread (a fault test
            # restarting a registry from a worker thread must not lose it).
            in_main = threading.current_thread() is threading.main_thread()
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # own process group: killpg reaches every child
                close_fds=True,
                preexec_fn=_die_with_parent if in_main else None,
            )

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_text(self) -> str:
        """Log written since the last start."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _signal_group(self, sig: int) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the group, wait, then SIGKILL whatever is left of it."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process group and reap the leader."""
        if self.popen is None:
            return
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)

    def failure(self, what: str) -> RuntimeError:
        """The exception to raise when start-up failed; includes the log tail."""
        tail = self.log_tail()
        status = (
            ""
            if self.popen is None or self.popen.poll() is None
            else f" (exit status {self.popen.returncode})"
        )
        msg = (
            f"{self.name} {what}{status}; command: {' '.join(self.argv)}\n"
            f"--- last lines of {self.log_path} ---\n{tail}"
        )
        for line in reversed(tail.splitlines()):
            if line.startswith("===== ") or not line.strip():
                continue  # our own "starting: <argv>" header
            if any(m in line.lower() for m in _REFUSAL_MARKERS):
                return ServiceUnavailable(
                    f"{self.name} refused to start on this machine: {line.strip()[:300]}", msg
                )
        return RuntimeError(msg)


def _wait_until(
    proc: _Process, ready: Callable[[], bool], timeout: float, what: str = "did not become ready"
) -> None:
    """Poll ``ready()`` until true; raise ``proc.failure`` if it dies or time runs out."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        if not proc.alive:
            raise proc.failure("exited during start-up")
        with contextlib.suppress(Exception):
            if ready():
                return
        if time.monotonic() > deadline:
            raise proc.failure(f"{what} within {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def _http_status(url: str, timeout: float = 2.0, cafile: Path | None = None) -> int:
    ctx = None
    if url.startswith("https://"):
        ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        if cafile is None:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
    )
    try:
        with opener.open(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def _unix_http_get(sock_path: Path, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Minimal HTTP/1.0 GET over a unix socket (dockerd's /_ping)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------- registry


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


def make_tls_cert(directory: Path, common_name: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate + key for 127.0.0.1/localhost; returns (cert, key).

    The certificate is its own CA: pass it as ``verify=``/``--cert-dir`` to clients.
    """
    openssl = _which("openssl")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={common_name}",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


# --------------------------------------------------------------------------- containerd


@dataclass
class Containerd:
    """A private containerd: ``socket`` is its gRPC address, ``root``/``state`` its dirs."""

    workdir: Path
    socket: Path
    root: Path
    state: Path
    config_path: Path
    ctr_binary: str
    namespace: str = CTR_NAMESPACE
    _proc: _Process = field(init=False, repr=False)

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def log_path(self) -> Path:
        return self._proc.log_path

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return self._proc.log_tail(lines)

    def ctr(
        self, *args: str, check: bool = False, timeout: float = 120.0, namespace: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``ctr --address <socket> --namespace modelreg-test <args>``, output captured as text."""
        argv = [
            self.ctr_binary,
            "--address",
            str(self.socket),
            "--namespace",
            namespace or self.namespace,
            *args,
        ]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _containerd_config(root: Path, state: Path, sock: Path, workdir: Path) -> str:
    disabled = [
        "io.containerd.grpc.v1.cri",  # CNI + a TCP streaming server; not needed for pull/unpack
        "io.containerd.snapshotter.v1.aufs",
        "io.containerd.snapshotter.v1.btrfs",
        "io.containerd.snapshotter.v1.zfs",
        "io.containerd.snapshotter.v1.devmapper",
    ]
    return "\n".join(
        [
            "version = 2",
            f"root = {_toml_str(str(root))}",
            f"state = {_toml_str(str(state))}",
            f"temp = {_toml_str(str(workdir / 'tmp'))}",
            f"disabled_plugins = [{', '.join(_toml_str(p) for p in disabled)}]",
            "oom_score = 0",
            "",
            "[grpc]",
            f"  address = {_toml_str(str(sock))}",
            "",
            "[ttrpc]",
            f"  address = {_toml_str(str(sock) + '.ttrpc')}",
            "",
            "[debug]",
            '  address = ""',
            '  level = "info"',
            "",
            "[metrics]",
            '  address = ""',
            "",
            # Default is /opt/containerd: system-wide. Keep it private.
            '[plugins."io.containerd.internal.v1.opt"]',
            f"  path = {_toml_str(str(workdir / 'opt'))}",
            "",
        ]
    )


@contextlib.contextmanager
def run_containerd(workdir: Path, *, timeout: float = 30.0) -> Iterator[Containerd]:
    """Start a private containerd (root, state, socket under ``workdir``); stop it on exit.

    On exit the process group is killed, any shim that still names our socket
    is killed too (shims put themselves in their own process group), and
    mounts left below ``workdir`` are lazily unmounted.
    """
    _require_root("containerd")
    binary = _which("containerd")
    ctr = _which("ctr")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    root, state = workdir / "root", workdir / "state"
    for d in (root, state, workdir / "tmp", workdir / "opt"):
        d.mkdir(exist_ok=True)
    sock = workdir / "c.sock"
    _check_socket_path(Path(str(sock) + ".ttrpc"))
    config_path = workdir / "containerd.toml"
    config_path.write_text(_containerd_config(root, state, sock, workdir))

    cd = Containerd(
        workdir=workdir,
        socket=sock,
        root=root,
        state=state,
        config_path=config_path,
        ctr_binary=ctr,
    )
    env = dict(os.environ, TMPDIR=str(workdir / "tmp"))
    cd._proc = _Process(
        "containerd", [binary, "--config", str(config_path)], workdir / "containerd.log", env=env
    )

    def ready() -> bool:
        if not sock.exists():
            return False
        return cd.ctr("version", timeout=5).returncode == 0

    # containerd 1.6 hard-codes shim sockets to /run/containerd/s/<hash>
    # (created when a container task starts, whatever ``state`` says).
    _note_absent_system_dirs(workdir, ["/run/containerd", "/run/containerd/s"])
    try:
        cd._proc.start()
        _wait_until(cd._proc, ready, timeout)
        yield cd
    finally:
        cd._proc.stop(timeout=10)
        _kill_pids(_pids_mentioning(str(workdir)))
        _unmount_below(workdir)
        _remove_created_system_dirs(workdir)


# --------------------------------------------------------------------------- dockerd


@dataclass
class Dockerd:
    """A private dockerd over a :class:`Containerd`; ``host`` is ``unix://<socket>``."""

    workdir: Path
    socket: Path
    data_root: Path
    exec_root: Path
    containerd: Containerd
    cli_config: Path
    _proc: _Process = field(init=False, repr=False)
    _clients: list[Any] = field(default_factory=list, init=False, repr=False)

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def log_path(self) -> Path:
        return self._proc.log_path

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return self._proc.log_tail(lines)

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for the docker CLI: our daemon, a private empty CLI config."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
        }
        env.update(DOCKER_HOST=self.host, DOCKER_CONFIG=str(self.cli_config))
        env.update(extra)
        return env

    def client(self, timeout: int = 120) -> Any:
        """A docker-py ``DockerClient`` on our socket (API version negotiated).

        Built with ``DOCKER_CONFIG`` pointing at a private empty config, so the
        developer's ``~/.docker/config.json`` (credential helpers!) is not used.
        """
        import docker

        old = os.environ.get("DOCKER_CONFIG")
        os.environ["DOCKER_CONFIG"] = str(self.cli_config)
        try:
            client = docker.DockerClient(base_url=self.host, version="auto", timeout=timeout)
            self._clients.append(client)  # closed when the daemon stops
            return client
        finally:
            if old is None:
                os.environ.pop("DOCKER_CONFIG", None)
            else:
                os.environ["DOCKER_CONFIG"] = old

    def cli(
        self,
        *args: str,
        check: bool = False,
        timeout: float = 300.0,
        env: dict[str, str] | None = None,
        input: str | bytes | None = None,
        text: bool = True,
    ) -> subprocess.CompletedProcess[Any]:
        """``docker -H unix://<socket> <args>`` with output captured."""
        docker_bin = _which("docker")
        return subprocess.run(
            [docker_bin, "-H", self.host, *args],
            capture_output=True,
            text=text,
            timeout=timeout,
            check=check,
            env=self.env(**(env or {})),
            input=input,
        )


@contextlib.contextmanager
def run_dockerd(
    workdir: Path,
    containerd: Containerd,
    *,
    insecure_registries: Sequence[str] = (),
    extra_args: Sequence[str] = (),
    timeout: float = 60.0,
) -> Iterator[Dockerd]:
    """Start a private dockerd on ``unix://<workdir>/d.sock`` over ``containerd``.

    vfs storage, no iptables/bridge/ip-forward/userland-proxy, data-root,
    exec-root, pidfile, daemon.json and trust key all under ``workdir``.
    Registries on 127.0.0.0/8 (and ``localhost``) are plain-HTTP by default;
    add others (e.g. a TLS registry with a self-signed cert) via
    ``insecure_registries``.
    """
    _require_root("dockerd")
    binary = _which("dockerd")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    sock = workdir / "d.sock"
    _check_socket_path(sock)
    data_root, exec_root = workdir / "data", workdir / "exec"
    for d in (data_root, exec_root, workdir / "tmp"):
        d.mkdir(exist_ok=True)
    cli_config = workdir / "cli"
    cli_config.mkdir(exist_ok=True)
    (cli_config / "config.json").write_text("{}\n")
    daemon_json = workdir / "daemon.json"
    # Our own daemon.json, so /etc/docker/daemon.json is never read.  dockerd
    # 20.10 keeps its trust key at /etc/docker/key.json unless told otherwise;
    # the only knob is this daemon.json key (there is no such CLI flag).
    daemon_json.write_text(json.dumps({"deprecated-key-path": str(workdir / "key.json")}) + "\n")

    argv = [
        binary,
        f"--host=unix://{sock}",
        f"--containerd={containerd.socket}",
        "--storage-driver=vfs",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--bridge=none",
        "--userland-proxy=false",
        f"--data-root={data_root}",
        f"--exec-root={exec_root}",
        f"--pidfile={workdir / 'docker.pid'}",
        f"--config-file={daemon_json}",
        "--shutdown-timeout=3",
        "--log-level=info",
    ]
    for reg in insecure_registries:
        argv.append(f"--insecure-registry={reg}")
    argv.extend(extra_args)

    env = dict(os.environ, TMPDIR=str(workdir / "tmp"))
    env.pop("DOCKER_HOST", None)
    # dockerd 20.10 creates the plugin discovery dir unconditionally.
    _note_absent_system_dirs(workdir, ["/run/docker", "/run/docker/plugins"])

    dd = Dockerd(
        workdir=workdir,
        socket=sock,
        data_root=data_root,
        exec_root=exec_root,
        containerd=containerd,
        cli_config=cli_config,
    )
    dd._proc = _Process("dockerd", argv, workdir / "dockerd.log", env=env)

    def ready() -> bool:
        status, body = _unix_http_get(sock, "/_ping")
        return status == 200 and body.strip() == b"OK"

    try:
        dd._proc.start()
        _wait_until(dd._proc, ready, timeout)
        yield dd
    finally:
        for client in dd._clients:
            with contextlib.suppress(Exception):
                client.close()
        dd._proc.stop(timeout=20)
        _kill_pids(_pids_mentioning(str(workdir)))
        _unmount_below(workdir)
        _remove_created_system_dirs(workdir)
