"""Planning gc (pure): version by version what to keep and why, and what goes with the rest."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import InvalidInput
from ..inventory import Inventory
from ..promotion import pending_tag
from ..stages import PRODUCTION
from ..store.base import CLAIM_ARTIFACT, parse_claim_tag
from ..timeutil import parse_time
from ..versions import ANNOTATION_CREATED, ANNOTATION_VERSION, VERSION_ARTIFACT, version_tag
from .rules import RetentionRules, duration_text
from .snapshot import ORPHAN_GRACE, ManifestFacts, RecordFacts, Snapshot


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
    decisions: list[VersionDecision] = []
    for rank, digest in enumerate(newest):
        numbers = tuple(sorted(by_digest[digest]))
        created = _created(snapshot, digest, numbers)
        facts = snapshot.manifests.get(digest)
        reasons = [
            *protected.get(digest, ()),
            *_rule_reasons(rules, rank, created, now),
            *_tag_reasons(inventory, digest),
        ]
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
        freed_blobs=freed_blobs(snapshot, deletions),
        orphan_blobs=dict(snapshot.orphan_blobs),
        records_kept_for_removed=kept_records,
        verified=snapshot.verified,
        rules=rules,
    )


def _rule_reasons(rules: RetentionRules, rank: int, created: str, now: datetime) -> list[str]:
    """Why the rules keep the version at ``rank`` (0: the newest) created at ``created``."""
    reasons: list[str] = []
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
            reasons.append(f"younger than {duration_text(rules.older_than)}")
    return reasons


_MANAGED_TAGS = {"version", "anchor", "alias", "stage", "claim"}


def _tag_reasons(inventory: Inventory, digest: str) -> list[str]:
    """Tags gc does not manage keep their model: someone named it on purpose."""
    return [
        f"also tagged {tag!r}"
        for tag in inventory.tags_of(digest)
        if _tag_kind(inventory, tag, digest) not in _MANAGED_TAGS
    ]


def _protected(snapshot: Snapshot, rules: RetentionRules, now: datetime) -> dict[str, list[str]]:
    """Model digest -> why no rule may delete it."""
    reasons: dict[str, list[str]] = {}
    for digest, why in [
        *_stage_holders(snapshot),
        *_recent_production(snapshot, rules, now),
        *_awaiting_approval(snapshot),
        *_index_children(snapshot),
    ]:
        if digest:
            reasons.setdefault(digest, []).append(why)
    return reasons


_Keep = tuple[str | None, str]  # a model digest (None or "": nothing) and why it stays


def _stage_holders(snapshot: Snapshot) -> list[_Keep]:
    inventory = snapshot.inventory
    keep: list[_Keep] = []
    for stage in sorted(set(inventory.stages) | set(snapshot.heads)):
        tagged, head = inventory.stages.get(stage), snapshot.heads.get(stage)
        if tagged is None or head is None or tagged == head:
            keep.append((tagged or head, f"holds {stage}"))
        else:  # the tag and the chain disagree: keep both until someone sorts it out
            keep.append((tagged, f"the {stage} tag points at it (its signed chain names another)"))
            keep.append((head, f"holds {stage} by its signed chain (the tag points elsewhere)"))
    return keep


def _recent_production(snapshot: Snapshot, rules: RetentionRules, now: datetime) -> list[_Keep]:
    window = duration_text(rules.production_window)
    cutoff = now - rules.production_window
    production = sorted(
        (r for r in snapshot.records if r.stage == PRODUCTION and not r.pending),
        key=lambda r: r.sequence,
    )
    keep: list[_Keep] = []
    for index, record in enumerate(production):
        following = production[index + 1] if index + 1 < len(production) else None
        # a record's model held production until the next record was issued
        if following is None or not following.issued_at or _after(following.issued_at, cutoff):
            keep.append((record.model, f"held production within {window}"))
        if not record.issued_at or _after(record.issued_at, cutoff):
            keep.append((record.replaces, f"held production within {window}"))
    return keep


def _awaiting_approval(snapshot: Snapshot) -> list[_Keep]:
    heads = _head_sequences(snapshot.records)
    return [
        (record.model, f"proposed for {record.stage}, awaiting approval")
        for record in snapshot.records
        if record.pending and record.sequence > heads.get(record.stage, 0)
    ]


def _index_children(snapshot: Snapshot) -> list[_Keep]:
    return [
        (child, f"listed by index {facts.digest[:19]}")
        for facts in snapshot.manifests.values()
        for child in facts.children
    ]


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
    deletions: list[Deletion] = []
    for decision in removed:
        deletions.extend(_version_deletions(inventory, decision.digest, stale))
        deletions.extend(_referrers_index(snapshot, decision.digest, deletions))
    deletions.extend(_stale_claims(snapshot))
    deletions.extend(_orphan_version_records(inventory, models))
    first: dict[str, Deletion] = {}
    for deletion in deletions:
        first.setdefault(deletion.digest, deletion)
    return list(first.values())


def _referrers_index(snapshot: Snapshot, model: str, deletions: list[Deletion]) -> list[Deletion]:
    """The model's OCI referrers index, when it lists nothing but what goes with the model;
    one that lists a kept record or another tool's referrer stays."""
    index = snapshot.inventory.referrer_indexes.get(model)
    listed = snapshot.manifests.get(index) if index else None
    going = {d.digest for d in deletions if d.model == model}
    if index and listed is not None and listed.children <= going:
        tags = tuple(snapshot.inventory.tags_of(index))
        return [Deletion(index, "referrers-index", model, tags)]
    return []


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


def _only_tagged_by(inventory: Inventory, digest: str, allowed: Iterable[str]) -> bool:
    return set(inventory.tags_of(digest)) <= set(allowed)


def _version_deletions(
    inventory: Inventory, model: str, stale: Mapping[str, RecordFacts]
) -> list[Deletion]:
    """The model, its version record, its ModelPack form and its stale proposals."""
    deletions = [Deletion(model, "model", model, tuple(inventory.tags_of(model)))]
    record = inventory.version_records.get(model)
    record_tags = [_version_record_tag(model)]
    if record and _only_tagged_by(inventory, record, record_tags):
        deletions.append(Deletion(record, "version-record", model, tuple(record_tags)))
    form = _modelpack_tag(model)  # the version's ModelPack form goes with it
    if form in inventory.tags and _only_tagged_by(inventory, inventory.tags[form].digest, [form]):
        deletions.append(Deletion(inventory.tags[form].digest, "modelpack", model, (form,)))
    for proposal in sorted(stale.values(), key=lambda r: (r.stage, r.sequence)):
        if proposal.model == model and _only_tagged_by(inventory, proposal.manifest, stale):
            tags = tuple(inventory.tags_of(proposal.manifest))
            deletions.append(Deletion(proposal.manifest, "pending", model, tags))
    return deletions


def _orphan_version_records(inventory: Inventory, removed: set[str]) -> list[Deletion]:
    """Version records left behind by an interrupted gc: their model has no tag at all."""
    tagged = {found.digest for found in inventory.tags.values()}
    deletions: list[Deletion] = []
    for model, record in sorted(inventory.version_records.items()):
        if model not in tagged and model not in removed:
            record_tags = [_version_record_tag(model)]
            if _only_tagged_by(inventory, record, record_tags):
                deletions.append(
                    Deletion(record, "orphan-version-record", model, tuple(record_tags))
                )
    return deletions


def _modelpack_tag(model: str) -> str:
    from ..formats.modelpack import modelpack_tag

    return modelpack_tag(model)


def _version_record_tag(model: str) -> str:
    from ..versions import version_record_tag

    return version_record_tag(model)


def freed_blobs(snapshot: Snapshot, deletions: list[Deletion]) -> dict[str, int]:
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
