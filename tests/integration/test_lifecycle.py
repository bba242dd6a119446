"""The lifecycle from Python (modelreg.promote/approve/rollback/history/verify/gc/mirror)
against a real registry: results, the CLI's errors, the export table, the README pipeline."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.cli import Cli
from helpers.models import unique_repo, write_model
from helpers.registry import Registry

import modelreg
from modelreg.errors import InvalidInput, ModelregError, PolicyError, VerificationError
from modelreg.store import Stores

ROOT = Path(__file__).resolve().parents[2]

PINNED_EXPORTS = [
    "CopyResult",
    "GcReport",
    "History",
    "HistoryEntry",
    "ImportReport",
    "Lineage",
    "MirrorResult",
    "ModelInfo",
    "ModelregError",
    "PromotionResult",
    "PullResult",
    "PushResult",
    "Reference",
    "RegistryOptions",
    "ResolvedModel",
    "Resolver",
    "Stores",
    "VerifiedStage",
    "approve",
    "capture_lineage",
    "copy",
    "diff",
    "gc",
    "history",
    "import_model",
    "inspect",
    "load_key",
    "mirror",
    "parse_reference",
    "promote",
    "pull",
    "push",
    "rollback",
    "tag",
    "verify",
    "versions",
]


def test_export_table_is_pinned_and_each_name_is_its_definition() -> None:
    assert modelreg.__all__ == PINNED_EXPORTS
    table = modelreg._EXPORTS
    assert sorted(table) == sorted(PINNED_EXPORTS)
    for name, module in table.items():
        defined = getattr(importlib.import_module(f"modelreg.{module}"), name)
        assert getattr(modelreg, name) is defined, name
    # the lifecycle functions are the keyword forms, not api's positional ones
    assert modelreg.promote.__module__ == "modelreg.lifecycle"
    namespace: dict[str, object] = {}
    exec("from modelreg import *", namespace)
    assert set(PINNED_EXPORTS) <= set(namespace)


def write_policy(tmp_path: Path, keys: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(
        f"""
[keys]
alice = "{keys}/alice.pub"
bob = "{keys}/bob.pub"

[stages.staging]
signers = ["alice", "bob"]

[stages.production]
signers = ["alice", "bob"]
threshold = 2
gates = ["metrics.auc >= 0.9"]
"""
    )
    return path


def test_whole_lifecycle_from_python(
    registry: Registry, stores: Stores, keys: Path, tmp_path: Path
) -> None:
    repo = f"{registry.host}/{unique_repo('fraud')}"
    policy = write_policy(tmp_path, keys)
    pushed = [
        modelreg.push(
            write_model(tmp_path / f"m{n}", large=4096, seed=bytes([n])),
            repo,
            capture=False,
            metrics={"auc": 0.9 + n / 100},
            stores=stores,
        )
        for n in (1, 2, 3)
    ]

    staged = modelreg.promote(
        f"{repo}:v1", to="staging", key=keys / "alice.key", policy=policy, stores=stores
    )
    assert (staged.status, staged.stage, staged.version, staged.sequence) == (
        "promoted",
        "staging",
        1,
        1,
    )
    assert staged.digest == pushed[0].digest and staged.reference == pushed[0].reference
    assert staged.signers == ("alice",) and staged.pending_approvals == 0 and staged.moved

    # 2-of-2 for production: alice proposes, bob's approval moves the stage
    for model, version in ((f"{repo}:v2", 2), (f"{repo}:v3", 3)):
        proposed = modelreg.promote(
            model, to="production", key=str(keys / "alice.key"), policy=policy, stores=stores
        )
        assert (proposed.status, proposed.pending_approvals, proposed.needed) == ("pending", 1, 2)
        assert not proposed.moved
        approved = modelreg.approve(
            model, to="production", key=keys / "bob.key", policy=policy, stores=stores
        )
        assert (approved.status, approved.version, approved.pending_approvals) == (
            "promoted",
            version,
            0,
        )
        assert set(approved.signers) == {"alice", "bob"}
    assert approved.archived is not None and approved.archived.version == 2

    verified = modelreg.verify(f"{repo}:production", policy=policy, stores=stores)
    assert (verified.digest, verified.version) == (pushed[2].digest, 3)

    history = modelreg.history(repo, stage="production", policy=policy, stores=stores)
    assert [entry.stored.record.version for entry in history] == [2, 3]
    assert history.verified and len(history) == 2
    assert history.to_dict()[1]["fromVersion"] == 2

    # a bob-less rollback of a 2-of-2 stage is a proposal; bob's approval moves it back
    back = modelreg.rollback(
        repo, stage="production", key=keys / "alice.key", policy=policy, stores=stores
    )
    assert (back.status, back.version) == ("pending", 2)

    # gc through the CLI's option names: v1 is staging's, v2 and v3 production's chain
    report = modelreg.gc(repo, keep_last=0, dry_run=True, policy=policy, stores=stores)
    assert report.dry_run and report.removed == []
    assert {d.versions for d in report.plan.kept} == {(1,), (2,), (3,)}

    mirrored = repo.split("/", 1)[1]  # the local store, same path: the records verify there
    copied = modelreg.mirror(repo, mirrored, stage="production", stores=stores)
    assert copied.stages == ("production",) and 3 in copied.versions
    again = modelreg.verify(f"{mirrored}:production", trust=[keys / "alice.pub"], stores=stores)
    assert again.digest == pushed[2].digest


def test_lifecycle_errors_are_the_clis(
    registry: Registry, stores: Stores, keys: Path, tmp_path: Path, cli: Cli
) -> None:
    repo = f"{registry.host}/{unique_repo('fraud')}"
    policy = write_policy(tmp_path, keys)
    modelreg.push(
        write_model(tmp_path / "m", large=1024), repo, capture=False, metrics={"auc": 0.5}
    )

    cases = [
        (
            lambda: modelreg.promote(
                f"{repo}:v1", to="production", key=keys / "alice.key", policy=policy
            ),
            ["promote", f"{repo}:v1", "--to", "production", "--key", str(keys / "alice.key"),
             "--policy", str(policy)],
            PolicyError,
        ),
        (
            lambda: modelreg.verify(f"{repo}:production"),
            ["verify", f"{repo}:production"],
            VerificationError,
        ),
        (
            lambda: modelreg.rollback(repo, stage="staging", key=keys / "alice.key", policy=policy),
            ["rollback", repo, "--stage", "staging", "--key", str(keys / "alice.key"),
             "--policy", str(policy)],
            PolicyError,
        ),
        (
            lambda: modelreg.gc(f"{repo}:v1", keep_last=1),
            ["gc", f"{repo}:v1", "--keep-last", "1"],
            InvalidInput,
        ),
    ]  # fmt: skip
    for call, argv, kind in cases:
        with pytest.raises(kind) as caught:
            call()
        result = cli(*argv)
        error: ModelregError = caught.value
        assert result.returncode == error.exit_code, argv
        assert f"error: {error.message}\n" in result.stderr, argv
        assert error.hint and f"hint: {error.hint}\n" in result.stderr, argv

    with pytest.raises(InvalidInput, match="duration"):
        modelreg.promote(f"{repo}:v1", to="staging", key=keys / "alice.key", expires="soon")
    with pytest.raises(InvalidInput, match="either rules or"):
        from modelreg.retention import RetentionRules

        modelreg.gc(repo, rules=RetentionRules(keep_last=1), keep_last=2)


def readme_pipeline() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- pipeline-example[^>]*-->\n```python\n(.*?)```", text, re.DOTALL)
    assert match, "the README lost its pipeline example"
    return match.group(1)


def test_readme_pipeline_example_runs(registry: Registry, keys: Path, tmp_path: Path) -> None:
    code = readme_pipeline()
    repo = f"{registry.host}/{unique_repo('fraud')}"
    assert '"localhost:5000/ml/fraud"' in code
    code = code.replace('"localhost:5000/ml/fraud"', repr(repo))
    for suffix in ("key", "pub"):
        shutil.copy(keys / f"alice.{suffix}", tmp_path / f"ci.{suffix}")

    def run(auc: float, seed: bytes) -> str:
        write_model(tmp_path / "model", large=2048, seed=seed)
        script = code.replace('"auc": 0.93', f'"auc": {auc}')
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    first = run(0.93, b"one")
    assert first.startswith("staging -> v1 sha256:")
    assert run(0.92, b"two") == "kept staging: auc 0.92 does not beat 0.93\n"
    third = run(0.95, b"three")
    assert third.startswith("staging -> v3 sha256:")
    verified = modelreg.verify(f"{repo}:staging", trust=[keys / "alice.pub"])
    assert (verified.version, verified.digest) == (3, third.split()[-1])
