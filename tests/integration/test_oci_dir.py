"""``oci:DIR[:TAG]`` references (skopeo's syntax) for pull, inspect and copy."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers.cli import Cli
from helpers.models import unique_repo
from test_engines import tree_of

from modelreg import api
from modelreg.errors import InvalidInput
from modelreg.reference import parse_reference
from modelreg.store import Stores


def test_parse_oci_references() -> None:
    ref = parse_reference("oci:/tmp/fraud-layout:v3")
    assert (ref.layout, ref.tag, ref.digest, str(ref)) == (
        "/tmp/fraud-layout",
        "v3",
        None,
        "oci:/tmp/fraud-layout:v3",
    )
    pinned = parse_reference("oci:./x@sha256:" + "a" * 64)
    assert (pinned.layout, pinned.tag, pinned.digest) == ("./x", None, "sha256:" + "a" * 64)
    with pytest.raises(InvalidInput, match="no directory"):
        parse_reference("oci:")
    with pytest.raises(InvalidInput, match="invalid tag"):
        parse_reference("oci:/tmp/x:bad tag")


def test_skopeo_layout_is_pulled_inspected_and_copied_and_back(
    registry: Any, skopeo: str, stores: Stores, model_dir: Path, cli: Cli, tmp_path: Path
) -> None:
    source = api.push(model_dir, f"{registry.host}/{unique_repo()}", capture=False, stores=stores)
    layout = tmp_path / "from-skopeo"
    subprocess.run(
        [
            skopeo,
            "copy",
            "--src-tls-verify=false",
            "--src-no-creds",
            f"docker://{source.reference}",
            f"oci:{layout}:latest",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    shown = cli("inspect", f"oci:{layout}:latest", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["repository"] == f"oci:{layout}"
    pulled = cli("pull", f"oci:{layout}:latest", str(tmp_path / "out"))
    assert pulled.returncode == 0, pulled.stderr
    assert tree_of(tmp_path / "out") == tree_of(model_dir)

    # modelreg copy into a new layout directory; skopeo reads it back by tag
    written = tmp_path / "from-modelreg"
    copied = cli("copy", source.reference, f"oci:{written}:served")
    assert copied.returncode == 0, copied.stderr
    inspected = subprocess.run(
        [skopeo, "inspect", "--raw", f"oci:{written}:served"],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert (
        inspected.stdout
        == stores.repository(parse_reference(source.reference)).fetch_manifest(source.digest)[1]
    )
    # and from the layout to a registry
    back = f"{registry.host}/{unique_repo('from-oci')}"
    result = cli("copy", f"oci:{written}:served", back)
    assert result.returncode == 0, result.stderr
    assert api.inspect(f"{back}@{source.digest}", stores=stores).digest == source.digest
