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

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import VerificationError
from ..policy import TrustPolicy
from ..store.base import Repository
from ..trust_state import TrustState
from .execution import Executed, execute
from .planning import Deletion, Plan, VersionDecision, plan
from .rules import DEFAULT_PRODUCTION_WINDOW, RetentionRules, load_rules
from .snapshot import ManifestFacts, RecordFacts, Snapshot, read_snapshot


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
    "Deletion",
    "Executed",
    "GcReport",
    "ManifestFacts",
    "Plan",
    "RecordFacts",
    "RetentionRules",
    "Snapshot",
    "VersionDecision",
    "execute",
    "gc",
    "load_rules",
    "plan",
    "read_snapshot",
]
