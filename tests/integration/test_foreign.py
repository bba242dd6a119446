"""Foreign input: a single-image index is followed; anything else is exit 2, named, with what
modelreg accepts; ``inspect`` shows any manifest or index as stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers.cli import Cli
from helpers.models import unique_repo
from test_engines import tree_of

from modelreg import api
from modelreg.digest import sha256_digest
from modelreg.oci import IMAGE_INDEX, IMAGE_MANIFEST
from modelreg.reference import parse_reference
from modelreg.store import Stores
from modelreg.store.base import Repository


def pushed_model(registry: Any, stores: Stores, model_dir: Path) -> tuple[Repository, str, int]:
    result = api.push(model_dir, f"{registry.host}/{unique_repo()}", capture=False, stores=stores)
    repository = stores.repository(parse_reference(result.reference))
    descriptor = repository.resolve(result.digest)
    assert descriptor is not None
    return repository, result.digest, descriptor.size


def index_of(*entries: tuple[str, int, dict[str, str] | None]) -> bytes:
    manifests = []
    for digest, size, platform in entries:
        entry: dict[str, Any] = {"mediaType": IMAGE_MANIFEST, "digest": digest, "size": size}
        if platform is not None:
            entry["platform"] = platform
        manifests.append(entry)
    return json.dumps(
        {"schemaVersion": 2, "mediaType": IMAGE_INDEX, "manifests": manifests}
    ).encode()


AMD64 = {"os": "linux", "architecture": "amd64"}
ATTESTATION = {"os": "unknown", "architecture": "unknown"}


def test_a_single_model_index_is_followed_to_its_linux_amd64_image(
    registry: Any, stores: Stores, model_dir: Path, cli: Cli, tmp_path: Path
) -> None:
    repository, digest, size = pushed_model(registry, stores, model_dir)
    wrapped = index_of((digest, size, AMD64), (digest, size, ATTESTATION))
    repository.push_manifest(wrapped, IMAGE_INDEX, ["wrapped"])
    result = cli("pull", f"{repository.name}:wrapped", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert tree_of(tmp_path / "out") == tree_of(model_dir)
    assert api.inspect(f"{repository.name}:wrapped", stores=stores).digest == digest


def test_a_multi_platform_index_is_bad_input_and_inspect_shows_it(
    registry: Any, stores: Stores, model_dir: Path, cli: Cli, tmp_path: Path
) -> None:
    repository, digest, size = pushed_model(registry, stores, model_dir)
    arm = {"os": "linux", "architecture": "arm64"}
    two = index_of((digest, size, AMD64), (digest, size, AMD64), (digest, size, arm))
    repository.push_manifest(two, IMAGE_INDEX, ["multi"])
    result = cli("pull", f"{repository.name}:multi", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert "image index" in result.stderr and "2 linux/amd64 images" in result.stderr
    assert "hint: modelreg reads OCI image manifests" in result.stderr
    shown = cli("inspect", f"{repository.name}:multi")
    assert shown.returncode == 0, shown.stderr
    assert IMAGE_INDEX in shown.stdout and "arm64" in shown.stdout
    raw = cli("inspect", f"{repository.name}:multi", "--json")
    assert json.loads(raw.stdout)["manifest"]["manifests"][2]["platform"] == arm


def test_an_unknown_media_type_is_bad_input_naming_it(
    registry: Any, stores: Stores, cli: Cli
) -> None:
    repository = stores.repository(parse_reference(f"{registry.host}/{unique_repo()}"))
    chart = b"not really a chart"
    config = b"{}"
    for blob in (chart, config):
        repository.push_blob([blob], len(blob), sha256_digest(blob))
    helm = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
    manifest = {
        "schemaVersion": 2,
        "mediaType": IMAGE_MANIFEST,
        "config": {
            "mediaType": "application/vnd.cncf.helm.config.v1+json",
            "digest": sha256_digest(config),
            "size": 2,
        },
        "layers": [{"mediaType": helm, "digest": sha256_digest(chart), "size": len(chart)}],
    }
    repository.push_manifest(json.dumps(manifest).encode(), IMAGE_MANIFEST, ["chart"])
    result = cli("pull", f"{repository.name}:chart", "/nonexistent/out")
    assert result.returncode == 2, result.stderr
    assert helm in result.stderr and "application/vnd.oci.image.layer.v1.tar+gzip" in result.stderr


def test_an_oras_file_artifact_is_bad_input_with_its_digest_and_a_hint(
    registry: Any, stores: Stores, cli: Cli, tmp_path: Path
) -> None:
    provider = pytest.importorskip("oras.provider", reason="oras-py (the bench extra)")
    notes = tmp_path / "notes.txt"
    notes.write_text("just a file, not a tar\n" * 40)
    target = f"{registry.host}/{unique_repo('oras/raw')}:v1"
    client = provider.Registry(hostname=registry.host, insecure=True)
    client.push(target=target, files=[str(notes)], disable_path_validation=True)
    result = cli("pull", target, str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert sha256_digest(notes.read_bytes()) in result.stderr
    assert "is not a tar archive" in result.stderr and "oras pull" in result.stderr
    assert not (tmp_path / "out").exists()
