"""A registry that substitutes a layer's bytes gets nothing out of it beyond the refusal.

Two ways substituted bytes could still do harm before the digest check refuses them:

* A compressed layer decodes to far more than it is. A 64 KiB gzip stream is 64 MiB of
  zeros: decoded as it streamed, it filled the disk before the digest said no. Compressed
  layers (ModelPack, KitOps, images other tools recompressed) are decoded only once the
  whole blob verified, so a 2 MiB disk sees the compressed blob and a digest refusal.
* The kept bytes of a download (``$MODELREG_HOME/partial``, keyed by digest) are replayed
  into the next download of the blob, from any registry. Bytes that failed for another
  reason than a digest mismatch (here: a path too long to create) were kept, so every
  later pull of that layer, from an honest registry too, failed the same way.

The hostile side is :mod:`hostile_registry`; the client is the real CLI.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from helpers.hostile_registry import HostileRegistry, Reply, digest_of
from helpers.tars import member, tar_with

from modelreg.compression import LAYER_TAR_GZIP
from modelreg.oci import (
    ANNOTATION_TITLE,
    IMAGE_CONFIG,
    IMAGE_MANIFEST,
    MODEL_ARTIFACT,
    Descriptor,
    Manifest,
    image_config,
)

REPO = "ml/substituted"
MiB = 1 << 20
MODELPACK_CONFIG = "application/vnd.cncf.model.config.v1+json"
MODELPACK_WEIGHT_GZIP = "application/vnd.cncf.model.weight.v1.tar+gzip"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelreg", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def assert_one_line(done: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    assert done.returncode == code, done.stderr
    lines = done.stderr.splitlines()
    assert "Traceback" not in done.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], done.stderr
    assert len(lines) == 2 and lines[1].startswith("hint: "), done.stderr


def files_below(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def gzip_tar(entries: dict[str, bytes]) -> bytes:
    return gzip.compress(tar_with(*((member(name), data) for name, data in entries.items())))


HONEST_WEIGHTS = os.urandom(512 * 1024)  # random: its gzip stays ~512 KiB
HONEST = gzip_tar({"weights.bin": HONEST_WEIGHTS})
# ~64 KiB that decode to 64 MiB, with the paths each form puts its files at
BOMBS = {
    "modelpack": gzip_tar({"weights.bin": bytes(64 * MiB)}),
    "recompressed-image": gzip_tar({"model/weights.bin": bytes(64 * MiB)}),
}


def add_modelpack(server: HostileRegistry) -> str:
    config = json.dumps(
        {
            "descriptor": {"name": "tiny", "version": "1.0"},
            "config": {"format": "safetensors"},
            "modelfs": {"type": "layers", "diffIds": ["sha256:" + "0" * 64]},
        }
    ).encode()
    layer = Descriptor(MODELPACK_WEIGHT_GZIP, server.add_blob(REPO, HONEST), len(HONEST))
    manifest = Manifest(
        Descriptor(MODELPACK_CONFIG, server.add_blob(REPO, config), len(config)),
        (layer,),
        artifact_type="application/vnd.cncf.model.manifest.v1+json",
    )
    return server.add_manifest(REPO, manifest.to_bytes(), IMAGE_MANIFEST, ["v1"])


def add_recompressed_image(server: HostileRegistry) -> str:
    """A model image whose layer another tool gzipped (the config keeps the tar's diff_id)."""
    renamed = gzip_tar({"model/weights.bin": HONEST_WEIGHTS})
    config = image_config([digest_of(gzip.decompress(renamed))], {})
    layer = Descriptor(
        LAYER_TAR_GZIP, server.add_blob(REPO, renamed), len(renamed), {ANNOTATION_TITLE: "model"}
    )
    manifest = Manifest(
        Descriptor(IMAGE_CONFIG, server.add_blob(REPO, config), len(config)),
        (layer,),
        artifact_type=MODEL_ARTIFACT,
    )
    return server.add_manifest(REPO, manifest.to_bytes(), IMAGE_MANIFEST, ["v1"])


def the_layer(server: HostileRegistry) -> Descriptor:
    _, data = server.repo(REPO).manifests[server.repo(REPO).tags["v1"]]
    return Manifest.parse(data).layers[0]


@pytest.mark.parametrize("form", ["modelpack", "recompressed-image"])
def test_a_compression_bomb_in_place_of_a_layer_is_refused_before_it_is_decoded(
    hostile: HostileRegistry, small_disk: Path, tmp_path: Path, form: str
) -> None:
    (add_modelpack if form == "modelpack" else add_recompressed_image)(hostile)
    layer = the_layer(hostile)
    honest = run("pull", f"{hostile.host}/{REPO}:v1", str(small_disk / "honest"), cwd=tmp_path)
    assert honest.returncode == 0, honest.stderr  # the compressed copy fits beside the files
    (small_disk / "honest").chmod(0o755)
    subprocess.run(["rm", "-rf", str(small_disk / "honest")], check=True)

    hostile.override(hostile.blob_path(REPO, layer.digest), Reply(200, BOMBS[form]))
    done = run("pull", f"{hostile.host}/{REPO}:v1", str(small_disk / "out"), cwd=tmp_path)

    # decoded as it streamed, the 64 MiB of zeros filled the 2 MiB disk first (exit 10)
    assert_one_line(done, 6, layer.digest)
    assert files_below(small_disk) == []


# ----- kept bytes that are not the blob ------------------------------------------------------


def too_long_to_create(size: int) -> bytes:
    """A tar of exactly ``size`` bytes whose one file's path no file system can create."""
    deep = "/".join(["d" * 200] * 30)
    tar = tar_with((member(f"model/{deep}/f"), b"x"))
    assert len(tar) <= size
    return tar + bytes(size - len(tar))


def test_bytes_refused_for_what_they_hold_are_not_replayed_into_the_next_pull(
    hostile: HostileRegistry, tmp_path: Path
) -> None:
    weights = os.urandom(300_000)
    tar = tar_with((member("model/", tarfile.DIRTYPE), None), (member("model/w.bin"), weights))
    with HostileRegistry() as honest:
        honest.add_model(REPO, [("model", tar)], ["v1"])
        hostile.add_model(REPO, [("model", tar)], ["v1"])
        digest = digest_of(tar)
        hostile.override(hostile.blob_path(REPO, digest), Reply(200, too_long_to_create(len(tar))))

        refused = run("pull", f"{hostile.host}/{REPO}:v1", str(tmp_path / "a"), cwd=tmp_path)
        assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
        kept = Path(os.environ["MODELREG_HOME"]) / "partial" / f"sha256-{digest[7:]}"
        assert not kept.exists()

        done = run("pull", f"{honest.host}/{REPO}:v1", str(tmp_path / "b"), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "b" / "w.bin").read_bytes() == weights
