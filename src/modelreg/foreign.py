"""What a reference names when it may not be a model: follow an index, refuse the rest clearly.

A model is an image manifest (OCI, or Docker v2 schema 2 after ``docker push``).
An image index that holds exactly one ``linux/amd64`` image (what ``buildah
manifest push`` or ``docker buildx`` with attestations write around one image)
is followed to it. Anything else — a multi-platform index, a Helm chart, an ORAS
artifact of raw files, an unknown media type — is bad input (exit 2) naming what
it is and what modelreg reads; ``modelreg inspect`` still shows it.
"""

from __future__ import annotations

from typing import Any

from ._json import load_json_object
from .errors import InvalidInput
from .oci import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    IMAGE_INDEX,
    IMAGE_MANIFEST,
    MAX_MANIFEST_BYTES,
    Descriptor,
    Manifest,
)
from .store.base import Repository

INDEX_TYPES = (IMAGE_INDEX, DOCKER_MANIFEST_LIST)
IMAGE_TYPES = (IMAGE_MANIFEST, DOCKER_MANIFEST)
_ACCEPTED = (
    "modelreg reads OCI image manifests and Docker v2 schema 2 manifests, and an image "
    "index that holds one linux/amd64 image"
)


def declared_media_type(descriptor: Descriptor, data: bytes) -> str:
    """The manifest's own ``mediaType`` field, else what the store said."""
    body = load_json_object(data, f"manifest {descriptor.digest}", limit=MAX_MANIFEST_BYTES)
    value = body.get("mediaType")
    return value if isinstance(value, str) and value else descriptor.media_type


def model_manifest(repository: Repository, reference: str) -> tuple[Descriptor, bytes, Manifest]:
    """The model image ``reference`` names: followed through a single-image index."""
    descriptor, data = repository.fetch_manifest(reference)
    media_type = declared_media_type(descriptor, data)
    where = f"{repository.name}@{descriptor.digest}"
    if media_type in INDEX_TYPES:
        child = _single_image(data, where, media_type)
        descriptor, data = repository.fetch_manifest(child.digest)
        media_type = declared_media_type(descriptor, data)
        where = f"{repository.name}@{descriptor.digest}"
    if media_type not in IMAGE_TYPES:
        raise InvalidInput(
            f"{where} is a {media_type!r}, not a model image",
            f"{_ACCEPTED}; 'modelreg inspect' shows what it is",
        )
    return descriptor, data, Manifest.parse(data, f"manifest {where}")


def _single_image(data: bytes, where: str, media_type: str) -> Descriptor:
    body = load_json_object(data, f"index {where}", limit=MAX_MANIFEST_BYTES)
    entries = body.get("manifests")
    images, unplatformed = [], []
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        descriptor = Descriptor.from_dict(entry, f"index {where}.manifests[{index}]")
        if descriptor.media_type in IMAGE_TYPES and _is_linux_amd64(entry):
            images.append(descriptor)
        elif descriptor.media_type in IMAGE_TYPES and "platform" not in entry:
            unplatformed.append(descriptor)
    if not images and len(unplatformed) == 1:
        images = unplatformed  # an index around one image that names no platform
    if len(images) != 1:
        raise InvalidInput(
            f"{where} is an image index ({media_type}) with {len(images)} linux/amd64 images",
            f"{_ACCEPTED}; name one image of it by digest (see 'modelreg inspect')",
        )
    return images[0]


def _is_linux_amd64(entry: dict[str, Any]) -> bool:
    platform = entry.get("platform")
    if not isinstance(platform, dict):
        return False
    return platform.get("os") == "linux" and platform.get("architecture") == "amd64"
