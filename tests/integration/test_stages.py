"""Signed stages on the local store and a real registry: promote, gate, approve, roll back,
audit — and every way a stage can be forged is refused, fail-closed, with the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from helpers.cli import Cli
from helpers.models import unique_repo

from modelreg import api
from modelreg.errors import PolicyError, VerificationError
from modelreg.oci import IMAGE_MANIFEST
from modelreg.policy import TrustPolicy, load_policy, policy_from_keys
from modelreg.promotion import PromotionRecord, record_tag, store_record
from modelreg.reference import parse_reference
from modelreg.signing import (
    IN_TOTO_PAYLOAD_TYPE,
    Envelope,
    Signature,
    SigningKey,
    load_signing_key,
    sign_envelope,
)
from modelreg.stages import verify_stage
from modelreg.store import Stores
from modelreg.trust_state import TrustState


def key(keys: Path, name: str) -> SigningKey:
    return load_signing_key(keys / f"{name}.key")


def trust(keys: Path, *names: str) -> TrustPolicy:
    return policy_from_keys(keys / f"{n}.pub" for n in names)


def push_versions(
    stores: Stores, target: str, tmp_path: Path, count: int, **metrics: list[float]
) -> list[str]:
    digests = []
    for index in range(count):
        model = tmp_path / f"model-{index}"
        model.mkdir()
        (model / "weights.bin").write_bytes(os.urandom(64) + bytes([index]))
        these = {name: values[index] for name, values in metrics.items()}
        digests.append(api.push(model, target, capture=False, metrics=these, stores=stores).digest)
    return digests


@pytest.fixture
def three(stores: Stores, target: str, tmp_path: Path) -> tuple[str, list[str]]:
    return target, push_versions(stores, target, tmp_path, 3, auc=[0.91, 0.93, 0.89])


def test_promote_archive_rollback_history(stores: Stores, keys: Path, three) -> None:
    target, (v1, v2, _) = three
    alice, policy = key(keys, "alice"), trust(keys, "alice")
    assert (
        api.promote(f"{target}:v1", "staging", alice, policy=policy, stores=stores).status
        == "promoted"
    )
    assert (
        api.promote(f"{target}:v1", "production", alice, policy=policy, stores=stores).sequence == 1
    )
    second = api.promote(f"{target}:v2", "production", alice, policy=policy, stores=stores)
    assert (second.sequence, second.digest, second.signers) == (2, v2, ("alice",))
    assert second.archived is not None and second.archived.digest == v1  # previous holder archived
    again = api.promote(f"{target}:v2", "production", alice, policy=policy, stores=stores)
    assert again.status == "unchanged"

    back = api.rollback(target, "production", alice, policy=policy, stores=stores)
    assert (back.digest, back.sequence) == (v1, 3)  # a new, higher record
    verified = api.verify(f"{target}:production", policy=policy, stores=stores)
    assert (verified.digest, verified.version, verified.sequence) == (v1, 1, 3)

    entries = [
        e.to_dict() for e in api.history(target, stage="production", policy=policy, stores=stores)
    ]
    assert [(e["sequence"], e["version"], e["fromVersion"], e["action"]) for e in entries] == [
        (1, 1, None, "promote"),
        (2, 2, 1, "promote"),
        (3, 1, 2, "rollback"),
    ]
    assert all(e["verified"] and e["signers"] == ["alice"] for e in entries)
    archived = api.verify(f"{target}:archived", policy=policy, stores=stores)
    assert archived.digest == v2  # rolled back from v2, which is kept as the rollback target


def test_stage_reads_pull_the_verified_digest(
    stores: Stores, keys: Path, three, tmp_path: Path
) -> None:
    target, (v1, _, _) = three
    policy = trust(keys, "alice")
    api.promote(f"{target}:v1", "production", key(keys, "alice"), policy=policy, stores=stores)
    pulled = api.pull(f"{target}:production", tmp_path / "out", trust=policy, stores=stores)
    assert pulled.digest == v1
    with pytest.raises(VerificationError, match="needs trusted keys"):
        api.pull(f"{target}:production", tmp_path / "out2", stores=stores)
    assert not (tmp_path / "out2").exists()


# ----- k-of-n approvals and gates ------------------------------------------------------------


def write_policy(tmp_path: Path, keys: Path, production: str) -> TrustPolicy:
    path = tmp_path / "policy.toml"
    path.write_text(
        f"""
[keys]
alice = "{keys}/alice.pub"
bob = "{keys}/bob.pub"
carol = "{keys}/carol.pub"

[stages.staging]
signers = ["alice", "bob"]

[stages.production]
{production}
"""
    )
    return load_policy(path)


def test_two_of_three_approval(stores: Stores, keys: Path, three, tmp_path: Path) -> None:
    target, (v1, v2, _) = three
    policy = write_policy(tmp_path, keys, 'signers = ["alice", "bob", "carol"]\nthreshold = 2')
    proposed = api.promote(
        f"{target}:v1", "production", key(keys, "alice"), policy=policy, stores=stores
    )
    assert (proposed.status, len(proposed.signers), proposed.needed) == ("pending", 1, 2)
    repo = stores.repository(parse_reference(target))
    assert repo.resolve("production") is None  # nothing moved yet
    with pytest.raises(PolicyError, match="proposal is for"):
        api.approve(f"{target}:v2", "production", key(keys, "bob"), policy=policy, stores=stores)
    with pytest.raises(PolicyError, match="may not sign"):
        api.approve(
            f"{target}:v1", "production", key(keys, "mallory"), policy=policy, stores=stores
        )
    done = api.approve(f"{target}:v1", "production", key(keys, "bob"), policy=policy, stores=stores)
    assert done.status == "promoted" and set(done.signers) == {"alice", "bob"}
    assert api.verify(f"{target}:production", policy=policy, stores=stores).digest == v1
    # a committed record with one trusted signature is not enough for this stage
    forge_record(
        stores, target, "production", v2, [key(keys, "alice")], sequence=2, previous_from=1
    )
    with pytest.raises(
        VerificationError, match="too few signatures: 1 of 2 required: alice; missing: bob or carol"
    ):
        api.verify(f"{target}:production", policy=policy, stores=TrustlessStores(stores))


def test_staging_required_before_production(
    stores: Stores, keys: Path, three, tmp_path: Path
) -> None:
    target, _ = three
    policy = write_policy(tmp_path, keys, 'requires = "staging"')
    with pytest.raises(PolicyError, match='requires = "staging"'):
        api.promote(f"{target}:v2", "production", key(keys, "alice"), policy=policy, stores=stores)
    api.promote(f"{target}:v2", "staging", key(keys, "alice"), policy=policy, stores=stores)
    assert (
        api.promote(
            f"{target}:v2", "production", key(keys, "alice"), policy=policy, stores=stores
        ).status
        == "promoted"
    )


def test_metric_gates(stores: Stores, keys: Path, three, tmp_path: Path) -> None:
    target, _ = three  # auc: v1 0.91, v2 0.93, v3 0.89
    policy = write_policy(
        tmp_path, keys, 'gates = ["metrics.auc >= 0.9", "metrics.auc >= @production"]'
    )
    alice = key(keys, "alice")
    with pytest.raises(PolicyError, match=r"metrics.auc >= 0.9.*0.89"):
        api.promote(f"{target}:v3", "production", alice, policy=policy, stores=stores)
    api.promote(f"{target}:v2", "production", alice, policy=policy, stores=stores)
    with pytest.raises(PolicyError, match="@production"):
        api.promote(f"{target}:v1", "production", alice, policy=policy, stores=stores)  # worse


# ----- attacks: every one refused, fail-closed ---------------------------------------------------


class TrustlessStores(Stores):
    """The same stores with a fresh trust state (a client that never verified before)."""

    def __init__(self, base: Stores) -> None:
        super().__init__(home=base.home / "fresh-client", options=base.options)
        self.local = base.local


def forge_record(
    stores: Stores,
    target: str,
    stage: str,
    digest: str,
    signers: list[SigningKey],
    *,
    sequence: int,
    previous_from: int | None,
) -> None:
    """Write a record with the given signers straight to the store, as an attacker with push
    rights (and possibly a key) could."""
    repo = stores.repository(parse_reference(target))
    previous = None
    if previous_from:
        from modelreg.promotion import read_record

        previous = read_record(repo, record_tag(stage, previous_from)).payload_digest
    record = PromotionRecord(
        repository=repo.path_in_store,
        stage=stage,
        digest=digest,
        sequence=sequence,
        previous=previous,
        issued_at="2030-01-01T00:00:00Z",
    )
    envelope = sign_envelope(IN_TOTO_PAYLOAD_TYPE, record.payload(), signers[0])
    for extra in signers[1:]:
        from modelreg.signing import add_signature

        envelope = add_signature(envelope, extra)
    model, _ = repo.fetch_manifest(digest)
    store_record(repo, envelope, model, record_tag(stage, sequence), claim=False)
    _, data = repo.fetch_manifest(digest)
    repo.push_manifest(data, IMAGE_MANIFEST, [stage])


def test_tag_moved_without_a_record_is_refused(
    stores: Stores, keys: Path, three, tmp_path: Path, cli: Cli
) -> None:
    target, (_v1, v2, _) = three
    policy = trust(keys, "alice")
    api.promote(f"{target}:v1", "production", key(keys, "alice"), policy=policy, stores=stores)
    repo = stores.repository(parse_reference(target))
    _, data = repo.fetch_manifest(v2)
    repo.push_manifest(data, IMAGE_MANIFEST, ["production"])  # a plain tag PUT
    with pytest.raises(VerificationError, match="moved without a signed promotion"):
        api.verify(f"{target}:production", policy=policy, stores=stores)
    with pytest.raises(VerificationError, match="moved without"):
        api.pull(f"{target}:production", tmp_path / "out", trust=policy, stores=stores)
    result = cli("lineage", f"{target}:production", "--trust", str(keys / "alice.pub"))
    assert result.returncode == 7 and "moved without a signed promotion" in result.stderr


def test_untrusted_key_is_refused(stores: Stores, keys: Path, three) -> None:
    target, _ = three
    mallory = key(keys, "mallory")
    api.promote(f"{target}:v3", "production", mallory, policy=trust(keys, "mallory"), stores=stores)
    with pytest.raises(
        VerificationError,
        match=r"0 of 1 required: none; missing: alice \(also signed by mallory, not trusted",
    ):
        api.verify(f"{target}:production", policy=load_alice_only(keys), stores=stores)
    with pytest.raises(VerificationError, match="0 of 1 required: none; missing: alice"):
        api.verify(f"{target}:production", policy=trust(keys, "alice"), stores=stores)


def load_alice_only(keys: Path) -> TrustPolicy:
    alice = trust(keys, "alice")
    mallory = trust(keys, "mallory").keys["mallory"]
    # mallory is known by name (so messages can name her) but may sign nothing
    from modelreg.policy import StageRule

    return TrustPolicy(
        {**alice.keys, "mallory": mallory},
        {s: StageRule(signers=("alice",)) for s in ("production", "staging", "archived")},
    )


def test_replayed_older_record_is_refused(stores: Stores, keys: Path, three) -> None:
    target, (v1, _v2, _) = three
    policy = trust(keys, "alice")
    alice = key(keys, "alice")
    api.promote(f"{target}:v1", "production", alice, policy=policy, stores=stores)
    api.promote(f"{target}:v2", "production", alice, policy=policy, stores=stores)
    api.verify(f"{target}:production", policy=policy, stores=stores)  # client accepts seq 2
    repo = stores.repository(parse_reference(target))
    head = repo.resolve(record_tag("production", 2))
    assert head is not None
    repo.delete_manifest(head.digest)  # newest record removed: seq 1 is replayed as the head
    _, data = repo.fetch_manifest(v1)
    repo.push_manifest(data, IMAGE_MANIFEST, ["production"])
    with pytest.raises(VerificationError, match=r"older record was replayed|is gone"):
        api.verify(f"{target}:production", policy=policy, stores=stores)
    state = TrustState(stores.home / "trust-state.json")
    with pytest.raises(VerificationError, match="accepted, is gone"):
        verify_stage(repo, "production", policy, state=state)  # the resolver's (warm) path


def test_a_warm_client_catches_up_on_many_new_records(
    stores: Stores, keys: Path, tmp_path: Path
) -> None:
    """More new records than a warm client probes for one by one: the tag list says
    where the chain ends (local store; the registry side is in test_hostile.py)."""
    target = unique_repo("fraud")
    v1, v2 = push_versions(stores, target, tmp_path, 2)
    policy, alice = trust(keys, "alice"), key(keys, "alice")
    repo = stores.repository(parse_reference(target))
    state = TrustState(tmp_path / "state.json")
    api.promote(f"{target}:v1", "staging", alice, policy=policy, stores=stores)
    assert verify_stage(repo, "staging", policy, state=state).sequence == 1
    for index in range(20):
        digest = f"{target}@{v2 if index % 2 == 0 else v1}"
        api.promote(digest, "staging", alice, policy=policy, stores=stores)
    verified = verify_stage(repo, "staging", policy, state=state)
    assert (verified.sequence, verified.digest) == (21, v1)


def test_forked_chain_is_refused(stores: Stores, keys: Path, three) -> None:
    target, (_v1, _v2, v3) = three
    policy = trust(keys, "alice")
    alice = key(keys, "alice")
    api.promote(f"{target}:v1", "production", alice, policy=policy, stores=stores)
    api.promote(f"{target}:v2", "production", alice, policy=policy, stores=stores)
    api.verify(f"{target}:production", policy=policy, stores=stores)  # accepted: seq 2 = v2
    # a second valid record for sequence 2 (the key holder signs twice, or a concurrent writer)
    forge_record(stores, target, "production", v3, [alice], sequence=2, previous_from=1)
    with pytest.raises(VerificationError, match="forked"):
        api.verify(f"{target}:production", policy=policy, stores=stores)
    repo = stores.repository(parse_reference(target))
    with pytest.raises(VerificationError, match="forked"):
        verify_stage(repo, "production", policy, state=TrustState(stores.home / "trust-state.json"))
    # a fresh client sees a consistent chain here; rewriting record 1 breaks the links for it too
    forge_record(stores, target, "production", v3, [alice], sequence=1, previous_from=None)
    with pytest.raises(VerificationError, match="does not follow"):
        api.verify(f"{target}:production", policy=policy, stores=TrustlessStores(stores))


def test_tampered_record_or_signature_is_refused(stores: Stores, keys: Path, three) -> None:
    target, (v1, v2, _) = three
    policy = trust(keys, "alice")
    alice = key(keys, "alice")
    api.promote(f"{target}:v1", "production", alice, policy=policy, stores=stores)
    repo = stores.repository(parse_reference(target))
    from modelreg.promotion import read_record

    stored = read_record(repo, record_tag("production", 1))
    # same signature, payload edited to point at v2
    edited = stored.envelope.payload.replace(v1[7:].encode(), v2[7:].encode())
    tampered = Envelope(stored.envelope.payload_type, edited, stored.envelope.signatures)
    model, _ = repo.fetch_manifest(v2)
    store_record(repo, tampered, model, record_tag("production", 1), claim=False)
    with pytest.raises(VerificationError, match="invalid signature by alice: tampered"):
        api.verify(f"{target}:production", policy=policy, stores=TrustlessStores(stores))
    # payload intact, signature bytes flipped
    sig = stored.envelope.signatures[0]
    flipped = Signature(sig.keyid, sig.sig[:-1] + bytes([sig.sig[-1] ^ 1]))
    broken = Envelope(stored.envelope.payload_type, stored.envelope.payload, (flipped,))
    model, _ = repo.fetch_manifest(v1)
    store_record(repo, broken, model, record_tag("production", 1), claim=False)
    with pytest.raises(VerificationError, match="tampered"):
        api.verify(f"{target}:production", policy=policy, stores=TrustlessStores(stores))


def test_expired_record_is_refused(stores: Stores, keys: Path, three) -> None:
    target, (v1, _, _) = three
    policy = trust(keys, "alice")
    alice = key(keys, "alice")
    repo = stores.repository(parse_reference(target))
    record = PromotionRecord(
        repository=repo.path_in_store,
        stage="production",
        digest=v1,
        sequence=1,
        previous=None,
        issued_at="2020-01-01T00:00:00Z",
        expires_at="2020-02-01T00:00:00Z",
    )
    model, data = repo.fetch_manifest(v1)
    store_record(
        repo,
        sign_envelope(IN_TOTO_PAYLOAD_TYPE, record.payload(), alice),
        model,
        record_tag("production", 1),
        claim=True,
    )
    repo.push_manifest(data, IMAGE_MANIFEST, ["production"])
    with pytest.raises(VerificationError, match="expired"):
        api.verify(f"{target}:production", policy=policy, stores=stores)


def test_record_replayed_into_another_repository_is_refused(
    stores: Stores, keys: Path, three, tmp_path: Path
) -> None:
    target, (v1, _, _) = three
    policy = trust(keys, "alice")
    api.promote(f"{target}:v1", "production", key(keys, "alice"), policy=policy, stores=stores)
    other = unique_repo("other") if parse_reference(target).is_local else target + "-other"
    api.copy(f"{target}@{v1}", other, stores=stores)
    source = stores.repository(parse_reference(target))
    destination = stores.repository(parse_reference(other))
    from modelreg.copying import copy_manifest

    copy_manifest(source, record_tag("production", 1), destination, [record_tag("production", 1)])
    _, data = destination.fetch_manifest(v1)
    destination.push_manifest(data, IMAGE_MANIFEST, ["production"])
    with pytest.raises(VerificationError, match="signed for repository"):
        api.verify(f"{other}:production", policy=policy, stores=stores)


# ----- concurrency -------------------------------------------------------------------------------


def test_concurrent_promotions_never_fork(
    stores: Stores, keys: Path, target: str, tmp_path: Path
) -> None:
    digests = push_versions(stores, target, tmp_path, 4)
    env = {**os.environ, "MODELREG_HOME": str(stores.home)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelreg",
                "promote",
                f"{target}@{digest}",
                "--to",
                "staging",
                "--key",
                str(keys / "alice.key"),
                "--trust",
                str(keys / "alice.pub"),
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for digest in digests
    ]
    results = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1] for r in results]
    sequences = sorted(json.loads(out)["sequence"] for out, _ in results)
    assert sequences == [1, 2, 3, 4]
    policy = trust(keys, "alice")
    verified = api.verify(f"{target}:staging", policy=policy, stores=TrustlessStores(stores))
    assert verified.sequence == 4
    history = api.history(target, stage="staging", policy=policy, stores=stores)
    assert {e.stored.record.digest for e in history} == set(digests)
    assert all(e.problem is None for e in history)


# ----- CLI ---------------------------------------------------------------------------------------


def test_cli_keys_and_stage_commands(cli: Cli, keys: Path, tmp_path: Path, model_dir: Path) -> None:
    generated = Cli.process(
        "key", "generate", "dana", "--dir", str(tmp_path), env={"MODELREG_KEY_PASSPHRASE": "s3cret"}
    )
    assert generated.returncode == 0, generated.stderr
    assert (tmp_path / "dana.key").stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED" in (tmp_path / "dana.key").read_bytes()
    repeat = Cli.process("key", "generate", "dana", "--dir", str(tmp_path))
    assert repeat.returncode == 2 and "error:" in repeat.stderr

    repo = unique_repo("fraud")
    assert cli("push", str(model_dir), repo, "--no-capture").returncode == 0
    no_pass = Cli.process(
        "promote", f"{repo}:v1", "--to", "staging", "--key", str(tmp_path / "dana.key")
    )
    assert (
        no_pass.returncode == 2
        and "passphrase" in no_pass.stderr
        and "s3cret" not in no_pass.stderr
    )
    promoted = Cli.process(
        "promote",
        f"{repo}:v1",
        "--to",
        "staging",
        "--key",
        str(tmp_path / "dana.key"),
        "--json",
        env={"MODELREG_KEY_PASSPHRASE": "s3cret"},
    )
    assert promoted.returncode == 0, promoted.stderr
    assert json.loads(promoted.stdout)["status"] == "promoted"
    ok = cli("verify", f"{repo}:staging", "--trust", str(tmp_path / "dana.pub"))
    assert ok.returncode == 0 and "verified" in ok.stdout
    bad = cli("verify", f"{repo}:staging", "--trust", str(keys / "alice.pub"))
    assert bad.returncode == 7 and bad.stderr.startswith("error: ")
    shown = cli("history", repo, "--trust", str(keys / "alice.pub"))
    assert "✗" in shown.stdout  # listed, and marked as not verifying under this trust
    assert cli("history", repo, "--json", "--trust", str(tmp_path / "dana.pub")).returncode == 0


def test_raw_http_tag_move_on_the_registry(
    stores: Stores, keys: Path, registry, tmp_path: Path
) -> None:
    """The attack as it happens: a plain PUT /v2/…/manifests/production by someone with push
    rights but no key."""
    target = f"{registry.host}/{unique_repo()}"
    _v1, v2 = push_versions(stores, target, tmp_path, 2)
    policy = trust(keys, "alice")
    api.promote(f"{target}:v1", "production", key(keys, "alice"), policy=policy, stores=stores)
    path = target.split("/", 1)[1]
    manifest = requests.get(
        f"{registry.url}/v2/{path}/manifests/{v2}", headers={"Accept": IMAGE_MANIFEST}, timeout=10
    )
    put = requests.put(
        f"{registry.url}/v2/{path}/manifests/production",
        data=manifest.content,
        headers={"Content-Type": IMAGE_MANIFEST},
        timeout=10,
    )
    assert put.status_code == 201
    with pytest.raises(VerificationError, match="moved without a signed promotion"):
        api.verify(f"{target}:production", policy=policy, stores=stores)
