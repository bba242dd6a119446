"""Opening what a reference names for reading, shared by the facade, the CLI and engines.

A stage tag (``fraud:production``) is never read as a tag: its signed promotion
chain is verified first. Every other tag resolves as the versions module says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import InvalidInput
from .reference import Reference, parse_reference
from .store import Stores, opened
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
    plain = ref.tag is None or parse_version_tag(ref.tag) is not None or is_internal_tag(ref.tag)
    if ref.tag and not ref.digest and not plain:  # a version tag reads no trust (no crypto)
        configured = trust or default_trust(stores)
        state = trust_state(stores)
        if is_stage(repo, ref.tag, configured, state):
            policy = require_trust(configured, str(ref))
            verified = stages.verify_stage(repo, ref.tag, policy, state=state)
            if policy.rule(ref.tag).require_content_signature:
                from .content_signatures import verify_model

                verify_model(repo, verified.digest, policy.allowed_keys(ref.tag), str(ref))
            return repo, verified.digest
    return repo, resolve_reference_tag(repo, ref.identifier)


def is_stage(
    repository: Repository,
    tag: str,
    policy: TrustPolicy | None = None,
    state: TrustState | None = None,
) -> bool:
    """Whether reading ``repository:tag`` must verify a signed chain instead of the tag.

    A stage is a stage by the default stage names, the stages ``policy`` names,
    and the stages ``state`` remembers accepting. Record tags in the registry may
    add a stage, but their absence never removes one: a pusher who deletes a
    custom stage's records cannot turn it back into a plain tag for a client
    that knows the stage from its policy or its memory.
    """
    from .policy import validate_stage
    from .promotion import chain_sequences, record_tag

    if parse_version_tag(tag) is not None or is_internal_tag(tag):
        return False
    try:
        validate_stage(tag)
    except InvalidInput:
        return False  # a stage cannot have this name, so no chain can exist for it
    if tag in DEFAULT_STAGES or (policy is not None and tag in policy.stage_names()):
        return True
    if state is not None and state.remembers_stage(
        repository.store_id, repository.path_in_store, tag
    ):
        return True
    if repository.resolve(record_tag(tag, 1)) is not None:
        return True
    # record 1 may be gone while later records remain: those still make it a stage
    return bool(chain_sequences(repository.list_tags(), tag))


def names_stage(reference: str | Reference, *, stores: Stores | None = None) -> bool:
    """Whether ``reference`` is a stage (``fraud:production``) rather than a version.

    Raises: InvalidInput (a malformed reference).
    """
    ref = reference if isinstance(reference, Reference) else parse_reference(reference)
    if not ref.tag or ref.digest:
        return False
    with opened(stores) as stores:
        return is_stage(stores.repository(ref), ref.tag)


def default_trust(stores: Stores) -> TrustPolicy | None:
    from .policy import trust_from_options

    return trust_from_options(home=stores.home)


def trust_state(stores: Stores) -> TrustState:
    from .trust_state import TrustState

    return TrustState(stores.home / "trust-state.json")
