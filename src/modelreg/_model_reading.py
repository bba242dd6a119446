"""Reading what a pushed model says about itself: its lineage, its files, its packages.

Shared by the facade (inspect, diff, add_modelpack), the foreign formats and the UI;
nothing here downloads a model's files, only the small blobs the lineage names.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from .copies import layer_of_content, model_annotations, read_layer
from .oci import Descriptor, Manifest, layer_title, listed_files
from .packing import read_single_file
from .store.base import Repository
from .transfer import model_layers

if TYPE_CHECKING:
    from ._results import ModelInfo
    from .lineage import Lineage

MAX_LINEAGE_BLOB = 64 * 1024 * 1024


def model_info(
    repository: Repository, descriptor: Descriptor, manifest: Manifest, version: int | None
) -> ModelInfo:
    """What :func:`~modelreg.api.inspect` reports: a modelreg image's lineage, files and
    freeze list, or what a foreign form (ModelPack, ModelKit) says of itself."""
    from . import formats
    from ._results import ModelInfo

    lineage: Lineage | None
    packages: dict[str, str] = {}
    if formats.form_of(manifest) != formats.IMAGE:
        lineage = formats.read_lineage(repository, manifest)
        assert lineage is not None
        files = formats.files_of(repository, manifest)
    else:
        lineage = read_lineage(repository, manifest)
        files = model_files(manifest)
        packages = freeze_list(repository, manifest, lineage)
    return ModelInfo(
        repository=repository.name,
        digest=descriptor.digest,
        media_type=descriptor.media_type,
        size=sum(layer.size for layer in manifest.layers),
        manifest=manifest,
        version=version,
        lineage=lineage,
        files=files,
        packages=packages,
    )


def read_lineage(repository: Repository, manifest: Manifest) -> Lineage:
    """The lineage in a manifest; blobs it names (large params) are fetched on demand."""
    from . import lineage as lineage_mod

    def load_blob(digest: str) -> bytes:
        return meta_blob_content(repository, manifest, digest)

    # a copy another tool made may have dropped the annotations: the config's labels
    # hold the same lineage (see copies.py)
    return lineage_mod.from_annotations(model_annotations(repository, manifest), load_blob)


def meta_blob_content(repository: Repository, manifest: Manifest, digest: str) -> bytes:
    layer, diff_id = layer_of_content(repository, manifest, digest)
    content = read_layer(repository, layer, diff_id, MAX_LINEAGE_BLOB)
    return read_single_file(io.BytesIO(content), limit=MAX_LINEAGE_BLOB)


def model_files(manifest: Manifest) -> dict[str, str]:
    """File name → content identity: file sha256 for bundled files, layer digest otherwise."""
    files: dict[str, str] = {}
    for layer in model_layers(manifest):
        listed = listed_files(layer)
        if listed is not None:
            files.update(listed)
            continue
        title = layer_title(layer)
        if title:
            files[title] = layer.digest
    return dict(sorted(files.items()))


def freeze_list(repository: Repository, manifest: Manifest, lineage: Lineage) -> dict[str, str]:
    """The environment's package freeze list (name → version) from its blob, if any."""
    digest = lineage.environment.packages_digest if lineage.environment else None
    if not digest or not any(layer.digest == digest for layer in manifest.layers):
        return {}
    text = meta_blob_content(repository, manifest, digest).decode("utf-8", "replace")
    found = {}
    for line in text.splitlines():
        name, sep, version = line.partition("==")
        if sep:
            found[name] = version
    return found
