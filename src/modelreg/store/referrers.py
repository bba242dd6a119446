"""OCI 1.1 referrers: manifests that carry a ``subject`` and how others find them.

Two ways, exactly as the distribution spec (1.1, "Listing Referrers" and "Pushing
Manifests with Subject") says:

* **the referrers API** — a registry that processes ``subject`` answers the
  manifest PUT with ``OCI-Subject: <digest>`` and lists referrers at
  ``GET /v2/<name>/referrers/<digest>``. A repository offers this through the
  optional :class:`ReferrersAPI` capability (checked at run time; the local
  image layout has no such API, and neither has registry:2).
* **the referrers tag schema** — otherwise the client keeps an image index of
  the subject's referrers at tag ``sha256-<hex>``: read it, append a descriptor
  for the new manifest (``artifactType``, or the config's media type, and all of
  the manifest's annotations), write it back. Entries other tools added are kept
  byte for byte and never dropped; ours are not duplicated. The image-layout
  spec has no referrers API, so the local store keeps the same index under the
  same tag (what skopeo and oras do with an ``oci:`` directory).

A referrers list is data anyone with push rights can write: a descriptor there is
a pointer to fetch and verify, never a fact. Callers fetch each manifest by digest
and check its ``subject`` (see :func:`fetch_referrer`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from .._json import canonical_json, load_json_object
from ..digest import hex_part, is_digest
from ..errors import ConflictError, IntegrityError, NotFound
from ..oci import IMAGE_INDEX, MAX_MANIFEST_BYTES, Descriptor, Manifest
from .base import Repository

# how often a read-modify-write of the tag-schema index is retried when a concurrent
# writer's index replaced ours (the registry offers no compare-and-swap)
_REWRITE_ATTEMPTS = 5


@runtime_checkable
class ReferrersAPI(Protocol):
    """Optional capability of a repository whose store may have the referrers API."""

    def push_manifest_with_subject(
        self, data: bytes, media_type: str, tags: Iterable[str] = ()
    ) -> tuple[Descriptor, bool]:
        """Push like ``push_manifest``; True when the store processed ``subject``."""
        ...

    def referrers_from_api(
        self, subject_digest: str, artifact_type: str | None = None
    ) -> list[Descriptor] | None:
        """The referrers the API lists, or None when the store has no referrers API."""
        ...


def referrers_tag(subject_digest: str) -> str:
    """The tag-schema tag of a subject: ``sha256-<hex>`` (the spec's ``<alg>-<ref>``)."""
    algorithm, _, encoded = subject_digest.partition(":")
    return f"{algorithm}-{encoded[:64]}"


def referrer_descriptor(manifest: bytes, media_type: str, digest: str) -> dict[str, Any]:
    """The index entry the spec asks for: artifactType (else config type) and annotations."""
    body = load_json_object(manifest, "referrer manifest", limit=MAX_MANIFEST_BYTES)
    entry: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(manifest)}
    artifact_type = body.get("artifactType")
    if not isinstance(artifact_type, str) or not artifact_type:
        config = body.get("config")
        artifact_type = config.get("mediaType") if isinstance(config, dict) else None
    if isinstance(artifact_type, str) and artifact_type:
        entry["artifactType"] = artifact_type
    annotations = body.get("annotations")
    if isinstance(annotations, dict) and annotations:
        entry["annotations"] = annotations
    return entry


def attach_referrer(
    repository: Repository,
    manifest: bytes,
    media_type: str,
    subject: Descriptor,
    tags: Iterable[str] = (),
) -> Descriptor:
    """Push ``manifest`` (which names ``subject``) and make it listable as a referrer."""
    tags = list(tags)
    if isinstance(repository, ReferrersAPI):
        descriptor, processed = repository.push_manifest_with_subject(manifest, media_type, tags)
        if processed:
            return descriptor
    else:
        descriptor = repository.push_manifest(manifest, media_type, tags)
    add_to_tag_schema(
        repository, subject.digest, [referrer_descriptor(manifest, media_type, descriptor.digest)]
    )
    return descriptor


def add_to_tag_schema(
    repository: Repository, subject_digest: str, entries: list[dict[str, Any]]
) -> None:
    """Read-modify-write the tag-schema index so it lists ``entries`` (kept, never dropped).

    Without compare-and-swap a concurrent writer can replace the index between our
    read and write; each attempt re-reads after writing and merges again until every
    entry seen so far (ours and theirs) is listed.
    """
    tag = referrers_tag(subject_digest)
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(_REWRITE_ATTEMPTS):
        current = _read_tag_schema(repository, subject_digest)
        for entry in current:
            seen.setdefault(_entry_key(entry), entry)
        for entry in entries:
            seen.setdefault(_entry_key(entry), entry)
        current_keys = {_entry_key(entry) for entry in current}
        if current_keys.issuperset(seen):
            return
        merged = current + [entry for key, entry in seen.items() if key not in current_keys]
        index = canonical_json({"schemaVersion": 2, "mediaType": IMAGE_INDEX, "manifests": merged})
        repository.push_manifest(index, IMAGE_INDEX, [tag])
    raise ConflictError(
        f"{repository.name}: the referrers index {tag} kept changing under concurrent writers",
        "push again; nothing already listed was removed",
    )


def remove_from_tag_schema(repository: Repository, subject_digest: str, digests: set[str]) -> None:
    """Drop entries for manifests that were deleted (the spec asks clients to)."""
    tag = referrers_tag(subject_digest)
    current = _read_tag_schema(repository, subject_digest)
    kept = [entry for entry in current if entry.get("digest") not in digests]
    if len(kept) == len(current):
        return
    index = canonical_json({"schemaVersion": 2, "mediaType": IMAGE_INDEX, "manifests": kept})
    repository.push_manifest(index, IMAGE_INDEX, [tag])


def list_referrers(
    repository: Repository, subject_digest: str, artifact_type: str | None = None
) -> list[Descriptor]:
    """The referrers of ``subject_digest``: the referrers API first, else the tag schema.

    Malformed entries in a tag-schema index are skipped (they are another writer's
    data, not ours to judge); the result is de-duplicated by digest.
    """
    listed: list[Descriptor] | None = None
    if isinstance(repository, ReferrersAPI):
        listed = repository.referrers_from_api(subject_digest, artifact_type)
    if listed is None:
        listed = []
        for index, entry in enumerate(_read_tag_schema(repository, subject_digest)):
            try:
                listed.append(Descriptor.from_dict(entry, f"referrers index entry {index}"))
            except IntegrityError:
                continue
    unique: dict[str, Descriptor] = {}
    for descriptor in listed:
        if artifact_type is None or descriptor.artifact_type == artifact_type:
            unique.setdefault(descriptor.digest, descriptor)
    return list(unique.values())


def fetch_referrer(
    repository: Repository, descriptor: Descriptor, subject_digest: str
) -> tuple[Manifest, bytes] | None:
    """The referrer's manifest, verified by digest; None unless its subject is ours."""
    try:
        _, data = repository.fetch_manifest(descriptor.digest)
        manifest = Manifest.parse(data, f"referrer {descriptor.digest}")
    except (NotFound, IntegrityError):
        return None
    if manifest.subject is None or manifest.subject.digest != subject_digest:
        return None
    return manifest, data


def _entry_key(entry: dict[str, Any]) -> str:
    digest = entry.get("digest")
    return digest if isinstance(digest, str) else json.dumps(entry, sort_keys=True)


def _read_tag_schema(repository: Repository, subject_digest: str) -> list[dict[str, Any]]:
    """The raw entries of the tag-schema index; [] when there is none.

    A tag holding the subject itself is the anchor modelreg wrote there before 0.3
    (the tag was ours then): it lists no referrers and may be replaced. Anything
    else that is not an image index is someone else's, and is refused.
    """
    if not is_digest(subject_digest):
        raise IntegrityError(f"not a subject digest: {subject_digest!r}")
    tag = referrers_tag(subject_digest)
    try:
        descriptor, data = repository.fetch_manifest(tag)
    except NotFound:
        return []
    if descriptor.digest == subject_digest:
        return []
    body = load_json_object(data, f"referrers index {tag}", limit=MAX_MANIFEST_BYTES)
    manifests = body.get("manifests")
    if body.get("mediaType", descriptor.media_type) != IMAGE_INDEX or not isinstance(
        manifests, list
    ):
        raise ConflictError(
            f"{repository.name}: tag {tag} (the OCI referrers tag of sha256:"
            f"{hex_part(subject_digest)[:12]}…) holds a {descriptor.media_type}, "
            "not an image index",
            "another tool wrote something else there; move it away so referrers can be listed",
        )
    return [entry for entry in manifests if isinstance(entry, dict)]
