"""The anchor moved off ``sha256-<hex>``: a repository written before still works, and is
migrated on the next push or by ``versions --repair``, its records becoming referrers."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.cli import Cli
from helpers.registry import Registry

from modelreg import api
from modelreg.anchors import anchor_tag, legacy_anchor_tag
from modelreg.oci import IMAGE_INDEX
from modelreg.policy import policy_from_keys
from modelreg.promotion import RECORD_ARTIFACT
from modelreg.reference import parse_reference
from modelreg.store import Stores
from modelreg.store.base import Repository
from modelreg.store.referrers import list_referrers
from modelreg.versions import VERSION_ARTIFACT

LEGACY = Path(__file__).parents[1] / "fixtures" / "legacy-repo"


def load_legacy(stores: Stores, target: str) -> Repository:
    """The fixture (written by the code before the move) at ``target``, byte for byte."""
    source = stores.local.repository("legacy-fixture-source")
    shutil.copytree(LEGACY / "layout", source.path)
    repository = stores.repository(parse_reference(target))
    if target != "fraud":  # a registry: copy every blob and tag exactly
        for digest in source.list_blobs():
            data = source.blob_path(digest).read_bytes()
            repository.push_blob([data], len(data), digest)
        for tag, descriptor in source.tag_map().items():
            _, data = source.fetch_manifest(descriptor.digest)
            repository.push_manifest(data, descriptor.media_type, [tag])
    else:
        shutil.copytree(LEGACY / "layout", stores.local.repository(target).path)
    return repository


def policy() -> object:
    return policy_from_keys([LEGACY / "keys" / "alice.pub"])


@pytest.fixture(params=["local", "registry"])
def legacy(
    stores: Stores, request: pytest.FixtureRequest, make_registry: Callable[..., Registry]
) -> tuple[str, Repository]:
    """The records are signed for repository ``fraud``: a fresh registry each time."""
    target = "fraud" if request.param == "local" else f"{make_registry().host}/fraud"
    return target, load_legacy(stores, target)


def digests_of(repository: Repository) -> tuple[str, str]:
    v1 = repository.resolve("v1")
    v2 = repository.resolve("v2")
    assert v1 is not None and v2 is not None
    return v1.digest, v2.digest


def test_old_layout_is_read_as_it_is(stores: Stores, legacy: tuple[str, Repository]) -> None:
    target, repository = legacy
    v1, v2 = digests_of(repository)
    listed = api.versions(target, stores=stores)
    assert [(v.version, v.digest) for v in listed] == [(1, v1), (2, v2)]
    assert api.unversioned(target, listed, stores=stores) == []
    verified = api.verify(f"{target}:production", policy=policy(), stores=stores)  # type: ignore[arg-type]
    assert verified.digest == v1
    # nothing was written by reading
    assert repository.resolve(legacy_anchor_tag(v1)).digest == v1  # type: ignore[union-attr]
    assert repository.resolve(anchor_tag(v1)) is None


def check_migrated(repository: Repository, v1: str, v2: str) -> None:
    tags = repository.list_tags()
    for digest in (v1, v2):
        assert repository.resolve(anchor_tag(digest)).digest == digest  # type: ignore[union-attr]
        index = repository.resolve(legacy_anchor_tag(digest))
        assert index is not None and index.media_type == IMAGE_INDEX
    kinds = sorted(d.artifact_type or "" for d in list_referrers(repository, v1))
    assert kinds == sorted([VERSION_ARTIFACT, RECORD_ARTIFACT, RECORD_ARTIFACT])
    assert [d.artifact_type for d in list_referrers(repository, v2)] == [VERSION_ARTIFACT]
    assert {"v1", "v2", "first", "staging", "production"} <= set(tags)


def test_next_push_migrates(stores: Stores, legacy: tuple[str, Repository], tmp_path: Path) -> None:
    target, repository = legacy
    v1, v2 = digests_of(repository)
    model = tmp_path / "three"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"3" * 100)
    pushed = api.push(model, target, capture=False, stores=stores)
    assert pushed.version == 3
    check_migrated(repository, v1, v2)
    assert [d.artifact_type for d in list_referrers(repository, pushed.digest)] == [
        VERSION_ARTIFACT
    ]
    listed = api.versions(target, stores=stores)
    assert [v.version for v in listed] == [1, 2, 3]
    assert api.unversioned(target, listed, stores=stores) == []
    verified = api.verify(f"{target}:production", policy=policy(), stores=stores)  # type: ignore[arg-type]
    assert verified.digest == v1
    # pushing an old version again reports its number and writes nothing new
    assert api.versions(target, stores=stores)[0].version == 1


def test_repair_migrates_explicitly(
    stores: Stores, legacy: tuple[str, Repository], cli: Cli
) -> None:
    target, repository = legacy
    v1, v2 = digests_of(repository)
    result = cli("versions", target, "--repair")
    assert result.returncode == 0, result.stderr
    check_migrated(repository, v1, v2)
    index = repository.fetch_manifest(legacy_anchor_tag(v1))[1]
    assert json.loads(index)["mediaType"] == IMAGE_INDEX
    again = cli("versions", target, "--repair")  # idempotent
    assert again.returncode == 0 and repository.resolve(anchor_tag(v1)) is not None
