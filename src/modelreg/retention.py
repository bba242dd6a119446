"""Retention: delete old versions, never what a stage needs; report what it frees.

Three steps, and only the last one writes:

1. :func:`read_snapshot` reads the repository once: every tag and the manifest
   it points at, the version records (creation times), every promotion record
   and pending proposal, and each stage's chain head — verified against the
   trust policy when there is one (a chain that fails verification stops gc:
   it would plan from records it cannot trust);
2. :func:`plan` (pure) decides, version by version, what to keep and why, and
   which manifests and blobs go with the rest;
3. :func:`execute` deletes by digest, each model before its version record, and
   on the local store frees the blobs nothing references any more.

What is kept, whatever the rules say: the model each stage tag points at and
the model each stage's chain head names (both, if they differ); every model
that held ``production`` within the production window (from the records'
issue times: a record holds the stage until the next one is issued; its
``replaces`` is kept too); the model of a proposal still waiting for
approval; every committed promotion record. Records are never deleted — a gap
would break the hash chain — so a record may name a model that is gone: chain
verification needs only the record (payload links and signatures), the model
is only needed to pull it.

``keep_last`` keeps the newest N versions (by version number); ``older_than``
lets only versions created (version record time) before that age go; given
both, a version goes only when both allow it. A version whose creation time is
unknown is never "older than" anything.

Concurrency: gc deletes only digests it planned from its snapshot, so a version
pushed after the snapshot is never deleted; just before deleting it reads the
stage tags and records again and spares any planned model a stage has since
been moved to. On the local store a push that reuses a blob gc is removing
fails whole (the manifest is refused, nothing indexed), never half.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ._toml import load_toml_file
from .errors import IntegrityError, InvalidInput, ModelregError, NotFound, VerificationError
from .inventory import Inventory, read_tags
from .oci import Manifest, manifest_references
from .policy import TrustPolicy
from .promotion import pending_tag, read_record
from .stages import PRODUCTION, verify_stage
from .store.base import CLAIM_ARTIFACT, Repository, parse_claim_tag
from .store.layout import LayoutRepository
from .timeutil import now_utc, parse_duration, parse_time
from .trust_state import TrustState
from .versions import ANNOTATION_CREATED, ANNOTATION_VERSION, VERSION_ARTIFACT, version_tag

DEFAULT_PRODUCTION_WINDOW = timedelta(days=30)
# local store: a blob nothing references is swept only when older than this
# (an upload in flight has not written its manifest yet)
ORPHAN_GRACE = timedelta(hours=1)
_WORKERS = 16


# ----- rules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionRules:
    keep_last: int | None = None
    older_than: timedelta | None = None
    production_window: timedelta = DEFAULT_PRODUCTION_WINDOW

    def __post_init__(self) -> None:
        if self.keep_last is None and self.older_than is None:
            raise InvalidInput(
                "gc needs a rule: --keep-last N, --older-than AGE, or both",
                "or a retention file with [gc] keep_last / older_than (--retention FILE)",
            )
        if self.keep_last is not None and self.keep_last < 0:
            raise InvalidInput(f"keep_last must be 0 or more, not {self.keep_last}")

    def describe(self) -> dict[str, Any]:
        return {
            "keepLast": self.keep_last,
            "olderThan": _duration_text(self.older_than),
            "keepProductionWindow": _duration_text(self.production_window),
        }


def load_rules(
    path: Path | None = None,
    *,
    keep_last: int | None = None,
    older_than: str | None = None,
    production_window: str | None = None,
) -> RetentionRules:
    """Rules from a policy file's ``[gc]`` table, each overridden by the value given here.

    The file (TOML)::

        [gc]
        keep_last = 10
        older_than = "90d"
        keep_production_window = "30d"
    """
    settings: dict[str, Any] = _read_gc_table(path) if path is not None else {}
    if keep_last is not None:
        settings["keep_last"] = keep_last
    if older_than is not None:
        settings["older_than"] = older_than
    if production_window is not None:
        settings["keep_production_window"] = production_window
    window = settings.get("keep_production_window")
    return RetentionRules(
        keep_last=settings.get("keep_last"),
        older_than=parse_duration(settings["older_than"]) if "older_than" in settings else None,
        production_window=parse_duration(window) if window else DEFAULT_PRODUCTION_WINDOW,
    )


def _read_gc_table(path: Path) -> dict[str, Any]:
    data = load_toml_file(path, "retention policy file")
    table = data.get("gc")
    if not isinstance(table, dict):
        raise InvalidInput(
            f"{path}: no [gc] table",
            'write e.g. [gc] keep_last = 10, older_than = "90d", keep_production_window = "30d"',
        )
    unknown = set(table) - {"keep_last", "older_than", "keep_production_window"}
    if unknown:
        raise InvalidInput(
            f"{path}: unknown [gc] setting(s) {sorted(unknown)}",
            "settings are keep_last, older_than, keep_production_window",
        )
    keep = table.get("keep_last")
    if keep is not None and (not isinstance(keep, int) or isinstance(keep, bool)):
        raise InvalidInput(f"{path}: [gc] keep_last must be a whole number")
    for name in ("older_than", "keep_production_window"):
        if name in table and not isinstance(table[name], str):
            raise InvalidInput(f'{path}: [gc] {name} must be a duration such as "90d"')
    return dict(table)


def _duration_text(value: timedelta | None) -> str | None:
    if value is None:
        return None
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# ----- snapshot: everything gc plans from, read once -------------------------------------------


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
    local = isinstance(repository, LayoutRepository)
    if isinstance(repository, LayoutRepository):
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
    if isinstance(repository, LayoutRepository):
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


# ----- plan: pure -------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionDecision:
    """One model with its version number(s): deleted, or kept and why."""

    digest: str
    versions: tuple[int, ...]
    created: str
    aliases: tuple[str, ...]
    size: int
    delete: bool
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "versions": list(self.versions),
            "tags": [version_tag(n) for n in self.versions],
            "digest": self.digest,
            "created": self.created,
            "aliases": list(self.aliases),
            "size": self.size,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class Deletion:
    """A manifest to delete by digest (with it go the tags listed)."""

    digest: str
    kind: str  # model, version-record, modelpack, pending, orphan-version-record,
    # referrers-index, claim
    model: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    decisions: tuple[VersionDecision, ...]
    deletions: tuple[Deletion, ...]
    freed_blobs: Mapping[str, int]
    orphan_blobs: Mapping[str, int]
    records_kept_for_removed: int
    verified: bool
    rules: RetentionRules

    @property
    def removed(self) -> list[VersionDecision]:
        return [d for d in self.decisions if d.delete]

    @property
    def kept(self) -> list[VersionDecision]:
        return [d for d in self.decisions if not d.delete]

    @property
    def bytes(self) -> int:
        return sum(self.freed_blobs.values()) + sum(self.orphan_blobs.values())


def plan(snapshot: Snapshot, rules: RetentionRules, now: datetime | None = None) -> Plan:
    """Decide what goes. Reads nothing; ``now`` defaults to the snapshot's time."""
    now = now or snapshot.taken_at
    inventory = snapshot.inventory
    protected = _protected(snapshot, rules, now)
    by_digest: dict[str, list[int]] = {}
    for number, digest in inventory.versions.items():
        by_digest.setdefault(digest, []).append(number)
    newest = sorted(by_digest, key=lambda d: max(by_digest[d]), reverse=True)
    managed = {"version", "anchor", "alias", "stage", "claim"}
    decisions: list[VersionDecision] = []
    for rank, digest in enumerate(newest):
        numbers = tuple(sorted(by_digest[digest]))
        created = _created(snapshot, digest, numbers)
        reasons = list(protected.get(digest, ()))
        if rank == 0:
            # version numbers come from the tags that exist: deleting the newest would let
            # the next push reuse its number
            reasons.append("the newest version (keeps version numbers from being reused)")
        if rules.keep_last is not None and rank < rules.keep_last:
            reasons.append(f"one of the newest {rules.keep_last}")
        if rules.older_than is not None:
            if not created:
                reasons.append("creation time unknown")
            elif _after(created, now - rules.older_than):
                reasons.append(f"younger than {_duration_text(rules.older_than)}")
        for tag in inventory.tags_of(digest):
            if _tag_kind(inventory, tag, digest) not in managed:
                reasons.append(f"also tagged {tag!r}")
        facts = snapshot.manifests.get(digest)
        if facts is None:
            reasons.append("manifest unreadable")
        decisions.append(
            VersionDecision(
                digest=digest,
                versions=numbers,
                created=created,
                aliases=tuple(t for t, d in sorted(inventory.aliases.items()) if d == digest),
                size=_layer_bytes(facts),
                delete=not reasons,
                reasons=tuple(dict.fromkeys(reasons)),
            )
        )
    decisions.sort(key=lambda d: d.versions)
    deletions = _deletions(snapshot, [d for d in decisions if d.delete])
    removed_models = {d.digest for d in decisions if d.delete}
    kept_records = sum(1 for r in snapshot.records if not r.pending and r.model in removed_models)
    return Plan(
        decisions=tuple(decisions),
        deletions=tuple(deletions),
        freed_blobs=_freed(snapshot, deletions),
        orphan_blobs=dict(snapshot.orphan_blobs),
        records_kept_for_removed=kept_records,
        verified=snapshot.verified,
        rules=rules,
    )


def _protected(snapshot: Snapshot, rules: RetentionRules, now: datetime) -> dict[str, list[str]]:
    """Model digest -> why no rule may delete it."""
    reasons: dict[str, list[str]] = {}

    def keep(digest: str | None, why: str) -> None:
        if digest:
            reasons.setdefault(digest, []).append(why)

    inventory = snapshot.inventory
    for stage in sorted(set(inventory.stages) | set(snapshot.heads)):
        tagged, head = inventory.stages.get(stage), snapshot.heads.get(stage)
        if tagged is None or head is None or tagged == head:
            keep(tagged or head, f"holds {stage}")
        else:  # the tag and the chain disagree: keep both until someone sorts it out
            keep(tagged, f"the {stage} tag points at it (its signed chain names another)")
            keep(head, f"holds {stage} by its signed chain (the tag points elsewhere)")
    window = _duration_text(rules.production_window)
    cutoff = now - rules.production_window
    production = sorted(
        (r for r in snapshot.records if r.stage == PRODUCTION and not r.pending),
        key=lambda r: r.sequence,
    )
    for index, record in enumerate(production):
        following = production[index + 1] if index + 1 < len(production) else None
        # a record's model held production until the next record was issued
        if following is None or not following.issued_at or _after(following.issued_at, cutoff):
            keep(record.model, f"held production within {window}")
        if not record.issued_at or _after(record.issued_at, cutoff):
            keep(record.replaces, f"held production within {window}")
    heads = _head_sequences(snapshot.records)
    for record in snapshot.records:
        if record.pending and record.sequence > heads.get(record.stage, 0):
            keep(record.model, f"proposed for {record.stage}, awaiting approval")
    for facts in snapshot.manifests.values():
        for child in facts.children:
            keep(child, f"listed by index {facts.digest[:19]}")
    return reasons


def _head_sequences(records: Iterable[RecordFacts]) -> dict[str, int]:
    heads: dict[str, int] = {}
    for record in records:
        if not record.pending:
            heads[record.stage] = max(heads.get(record.stage, 0), record.sequence)
    return heads


def _after(stamp: str, moment: datetime) -> bool:
    """True when ``stamp`` is at or after ``moment``; an unreadable stamp counts as recent."""
    try:
        return parse_time(stamp) >= moment
    except InvalidInput:
        return True


def _created(snapshot: Snapshot, digest: str, numbers: tuple[int, ...]) -> str:
    record = snapshot.inventory.version_records.get(digest)
    facts = snapshot.manifests.get(record) if record else None
    if facts is None or facts.artifact_type != VERSION_ARTIFACT:
        return ""
    if facts.annotations.get(ANNOTATION_VERSION) not in {str(n) for n in numbers}:
        return ""
    return facts.annotations.get(ANNOTATION_CREATED, "")


def _tag_kind(inventory: Inventory, tag: str, digest: str) -> str:
    if tag in inventory.stages:
        return "stage"  # protected on its own
    if tag in inventory.aliases:
        return "alias"
    if inventory.anchors.get(digest) == tag:
        return "anchor"
    if any(version_tag(n) == tag for n in inventory.version_of(digest)):
        return "version"
    claim = parse_claim_tag(tag)
    if claim is not None and claim[0] == digest:
        return "claim"  # the claim a push wrote before taking its version tag
    return "other"


def _layer_bytes(facts: ManifestFacts | None) -> int:
    return sum(facts.blobs.values()) if facts else 0


def _deletions(snapshot: Snapshot, removed: list[VersionDecision]) -> list[Deletion]:
    inventory = snapshot.inventory
    models = {d.digest for d in removed}
    heads = _head_sequences(snapshot.records)
    # stale proposals (at or below the head) for removed models: nothing can approve them
    stale = {
        pending_tag(r.stage, r.sequence): r
        for r in snapshot.records
        if r.pending and r.model in models and r.sequence <= heads.get(r.stage, 0)
    }

    def only_tagged_by(digest: str, allowed: Iterable[str]) -> bool:
        return set(inventory.tags_of(digest)) <= set(allowed)

    deletions: list[Deletion] = []
    for decision in removed:
        model = decision.digest
        deletions.append(Deletion(model, "model", model, tuple(inventory.tags_of(model))))
        record = inventory.version_records.get(model)
        record_tags = [_version_record_tag(model)]
        if record and only_tagged_by(record, record_tags):
            deletions.append(Deletion(record, "version-record", model, tuple(record_tags)))
        form = _modelpack_tag(model)  # the version's ModelPack form goes with it
        if form in inventory.tags and only_tagged_by(inventory.tags[form].digest, [form]):
            deletions.append(Deletion(inventory.tags[form].digest, "modelpack", model, (form,)))
        for proposal in sorted(stale.values(), key=lambda r: (r.stage, r.sequence)):
            if proposal.model == model and only_tagged_by(proposal.manifest, stale):
                tags = tuple(inventory.tags_of(proposal.manifest))
                deletions.append(Deletion(proposal.manifest, "pending", model, tags))
        # the model's OCI referrers index goes too when it lists nothing but what goes
        # with the model; one that lists a kept record or another tool's referrer stays
        index = inventory.referrer_indexes.get(model)
        listed = snapshot.manifests.get(index) if index else None
        going = {d.digest for d in deletions if d.model == model}
        if index and listed is not None and listed.children <= going:
            tags = tuple(inventory.tags_of(index))
            deletions.append(Deletion(index, "referrers-index", model, tags))
    deletions.extend(_stale_claims(snapshot))
    # version records left behind by an interrupted gc: their model has no tag at all
    tagged = {found.digest for found in inventory.tags.values()}
    for model, record in sorted(inventory.version_records.items()):
        if model not in tagged and model not in models:
            record_tags = [_version_record_tag(model)]
            if only_tagged_by(record, record_tags):
                deletions.append(
                    Deletion(record, "orphan-version-record", model, tuple(record_tags))
                )
    seen: set[str] = set()
    unique = []
    for deletion in deletions:
        if deletion.digest not in seen:
            seen.add(deletion.digest)
            unique.append(deletion)
    return unique


def _modelpack_tag(model: str) -> str:
    from .formats.modelpack import modelpack_tag

    return modelpack_tag(model)


def _stale_claims(snapshot: Snapshot) -> list[Deletion]:
    """Claim tags a push or promotion left behind (killed, or deletes were refused then):
    those whose tag has been taken since, or stamped over an hour ago. Only claim
    markers go; an old claim tag pointing at the model itself is kept with the model."""
    inventory = snapshot.inventory
    stale = []
    for tag, descriptor in sorted(inventory.tags.items()):
        claim = parse_claim_tag(tag)
        facts = snapshot.manifests.get(descriptor.digest)
        if claim is None or facts is None or facts.artifact_type != CLAIM_ARTIFACT:
            continue
        digest, claimed, stamp = claim
        decided = claimed in inventory.tags
        old = bool(stamp) and not _after(_created_of_stamp(stamp), snapshot.taken_at - ORPHAN_GRACE)
        if decided or old:
            stale.append(
                Deletion(
                    descriptor.digest, "claim", digest, tuple(inventory.tags_of(descriptor.digest))
                )
            )
    return stale


def _created_of_stamp(stamp: str) -> str:
    s = stamp
    return f"{s[0:4]}-{s[4:6]}-{s[6:8]}T{s[9:11]}:{s[11:13]}:{s[13:15]}Z"


def _version_record_tag(model: str) -> str:
    from .versions import version_record_tag

    return version_record_tag(model)


def _freed(snapshot: Snapshot, deletions: list[Deletion]) -> dict[str, int]:
    """Blobs (manifests included) that only the deleted manifests reference."""
    deleted = {d.digest for d in deletions}
    kept: set[str] = set()
    for digest, facts in snapshot.manifests.items():
        if digest not in deleted:
            kept.add(digest)
            kept.update(facts.blobs)
    freed: dict[str, int] = {}
    for digest in deleted:
        found = snapshot.manifests.get(digest)
        if found is not None:
            freed[digest] = found.size
            freed.update(found.blobs)
    return {digest: size for digest, size in freed.items() if digest not in kept}


# ----- execute ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Executed:
    deleted: tuple[Deletion, ...]
    spared: tuple[str, ...]  # planned models a stage needed by the time gc got to them
    freed: int  # bytes only the deleted manifests referenced (a registry frees them at its gc)
    reclaimed: int  # bytes freed on disk now (local store); 0 on a registry


def execute(repository: Repository, planned: Plan, snapshot: Snapshot) -> Executed:
    """Delete what ``planned`` says, sparing models a stage has needed since the snapshot."""
    spared = _needed_since(repository, snapshot, {d.model for d in planned.deletions})
    deleted: list[Deletion] = []
    for deletion in planned.deletions:
        if deletion.model in spared:
            continue
        try:
            repository.delete_manifest(deletion.digest)
        except NotFound:
            pass  # already gone: an earlier, interrupted gc
        except ModelregError as exc:
            raise type(exc)(
                f"gc stopped after {len(deleted)} of {len(planned.deletions)} deletions: "
                f"{exc.message}",
                exc.hint or "run gc again: it finishes what is left",
            ) from None
        deleted.append(deletion)
    _unlist_deleted_records(repository, deleted)
    freed = _freed(snapshot, deleted)
    reclaimed = 0
    if isinstance(repository, LayoutRepository):
        done = {d.digest for d in deleted}
        reclaimed = sum(
            size
            for digest, size in freed.items()
            if digest in done and not repository.has_blob(digest)
        )
        reclaimed += repository.sweep_blobs(
            [d for d in freed if d not in done] + list(planned.orphan_blobs)
        )
    total = sum(freed.values()) + sum(planned.orphan_blobs.values())
    return Executed(tuple(deleted), tuple(sorted(spared)), total, reclaimed)


def _unlist_deleted_records(repository: Repository, deleted: list[Deletion]) -> None:
    """Take the records gc deleted out of their model's referrers index (the spec asks it);
    every other entry (another tool's signature, SBOM…) stays."""
    from .store.referrers import remove_from_tag_schema

    by_model: dict[str, set[str]] = {}
    for deletion in deleted:
        if deletion.kind not in ("model", "claim"):
            by_model.setdefault(deletion.model, set()).add(deletion.digest)
    gone = {d.model for d in deleted if d.kind == "referrers-index"}
    for model, digests in sorted(by_model.items()):
        if model in gone:
            continue
        with contextlib.suppress(ModelregError):  # a listing left stale is harmless: fetched
            remove_from_tag_schema(repository, model, digests)  # entries are verified


def _needed_since(repository: Repository, snapshot: Snapshot, planned: set[str]) -> set[str]:
    """Planned models that a stage tag, record or proposal written since the snapshot names."""
    if not planned:
        return set()
    now = Inventory.of(read_tags(repository))
    before = snapshot.inventory
    needed = {digest for digest in now.stages.values() if digest in planned}
    fresh = [
        digest
        for key, digest in [*now.records.items(), *now.pending.items()]
        if digest not in {*before.records.values(), *before.pending.values()}
    ]
    for digest in fresh:
        try:
            record = read_record(repository, digest).record
            needed.update({record.digest, record.replaces or ""} & planned)
        except (IntegrityError, NotFound):
            _, data = repository.fetch_manifest(digest)
            subject = manifest_references(data).subject
            needed.update({subject or ""} & planned)
    return needed


# ----- together ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GcReport:
    repository: str
    dry_run: bool
    plan: Plan
    executed: Executed | None
    local: bool

    @property
    def removed(self) -> list[VersionDecision]:
        if self.executed is None:
            return self.plan.removed
        return [d for d in self.plan.removed if d.digest not in self.executed.spared]

    @property
    def bytes(self) -> int:
        """Bytes freed: on the local store now, on a registry at its next garbage-collect."""
        if self.executed is None:
            return self.plan.bytes
        return self.executed.reclaimed if self.local else self.executed.freed

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "dryRun": self.dry_run,
            "verified": self.plan.verified,
            "rules": self.plan.rules.describe(),
            "versionsRemoved": sum(len(d.versions) for d in self.removed),
            "bytes": self.bytes,
            "removed": [d.to_dict() for d in self.removed],
            "kept": [d.to_dict() for d in self.plan.kept],
            "spared": list(self.executed.spared) if self.executed else [],
            "manifestsDeleted": [
                {"digest": d.digest, "kind": d.kind, "tags": list(d.tags)}
                for d in (self.executed.deleted if self.executed else self.plan.deletions)
            ],
            "recordsKept": self.plan.records_kept_for_removed,
            "diskFreedNow": self.local and not self.dry_run,
        }


def gc(
    repository: Repository,
    rules: RetentionRules,
    *,
    policy: TrustPolicy | None = None,
    state: TrustState | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> GcReport:
    """Plan from one snapshot, then (unless ``dry_run``) delete; see the module docs."""
    try:
        snapshot = read_snapshot(repository, policy=policy, state=state)
    except VerificationError as exc:
        raise VerificationError(
            f"gc deletes nothing while a stage chain fails verification: {exc.message}",
            exc.hint,
        ) from None
    planned = plan(snapshot, rules, now)
    if on_plan is not None:
        on_plan(planned)
    executed = None if dry_run else execute(repository, planned, snapshot)
    return GcReport(repository.name, dry_run, planned, executed, snapshot.local)


__all__ = [
    "DEFAULT_PRODUCTION_WINDOW",
    "GcReport",
    "Plan",
    "RetentionRules",
    "Snapshot",
    "execute",
    "gc",
    "load_rules",
    "plan",
    "read_snapshot",
]
