"""Retention (``modelreg gc``) on the local store and a real registry: what it keeps, what it
deletes, how many bytes that frees, and that nothing a stage or a racing push needs is lost."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from helpers.cli import Cli
from helpers.models import unique_repo

from modelreg import api
from modelreg.errors import InvalidInput, NotFound, RegistryError, VerificationError
from modelreg.oci import IMAGE_MANIFEST, Descriptor, Manifest, empty_config_descriptor
from modelreg.policy import TrustPolicy, load_policy, policy_from_keys
from modelreg.promotion import pending_tag
from modelreg.promotion import record_tag as promotion_tag
from modelreg.reference import parse_reference
from modelreg.retention import RetentionRules, execute, load_rules, plan, read_snapshot
from modelreg.signing import SigningKey, generate_keypair, load_signing_key
from modelreg.store import Stores
from modelreg.store.base import Repository, parse_claim_tag
from modelreg.timeutil import format_time, now_utc
from modelreg.transfer import push_model
from modelreg.versions import anchor_tag, publish, version_record_tag

DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys")
    for name in ("alice", "bob"):
        generate_keypair(directory, name)
    return directory


NEWEST = "the newest version (keeps version numbers from being reused)"


def key(keys: Path, name: str) -> SigningKey:
    return load_signing_key(keys / f"{name}.key")


def trust(keys: Path, *names: str) -> TrustPolicy:
    return policy_from_keys(keys / f"{n}.pub" for n in names)


def repository(stores: Stores, target: str) -> Repository:
    return stores.repository(parse_reference(target))


def push(
    stores: Stores,
    target: str,
    tmp_path: Path,
    content: bytes,
    *,
    note: str = "",
    created: str | None = None,
) -> str:
    """Push a one-file model; ``note`` changes only its annotations (same layers)."""
    model = tmp_path / f"model-{os.urandom(4).hex()}"
    model.mkdir()
    (model / "weights.bin").write_bytes(content)
    repo = repository(stores, target)
    annotations = {"org.opencontainers.image.description": note or content[:8].hex()}
    pushed = push_model(repo, model, annotations=annotations)
    return publish(repo, pushed.manifest_bytes, created=created).digest


def removed(report: object) -> list[tuple[int, ...]]:
    return [d.versions for d in report.removed]  # type: ignore[attr-defined]


def reasons(report: object) -> dict[tuple[int, ...], tuple[str, ...]]:
    return {d.versions: d.reasons for d in report.plan.kept}  # type: ignore[attr-defined]


def blob_files(stores: Stores, name: str) -> dict[str, int]:
    directory = stores.home / "oci" / name / "blobs" / "sha256"
    return {f"sha256:{p.name}": p.stat().st_size for p in directory.iterdir()}


# ----- what is kept ----------------------------------------------------------------------------


def test_stage_holders_and_recent_production_are_kept(
    stores: Stores, keys: Path, target: str, tmp_path: Path
) -> None:
    digests = [push(stores, target, tmp_path, os.urandom(64)) for _ in range(5)]
    api.tag(f"{target}:v1", "first", stores=stores)
    alice, policy = key(keys, "alice"), trust(keys, "alice")
    for number in (1, 2, 3):  # production v1 -> v2 -> v3; archived v1 -> v2
        api.promote(f"{target}:v{number}", "production", alice, policy=policy, stores=stores)
    api.promote(f"{target}:v4", "staging", alice, policy=policy, stores=stores)
    rules = RetentionRules(keep_last=1)

    today = api.gc(target, rules, dry_run=True, policy=policy, stores=stores)
    assert removed(today) == []  # v1 held production until moments ago
    why = reasons(today)
    assert "held production within 30d" in why[(1,)]
    assert "holds archived" in why[(2,)]
    assert "holds production" in why[(3,)]
    assert "holds staging" in why[(4,)]
    assert why[(5,)] == (NEWEST, "one of the newest 1")
    assert today.plan.verified

    later = now_utc() + 60 * DAY
    assert removed(
        api.gc(target, rules, dry_run=True, policy=policy, stores=stores, now=later)
    ) == [(1,)]
    wide = RetentionRules(keep_last=1, production_window=90 * DAY)
    assert (
        removed(api.gc(target, wide, dry_run=True, policy=policy, stores=stores, now=later)) == []
    )

    repo = repository(stores, target)
    assert repo.resolve("v1") is not None  # the dry runs deleted nothing
    report = api.gc(target, rules, policy=policy, stores=stores, now=later)
    assert removed(report) == [(1,)]
    assert report.plan.records_kept_for_removed == 2  # production 1 and archived 1 name v1
    tags = repo.list_tags()
    v1 = digests[0]
    for gone in ("v1", "first", anchor_tag(v1), version_record_tag(v1)):
        assert gone not in tags
    assert repo.resolve(v1) is None
    # the signed history is whole: every chain still verifies, records naming v1 included
    assert promotion_tag("production", 1) in tags and promotion_tag("archived", 1) in tags
    for stage, holder in (("production", 3), ("archived", 2), ("staging", 4)):
        verified = api.verify(f"{target}:{stage}", policy=policy, stores=stores)
        assert verified.digest == digests[holder - 1]
    entries = api.history(target, policy=policy, stores=stores)
    assert len(entries) == 6 and all(e.problem is None for e in entries)
    assert [v.version for v in api.versions(target, stores=stores)] == [2, 3, 4, 5]
    api.pull(f"{target}:v2", tmp_path / "out", stores=stores)


def test_older_than_and_keep_last_combine(stores: Stores, tmp_path: Path) -> None:
    target = unique_repo("fraud")
    now = now_utc()
    for age in (200, 100, 10, 0):
        push(stores, target, tmp_path, os.urandom(64), created=format_time(now - age * DAY))

    def dry(keep_last: int | None, older_than: str | None) -> list[tuple[int, ...]]:
        rules = load_rules(keep_last=keep_last, older_than=older_than)
        return removed(api.gc(target, rules, dry_run=True, stores=stores, now=now))

    assert dry(None, "90d") == [(1,), (2,)]
    assert dry(3, "90d") == [(1,)]  # v2 is old but among the newest 3
    assert dry(3, None) == [(1,)]
    assert dry(1, "150d") == [(1,)]  # v2, v3 are beyond the newest 1 but too young
    assert dry(0, "5d") == [(1,), (2,), (3,)]
    # a version whose creation time is unknown is never "older than" anything
    repo = repository(stores, target)
    v1_record = repo.resolve(version_record_tag(repo.fetch_manifest("v1")[0].digest))
    assert v1_record is not None
    repo.delete_manifest(v1_record.digest)
    assert dry(None, "90d") == [(2,)]
    rules = load_rules(older_than="90d")
    assert (
        "creation time unknown" in reasons(api.gc(target, rules, dry_run=True, stores=stores))[(1,)]
    )


def test_a_proposal_awaiting_approval_keeps_its_model_and_stale_ones_go(
    stores: Stores, keys: Path, tmp_path: Path
) -> None:
    target = unique_repo("fraud")
    digests = [push(stores, target, tmp_path, os.urandom(64)) for _ in range(4)]
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(
        f'[keys]\nalice = "{keys}/alice.pub"\nbob = "{keys}/bob.pub"\n'
        "[stages.production]\nthreshold = 2\n"
    )
    policy = load_policy(policy_file)
    alice, bob = key(keys, "alice"), key(keys, "bob")
    api.promote(f"{target}:v1", "production", alice, policy=policy, stores=stores)  # pending
    report = api.gc(target, RetentionRules(keep_last=0), dry_run=True, policy=policy, stores=stores)
    assert "proposed for production, awaiting approval" in reasons(report)[(1,)]
    assert removed(report) == [(2,), (3,)]  # v4, the newest, always stays

    for number in (1, 2, 3):  # each move: a proposal, then the approval that commits it
        if number > 1:
            api.promote(f"{target}:v{number}", "production", alice, policy=policy, stores=stores)
        api.approve(f"{target}:v{number}", "production", bob, policy=policy, stores=stores)
    repo = repository(stores, target)
    assert pending_tag("production", 1) in repo.list_tags()  # stale: sequence 1 is committed

    later = now_utc() + 60 * DAY
    report = api.gc(target, RetentionRules(keep_last=1), policy=policy, stores=stores, now=later)
    assert removed(report) == [(1,)]  # v2 is archived, v3 production, v4 the newest
    kinds = {(d.kind, d.model) for d in report.executed.deleted}  # type: ignore[union-attr]
    assert ("pending", digests[0]) in kinds
    tags = repo.list_tags()
    assert pending_tag("production", 1) not in tags
    assert pending_tag("production", 2) in tags  # its model v2 stays, so does its proposal
    assert promotion_tag("production", 1) in tags
    assert api.verify(f"{target}:production", policy=policy, stores=stores).digest == digests[2]


# ----- bytes -----------------------------------------------------------------------------------


def test_local_gc_frees_the_disk_and_counts_shared_blobs_as_kept(
    stores: Stores, tmp_path: Path
) -> None:
    target = unique_repo("fraud")
    shared = os.urandom(4096)
    v1 = push(stores, target, tmp_path, shared, note="first")
    push(stores, target, tmp_path, shared, note="second")  # same layers, other manifest
    push(stores, target, tmp_path, os.urandom(4096))
    repo = repository(stores, target)
    layers = [layer.digest for layer in Manifest.parse(repo.fetch_manifest(v1)[1]).layers]

    rules = RetentionRules(keep_last=2)
    predicted = api.gc(target, rules, dry_run=True, stores=stores).bytes
    before = blob_files(stores, target)
    report = api.gc(target, rules, stores=stores)
    after = blob_files(stores, target)
    assert removed(report) == [(1,)]
    freed = set(before) - set(after)
    assert report.bytes == predicted == sum(before[d] for d in freed) > 0
    # v1's model manifest, image config, version record and referrers index went; its
    # layers are v2's too
    assert len(freed) == 4 and v1 in freed
    assert all(layer in after for layer in layers)

    report = api.gc(target, RetentionRules(keep_last=1), stores=stores)
    assert removed(report) == [(2,)]
    final = blob_files(stores, target)
    assert all(layer not in final for layer in layers)  # nothing references them now
    assert report.bytes == sum(after[d] for d in set(after) - set(final))
    api.pull(f"{target}:v3", tmp_path / "out", stores=stores)


def test_local_gc_sweeps_old_unreferenced_blobs_only(stores: Stores, tmp_path: Path) -> None:
    target = unique_repo("fraud")
    push(stores, target, tmp_path, os.urandom(64))
    repo = repository(stores, target)
    stale = repo.push_blob([b"left by a killed upload"], 23)
    fresh = repo.push_blob([b"an upload in flight"], 19)
    old = (now_utc() - 2 * DAY).timestamp()
    os.utime(repo.blob_path(stale), (old, old))  # type: ignore[attr-defined]
    report = api.gc(target, RetentionRules(keep_last=1), stores=stores)
    assert report.bytes == 23 and removed(report) == []
    assert not repo.has_blob(stale) and repo.has_blob(fresh)


def test_registry_frees_the_blobs_at_its_own_garbage_collect(
    make_registry, stores: Stores, tmp_path: Path
) -> None:
    registry = make_registry()
    target = f"{registry.host}/{unique_repo()}"
    push(stores, target, tmp_path, os.urandom(4096))
    shared = os.urandom(4096)
    push(stores, target, tmp_path, shared, note="second")
    push(stores, target, tmp_path, shared, note="third")  # shares v2's layers

    def stored() -> dict[str, int]:
        blobs = registry.root / "docker" / "registry" / "v2" / "blobs" / "sha256"
        return {f"sha256:{p.parent.name}": p.stat().st_size for p in blobs.glob("*/*/data")}

    # superseded referrers-index revisions (deleted as each push replaced them) are
    # freed by the registry's next collection, whatever modelreg gc decides: collect first
    registry.stop()
    assert registry.garbage_collect().returncode == 0
    registry.start()
    report = api.gc(target, RetentionRules(keep_last=1), stores=stores)
    assert removed(report) == [(1,), (2,)]
    assert not report.local
    assert {d.kind for d in report.plan.deletions} == {"model", "version-record", "referrers-index"}

    before = stored()
    registry.stop()
    collected = registry.garbage_collect()
    assert collected.returncode == 0, collected.stderr
    registry.start()
    after = stored()
    assert set(before) - set(after) == set(report.plan.freed_blobs)
    assert report.bytes == sum(before[d] for d in set(before) - set(after))
    pulled = api.pull(f"{target}:v3", tmp_path / "out", stores=stores)
    assert (pulled.path / "weights.bin").read_bytes() == shared


def test_registry_with_deletes_disabled_is_named_and_nothing_changes(
    make_registry, stores: Stores, tmp_path: Path, cli: Cli
) -> None:
    registry = make_registry(extra_config={"storage": {"delete": {"enabled": False}}})
    target = f"{registry.host}/{unique_repo()}"
    for _ in range(2):
        push(stores, target, tmp_path, os.urandom(64))
    tags = repository(stores, target).list_tags()
    # the claims the pushes could not remove are left, decided: gc plans to remove them
    assert len([t for t in tags if parse_claim_tag(t)]) == 2
    planned = cli("gc", target, "--keep-last", "1", "--dry-run", "--json")
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["versionsRemoved"] == 1
    result = cli("gc", target, "--keep-last", "1")
    assert result.returncode == 5
    # v1, its version record, its referrers index and the two claims
    assert "gc stopped after 0 of 5 deletions: registry" in result.stderr
    assert "does not allow deletes" in result.stderr
    assert "storage.delete.enabled" in result.stderr
    assert repository(stores, target).list_tags() == tags
    with pytest.raises(RegistryError, match="does not allow deletes"):
        api.gc(target, RetentionRules(keep_last=1), stores=stores)


# ----- racing and interrupted ------------------------------------------------------------------


def test_a_push_racing_gc_keeps_its_version_and_blobs(
    stores: Stores, target: str, tmp_path: Path
) -> None:
    weights = os.urandom(4096)
    push(stores, target, tmp_path, weights, note="old")
    push(stores, target, tmp_path, os.urandom(64))
    repo = repository(stores, target)
    snapshot = read_snapshot(repo)
    planned = plan(snapshot, RetentionRules(keep_last=1))
    assert [d.versions for d in planned.removed] == [(1,)]
    # after the snapshot, a new version that reuses every blob of the one gc will delete
    newer = push(stores, target, tmp_path, weights, note="new")
    executed = execute(repo, planned, snapshot)
    assert {d.model for d in executed.deleted} == {planned.removed[0].digest}
    assert repo.resolve("v3") is not None and repo.resolve("v3").digest == newer  # type: ignore[union-attr]
    pulled = api.pull(f"{target}:v3", tmp_path / "out", stores=stores)
    assert (pulled.path / "weights.bin").read_bytes() == weights


def test_a_stage_moved_to_a_planned_version_spares_it(
    stores: Stores, keys: Path, target: str, tmp_path: Path
) -> None:
    v1 = push(stores, target, tmp_path, os.urandom(64))
    push(stores, target, tmp_path, os.urandom(64))
    repo = repository(stores, target)
    policy = trust(keys, "alice")
    snapshot = read_snapshot(repo, policy=policy)
    planned = plan(snapshot, RetentionRules(keep_last=1))
    assert [d.digest for d in planned.removed] == [v1]
    api.promote(f"{target}:v1", "staging", key(keys, "alice"), policy=policy, stores=stores)
    executed = execute(repo, planned, snapshot)
    assert executed.spared == (v1,) and executed.deleted == ()
    assert api.verify(f"{target}:staging", policy=policy, stores=stores).digest == v1


def test_an_interrupted_gc_is_finished_by_the_next(stores: Stores, tmp_path: Path) -> None:
    target = unique_repo("fraud")
    v1 = push(stores, target, tmp_path, os.urandom(64))
    push(stores, target, tmp_path, os.urandom(64))
    repo = repository(stores, target)
    repo.delete_manifest(v1)  # gc stopped after the model, before its version record
    assert version_record_tag(v1) in repo.list_tags()
    report = api.gc(target, RetentionRules(keep_last=1), stores=stores)
    assert removed(report) == []
    assert [(d.kind, d.model) for d in report.executed.deleted] == [  # type: ignore[union-attr]
        ("orphan-version-record", v1)
    ]
    assert version_record_tag(v1) not in repo.list_tags()


def test_the_local_store_refuses_a_manifest_whose_blobs_are_gone(stores: Stores) -> None:
    repo = stores.local.repository(unique_repo("fraud"))
    empty = empty_config_descriptor()
    repo.push_blob([b"{}"], 2, empty.digest)
    missing = Descriptor("application/vnd.oci.image.layer.v1.tar", "sha256:" + "1" * 64, 10)
    data = Manifest(config=empty, layers=(missing,)).to_bytes()
    with pytest.raises(NotFound, match="concurrent 'modelreg gc'"):
        repo.push_manifest(data, IMAGE_MANIFEST, ["v1"])
    assert repo.list_tags() == []


# ----- trust -----------------------------------------------------------------------------------


def test_a_chain_that_fails_verification_stops_gc(
    stores: Stores, keys: Path, target: str, tmp_path: Path
) -> None:
    for _ in range(3):
        push(stores, target, tmp_path, os.urandom(64))
    api.promote(
        f"{target}:v2", "production", key(keys, "alice"), policy=trust(keys, "alice"), stores=stores
    )
    tags = repository(stores, target).list_tags()
    with pytest.raises(VerificationError, match="gc deletes nothing while a stage chain fails"):
        api.gc(target, RetentionRules(keep_last=1), policy=trust(keys, "bob"), stores=stores)
    assert repository(stores, target).list_tags() == tags
    unverified = api.gc(target, RetentionRules(keep_last=1), dry_run=True, stores=stores)
    assert not unverified.plan.verified and removed(unverified) == [(1,)]


def test_a_stage_tag_and_chain_that_disagree_keep_both(
    stores: Stores, keys: Path, tmp_path: Path
) -> None:
    target = unique_repo("fraud")
    _, v2, _ = (push(stores, target, tmp_path, os.urandom(64)) for _ in range(3))
    api.promote(f"{target}:v1", "production", key(keys, "alice"), stores=stores)
    repo = repository(stores, target)
    _, data = repo.fetch_manifest(v2)
    repo.push_manifest(data, IMAGE_MANIFEST, ["production"])  # moved without a record
    report = api.gc(target, RetentionRules(keep_last=0), dry_run=True, stores=stores)
    assert removed(report) == []
    why = reasons(report)
    assert why[(3,)] == (NEWEST,)  # the newest version always stays
    assert why[(1,)][0] == "holds production by its signed chain (the tag points elsewhere)"
    assert why[(2,)] == ("the production tag points at it (its signed chain names another)",)


# ----- the command and its policy file ---------------------------------------------------------


def test_cli_gc_with_a_policy_file(cli: Cli, stores: Stores, tmp_path: Path) -> None:
    target = unique_repo("fraud")
    long_ago = format_time(now_utc() - 100 * DAY)
    for _ in range(4):
        push(stores, target, tmp_path, os.urandom(64), created=long_ago)
    policy = tmp_path / "retention.toml"
    policy.write_text('[gc]\nkeep_last = 2\nolder_than = "90d"\nkeep_production_window = "7d"\n')
    planned = cli("gc", target, "--retention", str(policy), "--dry-run", "--json")
    assert planned.returncode == 0, planned.stderr
    body = json.loads(planned.stdout)
    assert body["rules"] == {"keepLast": 2, "olderThan": "90d", "keepProductionWindow": "7d"}
    assert [d["versions"] for d in body["removed"]] == [[1], [2]] and body["dryRun"]
    overridden = cli("gc", target, "--policy-file", str(policy), "--keep-last", "3")
    assert overridden.returncode == 0, overridden.stderr
    assert overridden.stdout.startswith(f"removed 1 version of {target} (v1), freeing ")
    assert f"kept v4: {NEWEST}; one of the newest 3" in overridden.stdout
    assert [v.version for v in api.versions(target, stores=stores)] == [2, 3, 4]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[gc]\nkeep_latest = 2\n", "unknown [gc] setting(s) ['keep_latest']"),
        ('[gc]\nolder_than = "ninety days"\n', "invalid duration"),
        ("[retention]\nkeep_last = 2\n", "no [gc] table"),
        ("[gc\n", "not valid TOML"),
    ],
)
def test_cli_gc_refuses_a_bad_policy_file(
    cli: Cli, tmp_path: Path, content: str, message: str
) -> None:
    policy = tmp_path / "retention.toml"
    policy.write_text(content)
    result = cli("gc", "fraud", "--retention", str(policy))
    assert result.returncode == 2
    assert message in result.stderr


def test_gc_needs_a_rule_and_a_repository(cli: Cli) -> None:
    result = cli("gc", "fraud")
    assert result.returncode == 2 and "gc needs a rule" in result.stderr
    assert "hint:" in result.stderr
    with pytest.raises(InvalidInput, match="whole repository"):
        api.gc("fraud:v1", RetentionRules(keep_last=1))


def test_gc_never_lets_a_version_number_be_reused(
    stores: Stores, target: str, tmp_path: Path
) -> None:
    digests = [push(stores, target, tmp_path, os.urandom(64)) for _ in range(2)]
    api.gc(target, RetentionRules(keep_last=0), stores=stores)
    assert [v.version for v in api.versions(target, stores=stores)] == [2]
    model = tmp_path / "after-gc"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"new")
    pushed = api.push(model, target, capture=False, stores=stores)
    assert pushed.version == 3 and pushed.digest not in digests


@pytest.mark.parametrize(
    ("flag", "what"),
    [
        (["--retention"], "retention policy file"),
        (["--policy-file"], "retention policy file"),  # the old, hidden spelling
        (["--keep-last", "1", "--policy"], "policy file"),
    ],
)
def test_a_policy_path_that_is_a_directory_is_a_clear_error(
    cli: Cli, tmp_path: Path, flag: list[str], what: str
) -> None:
    """Both TOML policies (retention, trust): no traceback for an unreadable path."""
    result = cli("gc", "fraud", *flag, str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert f"cannot read {what} {tmp_path}" in result.stderr
    assert "Traceback" not in result.stderr and "hint:" in result.stderr
    missing = cli("gc", "fraud", *flag, str(tmp_path / "absent.toml"))
    assert missing.returncode == 3 and f"{what} not found" in missing.stderr
