"""A copy the usual tools make is still the model (issue 16, item 3).

``skopeo copy`` with its defaults, ``docker push`` and ``podman push`` recompress the
layers (docker also converts to Docker v2 schema 2 and drops the annotations). The
config is copied as it is, so pull verifies every blob against its digest and the
uncompressed stream against the config's ``diff_ids``; lineage comes from the
config's labels when the annotations are gone.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from helpers.cli import Cli
from helpers.engines import podman_base
from helpers.models import unique_repo
from helpers.skips import binary_or_skip
from test_engines import tree_of

from modelreg import api
from modelreg.compression import DOCKER_LAYER_GZIP, LAYER_TAR_GZIP
from modelreg.digest import sha256_digest
from modelreg.errors import VerificationError
from modelreg.oci import DOCKER_MANIFEST, IMAGE_MANIFEST, Manifest
from modelreg.reference import parse_reference
from modelreg.store import Stores

METRICS = {"auc": 0.91}


def push_source(registry: Any, stores: Stores, model_dir: Path) -> api.PushResult:
    return api.push(
        model_dir,
        f"{registry.host}/{unique_repo()}",
        capture=False,
        metrics=METRICS,
        stores=stores,
    )


def check_copy(
    stores: Stores, cli: Cli, reference: str, source: api.PushResult, model_dir: Path, out: Path
) -> Manifest:
    """The copy is another manifest, and pull/inspect/lineage/show all treat it as the model."""
    info = api.inspect(reference, stores=stores)
    assert info.digest != source.digest  # really a different image manifest
    original = api.inspect(source.reference, stores=stores)
    assert info.manifest.config.digest == original.manifest.config.digest  # same image ID
    assert info.lineage is not None and info.lineage.metrics == METRICS
    pulled = cli("pull", reference, str(out))
    assert pulled.returncode == 0, pulled.stderr
    assert tree_of(out) == tree_of(model_dir)
    for command in ("lineage", "show"):
        shown = cli(command, reference, "--json")
        assert shown.returncode == 0, (command, shown.stderr)
        assert "0.91" in shown.stdout
    return info.manifest


def test_skopeo_default_copy_is_pulled_and_verified(
    registry: Any, skopeo: str, stores: Stores, model_dir: Path, cli: Cli, tmp_path: Path
) -> None:
    source = push_source(registry, stores, model_dir)
    mirror = f"{registry.host}/{unique_repo('mirror/skopeo')}"
    subprocess.run(
        [
            skopeo,
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--src-no-creds",
            "--dest-no-creds",
            f"docker://{source.reference}",
            f"docker://{mirror}:copied",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    manifest = check_copy(stores, cli, f"{mirror}:copied", source, model_dir, tmp_path / "out")
    assert {layer.media_type for layer in manifest.layers} == {LAYER_TAR_GZIP}


@pytest.mark.engines
def test_docker_push_round_trip(
    registry: Any, dockerd: Any, stores: Stores, model_dir: Path, cli: Cli, tmp_path: Path
) -> None:
    source = push_source(registry, stores, model_dir)
    copy = f"{registry.host}/{unique_repo('mirror/docker')}:pushed"
    for args in (("pull", source.reference), ("tag", source.reference, copy), ("push", copy)):
        done = dockerd.cli(*args)
        assert done.returncode == 0, (args, done.stderr, dockerd.log_tail())
    manifest = check_copy(stores, cli, copy, source, model_dir, tmp_path / "out")
    assert manifest.media_type == DOCKER_MANIFEST
    assert {layer.media_type for layer in manifest.layers} == {DOCKER_LAYER_GZIP}
    assert not manifest.annotations  # docker dropped them: lineage came from the labels


@pytest.mark.engines
def test_podman_push_round_trip(
    registry: Any, stores: Stores, model_dir: Path, cli: Cli, tmp_path: Path, engines_tmp: Path
) -> None:
    podman = binary_or_skip("podman")
    source = push_source(registry, stores, model_dir)
    copy = f"{registry.host}/{unique_repo('mirror/podman')}:pushed"
    storage = Path(tempfile.mkdtemp(prefix="pd-", dir=engines_tmp))  # podman: runroot < 50 chars
    base = podman_base(podman, storage)
    (storage / "config.json").write_text('{"auths": {}}')
    env = {
        **os.environ,
        "DOCKER_CONFIG": str(storage),
        "REGISTRY_AUTH_FILE": str(storage / "config.json"),
    }
    try:
        for args in (
            ("pull", "--tls-verify=false", source.reference),
            ("tag", source.reference, copy),
            ("push", "--tls-verify=false", copy),
        ):
            done = subprocess.run(
                [*base, *args], capture_output=True, text=True, timeout=300, env=env
            )
            assert done.returncode == 0, (args, done.stderr)
    finally:
        subprocess.run(
            [*base, "system", "reset", "--force"], capture_output=True, timeout=120, env=env
        )
        shutil.rmtree(storage, ignore_errors=True)
    manifest = check_copy(stores, cli, copy, source, model_dir, tmp_path / "out")
    assert manifest.media_type == IMAGE_MANIFEST
    assert manifest.artifact_type is None  # podman dropped it: another manifest digest


def test_a_recompressed_layer_with_other_files_fails_the_diff_id(
    registry: Any, stores: Stores, model_dir: Path, cli: Cli, tmp_path: Path
) -> None:
    """Honest blob digests, but the gzip holds other files than the config names: exit 6."""
    source = push_source(registry, stores, model_dir)
    repository = stores.repository(parse_reference(source.reference))
    _, data = repository.fetch_manifest(source.digest)
    body = json.loads(data)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    # a name no layer of the source holds: the only thing wrong is the diff_id
    (other_dir / "other.bin").write_bytes(b"not the model" * 1000)
    other = api.push(other_dir, f"{registry.host}/{unique_repo()}", capture=False, stores=stores)
    other_repo = stores.repository(parse_reference(other.reference))
    _, other_data = other_repo.fetch_manifest(other.digest)
    first = Manifest.parse(other_data).layers[0]
    with other_repo.open_blob(first) as raw:
        forged = gzip.compress(raw.read())
    repository.push_blob([forged], len(forged), sha256_digest(forged))
    body["layers"][0].update(
        mediaType=LAYER_TAR_GZIP, digest=sha256_digest(forged), size=len(forged)
    )
    forged_manifest = json.dumps(body).encode()
    repository.push_manifest(forged_manifest, IMAGE_MANIFEST, ["forged"])
    target = f"{source.repository}:forged"
    result = cli("pull", target, str(tmp_path / "out"))
    assert result.returncode == 6, result.stderr
    assert "diff_id" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_copy_under_a_stage_tag_is_not_the_signed_model(
    registry: Any,
    skopeo: str,
    stores: Stores,
    model_dir: Path,
    cli: Cli,
    keys: Path,
    tmp_path: Path,
) -> None:
    """Records sign the manifest digest; a recompressed copy (same config, other digest)
    put under the stage tag fails verification with the reason, and a read of the stage
    resolves the signed digest, never the copy."""
    from modelreg.policy import policy_from_keys
    from modelreg.signing import load_signing_key

    source = push_source(registry, stores, model_dir)
    policy = policy_from_keys([keys / "alice.pub"])
    alice = load_signing_key(keys / "alice.key")
    api.promote(source.reference, "production", alice, policy=policy, stores=stores)
    mirror = f"{registry.host}/{unique_repo('mirror/stage')}:copied"
    # skopeo's default copy to another repository recompresses; copied back under the
    # stage tag, it is the same image (same config) under another manifest digest
    for src, dst in ((source.reference, mirror), (mirror, f"{source.repository}:production")):
        subprocess.run(
            [
                skopeo,
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--src-no-creds",
                "--dest-no-creds",
                f"docker://{src}",
                f"docker://{dst}",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    repository = stores.repository(parse_reference(source.repository))
    moved = repository.resolve("production")
    assert moved is not None and moved.digest != source.digest
    with pytest.raises(VerificationError) as refused:
        api.verify(f"{source.repository}:production", policy=policy, stores=stores)
    assert source.digest in str(refused.value) and moved.digest in str(refused.value)
    # a read of the stage refuses too: nothing resolves a stage to a copy it did not sign
    out = str(tmp_path / "out")
    trust = str(keys / "alice.pub")
    result = cli("pull", f"{source.repository}:production", out, "--trust", trust)
    assert result.returncode == 7, result.stderr
    assert "moved without a signed promotion" in result.stderr
