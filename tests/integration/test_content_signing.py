"""OpenSSF model-signing content signatures, proven with the STOCK `model_signing` CLI.

Every "it verifies" below is the stock tool's verdict (``model_signing verify
key``), in both directions: bundles modelreg makes are checked by the stock
tool, and bundles the stock tool makes are attached and checked by modelreg.
The tool lives in ``<checkout>/.venv-tools`` (scripts/setup makes it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.cli import Cli
from helpers.models import unique_repo, write_model
from helpers.registry import Registry
from helpers.skips import STRICT_ENV, strict_mode

from modelreg import api
from modelreg.content_signatures import attach
from modelreg.content_signing import parse_bundle, sign_files
from modelreg.errors import IntegrityError, VerificationError
from modelreg.policy import load_policy
from modelreg.reference import parse_reference
from modelreg.resolver import Resolver
from modelreg.signing import generate_keypair, load_signing_key
from modelreg.store import Stores

STOCK_CLI = Path(__file__).resolve().parents[2] / ".venv-tools" / "bin" / "model_signing"


@pytest.fixture(scope="session")
def stock() -> Path:
    if not STOCK_CLI.exists():
        reason = f"the stock model_signing CLI is not installed at {STOCK_CLI} (run scripts/setup)"
        if strict_mode():
            pytest.fail(f"{reason} [{STRICT_ENV}=1 turns this skip into a failure]", pytrace=False)
        pytest.skip(reason)
    return STOCK_CLI


def stock_verify(stock: Path, model: Path, signature: Path, public_key: Path) -> bool:
    """The stock tool's verdict; its error is shown when it refuses."""
    done = subprocess.run(
        [
            str(stock),
            "verify",
            "key",
            str(model),
            "--signature",
            str(signature),
            "--public_key",
            str(public_key),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        print(done.stdout, done.stderr)
    return done.returncode == 0 and "Verification succeeded" in done.stdout


def stock_sign(stock: Path, model: Path, signature: Path, private_key: Path) -> None:
    subprocess.run(
        [
            str(stock),
            "sign",
            "key",
            str(model),
            "--signature",
            str(signature),
            "--private_key",
            str(private_key),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def copy_of(directory: Path, where: Path) -> Path:
    shutil.copytree(directory, where)
    return where


# ----- modelreg signs, the stock tool verifies -----------------------------------------------


def test_push_sign_pull_signature_verified_by_stock_tool(
    cli: Cli, stock: Path, keys: Path, model_dir: Path, target: str, tmp_path: Path
) -> None:
    pushed = cli("push", str(model_dir), target, "--sign", str(keys / "alice.key"), "--no-capture")
    assert pushed.returncode == 0, pushed.stderr
    out, sig = tmp_path / "out", tmp_path / "model.sig"
    pulled = cli("pull", f"{target}:v1", str(out), "--signature", str(sig))
    assert pulled.returncode == 0, pulled.stderr
    assert stock_verify(stock, out, sig, keys / "alice.pub")
    assert not stock_verify(stock, out, sig, keys / "bob.pub")  # wrong key

    changed = copy_of(out, tmp_path / "changed")
    (changed / "tokenizer" / "vocab.txt").write_text("a\nb\nX\n")
    assert not stock_verify(stock, changed, sig, keys / "alice.pub")
    added = copy_of(out, tmp_path / "added")
    (added / "extra.bin").write_bytes(b"payload")
    assert not stock_verify(stock, added, sig, keys / "alice.pub")
    removed = copy_of(out, tmp_path / "removed")
    (removed / "config.json").unlink()
    assert not stock_verify(stock, removed, sig, keys / "alice.pub")


def test_signature_written_inside_the_pulled_directory(
    cli: Cli, stock: Path, keys: Path, model_dir: Path, tmp_path: Path
) -> None:
    target = unique_repo("fraud")
    assert cli("push", str(model_dir), target, "--sign", str(keys / "alice.key")).returncode == 0
    out = tmp_path / "out"
    assert cli("pull", target, str(out), "--signature", str(out / "model.sig")).returncode == 0
    assert stock_verify(stock, out, out / "model.sig", keys / "alice.pub")


def test_encrypted_key_from_env_passphrase(
    cli: Cli,
    stock: Path,
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key_path, pub_path = generate_keypair(tmp_path, "locked", passphrase=b"s3cret")
    target = unique_repo("fraud")
    refused = cli("push", str(model_dir), target, "--sign", str(key_path))
    assert refused.returncode == 2 and "encrypted" in refused.stderr
    monkeypatch.setenv("MODELREG_KEY_PASSPHRASE", "s3cret")
    assert cli("push", str(model_dir), target, "--sign", str(key_path)).returncode == 0
    sig = tmp_path / "model.sig"
    assert cli("pull", target, str(tmp_path / "out"), "--signature", str(sig)).returncode == 0
    assert stock_verify(stock, tmp_path / "out", sig, pub_path)


# ----- the stock tool signs, modelreg attaches and verifies ----------------------------------


def test_stock_bundle_attached_verified_and_served_back(
    cli: Cli, stock: Path, keys: Path, model_dir: Path, target: str, tmp_path: Path
) -> None:
    bundle = tmp_path / "stock.sig"
    stock_sign(stock, model_dir, bundle, keys / "alice.key")
    pushed = cli("push", str(model_dir), target, "--signature", str(bundle), "--no-capture")
    assert pushed.returncode == 0, pushed.stderr

    verified = cli("verify", f"{target}:v1", "--trust", str(keys / "alice.pub"))
    assert verified.returncode == 0, verified.stderr
    assert "signed by alice" in verified.stdout
    untrusted = cli("verify", f"{target}:v1", "--trust", str(keys / "bob.pub"))
    assert untrusted.returncode == 7 and "trusted key" in untrusted.stderr

    out, sig = tmp_path / "out", tmp_path / "back.sig"
    assert cli("pull", f"{target}:v1", str(out), "--signature", str(sig)).returncode == 0
    assert sig.read_bytes() == bundle.read_bytes()  # the stock tool's bytes, unchanged
    assert stock_verify(stock, out, sig, keys / "alice.pub")


@pytest.mark.parametrize("change", ["changed", "added", "removed"])
def test_push_refuses_a_bundle_for_other_files(
    cli: Cli, stock: Path, keys: Path, model_dir: Path, tmp_path: Path, change: str
) -> None:
    bundle = tmp_path / "stock.sig"
    stock_sign(stock, model_dir, bundle, keys / "alice.key")
    if change == "changed":
        (model_dir / "config.json").write_text('{"hidden": 1024}\n')
    elif change == "added":
        (model_dir / "README.md").write_text("new\n")
    else:
        (model_dir / "serve.sh").unlink()
    target = unique_repo("fraud")
    refused = cli("push", str(model_dir), target, "--signature", str(bundle))
    assert refused.returncode == 7, refused.stderr
    assert "does not cover exactly" in refused.stderr and "hint:" in refused.stderr
    assert cli("versions", target).returncode == 3  # nothing was pushed


def test_push_refuses_a_damaged_bundle(cli: Cli, model_dir: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "junk.sig"
    bundle.write_text('{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}')
    refused = cli("push", str(model_dir), unique_repo("fraud"), "--signature", str(bundle))
    assert refused.returncode == 6 and "hint:" in refused.stderr


def test_git_files_are_left_out_as_the_stock_tool_does(
    cli: Cli, stock: Path, keys: Path, model_dir: Path, tmp_path: Path
) -> None:
    (model_dir / ".gitattributes").write_text("*.bin filter=lfs\n")
    bundle = tmp_path / "stock.sig"
    stock_sign(stock, model_dir, bundle, keys / "alice.key")
    target = unique_repo("fraud")
    assert cli("push", str(model_dir), target, "--signature", str(bundle)).returncode == 0
    assert cli("verify", target, "--trust", str(keys / "alice.pub")).returncode == 0


def test_single_file_model(cli: Cli, stock: Path, keys: Path, tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"w" * 4096)
    target = unique_repo("fraud")
    # the stock tool names a lone file '.', which no pulled directory can match
    stock_sign(stock, weights, tmp_path / "file.sig", keys / "alice.key")
    refused = cli("push", str(weights), target, "--signature", str(tmp_path / "file.sig"))
    assert refused.returncode == 7 and "single file" in refused.stderr
    assert cli("push", str(weights), target, "--sign", str(keys / "alice.key")).returncode == 0
    out, sig = tmp_path / "out", tmp_path / "dir.sig"
    assert cli("pull", target, str(out), "--signature", str(sig)).returncode == 0
    assert stock_verify(stock, out, sig, keys / "alice.pub")


def test_copy_carries_content_signatures(
    cli: Cli, stock: Path, keys: Path, model_dir: Path, registry: Registry, tmp_path: Path
) -> None:
    source = unique_repo("fraud")
    assert cli("push", str(model_dir), source, "--sign", str(keys / "alice.key")).returncode == 0
    destination = f"{registry.host}/{unique_repo()}"
    assert cli("copy", f"{source}:v1", destination).returncode == 0
    out, sig = tmp_path / "out", tmp_path / "copied.sig"
    assert cli("pull", destination, str(out), "--signature", str(sig)).returncode == 0
    assert stock_verify(stock, out, sig, keys / "alice.pub")


# ----- a pusher without the key ----------------------------------------------------------------


def test_a_bundle_moved_to_another_model_does_not_verify(
    cli: Cli, stores: Stores, stock: Path, keys: Path, target: str, tmp_path: Path
) -> None:
    signed = write_model(tmp_path / "a", large=1024)
    other = write_model(tmp_path / "b", large=2048)
    alice = load_signing_key(keys / "alice.key")
    api.push(signed, target, capture=False, sign=alice, stores=stores)
    pushed = api.push(other, target, capture=False, stores=stores)
    repo = stores.repository(parse_reference(target))
    # the attacker has push rights: copy v1's (genuine) bundle onto v2, and a bundle of
    # v2's files signed by mallory
    bundle_of_v1 = tmp_path / "v1.sig"
    api.pull(f"{target}:v1", tmp_path / "v1", signature=bundle_of_v1, stores=stores)
    model = repo.resolve(pushed.digest)
    assert model is not None
    attach(repo, model, bundle_of_v1.read_bytes())
    mallory = load_signing_key(keys / "mallory.key")
    attach(repo, model, sign_files({"config.json": "0" * 64}, "b", mallory))

    refused = cli("verify", f"{target}:v2", "--trust", str(keys / "alice.pub"))
    assert refused.returncode == 7 and "do not match its files" in refused.stderr
    out, sig = tmp_path / "out", tmp_path / "v2.sig"
    refused = cli("pull", f"{target}:v2", str(out), "--signature", str(sig))
    assert refused.returncode == 7 and not sig.exists()
    assert cli("verify", f"{target}:v2", "--trust", str(keys / "mallory.pub")).returncode == 7


def test_unsigned_version_fails_verify(cli: Cli, keys: Path, model_dir: Path) -> None:
    target = unique_repo("fraud")
    assert cli("push", str(model_dir), target).returncode == 0
    refused = cli("verify", f"{target}:v1", "--trust", str(keys / "alice.pub"))
    assert refused.returncode == 7 and "no content signature" in refused.stderr
    assert cli("verify", f"{target}:v1").returncode == 2  # no trusted keys given


# ----- stages: the policy can require a content signature ---------------------------------


def test_policy_requires_content_signature_for_production(
    cli: Cli, stores: Stores, stock: Path, keys: Path, model_dir: Path, target: str, tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(
        f"""
[keys]
alice = "{keys}/alice.pub"
bob = "{keys}/bob.pub"

[stages.production]
signers = ["alice"]
require_content_signature = true
"""
    )
    policy = load_policy(policy_file)
    bob = load_signing_key(keys / "bob.key")
    alice = load_signing_key(keys / "alice.key")
    api.push(model_dir, target, capture=False, sign=bob, stores=stores)  # bob may not sign prod
    api.promote(f"{target}:v1", "production", alice, policy=policy, stores=stores)
    refused = cli(
        "pull", f"{target}:production", str(tmp_path / "o1"), "--policy", str(policy_file)
    )
    assert refused.returncode == 7, refused.stderr
    assert not (tmp_path / "o1").exists()
    resolver = Resolver(policy=policy, cache_dir=tmp_path / "cache", stores=stores)
    with pytest.raises(VerificationError):
        resolver.fetch(resolver.resolve(target, "production"))
    assert cli("verify", f"{target}:production", "--policy", str(policy_file)).returncode == 7

    promoted = cli(
        "promote", f"{target}:v1", "--to", "production", "--key", str(keys / "alice.key"),
        "--policy", str(policy_file), "--sign-content",
    )  # fmt: skip
    assert promoted.returncode == 0, promoted.stderr
    out, sig = tmp_path / "o2", tmp_path / "prod.sig"
    pulled = cli(
        "pull", f"{target}:production", str(out), "--policy", str(policy_file),
        "--signature", str(sig),
    )  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    assert stock_verify(stock, out, sig, keys / "alice.pub")  # alice's, not bob's
    assert cli("verify", f"{target}:production", "--policy", str(policy_file)).returncode == 0

    fetched_sig = tmp_path / "fetched.sig"
    path = resolver.fetch(resolver.resolve(target, "production"), signature=fetched_sig)
    assert stock_verify(stock, path, fetched_sig, keys / "alice.pub")


def test_policy_setting_must_be_a_boolean(keys: Path, tmp_path: Path) -> None:
    from modelreg.errors import InvalidInput

    path = tmp_path / "policy.toml"
    path.write_text(
        f'[keys]\nalice = "{keys}/alice.pub"\n[stages.production]\n'
        'require_content_signature = "yes"\n'
    )
    with pytest.raises(InvalidInput, match="true or false"):
        load_policy(path)


# ----- the format reader ----------------------------------------------------------------------


def test_reader_rejects_inconsistent_subject_digest(keys: Path) -> None:
    import base64
    import json

    alice = load_signing_key(keys / "alice.key")
    bundle = json.loads(sign_files({"a": "1" * 64, "b": "2" * 64}, "m", alice))
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"].pop()
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(IntegrityError, match="subject digest"):
        parse_bundle(json.dumps(bundle).encode())


@pytest.mark.parametrize("name", ["../etc/passwd", "/abs", "a/./b", ""])
def test_reader_rejects_unsafe_names(keys: Path, name: str) -> None:
    import base64
    import hashlib
    import json

    alice = load_signing_key(keys / "alice.key")
    bundle = json.loads(sign_files({"a": "1" * 64}, "m", alice))
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["name"] = name
    statement["subject"][0]["digest"]["sha256"] = hashlib.sha256(
        bytes.fromhex("1" * 64)
    ).hexdigest()
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(IntegrityError):
        parse_bundle(json.dumps(bundle).encode())


# ----- OCI 1.1 referrers -------------------------------------------------------------------


def test_bundles_are_referrers_and_other_tools_bundles_count(
    stores: Stores, keys: Path, target: str, tmp_path: Path
) -> None:
    from modelreg import content_signatures
    from modelreg.content_signing import BUNDLE_MEDIA_TYPE
    from modelreg.oci import IMAGE_MANIFEST, Manifest
    from modelreg.store.referrers import attach_referrer, list_referrers

    model = write_model(tmp_path / "m", large=1024)
    alice = load_signing_key(keys / "alice.key")
    pushed = api.push(model, target, capture=False, sign=alice, stores=stores)
    repo = stores.repository(parse_reference(target))
    listed = list_referrers(repo, pushed.digest, BUNDLE_MEDIA_TYPE)
    assert len(listed) == 1

    # a bundle another tool attached as a plain referrer, without modelreg's tag, counts
    other = api.push(write_model(tmp_path / "n", large=2048), target, capture=False, stores=stores)
    subject = repo.resolve(other.digest)
    assert subject is not None
    files = content_signatures.model_files(
        repo, Manifest.parse(repo.fetch_manifest(other.digest)[1])
    )
    bundle = sign_files(files, "n", alice)
    blob = repo.push_blob([bundle], len(bundle))
    config = repo.push_blob([b"{}"], 2)
    manifest = Manifest(
        config=content_signatures.empty_config_descriptor(),
        layers=(content_signatures.Descriptor(BUNDLE_MEDIA_TYPE, blob, len(bundle)),),
        artifact_type=BUNDLE_MEDIA_TYPE,
        subject=subject,
    )
    assert config == manifest.config.digest
    attach_referrer(repo, manifest.to_bytes(), IMAGE_MANIFEST, subject)
    trusted = {alice.key_id: alice.public_key}
    found = content_signatures.verify_model(repo, other.digest, trusted, "n")
    assert [item.key for item in found] == [alice.public_key]
