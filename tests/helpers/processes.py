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

Shared machinery for every launcher: free ports, short temp dirs that outlive a
SIGKILL, child processes in their own group with PDEATHSIG, readiness polling.
The launchers themselves live in :mod:`helpers.registry` and :mod:`helpers.engines`;
certificates in :mod:`helpers.tls`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

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
