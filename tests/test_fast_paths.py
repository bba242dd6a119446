"""What a push or pull does not do: re-read unchanged files, re-send blobs, copy bytes twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import unique_repo

from modelreg import api, packing
from modelreg.store import Stores
from modelreg.store.transport import Transport


@pytest.fixture
def requests_sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(method, path) of every request modelreg sends to a registry."""
    sent: list[tuple[str, str]] = []
    original = Transport.request

    def recording(self: Transport, method: str, path: str, **kwargs: object):  # type: ignore[no-untyped-def]
        sent.append((method, path))
        return original(self, method, path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Transport, "request", recording)
    return sent


def test_push_again_reads_no_file_and_sends_no_blob_request(
    stores: Stores, model_dir: Path, registry, requests_sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = f"{registry.host}/{unique_repo()}"
    first = api.push(model_dir, target, capture=False, stores=stores)

    def refuse(entry: packing.FileEntry) -> Iterator[bytes]:
        raise AssertionError(f"{entry.source} was read")

    def refuse_hash(path: Path) -> str:
        raise AssertionError(f"{path} was hashed")

    monkeypatch.setattr(packing, "_file_chunks", refuse)
    monkeypatch.setattr("modelreg.hashcache.sha256_file", refuse_hash)
    requests_sent.clear()
    again = api.push(model_dir, target, capture=False, stores=stores)
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
    stores: Stores, model_dir: Path, registry, requests_sent
) -> None:
    api.push(model_dir, f"{registry.host}/{unique_repo()}", capture=False, stores=stores)
    requests_sent.clear()
    second = api.push(model_dir, f"{registry.host}/{unique_repo()}", capture=False, stores=stores)
    assert second.uploaded == 0 and second.version == 1
    mounts = [path for method, path in requests_sent if method == "POST" and "mount=" in path]
    layers_and_config = len(api.inspect(second.reference, stores=stores).manifest.layers) + 1
    assert len(mounts) == layers_and_config
    assert not any(method == "PATCH" for method, _ in requests_sent)
    # the only blob sent is the 2-byte empty config of the version record
    blob_puts = [path for method, path in requests_sent if method == "PUT" and "/blobs/" in path]
    assert len(blob_puts) == 1
