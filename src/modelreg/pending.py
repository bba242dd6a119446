"""Listing pending proposals: promotions (or rollbacks) that wait for more signatures.

(What an approver checks before signing one is :mod:`.proposals`.)

A proposal is stored under ``promotion.<stage>.<sequence>.pending`` and is live
while its sequence is past the stage's committed head; an older one is stale
(the stage moved since) and is not listed. Signers are named by the policy, and
only signatures that verify count; a record whose signed stage, sequence or
repository is not its tag's (a signed record re-tagged by a pusher) is not listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import IntegrityError, NotFound, VerificationError
from .inventory import parse_pending_tag
from .promotion import chain_sequences, pending_tag, read_record
from .stages.chain import check_binding
from .store.base import Repository

if TYPE_CHECKING:
    from .policy import TrustPolicy


@dataclass(frozen=True)
class PendingProposal:
    stage: str
    sequence: int
    action: str
    digest: str
    version: int | None
    issued_at: str
    signers: tuple[str, ...]  # empty without a policy: nothing was verified
    needed: int | None  # the policy's threshold; None without a policy

    def to_dict(self) -> dict[str, object]:
        return {
            "stage": self.stage,
            "sequence": self.sequence,
            "action": self.action,
            "digest": self.digest,
            "version": self.version,
            "issuedAt": self.issued_at,
            "signers": list(self.signers),
            "needed": self.needed,
        }


def pending_proposals(
    repository: Repository, stage: str | None = None, policy: TrustPolicy | None = None
) -> list[PendingProposal]:
    """Live proposals of ``stage`` (default: every stage), oldest first."""
    tags = repository.list_tags()
    found: list[PendingProposal] = []
    for tag in tags:
        parsed = parse_pending_tag(tag)
        if parsed is None or (stage is not None and parsed[0] != stage):
            continue
        name, sequence = parsed
        committed = chain_sequences(tags, name)
        if committed and sequence <= committed[-1]:
            continue  # stale: the stage moved since
        try:
            stored = read_record(repository, pending_tag(name, sequence))
            # a signed record under another proposal's tag (another stage, sequence or
            # repository) is a replay: its signatures are real, the proposal is not
            check_binding(repository, name, sequence, stored.record)
        except (NotFound, IntegrityError, VerificationError):
            continue
        record = stored.record
        signers: tuple[str, ...] = ()
        needed = None
        if policy is not None:
            check = policy.check_signatures(name, stored.envelope)
            signers, needed = check.valid_signers, check.threshold
        found.append(
            PendingProposal(
                name,
                sequence,
                record.action,
                record.digest,
                record.version,
                record.issued_at,
                signers,
                needed,
            )
        )
    return sorted(found, key=lambda p: (p.issued_at, p.stage, p.sequence))
