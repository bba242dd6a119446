"""``modelreg import``: a model another tool published becomes a modelreg version.

A ModelPack or ModelKit reference is read like ``pull`` reads it (every blob
verified, files laid out by their paths, into a staging directory), then pushed
as a modelreg image with the lineage its config or Kitfile gives. The push is a
function of the files and that lineage, so importing the same source again
reports the version it already has. The ModelPack form modelreg itself wrote is
imported as its image (the same blobs, copied or mounted).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _open, api, formats
from .errors import IntegrityError, InvalidInput, NotFound
from .formats import modelpack
from .oci import Manifest
from .reference import Reference
from .store import Stores, opened
from .transfer import Progress, fetch_model_manifest, unpack_model

ANNOTATION_SOURCE = "modelreg.import.source"


@dataclass(frozen=True)
class ImportResult:
    source: str
    form: str
    repository: str
    digest: str
    version: int | None
    existed: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"reference": f"{self.repository}@{self.digest}"}


def import_oci(
    source: str | Reference,
    destination: str | Reference,
    *,
    stores: Stores | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import a ModelPack or KitOps ModelKit from any store as a version at ``destination``."""
    with opened(stores) as stores:
        src_repo, identifier = _open.open_reference(stores, source)
        descriptor, _, manifest = fetch_model_manifest(src_repo, identifier)
        where = f"{src_repo.name}@{descriptor.digest}"
        form = formats.form_of(manifest)
        if form == formats.IMAGE:
            raise InvalidInput(
                f"{where} is a modelreg image already, not a ModelPack or ModelKit",
                "copy it instead: modelreg copy SOURCE DEST",
            )
        image = _own_image(src_repo, manifest)
        if image is not None:
            copied = api.copy(f"{src_repo.name}@{image}", destination, stores=stores)
            found = api.inspect(copied.reference, stores=stores)
            return ImportResult(
                where, form, copied.repository, copied.digest, found.version, existed=False
            )
        lineage = formats.read_lineage(src_repo, manifest)
        assert lineage is not None
        lineage = dataclasses.replace(
            lineage, annotations={**lineage.annotations, ANNOTATION_SOURCE: where}
        )
        staging_root = stores.home / "tmp"
        staging_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="import-", dir=staging_root))
        try:
            files = unpack_model(src_repo, manifest, staging, progress)
            if not files:
                raise IntegrityError(f"{where} holds no files", "nothing to import")
            pushed = api.push(
                staging,
                destination,
                lineage=lineage,
                capture=False,
                stores=stores,
                progress=progress,
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return ImportResult(
            where, form, pushed.repository, pushed.digest, pushed.version, pushed.existed
        )


def _own_image(repository: Any, manifest: Manifest) -> str | None:
    """The image a ModelPack form modelreg wrote stands for, when it is in the repository."""
    if formats.form_of(manifest) != formats.MODELPACK or manifest.subject is None:
        return None
    try:
        _, data = repository.fetch_manifest(manifest.subject.digest)
        image = Manifest.parse(data, f"subject {manifest.subject.digest}")
    except (NotFound, IntegrityError):
        return None
    if formats.form_of(image) != formats.IMAGE:
        return None
    # only when the form is exactly that image's files: a subject alone proves nothing
    ours = [layer.digest for layer in modelpack.image_file_layers(image)]
    if [layer.digest for layer in manifest.layers] != ours:
        return None
    return manifest.subject.digest
