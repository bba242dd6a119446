"""The snapshot gc plans from: every tag, manifest, record and stage head, read once."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..errors import IntegrityError, NotFound
from ..inventory import Inventory, read_tags
from ..oci import Manifest, manifest_references
from ..policy import TrustPolicy
from ..promotion import read_record
from ..stages import verify_stage
from ..store.base import LocalMaintenance, Repository
from ..timeutil import now_utc
from ..trust_state import TrustState

# local store: a blob nothing references is swept only when older than this
# (an upload in flight has not written its manifest yet)
ORPHAN_GRACE = timedelta(hours=1)
_WORKERS = 16


@dataclass(frozen=True)
class ManifestFacts:
    digest: str
    size: int
    blobs: Mapping[str, int]
    children: frozenset[str] = frozenset()
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    subject: str | None = None


@dataclass(frozen=True)
class RecordFacts:
    """A promotion record or pending proposal as gc needs it."""

    stage: str
    sequence: int
    pending: bool
    manifest: str
    model: str
    issued_at: str  # "" when the record could not be read: treated as recent
    replaces: str | None = None


@dataclass(frozen=True)
class Snapshot:
    taken_at: datetime
    inventory: Inventory
    manifests: Mapping[str, ManifestFacts]
    records: tuple[RecordFacts, ...] = ()
    heads: Mapping[str, str] = field(default_factory=dict)  # stage -> model its head names
    verified: bool = False
    orphan_blobs: Mapping[str, int] = field(default_factory=dict)
    local: bool = False


def read_snapshot(
    repository: Repository,
    *,
    policy: TrustPolicy | None = None,
    state: TrustState | None = None,
) -> Snapshot:
    """Read what gc plans from. With ``policy`` every stage chain is verified in full."""
    taken = now_utc()
    inventory = Inventory.of(read_tags(repository))
    digests = {found.digest for found in inventory.tags.values()}
    local = isinstance(repository, LocalMaintenance)
    if isinstance(repository, LocalMaintenance):
        digests.update(repository.manifest_digests())
    with ThreadPoolExecutor(_WORKERS) as pool:
        facts = list(pool.map(lambda d: _manifest_facts(repository, d), sorted(digests)))
        manifests = {f.digest: f for f in facts if f is not None}
        records = tuple(
            pool.map(
                lambda item: _record_facts(repository, item[0], item[1], manifests),
                [(key, False) for key in inventory.records.items()]
                + [(key, True) for key in inventory.pending.items()],
            )
        )
    heads: dict[str, str] = {}
    for stage in inventory.record_stages():
        if policy is not None:
            heads[stage] = verify_stage(
                repository, stage, policy, state=state, full=True, check_tag=False
            ).digest
        else:
            committed = [r for r in records if r.stage == stage and not r.pending]
            heads[stage] = max(committed, key=lambda r: r.sequence).model
    orphans: dict[str, int] = {}
    if isinstance(repository, LocalMaintenance):
        referenced = repository.referenced_blobs()
        cutoff = (taken - ORPHAN_GRACE).timestamp()
        orphans = {
            digest: size
            for digest, (size, mtime) in repository.blob_sizes().items()
            if digest not in referenced and mtime < cutoff
        }
    return Snapshot(taken, inventory, manifests, records, heads, policy is not None, orphans, local)


def _manifest_facts(repository: Repository, digest: str) -> ManifestFacts | None:
    try:
        descriptor, data = repository.fetch_manifest(digest)
    except NotFound:
        return None  # deleted since the tags were read
    found = manifest_references(data)
    annotations: dict[str, str] = {}
    artifact_type = None
    with contextlib.suppress(IntegrityError):  # not an image manifest: no annotations
        parsed = Manifest.parse(data)
        annotations, artifact_type = dict(parsed.annotations), parsed.artifact_type
    return ManifestFacts(
        descriptor.digest,
        len(data),
        found.blobs,
        found.children,
        annotations,
        artifact_type,
        found.subject,
    )


def _record_facts(
    repository: Repository,
    key: tuple[tuple[str, int], str],
    pending: bool,
    manifests: Mapping[str, ManifestFacts],
) -> RecordFacts:
    (stage, sequence), digest = key
    try:
        record = read_record(repository, digest).record
        return RecordFacts(
            stage, sequence, pending, digest, record.digest, record.issued_at, record.replaces
        )
    except (IntegrityError, NotFound):
        # unreadable: keep whatever its artifact points at, as if it were recent
        facts = manifests.get(digest)
        return RecordFacts(stage, sequence, pending, digest, (facts and facts.subject) or "", "")
