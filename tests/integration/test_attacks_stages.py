"""Issue 14: every stage/trust hole reproduced against a real registry:2 and shown refused.

The attacker is a *pusher*: someone with push and delete rights on the registry and no
signing key, writing with raw HTTP (``Pusher``) or with modelreg's own record writer (which
is only registry writes). Each attack is run as a user runs the CLI and, where serving code
reads, as the ``Resolver`` runs. Test names say which item of issue 14 they cover.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from helpers.cli import Cli
from helpers.models import unique_repo, write_model
from helpers.regproxy import running_proxy

from modelreg import Resolver, api
from modelreg.errors import InvalidInput, NotFound, PolicyError, VerificationError
from modelreg.oci import IMAGE_MANIFEST
from modelreg.policy import TrustPolicy, load_policy, policy_from_keys
from modelreg.promotion import PromotionRecord, pending_tag, record_tag, store_record
from modelreg.reference import parse_reference
from modelreg.signing import IN_TOTO_PAYLOAD_TYPE, SigningKey, load_signing_key, sign_envelope
from modelreg.store import RegistryOptions, Stores
from modelreg.store.base import Repository
from modelreg.timeutil import format_time, now_utc, parse_time


def key(keys: Path, name: str) -> SigningKey:
    return load_signing_key(keys / f"{name}.key")


def trust(keys: Path, *names: str) -> TrustPolicy:
    return policy_from_keys(keys / f"{n}.pub" for n in names)


class Pusher:
    """Raw registry writes by someone with push/delete rights and no key."""

    def __init__(self, registry, target: str) -> None:  # type: ignore[no-untyped-def]
        self.url = f"{registry.url}/v2/{target.split('/', 1)[1]}"

    def digest_of(self, tag: str) -> str | None:
        head = requests.head(
            f"{self.url}/manifests/{tag}", headers={"Accept": IMAGE_MANIFEST}, timeout=10
        )
        return head.headers["Docker-Content-Digest"] if head.status_code == 200 else None

    def tag(self, tag: str, digest: str) -> None:
        manifest = requests.get(
            f"{self.url}/manifests/{digest}", headers={"Accept": IMAGE_MANIFEST}, timeout=10
        )
        put = requests.put(
            f"{self.url}/manifests/{tag}",
            data=manifest.content,
            headers={"Content-Type": IMAGE_MANIFEST},
            timeout=10,
        )
        assert put.status_code == 201, put.text

    def delete(self, tag: str) -> None:
        digest = self.digest_of(tag)
        assert digest is not None, tag
        gone = requests.delete(f"{self.url}/manifests/{digest}", timeout=10)
        assert gone.status_code == 202, gone.text


def push_versions(stores: Stores, target: str, tmp_path: Path, count: int) -> list[str]:
    return [
        api.push(
            write_model(tmp_path / f"m{index}", large=1024, seed=bytes([index + 1]) * 8),
            target,
            capture=False,
            metrics={"auc": 0.9 + index / 100},
            stores=stores,
        ).digest
        for index in range(count)
    ]


def repository(stores: Stores, target: str) -> Repository:
    return stores.repository(parse_reference(target))


def write_record(
    repo: Repository,
    tag: str,
    record: PromotionRecord,
    signer: SigningKey,
) -> None:
    """A record or proposal written straight to the registry (signer: whatever key the
    attacker holds, e.g. mallory's, or a removed one)."""
    model, _ = repo.fetch_manifest(record.digest)
    envelope = sign_envelope(IN_TOTO_PAYLOAD_TYPE, record.payload(), signer)
    store_record(repo, envelope, model, tag, claim=False)


def payload_digest(repo: Repository, stage: str, sequence: int) -> str:
    from modelreg.promotion import read_record

    return read_record(repo, record_tag(stage, sequence)).payload_digest


def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> Stores:
    """A client that never verified anything (new $MODELREG_HOME) for the CLI and the library."""
    home = tmp_path / name
    monkeypatch.setenv("MODELREG_HOME", str(home))
    return Stores(home=home, options=RegistryOptions(settle=0.05))


@pytest.fixture
def repo_on_registry(registry, stores: Stores, tmp_path: Path):  # type: ignore[no-untyped-def]
    target = f"{registry.host}/{unique_repo()}"
    return target, push_versions(stores, target, tmp_path, 3), Pusher(registry, target)


def write_policy(tmp_path: Path, keys: Path, body: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(
        f'[keys]\nalice = "{keys}/alice.pub"\nbob = "{keys}/bob.pub"\n'
        f'carol = "{keys}/carol.pub"\n{body}'
    )
    return path


# ----- item 1: a custom stage is a stage by policy and memory, not by one tag ------------------


def test_attack_custom_stage_tag_without_records_is_refused(
    stores: Stores, keys: Path, cli: Cli, repo_on_registry, tmp_path: Path
) -> None:
    target, (_v1, v2, _), pusher = repo_on_registry
    policy_file = write_policy(tmp_path, keys, "[stages.canary]\nsigners = ['alice']\n")
    alice_pub = str(keys / "alice.pub")
    promoted = cli(
        "promote", f"{target}:v1", "--to", "canary", "--key", str(keys / "alice.key"),
        "--policy", str(policy_file),
    )  # fmt: skip
    assert promoted.returncode == 0, promoted.stderr
    assert cli("verify", f"{target}:canary", "--trust", alice_pub).returncode == 0  # remembered
    # the pusher deletes record 1 (the tag is_stage used to HEAD) and moves the canary tag
    pusher.delete(record_tag("canary", 1))
    pusher.tag("canary", v2)
    assert pusher.digest_of(record_tag("canary", 1)) is None
    for command in ("pull", "lineage", "show"):
        extra = [str(tmp_path / f"out-{command}")] if command == "pull" else []
        by_policy = cli(command, f"{target}:canary", *extra, "--policy", str(policy_file))
        assert by_policy.returncode in (3, 7), (command, by_policy.stdout, by_policy.stderr)
        by_memory = cli(command, f"{target}:canary", *extra, "--trust", alice_pub)
        assert by_memory.returncode in (3, 7), (command, by_memory.stdout, by_memory.stderr)
        assert v2 not in by_policy.stdout and v2 not in by_memory.stdout
    assert not (tmp_path / "out-pull").exists()
    with pytest.raises((VerificationError, NotFound)):
        Resolver(trust=[alice_pub], stores=stores).resolve(target, "canary")


def test_attack_custom_stage_with_record_one_deleted_is_still_a_stage_for_a_fresh_client(
    stores: Stores, keys: Path, cli: Cli, repo_on_registry, tmp_path: Path, monkeypatch
) -> None:
    """No policy naming it, no memory: the remaining record tags still make it a stage."""
    target, (v1, v2, v3), pusher = repo_on_registry
    alice = key(keys, "alice")
    for version in (v1, v2):
        api.promote(
            f"{target}@{version}", "canary", alice, policy=trust(keys, "alice"), stores=stores
        )
    pusher.delete(record_tag("canary", 1))
    pusher.tag("canary", v3)
    fresh(monkeypatch, tmp_path, "fresh-home")
    pulled = cli(
        "pull", f"{target}:canary", str(tmp_path / "out"), "--trust", str(keys / "alice.pub")
    )
    assert pulled.returncode == 7 and "gap" in pulled.stderr, pulled.stderr
    assert not (tmp_path / "out").exists()


def test_a_plain_alias_is_still_read_as_a_tag(
    stores: Stores, keys: Path, cli: Cli, repo_on_registry, tmp_path: Path
) -> None:
    target, (v1, _, _), _ = repo_on_registry
    api.tag(f"{target}@{v1}", "bert-base", stores=stores)
    shown = cli(
        "pull", f"{target}:bert-base", str(tmp_path / "out"), "--trust", str(keys / "alice.pub")
    )
    assert shown.returncode == 0, shown.stderr


# ----- item 2: proposals are signed by their proposer; approve checks and shows them ------------


def two_of_three(tmp_path: Path, keys: Path) -> Path:
    return write_policy(
        tmp_path, keys, "[stages.production]\nsigners = ['alice', 'bob', 'carol']\nthreshold = 2\n"
    )


def test_attack_rewritten_proposal_is_refused_by_approve(
    stores: Stores, keys: Path, cli: Cli, repo_on_registry, tmp_path: Path
) -> None:
    target, (v1, v2, v3), _ = repo_on_registry
    policy_file = two_of_three(tmp_path, keys)
    policy = load_policy(policy_file)
    api.promote(f"{target}:v1", "production", key(keys, "alice"), policy=policy, stores=stores)
    api.approve(f"{target}:v1", "production", key(keys, "bob"), policy=policy, stores=stores)
    proposed = api.promote(
        f"{target}:v2", "production", key(keys, "alice"), policy=policy,
        expires_in=timedelta(days=1), stores=stores,
    )  # fmt: skip
    assert proposed.status == "pending"
    repo = repository(stores, target)
    # the pusher rewrites the proposal: no expiry, a fake version, replaces -> v3 (their pick);
    # they hold no key that may sign, so the best they can do is sign it with mallory's
    rewritten = PromotionRecord(
        repository=repo.path_in_store, stage="production", digest=v2, sequence=2,
        previous=payload_digest(repo, "production", 1), issued_at=format_time(now_utc()),
        version=99, replaces=v3,
    )  # fmt: skip
    write_record(repo, pending_tag("production", 2), rewritten, key(keys, "mallory"))
    approving = [
        "approve", f"{target}@{v2}", "--to", "production", "--key", str(keys / "bob.key"),
        "--policy", str(policy_file),
    ]  # fmt: skip
    refused = cli(*approving)
    assert refused.returncode == 7 and "no valid signature" in refused.stderr, refused.stderr
    with pytest.raises(VerificationError, match="no valid signature"):
        api.approve(
            f"{target}@{v2}", "production", key(keys, "carol"), policy=policy, stores=stores
        )
    assert api.verify(f"{target}:production", policy=policy, stores=stores).digest == v1
    # an insider with a proposing key (or a modified client) cannot point `replaces` elsewhere
    write_record(repo, pending_tag("production", 2), rewritten, key(keys, "alice"))
    with pytest.raises(VerificationError, match="says it replaces"):
        api.approve(f"{target}@{v2}", "production", key(keys, "bob"), policy=policy, stores=stores)
    # the honest proposal again: approve signs exactly it, and shows every field
    api.promote(
        f"{target}:v2", "production", key(keys, "alice"), policy=policy,
        expires_in=timedelta(days=1), stores=stores,
    )  # fmt: skip
    done = cli(*approving, "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)["proposal"]
    assert (shown["digest"], shown["replaces"], shown["version"]) == (v2, v1, 2)
    assert shown["expiresAt"] and shown["proposedBy"] == ["alice"]
    # _archive() took the replaced model from the verified chain: v1, never the pusher's v3
    assert api.verify(f"{target}:archived", policy=policy, stores=stores).digest == v1
    verified = api.verify(f"{target}:production", policy=policy, stores=stores)
    assert (verified.digest, verified.expires_at is not None) == (v2, True)
    # rollback derives its target from the chain too
    back = api.rollback(target, "production", key(keys, "alice"), policy=policy, stores=stores)
    assert back.status == "pending" and back.digest == v1


def test_attack_a_signed_record_retagged_as_a_proposal_is_not_listed_as_one(
    stores: Stores, keys: Path, registry, repo_on_registry, tmp_path: Path
) -> None:
    """The pusher re-tags alice's committed record as a proposal of another stage or a
    later sequence, or copies one from another repository: the signatures are alice's,
    the proposal is not, and it must not show as 'signed by alice' (UI, CLI, API)."""
    target, _, pusher = repo_on_registry
    policy = load_policy(two_of_three(tmp_path, keys))
    api.promote(f"{target}:v1", "production", key(keys, "alice"), policy=policy, stores=stores)
    api.approve(f"{target}:v1", "production", key(keys, "bob"), policy=policy, stores=stores)
    committed = pusher.digest_of(record_tag("production", 1))
    assert committed is not None
    pusher.tag(pending_tag("release", 7), committed)
    pusher.tag(pending_tag("production", 5), committed)
    other = f"{registry.host}/{unique_repo()}"
    push_versions(stores, other, tmp_path / "other", 1)
    copied = api.copy(f"{target}:{record_tag('production', 1)}", other, stores=stores)
    Pusher(registry, other).tag(pending_tag("production", 3), copied.digest)
    assert api.pending(target, policy=policy, stores=stores) == []
    assert api.pending(other, policy=policy, stores=stores) == []
    # an honest proposal is still listed, with its verified signer
    api.promote(f"{target}:v2", "production", key(keys, "alice"), policy=policy, stores=stores)
    listed = api.pending(target, policy=policy, stores=stores)
    assert [(p.stage, p.sequence, p.signers) for p in listed] == [("production", 2, ("alice",))]


def test_approve_shows_what_it_signs_on_stderr(
    stores: Stores, keys: Path, cli: Cli, repo_on_registry, tmp_path: Path
) -> None:
    target, (v1, _, _), _ = repo_on_registry
    policy_file = two_of_three(tmp_path, keys)
    api.promote(
        f"{target}:v1", "production", key(keys, "alice"), policy=load_policy(policy_file),
        stores=stores,
    )  # fmt: skip
    approved = cli(
        "approve", f"{target}:v1", "--to", "production", "--key", str(keys / "carol.key"),
        "--policy", str(policy_file),
    )  # fmt: skip
    assert approved.returncode == 0, approved.stderr
    for field in ("digest:", v1, "replaces:", "expiresAt:", "proposedBy:", "alice", "sequence:"):
        assert field in approved.stderr


# ----- item 3: the requires gate verifies the required chain ------------------------------------


def test_attack_forged_staging_record_does_not_pass_the_requires_gate(
    stores: Stores, keys: Path, cli: Cli, repo_on_registry, tmp_path: Path
) -> None:
    target, (_, v2, _), pusher = repo_on_registry
    policy_file = write_policy(tmp_path, keys, "[stages.production]\nrequires = 'staging'\n")
    repo = repository(stores, target)
    forged = PromotionRecord(
        repository=repo.path_in_store, stage="staging", digest=v2, sequence=1, previous=None,
        issued_at=format_time(now_utc()),
    )  # fmt: skip
    write_record(repo, record_tag("staging", 1), forged, key(keys, "mallory"))
    pusher.tag("staging", v2)
    promoting = [
        "promote", f"{target}:v2", "--to", "production", "--key", str(keys / "alice.key"),
        "--policy", str(policy_file),
    ]  # fmt: skip
    refused = cli(*promoting)
    assert refused.returncode == 8 and "does not verify" in refused.stderr, refused.stderr
    assert (
        pusher.digest_of("production") is None
        and pusher.digest_of(record_tag("production", 1)) is None
    )
    with pytest.raises(PolicyError, match="does not verify"):
        api.promote(
            f"{target}:v2", "production", key(keys, "bob"), policy=load_policy(policy_file),
            stores=stores,
        )  # fmt: skip


# ----- item 4: stage names cannot be the shape of other tags ------------------------------------


@pytest.mark.parametrize("name", ["v1", "v0", "latest", "sha256-abc", "promotion", "promotions"])
def test_stage_named_like_a_version_or_internal_tag_is_refused(
    stores: Stores, keys: Path, cli: Cli, repo_on_registry, tmp_path: Path, name: str
) -> None:
    target, (v1, _v2, _), pusher = repo_on_registry
    refused = cli(
        "promote", f"{target}:v2", "--to", name, "--key", str(keys / "alice.key"),
        "--trust", str(keys / "alice.pub"),
    )  # fmt: skip
    assert refused.returncode == 2 and "hint:" in refused.stderr, refused.stderr
    assert pusher.digest_of("v1") == v1  # the version tag did not move
    assert not [t for t in repository(stores, target).list_tags() if t.startswith("promotion.")]
    policy_file = write_policy(tmp_path, keys, f"[stages.{name}]\nsigners = ['alice']\n")
    assert cli("verify", f"{target}:production", "--policy", str(policy_file)).returncode == 2
    with pytest.raises(InvalidInput):
        Resolver(trust=[keys / "alice.pub"], stores=stores).resolve(target, name)
    with pytest.raises(InvalidInput):
        api.promote(
            f"{target}:v2", name, key(keys, "alice"), policy=trust(keys, "alice"), stores=stores
        )


# ----- item 6: key rotation ----------------------------------------------------------------------


def rotation_policy(tmp_path: Path, keys: Path, *, retired: bool) -> Path:
    """alice's key is rotated out, bob's in."""
    path = tmp_path / ("rotated-retired.toml" if retired else "rotated.toml")
    text = f'[keys]\nbob = "{keys}/bob.pub"\n'
    if retired:
        text += f'[retired]\nalice = "{keys}/alice.pub"\n'
    path.write_text(text)
    return path


def promote_with_alice(stores: Stores, keys: Path, target: str, *versions: str) -> None:
    for version in versions:
        api.promote(
            f"{target}@{version}", "production", key(keys, "alice"), policy=trust(keys, "alice"),
            stores=stores,
        )  # fmt: skip


def test_key_rotation_with_only_the_new_key_trusted(
    stores: Stores, keys: Path, cli: Cli, repo_on_registry, tmp_path: Path, monkeypatch
) -> None:
    target, (v1, v2, v3), _ = repo_on_registry
    promote_with_alice(stores, keys, target, v1, v2)
    rotated = rotation_policy(tmp_path, keys, retired=True)
    promoted = cli(
        "promote", f"{target}:v3", "--to", "production", "--key", str(keys / "bob.key"),
        "--policy", str(rotated),
    )  # fmt: skip
    assert promoted.returncode == 0, promoted.stderr
    bob_pub = str(keys / "bob.pub")
    # a fresh client trusting only the new key: verify, resolve and gc all pass
    fresh_stores = fresh(monkeypatch, tmp_path, "fresh-after-rotation")
    verified = cli("verify", f"{target}:production", "--trust", bob_pub, "--json")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["digest"] == v3
    resolved = cli("resolve", target, "--trust", bob_pub)
    assert resolved.returncode == 0 and resolved.stdout.strip() == v3, resolved.stderr
    swept = cli("gc", target, "--keep-last", "3", "--trust", bob_pub, "--dry-run")
    assert swept.returncode == 0, swept.stderr
    model = Resolver(trust=[bob_pub], stores=fresh_stores, cache_dir=tmp_path / "c").resolve(target)
    assert model.digest == v3
    history = api.history(
        target, stage="production", policy=trust(keys, "bob"), stores=fresh_stores
    )
    assert [e.problem for e in history] == [None, None, None]  # vouched for by the new head


def test_key_rotation_with_trust_flag_builds_on_the_head_this_client_accepted(
    stores: Stores, keys: Path, cli: Cli, repo_on_registry, tmp_path: Path
) -> None:
    target, (v1, v2, _v3), _ = repo_on_registry
    promote_with_alice(stores, keys, target, v1, v2)  # this client promoted (so accepted) v2
    promoted = cli(
        "promote", f"{target}:v3", "--to", "production", "--key", str(keys / "bob.key"),
        "--trust", str(keys / "bob.pub"),
    )  # fmt: skip
    assert promoted.returncode == 0, promoted.stderr
    assert cli("verify", f"{target}:production", "--trust", str(keys / "bob.pub")).returncode == 0


def test_key_rotation_on_a_fresh_machine_with_trust_and_retired_flags(
    stores: Stores, keys: Path, cli: Cli, repo_on_registry, tmp_path: Path, monkeypatch
) -> None:
    target, (v1, v2, v3), _ = repo_on_registry
    promote_with_alice(stores, keys, target, v1, v2)
    fresh(monkeypatch, tmp_path, "operator-laptop")
    rotating = [
        "promote", f"{target}:v3", "--to", "production", "--key", str(keys / "bob.key"),
        "--trust", str(keys / "bob.pub"),
    ]  # fmt: skip
    blind = cli(*rotating)  # nothing to check the old head with: refused, with the way out
    assert blind.returncode == 7 and "--retired" in blind.stderr, blind.stderr
    promoted = cli(*rotating, "--retired", str(keys / "alice.pub"))
    assert promoted.returncode == 0, promoted.stderr
    fresh(monkeypatch, tmp_path, "fresh-reader")
    shown = cli("verify", f"{target}:production", "--trust", str(keys / "bob.pub"), "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["digest"] == v3, shown.stderr
    assert cli("verify", f"{target}:archived", "--trust", str(keys / "bob.pub")).returncode == 0


def test_attack_record_signed_by_the_removed_key_alone_is_never_a_head_again(
    stores: Stores, keys: Path, cli: Cli, repo_on_registry, tmp_path: Path, monkeypatch
) -> None:
    target, (v1, v2, v3), pusher = repo_on_registry
    promote_with_alice(stores, keys, target, v1)
    rotated = rotation_policy(tmp_path, keys, retired=True)
    api.promote(
        f"{target}@{v2}", "production", key(keys, "bob"), policy=load_policy(rotated), stores=stores
    )
    # whoever still holds the removed key (or stole it) signs record 3
    repo = repository(stores, target)
    stolen = PromotionRecord(
        repository=repo.path_in_store, stage="production", digest=v3, sequence=3,
        previous=payload_digest(repo, "production", 2), issued_at=format_time(now_utc()),
        replaces=v2,
    )  # fmt: skip
    write_record(repo, record_tag("production", 3), stolen, key(keys, "alice"))
    pusher.tag("production", v3)
    bob_pub = str(keys / "bob.pub")
    for policy in (["--trust", bob_pub], ["--policy", str(rotated)]):
        refused = cli("verify", f"{target}:production", *policy)
        assert (
            refused.returncode == 7
            and "too few signatures: 0 of 1 required: none" in refused.stderr
        ), refused.stderr
    fresh_stores = fresh(monkeypatch, tmp_path, "fresh")
    with pytest.raises(VerificationError, match="signed by"):
        Resolver(policy=rotated, stores=fresh_stores, cache_dir=tmp_path / "c").resolve(target)
    # history: record 1 (alice) is vouched for by bob's record 2; record 3 is not a head
    entries = api.history(target, stage="production", policy=trust(keys, "bob"), stores=stores)
    assert [e.problem is None for e in entries] == [True, True, False]
    # a chain nobody trusted signed shows nothing as verified
    mallory_only = api.history(
        target, stage="production", policy=trust(keys, "mallory"), stores=stores
    )
    assert not any(e.problem is None for e in mallory_only)


def test_attack_record_forged_just_before_a_rotating_promote_is_not_built_on(
    stores: Stores, keys: Path, cli: Cli, repo_on_registry, tmp_path: Path, monkeypatch
) -> None:
    target, (v1, v2, v3), pusher = repo_on_registry
    promote_with_alice(stores, keys, target, v1)
    repo = repository(stores, target)
    forged = PromotionRecord(
        repository=repo.path_in_store, stage="production", digest=v3, sequence=2,
        previous=payload_digest(repo, "production", 1), issued_at=format_time(now_utc()),
        replaces=v1,
    )  # fmt: skip
    write_record(repo, record_tag("production", 2), forged, key(keys, "mallory"))
    pusher.tag("production", v3)
    rotating = [
        "promote", f"{target}@{v2}", "--to", "production", "--key", str(keys / "bob.key"),
    ]  # fmt: skip
    with_retired = cli(*rotating, "--policy", str(rotation_policy(tmp_path, keys, retired=True)))
    assert with_retired.returncode == 7 and "cannot build on" in with_retired.stderr
    with_flag = cli(
        *rotating, "--trust", str(keys / "bob.pub"), "--retired", str(keys / "alice.pub")
    )
    assert with_flag.returncode == 7 and "cannot build on" in with_flag.stderr
    fresh(monkeypatch, tmp_path, "fresh")  # no memory, no retired keys: nothing to check with
    blind = cli(*rotating, "--trust", str(keys / "bob.pub"))
    assert blind.returncode == 7 and "[retired]" in blind.stderr, blind.stderr
    assert pusher.digest_of(record_tag("production", 3)) is None  # nothing was built on it


# ----- item 7: one client, one memory -----------------------------------------------------------


def test_attack_replay_after_resolve_is_refused_by_pull(
    stores: Stores, keys: Path, cli: Cli, repo_on_registry, tmp_path: Path
) -> None:
    target, (v1, v2, _), pusher = repo_on_registry
    promote_with_alice(stores, keys, target, v1, v2)
    (stores.home / "trust-state.json").unlink()  # only `resolve` remembers anything below
    alice_pub = str(keys / "alice.pub")
    resolved = cli("resolve", target, "--trust", alice_pub)
    assert resolved.returncode == 0 and resolved.stdout.strip() == v2
    pusher.delete(record_tag("production", 2))
    pusher.tag("production", v1)
    pulled = cli("pull", f"{target}:production", str(tmp_path / "out"), "--trust", alice_pub)
    assert pulled.returncode == 7, (pulled.stdout, pulled.stderr)
    assert not (tmp_path / "out").exists()
    with pytest.raises(VerificationError):
        Resolver(trust=[alice_pub], stores=stores, cache_dir=tmp_path / "other").resolve(target)


def test_an_older_resolver_memory_is_adopted(
    stores: Stores, keys: Path, repo_on_registry, tmp_path: Path
) -> None:
    target, (v1, v2, _), pusher = repo_on_registry
    promote_with_alice(stores, keys, target, v1, v2)
    cache = tmp_path / "cache"
    Resolver(trust=[keys / "alice.pub"], stores=stores, cache_dir=cache).resolve(target)
    # the layout before: the resolver's memory lived in its cache directory only
    shutil.move(stores.home / "trust-state.json", cache / "trust-state.json")
    pusher.delete(record_tag("production", 2))
    pusher.tag("production", v1)
    with pytest.raises(VerificationError):
        Resolver(trust=[keys / "alice.pub"], stores=stores, cache_dir=cache).resolve(target)
    with pytest.raises(VerificationError):
        api.pull(
            f"{target}:production", tmp_path / "out", trust=trust(keys, "alice"), stores=stores
        )


# ----- item 9: an expired head is never served, not even offline --------------------------------


def test_expired_head_is_not_served_offline(
    stores: Stores, keys: Path, cli: Cli, make_registry, tmp_path: Path, monkeypatch
) -> None:
    registry = make_registry()
    target = f"{registry.host}/{unique_repo()}"
    (v1,) = push_versions(stores, target, tmp_path, 1)
    api.promote(
        f"{target}@{v1}", "production", key(keys, "alice"), policy=trust(keys, "alice"),
        expires_in=timedelta(seconds=2), stores=stores,
    )  # fmt: skip
    cache = tmp_path / "cache"
    assert Resolver(trust=[keys / "alice.pub"], stores=stores, cache_dir=cache).resolve(target)
    expires = api.verify(f"{target}:production", policy=trust(keys, "alice"), stores=stores)
    assert expires.expires_at is not None
    time.sleep(max(0.0, (parse_time(expires.expires_at) - now_utc()).total_seconds()) + 1.1)
    registry.stop()
    offline = Stores(home=stores.home, options=RegistryOptions(timeout=1.0, retries=0))
    resolver = Resolver(trust=[keys / "alice.pub"], stores=offline, cache_dir=cache, max_stale=3600)
    with pytest.raises(VerificationError, match="expired"):
        resolver.resolve(target)
    monkeypatch.setenv("MODELREG_RETRIES", "1")
    shown = cli("resolve", target, "--trust", str(keys / "alice.pub"))
    assert shown.returncode == 7 and "expired" in shown.stderr, shown.stderr


# ----- item 10: one key under two names ----------------------------------------------------------


def test_policy_listing_one_key_under_two_names_is_refused(
    stores: Stores, keys: Path, cli: Cli, repo_on_registry, tmp_path: Path
) -> None:
    target, (_v1, _, _), _ = repo_on_registry
    shutil.copy(keys / "alice.pub", tmp_path / "alice-again.pub")
    path = tmp_path / "twice.toml"
    path.write_text(
        f'[keys]\nalice = "{keys}/alice.pub"\nalias = "{tmp_path}/alice-again.pub"\n'
        "[stages.production]\nthreshold = 2\n"
    )
    promoted = cli(
        "promote", f"{target}:v1", "--to", "production", "--key", str(keys / "alice.key"),
        "--policy", str(path),
    )  # fmt: skip
    assert promoted.returncode == 2, promoted.stderr
    assert "'alice'" in promoted.stderr and "'alias'" in promoted.stderr
    assert "hint:" in promoted.stderr
    assert cli("verify", f"{target}:production", "--policy", str(path)).returncode == 2
    with pytest.raises(InvalidInput, match="two names"):
        Resolver(policy=path, stores=stores)
    with pytest.raises(InvalidInput, match="two names"):
        load_policy(path)


# ----- item 13: a promotion racing a resolve is not a tamper alarm -------------------------------


def test_a_promotion_landing_during_a_resolve_is_reread_not_alarmed(
    stores: Stores, keys: Path, registry, tmp_path: Path
) -> None:
    target = f"{registry.host}/{unique_repo()}"
    v1, v2 = push_versions(stores, target, tmp_path, 2)
    promote_with_alice(stores, keys, target, v1)
    landed: list[str] = []

    def promote_while_the_tag_is_read(method: str, path: str) -> None:
        # the chain was read (head: record 1); before the stage tag is, a promotion lands
        if path.endswith("/manifests/production") and not landed:
            landed.append(path)
            promote_with_alice(stores, keys, target, v2)

    with running_proxy(registry.url, before=promote_while_the_tag_is_read) as proxy:
        via = Stores(home=tmp_path / "reader", options=RegistryOptions(plain_http=True))
        proxied = target.replace(registry.host, proxy.host)
        model = Resolver(trust=[keys / "alice.pub"], stores=via).resolve(proxied)
        assert landed and (model.digest, model.sequence) == (v2, 2)
        landed.clear()
        promote_with_alice(stores, keys, target, v1)  # record 3 lands during `verify` (record 4)
        verified = api.verify(f"{proxied}:production", policy=trust(keys, "alice"), stores=via)
        assert landed and (verified.digest, verified.sequence) == (v2, 4)
        via.close()
