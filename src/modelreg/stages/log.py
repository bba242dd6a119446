"""A stage's history: every record, each checked on its own and reported, not refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..errors import VerificationError
from ..policy import TrustPolicy
from ..promotion import PromotionRecord, StoredRecord, chain_sequences, parse_record_tag
from ..signing import IN_TOTO_PAYLOAD_TYPE, Envelope
from ..store.base import Repository
from ..versions import version_of
from .chain import check_link, check_signatures, read_sequence


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
    versions: dict[str, int | None] = {}

    def _version(digest: str | None) -> int | None:
        if digest is None:
            return None
        if digest not in versions:
            versions[digest] = version_of(repository, digest)
        return versions[digest]

    entries: list[HistoryEntry] = []
    for stage in names:
        chain = _stage_history(repository, stage, chain_sequences(tags, stage), policy, _version)
        entries.extend(_vouched(chain) if policy is not None else chain)
    return entries


def _stage_history(
    repository: Repository,
    stage: str,
    sequences: list[int],
    policy: TrustPolicy | None,
    version: Callable[[str | None], int | None],
) -> list[HistoryEntry]:
    entries: list[HistoryEntry] = []
    previous: StoredRecord | None = None
    for index, sequence in enumerate(sequences):
        try:
            stored = read_sequence(repository, stage, sequence)
        except VerificationError as exc:
            previous = None
            entries.append(_broken(stage, sequence, exc.message))
            continue
        signers, problem = _checked(
            stage,
            stored,
            previous,
            policy,
            in_place=sequence == index + 1,
            head=sequence == sequences[-1],
        )
        entries.append(HistoryEntry(stored, signers, problem, version(stored.record.replaces)))
        previous = stored
    return entries


def _checked(
    stage: str,
    stored: StoredRecord,
    previous: StoredRecord | None,
    policy: TrustPolicy | None,
    *,
    in_place: bool,
    head: bool,
) -> tuple[tuple[str, ...], str | None]:
    """The record's signers (trusted ones under a policy) and what is wrong with it, if anything."""
    signers: tuple[str, ...] = tuple(k.keyid[:12] for k in stored.envelope.signatures)
    try:
        if not in_place:
            raise VerificationError(f"records before {stored.record.sequence} are missing")
        check_link(stage, stored, previous)
        if policy is None:
            return signers, "unverified: no trust policy given"
        return check_signatures(policy, stage, stored, head=head), None
    except VerificationError as exc:
        return signers, exc.message


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
