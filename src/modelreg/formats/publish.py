"""Publishing the ModelPack form of a pushed version: one config blob and one manifest.

The layers are the image's own blobs (already in the repository), so nothing is
uploaded but the config (a few hundred bytes). The manifest's ``subject`` is the
image, which makes it a referrer of the version; it is tagged
``sha256-<hex of the image>.modelpack`` so a person can hand ``REPO:<that tag>``
to modctl, KitOps or Harbor, and so gc, copy and mirror find it from the
version's digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..digest import sha256_digest
from ..errors import InvalidInput
from ..oci import IMAGE_MANIFEST, Descriptor, Manifest
from . import IMAGE, form_of, modelpack, reuse

if TYPE_CHECKING:
    from ..lineage import Lineage
    from ..store.base import Repository

ANNOTATION_AUTHORS = "org.opencontainers.image.authors"
ANNOTATION_LICENSES = "org.opencontainers.image.licenses"
ANNOTATION_VENDOR = "org.opencontainers.image.vendor"
ANNOTATION_TITLE = "org.opencontainers.image.title"


@dataclass(frozen=True)
class ModelPackForm:
    digest: str
    tag: str
    repository: str

    def to_dict(self) -> dict[str, str]:
        return {
            "digest": self.digest,
            "tag": self.tag,
            "reference": f"{self.repository}:{self.tag}",
        }


def descriptor_fields(
    name: str, version: int | None, created: str, lineage: Lineage | None
) -> dict[str, Any]:
    """The config's ``descriptor`` from the version and its lineage (pure)."""
    fields: dict[str, Any] = {"name": name, "createdAt": created}
    if version is not None:
        fields["version"] = f"v{version}"
    if lineage is None:
        return fields
    annotations = lineage.annotations
    if lineage.description:
        fields["description"] = lineage.description
    if lineage.code is not None:
        fields["revision"] = lineage.code.commit
        if lineage.code.remote:
            fields["sourceURL"] = lineage.code.remote
    if annotations.get(ANNOTATION_AUTHORS):
        fields["authors"] = [a.strip() for a in annotations[ANNOTATION_AUTHORS].split(",")]
    if annotations.get(ANNOTATION_LICENSES):
        fields["licenses"] = [annotations[ANNOTATION_LICENSES]]
    if annotations.get(ANNOTATION_VENDOR):
        fields["vendor"] = annotations[ANNOTATION_VENDOR]
    if annotations.get(ANNOTATION_TITLE):
        fields["title"] = annotations[ANNOTATION_TITLE]
    return fields


def publish_modelpack(
    repository: Repository,
    image_digest: str,
    *,
    version: int | None,
    created: str,
    lineage: Lineage | None,
    source: Path | None = None,
) -> ModelPackForm:
    """Write (or find) the ModelPack form of the image ``image_digest`` in ``repository``."""
    found = existing_form(repository, image_digest)
    if found is not None:
        return found  # one form per version: a re-run leaves the first one as it is
    tag = modelpack.modelpack_tag(image_digest)
    image_descriptor, data = repository.fetch_manifest(image_digest)
    image = Manifest.parse(data, f"manifest {repository.name}@{image_descriptor.digest}")
    if form_of(image) != IMAGE or image.subject is not None:
        raise InvalidInput(
            f"{repository.name}@{image_descriptor.digest} is not a modelreg model image",
            "add the ModelPack form to a version pushed with modelreg push",
        )
    if any(reuse.ANNOTATION_ROOT in layer.annotations for layer in image.layers):
        raise InvalidInput(
            f"{repository.name}@{image_descriptor.digest} was imported over another tool's "
            "layers, whose files are not under model/ as a ModelPack form of it would say",
            "hand out the artifact it was imported from (lineage modelreg.import.source)",
        )
    names = [
        name
        for layer in modelpack.image_file_layers(image)
        for name in modelpack.layer_files(layer)
    ]
    name = repository.path_in_store.rsplit("/", 1)[-1]
    config, manifest = modelpack.build(
        image,
        image_descriptor,
        descriptor_fields(name, version, created, lineage),
        modelpack.detect(names, source),
    )
    manifest_bytes = manifest.to_bytes()
    config_digest = sha256_digest(config)
    if not repository.has_blob(config_digest):
        repository.push_blob([config], len(config), config_digest)
    assert manifest.subject is not None
    attach(repository, manifest_bytes, tag, manifest.subject)
    return ModelPackForm(sha256_digest(manifest_bytes), tag, repository.name)


def existing_form(repository: Repository, image_digest: str) -> ModelPackForm | None:
    """The ModelPack form already published for this image, if its tag names one."""
    tag = modelpack.modelpack_tag(image_digest)
    current = repository.resolve(tag)
    if current is None:
        return None
    _, data = repository.fetch_manifest(current.digest)
    found = Manifest.parse(data, f"{repository.name}:{tag}")
    if not modelpack.is_modelpack(found) or found.subject is None:
        return None
    if found.subject.digest != image_digest:
        return None
    return ModelPackForm(current.digest, tag, repository.name)


def attach(repository: Repository, manifest_bytes: bytes, tag: str, subject: Descriptor) -> None:
    """Push a manifest that names ``subject`` under ``tag``, listed as its referrer."""
    from ..store.referrers import attach_referrer

    attach_referrer(repository, manifest_bytes, IMAGE_MANIFEST, subject, [tag])
