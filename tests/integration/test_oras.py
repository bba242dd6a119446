"""ORAS clients get true files: what oras-py writes from a modelreg model never lies.

ORAS reads ``org.opencontainers.image.title`` as "this blob is the file of that name";
modelreg's layers are tars, so they carry no such title and oras-py names each blob
by its digest. Every file it writes is then a tar whose members are the model files.
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest

from modelreg import api
from modelreg.store import Stores

oras_provider = pytest.importorskip("oras.provider", reason="oras-py (the bench extra)")


def test_oras_pull_writes_only_digest_named_tars(
    stores: Stores, registry, model_dir: Path, tmp_path: Path
) -> None:
    target = f"{registry.host}/ml/oras-{tmp_path.name[-12:]}"
    pushed = api.push(model_dir, target, capture=False, stores=stores)
    out = tmp_path / "oras-out"
    client = oras_provider.Registry(hostname=registry.host, insecure=True)
    written = [Path(p) for p in client.pull(target=f"{target}:v1", outdir=str(out))]
    assert written
    originals = {
        str(p.relative_to(model_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in model_dir.rglob("*")
        if p.is_file()
    }
    unpacked: dict[str, str] = {}
    for path in written:
        # named by the blob's digest, and holding exactly those bytes: nothing pretends
        assert path.name.startswith("sha256:"), path.name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name.split(":", 1)[1]
        assert path.name not in originals
        with tarfile.open(path) as archive:
            for member in archive.getmembers():
                if member.isfile() and member.name.startswith("model/"):
                    data = archive.extractfile(member).read()  # type: ignore[union-attr]
                    unpacked[member.name[len("model/") :]] = hashlib.sha256(data).hexdigest()
    assert unpacked == originals
    manifest = api.inspect(pushed.reference, stores=stores).manifest
    assert all("org.opencontainers.image.title" not in x.annotations for x in manifest.layers)
