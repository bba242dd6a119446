"""Verifying a stage: the model it holds, proven by its signed chain and agreed by its tag.

Verification fails closed, with a message that says what was wrong: a tag moved
without a record, a record signed by an untrusted key or by too few, a tampered
record or signature, a gap or a fork in the chain, a head older than (or
different from) the one this client accepted before, an expired record.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ..errors import NotFound, VerificationError
from ..oci import Descriptor
from ..policy import TrustPolicy, validate_stage
from ..promotion import PromotionRecord, StoredRecord, record_tag
from ..store.base import Repository
from ..timeutil import now_utc, parse_time
from ..trust_state import Accepted, TrustState
from .chain import (
    broken_link,
    check_signatures,
    read_sequence,
    stage_key,
    stage_prefix,
    stage_sequences,
)

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


def _check_expiry(stage: str, record: PromotionRecord) -> None:
    if record.expires_at and parse_time(record.expires_at) < now_utc():
        raise VerificationError(
            f"the {stage} record {record.sequence} expired at {record.expires_at}",
            "promote the model again to renew the stage",
        )


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
    key = stage_key(repository, stage, policy)
    accepted = state.get(key) if state else None
    floor = max(_highest_accepted(repository, stage, state), accepted.sequence if accepted else 0)
    warm = accepted if not full else None  # a warm check builds on the accepted head
    lookups = _Lookups(repository, _warm_lookups(stage, warm, check_tag) if warm else ())
    if warm is not None:
        head_sequence = _warm_head(repository, stage, warm, lookups)
    else:
        head_sequence = _listed_head(repository, stage)
    _check_not_replayed(repository, stage, head_sequence, floor)
    head = _walk_chain(repository, stage, policy, head_sequence, accepted, full=full)
    if head is not None:
        result = _from_head(repository, stage, *head)
    else:
        assert accepted is not None  # only a warm walk with no newer record reads nothing
        result = _from_accepted(repository, stage, accepted)
    if result.expires_at:
        _check_expiry(stage, _expiring(result))
    if check_tag:
        _check_tag(repository, stage, result, lookups, lag=tag_may_lag, may_reread=may_reread)
    if state is not None:
        accept_head(state, key, result)
    return result


# ----- the steps of one verification --------------------------------------------------------


def _highest_accepted(repository: Repository, stage: str, state: TrustState | None) -> int:
    """The highest head accepted for this stage under any policy.

    Sequences never go back, whatever trust was used (a rotated policy included).
    """
    if state is None:
        return 0
    return max((a.sequence for a in state.remembered(stage_prefix(repository, stage))), default=0)


def _warm_lookups(stage: str, accepted: Accepted, check_tag: bool) -> list[str]:
    """The tags a warm check asks at once: the accepted record, the next, the stage tag."""
    ahead = [record_tag(stage, accepted.sequence), record_tag(stage, accepted.sequence + 1)]
    return [*ahead, stage] if check_tag else ahead


def _listed_head(repository: Repository, stage: str) -> int:
    """The head sequence from the tag list, which must hold every record from 1 up to it."""
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
            f"{stage} records {missing[:5]} of {repository.name} are missing: the chain has a gap",
            "records were deleted from the registry; restore them or investigate",
        )
    return head_sequence


def _check_not_replayed(repository: Repository, stage: str, head_sequence: int, floor: int) -> None:
    if head_sequence < floor:
        raise VerificationError(
            f"{repository.name} {stage} is at sequence {head_sequence}, but this client already "
            f"accepted sequence {floor}: an older record was replayed",
            "someone removed newer records or points you at an old copy; do not trust it",
        )


_Head = tuple[StoredRecord, tuple[str, ...]]  # the head record and its trusted signers


def _walk_chain(
    repository: Repository,
    stage: str,
    policy: TrustPolicy,
    head_sequence: int,
    accepted: Accepted | None,
    *,
    full: bool,
) -> _Head | None:
    """Read and check the records this verification needs; None: the accepted head stands."""
    if accepted is not None and not full:
        # _warm_head proved the accepted record unchanged: the newer ones link to it
        return _walk(
            repository, stage, policy, accepted.sequence + 1, head_sequence, accepted.payload, None
        )
    if full or head_sequence == 1:
        return _walk(repository, stage, policy, 1, head_sequence, None, accepted)
    return _walk_head_and_predecessor(repository, stage, policy, head_sequence)


def _walk_head_and_predecessor(
    repository: Repository, stage: str, policy: TrustPolicy, head_sequence: int
) -> _Head | None:
    """The head and the record before it, whose own predecessor is not read."""
    before = read_sequence(repository, stage, head_sequence - 1)
    check_signatures(policy, stage, before, head=False)
    return _walk(
        repository, stage, policy, head_sequence, head_sequence, before.payload_digest, None
    )


def _walk(
    repository: Repository,
    stage: str,
    policy: TrustPolicy,
    first: int,
    head_sequence: int,
    previous: str | None,
    accepted: Accepted | None,
) -> _Head | None:
    """Read records ``first``..head, each linking to ``previous`` (None: the first record).

    Returns the head with its trusted signers, or None when there is nothing to read.
    """
    head: _Head | None = None
    for sequence in range(first, head_sequence + 1):
        stored = read_sequence(repository, stage, sequence)
        accepted_here = accepted is not None and sequence == accepted.sequence
        if accepted_here and accepted is not None and stored.payload_digest != accepted.payload:
            raise _fork(repository, stage, sequence)
        if stored.record.previous != previous:
            raise broken_link(stage, sequence)
        signers = check_signatures(policy, stage, stored, head=sequence == head_sequence)
        head = (stored, signers)
        previous = stored.payload_digest
    return head


def _check_tag(
    repository: Repository,
    stage: str,
    result: VerifiedStage,
    lookups: _Lookups,
    *,
    lag: bool,
    may_reread: bool,
) -> None:
    """The stage tag must name the chain head's model (or, lagging, what it replaced)."""
    early = lookups.was_ahead(stage)
    tagged = lookups.resolve(stage)
    held = tagged.digest if tagged is not None else None
    if early and held != result.digest:
        # read together with the chain: a promotion may have moved it in between
        tagged = repository.resolve(stage)
        held = tagged.digest if tagged is not None else None
    if held == result.digest or (lag and held == result.replaces):
        return
    if may_reread and repository.resolve(record_tag(stage, result.sequence + 1)):
        raise _ChainMoved
    raise VerificationError(
        f"the {stage} tag of {repository.name} points at "
        f"{held or 'nothing'}, but the signed chain says "
        f"{result.digest}",
        "the tag was moved without a signed promotion; only 'modelreg promote' moves stages",
    )


def accept_head(state: TrustState, key: str, result: VerifiedStage) -> None:
    """Remember ``result`` as the head this client accepted (see :class:`TrustState`)."""
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


def _warm_head(repository: Repository, stage: str, accepted: Accepted, lookups: _Lookups) -> int:
    found = lookups.resolve(record_tag(stage, accepted.sequence))
    if found is None:
        raise VerificationError(
            f"{stage} record {accepted.sequence} of {repository.name}, which this client "
            "accepted, is gone",
            "records were deleted or you are reading another registry; do not trust it",
        )
    if found.digest != accepted.record:
        stored = read_sequence(repository, stage, accepted.sequence)
        if stored.payload_digest != accepted.payload:
            raise _fork(repository, stage, accepted.sequence)
    return _head_sequence_from(repository, stage, accepted.sequence, lookups)


def _fork(repository: Repository, stage: str, sequence: int) -> VerificationError:
    return VerificationError(
        f"{stage} record {sequence} of {repository.name} differs from the one this client "
        "accepted: the chain is forked",
        "two valid records claim the same sequence; do not trust the stage until investigated",
    )


def _from_head(
    repository: Repository, stage: str, head: StoredRecord, signers: tuple[str, ...]
) -> VerifiedStage:
    record = head.record
    return VerifiedStage(
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
