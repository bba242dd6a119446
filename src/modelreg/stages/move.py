"""Moving a stage: promote, approve, roll back, and archiving the former production model."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from ..digest import sha256_digest
from ..errors import ConflictError, IntegrityError, NotFound, PolicyError, VerificationError
from ..oci import Descriptor
from ..policy import SignatureCheck, TrustPolicy, validate_stage
from ..promotion import PromotionRecord, pending_tag, read_record, record_tag, store_record
from ..signing import IN_TOTO_PAYLOAD_TYPE, Envelope, SigningKey, add_signature, sign_envelope
from ..store.base import Repository
from ..timeutil import format_time, now_utc
from ..trust_state import TrustState
from ..versions import version_of
from .chain import (
    check_binding,
    check_link,
    current_head,
    read_sequence,
    stage_key,
    stage_sequences,
)
from .gates import check_gates
from .outcome import Outcome
from .verify import VerifiedStage, accept_head

ARCHIVED = "archived"
PRODUCTION = "production"
_COMMIT_ATTEMPTS = 16


def promote(
    repository: Repository,
    reference: str,
    stage: str,
    key: SigningKey,
    policy: TrustPolicy | None = None,
    *,
    expires_in: timedelta | None = None,
    action: str = "promote",
    state: TrustState | None = None,
) -> Outcome:
    """Sign a move of ``stage`` to the model at ``reference``; gated by ``policy``.

    With a k-of-n policy the first signature makes a pending proposal that
    ``approve`` completes; the stage moves when the threshold is met.
    """
    validate_stage(stage)
    policy = policy or TrustPolicy({key.key_id[:12]: key.public_key})
    policy.require_signer(stage, key.key_id)
    model, model_bytes = repository.fetch_manifest(reference)
    version = version_of(repository, model.digest)
    for _ in range(_COMMIT_ATTEMPTS):
        head, tags = current_head(repository, stage, policy, state)
        if (
            head is not None
            and head.record.digest == model.digest
            and action == "promote"
            and policy.check_signatures(stage, head.envelope).ok  # else: sign it again
        ):
            return Outcome("unchanged", stage, model.digest, version, head.record.sequence)
        if action == "promote":
            check_gates(repository, stage, model_bytes, model.digest, policy, head, tags)
        issued = now_utc()
        record = PromotionRecord(
            repository=repository.path_in_store,
            stage=stage,
            digest=model.digest,
            sequence=head.record.sequence + 1 if head else 1,
            previous=head.payload_digest if head else None,
            issued_at=format_time(issued),
            action=action,
            version=version,
            replaces=head.record.digest if head else None,
            expires_at=format_time(issued + expires_in) if expires_in else None,
        )
        envelope = sign_envelope(IN_TOTO_PAYLOAD_TYPE, record.payload(), key)
        outcome = _commit_or_propose(repository, policy, envelope, record, model, key, state)
        if outcome is not None:
            return outcome
    raise ConflictError(
        f"{repository.name}: {stage} kept moving under concurrent promotions",
        "promote again",
    )


def approve(
    repository: Repository,
    reference: str,
    stage: str,
    key: SigningKey,
    policy: TrustPolicy,
    state: TrustState | None = None,
) -> Outcome:
    """Add a signature to the pending proposal for ``stage``; move it at the threshold.

    The proposal must be signed by a key allowed to sign the stage, and every
    field is checked against the verified head (see :mod:`.proposals`); the new
    signature covers the proposal's exact payload bytes.
    """
    from ..proposals import verified_proposal

    validate_stage(stage)
    policy.require_signer(stage, key.key_id)
    model, _ = repository.fetch_manifest(reference)
    head, _ = current_head(repository, stage, policy, state)
    sequence = head.record.sequence + 1 if head else 1
    try:
        pending = read_record(repository, pending_tag(stage, sequence))
    except NotFound:
        raise PolicyError(
            f"nothing awaits approval for {stage} of {repository.name}",
            f"start with: modelreg promote {repository.name}@{model.digest} --to {stage}",
        ) from None
    except IntegrityError as exc:
        raise VerificationError(
            f"the pending {stage} proposal is malformed: {exc.message}"
        ) from None
    check_binding(repository, stage, sequence, pending.record)
    proposal = verified_proposal(
        pending,
        policy,
        model_digest=model.digest,
        head_payload=head.payload_digest if head else None,
        head_digest=head.record.digest if head else None,
    )
    envelope = add_signature(proposal.envelope, key)
    outcome = _commit_or_propose(
        repository, policy, envelope, proposal.record, model, key, state, proposal.to_dict()
    )
    if outcome is None:
        raise ConflictError(
            f"{repository.name}: {stage} moved while approving", "propose and approve again"
        )
    return outcome


def rollback(
    repository: Repository,
    stage: str,
    key: SigningKey,
    policy: TrustPolicy | None = None,
    state: TrustState | None = None,
) -> Outcome:
    """Give ``stage`` back to the model that held it before the last move (a new record)."""
    validate_stage(stage)
    policy = policy or TrustPolicy({key.key_id[:12]: key.public_key})
    head, _ = current_head(repository, stage, policy, state)
    if head is None or head.record.sequence == 1:
        raise PolicyError(
            f"{stage} of {repository.name} has no earlier holder to roll back to",
            "promote the version you want instead",
        )
    # the target comes from the record the head links to, not from any field it states
    before = read_sequence(repository, stage, head.record.sequence - 1)
    check_link(stage, head, before)
    target = before.record.digest
    return promote(repository, target, stage, key, policy, action="rollback", state=state)


def _commit_or_propose(
    repository: Repository,
    policy: TrustPolicy,
    envelope: Envelope,
    record: PromotionRecord,
    model: Descriptor,
    key: SigningKey,
    state: TrustState | None = None,
    proposal: dict[str, object] | None = None,
) -> Outcome | None:
    """Commit when the signatures reach the threshold, else store the proposal.

    ``record.replaces`` was derived from (or, for an approval, checked against)
    the verified head this record links to. Returns None when a concurrent
    promotion took this sequence (the caller retries).
    """
    check = policy.check_signatures(record.stage, envelope)
    if not check.ok:
        store_record(
            repository, envelope, model, pending_tag(record.stage, record.sequence), claim=False
        )
        return Outcome(
            "pending",
            record.stage,
            record.digest,
            record.version,
            record.sequence,
            check.valid_signers,
            check.threshold,
            proposal=proposal,
        )
    written, record_digest = store_record(
        repository, envelope, model, record_tag(record.stage, record.sequence), claim=True
    )
    if not written:
        return None
    if state is not None:
        _remember_own(repository, policy, state, record, envelope, record_digest, check)
    _move_tag(repository, record.stage, policy)
    archived, notes = _archive_former_production(repository, record, key, policy, state)
    return Outcome(
        "promoted",
        record.stage,
        record.digest,
        record.version,
        record.sequence,
        check.valid_signers,
        check.threshold,
        archived,
        notes,
        proposal,
    )


def _remember_own(
    repository: Repository,
    policy: TrustPolicy,
    state: TrustState,
    record: PromotionRecord,
    envelope: Envelope,
    record_digest: str,
    check: SignatureCheck,
) -> None:
    """A promoter accepts the record it just committed: it signed it over a checked base."""
    committed = VerifiedStage(
        repository.name,
        record.stage,
        record.digest,
        record.version,
        record.sequence,
        record_digest,
        sha256_digest(envelope.payload),
        check.valid_signers,
        record.issued_at,
        record.expires_at,
        record.replaces,
    )
    with contextlib.suppress(VerificationError):  # a newer head is already remembered
        accept_head(state, stage_key(repository, record.stage, policy), committed)


def _archive_former_production(
    repository: Repository,
    record: PromotionRecord,
    key: SigningKey,
    policy: TrustPolicy,
    state: TrustState | None = None,
) -> tuple[Outcome | None, tuple[str, ...]]:
    """Record the model a production move replaced in ``archived``, signed by the same key."""
    if (
        record.stage != PRODUCTION
        or not record.replaces
        or record.replaces == record.digest
        or record.action not in ("promote", "rollback")
    ):
        return None, ()
    try:
        outcome = promote(
            repository, record.replaces, ARCHIVED, key, policy, action="archive", state=state
        )
        return outcome, ()
    except PolicyError as exc:
        return None, (f"not archived: {exc.message}",)


def _move_tag(repository: Repository, stage: str, policy: TrustPolicy) -> None:
    """Point the stage tag at the chain head's model; converge when promotions race."""
    for _ in range(8):
        sequences = stage_sequences(repository, stage)
        head = read_sequence(repository, stage, sequences[-1])
        descriptor, data = repository.fetch_manifest(head.record.digest)
        repository.push_manifest(data, descriptor.media_type, [stage])
        if stage_sequences(repository, stage)[-1] == sequences[-1]:
            return
