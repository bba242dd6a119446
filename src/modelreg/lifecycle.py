"""The model lifecycle from Python: promote, approve, rollback, history, verify, gc, mirror.

Each function takes keyword arguments named like the CLI options
(``promote(ref, to="staging", key="alice.key")`` is ``modelreg promote REF --to
staging --key alice.key``), returns a result object, and raises the same
:class:`~modelreg.errors.ModelregError` (message and hint) the CLI prints.
A training pipeline gates and promotes without shelling out::

    import modelreg

    pushed = modelreg.push("models/fraud", "localhost:5000/ml/fraud", metrics=metrics)
    if metrics["auc"] > 0.9:
        moved = modelreg.promote(pushed.reference, to="staging", key="ci.key")
        print(moved.stage, "->", moved.version, moved.digest)

Trust comes from ``trust=[key.pub, ...]`` / ``policy=FILE`` (or a ready
:class:`~modelreg.policy.TrustPolicy`), else from ``$MODELREG_POLICY``,
``$MODELREG_TRUST`` or ``$MODELREG_HOME/policy.toml`` exactly as on the CLI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidInput
from .reference import Reference, as_reference
from .stages.outcome import Outcome
from .store import Stores
from .store import opened as _opened

if TYPE_CHECKING:  # the trust stack (cryptography) loads with the first call that signs
    from .mirror import MirrorResult
    from .policy import TrustPolicy
    from .retention import GcReport, RetentionRules
    from .signing import SigningKey
    from .stages import HistoryEntry, VerifiedStage
    from .transfer import Progress

PathLike = str | Path


@dataclass(frozen=True, kw_only=True)
class PromotionResult(Outcome):
    """What promote/approve/rollback did to a stage (an :class:`~.stages.Outcome`), and where."""

    repository: str

    @classmethod
    def from_outcome(cls, repository: str, outcome: Outcome) -> PromotionResult:
        values = {f.name: getattr(outcome, f.name) for f in dataclasses.fields(Outcome)}
        if outcome.archived is not None:
            values["archived"] = cls.from_outcome(repository, outcome.archived)
        return cls(repository=repository, **values)

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"

    @property
    def moved(self) -> bool:
        return self.status == "promoted"

    @property
    def pending_approvals(self) -> int:
        """Signatures still needed before the stage moves (0 unless ``status == "pending"``)."""
        return max(self.needed - len(self.signers), 0) if self.status == "pending" else 0

    def to_dict(self) -> dict[str, object]:
        return {
            "repository": self.repository,
            "reference": self.reference,
            **super().to_dict(),
            "pendingApprovals": self.pending_approvals,
        }


@dataclass(frozen=True)
class History:
    """Every stage move of a repository, oldest first per stage, each checked."""

    repository: str
    records: tuple[HistoryEntry, ...]

    def __iter__(self) -> Iterator[HistoryEntry]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def verified(self) -> bool:
        return all(entry.problem is None for entry in self.records)

    def to_dict(self) -> list[dict[str, object]]:
        return [entry.to_dict() for entry in self.records]


# ----- arguments ---------------------------------------------------------------------------


def _trust(
    trust: Sequence[PathLike] | PathLike | None,
    policy: TrustPolicy | PathLike | None,
    stores: Stores,
) -> TrustPolicy | None:
    """``policy=``/``trust=`` as on the CLI, else the configured default (env, home)."""
    from .policy import TrustPolicy, trust_from_options

    if isinstance(policy, TrustPolicy):
        return policy
    if isinstance(trust, str | Path):
        trust = [trust]
    paths = [Path(p) for p in trust or ()]
    return trust_from_options(paths, Path(policy) if policy else None, home=stores.home)


def _key(key: str | Path | SigningKey, passphrase: str | bytes | None) -> SigningKey:
    from .signing import SigningKey

    if isinstance(key, SigningKey):
        return key
    if not isinstance(key, str | Path):
        raise InvalidInput(
            f"key must be a key file or a SigningKey, not {type(key).__name__}",
            "pass key='alice.key' (from 'modelreg key generate') or a loaded SigningKey",
        )
    from .api import load_key

    secret = passphrase.encode() if isinstance(passphrase, str) else passphrase
    return load_key(key, secret)


def _own_key_trust(
    trust: TrustPolicy | None, key: str | Path | SigningKey, signing_key: SigningKey
) -> TrustPolicy | None:
    """No trust configured: the signer trusts its own key, named after its file (as the CLI)."""
    if trust is not None or not isinstance(key, str | Path):
        return trust
    from .policy import TrustPolicy

    return TrustPolicy({Path(key).stem: signing_key.public_key})


def _duration(value: str | timedelta | None, option: str) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise InvalidInput(f"{option} must be a duration like '90d'", "pass a str or a timedelta")
    from .timeutil import parse_duration

    return parse_duration(value)


# ----- stages ------------------------------------------------------------------------------


def promote(
    reference: str | Reference,
    *,
    to: str,
    key: str | Path | SigningKey,
    passphrase: str | bytes | None = None,
    trust: Sequence[PathLike] | PathLike | None = None,
    policy: TrustPolicy | PathLike | None = None,
    expires: str | timedelta | None = None,
    sign_content: bool = False,
    stores: Stores | None = None,
) -> PromotionResult:
    """Move stage ``to`` to the model at ``reference`` with a signed record (gated by the policy).

    Under a k-of-n policy the result is ``pending`` until :func:`approve` adds the
    missing signatures. ``passphrase`` defaults to ``$MODELREG_KEY_PASSPHRASE``.
    ``sign_content`` first attaches a content signature of the model's files by ``key``.
    """
    from . import stages
    from ._open import open_reference, trust_state

    signing_key = _key(key, passphrase)
    lifetime = _duration(expires, "expires")
    with _opened(stores) as opened:
        trusted = _own_key_trust(_trust(trust, policy, opened), key, signing_key)
        repo, identifier = open_reference(opened, reference, trusted)
        if sign_content:
            from .content_signatures import sign_model

            sign_model(repo, identifier, signing_key)
        outcome = stages.promote(
            repo,
            identifier,
            to,
            signing_key,
            trusted,
            expires_in=lifetime,
            state=trust_state(opened),
        )
        return PromotionResult.from_outcome(repo.name, outcome)


def approve(
    reference: str | Reference,
    *,
    to: str,
    key: str | Path | SigningKey,
    passphrase: str | bytes | None = None,
    trust: Sequence[PathLike] | PathLike | None = None,
    policy: TrustPolicy | PathLike | None = None,
    stores: Stores | None = None,
) -> PromotionResult:
    """Sign the pending promotion of ``reference`` to ``to``; the stage moves at the threshold."""
    from . import stages
    from ._open import open_reference, trust_state
    from .policy import require_trust

    signing_key = _key(key, passphrase)
    with _opened(stores) as opened:
        configured = _trust(trust, policy, opened)
        repo, identifier = open_reference(opened, reference, configured)
        trusted = require_trust(configured, f"{to} of {repo.name}")
        outcome = stages.approve(repo, identifier, to, signing_key, trusted, trust_state(opened))
        return PromotionResult.from_outcome(repo.name, outcome)


def rollback(
    repository: str | Reference,
    *,
    stage: str,
    key: str | Path | SigningKey,
    passphrase: str | bytes | None = None,
    trust: Sequence[PathLike] | PathLike | None = None,
    policy: TrustPolicy | PathLike | None = None,
    stores: Stores | None = None,
) -> PromotionResult:
    """Give ``stage`` back to the model that held it before, with a new, higher signed record."""
    from . import stages
    from ._open import trust_state

    signing_key = _key(key, passphrase)
    with _opened(stores) as opened:
        trusted = _own_key_trust(_trust(trust, policy, opened), key, signing_key)
        repo = opened.repository(as_reference(repository))
        outcome = stages.rollback(repo, stage, signing_key, trusted, trust_state(opened))
        return PromotionResult.from_outcome(repo.name, outcome)


def history(
    repository: str | Reference,
    *,
    stage: str | None = None,
    trust: Sequence[PathLike] | PathLike | None = None,
    policy: TrustPolicy | PathLike | None = None,
    stores: Stores | None = None,
) -> History:
    """Every stage move (or ``stage``'s), each record checked; a broken one says why."""
    from . import stages

    with _opened(stores) as opened:
        repo = opened.repository(as_reference(repository))
        trusted = _trust(trust, policy, opened)
        entries = stages.history(repo, [stage] if stage else None, trusted)
        return History(repo.name, tuple(entries))


def verify(
    reference: str | Reference,
    *,
    trust: Sequence[PathLike] | PathLike | None = None,
    policy: TrustPolicy | PathLike | None = None,
    stores: Stores | None = None,
) -> VerifiedStage:
    """Verify ``REPO:STAGE``'s whole chain and its tag; the result holds the verified digest.

    The verified head is remembered (``$MODELREG_HOME/trust-state.json``) so a
    replayed older chain is refused later.
    """
    from . import stages
    from ._open import trust_state
    from .policy import require_trust

    ref = as_reference(reference)
    if not ref.tag or ref.digest:
        raise InvalidInput(
            f"{ref} names no stage", "write REPO:STAGE, e.g. localhost:5000/ml/fraud:production"
        )
    with _opened(stores) as opened:
        repo = opened.repository(ref)
        trusted = require_trust(_trust(trust, policy, opened), str(ref))
        verified = stages.verify_stage(repo, ref.tag, trusted, state=trust_state(opened), full=True)
        if trusted.rule(ref.tag).require_content_signature:
            from .content_signatures import verify_model

            verify_model(repo, verified.digest, trusted.allowed_keys(ref.tag), str(ref))
        return verified


# ----- retention and mirroring ---------------------------------------------------------------


def gc(
    repository: str | Reference,
    *,
    keep_last: int | None = None,
    older_than: str | timedelta | None = None,
    keep_production_window: str | timedelta | None = None,
    policy_file: PathLike | None = None,
    dry_run: bool = False,
    trust: Sequence[PathLike] | PathLike | None = None,
    policy: TrustPolicy | PathLike | None = None,
    rules: RetentionRules | None = None,
    stores: Stores | None = None,
    now: datetime | None = None,
) -> GcReport:
    """Delete versions the rules let go, never one a stage holds or that held production lately.

    The rules come from ``policy_file``'s ``[gc]`` table overridden by the options
    given (or from a ready ``rules``). Stage chains are verified when trust is
    configured, read unverified otherwise.
    """
    from . import retention

    options = (keep_last, older_than, keep_production_window, policy_file)
    if rules is not None and any(option is not None for option in options):
        raise InvalidInput(
            "gc takes either rules or keep_last/older_than/keep_production_window/policy_file",
            "pass one of them",
        )
    if rules is None:
        rules = _rules(keep_last, older_than, keep_production_window, policy_file)
    ref = as_reference(repository)
    if ref.tag or ref.digest:
        raise InvalidInput(
            f"gc works on a whole repository, not {ref}",
            "name the repository alone; the rules decide which versions go",
        )
    from ._open import trust_state

    with _opened(stores) as opened:
        trusted = _trust(trust, policy, opened)
        return retention.gc(
            opened.repository(ref),
            rules,
            policy=trusted,
            state=trust_state(opened) if trusted is not None else None,
            dry_run=dry_run,
            now=now,
        )


def _rules(
    keep_last: int | None,
    older_than: str | timedelta | None,
    window: str | timedelta | None,
    policy_file: PathLike | None,
) -> RetentionRules:
    from .retention import load_rules

    rules = load_rules(
        Path(policy_file) if policy_file is not None else None,
        keep_last=keep_last,
        older_than=older_than if isinstance(older_than, str) else None,
        production_window=window if isinstance(window, str) else None,
    )
    changes: dict[str, Any] = {}
    if isinstance(older_than, timedelta):
        changes["older_than"] = older_than
    if isinstance(window, timedelta):
        changes["production_window"] = window
    return dataclasses.replace(rules, **changes) if changes else rules


def mirror(
    source: str | Reference,
    destination: str | Reference,
    *,
    stage: str | Sequence[str] | None = None,
    stores: Stores | None = None,
    progress: Progress | None = None,
    concurrency: int | None = None,
) -> MirrorResult:
    """Copy a whole repository (every version), or only ``stage``'s chains, to ``destination``.

    ``concurrency`` blobs move at once (default 4, or ``MODELREG_CONCURRENCY``).

    Versions keep their numbers, aliases, records and digests; promotion records
    and stage tags come along so the copy verifies with the same trust. Safe to
    run again after an interruption: it finishes.
    """
    from .mirror import mirror as mirror_repository
    from .parallel import concurrency_from

    stages = [stage] if isinstance(stage, str) else list(stage) if stage else None
    with _opened(stores) as opened:
        repositories = []
        for value in (source, destination):
            ref = as_reference(value)
            if ref.tag or ref.digest:
                raise InvalidInput(
                    f"{ref} names one model; mirroring copies a whole repository",
                    f"write the repository alone ({ref.registry + '/' if ref.registry else ''}"
                    f"{ref.repository}), or copy one model without --all-versions/--stage",
                )
            repositories.append(opened.repository(ref))
        return mirror_repository(
            repositories[0],
            repositories[1],
            stages=stages,
            progress=progress,
            concurrency=concurrency_from(concurrency),
        )
