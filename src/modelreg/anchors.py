"""Anchor tags: what keeps every pushed model digest reachable, and the move off ``sha256-``.

A model is anchored by ``anchor.<hex>`` (a tag no specification claims), written
before its version is claimed, so a lost claim or an overwritten version tag never
leaves a pushed model unreachable or open to registry garbage collection.

Before this layout modelreg kept the anchor at ``sha256-<hex>``, which the OCI 1.1
distribution spec reserves, on registries without the referrers API, for the image
index that lists the referrers of ``sha256:<hex>``. A tag ``sha256-<hex>`` that
points at ``sha256:<hex>`` itself can only be such an old anchor (an index cannot
list itself); :func:`migrate_anchors` moves each to ``anchor.<hex>`` and puts the
referrers index there instead, listing the records modelreg had written for the
model. It runs on the next push into the repository and from ``modelreg versions
--repair``; reading never needs it (old anchors are read as anchors).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .digest import hex_part
from .errors import IntegrityError, NotFound
from .oci import Manifest
from .store.base import Repository
from .store.referrers import add_to_tag_schema, referrer_descriptor

ANCHOR_PREFIX = "anchor."
_ANCHOR = re.compile(r"anchor\.([a-f0-9]{64})")
_LEGACY_ANCHOR = re.compile(r"sha256-([a-f0-9]{64})")
_VERSION_RECORD = re.compile(r"sha256-([a-f0-9]{64})\.version")


def anchor_tag(digest: str) -> str:
    return f"{ANCHOR_PREFIX}{hex_part(digest)}"


def legacy_anchor_tag(digest: str) -> str:
    """Where modelreg kept the anchor before: now the OCI referrers tag of ``digest``."""
    return f"sha256-{hex_part(digest)}"


def model_of_anchor(tag: str) -> str | None:
    """The digest an ``anchor.<hex>`` tag keeps (None for any other tag)."""
    match = _ANCHOR.fullmatch(tag)
    return f"sha256:{match.group(1)}" if match else None


def subject_of_referrers_tag(tag: str) -> str | None:
    """The digest a ``sha256-<hex>`` tag is about: an old anchor, or a referrers index."""
    match = _LEGACY_ANCHOR.fullmatch(tag)
    return f"sha256:{match.group(1)}" if match else None


def anchored_digests(tags: Iterable[str]) -> set[str]:
    """Every digest an anchor keeps, read from tag names alone.

    Before a repository is migrated (no ``anchor.`` tag yet) its ``sha256-<hex>``
    tags are its anchors; afterwards they are referrers indexes and are not counted.
    """
    tags = list(tags)
    anchored = {digest for tag in tags if (digest := model_of_anchor(tag))}
    if anchored:
        return anchored
    return {digest for tag in tags if (digest := subject_of_referrers_tag(tag))}


def is_anchored(repository: Repository, digest: str) -> bool:
    """An anchor (new, or an old one not yet migrated) keeps ``digest``."""
    if repository.resolve(anchor_tag(digest)) is not None:
        return True
    legacy = repository.resolve(legacy_anchor_tag(digest))
    return legacy is not None and legacy.digest == digest


def legacy_anchors(repository: Repository, tags: Iterable[str]) -> list[str]:
    """Digests still anchored the old way: ``sha256-<hex>`` pointing at itself.

    Only tags with no ``anchor.<hex>`` twin are resolved, so a migrated repository
    costs no request beyond the tag listing the caller already has.
    """
    tags = set(tags)
    found = []
    for tag in sorted(tags):
        subject = subject_of_referrers_tag(tag)
        if subject is None or anchor_tag(subject) in tags:
            continue
        target = repository.resolve(tag)
        if target is not None and target.digest == subject:
            found.append(subject)
    return found


def migrate_anchors(repository: Repository, tags: Iterable[str] | None = None) -> list[str]:
    """Move every old anchor to ``anchor.<hex>``; list the model's records as its referrers.

    New anchors are all written before any old one is replaced, so an interrupted
    migration leaves every model reachable, and running it again finishes it.
    Returns the migrated digests.
    """
    if tags is None:
        try:
            tags = repository.list_tags()
        except NotFound:
            return []
    tags = list(tags)
    legacy = legacy_anchors(repository, tags)
    if not legacy:
        return []
    for digest in legacy:
        descriptor, data = repository.fetch_manifest(digest)
        repository.push_manifest(data, descriptor.media_type, [anchor_tag(digest)])
    records = _records_by_subject(repository, tags)
    for digest in legacy:
        add_to_tag_schema(repository, digest, records.get(digest, []))
    return legacy


def _records_by_subject(
    repository: Repository, tags: Iterable[str]
) -> dict[str, list[dict[str, Any]]]:
    """The index entries of every record modelreg wrote under a tag, by subject digest."""
    from .promotion import parse_record_tag  # promotion imports the transfer machinery

    found: dict[str, list[dict[str, Any]]] = {}
    seen: set[str] = set()
    for tag in sorted(tags):
        is_record = _VERSION_RECORD.fullmatch(tag) or (
            tag.startswith("promotion.")
            and (parse_record_tag(tag) or parse_record_tag(tag.removesuffix(".pending")))
        )
        if not is_record:
            continue
        try:
            descriptor, data = repository.fetch_manifest(tag)
            manifest = Manifest.parse(data, f"record {tag}")
        except (NotFound, IntegrityError):
            continue  # not a record we can read: leave it where it is
        if manifest.subject is None or descriptor.digest in seen:
            continue
        seen.add(descriptor.digest)
        entry = referrer_descriptor(data, descriptor.media_type, descriptor.digest)
        found.setdefault(manifest.subject.digest, []).append(entry)
    return found
