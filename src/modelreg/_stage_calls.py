"""The positional forms of promote, approve, rollback, history and verify.

Kept for existing callers of ``modelreg.api``; each is a thin call of its keyword
form in :mod:`modelreg.lifecycle` (what ``modelreg.promote`` and the CLI use) and
returns the stage module's own record instead of a lifecycle result.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from .reference import Reference
from .store import Stores

if TYPE_CHECKING:
    from . import stages
    from .policy import TrustPolicy
    from .signing import SigningKey


def promote(
    reference: str | Reference,
    stage: str,
    key: SigningKey,
    *,
    policy: TrustPolicy | None = None,
    expires_in: timedelta | None = None,
    stores: Stores | None = None,
    sign_content: bool = False,
) -> stages.Outcome:
    """Sign a move of ``stage`` to this model (gated by ``policy``, k-of-n aware).

    ``sign_content`` first attaches a content signature of the model's files by ``key``.
    The positional form kept for existing callers; ``modelreg.promote`` is
    :func:`modelreg.lifecycle.promote`, with the CLI's option names.

    Raises: PolicyError (refused by the policy's signers or gates), VerificationError
    (the chain so far does not verify), ConflictError (a concurrent move), NotFound,
    InvalidInput.
    """
    from . import lifecycle

    moved = lifecycle.promote(
        reference,
        to=stage,
        key=key,
        policy=policy,
        expires=expires_in,
        stores=stores,
        sign_content=sign_content,
    )
    return moved


def approve(
    reference: str | Reference,
    stage: str,
    key: SigningKey,
    *,
    policy: TrustPolicy | None = None,
    stores: Stores | None = None,
) -> stages.Outcome:
    """Add a signature to a pending k-of-n move of ``stage`` (the positional form).

    Raises: PolicyError, VerificationError, ConflictError, NotFound (no proposal), InvalidInput.
    """
    from . import lifecycle

    approved = lifecycle.approve(reference, to=stage, key=key, policy=policy, stores=stores)
    return approved


def rollback(
    repository: str | Reference,
    stage: str,
    key: SigningKey,
    *,
    policy: TrustPolicy | None = None,
    stores: Stores | None = None,
) -> stages.Outcome:
    """Sign a move of ``stage`` back to its previous head (the positional form).

    Raises: PolicyError, VerificationError, ConflictError, NotFound (no earlier head),
    InvalidInput.
    """
    from . import lifecycle

    rolled = lifecycle.rollback(repository, stage=stage, key=key, policy=policy, stores=stores)
    return rolled


def history(
    repository: str | Reference,
    *,
    stage: str | None = None,
    policy: TrustPolicy | None = None,
    stores: Stores | None = None,
) -> list[stages.HistoryEntry]:
    """Every promotion record of a repository (or of ``stage``), oldest first.

    Raises: NotFound, InvalidInput; a record that does not verify is reported, not raised.
    """
    from . import lifecycle

    return list(lifecycle.history(repository, stage=stage, policy=policy, stores=stores))


def verify(
    reference: str | Reference,
    *,
    policy: TrustPolicy | None = None,
    stores: Stores | None = None,
) -> stages.VerifiedStage:
    """Verify a stage's whole chain and its tag; remember the head so replays are refused.

    Raises: VerificationError (a bad signature, a replayed or moved tag), PolicyError,
    NotFound, InvalidInput (no trusted keys).
    """
    from . import lifecycle

    return lifecycle.verify(reference, policy=policy, stores=stores)
