"""Reading a stage's chain of promotion records and the checks every reader shares.

A record is bound to its place (stage, sequence, repository), links to the
payload of the record before it, and is signed; the head must carry the
policy's threshold of trusted signatures, the records before it are vouched for
by the links from that head.
"""

from __future__ import annotations

from ..errors import IntegrityError, VerificationError
from ..policy import SignatureCheck, TrustPolicy
from ..promotion import (
    PromotionRecord,
    StoredRecord,
    chain_sequences,
    read_record,
    record_tag,
)
from ..store.base import Repository, read_listed
from ..trust_state import TrustState


def stage_prefix(repository: Repository, stage: str) -> str:
    return TrustState.prefix(repository.store_id, repository.path_in_store, stage)


def stage_key(repository: Repository, stage: str, policy: TrustPolicy) -> str:
    return TrustState.key(
        repository.store_id, repository.path_in_store, stage, policy.fingerprint(stage)
    )


def read_sequence(repository: Repository, stage: str, sequence: int) -> StoredRecord:
    try:
        # most sequences come from a tag listing, which may run ahead of the tag
        stored = read_listed(lambda: read_record(repository, record_tag(stage, sequence)))
    except IntegrityError as exc:
        raise VerificationError(
            f"{stage} record {sequence} of {repository.name} is tampered or malformed: "
            f"{exc.message}",
            "someone altered the record; find out who, then promote again",
        ) from None
    check_binding(repository, stage, sequence, stored.record)
    return stored


def check_binding(
    repository: Repository, stage: str, sequence: int, record: PromotionRecord
) -> None:
    if record.stage != stage or record.sequence != sequence:
        raise VerificationError(
            f"record at {record_tag(stage, sequence)} says it is {record.stage} record "
            f"{record.sequence}",
            "a record was copied under another tag; the chain is not trustworthy",
        )
    if record.repository != repository.path_in_store:
        raise VerificationError(
            f"{stage} record {sequence} was signed for repository {record.repository!r}, "
            f"not {repository.path_in_store!r}",
            "records cannot be replayed across repositories",
        )


def check_link(stage: str, stored: StoredRecord, previous: StoredRecord | None) -> None:
    expected = previous.payload_digest if previous else None
    if stored.record.previous != expected:
        raise broken_link(stage, stored.record.sequence)


def broken_link(stage: str, sequence: int) -> VerificationError:
    return VerificationError(
        f"{stage} record {sequence} does not follow record {sequence - 1}: the chain is "
        "forked or was rewritten",
        "two different records claim this place in the history; do not trust the stage "
        "until it is investigated",
    )


def check_signatures(
    policy: TrustPolicy, stage: str, stored: StoredRecord, *, head: bool
) -> tuple[str, ...]:
    check = policy.check_signatures(stage, stored.envelope)
    where = f"{stage} record {stored.record.sequence}"
    if check.invalid:
        raise VerificationError(
            f"{where} has an invalid signature by {', '.join(check.invalid)}: tampered",
            "the record or its signature was altered after signing",
        )
    # a record before the head is vouched for by the hash chain from the trusted head
    needed = check.threshold if head else 0
    if len(check.valid_signers) < needed:
        raise VerificationError(
            f"{where} has too few signatures: {_too_few(policy, stage, check, needed)}",
            "a stage moved without enough trusted signatures is refused",
        )
    return check.valid_signers


def _too_few(policy: TrustPolicy, stage: str, check: SignatureCheck, needed: int) -> str:
    """``1 of 2 required: alice; missing: bob or carol`` (and who else signed, untrusted)."""
    signed = ", ".join(check.valid_signers) or "none"
    missing = [n for n in sorted(policy.allowed_names(stage)) if n not in check.valid_signers]
    text = f"{len(check.valid_signers)} of {needed} required: {signed}"
    text += f"; missing: {' or '.join(missing) or 'a trusted key'}"
    if check.untrusted:
        text += f" (also signed by {', '.join(check.untrusted)}, not trusted for {stage})"
    return text


def stage_sequences(repository: Repository, stage: str) -> list[int]:
    return chain_sequences(repository.list_tags(), stage)


def current_head(
    repository: Repository,
    stage: str,
    policy: TrustPolicy,
    state: TrustState | None = None,
) -> tuple[StoredRecord | None, list[str]]:
    """The head record a promoter may build on (or None) and the tags read to find it.

    A new record vouches for the whole chain before it, so its base must be
    authenticated: signed to the policy's threshold; or, during a key rotation,
    signed to that threshold by the policy's ``[retired]`` keys, or exactly the
    head this client accepted before (under any policy). Anything else, e.g. a
    record a keyless pusher slipped in just before the rotating promotion, is refused.
    """
    tags = repository.list_tags()
    sequences = chain_sequences(tags, stage)
    if not sequences:
        return None, tags
    head = read_sequence(repository, stage, sequences[-1])
    if sequences[-1] > 1:
        check_link(stage, head, read_sequence(repository, stage, sequences[-1] - 1))
    try:
        check_signatures(policy, stage, head, head=True)
    except VerificationError as exc:
        check = policy.check_signatures(stage, head.envelope)
        # a head a trusted key signed, below the threshold (written under a laxer policy),
        # can be built on: the next record, signed to the threshold, is the head that vouches
        # for it, and the stage verifies again (the recovery in docs/guarantees.md)
        under_signed = bool(check.valid_signers)
        if check.invalid or not (
            under_signed or _rotation_base(repository, stage, policy, head, state)
        ):
            raise VerificationError(
                f"cannot build on the current {stage} record: {exc.message}",
                "pass the trust policy that covers its signers (--policy or --trust); when "
                "rotating keys, list the old key under [retired] in the policy (or pass "
                "--retired OLD.pub)",
            ) from None
    return head, tags


def _rotation_base(
    repository: Repository,
    stage: str,
    policy: TrustPolicy,
    head: StoredRecord,
    state: TrustState | None,
) -> bool:
    """Whether a head the current keys did not sign is the one a rotation may build on."""
    if policy.retired:
        widened = policy.with_retired_signers(stage)
        if widened.check_signatures(stage, head.envelope).ok:
            return True
    if state is not None:
        remembered = state.remembered(stage_prefix(repository, stage))
        return any(a.payload == head.payload_digest for a in remembered)
    return False


def verified_chain(repository: Repository, stage: str, policy: TrustPolicy) -> list[StoredRecord]:
    """Every record of ``stage``, read once and authenticated from a trusted head back.

    Empty when the stage has no records; VerificationError on a gap, a broken
    link, or a head without the policy's threshold.
    """
    sequences = stage_sequences(repository, stage)
    if not sequences:
        return []
    if sequences != list(range(1, sequences[-1] + 1)):
        raise VerificationError(f"the {stage} chain of {repository.name} has a gap")
    chain: list[StoredRecord] = []
    for sequence in sequences:
        stored = read_sequence(repository, stage, sequence)
        check_link(stage, stored, chain[-1] if chain else None)
        check_signatures(policy, stage, stored, head=sequence == sequences[-1])
        chain.append(stored)
    return chain
