"""OCI 1.1 referrers: the tag schema on registry:2 and the local layout, the API where offered."""

from __future__ import annotations

import json

import pytest
from helpers.hostile_registry import HostileRegistry, Reply, digest_of, push_model
from helpers.models import unique_repo

from modelreg._json import canonical_json
from modelreg.digest import hex_part, sha256_digest
from modelreg.errors import ConflictError
from modelreg.oci import (
    EMPTY_JSON,
    IMAGE_INDEX,
    IMAGE_MANIFEST,
    Descriptor,
    Manifest,
    empty_config_descriptor,
)
from modelreg.reference import parse_reference
from modelreg.store import Stores
from modelreg.store.base import Repository
from modelreg.store.referrers import (
    attach_referrer,
    fetch_referrer,
    list_referrers,
    referrers_tag,
)

SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"


def referrer(subject: Descriptor, artifact_type: str, note: str) -> bytes:
    return Manifest(
        config=empty_config_descriptor(),
        layers=(empty_config_descriptor(),),
        annotations={"note": note},
        artifact_type=artifact_type,
        subject=subject,
    ).to_bytes()


def open_repo(stores: Stores, where: str) -> Repository:
    return stores.repository(parse_reference(where))


def model_in(repository: Repository) -> Descriptor:
    digest = push_model(repository, [("weights.bin", b"w" * 100)])
    descriptor = repository.resolve(digest)
    assert descriptor is not None
    return descriptor


def put_empty_blob(repository: Repository) -> None:
    repository.push_blob([b"{}"], 2, sha256_digest(b"{}"))


def test_tag_schema_keeps_other_writers_entries(stores: Stores, target: str) -> None:
    repository = open_repo(stores, target)
    subject = model_in(repository)
    put_empty_blob(repository)
    # a third party (cosign-style) attaches first, writing its own index with an extra field
    theirs = referrer(subject, SIGNATURE, "signed")
    their_digest = repository.push_manifest(theirs, IMAGE_MANIFEST).digest
    their_entry = {
        "mediaType": IMAGE_MANIFEST,
        "digest": their_digest,
        "size": len(theirs),
        "artifactType": SIGNATURE,
        "annotations": {"dev.cosignproject.cosign/signature": "MEUC..."},
        "x-unknown": {"kept": True},
    }
    index = canonical_json(
        {"schemaVersion": 2, "mediaType": IMAGE_INDEX, "manifests": [their_entry]}
    )
    repository.push_manifest(index, IMAGE_INDEX, [referrers_tag(subject.digest)])

    ours = referrer(subject, "application/vnd.modelreg.version.v1+json", "v1")
    attached = attach_referrer(repository, ours, IMAGE_MANIFEST, subject, ["record-tag"])
    attach_referrer(repository, ours, IMAGE_MANIFEST, subject)  # again: no duplicate

    _, data = repository.fetch_manifest(referrers_tag(subject.digest))
    entries = json.loads(data)["manifests"]
    assert entries[0] == their_entry  # byte for byte, unknown fields included
    assert [e["digest"] for e in entries] == [their_digest, attached.digest]
    assert entries[1]["artifactType"] == "application/vnd.modelreg.version.v1+json"
    assert entries[1]["annotations"] == {"note": "v1"}
    assert repository.resolve("record-tag") == attached

    listed = list_referrers(repository, subject.digest)
    assert [d.digest for d in listed] == [their_digest, attached.digest]
    only_sigs = list_referrers(repository, subject.digest, SIGNATURE)
    assert [d.digest for d in only_sigs] == [their_digest]
    fetched = fetch_referrer(repository, listed[1], subject.digest)
    assert fetched is not None and fetched[1] == ours


def test_a_listed_referrer_of_another_subject_is_not_ours(stores: Stores, target: str) -> None:
    repository = open_repo(stores, target)
    subject = model_in(repository)
    other = Descriptor(IMAGE_MANIFEST, digest_of(b"x"), 1)
    put_empty_blob(repository)
    liar = referrer(other, SIGNATURE, "points elsewhere")
    liar_descriptor = repository.push_manifest(liar, IMAGE_MANIFEST)
    entry = {"mediaType": IMAGE_MANIFEST, "digest": liar_descriptor.digest, "size": len(liar)}
    index = canonical_json({"schemaVersion": 2, "mediaType": IMAGE_INDEX, "manifests": [entry]})
    repository.push_manifest(index, IMAGE_INDEX, [referrers_tag(subject.digest)])
    (listed,) = list_referrers(repository, subject.digest)
    assert fetch_referrer(repository, listed, subject.digest) is None


def test_old_anchor_at_the_referrers_tag_is_replaced_by_an_index(
    stores: Stores, target: str
) -> None:
    """Before 0.3 modelreg kept the model itself at ``sha256-<hex>``: that lists nothing."""
    repository = open_repo(stores, target)
    subject = model_in(repository)
    _, model_bytes = repository.fetch_manifest(subject.digest)
    repository.push_manifest(model_bytes, IMAGE_MANIFEST, [referrers_tag(subject.digest)])
    assert list_referrers(repository, subject.digest) == []
    put_empty_blob(repository)
    attached = attach_referrer(
        repository, referrer(subject, SIGNATURE, "s"), IMAGE_MANIFEST, subject
    )
    assert [d.digest for d in list_referrers(repository, subject.digest)] == [attached.digest]


def test_foreign_content_at_the_referrers_tag_is_refused(stores: Stores, target: str) -> None:
    repository = open_repo(stores, target)
    subject = model_in(repository)
    other = model_in_other = push_model(repository, [("other.bin", b"o" * 10)])
    _, data = repository.fetch_manifest(model_in_other)
    repository.push_manifest(data, IMAGE_MANIFEST, [referrers_tag(subject.digest)])
    put_empty_blob(repository)
    with pytest.raises(ConflictError, match="not an image index") as raised:
        attach_referrer(repository, referrer(subject, SIGNATURE, "s"), IMAGE_MANIFEST, subject)
    assert raised.value.exit_code == 9
    assert repository.resolve(referrers_tag(subject.digest)).digest == other  # type: ignore[union-attr]


def test_referrers_api_is_used_when_the_registry_has_one(stores: Stores) -> None:
    """A registry that answers ``OCI-Subject`` gets no tag-schema index; listing uses the API."""
    server = HostileRegistry().start()
    try:
        name = unique_repo()
        subject_bytes = b'{"schemaVersion":2}'
        subject = Descriptor(IMAGE_MANIFEST, digest_of(subject_bytes), len(subject_bytes))
        ours = referrer(subject, SIGNATURE, "api")
        listed = {
            "schemaVersion": 2,
            "mediaType": IMAGE_INDEX,
            "manifests": [
                {
                    "mediaType": IMAGE_MANIFEST,
                    "digest": digest_of(ours),
                    "size": len(ours),
                    "artifactType": SIGNATURE,
                },
                {"mediaType": IMAGE_MANIFEST, "digest": "not-a-digest", "size": 1},
            ],
        }
        puts: list[str] = []

        def api(method: str, path: str) -> Reply | None:
            if method == "PUT" and "/manifests/" in path:
                puts.append(path.rsplit("/", 1)[1])
                return Reply(
                    201,
                    b"",
                    {"Docker-Content-Digest": digest_of(ours), "OCI-Subject": subject.digest},
                )
            if method == "GET" and path == f"/v2/{name}/referrers/{subject.digest}":
                return Reply(200, json.dumps(listed).encode(), {"Content-Type": IMAGE_INDEX})
            return None

        server.rule(api)
        repository = open_repo(stores, f"{server.host}/{name}")
        attach_referrer(repository, ours, IMAGE_MANIFEST, subject, ["sig-tag"])
        assert puts == [digest_of(ours), "sig-tag"]  # no sha256-<hex> index written
        found = list_referrers(repository, subject.digest, SIGNATURE)
        assert [d.digest for d in found] == [digest_of(ours)]
        assert f"sha256-{hex_part(subject.digest)}" not in str(server.hits)
    finally:
        server.stop()


def test_empty_config_type_becomes_artifact_type_when_none_is_set(stores: Stores) -> None:
    repository = open_repo(stores, unique_repo("fraud"))
    subject = model_in(repository)
    put_empty_blob(repository)
    plain = Manifest(config=empty_config_descriptor(), layers=(), subject=subject).to_bytes()
    attach_referrer(repository, plain, IMAGE_MANIFEST, subject)
    (listed,) = list_referrers(repository, subject.digest)
    assert listed.artifact_type == EMPTY_JSON
