"""Pending proposals: what an approver checks before adding a signature.

A proposal (``promotion.<stage>.<n>.pending``) is a plain tag anyone with push
rights can rewrite, so it is never trusted for what it says. It is a DSSE
envelope whose payload is exactly the statement the committed record will
carry, signed by its proposer; approvals add signatures over the *same payload
bytes*. An approver therefore signs only a payload that a key allowed to sign
the stage already signed, and only after checking every field against the
verified chain it builds on (the stage head) and the model it names. What was
checked is returned so the approver sees exactly what their signature covers.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import PolicyError, VerificationError
from .policy import TrustPolicy
from .promotion import PromotionRecord, StoredRecord
from .signing import Envelope, verify_envelope
from .timeutil import now_utc, parse_time


@dataclass(frozen=True)
class Proposal:
    """A proposal whose payload verified: the record it will commit and who proposed it."""

    record: PromotionRecord
    envelope: Envelope  # the exact payload, with only the signatures that verified
    proposers: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        record = self.record
        return {
            "repository": record.repository,
            "stage": record.stage,
            "sequence": record.sequence,
            "action": record.action,
            "digest": record.digest,
            "version": record.version,
            "replaces": record.replaces,
            "previous": record.previous,
            "issuedAt": record.issued_at,
            "expiresAt": record.expires_at,
            "proposedBy": list(self.proposers),
        }


def verified_proposal(
    pending: StoredRecord,
    policy: TrustPolicy,
    *,
    model_digest: str,
    head_payload: str | None,
    head_digest: str | None,
) -> Proposal:
    """Check a pending proposal against the policy and the verified stage head.

    ``head_payload``/``head_digest`` come from the verified chain, never from
    the proposal: the proposal must link to that head and say it replaces that
    model, or it is refused.
    """
    record = pending.record
    stage = record.stage
    checked = verify_envelope(pending.envelope, policy.allowed_keys(stage))
    if not checked.verified:
        raise VerificationError(
            f"the pending {stage} proposal {record.sequence} carries no valid signature by a "
            f"key that may sign {stage}: it was written or rewritten without a signing key",
            f"ask a signer ({', '.join(sorted(policy.allowed_names(stage)))}) to propose it "
            "again with 'modelreg promote'",
        )
    if record.digest != model_digest:
        raise PolicyError(
            f"the pending {stage} proposal is for {record.digest}"
            + (f" (v{record.version})" if record.version else "")
            + f", not {model_digest}",
            "approve the version that was proposed, or propose this one with 'modelreg promote'",
        )
    if record.previous != head_payload:
        raise PolicyError(
            f"the pending {stage} proposal is stale: the stage moved since it was made",
            "propose again with 'modelreg promote'",
        )
    if record.replaces != head_digest:
        raise VerificationError(
            f"the pending {stage} proposal says it replaces {record.replaces or 'nothing'}, "
            f"but the verified {stage} head holds {head_digest or 'nothing'}",
            "the proposal does not describe the stage it would move; propose again",
        )
    if record.action not in ("promote", "rollback"):
        raise VerificationError(
            f"the pending {stage} proposal has action {record.action!r}; only promotions and "
            "rollbacks are proposed",
            "propose again with 'modelreg promote'",
        )
    if record.expires_at and parse_time(record.expires_at) < now_utc():
        raise PolicyError(
            f"the pending {stage} proposal would expire at {record.expires_at}, which has passed",
            "propose again with 'modelreg promote --expires …'",
        )
    kept = tuple(s for s in pending.envelope.signatures if s.keyid in set(checked.verified))
    envelope = Envelope(pending.envelope.payload_type, pending.envelope.payload, kept)
    return Proposal(record, envelope, tuple(policy.name_of(k) for k in checked.verified))
