"""Which form a manifest is, and the hook every reader asks: its layers as files, its facts.

Three forms: modelreg's own image (tar layers with the files under ``/model/``),
CNCF ModelPack (``formats.modelpack``) and KitOps ModelKits
(``formats.modelkit``). ``pull``, ``inspect``, ``copy`` and ``Resolver.fetch``
ask :func:`file_layers` how to lay out a manifest's files and :func:`read_lineage`
what its config says.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import IntegrityError
from ..oci import Manifest, layer_title
from . import modelkit, modelpack, reuse
from .layers import FileLayer

if TYPE_CHECKING:
    from ..lineage import Lineage
    from ..store.base import Repository

IMAGE, MODELPACK, MODELKIT = "image", "modelpack", "modelkit"

# lineage annotation keys for what a ModelPack config or Kitfile says
FACT_KEYS = {
    "name": "org.opencontainers.image.title",
    "version": "org.opencontainers.image.version",
    "authors": "org.opencontainers.image.authors",
    "licenses": "org.opencontainers.image.licenses",
    "vendor": "org.opencontainers.image.vendor",
    "createdAt": "org.opencontainers.image.created",
    "architecture": "org.cncf.model.architecture",
    "format": "org.cncf.model.format",
    "paramSize": "org.cncf.model.paramSize",
    "precision": "org.cncf.model.precision",
    "quantization": "org.cncf.model.quantization",
    "framework": "ml.kitops.model.framework",
    "package": "ml.kitops.package",
    "form": "modelreg.import.form",
}


def form_of(manifest: Manifest) -> str:
    if modelpack.is_modelpack(manifest):
        return MODELPACK
    if modelkit.is_modelkit(manifest):
        return MODELKIT
    return IMAGE


def file_layers(manifest: Manifest) -> list[FileLayer]:
    """How each layer of ``manifest`` becomes files; refuses layers it cannot lay out."""
    form = form_of(manifest)
    if form == MODELPACK:
        return modelpack.file_layers(manifest)
    if form == MODELKIT:
        return modelkit.file_layers(manifest)
    from ..compression import compression_of
    from ..transfer import model_layers  # here: transfer imports this package

    # a layer reused from another tool's artifact says so (formats.reuse); ours: /model
    return [
        FileLayer(
            layer,
            True,
            compression_of(layer.media_type),
            "",
            reuse.root_of(layer),
            layer_title(layer) or "",
        )
        for layer in model_layers(manifest)
    ]


def read_facts(repository: Repository, manifest: Manifest) -> dict[str, Any]:
    """What a ModelPack config or Kitfile says (verified blob); {} for an image."""
    from ..store.base import read_small_blob

    form = form_of(manifest)
    if form == IMAGE:
        return {}
    if form == MODELPACK:
        data = read_small_blob(repository, manifest.config, modelpack.MAX_CONFIG_BYTES)
        return modelpack.facts(modelpack.parse_config(data))
    data = read_small_blob(repository, manifest.config, modelkit.MAX_KITFILE_BYTES)
    kitfile = modelkit.parse_kitfile(data)
    modelkit.check_layers(manifest, kitfile)
    return modelkit.facts(kitfile)


def lineage_from_facts(facts: Mapping[str, Any]) -> Lineage:
    """A Lineage showing what the config says (no code or environment was captured)."""
    from ..lineage import CodeInfo, Lineage

    annotations: dict[str, str] = {}
    for key, value in facts.items():
        if key not in FACT_KEYS:
            continue
        if isinstance(value, list):
            text = ", ".join(value) if key != "licenses" else " AND ".join(value)
        elif isinstance(value, dict):
            text = json.dumps(value, sort_keys=True, separators=(",", ":"))
        else:
            text = str(value)
        annotations[FACT_KEYS[key]] = text
    code = None
    if facts.get("revision"):
        code = CodeInfo(commit=str(facts["revision"]), remote=facts.get("sourceURL"))
    return Lineage(code=code, annotations=annotations, description=facts.get("description"))


def read_lineage(repository: Repository, manifest: Manifest) -> Lineage | None:
    """The lineage a foreign form's config gives; None for modelreg's own image form.

    modelreg's own ModelPack form names its image as ``subject``: when that image
    is in the repository, its full lineage is shown.
    """
    form = form_of(manifest)
    if form == IMAGE:
        return None
    image = own_image(repository, manifest)
    if image is not None:
        from .._model_reading import read_lineage as image_lineage

        return image_lineage(repository, image)
    return lineage_from_facts(read_facts(repository, manifest))


def own_image(repository: Repository, manifest: Manifest) -> Manifest | None:
    """The modelreg image a ModelPack form was written over: its ``subject``, when that is
    an image in the repository whose file layers are exactly this form's blobs."""
    if form_of(manifest) != MODELPACK or manifest.subject is None:
        return None
    from ..errors import NotFound

    try:
        _, data = repository.fetch_manifest(manifest.subject.digest)
        image = Manifest.parse(data, f"subject {manifest.subject.digest}")
    except (NotFound, IntegrityError):
        return None
    if form_of(image) != IMAGE:
        return None
    # only when the form is exactly that image's files, in order: a subject alone proves nothing
    ours = [layer.digest for layer in modelpack.image_file_layers(image)]
    return image if [layer.digest for layer in manifest.layers] == ours else None


def files_of(repository: Repository, manifest: Manifest) -> dict[str, str]:
    """A foreign form's files: path → content identity, as ``model_files`` gives for an
    image (modelreg's own ModelPack form: its image's list); else each layer's file path
    or title → layer digest (a tar's files are not listed without reading it)."""
    image = own_image(repository, manifest)
    if image is not None:
        from .._model_reading import model_files

        return model_files(image)
    return {layer.path or layer.title: layer.descriptor.digest for layer in file_layers(manifest)}


__all__ = [
    "IMAGE",
    "MODELKIT",
    "MODELPACK",
    "FileLayer",
    "file_layers",
    "files_of",
    "form_of",
    "lineage_from_facts",
    "read_facts",
    "read_lineage",
]
