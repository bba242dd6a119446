"""Mirroring (``modelreg copy --all-versions | --stage``): whole repositories between a registry,
the local store and another registry, verified at the destination with the same trust policy;
conflicts refused up front; interrupted copies finished by running them again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from helpers.cli import Cli
from helpers.models import unique_repo

from modelreg import api
from modelreg.errors import ConflictError, InvalidInput, ModelregError
from modelreg.inventory import read_tags
from modelreg.oci import IMAGE_INDEX, Manifest
from modelreg.policy import TrustPolicy, load_policy
from modelreg.promotion import pending_tag
from modelreg.promotion import record_tag as promotion_tag
from modelreg.reference import parse_reference
from modelreg.retention import RetentionRules
from modelreg.signing import SigningKey, generate_keypair, load_signing_key
from modelreg.store import RegistryOptions, Stores
from modelreg.store.base import Repository, parse_claim_tag
from modelreg.timeutil import now_utc
from modelreg.transfer import TransferEvent


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys")
    for name in ("alice", "bob"):
        generate_keypair(directory, name)
    (directory / "policy.toml").write_text(
        f'[keys]\nalice = "{directory}/alice.pub"\nbob = "{directory}/bob.pub"\n'
        "[stages.staging]\nthreshold = 2\n"
    )
    return directory


def key(keys: Path, name: str) -> SigningKey:
    return load_signing_key(keys / f"{name}.key")


def policy_of(keys: Path) -> TrustPolicy:
    return load_policy(keys / "policy.toml")


def repository(stores: Stores, name: str) -> Repository:
    return stores.repository(parse_reference(name))


def digests(repo: Repository) -> dict[str, str]:
    """Every tag and its digest, but the claim tags a registry push leaves behind: they are
    that registry's bookkeeping of who won a number, and a mirror does not copy them."""
    return {
        tag: found.digest for tag, found in read_tags(repo).items() if parse_claim_tag(tag) is None
    }


def push_versions(stores: Stores, target: str, tmp_path: Path, count: int) -> list[str]:
    pushed = []
    for index in range(count):
        model = tmp_path / f"model-{os.urandom(4).hex()}"
        model.mkdir()
        (model / "weights.bin").write_bytes(os.urandom(2048) + bytes([index]))
        pushed.append(
            api.push(model, target, capture=False, metrics={"auc": 0.9}, stores=stores).digest
        )
    return pushed


def build_history(stores: Stores, target: str, tmp_path: Path, keys: Path) -> list[str]:
    """v1..v4; alias 'best' on v2; production v1 -> v2 -> v3 (archived v1, v2); v4 proposed
    for staging (2 of 2) and waiting for approval."""
    models = push_versions(stores, target, tmp_path, 4)
    api.tag(f"{target}:v2", "best", stores=stores)
    alice, policy = key(keys, "alice"), policy_of(keys)
    for number in (1, 2, 3):
        api.promote(f"{target}:v{number}", "production", alice, policy=policy, stores=stores)
    proposed = api.promote(f"{target}:v4", "staging", alice, policy=policy, stores=stores)
    assert proposed.status == "pending"
    return models


def assert_complete(repo: Repository, *, dangling_ok: frozenset[str] = frozenset()) -> None:
    """Every tag points at a manifest whose blobs (and subject) are all there."""
    for tag, found in read_tags(repo).items():
        _, data = repo.fetch_manifest(found.digest)
        if found.media_type == IMAGE_INDEX:  # an OCI referrers index: its entries are there
            for entry in json.loads(data)["manifests"]:
                assert repo.resolve(entry["digest"]) is not None, f"{tag}: referrer missing"
            continue
        manifest = Manifest.parse(data)
        for blob in (manifest.config, *manifest.layers):
            assert repo.has_blob(blob.digest), f"{tag}: blob {blob.digest} missing"
        if manifest.subject and manifest.subject.digest not in dangling_ok:
            assert repo.resolve(manifest.subject.digest) is not None, f"{tag}: subject missing"


# ----- the air gap: registry -> local store (another home) -> registry ----------------------------


def test_registry_to_local_store_to_registry_verifies_at_the_far_end(
    stores: Stores, registry, make_registry, keys: Path, tmp_path: Path, cli: Cli
) -> None:
    path = unique_repo("ml/fraud")
    source = f"{registry.host}/{path}"
    models = build_history(stores, source, tmp_path, keys)
    policy = policy_of(keys)
    # the source's own gc removed v1; the records naming it stay and must travel
    later = now_utc() + timedelta(days=60)
    report = api.gc(source, RetentionRules(keep_last=1), policy=policy, stores=stores, now=later)
    assert [d.versions for d in report.removed] == [(1,)]

    disk = Stores(home=tmp_path / "usb-disk", options=RegistryOptions(settle=0.05))
    carried = api.mirror(source, path, stores=disk)
    assert carried.versions == [2, 3, 4] and carried.versions_copied == 3
    assert (carried.records, carried.pending) == (5, 1)  # production 1-3, archived 1-2
    assert carried.stage_tags == ["archived", "production"]
    assert any(models[0] in note for note in carried.skipped)

    far = make_registry()
    destination = f"{far.host}/{path}"
    delivered = api.mirror(path, destination, stores=disk)
    assert delivered.versions == [2, 3, 4]

    # the same tags with the same digests: versions, anchors, aliases, version records,
    # promotion records, the pending proposal and stage tags
    src_repo, dst_repo = repository(stores, source), repository(stores, destination)
    assert digests(dst_repo) == digests(src_repo)
    assert digests(repository(disk, path)) == digests(src_repo)
    assert pending_tag("staging", 1) in dst_repo.list_tags()
    assert_complete(dst_repo, dangling_ok=frozenset({models[0]}))

    verified = api.verify(f"{destination}:production", policy=policy, stores=stores)
    assert (verified.digest, verified.version, verified.sequence) == (models[2], 3, 3)
    assert api.verify(f"{destination}:archived", policy=policy, stores=stores).digest == models[1]
    result = cli("verify", f"{destination}:production", "--policy", str(keys / "policy.toml"))
    assert result.returncode == 0, result.stderr
    pulled = api.pull(f"{destination}:production", tmp_path / "out", trust=policy, stores=stores)
    assert pulled.digest == models[2]
    here = [
        (v.version, v.digest, v.created, v.aliases) for v in api.versions(source, stores=stores)
    ]
    there = [
        (v.version, v.digest, v.created, v.aliases)
        for v in api.versions(destination, stores=stores)
    ]
    assert here == there and there[0][3] == ("best",)
    again = api.mirror(path, destination, stores=disk)  # nothing left to do
    assert (again.versions_copied, again.records, again.pending, again.bytes_copied) == (0, 0, 0, 0)

    # the proposal carried over can be approved at the far end, which then is ahead
    done = api.approve(
        f"{destination}:v4", "staging", key(keys, "bob"), policy=policy, stores=stores
    )
    assert done.status == "promoted"
    with pytest.raises(ConflictError, match="staging is at record 1 there, ahead"):
        api.mirror(path, destination, stores=disk)


# ----- one stage -------------------------------------------------------------------------------


def test_stage_production_copies_its_chain_and_the_models_it_names(
    stores: Stores, registry, keys: Path, tmp_path: Path, cli: Cli
) -> None:
    path = unique_repo("ml/fraud")
    models = push_versions(stores, path, tmp_path, 4)  # on the local store
    alice, policy = key(keys, "alice"), policy_of(keys)
    api.promote(f"{path}:v1", "production", alice, policy=policy, stores=stores)
    api.promote(f"{path}:v3", "production", alice, policy=policy, stores=stores)
    destination = f"{registry.host}/{path}"
    result = cli("copy", path, destination, "--stage", "production", "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert (
        body["versions"] == [1, 3] and body["records"] == 2 and body["stageTags"] == ["production"]
    )
    tags = repository(stores, destination).list_tags()
    assert {"v1", "v3", "production", promotion_tag("production", 2)} <= set(tags)
    assert not {"v2", "v4", "archived", promotion_tag("archived", 1)} & set(tags)
    verified = api.verify(f"{destination}:production", policy=policy, stores=stores)
    assert verified.digest == models[2]
    # the chain's earlier model came along, so a rollback works at the destination
    back = api.rollback(destination, "production", alice, policy=policy, stores=stores)
    assert back.digest == models[0]

    missing = cli("copy", path, destination, "--stage", "staging")
    assert missing.returncode == 3 and "no stage 'staging'" in missing.stderr


# ----- refusals --------------------------------------------------------------------------------


def test_a_destination_with_another_history_is_refused_before_anything_is_copied(
    stores: Stores, keys: Path, tmp_path: Path
) -> None:
    source, destination = unique_repo("fraud"), unique_repo("fraud")
    push_versions(stores, source, tmp_path, 2)
    push_versions(stores, destination, tmp_path, 1)  # a different v1
    before = digests(repository(stores, destination))
    with pytest.raises(ConflictError, match=r"v1 is sha256:\w+ there") as caught:
        api.mirror(source, destination, stores=stores)
    assert caught.value.hint and "nothing was copied" in caught.value.hint
    assert digests(repository(stores, destination)) == before

    api.promote(f"{source}:v1", "production", key(keys, "alice"), stores=stores)
    with pytest.raises(InvalidInput, match="signed for the repository path"):
        api.mirror(source, unique_repo("fraud"), stores=stores)


def test_a_destination_chain_ahead_of_the_source_is_refused(
    stores: Stores, keys: Path, tmp_path: Path
) -> None:
    path = unique_repo("ml/fraud")
    other = Stores(home=tmp_path / "site-b", options=stores.options)
    push_versions(stores, path, tmp_path, 2)
    alice = key(keys, "alice")
    api.promote(f"{path}:v1", "production", alice, stores=stores)
    # site B gets a copy and then moves on by itself
    disk_path = tmp_path / "disk"
    carrier = Stores(home=disk_path, options=stores.options)
    for hop_from, hop_to in ((stores, carrier), (carrier, other)):
        _copy_between(hop_from, hop_to, path)
    api.promote(f"{path}:v2", "production", alice, stores=other)
    with pytest.raises(ConflictError, match="production is at record 2 there, ahead"):
        _copy_between(stores, other, path)


def _copy_between(source: Stores, destination: Stores, path: str) -> None:
    """Mirror ``path`` from one local store to another (two homes)."""
    from modelreg.mirror import mirror

    mirror(source.local.repository(path), destination.local.repository(path))


def test_cli_copy_flags(cli: Cli, stores: Stores, tmp_path: Path) -> None:
    source = unique_repo("fraud")
    push_versions(stores, source, tmp_path, 1)
    both = cli("copy", source, "elsewhere", "--all-versions", "--stage", "production")
    assert both.returncode == 2 and "exclude each other" in both.stderr
    one = cli("copy", f"{source}:v1", "elsewhere", "--all-versions")
    assert one.returncode == 2 and "names one model" in one.stderr
    single = cli("copy", f"{source}:v1", "elsewhere")  # one model, as before
    assert single.returncode == 0
    assert single.stdout.startswith(f"copied {source}:v1 to elsewhere@sha256:")
    assert single.stdout.rstrip().endswith(")") and " (v" in single.stdout  # names the version


def test_same_registry_mirror_mounts_blobs(stores: Stores, registry, tmp_path: Path) -> None:
    source = f"{registry.host}/{unique_repo()}"
    push_versions(stores, source, tmp_path, 2)
    api.tag(f"{source}:v1", "baseline", stores=stores)
    destination = f"{registry.host}/{unique_repo('ml/mirror')}"
    result = api.mirror(source, destination, stores=stores)
    assert result.blobs.get("mounted", 0) >= 4 and result.blobs.get("copied", 0) == 0
    assert digests(repository(stores, destination)) == digests(repository(stores, source))


# ----- interrupted, then run again ---------------------------------------------------------------


def kill_after(uploads: int, action: Callable[[], None]) -> Callable[[TransferEvent], None]:
    seen = 0

    def progress(event: TransferEvent) -> None:
        nonlocal seen
        if event.action == "upload":
            seen += 1
            if seen == uploads:
                action()

    return progress


def test_destination_registry_dying_mid_copy_then_rerun_finishes(
    stores: Stores, registry, make_registry, keys: Path, tmp_path: Path
) -> None:
    path = unique_repo("ml/fraud")
    source = f"{registry.host}/{path}"
    models = build_history(stores, source, tmp_path, keys)
    far = make_registry()
    destination = f"{far.host}/{path}"
    with pytest.raises(ModelregError):
        api.mirror(source, destination, stores=stores, progress=kill_after(4, far.kill))
    far.start()
    dst_repo = repository(stores, destination)
    tags = dst_repo.list_tags()
    assert "v1" in tags and "v4" not in tags  # it stopped part-way
    assert "production" not in tags and promotion_tag("production", 1) not in tags
    assert_complete(dst_repo)

    api.mirror(source, destination, stores=stores)
    assert digests(dst_repo) == digests(repository(stores, source))
    policy = policy_of(keys)
    assert api.verify(f"{destination}:production", policy=policy, stores=stores).digest == models[2]
    api.pull(f"{destination}:v4", tmp_path / "out", stores=stores)


def test_copy_process_killed_mid_way_then_rerun_finishes(
    stores: Stores, registry, keys: Path, tmp_path: Path, cli: Cli
) -> None:
    path = unique_repo("ml/fraud")
    models = build_history(stores, path, tmp_path, keys)  # the local store
    destination = f"{registry.host}/{path}"
    script = textwrap.dedent(
        """
        import os, signal, sys
        from modelreg import api
        seen = 0
        def progress(event):
            global seen
            if event.action == "upload":
                seen += 1
                if seen == 5:
                    os.kill(os.getpid(), signal.SIGKILL)
        api.mirror(sys.argv[1], sys.argv[2], progress=progress)
        """
    )
    env = {**os.environ, "MODELREG_HOME": str(stores.home)}
    killed = subprocess.run(
        [sys.executable, "-c", script, path, destination],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    dst_repo = repository(stores, destination)
    tags = dst_repo.list_tags()
    assert "v1" in tags and "production" not in tags
    assert_complete(dst_repo)

    finished = cli("copy", path, destination, "--all-versions")
    assert finished.returncode == 0, finished.stderr
    assert "stage tags set: archived, production" in finished.stdout
    assert digests(dst_repo) == digests(repository(stores, path))
    policy = policy_of(keys)
    assert api.verify(f"{destination}:production", policy=policy, stores=stores).digest == models[2]
