"""Version claims on a registry without compare-and-swap: fast when alone, safe when not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers.models import unique_repo

from modelreg import api
from modelreg.oci import IMAGE_MANIFEST
from modelreg.reference import parse_reference
from modelreg.retention import RetentionRules
from modelreg.store import RegistryOptions, Stores
from modelreg.store import remote as remote_module
from modelreg.store.base import claim_marker, claim_tag_name, parse_claim_tag
from modelreg.store.remote import RemoteRepository
from modelreg.transfer import push_model


@pytest.fixture
def slow_settle(home: Path) -> Stores:
    """A settle delay nobody would sit through: the tests see every sleep instead."""
    return Stores(home=home, options=RegistryOptions(settle=30.0))


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []
    monkeypatch.setattr(remote_module.time, "sleep", recorded.append)
    return recorded


def tiny_model(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "weights.txt").write_text(text)
    return root


def pushed_manifest(stores: Stores, target: str, model: Path) -> bytes:
    """An untagged model manifest in the repository (what a rival pusher would have)."""
    repo = stores.repository(parse_reference(target))
    return push_model(repo, model, annotations={}).manifest_bytes


def test_a_claim_nobody_contests_takes_the_tag_without_waiting(
    slow_settle: Stores, sleeps: list[float], tmp_path: Path, registry
) -> None:
    target = f"{registry.host}/{unique_repo()}"
    first = api.push(tiny_model(tmp_path / "a", "a"), target, capture=False, stores=slow_settle)
    second = api.push(tiny_model(tmp_path / "b", "b"), target, capture=False, stores=slow_settle)
    assert (first.version, second.version) == (1, 2)
    assert sleeps == []
    repo = slow_settle.repository(parse_reference(target))
    # a decided claim is removed (this registry allows deletes): no tag noise is left
    assert [tag for tag in repo.list_tags() if parse_claim_tag(tag)] == []
    # claim tags are internal: they are neither versions nor aliases
    listed = api.versions(target, stores=slow_settle)
    assert [(v.version, v.aliases) for v in listed] == [(1, ()), (2, ())]


def test_a_rival_claim_that_wins_during_the_settle_delay_is_respected(
    slow_settle: Stores, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, registry
) -> None:
    target = f"{registry.host}/{unique_repo()}"
    repo = slow_settle.repository(parse_reference(target))
    assert isinstance(repo, RemoteRepository)
    mine = pushed_manifest(slow_settle, target, tiny_model(tmp_path / "mine", "mine"))
    rival = pushed_manifest(slow_settle, target, tiny_model(tmp_path / "rival", "rival"))
    rival_digest = repo.push_manifest(rival, IMAGE_MANIFEST).digest
    repo.push_manifest(rival, IMAGE_MANIFEST, [claim_tag_name(rival_digest, "v1")])

    def rival_lands(_: float) -> None:  # the rival took the fast path and writes v1 now
        repo.push_manifest(rival, IMAGE_MANIFEST, ["v1"])

    monkeypatch.setattr(remote_module.time, "sleep", rival_lands)
    assert repo.claim_tag("v1", mine, IMAGE_MANIFEST) is False
    current = repo.resolve("v1")
    assert current is not None and current.digest == rival_digest


def test_a_rival_claim_that_never_landed_does_not_block_the_tag(
    slow_settle: Stores, sleeps: list[float], tmp_path: Path, registry
) -> None:
    target = f"{registry.host}/{unique_repo()}"
    repo = slow_settle.repository(parse_reference(target))
    mine = pushed_manifest(slow_settle, target, tiny_model(tmp_path / "mine", "mine"))
    rival = pushed_manifest(slow_settle, target, tiny_model(tmp_path / "rival", "rival"))
    rival_digest = repo.push_manifest(rival, IMAGE_MANIFEST).digest
    # a rival that claimed v1 and died before writing it
    repo.push_manifest(rival, IMAGE_MANIFEST, [claim_tag_name(rival_digest, "v1")])
    assert repo.claim_tag("v1", mine, IMAGE_MANIFEST) is True
    assert len(sleeps) == 2  # settle before looking for a fast winner, settle after writing
    current = repo.resolve("v1")
    assert current is not None and current.digest != rival_digest


PUSHER = """
import json, sys, time
from pathlib import Path
from modelreg import api
from modelreg.store import RegistryOptions, Stores
model, target, start = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
stores = Stores(options=RegistryOptions(settle=0.2))
while not start.exists():
    time.sleep(0.005)
result = api.push(model, target, capture=False, stores=stores)
print(json.dumps({"version": result.version, "digest": result.digest}))
"""


def test_concurrent_pushes_end_with_consecutive_distinct_versions(tmp_path: Path, registry) -> None:
    target = f"{registry.host}/{unique_repo()}"
    start = tmp_path / "start"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    pushers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(PUSHER),
                str(tiny_model(tmp_path / f"m{i}", f"model {i}")),
                target,
                str(start),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "MODELREG_HOME": str(tmp_path / f"home{i}")},
        )
        for i in range(8)
    ]
    time.sleep(1.0)  # let every process import modelreg, so they really start together
    start.touch()
    results = []
    for pusher in pushers:
        out, err = pusher.communicate(timeout=120)
        assert pusher.returncode == 0, err
        results.append(json.loads(out))
    assert sorted(r["version"] for r in results) == list(range(1, 9))
    stores = Stores(home=tmp_path / "reader")
    listed = api.versions(target, stores=stores)
    assert {(v.version, v.digest) for v in listed} == {(r["version"], r["digest"]) for r in results}


def test_gc_removes_claims_left_behind_and_keeps_one_in_flight(
    stores: Stores, tmp_path: Path, registry
) -> None:
    target = f"{registry.host}/{unique_repo()}"
    pushed = api.push(tiny_model(tmp_path / "a", "a"), target, capture=False, stores=stores)
    repo = stores.repository(parse_reference(target))
    recent = now_stamp()
    left = {
        # decided long ago: v1 exists (a pusher killed before removing its claim)
        claim_tag_name(pushed.digest, "v1", "20261201T000000Z"): ("v1", "20261201T000000Z"),
        # a dead claimant's claim on a tag nobody took, two days old
        claim_tag_name(pushed.digest, "v9", "20261130T000000Z"): ("v9", "20261130T000000Z"),
        # in flight: a claim on a free tag, stamped now
        claim_tag_name(pushed.digest, "v2", recent): ("v2", recent),
    }
    for name, (tag, stamp) in left.items():
        repo.push_manifest(claim_marker(pushed.digest, tag, stamp), IMAGE_MANIFEST, [name])
    report = api.gc(target, RetentionRules(keep_last=1), stores=stores)
    claims = sorted(t for d in report.plan.deletions if d.kind == "claim" for t in d.tags)
    assert claims == sorted(list(left)[:2])
    remaining = [tag for tag in repo.list_tags() if parse_claim_tag(tag)]
    assert remaining == [list(left)[2]]
    assert repo.resolve("v1") is not None and repo.resolve(pushed.digest) is not None


def now_stamp() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
