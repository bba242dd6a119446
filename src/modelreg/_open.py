"""Opening what a reference names for reading, shared by the facade, the CLI and engines.

A stage tag (``fraud:production``) is never read as a tag: its signed promotion
chain is verified first. Every other tag resolves as the versions module says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .reference import Reference, parse_reference
from .store import Stores
from .store.base import Repository
from .versions import DEFAULT_STAGES, is_internal_tag, parse_version_tag, resolve_reference_tag

if TYPE_CHECKING:
    from .policy import TrustPolicy
    from .trust_state import TrustState


def open_reference(
    stores: Stores, reference: str | Reference, trust: TrustPolicy | None = None
) -> tuple[Repository, str]:
    """The repository and the tag-or-digest a read of ``reference`` should fetch.

    A stage tag (``fraud:production``) is never read as a tag: its signed chain is
    verified against ``trust`` (or the configured default) and its digest returned.
    """
    from . import stages
    from .policy import require_trust

    ref = reference if isinstance(reference, Reference) else parse_reference(reference)
    repo = stores.repository(ref)
    if ref.tag and not ref.digest and is_stage(repo, ref.tag):
        policy = require_trust(trust or default_trust(stores), str(ref))
        verified = stages.verify_stage(repo, ref.tag, policy, state=trust_state(stores))
        if policy.rule(ref.tag).require_content_signature:
            from .content_signatures import verify_model

            verify_model(repo, verified.digest, policy.allowed_keys(ref.tag), str(ref))
        return repo, verified.digest
    return repo, resolve_reference_tag(repo, ref.identifier)


def is_stage(repository: Repository, tag: str) -> bool:
    from .promotion import record_tag

    if parse_version_tag(tag) is not None or is_internal_tag(tag):
        return False
    if tag in DEFAULT_STAGES:
        return True
    return repository.resolve(record_tag(tag, 1)) is not None


def default_trust(stores: Stores) -> TrustPolicy | None:
    from .policy import trust_from_options

    return trust_from_options(home=stores.home)


def trust_state(stores: Stores) -> TrustState:
    from .trust_state import TrustState

    return TrustState(stores.home / "trust-state.json")
