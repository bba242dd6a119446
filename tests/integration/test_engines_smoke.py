"""Smoke test of the engine fixtures against real things, without modelreg code.

A minimal OCI image of the shape DESIGN.md prescribes (one uncompressed tar
layer with files under /model/, an image config with os/architecture/
rootfs.diff_ids and Labels, an OCI image manifest with an artifactType) is
built by hand and pushed with plain ``requests``; then dockerd pulls it by
digest, ``docker create`` + copy-out and a classic-builder ``COPY --from``
read the files back, containerd pulls and unpacks it, and skopeo inspects it.
Each step is timed; ``-s`` prints the timings at the end of the module.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import platform
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from helpers.processes import ServiceUnavailable, require_binary
from helpers.registry import run_registry, write_htpasswd
from helpers.skips import STRICT_ENV, unavailable
from helpers.tls import make_tls_cert

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
ARTIFACT_TYPE = "application/vnd.modelreg.model.v1"
LABEL = "dev.modelreg.smoke"

WEIGHTS = bytes(range(256)) * 64 + b"smoke-weights\n"  # 16 KiB + a tail
README = b"# smoke model\n"

TIMINGS: dict[str, float] = {}


@contextlib.contextmanager
def timed(name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        TIMINGS[name] = TIMINGS.get(name, 0.0) + time.perf_counter() - start


@pytest.fixture(scope="module", autouse=True)
def _report_timings() -> Iterator[None]:
    start = time.perf_counter()
    yield
    total = time.perf_counter() - start
    width = max((len(k) for k in TIMINGS), default=10)
    print("\n--- engine smoke timings ---")
    for name, secs in TIMINGS.items():
        print(f"  {name:<{width}}  {secs:6.2f} s")
    print(f"  {'module total (incl. fixtures)':<{width}}  {total:6.2f} s")


# ------------------------------------------------------------------ a hand-made OCI image


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )


def deterministic_tar(files: dict[str, bytes], root: str = "model") -> bytes:
    """Uncompressed tar: sorted entries, mtime 0, uid/gid 0, no user names."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo(root + "/")
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 0
        tar.addfile(d)
        for name in sorted(files):
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


@dataclass(frozen=True)
class Image:
    layer: bytes
    config: bytes
    manifest: bytes

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256(self.config)

    @property
    def layer_digest(self) -> str:
        return sha256(self.layer)


def build_image(files: dict[str, bytes], labels: dict[str, str]) -> Image:
    layer = deterministic_tar(files)
    config = json.dumps(
        {
            "architecture": host_arch(),
            "os": "linux",
            "config": {"Labels": labels},
            "rootfs": {
                "type": "layers",
                "diff_ids": [sha256(layer)],
            },  # uncompressed: diffID == digest
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [
                {
                    "mediaType": OCI_LAYER_TAR,
                    "digest": sha256(layer),
                    "size": len(layer),
                    "annotations": {"org.opencontainers.image.title": "model"},
                }
            ],
            "annotations": {"org.opencontainers.image.description": "engine smoke test"},
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return Image(layer=layer, config=config, manifest=manifest)


def http() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # no proxies / netrc for loopback
    return s


def push_blob(session: requests.Session, base: str, repo: str, data: bytes) -> str:
    digest = sha256(data)
    r = session.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=30)
    assert r.status_code == 202, (r.status_code, r.text)
    location = urljoin(f"{base}/", r.headers["Location"])  # may be relative and carry ?_state=
    sep = "&" if "?" in location else "?"
    r = session.put(
        f"{location}{sep}digest={digest}",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert r.status_code == 201, (r.status_code, r.text)
    assert r.headers["Docker-Content-Digest"] == digest
    return digest


def push_image(base: str, repo: str, image: Image, tag: str) -> str:
    with http() as s:
        push_blob(s, base, repo, image.layer)
        push_blob(s, base, repo, image.config)
        for ref in (image.digest, tag):
            r = s.put(
                f"{base}/v2/{repo}/manifests/{ref}",
                data=image.manifest,
                headers={"Content-Type": OCI_MANIFEST},
                timeout=30,
            )
            assert r.status_code == 201, (r.status_code, r.text)
            assert r.headers["Docker-Content-Digest"] == image.digest
    return image.digest


@dataclass(frozen=True)
class Pushed:
    image: Image
    host: str
    repo: str
    tag: str
    label_value: str

    @property
    def ref(self) -> str:
        """``127.0.0.1:PORT/repo@sha256:…``"""
        return f"{self.host}/{self.repo}@{self.image.digest}"


@pytest.fixture(scope="module")
def pushed(registry) -> Pushed:
    label_value = f"smoke-{time.time_ns()}"
    repo = f"smoke/model-{label_value[-6:]}"
    image = build_image({"weights.bin": WEIGHTS, "README.md": README}, {LABEL: label_value})
    with timed("build + push image with requests"):
        push_image(registry.url, repo, image, "v1")
    return Pushed(image=image, host=registry.host, repo=repo, tag="v1", label_value=label_value)


def files_from_tar(data: bytes) -> dict[str, bytes]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            if m.isfile():
                out[m.name] = tar.extractfile(m).read()  # type: ignore[union-attr]
    return out


# ------------------------------------------------------------------ the registry itself


def test_registry_serves_exact_bytes(registry, pushed: Pushed) -> None:
    with timed("registry: fetch manifest/blob/tags"), http() as s:
        base = f"{registry.url}/v2/{pushed.repo}"
        r = s.get(
            f"{base}/manifests/{pushed.image.digest}", headers={"Accept": OCI_MANIFEST}, timeout=10
        )
        assert r.status_code == 200
        assert r.content == pushed.image.manifest
        assert r.headers["Content-Type"] == OCI_MANIFEST
        r = s.head(f"{base}/manifests/{pushed.tag}", headers={"Accept": OCI_MANIFEST}, timeout=10)
        assert r.headers["Docker-Content-Digest"] == pushed.image.digest
        assert (
            s.get(f"{base}/blobs/{pushed.image.layer_digest}", timeout=10).content
            == pushed.image.layer
        )
        assert s.get(f"{base}/tags/list", timeout=10).json()["tags"] == [pushed.tag]


# ------------------------------------------------------------------ dockerd


@pytest.mark.engines
def test_docker_pull_by_digest(dockerd, pushed: Pushed) -> None:
    client = dockerd.client()
    with timed("docker pull by digest (docker-py)"):
        img = client.images.pull(pushed.ref)
    assert img.id == pushed.image.config_digest  # image ID is the config digest
    assert img.labels[LABEL] == pushed.label_value
    assert pushed.ref in img.attrs["RepoDigests"]
    assert img.attrs["Os"] == "linux" and img.attrs["Architecture"] == host_arch()
    assert img.attrs["RootFS"]["Layers"] == [pushed.image.layer_digest]
    # The CLI sees the same thing.
    out = dockerd.cli(
        "image", "inspect", "--format", "{{json .Config.Labels}}", pushed.ref, check=True
    ).stdout
    assert json.loads(out)[LABEL] == pushed.label_value


@pytest.mark.engines
def test_docker_create_and_copy_out(dockerd, pushed: Pushed, tmp_path: Path) -> None:
    client = dockerd.client()
    client.images.pull(pushed.ref)
    with timed("docker create + get_archive + docker cp"):
        # No Cmd in a model image: give one; the container is never started.
        container = client.containers.create(pushed.ref, command=["/model"], network_disabled=True)
        try:
            stream, stat = container.get_archive("/model")
            files = files_from_tar(b"".join(stream))
            # docker cp, as a user would type it
            dockerd.cli("cp", f"{container.id}:/model", str(tmp_path / "out"), check=True)
        finally:
            container.remove(force=True)
    assert stat["name"] == "model"
    assert files == {"model/README.md": README, "model/weights.bin": WEIGHTS}
    assert (tmp_path / "out" / "weights.bin").read_bytes() == WEIGHTS


@pytest.mark.engines
def test_dockerfile_copy_from_digest(dockerd, pushed: Pushed, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM scratch\nCOPY --from={pushed.ref} /model /opt/model\n"
    )
    tag = f"modelreg-smoke-built:{pushed.label_value[-6:]}"
    with timed("docker build (classic) COPY --from=@digest"):
        res = dockerd.cli(
            "build", "--network=none", "-t", tag, str(tmp_path), env={"DOCKER_BUILDKIT": "0"}
        )
    assert res.returncode == 0, (
        f"docker build failed:\n{res.stdout}\n{res.stderr}\n--- dockerd ---\n{dockerd.log_tail()}"
    )
    client = dockerd.client()
    container = client.containers.create(tag, command=["/opt/model"], network_disabled=True)
    try:
        stream, _ = container.get_archive("/opt/model/weights.bin")
        assert files_from_tar(b"".join(stream)) == {"weights.bin": WEIGHTS}
    finally:
        container.remove(force=True)
        client.images.remove(tag, force=True)


# ------------------------------------------------------------------ containerd


@pytest.mark.engines
def test_ctr_pull_and_unpack(containerd, pushed: Pushed, tmp_path: Path) -> None:
    with timed("ctr images pull --plain-http (unpack)"):
        res = containerd.ctr("images", "pull", "--plain-http", pushed.ref)
    assert res.returncode == 0, (
        f"ctr pull failed:\n{res.stdout}\n{res.stderr}\n--- containerd ---\n{containerd.log_tail()}"
    )
    listing = containerd.ctr("images", "ls", check=True).stdout
    assert pushed.ref in listing and pushed.image.digest in listing

    # The layer blob is in the content store, byte for byte.
    blob = subprocess_bytes(containerd, "content", "get", pushed.image.layer_digest)
    assert blob == pushed.image.layer

    # And the unpacked snapshot holds the files.
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with timed("ctr images mount + read + unmount"):
        res = containerd.ctr("images", "mount", pushed.ref, str(mnt))
        assert res.returncode == 0, f"ctr images mount failed:\n{res.stdout}\n{res.stderr}"
        try:
            assert (mnt / "model" / "weights.bin").read_bytes() == WEIGHTS
            assert (mnt / "model" / "README.md").read_bytes() == README
        finally:
            containerd.ctr("images", "unmount", "--rm", str(mnt), check=True)
    containerd.ctr("images", "rm", "--sync", pushed.ref, check=True)


def subprocess_bytes(containerd, *args: str) -> bytes:
    """Binary stdout of a ctr command (``Containerd.ctr`` decodes text)."""
    argv = [
        containerd.ctr_binary,
        "--address",
        str(containerd.socket),
        "--namespace",
        containerd.namespace,
        *args,
    ]
    return subprocess.run(argv, capture_output=True, check=True, timeout=60).stdout


# ------------------------------------------------------------------ skopeo


def test_skopeo_inspect(skopeo: str, pushed: Pushed) -> None:
    url = f"docker://{pushed.ref}"
    with timed("skopeo inspect (+ --raw)"):
        info = subprocess.run(
            [skopeo, "inspect", "--tls-verify=false", "--no-creds", url],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        raw = subprocess.run(
            [skopeo, "inspect", "--raw", "--tls-verify=false", "--no-creds", url],
            capture_output=True,
            timeout=60,
            check=True,
        )
    data = json.loads(info.stdout)
    assert data["Digest"] == pushed.image.digest
    assert data["Labels"][LABEL] == pushed.label_value
    assert data["Architecture"] == host_arch() and data["Os"] == "linux"
    assert raw.stdout == pushed.image.manifest


# ------------------------------------------------------------------ the service helpers themselves


def test_registry_restart_keeps_port_and_storage(make_registry) -> None:
    with timed("registry: start, kill -9, restart"):
        reg = make_registry()
        port = reg.port
        with http() as s:
            digest = push_blob(s, reg.url, "fault/blob", b"survives a restart")
            reg.kill()
            assert not reg.running
            with pytest.raises(requests.ConnectionError):
                s.get(f"{reg.url}/v2/", timeout=2)
            reg.start()
            assert reg.port == port
            r = s.get(f"{reg.url}/v2/fault/blob/blobs/{digest}", timeout=5)
    assert r.content == b"survives a restart"
    assert (reg.root / "docker" / "registry" / "v2").is_dir()


def test_registry_start_failure_shows_log(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with (
            pytest.raises(RuntimeError) as excinfo,
            run_registry(tmp_path / "reg", port=port, timeout=10),
        ):
            pass  # pragma: no cover
    assert not isinstance(excinfo.value, ServiceUnavailable)
    assert "address already in use" in str(excinfo.value)
    assert "last lines of" in str(excinfo.value)


def test_missing_binary_is_service_unavailable() -> None:
    with pytest.raises(ServiceUnavailable, match="not found"):
        require_binary("modelreg-no-such-binary")


def test_registry_htpasswd_and_tls(make_registry, tmp_path: Path) -> None:
    cert, key = make_tls_cert(tmp_path / "tls")
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "s3cret"})
    with timed("registry: htpasswd + TLS start/check"):
        reg = make_registry(htpasswd=htpasswd, tls=(cert, key))
        assert reg.url.startswith("https://127.0.0.1:")
        with http() as s:
            s.verify = str(cert)
            assert s.get(f"{reg.url}/v2/", timeout=5).status_code == 401
            assert s.get(f"{reg.url}/v2/", auth=("alice", "wrong"), timeout=5).status_code == 401
            assert s.get(f"{reg.url}/v2/", auth=("alice", "s3cret"), timeout=5).status_code == 200


def test_strict_mode_turns_skip_into_failure(monkeypatch) -> None:
    exc = ServiceUnavailable("dockerd not found on PATH")
    monkeypatch.delenv(STRICT_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="dockerd not found"):
        unavailable(exc, "dockerd")
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="MODELREG_TEST_STRICT=1"):
        unavailable(exc, "dockerd")
