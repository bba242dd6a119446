"""Push, pull, copy and inspect on the local store and on a real registry:2."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from helpers.cli import Cli
from helpers.models import unique_repo

from modelreg import api
from modelreg.errors import IntegrityError, InvalidInput, NotFound
from modelreg.oci import IMAGE_MANIFEST, MODEL_ARTIFACT
from modelreg.reference import parse_reference
from modelreg.store import Stores
from modelreg.store.layout import LayoutRepository
from modelreg.transfer import TransferEvent


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_push_then_pull_by_digest_gives_identical_files(
    stores: Stores, model_dir: Path, target: str, tmp_path: Path
) -> None:
    pushed = api.push(model_dir, target, stores=stores)
    assert pushed.version == 1 and not pushed.existed
    assert pushed.reference == f"{target}@{pushed.digest}"
    pulled = api.pull(pushed.reference, tmp_path / "out", stores=stores)
    assert pulled.digest == pushed.digest
    assert files_of(tmp_path / "out") == files_of(model_dir)
    assert (tmp_path / "out" / "serve.sh").stat().st_mode & 0o111


def test_same_inputs_same_digest_from_any_directory(
    stores: Stores, model_dir: Path, target: str, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "a" / "completely-different-name"
    shutil.copytree(model_dir, elsewhere)
    first = api.push(model_dir, target, capture=False, stores=stores)
    second = api.push(elsewhere, unique_repo("other"), capture=False, stores=stores)
    assert first.digest == second.digest


def test_push_again_is_a_no_op(stores: Stores, model_dir: Path, target: str) -> None:
    first = api.push(model_dir, target, capture=False, stores=stores)
    events: list[TransferEvent] = []
    again = api.push(model_dir, target, capture=False, stores=stores, progress=events.append)
    assert (again.version, again.digest, again.existed) == (1, first.digest, True)
    assert again.uploaded == 0
    assert {e.action for e in events} == {"exists"}


def test_changed_small_file_uploads_only_the_small_layer(
    stores: Stores, model_dir: Path, target: str
) -> None:
    api.push(model_dir, target, capture=False, stores=stores)
    (model_dir / "config.json").write_text('{"hidden": 1024}\n')
    second = api.push(model_dir, target, capture=False, stores=stores)
    assert second.version == 2
    assert 0 < second.uploaded < 100_000


def test_single_file_model(stores: Stores, tmp_path: Path, target: str) -> None:
    weights = tmp_path / "model.pkl"
    weights.write_bytes(b"\x80\x04pickle")
    pushed = api.push(weights, target, capture=False, stores=stores)
    api.pull(pushed.reference, tmp_path / "out", stores=stores)
    assert files_of(tmp_path / "out") == {"model.pkl": b"\x80\x04pickle"}


def test_manifest_is_a_real_oci_image(stores: Stores, model_dir: Path, target: str) -> None:
    pushed = api.push(model_dir, target, capture=False, stores=stores)
    info = api.inspect(pushed.reference, stores=stores)
    manifest = info.manifest
    assert info.media_type == IMAGE_MANIFEST
    assert manifest.artifact_type == MODEL_ARTIFACT
    assert manifest.config.media_type == "application/vnd.oci.image.config.v1+json"
    assert all(
        layer.media_type == "application/vnd.oci.image.layer.v1.tar" for layer in manifest.layers
    )
    titles = [layer.annotations["dev.modelreg.title"] for layer in manifest.layers]
    assert titles[:2] == ["model", "weights.bin"]
    repo = stores.repository(parse_reference(target))
    _, config_bytes = repo.fetch_manifest(pushed.digest)  # manifest bytes hash to the digest
    assert hashlib.sha256(config_bytes).hexdigest() == pushed.digest.split(":")[1]
    from modelreg.transfer import read_small_blob

    config = json.loads(read_small_blob(repo, manifest.config, 1 << 20))
    assert config["os"] == "linux" and config["architecture"] == "amd64"
    assert config["rootfs"]["diff_ids"] == [layer.digest for layer in manifest.layers]
    assert set(info.files) == {"config.json", "serve.sh", "tokenizer/vocab.txt", "weights.bin"}


def test_registry_receives_exactly_the_hashed_manifest_bytes(
    stores: Stores, model_dir: Path, registry
) -> None:
    target = f"{registry.host}/{unique_repo()}"
    pushed = api.push(model_dir, target, stores=stores)
    repository = target.split("/", 1)[1]
    raw = requests.get(
        f"{registry.url}/v2/{repository}/manifests/{pushed.digest}",
        headers={"Accept": IMAGE_MANIFEST},
        timeout=10,
    )
    assert "sha256:" + hashlib.sha256(raw.content).hexdigest() == pushed.digest
    assert raw.headers["Docker-Content-Digest"] == pushed.digest


def test_second_repository_on_the_same_registry_mounts_blobs(
    stores: Stores, model_dir: Path, registry
) -> None:
    api.push(model_dir, f"{registry.host}/{unique_repo()}", capture=False, stores=stores)
    events: list[TransferEvent] = []
    second = api.push(
        model_dir,
        f"{registry.host}/{unique_repo()}",
        capture=False,
        stores=stores,
        progress=events.append,
    )
    assert second.uploaded == 0
    assert "mounted" in {e.action for e in events}


# ----- pull: verification and all-or-nothing ----------------------------------------------------


def corrupt_blob(stores: Stores, target: str, digest: str, registry) -> None:
    ref = parse_reference(target)
    hexdigest = digest.split(":")[1]
    if ref.is_local:
        repo = stores.repository(ref)
        assert isinstance(repo, LayoutRepository)
        path = repo.blob_path(digest)
    else:
        path = (
            Path(registry.root)
            / "docker/registry/v2/blobs/sha256"
            / hexdigest[:2]
            / hexdigest
            / "data"
        )
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def test_corrupted_blob_fails_pull_and_leaves_nothing(
    stores: Stores, model_dir: Path, target: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    pushed = api.push(model_dir, target, capture=False, stores=stores)
    info = api.inspect(pushed.reference, stores=stores)
    weights = next(
        layer
        for layer in info.manifest.layers
        if layer.annotations.get("dev.modelreg.title") == "weights.bin"
    )
    registry = None if parse_reference(target).is_local else request.getfixturevalue("registry")
    corrupt_blob(stores, target, weights.digest, registry)
    with pytest.raises(IntegrityError, match="does not match"):
        api.pull(pushed.reference, tmp_path / "out", stores=stores)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_pull_refuses_a_non_empty_destination_unless_forced(
    stores: Stores, model_dir: Path, tmp_path: Path
) -> None:
    pushed = api.push(model_dir, unique_repo("fraud"), capture=False, stores=stores)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="not empty"):
        api.pull(pushed.reference, out, stores=stores)
    assert (out / "keep.txt").read_text() == "mine"
    api.pull(pushed.reference, out, force=True, stores=stores)
    assert files_of(out) == files_of(model_dir)


def test_bare_name_pulls_the_latest_version(
    stores: Stores, model_dir: Path, tmp_path: Path
) -> None:
    repo = unique_repo("fraud")
    api.push(model_dir, repo, capture=False, stores=stores)
    (model_dir / "config.json").write_text("{}")
    latest = api.push(model_dir, repo, capture=False, stores=stores)
    assert api.pull(repo, tmp_path / "out", stores=stores).digest == latest.digest


@pytest.mark.parametrize(
    "reference",
    ["{repo}:v99", "{repo}@sha256:" + "0" * 64, "{base}/does-not-exist:v1"],
)
def test_unknown_tag_digest_or_repository(
    stores: Stores, model_dir: Path, target: str, reference: str, tmp_path: Path
) -> None:
    api.push(model_dir, target, capture=False, stores=stores)
    base = target.rsplit("/", 1)[0] if "/" in target else "nothing"
    ref = reference.format(repo=target, base=base)
    with pytest.raises(NotFound) as caught:
        api.pull(ref, tmp_path / "out", stores=stores)
    assert caught.value.hint
    assert not (tmp_path / "out").exists()


# ----- copy: any store to any store ---------------------------------------------------------------


def test_copy_local_to_registry_to_local_keeps_the_digest(
    stores: Stores, model_dir: Path, registry, tmp_path: Path
) -> None:
    local = unique_repo("fraud")
    pushed = api.push(model_dir, local, stores=stores)
    remote = f"{registry.host}/{unique_repo()}"
    copied = api.copy(pushed.reference, remote, stores=stores)
    assert (copied.repository, copied.digest) == (remote, pushed.digest)
    assert copied.reference == f"{remote}@{pushed.digest}"
    assert copied.version == 1
    assert copied.to_dict() == {
        "repository": remote,
        "digest": pushed.digest,
        "reference": copied.reference,
        "version": 1,
    }
    digest = copied.digest
    other_home = Stores(home=tmp_path / "airgap")
    back = api.copy(f"{remote}@{digest}", "fraud-airgapped", stores=other_home).digest
    assert back == pushed.digest
    api.pull(f"fraud-airgapped@{digest}", tmp_path / "out", stores=other_home)
    assert files_of(tmp_path / "out") == files_of(model_dir)


# ----- peers: skopeo reads what we write --------------------------------------------------------


def skopeo_json(*args: str) -> dict:
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_skopeo_reads_registry_and_layout(
    stores: Stores, model_dir: Path, registry, skopeo
) -> None:
    remote = f"{registry.host}/{unique_repo()}"
    pushed = api.push(model_dir, remote, stores=stores)
    seen = skopeo_json("inspect", "--tls-verify=false", f"docker://{remote}:v1")
    assert seen["Digest"] == pushed.digest
    assert seen["Labels"]["dev.modelreg.lineage"] == "1"
    local = unique_repo("fraud")
    api.push(model_dir, local, stores=stores)
    layout = stores.home / "oci" / local
    assert skopeo_json("inspect", f"oci:{layout}:v1")["Digest"] == pushed.digest


def test_skopeo_copy_preserves_the_digest_and_we_verify_the_copy(
    stores: Stores, model_dir: Path, registry, skopeo, tmp_path: Path
) -> None:
    source = f"{registry.host}/{unique_repo()}"
    pushed = api.push(model_dir, source, stores=stores)
    copied = f"{registry.host}/{unique_repo('copied')}"
    result = subprocess.run(
        [
            "skopeo",
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"docker://{source}@{pushed.digest}",
            f"docker://{copied}:v1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    pulled = api.pull(f"{copied}:v1", tmp_path / "out", stores=stores)
    assert pulled.digest == pushed.digest
    assert files_of(tmp_path / "out") == files_of(model_dir)


# ----- the CLI ----------------------------------------------------------------------------------


def test_cli_round_trip_json(cli: Cli, model_dir: Path, registry, tmp_path: Path) -> None:
    remote = f"{registry.host}/{unique_repo()}"
    pushed = cli("push", str(model_dir), remote, "--json")
    assert pushed.returncode == 0, pushed.stderr
    result = json.loads(pushed.stdout)
    assert {"repository", "digest", "reference", "version"} <= set(result)
    assert result["reference"] == f"{remote}@{result['digest']}"
    shown = cli("inspect", result["reference"], "--json")
    assert json.loads(shown.stdout)["digest"] == result["digest"]
    pulled = cli("pull", result["reference"], str(tmp_path / "out"))
    assert pulled.returncode == 0, pulled.stderr
    assert files_of(tmp_path / "out") == files_of(model_dir)


def test_cli_embedded_default_round_trip(cli: Cli, model_dir: Path, tmp_path: Path) -> None:
    pushed = cli("push", str(model_dir), "fraud", "--json")
    assert pushed.returncode == 0, pushed.stderr
    digest = json.loads(pushed.stdout)["digest"]
    assert cli("pull", f"fraud@{digest}", str(tmp_path / "out")).returncode == 0
    assert files_of(tmp_path / "out") == files_of(model_dir)


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["push", "/nonexistent/model", "fraud"], 3, "model path does not exist"),
        (["push", "{model}", "Bad Name"], 2, "invalid"),
        (["pull", "fraud@sha256:123", "{out}"], 2, "invalid digest"),
        (["pull", "never-pushed", "{out}"], 3, "no model repository"),
        (["push", "{model}", "fraud", "-m", "auc=high"], 2, "not a number"),
        (["push", "{model}", "fraud", "--annotation", "novalue"], 2, "KEY=VALUE"),
    ],
)
def test_cli_bad_input_is_one_clear_line(
    args: list[str], code: int, fragment: str, model_dir: Path, tmp_path: Path
) -> None:
    argv = [a.format(model=model_dir, out=tmp_path / "out") for a in args]
    result = Cli.process(*argv)
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("error: ") and fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    assert "hint: " in result.stderr


def test_unreachable_registry_fails_fast(model_dir: Path) -> None:
    from helpers.processes import free_port

    started = time.monotonic()
    result = Cli.process("push", str(model_dir), f"127.0.0.1:{free_port()}/ml/x")
    assert result.returncode == 5
    assert "cannot reach registry" in result.stderr
    assert time.monotonic() - started < 30  # oras-py's default retry loop takes ~130 s


def test_black_holed_registry_fails_within_the_timeout(model_dir: Path) -> None:
    """A listener that accepts TCP but never answers must not hang the client."""
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]
        started = time.monotonic()
        result = Cli.process(
            "--timeout",
            "1",
            "push",
            str(model_dir),
            f"127.0.0.1:{port}/ml/x",
            env={"MODELREG_PLAIN_HTTP": "1"},
        )
    assert result.returncode == 5, result.stderr
    assert time.monotonic() - started < 60
