"""Promotion records: what a stage move says, how it is signed, how it is stored.

A record is an in-toto v1 statement (subject: the model's repository path and
manifest digest; predicate: stage, sequence, previous record, time, …) in a
DSSE envelope carrying one ECDSA P-256 signature per approver.

In the registry a record is a small OCI artifact — empty config, one layer
holding the envelope, ``subject`` pointing at the model — tagged
``promotion.<stage>.<sequence>``. Those tags are claimed create-if-absent and
never rewritten, and each record names the payload digest of the one before,
so the chain is append-only and hash-linked: a head record signed by trusted
keys authenticates every record before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .digest import is_digest, sha256_digest
from .errors import IntegrityError
from .oci import (
    EMPTY_JSON_BYTES,
    IMAGE_MANIFEST,
    Descriptor,
    Manifest,
    empty_config_descriptor,
)
from .signing import (
    IN_TOTO_PAYLOAD_TYPE,
    Envelope,
    make_statement,
    parse_statement,
)
from .store.base import Repository, read_small_blob
from .store.referrers import list_as_referrer

PREDICATE_TYPE = "https://modelreg.dev/promotion/v1"
RECORD_ARTIFACT = "application/vnd.modelreg.promotion.v1"
ENVELOPE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
TAG_PREFIX = "promotion."
ACTIONS = ("promote", "rollback", "archive")

_RECORD_TAG = re.compile(r"promotion\.([a-z][a-z0-9_-]{0,29})\.([0-9]{8,18})")
_MAX_ENVELOPE = 1024 * 1024


def record_tag(stage: str, sequence: int) -> str:
    return f"{TAG_PREFIX}{stage}.{sequence:08d}"


def pending_tag(stage: str, sequence: int) -> str:
    return f"{record_tag(stage, sequence)}.pending"


def parse_record_tag(tag: str) -> tuple[str, int] | None:
    match = _RECORD_TAG.fullmatch(tag)
    return (match.group(1), int(match.group(2))) if match else None


def chain_sequences(tags: list[str], stage: str) -> list[int]:
    parsed = (parse_record_tag(tag) for tag in tags)
    return sorted(found[1] for found in parsed if found is not None and found[0] == stage)


@dataclass(frozen=True)
class PromotionRecord:
    """One stage move. ``previous`` is the payload digest of the record before it."""

    repository: str
    stage: str
    digest: str
    sequence: int
    previous: str | None
    issued_at: str
    action: str = "promote"
    version: int | None = None
    replaces: str | None = None
    expires_at: str | None = None

    def payload(self) -> bytes:
        predicate: dict[str, Any] = {
            "repository": self.repository,
            "stage": self.stage,
            "digest": self.digest,
            "sequence": self.sequence,
            "previous": self.previous,
            "issuedAt": self.issued_at,
            "action": self.action,
            "version": self.version,
            "replaces": self.replaces,
            "expiresAt": self.expires_at,
        }
        return make_statement(
            self.repository, self.digest.split(":", 1)[1], PREDICATE_TYPE, predicate
        )

    @classmethod
    def from_payload(cls, payload: bytes) -> PromotionRecord:
        statement = parse_statement(payload)
        if statement.predicate_type != PREDICATE_TYPE:
            raise IntegrityError(f"record predicate type {statement.predicate_type!r} is not ours")
        p = statement.predicate
        record = cls(
            repository=_text(p, "repository"),
            stage=_text(p, "stage"),
            digest=_digest(p, "digest"),
            sequence=_integer(p, "sequence"),
            previous=_digest(p, "previous", optional=True),
            issued_at=_text(p, "issuedAt"),
            action=_text(p, "action"),
            version=_integer(p, "version", optional=True),
            replaces=_digest(p, "replaces", optional=True),
            expires_at=_text(p, "expiresAt", optional=True),
        )
        if record.action not in ACTIONS:
            raise IntegrityError(f"record action {record.action!r} is unknown")
        if record.sequence < 1 or (record.sequence == 1) != (record.previous is None):
            raise IntegrityError("record sequence and previous link disagree")
        if statement.subject_name != record.repository or (
            f"sha256:{statement.subject_sha256}" != record.digest
        ):
            raise IntegrityError("record subject does not match its predicate")
        return record


def _text(p: dict[str, Any], key: str, optional: bool = False) -> Any:
    value = p.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise IntegrityError(f"record field {key!r} is missing or not text")
    return value


def _integer(p: dict[str, Any], key: str, optional: bool = False) -> Any:
    value = p.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise IntegrityError(f"record field {key!r} is not an integer")
    return value


def _digest(p: dict[str, Any], key: str, optional: bool = False) -> Any:
    value = p.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not is_digest(value):
        raise IntegrityError(f"record field {key!r} is not a sha256 digest")
    return value


@dataclass(frozen=True)
class StoredRecord:
    """A record as read back from a store, with the digests that identify it."""

    record: PromotionRecord
    envelope: Envelope
    manifest_digest: str
    payload_digest: str


def store_record(
    repository: Repository,
    envelope: Envelope,
    model: Descriptor,
    tag: str,
    *,
    claim: bool,
) -> tuple[bool, str]:
    """Write a record artifact under ``tag``; with ``claim`` only if the tag is free.

    Returns (written, manifest digest).
    """
    envelope_bytes = envelope.to_json()
    empty = empty_config_descriptor()
    if not repository.has_blob(empty.digest):
        repository.push_blob([EMPTY_JSON_BYTES], len(EMPTY_JSON_BYTES), empty.digest)
    layer_digest = sha256_digest(envelope_bytes)
    if not repository.has_blob(layer_digest):
        repository.push_blob([envelope_bytes], len(envelope_bytes), layer_digest)
    record = PromotionRecord.from_payload(envelope.payload)
    manifest = Manifest(
        config=empty,
        layers=(Descriptor(ENVELOPE_MEDIA_TYPE, layer_digest, len(envelope_bytes)),),
        annotations={
            "dev.modelreg.stage": record.stage,
            "dev.modelreg.sequence": str(record.sequence),
            "org.opencontainers.image.created": record.issued_at,
        },
        artifact_type=RECORD_ARTIFACT,
        subject=Descriptor(model.media_type, model.digest, model.size),
    )
    data = manifest.to_bytes()
    written = True
    if claim:
        written = repository.claim_tag(tag, data, IMAGE_MANIFEST)
    else:
        repository.push_manifest(data, IMAGE_MANIFEST, [tag])
    if written:  # an OCI referrer of the model, as cosign, notation and oras list them
        list_as_referrer(repository, data, IMAGE_MANIFEST, model.digest)
    return written, sha256_digest(data)


def read_record(repository: Repository, reference: str) -> StoredRecord:
    """Fetch and parse a record artifact; IntegrityError on anything malformed."""
    descriptor, data = repository.fetch_manifest(reference)
    manifest = Manifest.parse(data, f"promotion record {reference}")
    if manifest.artifact_type != RECORD_ARTIFACT or len(manifest.layers) != 1:
        raise IntegrityError(f"{reference} is not a modelreg promotion record")
    layer = manifest.layers[0]
    if layer.media_type != ENVELOPE_MEDIA_TYPE:
        raise IntegrityError(
            f"{reference}: record layer is {layer.media_type!r}, not a DSSE envelope"
        )
    envelope = Envelope.from_json(read_small_blob(repository, layer, _MAX_ENVELOPE))
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise IntegrityError(f"{reference}: envelope payload type {envelope.payload_type!r}")
    record = PromotionRecord.from_payload(envelope.payload)
    if manifest.subject is None or manifest.subject.digest != record.digest:
        raise IntegrityError(f"{reference}: the artifact's subject is not the promoted model")
    return StoredRecord(record, envelope, descriptor.digest, sha256_digest(envelope.payload))
