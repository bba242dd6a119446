"""What a push or pull does not do: re-read unchanged files, re-send blobs, copy bytes twice."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.models import unique_repo
from helpers.registry import write_htpasswd
from helpers.tls import make_tls_cert

from modelreg import api, packing
from modelreg.errors import RegistryUnavailable
from modelreg.store import RegistryOptions, Stores
from modelreg.store.transport import Transport
from modelreg.versions import version_record_tag


class AccessLog:
    """The requests the real registry logged for one repository, from a point on."""

    def __init__(self, registry, repository: str) -> None:  # type: ignore[no-untyped-def]
        self._path = Path(registry.log_path)
        self._repository = repository
        self._offset = 0
        self.mark()

    def mark(self) -> None:
        self._offset = self._settled_size()

    def _settled_size(self) -> int:
        # the registry logs a request after answering it: wait until the log stops growing
        size = -1
        while size != self._path.stat().st_size:
            size = self._path.stat().st_size
            time.sleep(0.2)
        return size

    def requests(self) -> list[tuple[str, str]]:
        self._settled_size()
        with open(self._path, "rb") as log:
            log.seek(self._offset)
            text = log.read().decode(errors="replace")
        found = re.findall(r'"([A-Z]+) (/v2/\S+) HTTP/1\.1"', text)
        return [(m, p) for m, p in found if p.startswith(f"/v2/{self._repository}/")]


def test_push_again_reads_no_file_and_sends_no_blob_request(
    stores: Stores, model_dir: Path, registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = unique_repo()
    target = f"{registry.host}/{repository}"
    first = api.push(model_dir, target, capture=False, stores=stores)
    log = AccessLog(registry, repository)

    def refuse(entry: packing.FileEntry) -> Iterator[bytes]:
        raise AssertionError(f"{entry.source} was read")

    def refuse_hash(path: Path) -> str:
        raise AssertionError(f"{path} was hashed")

    monkeypatch.setattr(packing, "_file_chunks", refuse)
    monkeypatch.setattr("modelreg.hashcache.sha256_file", refuse_hash)
    again = api.push(model_dir, target, capture=False, stores=stores)
    requests_sent = log.requests()
    assert (again.version, again.digest, again.existed, again.uploaded) == (
        1,
        first.digest,
        True,
        0,
    )
    # the manifest is known from the digest cache: read the version record, check the tag
    assert [method for method, _ in requests_sent] == ["GET", "HEAD"]
    assert not any("/blobs/" in path for _, path in requests_sent)


def test_second_repository_mounts_every_blob_and_uploads_none(
    stores: Stores, model_dir: Path, registry
) -> None:
    api.push(model_dir, f"{registry.host}/{unique_repo()}", capture=False, stores=stores)
    repository = unique_repo()
    log = AccessLog(registry, repository)
    second = api.push(model_dir, f"{registry.host}/{repository}", capture=False, stores=stores)
    assert second.uploaded == 0 and second.version == 1
    requests_sent = log.requests()
    mounts = [path for method, path in requests_sent if method == "POST" and "mount=" in path]
    # every layer, the config, and the empty JSON blob of the version record
    expected = len(api.inspect(second.reference, stores=stores).manifest.layers) + 2
    assert len(mounts) == expected
    assert not any(method == "PATCH" for method, _ in requests_sent)
    assert not any(method == "PUT" and "/blobs/" in path for method, path in requests_sent)


def test_small_requests_keep_working_behind_basic_auth_and_tls(
    make_registry, model_dir: Path, tmp_path: Path
) -> None:
    """The quick request path meets a 401 first, goes through the full path once for
    the challenge, then carries the credentials itself - over TLS with a private CA."""

    cert, key = make_tls_cert(tmp_path / "tls")
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "s3cret"})
    registry = make_registry(htpasswd=htpasswd, tls=(cert, key))
    docker_config = Path(os.environ["DOCKER_CONFIG"])
    docker_config.mkdir(parents=True, exist_ok=True)
    token = base64.b64encode(b"alice:s3cret").decode()
    (docker_config / "config.json").write_text(
        json.dumps({"auths": {registry.host: {"auth": token}}})
    )
    stores = Stores(home=tmp_path / "home", options=RegistryOptions(ca_cert=str(cert)))
    target = f"{registry.host}/{unique_repo()}"
    first = api.push(model_dir, target, capture=False, stores=stores)
    again = api.push(model_dir, target, capture=False, stores=stores)
    assert (first.version, again.version, again.existed) == (1, 1, True)
    assert [v.digest for v in api.versions(target, stores=stores)] == [first.digest]
    api.pull(first.reference, tmp_path / "out", stores=stores)
    assert (tmp_path / "out" / "weights.bin").read_bytes() == (
        model_dir / "weights.bin"
    ).read_bytes()
    transport = stores.transport(registry.host)
    assert transport.base_url.startswith("https://")
    assert transport._quick_connections  # the small requests did go the quick way
    stores.close()


def test_versions_reads_the_model_and_its_record_per_version(
    stores: Stores, tmp_path: Path, registry
) -> None:
    repository = unique_repo()
    target = f"{registry.host}/{repository}"
    pushed = []
    for index in range(3):
        model = tmp_path / f"m{index}"
        model.mkdir()
        (model / "weights.txt").write_text(f"model {index}")
        pushed.append(api.push(model, target, capture=False, stores=stores))
    log = AccessLog(registry, repository)
    listed = api.versions(target, stores=stores)
    assert [(v.version, v.digest, v.created) for v in listed] == [
        (p.version, p.digest, p.created) for p in pushed
    ]
    sent = log.requests()
    # the push time is in the version record: claim tags, which carried it in their
    # names, are removed once a push has its version (they were tag noise forever)
    records = [
        ("GET", f"/v2/{repository}/manifests/{version_record_tag(p.digest)}") for p in pushed
    ]
    assert sorted(sent) == sorted(
        [("GET", f"/v2/{repository}/tags/list?n=1000")]
        + [("GET", f"/v2/{repository}/manifests/v{n}") for n in (1, 2, 3)]
        + records
    )


def test_quick_requests_after_a_head_are_each_sent_once(registry) -> None:
    repository = unique_repo()
    transport = Transport(registry.host, RegistryOptions(), lambda: None)
    log = AccessLog(registry, repository)
    for _ in range(3):
        transport.quick("HEAD", f"/v2/{repository}/manifests/v1", scope="").close()
        transport.quick("GET", f"/v2/{repository}/tags/list", scope="").close()
    transport.close()
    assert [method for method, _ in log.requests()] == ["HEAD", "GET"] * 3


def test_push_again_does_not_even_import_requests(
    stores: Stores, model_dir: Path, registry, home: Path
) -> None:
    """Small requests go the quick way, so a no-op push skips requests' import time."""
    target = f"{registry.host}/{unique_repo()}"
    api.push(model_dir, target, capture=False, stores=stores)
    code = (
        "import sys; from modelreg import api; "
        "r = api.push(sys.argv[1], sys.argv[2], capture=False); "
        "print(r.existed, 'requests' in sys.modules)"
    )
    src = Path(api.__file__).parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code, str(model_dir), target],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(src), "MODELREG_HOME": str(home)},
    )
    assert result.stdout.split() == ["True", "False"]


def test_an_untrusted_tls_registry_is_refused_with_the_tls_hint(
    make_registry, model_dir: Path, tmp_path: Path
) -> None:
    """The loopback scheme probe does not verify; the requests after it do, and say so."""

    cert, key = make_tls_cert(tmp_path / "tls")
    registry = make_registry(tls=(cert, key))
    stores = Stores(home=tmp_path / "home", options=RegistryOptions(timeout=2))
    with pytest.raises(RegistryUnavailable) as caught:
        api.push(model_dir, f"{registry.host}/{unique_repo()}", capture=False, stores=stores)
    assert "TLS" in caught.value.message and "certificate verify failed" in caught.value.message
    assert caught.value.hint and "--ca-cert" in caught.value.hint
    stores.close()
