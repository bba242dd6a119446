"""Trust policy: which keys may move which stage, how many must sign, and promotion gates.

A policy file (TOML)::

    [keys]                      # name = public key file, relative to this file
    alice = "alice.pub"
    bob = "bob.pub"

    [stages.staging]
    signers = ["alice", "bob"]  # default: every key in [keys]
    threshold = 1               # default: 1

    [stages.production]
    signers = ["alice", "bob"]
    threshold = 2               # k-of-n: `modelreg approve` adds signatures
    requires = "staging"        # must have been promoted to staging before
    gates = [
        "metrics.auc >= 0.9",
        "metrics.auc >= @production",        # not worse than the current holder
        "metrics.latency_ms <= @production",
    ]

    [retired]                   # former keys: never trusted on a read; only used to check
    old = "old.pub"             # the head a key-rotating promotion builds on

Stage names cannot be the shape of another tag (``v<N>``, ``latest``,
``sha256-…``, ``promotion…``), and one public key cannot be listed under two
names (a threshold counts distinct keys).

Without a file, ``--trust a.pub --trust b.pub`` makes a policy in which any of
those keys may move any stage alone. Signatures gate trust at every read;
``requires`` and ``gates`` are checked when a promotion is made.
"""

from __future__ import annotations

import hashlib
import operator
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidInput, PolicyError, VerificationError
from .signing import Envelope, PublicKey, load_public_key, verify_envelope

# 30 characters at most: a record tag and its claim tag must fit in 128 characters
_STAGE = re.compile(r"[a-z][a-z0-9_-]{0,29}")
_GATE = re.compile(r"\s*([A-Za-z_][\w.-]*)\s*(>=|<=|==|!=|>|<|=)\s*(\S.*?)\s*$")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
}


# shapes of tags modelreg gives another meaning: a stage named like one would move it
_RESERVED_STAGE = re.compile(r"v[0-9]+|latest|sha256-.*|sha256|promotion.*")


def validate_stage(name: str) -> str:
    if not _STAGE.fullmatch(name):
        raise InvalidInput(
            f"invalid stage name {name!r}",
            "a stage is a lowercase word: letters, digits, '-' and '_' (e.g. production)",
        )
    if _RESERVED_STAGE.fullmatch(name):
        raise InvalidInput(
            f"stage name {name!r} is the shape of a version, anchor, record or 'latest' tag, "
            "which a stage tag would overwrite",
            "name stages with a word that is not v<N>, latest, sha256-… or promotion…, "
            "e.g. production or canary",
        )
    return name


@dataclass(frozen=True)
class Gate:
    """``metrics.auc >= 0.9`` or ``metrics.auc >= @production`` (the current holder's value)."""

    path: str
    op: str
    value: float | None
    stage: str | None
    text: str

    def check(self, facts: Mapping[str, Any], holder_facts: Mapping[str, Any] | None) -> str | None:
        """None when the gate passes, else why it refused."""
        actual = _lookup(facts, self.path)
        if self.stage is not None:
            if holder_facts is None:
                return None  # nothing holds the stage yet: nothing to be worse than
            bound = _lookup(holder_facts, self.path)
            if bound is None:
                return None
        else:
            bound = self.value
        if actual is None:
            return f"gate '{self.text}': the model has no {self.path}"
        assert bound is not None
        if not _OPERATORS[self.op](actual, bound):
            return f"gate '{self.text}': {self.path} is {actual:g}, needs {self.op} {bound:g}"
        return None


def parse_gate(text: str) -> Gate:
    match = _GATE.fullmatch(text)
    if not match:
        raise InvalidInput(
            f"cannot parse gate {text!r}",
            "write gates like 'metrics.auc >= 0.9' or 'metrics.auc >= @production'",
        )
    path, op, right = match.groups()
    if right.startswith("@"):
        return Gate(path, op, None, validate_stage(right[1:]), text.strip())
    try:
        value = float(right)
    except ValueError:
        raise InvalidInput(
            f"gate {text!r}: {right!r} is not a number or @stage",
            "compare a metric with a number or with @<stage>",
        ) from None
    return Gate(path, op, value, None, text.strip())


def _lookup(facts: Mapping[str, Any], path: str) -> float | None:
    """A number at a dotted path; metric names may themselves hold dots (``metrics.val.loss``)."""
    head, _, rest = path.partition(".")
    node: Any = facts.get(head)
    if rest and isinstance(node, Mapping) and rest in node:
        node = node[rest]
    elif rest:
        for part in rest.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None
    return float(node)


@dataclass(frozen=True)
class StageRule:
    signers: tuple[str, ...] | None = None  # None: any trusted key
    threshold: int = 1
    requires: str | None = None
    gates: tuple[Gate, ...] = ()
    require_content_signature: bool = False  # reads need a content signature by a signer


@dataclass(frozen=True)
class SignatureCheck:
    """How an envelope's signatures measure up to a stage's rule."""

    valid_signers: tuple[str, ...]
    threshold: int
    untrusted: tuple[str, ...]
    invalid: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return len(self.valid_signers) >= self.threshold and not self.invalid


@dataclass(frozen=True)
class TrustPolicy:
    """Keys, per-stage rules, and ``retired`` keys.

    Retired keys never make a record trusted on a read. They are used only by a
    promoter to check the head it builds on during a key rotation (see
    :func:`modelreg.stages.promote` and docs/guarantees.md).
    """

    keys: Mapping[str, PublicKey]
    stages: Mapping[str, StageRule] = field(default_factory=dict)
    retired: Mapping[str, PublicKey] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _refuse_duplicate_keys(self.keys, self.retired)

    def stage_names(self) -> set[str]:
        """The stages this policy names: its rules and the stages they require or compare."""
        names = set(self.stages)
        for rule in self.stages.values():
            if rule.requires:
                names.add(rule.requires)
            names.update(gate.stage for gate in rule.gates if gate.stage)
        return names

    def with_retired_signers(self, stage: str) -> TrustPolicy:
        """This policy with the retired keys also allowed to sign ``stage`` (same threshold).

        Only for checking what a rotating promoter builds on, never for a read.
        """
        if not self.retired:
            return self
        rule = self.rule(stage)
        names = tuple(self.allowed_names(stage)) + tuple(self.retired)
        keys = {**self.keys, **self.retired}
        widened = StageRule(names, rule.threshold, rule.requires, rule.gates)
        return TrustPolicy(keys, {**self.stages, stage: widened})

    def rule(self, stage: str) -> StageRule:
        return self.stages.get(stage, StageRule())

    def name_of(self, key_id: str) -> str:
        for name, key in self.keys.items():
            if key.key_id == key_id:
                return name
        for name, key in self.retired.items():
            if key.key_id == key_id:
                return f"{name} (retired)"
        return key_id[:12]

    def allowed_keys(self, stage: str) -> dict[str, PublicKey]:
        """Key id → key for the keys that may sign ``stage``."""
        signers = self.rule(stage).signers
        names = self.keys if signers is None else signers
        return {self.keys[n].key_id: self.keys[n] for n in names if n in self.keys}

    def check_signatures(self, stage: str, envelope: Envelope) -> SignatureCheck:
        verified = verify_envelope(envelope, self.allowed_keys(stage))
        return SignatureCheck(
            valid_signers=tuple(self.name_of(k) for k in verified.verified),
            threshold=self.rule(stage).threshold,
            untrusted=tuple(self.name_of(k) for k in verified.untrusted),
            invalid=tuple(self.name_of(k) for k in verified.invalid),
        )

    def require_signer(self, stage: str, key_id: str) -> None:
        if key_id not in self.allowed_keys(stage):
            raise PolicyError(
                f"key {self.name_of(key_id)} may not sign stage {stage!r} under this policy",
                f"sign with one of: {', '.join(sorted(self.allowed_names(stage))) or 'none'}",
            )

    def fingerprint(self, stage: str) -> str:
        """Identifies what this policy trusts for ``stage`` (keys and threshold).

        Remembered heads are kept per fingerprint: an answer accepted under one
        policy is never reused under another without verifying again.
        """
        keys = sorted(self.allowed_keys(stage))
        text = f"{self.rule(stage).threshold}:{','.join(keys)}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def allowed_names(self, stage: str) -> list[str]:
        signers = self.rule(stage).signers
        return list(self.keys if signers is None else signers)


def _refuse_duplicate_keys(*tables: Mapping[str, PublicKey]) -> None:
    """One key under two names would let one signature count twice toward a threshold."""
    seen: dict[str, str] = {}
    for table in tables:
        for name, key in table.items():
            if key.key_id in seen and seen[key.key_id] != name:
                raise InvalidInput(
                    f"the trust policy lists one public key under two names: "
                    f"{seen[key.key_id]!r} and {name!r} (key id {key.key_id[:12]})",
                    "list each key once; a threshold counts distinct keys",
                )
            seen[key.key_id] = name


def policy_from_keys(paths: Iterable[Path], retired: Iterable[Path] = ()) -> TrustPolicy:
    """Every given key trusted for every stage, one signature enough."""
    keys: dict[str, PublicKey] = {}
    for path in paths:
        key = load_public_key(Path(path))
        if key in keys.values():
            continue  # the same key given twice (or in two files) is one key
        keys[Path(path).stem if Path(path).stem not in keys else key.key_id[:12]] = key
    if not keys:
        raise InvalidInput("no trusted keys given", "pass --trust KEY.pub or --policy FILE")
    return TrustPolicy(keys, retired=_retired_keys(retired, keys))


def _retired_keys(paths: Iterable[Path], keys: Mapping[str, PublicKey]) -> dict[str, PublicKey]:
    retired: dict[str, PublicKey] = {}
    for path in paths:
        key = load_public_key(Path(path))
        name = Path(path).stem
        retired[name if name not in keys and name not in retired else key.key_id[:12]] = key
    return retired


def _key_table(path: Path, data: Mapping[str, Any], section: str) -> dict[str, PublicKey]:
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise InvalidInput(f'{path}: [{section}] must be a table of name = "file.pub"')
    keys: dict[str, PublicKey] = {}
    for name, value in table.items():
        if not isinstance(value, str):
            raise InvalidInput(f"{path}: key {name!r} must name a public key file")
        if value.lstrip().startswith("-----BEGIN"):
            keys[name] = PublicKey.from_pem(value.encode())
        else:
            keys[name] = load_public_key(Path(path).parent / value)
    return keys


def load_policy(
    path: Path, extra_keys: Sequence[Path] = (), retired_keys: Sequence[Path] = ()
) -> TrustPolicy:
    from ._toml import load_toml_file  # only a policy file needs the TOML parser

    data = load_toml_file(path, "policy file")
    keys = _key_table(path, data, "keys")
    retired = _key_table(path, data, "retired")
    both = sorted(set(keys) & set(retired))
    if both:
        raise InvalidInput(
            f"{path}: {both[0]!r} is both in [keys] and in [retired]",
            "a retired key is one no longer trusted: keep it in [retired] only",
        )
    for extra in extra_keys:
        keys[Path(extra).stem] = load_public_key(Path(extra))
    stages: dict[str, StageRule] = {}
    stages_table = data.get("stages", {})
    if not isinstance(stages_table, dict):
        raise InvalidInput(f"{path}: [stages] must be a table")
    for stage, table in stages_table.items():
        validate_stage(stage)
        stages[stage] = _stage_rule(path, stage, table, keys)
    unknown = set(data) - {"keys", "stages", "retired"}
    if unknown:
        raise InvalidInput(
            f"{path}: unknown section(s) {sorted(unknown)}",
            "use [keys], [retired] and [stages.*]",
        )
    try:
        return TrustPolicy(keys, stages, {**retired, **_retired_keys(retired_keys, keys)})
    except InvalidInput as exc:
        raise InvalidInput(f"{path}: {exc.message}", exc.hint) from None


_CONTENT = "require_content_signature"


def _stage_rule(path: Path, stage: str, table: Any, keys: Mapping[str, PublicKey]) -> StageRule:
    where = f"{path}: [stages.{stage}]"
    if not isinstance(table, dict):
        raise InvalidInput(f"{where} must be a table")
    unknown = set(table) - {"signers", "threshold", "requires", "gates", _CONTENT}
    if unknown:
        raise InvalidInput(
            f"{where}: unknown setting(s) {sorted(unknown)}",
            f"settings are signers, threshold, requires, gates, {_CONTENT}",
        )
    if not isinstance(table.get(_CONTENT, False), bool):
        raise InvalidInput(f"{where}: {_CONTENT} must be true or false")
    signers = table.get("signers")
    if signers is not None:
        if not isinstance(signers, list) or not all(isinstance(s, str) for s in signers):
            raise InvalidInput(f"{where}: signers must be a list of key names")
        missing = [s for s in signers if s not in keys]
        if missing:
            raise InvalidInput(f"{where}: signers {missing} are not in [keys]")
    threshold = table.get("threshold", 1)
    pool = len(signers) if signers is not None else len(keys)
    if not isinstance(threshold, int) or isinstance(threshold, bool) or not 1 <= threshold <= pool:
        raise InvalidInput(
            f"{where}: threshold must be a whole number from 1 to {pool} (the number of signers)"
        )
    requires = table.get("requires")
    if requires is not None:
        if not isinstance(requires, str):
            raise InvalidInput(f"{where}: requires must name a stage")
        validate_stage(requires)
    gates = table.get("gates", [])
    if not isinstance(gates, list) or not all(isinstance(g, str) for g in gates):
        raise InvalidInput(f"{where}: gates must be a list of strings like 'metrics.auc >= 0.9'")
    return StageRule(
        signers=tuple(signers) if signers is not None else None,
        threshold=threshold,
        requires=requires,
        gates=tuple(parse_gate(g) for g in gates),
        require_content_signature=table.get(_CONTENT, False),
    )


def trust_from_options(
    trust: Sequence[Path] = (),
    policy: Path | None = None,
    *,
    home: Path | None = None,
    environ: Mapping[str, str] | None = None,
    retired: Sequence[Path] = (),
) -> TrustPolicy | None:
    """The trust to verify stages with, from the first of these that is set:

    ``--policy`` (plus any ``--trust`` keys), ``--trust`` keys, ``$MODELREG_POLICY``,
    ``$MODELREG_TRUST`` (key files separated by ``:``), ``$MODELREG_HOME/policy.toml``.
    """
    env = os.environ if environ is None else environ
    if policy is not None:
        return load_policy(policy, trust, retired)
    if trust:
        return policy_from_keys(trust, retired)
    if env.get("MODELREG_POLICY"):
        return load_policy(Path(env["MODELREG_POLICY"]))
    if env.get("MODELREG_TRUST"):
        return policy_from_keys(Path(p) for p in env["MODELREG_TRUST"].split(os.pathsep) if p)
    if home is not None and (home / "policy.toml").is_file():
        return load_policy(home / "policy.toml")
    return None


def require_trust(policy: TrustPolicy | None, what: str) -> TrustPolicy:
    if policy is None:
        raise VerificationError(
            f"{what} is a stage: reading it verifies its signed promotion chain, which needs "
            "trusted keys",
            "pass --trust KEY.pub or --policy FILE (or set MODELREG_POLICY / MODELREG_TRUST)",
        )
    return policy
