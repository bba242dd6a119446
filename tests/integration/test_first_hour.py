"""What a new user meets in the first hour (issue 22): the help, the trust policy in
force, refusals that name the rule, history, versions, diff, and the demo's arguments."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from helpers.cli import Cli
from helpers.models import unique_repo

from modelreg import api
from modelreg.lineage import CodeInfo, Lineage, diff_lineage
from modelreg.signing import load_public_key
from modelreg.store import Stores

ROOT = Path(__file__).resolve().parents[2]


def _policy(tmp_path: Path, keys: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(
        f'[keys]\nalice = "{keys}/alice.pub"\nbob = "{keys}/bob.pub"\ncarol = "{keys}/carol.pub"\n'
        '[stages.production]\nsigners = ["alice", "bob", "carol"]\nthreshold = 2\n'
    )
    return path


def _push(cli: Cli, tmp_path: Path, repo: str, content: bytes, *extra: str) -> None:
    model = tmp_path / f"model-{content.hex()[:8]}"
    model.mkdir()
    (model / "weights.bin").write_bytes(content)
    result = cli("push", str(model), repo, "--no-capture", *extra)
    assert result.returncode == 0, result.stderr


# ----- help ---------------------------------------------------------------------------------


def test_help_groups_commands_by_workflow_without_cutting_them(cli: Cli) -> None:
    shown = cli("--help")
    assert shown.returncode == 0
    text = shown.stdout
    panels = ["Models:", "Stages (signed promotion):", "Serving and deploying:"]
    panels.append("Maintenance and registries:")
    assert [text.index(p) for p in panels] == sorted(text.index(p) for p in panels)
    commands = text[text.index("Models:") :]
    assert "..." not in commands and "…" not in commands  # no summary cut short
    assert re.search(r"^  diff +What changed between two versions: data, code", text, re.M)
    assert "README 'References'" in text  # the one place that describes references
    assert cli("--version").stdout.startswith("modelreg 0.1.0")


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        (["push"], "push [OPTIONS] PATH REPO"),
        (["promote"], "promote [OPTIONS] REF"),
        (["pull"], "pull [OPTIONS] REF DEST"),
        (["key", "generate"], "generate [OPTIONS] NAME"),
    ],
)
def test_metavars_read_as_words(cli: Cli, command: list[str], usage: str) -> None:
    text = cli(*command, "--help").stdout
    assert usage in text
    assert "{" not in text and "<str>" not in text and "<path>" not in text
    if command == ["promote"]:
        assert "--key KEY" in text and "--policy FILE" in text and "--trust PUBKEY" in text


# ----- the trust policy in force, and refusals that name the rule ------------------------


def test_a_record_without_a_policy_says_so_and_a_found_policy_is_always_used(
    cli: Cli, keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = unique_repo("fraud")
    _push(cli, tmp_path, repo, b"one")
    alone = cli("promote", f"{repo}:v1", "--to", "production", "--key", str(keys / "alice.key"))
    assert alone.returncode == 0, alone.stderr
    assert "note: no trust policy" in alone.stderr and "alice.key alone" in alone.stderr

    # that record now fails the stricter policy, with the rule that refuses it
    monkeypatch.setenv("MODELREG_POLICY", str(_policy(tmp_path, keys)))
    refused = cli("verify", f"{repo}:production")
    assert refused.returncode == 7
    assert "too few signatures: 1 of 2 required: alice; missing: bob or carol" in refused.stderr
    assert "hint:" in refused.stderr

    # with the policy found in MODELREG_POLICY, a move waits for the threshold (no note),
    # and building on the under-signed head is the recovery: the chain verifies again
    _push(cli, tmp_path, repo, b"two")
    proposed = cli("promote", f"{repo}:v2", "--to", "production", "--key", str(keys / "alice.key"))
    assert proposed.returncode == 0, proposed.stderr
    assert "note: no trust policy" not in proposed.stderr
    assert "proposed v2 for production (record 2): 1 of 2 signatures" in proposed.stdout
    waiting = cli("history", repo)
    assert waiting.returncode == 7  # record 1 is the head and fails: a non-zero exit
    assert re.search(r"^… \S+ +production +2 pending +v2 .*alice \(1 of 2", waiting.stdout, re.M)
    approved = cli("approve", f"{repo}:v2", "--to", "production", "--key", str(keys / "bob.key"))
    assert approved.returncode == 0, approved.stderr
    assert "production -> v2 (record 2, signed by alice, bob)" in approved.stdout
    assert cli("verify", f"{repo}:production").returncode == 0
    shown = cli("history", repo)
    assert shown.returncode == 0, shown.stdout
    rows = [line.split() for line in shown.stdout.splitlines() if " production " in line]
    assert [(r[0], r[3]) for r in rows] == [("✓", "1"), ("✓", "2")]  # record 1 is no head now


def test_re_promoting_the_model_an_under_signed_head_holds_signs_it_again(
    cli: Cli, keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = unique_repo("fraud")
    _push(cli, tmp_path, repo, b"one")
    alice = str(keys / "alice.key")
    assert cli("promote", f"{repo}:v1", "--to", "production", "--key", alice).returncode == 0
    monkeypatch.setenv("MODELREG_POLICY", str(_policy(tmp_path, keys)))
    again = cli("promote", f"{repo}:v1", "--to", "production", "--key", alice)
    assert "already holds" not in again.stdout and "proposed v1" in again.stdout
    carol = str(keys / "carol.key")
    assert cli("approve", f"{repo}:v1", "--to", "production", "--key", carol).returncode == 0
    assert cli("verify", f"{repo}:production", "--json").returncode == 0


def test_an_untrusted_signer_is_named_apart(
    cli: Cli, keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = unique_repo("fraud")
    _push(cli, tmp_path, repo, b"one")
    mallory = str(keys / "mallory.key")
    assert cli("promote", f"{repo}:v1", "--to", "production", "--key", mallory).returncode == 0
    monkeypatch.setenv("MODELREG_POLICY", str(_policy(tmp_path, keys)))
    refused = cli("verify", f"{repo}:production")
    assert refused.returncode == 7
    assert "0 of 2 required: none; missing: alice or bob or carol" in refused.stderr
    assert "not trusted for production" in refused.stderr


def test_key_generate_prints_the_key_id_that_history_shows(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = cli("key", "generate", "dana", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    key_id = load_public_key(tmp_path / "dana.pub").key_id
    assert f"key id:      {key_id}" in made.stdout
    as_json = json.loads(cli("key", "generate", "erin", "--dir", str(tmp_path), "--json").stdout)
    assert as_json["keyId"] == load_public_key(tmp_path / "erin.pub").key_id
    repo = unique_repo("fraud")
    _push(cli, tmp_path, repo, b"one")
    dana = str(tmp_path / "dana.key")
    assert cli("promote", f"{repo}:v1", "--to", "staging", "--key", dana).returncode == 0
    unverified = cli("history", repo)  # no policy anywhere: signers are key ids
    assert unverified.returncode == 0 and key_id[:12] in unverified.stdout
    assert "nothing was verified" in unverified.stderr
    named = cli("history", repo, "--trust", str(tmp_path / "dana.pub"), "--json")
    assert [row["signers"] for row in json.loads(named.stdout)] == [["dana"]]


# ----- history, versions, resolve, diff -----------------------------------------------------


def test_history_is_in_time_order_across_stages(cli: Cli, keys: Path, tmp_path: Path) -> None:
    repo = unique_repo("fraud")
    _push(cli, tmp_path, repo, b"one")
    _push(cli, tmp_path, repo, b"two")
    alice = ["--key", str(keys / "alice.key")]
    for version, stage in (("v1", "staging"), ("v1", "production"), ("v2", "staging")):
        assert cli("promote", f"{repo}:{version}", "--to", stage, *alice).returncode == 0
        time.sleep(1.05)  # records carry whole seconds; one move a second orders them
    rows = json.loads(cli("history", repo, "--json", "--trust", str(keys / "alice.pub")).stdout)
    assert [(r["stage"], r["sequence"]) for r in rows] == [
        ("staging", 1),
        ("production", 1),
        ("staging", 2),
    ]
    assert [r["issuedAt"] for r in rows] == sorted(r["issuedAt"] for r in rows)


def test_versions_has_a_column_each_for_stages_aliases_and_metrics(
    cli: Cli, keys: Path, tmp_path: Path
) -> None:
    repo = unique_repo("fraud")
    _push(cli, tmp_path, repo, b"one", "-m", "auc=0.9", "--tag", "bert")
    alice = ["--key", str(keys / "alice.key")]
    assert cli("promote", f"{repo}:v1", "--to", "staging", *alice).returncode == 0
    lines = cli("versions", repo).stdout.splitlines()
    header = "VERSION DIGEST CREATED SIZE STAGES ALIASES METRICS"
    assert lines[0].split() == header.split()
    cells = lines[1].split()
    assert cells[0] == "v1" and cells[-3:] == ["staging", "bert", "auc=0.9"]


def test_resolve_prints_json_with_json(cli: Cli, keys: Path, tmp_path: Path) -> None:
    repo = unique_repo("fraud")
    _push(cli, tmp_path, repo, b"one")
    alice = ["--key", str(keys / "alice.key")]
    assert cli("promote", f"{repo}:v1", "--to", "production", *alice).returncode == 0
    trust = ["--trust", str(keys / "alice.pub")]
    shown = cli("resolve", repo, "--json", *trust)
    assert shown.returncode == 0 and json.loads(shown.stdout)["version"] == 1
    bad = cli("resolve", repo, "--format", "yaml", *trust)
    assert bad.returncode == 2 and "unknown --format 'yaml'" in bad.stderr
    assert "hint: use digest or ref, or --json" in bad.stderr


def test_diff_shows_only_real_changes_with_description_and_file_sizes(
    cli: Cli, tmp_path: Path, stores: Stores
) -> None:
    # no code recorded, then code without a remote: the remote is null on one side and
    # absent on the other, which is no change ("code.remote: null -> null" before)
    changes = diff_lineage(Lineage(), Lineage(code=CodeInfo(commit="a" * 40)))["code"]
    assert [c.path for c in changes] == ["code.commit", "code.dirty"]
    described = Lineage(description="retrained")
    assert [c.path for c in diff_lineage(Lineage(), described)["description"]] == ["description"]

    repo = unique_repo("fraud")
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "big.bin").write_bytes(os.urandom(9 * 1024 * 1024))
    api.push(model, repo, capture=False, stores=stores)
    (model / "config.json").write_text('{"hidden": 1024}')
    (model / "new.txt").write_text("hello")
    api.push(model, repo, capture=False, description="bigger", stores=stores)
    shown = cli("diff", f"{repo}:v1", f"{repo}:v2")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "  config.json: changed (2 B -> 16 B)" in lines
    assert "  new.txt: added (5 B)" in lines
    assert "  description: null -> bigger" in lines
    assert not any("big.bin" in line or "null -> null" in line for line in lines)
    (model / "big.bin").write_bytes(os.urandom(9 * 1024 * 1024 + 1))
    api.push(model, repo, capture=False, description="bigger", stores=stores)
    files = json.loads(cli("diff", f"{repo}:v2", f"{repo}:v3", "--json").stdout)["files"]
    assert files == [
        {
            "path": "big.bin",
            "before": files[0]["before"],
            "after": files[0]["after"],
            "sizeBefore": 9 * 1024 * 1024,
            "sizeAfter": 9 * 1024 * 1024 + 1,
        }
    ]


def test_pull_names_the_version(cli: Cli, tmp_path: Path) -> None:
    repo = unique_repo("fraud")
    _push(cli, tmp_path, repo, b"one")
    pulled = cli("pull", repo, str(tmp_path / "out"))
    assert pulled.returncode == 0 and re.match(rf"pulled {repo}@sha256:\w+ \(v1\)", pulled.stdout)
    data = json.loads(cli("pull", repo, str(tmp_path / "out2"), "--json").stdout)
    assert data["version"] == 1


# ----- the demo's arguments -------------------------------------------------------------------


def test_demo_refuses_bad_arguments_before_setting_anything_up(tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "something").write_text("x")
    kept = subprocess.run(
        [str(ROOT / "scripts" / "demo"), "--keep", str(full)], capture_output=True, text=True
    )
    assert kept.returncode == 2 and kept.stdout == ""
    assert f"error: {full} is not empty" in kept.stderr and "hint:" in kept.stderr
    unknown = subprocess.run(
        [str(ROOT / "scripts" / "demo"), "--bogus"], capture_output=True, text=True
    )
    assert unknown.returncode == 2 and "usage: scripts/demo [--keep DIR]" in unknown.stderr


def test_trust_keys_do_not_loosen_the_policy_a_stage_is_written_under(
    cli: Cli, keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--trust alice.pub beside a policy in MODELREG_POLICY must not commit on one signature."""
    repo = unique_repo("fraud")
    _push(cli, tmp_path, repo, b"one")
    monkeypatch.setenv("MODELREG_POLICY", str(_policy(tmp_path, keys)))
    alice = ["--key", str(keys / "alice.key"), "--trust", str(keys / "alice.pub")]
    proposed = cli("promote", f"{repo}:v1", "--to", "production", *alice)
    assert proposed.returncode == 0, proposed.stderr
    assert "proposed v1 for production (record 1): 1 of 2 signatures" in proposed.stdout
    assert cli("verify", f"{repo}:production").returncode in (3, 7)  # nothing committed
