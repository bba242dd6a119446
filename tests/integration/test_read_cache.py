"""Listing again with the same ``Stores`` (what ``modelreg ui`` does): what digests name is
remembered, where tags point never is. Against a real registry:2 behind a proxy that
records every request."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from helpers.models import unique_repo
from helpers.oci_state import raw_manifest, raw_put_manifest
from helpers.regproxy import running_proxy
from test_versions import make_versions, tiny_model

from modelreg import api
from modelreg.digest import sha256_digest
from modelreg.oci import IMAGE_MANIFEST, Manifest
from modelreg.reference import parse_reference
from modelreg.store import RegistryOptions, Stores
from modelreg.transfer import push_model
from modelreg.versions import VersionInfo, version_record_tag


def _manifest_reads(requests: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(method, path) for method, path in requests if "/manifests/" in path]


def test_a_warm_listing_asks_only_where_tags_point(registry, tmp_path: Path, home: Path) -> None:
    repo = unique_repo()
    make_versions(registry.host, repo, 12, tiny_model(tmp_path / "m", "m"), home)
    v5, _ = raw_manifest(registry.host, repo, "v5")
    raw_put_manifest(registry.host, repo, "best", v5, IMAGE_MANIFEST)
    with running_proxy(registry.url) as proxy:
        stores = Stores(home=home, options=RegistryOptions(plain_http=True))
        name = f"{proxy.host}/{repo}"
        cold = api.versions(name, stores=stores)
        cold_requests = list(proxy.requests)
        cold_reads = _manifest_reads(cold_requests)
        proxy.requests.clear()
        warm = api.versions(name, stores=stores)
        warm_requests = list(proxy.requests)
        proxy.requests.clear()
        filtered = api.versions(name, where=["metrics.auc>=0.01"], stores=stores)
        filtered_reads = _manifest_reads(proxy.requests)
        stores.close()

    assert warm == cold and [v.version for v in warm] == list(range(1, 13))
    assert all(v.created.startswith("2026-01-01T00:") for v in warm)
    assert warm[4].aliases == ("best",)
    assert not [path for _, path in cold_requests if "/blobs/" in path]  # no weights read
    # cold: each version's manifest and its record (the claim tags are gone)
    assert sorted(m for m, _ in cold_reads) == ["GET"] * 24 + ["HEAD"]  # HEAD: the alias
    # warm: the tag list, then one HEAD per tag (12 versions, 1 alias), nothing read
    assert sorted(warm_requests) == sorted(
        [("GET", f"/v2/{repo}/tags/list?n=1000")]
        + [("HEAD", f"/v2/{repo}/manifests/v{n}") for n in range(1, 13)]
        + [("HEAD", f"/v2/{repo}/manifests/best")]
    )
    assert [v.version for v in filtered] == list(range(10, 13))
    assert {m for m, _ in filtered_reads} == {"HEAD"}


def test_moved_tags_show_as_moved_on_a_warm_listing(registry, tmp_path: Path, home: Path) -> None:
    """A cache keyed by digest cannot hide a tag move: a version tag pointed elsewhere, a
    stage tag set by a plain PUT, and a manifest never seen before all show at once."""
    repo = unique_repo()
    digests = make_versions(registry.host, repo, 6, tiny_model(tmp_path / "m", "m"), home)
    stores = Stores(home=home, options=RegistryOptions(plain_http=True))
    name = f"{registry.host}/{repo}"
    before = api.versions(name, stores=stores)
    assert api.versions(name, stores=stores) == before

    v5, _ = raw_manifest(registry.host, repo, "v5")
    raw_put_manifest(registry.host, repo, "v3", v5, IMAGE_MANIFEST)
    v2, _ = raw_manifest(registry.host, repo, "v2")
    raw_put_manifest(registry.host, repo, "production", v2, IMAGE_MANIFEST)
    unseen = Manifest.parse(v5)
    unseen = replace(unseen, annotations={**unseen.annotations, "dev.modelreg.metrics": "{}"})
    unseen_bytes = unseen.to_bytes()
    raw_put_manifest(registry.host, repo, "v4", unseen_bytes, IMAGE_MANIFEST)

    after = {v.version: v for v in api.versions(name, stores=stores)}
    stores.close()
    assert after[3].digest == digests[4] and after[3].annotations == before[4].annotations
    assert after[2].stages == ("production",)
    assert after[4].digest == sha256_digest(unseen_bytes)
    assert after[4].annotations["dev.modelreg.metrics"] == "{}"
    assert after[4].created == ""  # the new digest has no version record
    assert [after[n] for n in (1, 5, 6)] == [before[n - 1] for n in (1, 5, 6)]


def test_a_deleted_version_record_is_not_remembered(registry, tmp_path: Path, home: Path) -> None:
    repo = unique_repo()
    digests = make_versions(registry.host, repo, 3, tiny_model(tmp_path / "m", "m"), home)
    stores = Stores(home=home, options=RegistryOptions(plain_http=True))
    name = f"{registry.host}/{repo}"
    first: list[VersionInfo] = api.versions(name, stores=stores)
    assert first[1].created
    record, _ = raw_manifest(registry.host, repo, version_record_tag(digests[1]))
    repository = stores.repository(parse_reference(name))
    repository.delete_manifest(sha256_digest(record))
    assert api.versions(name, stores=stores)[1].created == ""
    # written again with another time (as a push after gc would): the new time shows
    annotations = json.loads(record)["annotations"]
    annotations["org.opencontainers.image.created"] = "2027-02-03T04:05:06Z"
    rewritten = json.dumps({**json.loads(record), "annotations": annotations}).encode()
    raw_put_manifest(registry.host, repo, version_record_tag(digests[1]), rewritten, IMAGE_MANIFEST)
    assert api.versions(name, stores=stores)[1].created == "2027-02-03T04:05:06Z"
    stores.close()


def test_without_anchors_a_second_listing_is_warm_too(registry, tmp_path: Path, home: Path) -> None:
    """A copy made by another tool has version tags and records but no anchor tags."""
    source, repo = unique_repo(), unique_repo()
    model = tiny_model(tmp_path / "m", "m")
    make_versions(registry.host, source, 3, model, home)
    with Stores(home=home, options=RegistryOptions(plain_http=True)) as stores:
        target = stores.repository(parse_reference(f"{registry.host}/{repo}"))
        push_model(target, model, annotations={})
    for tag in ("v1", "v2", "v3"):  # same blobs; no anchors, no records
        data, _ = raw_manifest(registry.host, source, tag)
        raw_put_manifest(registry.host, repo, tag, data, IMAGE_MANIFEST)
    with running_proxy(registry.url) as proxy:
        stores = Stores(home=home, options=RegistryOptions(plain_http=True))
        name = f"{proxy.host}/{repo}"
        cold = api.versions(name, stores=stores)
        proxy.requests.clear()
        warm = api.versions(name, stores=stores)
        warm_reads = _manifest_reads(proxy.requests)
        stores.close()
    assert warm == cold and [v.version for v in warm] == [1, 2, 3]
    assert sorted(warm_reads) == [("HEAD", f"/v2/{repo}/manifests/v{n}") for n in (1, 2, 3)]
