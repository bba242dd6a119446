"""OCI data: descriptors, image manifests, image configs. Pure data, exact bytes, no I/O.

A manifest is always kept together with the exact bytes it was parsed from or
serialised to: those bytes are what gets hashed, sent and signed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._json import canonical_json, load_json_object
from .digest import is_digest, sha256_digest
from .errors import IntegrityError

IMAGE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
IMAGE_INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
EMPTY_JSON = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

MODEL_ARTIFACT = "application/vnd.modelreg.model.v1"

ANNOTATION_TITLE = "org.opencontainers.image.title"
# the name modelreg shows for a layer ("weights.bin", "model", ".modelreg/packages.txt").
# Not ANNOTATION_TITLE: ORAS clients read that as "this blob is the file of that name"
# and would write a tar under a model file's name.
ANNOTATION_LAYER_TITLE = "dev.modelreg.title"
ANNOTATION_FILES = "dev.modelreg.files"  # a bundle layer's small files: {path: sha256}
ANNOTATION_FILEPATH = "org.cncf.model.filepath"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

MANIFEST_MEDIA_TYPES = (IMAGE_MANIFEST, IMAGE_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
# registry:2 refuses manifests over 4 MiB; keep ours well inside that
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

EMPTY_JSON_BYTES = b"{}"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_dict(cls, value: Any, where: str) -> Descriptor:
        if not isinstance(value, dict):
            raise IntegrityError(f"{where}: descriptor must be an object")
        media_type = value.get("mediaType")
        digest = value.get("digest")
        size = value.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise IntegrityError(f"{where}: descriptor has no mediaType")
        if not isinstance(digest, str) or not is_digest(digest):
            raise IntegrityError(f"{where}: descriptor digest {digest!r} is not a sha256 digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise IntegrityError(f"{where}: descriptor size {size!r} is not a non-negative integer")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            annotations=_string_map(value.get("annotations"), f"{where}.annotations"),
            artifact_type=_optional_str(value.get("artifactType"), f"{where}.artifactType"),
        )


def layer_title(layer: Descriptor) -> str | None:
    """A layer's name: ours, else the ORAS title older modelreg versions wrote."""
    return layer.annotations.get(ANNOTATION_LAYER_TITLE) or layer.annotations.get(ANNOTATION_TITLE)


def listed_files(layer: Descriptor) -> dict[str, str] | None:
    """The ``{path: sha256}`` a bundle layer's ``dev.modelreg.files`` lists; None without one.

    Raises IntegrityError when the annotation is there but is not such a map: what a
    layer says it holds decides what is selected and shown, so a garbled list is refused
    rather than read as "no list".
    """
    listed = layer.annotations.get(ANNOTATION_FILES)
    if not listed:
        return None
    try:
        files = json.loads(listed)
    except ValueError:
        files = None
    if not isinstance(files, dict) or not all(
        isinstance(name, str) and isinstance(value, str) for name, value in files.items()
    ):
        raise IntegrityError(
            f"layer {layer.digest}: {ANNOTATION_FILES} is malformed",
            "the registry or whoever pushed this model altered its manifest; push it again",
        )
    return files


def layer_name(layer: Descriptor) -> str:
    """What progress and errors call a layer: its file name, else a short digest."""
    return layer_title(layer) or layer.digest[:19]


def empty_config_descriptor() -> Descriptor:
    return Descriptor(EMPTY_JSON, sha256_digest(EMPTY_JSON_BYTES), len(EMPTY_JSON_BYTES))


@dataclass(frozen=True)
class Manifest:
    """An OCI image manifest (also read for Docker v2 schema 2, which has the same shape)."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    subject: Descriptor | None = None
    media_type: str = IMAGE_MANIFEST

    def to_bytes(self) -> bytes:
        body: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": self.config.to_dict(),
            "layers": [layer.to_dict() for layer in self.layers],
        }
        if self.artifact_type:
            body["artifactType"] = self.artifact_type
        if self.subject:
            body["subject"] = self.subject.to_dict()
        if self.annotations:
            body["annotations"] = dict(self.annotations)
        return canonical_json(body)

    @classmethod
    def parse(cls, data: bytes, where: str = "manifest") -> Manifest:
        body = load_json_object(data, where, limit=MAX_MANIFEST_BYTES)
        if body.get("schemaVersion") != 2:
            raise IntegrityError(f"{where}: schemaVersion must be 2")
        media_type = body.get("mediaType", IMAGE_MANIFEST)
        if media_type not in (IMAGE_MANIFEST, DOCKER_MANIFEST):
            raise IntegrityError(
                f"{where}: media type {media_type!r} is not an image manifest",
                "modelreg reads single-image manifests; multi-platform indexes are not models",
            )
        layers = body.get("layers")
        if not isinstance(layers, list):
            raise IntegrityError(f"{where}: layers must be a list")
        subject = body.get("subject")
        return cls(
            config=Descriptor.from_dict(body.get("config"), f"{where}.config"),
            layers=tuple(
                Descriptor.from_dict(layer, f"{where}.layers[{index}]")
                for index, layer in enumerate(layers)
            ),
            annotations=_string_map(body.get("annotations"), f"{where}.annotations"),
            artifact_type=_optional_str(body.get("artifactType"), f"{where}.artifactType"),
            subject=None if subject is None else Descriptor.from_dict(subject, f"{where}.subject"),
            media_type=media_type,
        )

    def descriptor(self, data: bytes | None = None) -> Descriptor:
        """The descriptor of this manifest's serialised bytes."""
        data = self.to_bytes() if data is None else data
        return Descriptor(
            self.media_type, sha256_digest(data), len(data), artifact_type=self.artifact_type
        )


def image_config(
    diff_ids: Sequence[str], labels: Mapping[str, str], *, created: str | None = None
) -> bytes:
    """An image config docker and containerd accept: os/arch fixed so digests don't vary.

    Model files are platform-neutral; ``linux/amd64`` is what every engine accepts
    without a platform flag, and keeping it constant keeps the digest a function of
    the inputs only.
    """
    body: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": dict(labels)} if labels else {},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }
    if created:
        body["created"] = created
    return canonical_json(body)


def parse_image_config(data: bytes) -> dict[str, Any]:
    return load_json_object(data, "image config", limit=MAX_MANIFEST_BYTES)


def media_type_of(data: bytes) -> str:
    """The ``mediaType`` a manifest declares, for stores that do not record it."""
    try:
        value = json.loads(data).get("mediaType")
    except (ValueError, AttributeError):
        value = None
    return value if isinstance(value, str) else "application/octet-stream"


def _string_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise IntegrityError(f"{where} must map strings to strings")
    return dict(value)


def _optional_str(value: Any, where: str) -> str | None:
    """An optional string field; an empty one says as little as a missing one (and is
    written back as missing, so a parsed manifest reads the same after ``to_bytes``)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise IntegrityError(f"{where} must be a string")
    return value or None


@dataclass(frozen=True)
class References:
    """What a manifest's bytes point at: blobs (digest → size), child manifests, subject."""

    blobs: Mapping[str, int]
    children: frozenset[str]
    subject: str | None


def manifest_references(data: bytes) -> References:
    """The references in an image manifest or index; tolerant (unknown shapes have none)."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return References({}, frozenset(), None)
    if not isinstance(body, dict):
        return References({}, frozenset(), None)

    def descriptors(value: Any) -> list[tuple[str, int]]:
        items = value if isinstance(value, list) else [value]
        found = []
        for item in items:
            if isinstance(item, dict):
                digest, size = item.get("digest"), item.get("size")
                if isinstance(digest, str) and is_digest(digest) and isinstance(size, int):
                    found.append((digest, size))
        return found

    blobs = dict(descriptors(body.get("config")) + descriptors(body.get("layers", [])))
    children = frozenset(digest for digest, _ in descriptors(body.get("manifests", [])))
    subject = descriptors(body.get("subject"))
    return References(blobs, children, subject[0][0] if subject else None)
