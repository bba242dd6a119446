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

import contextlib
import json
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from .._json import canonical_json, load_json_object
from ..digest import hex_part, is_digest, sha256_digest
from ..errors import ConflictError, IntegrityError, ModelregError, NotFound
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
        previous = repository.resolve(tag)
        current, old_anchor = _read_tag_schema(repository, subject_digest)
        for entry in current:
            seen.setdefault(_entry_key(entry), entry)
        for entry in entries:
            seen.setdefault(_entry_key(entry), entry)
        current_keys = {_entry_key(entry) for entry in current}
        if current_keys.issuperset(seen) and not old_anchor:
            return
        merged = current + [entry for key, entry in seen.items() if key not in current_keys]
        _replace_index(repository, tag, merged, None if old_anchor or not current else previous)
    raise ConflictError(
        f"{repository.name}: the referrers index {tag} kept changing under concurrent writers",
        "push again; nothing already listed was removed",
    )


def remove_from_tag_schema(repository: Repository, subject_digest: str, digests: set[str]) -> None:
    """Drop entries for manifests that were deleted (the spec asks clients to)."""
    tag = referrers_tag(subject_digest)
    previous = repository.resolve(tag)
    current, old_anchor = _read_tag_schema(repository, subject_digest)
    kept = [entry for entry in current if entry.get("digest") not in digests]
    if len(kept) == len(current) or old_anchor:
        return
    if not kept and previous is not None:
        # nothing left to list: the index goes, and its tag with it
        with contextlib.suppress(ModelregError):
            repository.delete_manifest(previous.digest)
        return
    _replace_index(repository, tag, kept, previous)


def _replace_index(
    repository: Repository,
    tag: str,
    entries: list[dict[str, Any]],
    previous: Descriptor | None,
) -> None:
    """Write the index at ``tag``, then delete the revision it replaced (as oras does).

    A superseded revision left in a registry keeps every manifest it lists alive
    through the registry's garbage collection. Where deletes are refused, it stays.
    ``previous`` is None when it must stay: an empty index has the same bytes, and
    so the same digest, for every subject (deleting it would untag the others).
    """
    index = canonical_json({"schemaVersion": 2, "mediaType": IMAGE_INDEX, "manifests": entries})
    written = repository.push_manifest(index, IMAGE_INDEX, [tag])
    if previous is not None and previous.digest != written.digest:
        with contextlib.suppress(ModelregError):
            repository.delete_manifest(previous.digest)
    # a concurrent writer that re-wrote the old revision lost its tag with the delete:
    # the caller's re-read (add_to_tag_schema) sees that and writes the entries again


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
        for index, entry in enumerate(_read_tag_schema(repository, subject_digest)[0]):
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


def _read_tag_schema(
    repository: Repository, subject_digest: str
) -> tuple[list[dict[str, Any]], bool]:
    """The raw entries of the tag-schema index ([] when there is none), and whether the
    tag holds an old modelreg anchor instead.

    A tag holding the subject itself is the anchor modelreg wrote there before the
    move to ``anchor.<hex>`` (an index cannot list itself): it lists no referrers and
    is replaced by the next write. Anything else that is not an image index is
    someone else's, and is refused.
    """
    if not is_digest(subject_digest):
        raise IntegrityError(f"not a subject digest: {subject_digest!r}")
    tag = referrers_tag(subject_digest)
    try:
        descriptor, data = repository.fetch_manifest(tag)
    except NotFound:
        return [], False
    if descriptor.digest == subject_digest:
        return [], True
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
    return [entry for entry in manifests if isinstance(entry, dict)], False


def add_to_tag_schema_or_api(
    repository: Repository, subject_digest: str, entries: list[dict[str, Any]]
) -> None:
    """List already pushed manifests as referrers: nothing to do where the API indexed them."""
    if (
        isinstance(repository, ReferrersAPI)
        and repository.referrers_from_api(subject_digest) is not None
    ):
        return
    add_to_tag_schema(repository, subject_digest, entries)


def list_as_referrer(
    repository: Repository, manifest: bytes, media_type: str, subject_digest: str
) -> None:
    """Make an already pushed manifest (e.g. one taken with ``claim_tag``) listable.

    Where the registry has the referrers API it processed ``subject`` on the push;
    elsewhere the manifest is added to the tag-schema index.
    """
    if (
        isinstance(repository, ReferrersAPI)
        and repository.referrers_from_api(subject_digest) is not None
    ):
        return
    digest = sha256_digest(manifest)
    add_to_tag_schema(
        repository, subject_digest, [referrer_descriptor(manifest, media_type, digest)]
    )
