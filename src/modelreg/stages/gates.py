"""Gates a promotion must pass: ``requires`` (held the stage before) and metric gates."""

from __future__ import annotations

from ..errors import PolicyError, VerificationError
from ..oci import Manifest
from ..policy import TrustPolicy
from ..promotion import StoredRecord
from ..store.base import Repository
from .chain import current_head, verified_chain


def check_gates(
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
    from .. import lineage as lineage_mod  # only promotions with gates need it

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
        holder, _ = current_head(repository, gate_stage, policy)
    if holder is None:
        return None
    _, data = repository.fetch_manifest(holder.record.digest)
    return _facts(data)
