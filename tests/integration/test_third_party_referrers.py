"""A signature another tool attached (cosign-style, hand-written as cosign writes it on a
registry without the referrers API) survives pushes, promotions, gc and mirroring."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from modelreg import api
from modelreg.digest import sha256_digest
from modelreg.oci import EMPTY_JSON, IMAGE_INDEX, IMAGE_MANIFEST
from modelreg.policy import policy_from_keys
from modelreg.promotion import RECORD_ARTIFACT
from modelreg.reference import parse_reference
from modelreg.retention import RetentionRules
from modelreg.signing import load_signing_key
from modelreg.store import Stores
from modelreg.store.base import Repository
from modelreg.store.referrers import list_referrers, referrers_tag
from modelreg.versions import VERSION_ARTIFACT

SIG_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"


def push(stores: Stores, target: str, tmp_path: Path, name: str) -> str:
    model = tmp_path / name
    if not model.exists():
        model.mkdir()
        (model / "weights.bin").write_bytes(os.urandom(256))
    return api.push(model, target, capture=False, stores=stores).digest


def cosign_sign(repository: Repository, subject: str) -> tuple[str, dict[str, object]]:
    """What ``cosign sign`` (OCI 1.1 mode) leaves: a signature manifest whose subject is the
    model, and an entry appended to the ``sha256-<hex>`` index, written by raw HTTP-level
    operations (no modelreg referrer code)."""
    descriptor = repository.resolve(subject)
    assert descriptor is not None
    payload = json.dumps({"critical": {"image": {"docker-manifest-digest": subject}}}).encode()
    repository.push_blob([payload], len(payload), sha256_digest(payload))
    repository.push_blob([b"{}"], 2, sha256_digest(b"{}"))
    signature = {
        "schemaVersion": 2,
        "mediaType": IMAGE_MANIFEST,
        "artifactType": SIG_ARTIFACT,
        "config": {"mediaType": EMPTY_JSON, "digest": sha256_digest(b"{}"), "size": 2},
        "layers": [
            {
                "mediaType": SIMPLE_SIGNING,
                "digest": sha256_digest(payload),
                "size": len(payload),
                "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQDfake=="},
            }
        ],
        "subject": descriptor.to_dict(),
        "annotations": {"org.opencontainers.image.created": "2026-12-01T00:00:00Z"},
    }
    data = json.dumps(signature, indent=2).encode()  # not canonical: another tool's bytes
    pushed = repository.push_manifest(data, IMAGE_MANIFEST)
    entry: dict[str, object] = {
        "mediaType": IMAGE_MANIFEST,
        "digest": pushed.digest,
        "size": len(data),
        "artifactType": SIG_ARTIFACT,
        "annotations": signature["annotations"],
    }
    tag = referrers_tag(subject)
    existing = repository.resolve(tag)
    manifests = (
        json.loads(repository.fetch_manifest(tag)[1])["manifests"] if existing is not None else []
    )
    index = {"schemaVersion": 2, "mediaType": IMAGE_INDEX, "manifests": [*manifests, entry]}
    repository.push_manifest(json.dumps(index).encode(), IMAGE_INDEX, [tag])
    return pushed.digest, entry


def check_signature(repository: Repository, subject: str, signature: str) -> None:
    assert repository.resolve(signature) is not None, "the signature manifest is gone"
    listed = {d.digest: d for d in list_referrers(repository, subject)}
    assert signature in listed, "the signature is no longer listed as a referrer"
    assert listed[signature].artifact_type == SIG_ARTIFACT
    _, index = repository.fetch_manifest(referrers_tag(subject))
    entries = json.loads(index)["manifests"]
    assert sum(1 for e in entries if e["digest"] == signature) == 1


def test_signature_survives_push_promote_gc_and_mirror(
    stores: Stores, target: str, tmp_path: Path, keys: Path, request: pytest.FixtureRequest
) -> None:
    repository = stores.repository(parse_reference(target))
    v1 = push(stores, target, tmp_path, "one")
    signature, entry = cosign_sign(repository, v1)
    check_signature(repository, v1, signature)

    # pushes: another model, and the signed one again
    v2 = push(stores, target, tmp_path, "two")
    assert push(stores, target, tmp_path, "one") == v1
    assert [v.digest for v in api.versions(target, stores=stores)] == [v1, v2]
    check_signature(repository, v1, signature)

    # promotions write records that are referrers of v1 too
    alice = load_signing_key(keys / "alice.key")
    policy = policy_from_keys([keys / "alice.pub"])
    api.promote(f"{target}:v1", "staging", alice, policy=policy, stores=stores)
    api.promote(f"{target}:v1", "production", alice, policy=policy, stores=stores)
    check_signature(repository, v1, signature)
    kinds = sorted(d.artifact_type or "" for d in list_referrers(repository, v1))
    assert kinds == sorted([VERSION_ARTIFACT, RECORD_ARTIFACT, RECORD_ARTIFACT, SIG_ARTIFACT])
    _, index = repository.fetch_manifest(referrers_tag(v1))
    assert json.loads(index)["manifests"][0] != entry  # ours came first (the version record)
    assert entry in json.loads(index)["manifests"]  # theirs, exactly as written

    # gc removes v2 (v3 is the newest, v1 is in production) and keeps the signature
    push(stores, target, tmp_path, "three")
    report = api.gc(target, RetentionRules(keep_last=1), policy=policy, stores=stores)
    assert [d.digest for d in report.plan.removed] == [v2]
    assert repository.resolve(v2) is None
    check_signature(repository, v1, signature)

    # copy --all-versions carries it (registry -> local store, local store -> registry)
    if "/" in target and ":" in target.split("/", 1)[0]:
        other = target.split("/", 1)[1]
    else:
        other = f"{request.getfixturevalue('registry').host}/{target}"
    result = api.mirror(target, other, stores=stores)
    assert result.referrers >= 1
    destination = stores.repository(parse_reference(other))
    check_signature(destination, v1, signature)
    again = api.mirror(target, other, stores=stores)
    assert again.referrers == 0  # nothing left to copy, nothing listed twice
    check_signature(destination, v1, signature)
    verified = api.verify(f"{other}:production", policy=policy, stores=stores)
    assert verified.digest == v1
