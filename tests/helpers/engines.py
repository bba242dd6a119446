"""Private containerd and dockerd for the engine tests.

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
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.processes import (
    LOG_TAIL_LINES,
    _check_socket_path,
    _kill_pids,
    _note_absent_system_dirs,
    _pids_mentioning,
    _Process,
    _remove_created_system_dirs,
    _require_root,
    _unix_http_get,
    _unmount_below,
    _wait_until,
    _which,
)

CTR_NAMESPACE = "modelreg-test"


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


def podman_base(podman: str, storage: Path) -> list[str]:
    """``podman`` on private storage under ``storage`` (vfs, no systemd): keep ``storage``
    short, podman refuses a run root of 50 characters or more."""
    return [
        podman,
        "--root",
        str(storage / "root"),
        "--runroot",
        str(storage / "run"),
        "--storage-driver",
        "vfs",
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
    ]
