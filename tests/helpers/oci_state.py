"""Read and write a repository's raw state the way another client would, without modelreg.

For a registry: plain HTTP against the distribution API. For the local store: the
OCI image layout's ``index.json``. Tests use these to check what is really there
(e.g. that a failed push left no tag) and to simulate foreign writers.
"""

from __future__ import annotations

import json
from pathlib import Path

import requests

from modelreg.oci import ANNOTATION_REF_NAME
from modelreg.reference import parse_reference


def raw_tags(target: str, home: Path) -> set[str]:
    """Every tag of ``target`` (a local or registry repository); empty when it does not exist."""
    ref = parse_reference(target)
    if ref.registry is None:
        index = home / "oci" / ref.repository / "index.json"
        if not index.exists():
            return set()
        entries = json.loads(index.read_text())["manifests"]
        return {
            e["annotations"][ANNOTATION_REF_NAME]
            for e in entries
            if ANNOTATION_REF_NAME in e.get("annotations", {})
        }
    response = requests.get(f"http://{ref.registry}/v2/{ref.repository}/tags/list", timeout=30)
    if response.status_code == 404:
        return set()
    response.raise_for_status()
    return set(response.json().get("tags") or [])


def raw_manifest(registry: str, repository: str, reference: str) -> tuple[bytes, str]:
    """A manifest's exact bytes and media type, fetched over plain HTTP."""
    response = requests.get(
        f"http://{registry}/v2/{repository}/manifests/{reference}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=30,
    )
    response.raise_for_status()
    return response.content, response.headers["Content-Type"]


def raw_put_manifest(
    registry: str,
    repository: str,
    tag: str,
    data: bytes,
    media_type: str,
    session: requests.Session | None = None,
) -> None:
    """PUT a manifest under ``tag`` with a plain HTTP request (a foreign writer)."""
    sender = session or requests
    response = sender.put(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        data=data,
        headers={"Content-Type": media_type},
        timeout=30,
    )
    assert response.status_code == 201, response.text
