"""Stages: promote, approve, roll back, archive, history, verify.

A stage (``staging``, ``production``, ``archived``, or any name a team uses) is
a chain of signed promotion records (see :mod:`.promotion`) plus a movable tag
of the same name that plain clients can pull. Trust never comes from the tag:
every read verifies the chain against a :class:`~.policy.TrustPolicy` and
checks the tag agrees with it.

Verification fails closed, with a message that says what was wrong:
a tag moved without a record, a record signed by an untrusted key or by too
few, a tampered record or signature, a gap or a fork in the chain, a head
older than (or different from) the one this client accepted before, an
expired record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from .digest import sha256_digest
from .errors import (
    ConflictError,
    IntegrityError,
    NotFound,
    PolicyError,
    VerificationError,
)
from .oci import Descriptor, Manifest
from .policy import SignatureCheck, TrustPolicy, validate_stage
from .promotion import (
    PromotionRecord,
    StoredRecord,
    chain_sequences,
    parse_record_tag,
    pending_tag,
    read_record,
    record_tag,
    store_record,
)
from .signing import (
    IN_TOTO_PAYLOAD_TYPE,
    Envelope,
    SigningKey,
    add_signature,
    sign_envelope,
)
from .store.base import Repository, read_listed
from .timeutil import format_time, now_utc, parse_time
from .trust_state import Accepted, TrustState
from .versions import version_of

ARCHIVED = "archived"
PRODUCTION = "production"
_COMMIT_ATTEMPTS = 16
_PROBES = 16  # HEADs for newer records before asking the tag list


@dataclass(frozen=True)
class VerifiedStage:
    """A stage whose chain verified: the model it holds and the record that says so."""

    repository: str
    stage: str
    digest: str
    version: int | None
    sequence: int
    record_digest: str
    payload_digest: str
    signers: tuple[str, ...]
    issued_at: str
    expires_at: str | None = None
    replaces: str | None = None  # what the stage held before the head record

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"

    def to_dict(self) -> dict[str, object]:
        return {
            "repository": self.repository,
            "stage": self.stage,
            "digest": self.digest,
            "reference": self.reference,
            "version": self.version,
            "sequence": self.sequence,
            "record": self.record_digest,
            "signers": list(self.signers),
            "issuedAt": self.issued_at,
            "expiresAt": self.expires_at,
        }


def _stage_prefix(repository: Repository, stage: str) -> str:
    return TrustState.prefix(repository.store_id, repository.path_in_store, stage)


def _stage_key(repository: Repository, stage: str, policy: TrustPolicy) -> str:
    return TrustState.key(
        repository.store_id, repository.path_in_store, stage, policy.fingerprint(stage)
    )


# ----- reading and verifying a chain -------------------------------------------------------------


def _read(repository: Repository, stage: str, sequence: int) -> StoredRecord:
    try:
        # most sequences come from a tag listing, which may run ahead of the tag
        stored = read_listed(lambda: read_record(repository, record_tag(stage, sequence)))
    except IntegrityError as exc:
        raise VerificationError(
            f"{stage} record {sequence} of {repository.name} is tampered or malformed: "
            f"{exc.message}",
            "someone altered the record; find out who, then promote again",
        ) from None
    _check_binding(repository, stage, sequence, stored.record)
    return stored


def _check_binding(
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


def _check_link(stage: str, stored: StoredRecord, previous: StoredRecord | None) -> None:
    expected = previous.payload_digest if previous else None
    if stored.record.previous != expected:
        raise _broken_link(stage, stored.record.sequence)


def _broken_link(stage: str, sequence: int) -> VerificationError:
    return VerificationError(
        f"{stage} record {sequence} does not follow record {sequence - 1}: the chain is "
        "forked or was rewritten",
        "two different records claim this place in the history; do not trust the stage "
        "until it is investigated",
    )


def _check_signatures(
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


def _check_expiry(stage: str, record: PromotionRecord) -> None:
    if record.expires_at and parse_time(record.expires_at) < now_utc():
        raise VerificationError(
            f"the {stage} record {record.sequence} expired at {record.expires_at}",
            "promote the model again to renew the stage",
        )


def stage_sequences(repository: Repository, stage: str) -> list[int]:
    return chain_sequences(repository.list_tags(), stage)


class _Lookups:
    """Tag lookups of one verification, the first few sent at once.

    A warm check needs three independent answers (the accepted record, the next
    sequence, the stage tag); asking them in parallel costs one round trip
    instead of three. Each answer is used once; a second ask goes to the registry.
    """

    _pool: ThreadPoolExecutor | None = None
    _pool_pid = 0
    _pool_lock = threading.Lock()

    def __init__(self, repository: Repository, ahead: Iterable[str] = ()) -> None:
        self._repository = repository
        self._ahead: dict[str, Future[Descriptor | None]] = {}
        wanted = list(ahead)
        if len(wanted) > 1:
            pool = self._shared_pool()
            self._ahead = {tag: pool.submit(repository.resolve, tag) for tag in wanted}

    @classmethod
    def _shared_pool(cls) -> ThreadPoolExecutor:
        with cls._pool_lock:
            # a forked child (a preforking server) has the object but none of its threads
            if cls._pool is None or cls._pool_pid != os.getpid():
                # long-lived: each thread keeps its keep-alive connection between resolves
                cls._pool = ThreadPoolExecutor(4, thread_name_prefix="modelreg-lookup")
                cls._pool_pid = os.getpid()
            return cls._pool

    def resolve(self, tag: str) -> Descriptor | None:
        future = self._ahead.pop(tag, None)
        return future.result() if future is not None else self._repository.resolve(tag)

    def was_ahead(self, tag: str) -> bool:
        """Whether ``tag``'s answer is still one sent before the chain was read."""
        return tag in self._ahead


def _head_sequence_from(
    repository: Repository, stage: str, start: int, lookups: _Lookups | None = None
) -> int:
    """The last sequence, probing forward from one known to exist (no tag listing).

    After a few probes the tag list says where the chain ends, so a registry that
    answers for every sequence cannot keep a client probing forever.
    """
    resolve = lookups.resolve if lookups is not None else repository.resolve
    sequence = start
    for _ in range(_PROBES):
        if resolve(record_tag(stage, sequence + 1)) is None:
            return sequence
        sequence += 1
    listed = stage_sequences(repository, stage)
    if not listed or listed[-1] < sequence:
        raise VerificationError(
            f"{repository.name} answers for {stage} record {sequence}, but its tag list "
            f"ends at {listed[-1] if listed else 'no record'}",
            "the registry is inconsistent or hostile; do not trust the stage",
        )
    return listed[-1]


class _ChainMoved(Exception):
    """The stage tag named a newer model because a promotion landed while we read."""


_REREADS = 3


def verify_stage(
    repository: Repository,
    stage: str,
    policy: TrustPolicy,
    *,
    state: TrustState | None = None,
    full: bool = False,
    check_tag: bool = True,
    tag_may_lag: bool = False,
) -> VerifiedStage:
    """Verify ``stage`` and return what it holds; raise VerificationError otherwise.

    The head must carry the policy's threshold of trusted signatures; every
    record before it is authenticated by the hash chain it links back to (a
    trusted head vouches for the chain up to it, so a key rotation needs no
    re-signing of old records).

    ``full`` walks and checks every record; otherwise the head is checked in
    full and linked to what this client accepted before (or to its predecessor).
    ``check_tag`` also requires the stage tag to name the chain head's model;
    with ``tag_may_lag`` a tag still naming what the head replaced is accepted
    too: a promotion writes its record before it moves the tag, so a reader in
    between (or after a promoter died there) sees exactly that. A tag *ahead* of
    the chain that was read, with a newer record now present, is a promotion that
    landed during the read: the chain is read again before anything is alarmed.
    """
    validate_stage(stage)
    for attempt in range(_REREADS):
        try:
            return _verify_once(
                repository,
                stage,
                policy,
                state=state,
                full=full,
                check_tag=check_tag,
                tag_may_lag=tag_may_lag,
                may_reread=attempt < _REREADS - 1,
            )
        except _ChainMoved:
            continue
    raise AssertionError("unreachable: the last attempt never rereads")


def _verify_once(
    repository: Repository,
    stage: str,
    policy: TrustPolicy,
    *,
    state: TrustState | None,
    full: bool,
    check_tag: bool,
    tag_may_lag: bool,
    may_reread: bool,
) -> VerifiedStage:
    key = _stage_key(repository, stage, policy)
    accepted = state.get(key) if state else None
    # the highest head accepted for this stage under any policy: sequences never go back,
    # whatever trust was used (a rotated policy included)
    floor = (
        max(
            (a.sequence for a in state.remembered(_stage_prefix(repository, stage))),
            default=0,
        )
        if state
        else 0
    )
    chain: dict[int, StoredRecord] = {}
    lookups = _Lookups(repository)
    if accepted is not None and not full:
        ahead = [record_tag(stage, accepted.sequence), record_tag(stage, accepted.sequence + 1)]
        lookups = _Lookups(repository, [*ahead, stage] if check_tag else ahead)
        head_sequence = _warm_head(repository, stage, accepted, lookups)
        start = accepted.sequence
    else:
        sequences = stage_sequences(repository, stage)
        if not sequences:
            raise NotFound(
                f"{repository.name} has no {stage} promotion records",
                f"promote a version first: modelreg promote {repository.name}:vN --to {stage}",
            )
        head_sequence = sequences[-1]
        if sequences != list(range(1, head_sequence + 1)):
            missing = sorted(set(range(1, head_sequence + 1)) - set(sequences))
            raise VerificationError(
                f"{stage} records {missing[:5]} of {repository.name} are missing: the chain has "
                "a gap",
                "records were deleted from the registry; restore them or investigate",
            )
        start = 1 if full else max(1, head_sequence - 1)
        if accepted is not None:
            start = min(start, accepted.sequence)
    floor = max(floor, accepted.sequence if accepted is not None else 0)
    if head_sequence < floor:
        raise VerificationError(
            f"{repository.name} {stage} is at sequence {head_sequence}, but this client already "
            f"accepted sequence {floor}: an older record was replayed",
            "someone removed newer records or points you at an old copy; do not trust it",
        )
    # the payload digest each record must name as its predecessor, when known
    link: str | bool | None = False  # False: unknown (first record of a partial walk)
    if start == 1:
        link = None
    signers: tuple[str, ...] = ()
    for sequence in range(start, head_sequence + 1):
        warm_accepted = accepted is not None and sequence == accepted.sequence
        if warm_accepted and not full:
            assert accepted is not None
            link = accepted.payload  # _warm_head proved this record is unchanged
            continue
        stored = _read(repository, stage, sequence)
        if warm_accepted and accepted is not None and stored.payload_digest != accepted.payload:
            raise _fork(repository, stage, sequence)
        if link is not False and stored.record.previous != link:
            raise _broken_link(stage, sequence)
        signers = _check_signatures(policy, stage, stored, head=sequence == head_sequence)
        chain[sequence] = stored
        link = stored.payload_digest
    if head_sequence in chain:
        head = chain[head_sequence]
        record = head.record
        result = VerifiedStage(
            repository.name,
            stage,
            record.digest,
            record.version,
            record.sequence,
            head.manifest_digest,
            head.payload_digest,
            signers,
            record.issued_at,
            record.expires_at,
            record.replaces,
        )
    else:
        assert accepted is not None
        result = _from_accepted(repository, stage, accepted)
    if result.expires_at:
        _check_expiry(stage, _expiring(result))
    if check_tag:
        early = lookups.was_ahead(stage)
        tagged = lookups.resolve(stage)
        held = tagged.digest if tagged is not None else None
        if early and held != result.digest:
            # read together with the chain: a promotion may have moved it in between
            tagged = repository.resolve(stage)
            held = tagged.digest if tagged is not None else None
        if held != result.digest and not (tag_may_lag and held == result.replaces):
            if may_reread and repository.resolve(record_tag(stage, result.sequence + 1)):
                raise _ChainMoved
            raise VerificationError(
                f"the {stage} tag of {repository.name} points at "
                f"{held or 'nothing'}, but the signed chain says "
                f"{result.digest}",
                "the tag was moved without a signed promotion; only 'modelreg promote' moves "
                "stages",
            )
    if state is not None:
        state.accept(
            key,
            Accepted(
                sequence=result.sequence,
                payload=result.payload_digest,
                record=result.record_digest,
                target=result.digest,
                version=result.version,
                verified_at=time.time(),
                signers=list(result.signers),
                issued_at=result.issued_at,
                expires_at=result.expires_at,
                replaces=result.replaces,
            ),
        )
    return result


def _warm_head(repository: Repository, stage: str, accepted: Accepted, lookups: _Lookups) -> int:
    found = lookups.resolve(record_tag(stage, accepted.sequence))
    if found is None:
        raise VerificationError(
            f"{stage} record {accepted.sequence} of {repository.name}, which this client "
            "accepted, is gone",
            "records were deleted or you are reading another registry; do not trust it",
        )
    if found.digest != accepted.record:
        stored = _read(repository, stage, accepted.sequence)
        if stored.payload_digest != accepted.payload:
            raise _fork(repository, stage, accepted.sequence)
    return _head_sequence_from(repository, stage, accepted.sequence, lookups)


def _fork(repository: Repository, stage: str, sequence: int) -> VerificationError:
    return VerificationError(
        f"{stage} record {sequence} of {repository.name} differs from the one this client "
        "accepted: the chain is forked",
        "two valid records claim the same sequence; do not trust the stage until investigated",
    )


def _from_accepted(repository: Repository, stage: str, accepted: Accepted) -> VerifiedStage:
    return VerifiedStage(
        repository.name,
        stage,
        accepted.target,
        accepted.version,
        accepted.sequence,
        accepted.record,
        accepted.payload,
        tuple(accepted.signers),
        accepted.issued_at,
        accepted.expires_at,
        accepted.replaces,
    )


def _expiring(result: VerifiedStage) -> PromotionRecord:
    return PromotionRecord(
        repository=result.repository,
        stage=result.stage,
        digest=result.digest,
        sequence=result.sequence,
        previous=None,
        issued_at=result.issued_at,
        expires_at=result.expires_at,
    )


def _current_head(
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
    head = _read(repository, stage, sequences[-1])
    if sequences[-1] > 1:
        _check_link(stage, head, _read(repository, stage, sequences[-1] - 1))
    try:
        _check_signatures(policy, stage, head, head=True)
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
        remembered = state.remembered(_stage_prefix(repository, stage))
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
        stored = _read(repository, stage, sequence)
        _check_link(stage, stored, chain[-1] if chain else None)
        _check_signatures(policy, stage, stored, head=sequence == sequences[-1])
        chain.append(stored)
    return chain


# ----- moving a stage -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a promote/approve/rollback did."""

    status: str  # "promoted", "pending", "unchanged"
    stage: str
    digest: str
    version: int | None
    sequence: int
    signers: tuple[str, ...] = ()
    needed: int = 1
    archived: Outcome | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    proposal: dict[str, object] | None = None  # what an approval signed, field by field

    def to_dict(self) -> dict[str, object]:
        return {
            "status": self.status,
            "stage": self.stage,
            "digest": self.digest,
            "version": self.version,
            "sequence": self.sequence,
            "signers": list(self.signers),
            "needed": self.needed,
            "archived": self.archived.to_dict() if self.archived else None,
            "notes": list(self.notes),
            "proposal": self.proposal,
        }


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
        head, tags = _current_head(repository, stage, policy, state)
        if (
            head is not None
            and head.record.digest == model.digest
            and action == "promote"
            and policy.check_signatures(stage, head.envelope).ok  # else: sign it again
        ):
            return Outcome("unchanged", stage, model.digest, version, head.record.sequence)
        if action == "promote":
            _check_gates(repository, stage, model_bytes, model.digest, policy, head, tags)
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
    from .proposals import verified_proposal

    validate_stage(stage)
    policy.require_signer(stage, key.key_id)
    model, _ = repository.fetch_manifest(reference)
    head, _ = _current_head(repository, stage, policy, state)
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
    _check_binding(repository, stage, sequence, pending.record)
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
    head, _ = _current_head(repository, stage, policy, state)
    if head is None or head.record.sequence == 1:
        raise PolicyError(
            f"{stage} of {repository.name} has no earlier holder to roll back to",
            "promote the version you want instead",
        )
    # the target comes from the record the head links to, not from any field it states
    before = _read(repository, stage, head.record.sequence - 1)
    _check_link(stage, head, before)
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
    archived = None
    notes: list[str] = []
    if (
        record.stage == PRODUCTION
        and record.replaces
        and record.replaces != record.digest
        and record.action in ("promote", "rollback")
    ):
        archived, note = _archive(repository, record.replaces, key, policy, state)
        if note:
            notes.append(note)
    return Outcome(
        "promoted",
        record.stage,
        record.digest,
        record.version,
        record.sequence,
        check.valid_signers,
        check.threshold,
        archived,
        tuple(notes),
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
    with contextlib.suppress(VerificationError):  # a newer head is already remembered
        state.accept(
            _stage_key(repository, record.stage, policy),
            Accepted(
                sequence=record.sequence,
                payload=sha256_digest(envelope.payload),
                record=record_digest,
                target=record.digest,
                version=record.version,
                verified_at=time.time(),
                signers=list(check.valid_signers),
                issued_at=record.issued_at,
                expires_at=record.expires_at,
                replaces=record.replaces,
            ),
        )


def _archive(
    repository: Repository,
    digest: str,
    key: SigningKey,
    policy: TrustPolicy,
    state: TrustState | None = None,
) -> tuple[Outcome | None, str | None]:
    """Record the former production model in ``archived``, signed by the same key."""
    try:
        outcome = promote(repository, digest, ARCHIVED, key, policy, action="archive", state=state)
        return outcome, None
    except PolicyError as exc:
        return None, f"not archived: {exc.message}"


def _move_tag(repository: Repository, stage: str, policy: TrustPolicy) -> None:
    """Point the stage tag at the chain head's model; converge when promotions race."""
    for _ in range(8):
        sequences = stage_sequences(repository, stage)
        head = _read(repository, stage, sequences[-1])
        descriptor, data = repository.fetch_manifest(head.record.digest)
        repository.push_manifest(data, descriptor.media_type, [stage])
        if stage_sequences(repository, stage)[-1] == sequences[-1]:
            return


def _check_gates(
    repository: Repository,
    stage: str,
    model_bytes: bytes,
    digest: str,
    policy: TrustPolicy,
    head: StoredRecord | None,
    tags: list[str],
) -> None:
    rule = policy.rule(stage)
    if rule.requires:
        try:
            required_chain = verified_chain(repository, rule.requires, policy)
        except VerificationError as exc:
            raise PolicyError(
                f"refused by rule 'requires = \"{rule.requires}\"': the {rule.requires} chain "
                f"does not verify under this policy: {exc.message}",
                f"investigate the {rule.requires} records (modelreg history), then promote to "
                f"{rule.requires} again",
            ) from None
        held = any(stored.record.digest == digest for stored in required_chain)
        if not held:
            raise PolicyError(
                f"refused by rule 'requires = \"{rule.requires}\"': {digest} was never in "
                f"{rule.requires}",
                f"promote it to {rule.requires} first",
            )
    if not rule.gates:
        return
    facts = _facts(model_bytes)
    holders: dict[str, dict[str, object] | None] = {}
    for gate in rule.gates:
        holder_facts = None
        if gate.stage is not None:
            if gate.stage not in holders:
                holders[gate.stage] = _holder_facts(repository, gate.stage, policy, head, stage)
            holder_facts = holders[gate.stage]
        refusal = gate.check(facts, holder_facts)
        if refusal:
            raise PolicyError(f"refused by {refusal}", "improve the model or change the policy")


def _facts(manifest_bytes: bytes) -> dict[str, object]:
    from . import lineage as lineage_mod  # only promotions with gates need it

    manifest = Manifest.parse(manifest_bytes)
    return lineage_mod.lineage_as_dict(lineage_mod.from_annotations(manifest.annotations))


def _holder_facts(
    repository: Repository,
    gate_stage: str,
    policy: TrustPolicy,
    head: StoredRecord | None,
    stage: str,
) -> dict[str, object] | None:
    if gate_stage == stage:
        holder = head
    else:
        holder, _ = _current_head(repository, gate_stage, policy)
    if holder is None:
        return None
    _, data = repository.fetch_manifest(holder.record.digest)
    return _facts(data)


# ----- history ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryEntry:
    stored: StoredRecord
    signers: tuple[str, ...]
    problem: str | None  # None when the record verified
    from_version: int | None = None

    def to_dict(self) -> dict[str, object]:
        record = self.stored.record
        return {
            "stage": record.stage,
            "sequence": record.sequence,
            "action": record.action,
            "digest": record.digest,
            "version": record.version,
            "from": record.replaces,
            "fromVersion": self.from_version,
            "issuedAt": record.issued_at,
            "expiresAt": record.expires_at,
            "signers": list(self.signers),
            "record": self.stored.manifest_digest,
            "verified": self.problem is None,
            "problem": self.problem,
        }


def history(
    repository: Repository, stages: Iterable[str] | None = None, policy: TrustPolicy | None = None
) -> list[HistoryEntry]:
    """Every record of the given stages (default: all), each checked on its own."""
    tags = repository.list_tags()
    names = sorted(
        set(stages) if stages else {p[0] for t in tags if (p := parse_record_tag(t)) is not None}
    )
    entries: list[HistoryEntry] = []
    versions: dict[str, int | None] = {}

    def _version(digest: str | None) -> int | None:
        if digest is None:
            return None
        if digest not in versions:
            versions[digest] = version_of(repository, digest)
        return versions[digest]

    for stage in names:
        first = len(entries)
        previous: StoredRecord | None = None
        sequences = chain_sequences(tags, stage)
        for index, sequence in enumerate(sequences):
            try:
                stored = _read(repository, stage, sequence)
            except VerificationError as exc:
                previous = None
                entries.append(_broken(stage, sequence, exc.message))
                continue
            problem = None
            signers: tuple[str, ...] = tuple(k.keyid[:12] for k in stored.envelope.signatures)
            try:
                if sequence != index + 1:
                    raise VerificationError(f"records before {sequence} are missing")
                _check_link(stage, stored, previous)
                if policy is not None:
                    signers = _check_signatures(
                        policy, stage, stored, head=sequence == sequences[-1]
                    )
                else:
                    problem = "unverified: no trust policy given"
            except VerificationError as exc:
                problem = exc.message
            replaced = stored.record.replaces
            entries.append(HistoryEntry(stored, signers, problem, _version(replaced)))
            previous = stored
        if policy is not None:
            entries[first:] = _vouched(entries[first:])
    return entries


def _vouched(chain: list[HistoryEntry]) -> list[HistoryEntry]:
    """Mark records that no trusted signature and no verified later record vouches for.

    A record before the head needs no trusted signature of its own when the chain of
    links from a verified head reaches it (a key rotation leaves exactly such records).
    """
    marked: list[HistoryEntry] = []
    vouched = False  # whether a verified record after this one links down to it
    for entry in reversed(chain):
        if entry.problem is None and not entry.signers and not vouched:
            entry = dataclasses.replace(
                entry, problem="not signed by a trusted key, and no verified record after it"
            )
        marked.append(entry)
        vouched = entry.problem is None
    return marked[::-1]


def _broken(stage: str, sequence: int, problem: str) -> HistoryEntry:
    placeholder = PromotionRecord(
        repository="?",
        stage=stage,
        digest="sha256:" + "0" * 64,
        sequence=sequence,
        previous=None,
        issued_at="?",
    )
    envelope = Envelope(IN_TOTO_PAYLOAD_TYPE, b"", ())
    return HistoryEntry(StoredRecord(placeholder, envelope, "", ""), (), problem)
