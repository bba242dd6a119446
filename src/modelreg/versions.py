"""Integer versions over immutable digests, alias tags, and listing.

Tags a pushed model gets, in this order:

1. ``anchor.<hex>`` — the anchor: written first, it keeps every pushed digest
   reachable (and out of registry garbage collection) whatever happens next
   (see :mod:`.anchors`, which also moves anchors older versions kept at
   ``sha256-<hex>``, the OCI referrers tag);
2. ``vN`` — the version, claimed with ``Repository.claim_tag`` for N = highest
   version tag + 1: create-if-absent, exact on the local store (under the
   repository's flock). On a registry (no compare-and-swap) the pusher first
   writes its own claim tag ``sha256-<hex>.claim-vN.<push time>`` and lists the
   tags: with no rival claim it takes ``vN`` at once (of two claimants, the one
   that listed later sees the other's claim, so at most one takes this path);
   with rivals it waits a settle delay (``RegistryOptions.settle``, 0.3-0.6 s,
   ``MODELREG_SETTLE``), claims, reads back, and moves on to N+1 if another
   pusher won. The claim tag also lets a listing read the push time from the
   tag list;
3. ``sha256-<hex>.version`` — the version record: a small artifact whose
   ``subject`` is the model, holding N and the push time, published as an OCI
   referrer of the model (:mod:`.store.referrers`) as well as under this tag.
   Its presence means the push finished; pushing the same digest again reads it
   (through the referrers first) and reports N;
4. a last read of ``vN``: if it no longer names this digest, a stalled writer
   overwrote the claim after it was verified, and the push claims the next
   number (and rewrites its record) instead of reporting a version it lost.

A version tag is never moved or reused by modelreg. The limit of a registry
without compare-and-swap: a pusher that stalls between its check and its tag
write for longer than another pusher's settle delay, record write and final read
can still overwrite that pusher's version, which then names the stalled pusher's
model. Even then nothing is lost: the anchor keeps the overwritten digest
reachable, and ``repair_versions`` (``modelreg versions --repair``) or simply
pushing that model again gives it the next free number.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .anchors import anchor_tag, anchored_digests, is_anchored, migrate_anchors
from .digest import hex_part, is_digest, sha256_digest
from .errors import ConflictError, IntegrityError, InvalidInput, NotFound
from .oci import (
    EMPTY_JSON,
    EMPTY_JSON_BYTES,
    IMAGE_MANIFEST,
    Descriptor,
    Manifest,
    empty_config_descriptor,
)
from .readcache import ReadCache
from .reference import validate_tag
from .store.base import Repository, parse_claim_tag, read_listed
from .store.referrers import attach_referrer, fetch_referrer, list_referrers
from .timeutil import format_time, now_utc

VERSION_ARTIFACT = "application/vnd.modelreg.version.v1"
ANNOTATION_VERSION = "dev.modelreg.version"
ANNOTATION_CREATED = "org.opencontainers.image.created"
DEFAULT_STAGES = ("staging", "production", "archived")
RECORD_TAG_PREFIX = "promotion."

_VERSION_TAG = re.compile(r"v([1-9][0-9]{0,17})")
_CLAIM_ATTEMPTS = 64
_WORKERS = 16


def version_tag(number: int) -> str:
    return f"v{number}"


def parse_version_tag(tag: str) -> int | None:
    match = _VERSION_TAG.fullmatch(tag)
    return int(match.group(1)) if match else None


def version_record_tag(digest: str) -> str:
    return f"sha256-{hex_part(digest)}.version"


def is_internal_tag(tag: str) -> bool:
    """Tags modelreg manages (anchors, records, promotion chains) or the OCI referrers
    tag schema reserves (``sha256-<hex>``)."""
    return tag.startswith(("sha256-", "anchor.", RECORD_TAG_PREFIX))


def stage_names(tags: Iterable[str], configured: Iterable[str] = DEFAULT_STAGES) -> set[str]:
    """The default stages plus every stage that has promotion records."""
    from .promotion import parse_record_tag

    names = set(configured)
    for tag in tags:
        parsed = parse_record_tag(tag)
        if parsed:
            names.add(parsed[0])
    return names


def check_alias(alias: str, existing_tags: Iterable[str] = ()) -> str:
    validate_tag(alias)
    if parse_version_tag(alias) is not None:
        raise InvalidInput(
            f"alias {alias!r} looks like a version tag",
            "version tags vN are assigned by push; pick another alias such as v1.2.0-bert",
        )
    if is_internal_tag(alias):
        raise InvalidInput(
            f"alias {alias!r} uses a prefix modelreg reserves (sha256-, anchor., promotion.)",
            "pick another alias: these prefixes name anchors, records and OCI referrers",
        )
    if alias in stage_names(existing_tags):
        raise InvalidInput(
            f"{alias!r} is a stage",
            f"stages move only by signed promotion: 'modelreg promote REF --to {alias}'",
        )
    return alias


def check_aliases(repository: Repository, aliases: Sequence[str]) -> None:
    """Refuse bad aliases before anything is pushed (the repository may not exist yet)."""
    if not aliases:
        return
    try:
        tags = repository.list_tags()
    except NotFound:
        tags = []
    for alias in aliases:
        check_alias(alias, tags)


# ----- publishing a pushed manifest as a version ----------------------------------------------


@dataclass(frozen=True)
class Published:
    version: int
    digest: str
    created: str
    existed: bool


_CREATED = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z")


def _stamp(created: str) -> str:
    """``2026-11-30T01:37:56Z`` as a tag-safe claim stamp ``20261130T013756Z`` ("" if other)."""
    match = _CREATED.fullmatch(created)
    if match is None:
        return ""
    year, month, day, hour, minute, second = match.groups()
    return f"{year}{month}{day}T{hour}{minute}{second}Z"


def _created(stamp: str) -> str:
    s = stamp
    return f"{s[0:4]}-{s[4:6]}-{s[6:8]}T{s[9:11]}:{s[11:13]}:{s[13:15]}Z"


def publish(
    repository: Repository,
    manifest_bytes: bytes,
    media_type: str = IMAGE_MANIFEST,
    *,
    aliases: Sequence[str] = (),
    created: str | None = None,
    unversioned: bool = False,
    record_blob_present: bool = False,
) -> Published:
    """Give a manifest its version (or find the one it has) and its aliases.

    The manifest is pushed here, under its anchor tag, unless it already has a
    version. ``unversioned`` says the caller has just seen (``find_version``)
    that it has none, so it is not looked up again. ``record_blob_present`` says
    the caller has put the version record's empty JSON blob in the repository.
    """
    model = Descriptor(media_type, sha256_digest(manifest_bytes), len(manifest_bytes))
    existing = None if unversioned else find_version(repository, model.digest)
    if existing is not None and not existing.created:
        # the claim landed but the record did not: finish that publish now
        created = created or format_time(now_utc())
        _write_record(repository, model, existing.version, created, record_blob_present)
        existing = Published(existing.version, model.digest, created, existed=True)
    if existing is None:
        migrate_anchors(repository)  # a repository written before the anchor moved
        repository.push_manifest(manifest_bytes, media_type, [anchor_tag(model.digest)])
        created = created or format_time(now_utc())
        number = _claim_and_record(repository, model, manifest_bytes, created, record_blob_present)
        published = Published(number, model.digest, created, existed=False)
    else:
        published = existing
    if aliases:
        tags = repository.list_tags()
        for alias in aliases:
            check_alias(alias, tags)
            _set_alias(repository, alias, manifest_bytes, media_type, model.digest)
    return published


def _set_alias(
    repository: Repository, alias: str, data: bytes, media_type: str, digest: str
) -> None:
    current = repository.resolve(alias)
    if current is not None and current.digest != digest:
        raise ConflictError(
            f"alias {alias!r} already points at {current.digest}",
            "aliases name one model; choose another alias",
        )
    if current is None:
        repository.push_manifest(data, media_type, [alias])


def tag_alias(repository: Repository, reference: str, alias: str) -> str:
    """Point a new alias at an existing model; returns the model digest."""
    descriptor, data = repository.fetch_manifest(reference)
    check_alias(alias, repository.list_tags())
    _set_alias(repository, alias, data, descriptor.media_type, descriptor.digest)
    return descriptor.digest


def find_version(repository: Repository, digest: str) -> Published | None:
    """The version a digest already has, or None. Reads only.

    ``created`` is empty when the version tag exists but its record does not (a
    publish interrupted between the two).
    """
    for number, created in _recorded_versions(repository, digest):
        target = repository.resolve(version_tag(number))
        if target is not None and target.digest == digest:
            return Published(number, digest, created, existed=True)
    if not is_anchored(repository, digest):
        return None
    # anchored but no (valid) record: a publish was interrupted, or its claim was lost
    for number, version_digest in _version_targets(repository).items():
        if version_digest == digest:
            return Published(number, digest, "", existed=True)
    return None


def _claim_and_record(
    repository: Repository,
    model: Descriptor,
    data: bytes,
    created: str,
    blob_present: bool = False,
) -> int:
    """Claim the next free number, write the record, and confirm the claim still holds.

    The confirmation, one read after the record write, catches a writer that stalled
    between its own existence check and its tag write for longer than the settle
    delay and so overwrote a claim that had already been verified: the overwritten
    pusher claims the next number instead of reporting a version it lost.
    """
    for _ in range(_CLAIM_ATTEMPTS):
        number = _claim_next_version(repository, data, model.media_type, created)
        _write_record(repository, model, number, created, blob_present)
        current = repository.resolve(version_tag(number))
        if current is not None and current.digest == model.digest:
            return number
    raise ConflictError(
        f"{repository.name}: version claims for {model.digest} kept being overwritten",
        "another writer keeps moving version tags; stop it, then run "
        f"'modelreg versions {repository.name} --repair'",
    )


def _claim_next_version(repository: Repository, data: bytes, media_type: str, created: str) -> int:
    for attempt in range(_CLAIM_ATTEMPTS):
        numbers = [
            n for n in (parse_version_tag(t) for t in repository.list_tags()) if n is not None
        ]
        candidate = max(numbers, default=0) + 1
        if repository.claim_tag(version_tag(candidate), data, media_type, _stamp(created)):
            return candidate
        time.sleep(random.uniform(0, 0.05 * (attempt + 1)))
    raise ConflictError(
        f"{repository.name}: could not claim a version number after {_CLAIM_ATTEMPTS} tries",
        "too many concurrent pushes; push again (the model is stored and anchored)",
    )


def version_record(model: Descriptor, number: int, created: str) -> Manifest:
    """The record saying ``model`` is version ``number`` (tag :func:`version_record_tag`).

    Pure data."""
    empty = empty_config_descriptor()
    return Manifest(
        config=empty,
        layers=(Descriptor(EMPTY_JSON, empty.digest, empty.size),),
        annotations={ANNOTATION_VERSION: str(number), ANNOTATION_CREATED: created},
        artifact_type=VERSION_ARTIFACT,
        subject=Descriptor(model.media_type, model.digest, model.size),
    )


def _write_record(
    repository: Repository,
    model: Descriptor,
    number: int,
    created: str,
    blob_present: bool = False,
) -> None:
    empty = empty_config_descriptor()
    if not blob_present and not repository.has_blob(empty.digest):
        repository.push_blob([EMPTY_JSON_BYTES], len(EMPTY_JSON_BYTES), empty.digest)
    record = version_record(model, number, created)
    subject = Descriptor(model.media_type, model.digest, model.size)
    attach_referrer(
        repository, record.to_bytes(), IMAGE_MANIFEST, subject, [version_record_tag(model.digest)]
    )


def _recorded_versions(repository: Repository, digest: str) -> list[tuple[int, str]]:
    """(number, push time) of the version records of ``digest``, newest number first.

    The record tag is read first (one request, the push-again fast path); when it is
    missing or unreadable the model's referrers are (a copy made by a tool that
    carries referrers but not tags, e.g. ``oras cp -r``). A model can have more than
    one record (a lost claim is recorded again under the next number); the caller
    checks which one its version tag still confirms.
    """
    with contextlib.suppress(NotFound, IntegrityError):
        return [_read_record(repository, version_record_tag(digest))]
    found: list[tuple[int, str]] = []
    try:
        listed = list_referrers(repository, digest, VERSION_ARTIFACT)
    except NotFound:
        listed = []
    for descriptor in listed:
        fetched = fetch_referrer(repository, descriptor, digest)
        if fetched is not None:
            with contextlib.suppress(IntegrityError):
                found.append(_parse_record(fetched[0], descriptor.digest))
    return sorted(set(found), key=lambda item: -item[0])


def _read_record(repository: Repository, tag: str) -> tuple[int, str]:
    _, data = repository.fetch_manifest(tag)
    return _parse_record(Manifest.parse(data, f"version record {tag}"), tag)


def _parse_record(record: Manifest, tag: str) -> tuple[int, str]:
    number = parse_version_tag("v" + record.annotations.get(ANNOTATION_VERSION, ""))
    if record.artifact_type != VERSION_ARTIFACT or number is None:
        raise IntegrityError(f"{tag} is not a valid version record")
    return number, record.annotations.get(ANNOTATION_CREATED, "")


def _version_targets(repository: Repository) -> dict[int, str]:
    """Version number → digest, for every version tag."""
    numbers = {n: t for t in repository.list_tags() if (n := parse_version_tag(t)) is not None}
    mapping = repository.tag_map(numbers.values())
    return {n: mapping[t].digest for n, t in numbers.items() if t in mapping}


def unversioned(repository: Repository, listed: Iterable[VersionInfo]) -> list[str]:
    """Anchored digests that no version in ``listed`` (every version) names.

    A push still in flight, or a claim lost to a stalled writer, which
    :func:`repair_versions` numbers. Costs one tag listing.
    """
    known = {info.digest for info in listed}
    return sorted(anchored_digests(repository.list_tags()) - known)


def repair_versions(repository: Repository) -> list[Published]:
    """Move old anchors (see :mod:`.anchors`), then give every anchored digest that has
    no version tag the next free number."""
    migrate_anchors(repository)
    anchored = anchored_digests(repository.list_tags())
    versioned = set(_version_targets(repository).values())
    pending = []
    for digest in anchored - versioned:
        descriptor, data = repository.fetch_manifest(digest)
        if Manifest.parse(data).artifact_type == VERSION_ARTIFACT:
            continue
        pending.append((_recorded_time(repository, digest), digest, descriptor, data))
    repaired = []
    # oldest push first (a lost claim still has the record with its push time)
    for recorded, digest, descriptor, data in sorted(pending, key=lambda p: (p[0] or "~", p[1])):
        created = recorded or format_time(now_utc())
        number = _claim_and_record(repository, descriptor, data, created)
        repaired.append(Published(number, digest, created, existed=False))
    return repaired


def _recorded_time(repository: Repository, digest: str) -> str:
    try:
        return _read_record(repository, version_record_tag(digest))[1]
    except (NotFound, IntegrityError):
        return ""


# ----- listing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionInfo:
    version: int
    digest: str
    created: str
    size: int
    aliases: tuple[str, ...]
    stages: tuple[str, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "digest": self.digest,
            "created": self.created,
            "size": self.size,
            "aliases": list(self.aliases),
            "stages": list(self.stages),
        }


def list_versions(
    repository: Repository,
    *,
    where: Callable[[VersionInfo], bool] | None = None,
    reads: ReadCache | None = None,
) -> list[VersionInfo]:
    """Every version, oldest first, with its aliases, stage tags and annotations.

    ``reads`` (held by a long-running caller, see :mod:`.readcache`) keeps what digests
    name between listings: once it knows most of the repository's manifests, a listing
    asks only where each tag points now (``tag_map``: a HEAD per tag, or one index read
    locally) and reads just the manifests and version records it has not seen.
    """
    tags = repository.list_tags()
    version_tags = {n: t for t in tags if (n := parse_version_tag(t)) is not None}
    stages = stage_names(tags)
    named = [t for t in tags if parse_version_tag(t) is None and not is_internal_tag(t)]
    # a version's push time is also in the name of the claim tag that won it: one
    # request per version (its manifest) instead of two (manifest and version record)
    stamped: dict[tuple[str, int], str] = {}
    for tag in tags:
        claim = parse_claim_tag(tag)
        if claim and claim[2] and (claimed := parse_version_tag(claim[1])) is not None:
            stamped[(claim[0], claimed)] = _created(claim[2])
    cache = reads if reads is not None else ReadCache()
    anchored = anchored_digests(tags)
    listed_before = cache.listed((repository.store_id, repository.path_in_store))
    # warm: most of the manifests are known (once evicted, a cold listing costs less);
    # without anchors (a copy made by another tool), when this repository was listed before
    warm = cache.knows(anchored) * 2 >= len(anchored) if anchored else listed_before
    where_now: dict[str, Descriptor] = {}

    def manifest_of(number: int) -> tuple[Descriptor, Manifest]:
        tag = version_tags[number]
        descriptor = where_now.get(tag)
        known = cache.manifest(descriptor.digest) if descriptor is not None else None
        if known is not None:
            return known
        reference = descriptor.digest if descriptor is not None else tag
        descriptor, data = read_listed(lambda: repository.fetch_manifest(reference))
        manifest = Manifest.parse(data, f"{repository.name}:{tag}")
        cache.remember_manifest(descriptor, manifest)
        return descriptor, manifest

    def time_key(digest: str, number: int) -> tuple[str, str, str, int]:
        return (repository.store_id, repository.path_in_store, digest, number)

    def load(number: int) -> tuple[int, Descriptor, Manifest, str]:
        descriptor, manifest = manifest_of(number)
        created = stamped.get((descriptor.digest, number), "")
        if created:
            return number, descriptor, manifest, created
        digest = descriptor.digest
        key = time_key(digest, number)
        if version_record_tag(digest) not in tags:
            cache.forget_push_time(key)  # deleted (gc): a later push may record another time
            return number, descriptor, manifest, ""
        return (
            number,
            descriptor,
            manifest,
            cache.push_time(key, lambda: _recorded_time(repository, digest)),
        )

    def known(number: int) -> tuple[int, Descriptor, Manifest, str] | None:
        """``load(number)`` when the cache has everything it needs (no thread, no I/O)."""
        descriptor = where_now.get(version_tags[number])
        found = cache.manifest(descriptor.digest) if descriptor is not None else None
        if found is None:
            return None
        digest = found[0].digest
        created = stamped.get((digest, number))
        if created is None and version_record_tag(digest) in tags:
            created = cache.known_push_time(time_key(digest, number))
        return None if created is None else (number, found[0], found[1], created)

    from concurrent.futures import ThreadPoolExecutor  # here: it imports logging, ~10 ms

    with ThreadPoolExecutor(_WORKERS) as pool:
        if warm:  # where every tag points now, then only what the cache does not know
            where_now.update(repository.tag_map([*version_tags.values(), *named]))
        named_future = pool.submit(lambda: where_now if warm else repository.tag_map(named))
        ready: dict[int, tuple[int, Descriptor, Manifest, str]] = {}
        for number in version_tags:
            if (cached := known(number)) is not None:
                ready[number] = cached
        rest = sorted(n for n in version_tags if n not in ready)
        ready.update(zip(rest, pool.map(load, rest), strict=True))
    loaded = [ready[n] for n in sorted(ready)]
    named_set = set(named)
    named_found = {t: d for t, d in named_future.result().items() if t in named_set}
    by_digest: dict[str, list[str]] = {}
    for tag, found in named_found.items():
        by_digest.setdefault(found.digest, []).append(tag)
    versions = []
    for number, descriptor, manifest, created in loaded:
        others = sorted(by_digest.get(descriptor.digest, []))
        info = VersionInfo(
            version=number,
            digest=descriptor.digest,
            created=created,
            size=sum(layer.size for layer in manifest.layers),
            aliases=tuple(t for t in others if t not in stages),
            stages=tuple(t for t in others if t in stages),
            annotations=dict(manifest.annotations),
        )
        if where is None or where(info):
            versions.append(info)
    return versions


def resolve_reference_tag(repository: Repository, identifier: str | None) -> str:
    """What to fetch for a reference: its tag or digest, or the latest version when bare."""
    if identifier:
        return identifier
    numbers = [n for n in (parse_version_tag(t) for t in repository.list_tags()) if n is not None]
    if not numbers:
        raise NotFound(
            f"{repository.name} has no versions yet",
            "push a model first, or name a tag or digest",
        )
    return version_tag(max(numbers))


def version_of(repository: Repository, digest: str) -> int | None:
    if not is_digest(digest):
        return None
    found = find_version(repository, digest)
    return found.version if found else None
