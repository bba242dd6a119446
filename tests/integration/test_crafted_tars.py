"""Layers whose tar headers Python's tarfile and Go's archive/tar read differently.

An engine extracts an imported layer with Go's reader; modelreg checks it with its
own. A header the two read differently would let an engine extract what the check
never saw (umoci shows it below), so import and pull (and the resolver, which
unpacks with the same reader) refuse such a layer outright.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers.cli import Cli
from helpers.models import unique_repo
from helpers.skips import binary_or_skip
from helpers.tars import CRAFTED, endless_pax_size, nul_led_size, two_pax_headers
from test_import_blobs import KIT
from test_modelpack import KITFILE, push_artifact, repository

from modelreg.store import Stores

# 5,000 digits of PAX size: past Python's int-parsing limit (it was a traceback) and Go's int64
REFUSED = {
    **{name: (craft, "read differently") for name, craft in CRAFTED.items()},
    "endless-pax-size": (endless_pax_size, "malformed pax size"),
}


@pytest.mark.parametrize(("craft", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_pull_refuses_a_layer_go_reads_differently_and_writes_nothing(
    stores: Stores, registry: Any, cli: Cli, tmp_path: Path, craft: Any, message: str
) -> None:
    """(``import`` refuses them in test_import_blobs.py, with the other hostile tars.)"""
    name = f"{registry.host}/{unique_repo('crafted')}"
    push_artifact(
        repository(stores, name),
        f"{KIT}.config.v1+json",
        json.dumps(KITFILE).encode(),
        [(f"{KIT}.model.v1.tar", craft(), {})],
    )
    target = tmp_path / "pulled"
    out = cli("pull", f"{name}:latest", str(target))
    assert out.returncode == 6, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2 and message in lines[0], lines
    assert lines[1].startswith("hint:") and not target.exists(), lines


def _layout(layer: bytes, directory: Path) -> str:
    """An OCI layout of one image whose only layer is ``layer``."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    layer_ref = put(layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_ref["digest"]]},
        "config": {},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json"}
        | put(json.dumps(config).encode()),
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar"} | layer_ref],
    }
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": manifest["mediaType"],
                "annotations": {"org.opencontainers.image.ref.name": "t"},
            }
            | put(json.dumps(manifest).encode())
        ],
    }
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (directory / "index.json").write_text(json.dumps(index))
    return f"{directory}:t"


@pytest.mark.parametrize("craft", [nul_led_size, two_pax_headers], ids=["nul-led-size", "two-pax"])
def test_umoci_extracts_the_link_tarfile_never_sees(tmp_path: Path, craft: Any) -> None:
    """Why the refusal matters: Go's reader finds an entry in these layers that
    tarfile (and so a check built on it alone) does not."""
    umoci = binary_or_skip("umoci")
    image = _layout(craft(), tmp_path / "layout")
    rootfs = tmp_path / "rootfs"
    done = subprocess.run(
        [umoci, "raw", "unpack", "--rootless", "--image", image, str(rootfs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (rootfs / "evil").is_symlink() and str((rootfs / "evil").readlink()) == "/etc/shadow"
