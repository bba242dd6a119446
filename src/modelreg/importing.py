"""``modelreg import``: a model another tool published becomes a modelreg version.

A ModelPack or ModelKit reference becomes an image-form version with the lineage
its config or Kitfile gives. Its tar layers (ModelPack ``…v1.tar[+gzip|+zstd]``,
every KitOps layer) stay the same blobs: each is checked entry by entry first
(``formats.reuse``), then mounted or copied as it is, and the image lists it with an
image layer media type, its uncompressed digest as the config's ``diff_id``, and
``dev.modelreg.root: /`` (its files sit at their own paths). Raw layers (the file's
bytes, not a tar) cannot be image layers: their files are pulled into a staging
directory and packed under ``/model/``, as a push does; so is a tar layer an engine
would extract otherwise than ``pull`` (``formats.reuse`` says why). Nothing is
written at DEST before every layer has been read and checked. The image is a
function of the source's blobs and the lineage, so importing the same source again
reports the version it already has. The ModelPack form modelreg itself wrote is
imported as its image (the same blobs, copied or mounted).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from . import _open, _push_parts, api, formats
from .copying import copy_blobs
from .digest import VerifyingReader
from .errors import IntegrityError, InvalidInput
from .formats.layers import FileLayer, unpack
from .formats.reuse import ReusedLayer, at_root_label, check_layer, fit_file_lists
from .hashcache import DigestCache, fingerprint
from .lineage import Lineage
from .oci import EMPTY_JSON_BYTES
from .packing import MODEL_ROOT, plan_layers, scan_model
from .reference import Reference, as_reference
from .safetensors import describe_model
from .store import Stores, opened
from .store.base import Repository
from .transfer import Progress, TransferEvent, fetch_model_manifest, push_model
from .versions import Published, check_aliases, publish

ANNOTATION_SOURCE = "modelreg.import.source"


@dataclass(frozen=True)
class ImportResult:
    source: str
    form: str
    repository: str
    digest: str
    version: int | None
    existed: bool
    reused_layers: int = 0  # source blobs the image lists as they are
    repacked: tuple[str, ...] = ()  # layers whose files were packed again, and why

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"reference": f"{self.repository}@{self.digest}"}


def import_oci(
    source: str | Reference,
    destination: str | Reference,
    *,
    stores: Stores | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import a ModelPack or KitOps ModelKit from any store as a version at ``destination``.

    Raises: InvalidInput (a modelreg image, a digest DEST, a taken alias), NotFound,
    IntegrityError (a layer that does not verify or is unsafe: nothing is written at DEST).
    """
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
        if manifest.subject is not None and formats.own_image(src_repo, manifest) is not None:
            image = manifest.subject.digest
            copied = api.copy(f"{src_repo.name}@{image}", destination, stores=stores)
            found = api.inspect(copied.reference, stores=stores)
            return ImportResult(
                where, form, copied.repository, copied.digest, found.version, existed=False
            )
        target = as_reference(destination)
        if target.digest:
            raise InvalidInput(
                f"cannot import to a digest reference {target}",
                "import to a repository name; the digest is computed from the content",
            )
        lineage = formats.read_lineage(src_repo, manifest)  # the config, verified and checked
        assert lineage is not None
        lineage = dataclasses.replace(
            lineage, annotations={**lineage.annotations, ANNOTATION_SOURCE: where}
        )
        report = progress or _silent
        reused, repacked = _choose_layers(src_repo, formats.file_layers(manifest), report)
        reused = fit_file_lists(reused)
        staging_root = stores.home / "tmp"
        staging_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="import-", dir=staging_root))
        try:
            packed = _unpack_layers(src_repo, [layer for layer, _ in repacked], staging)
            if not packed and not any(layer.files for layer in reused):
                raise IntegrityError(f"{where} holds no files", "nothing to import")
            _check_one_tree(reused, packed)
            # every layer is read and checked: from here on DEST is written
            repo = stores.repository(target)
            aliases = (target.tag,) if target.tag else ()
            check_aliases(repo, aliases)
            copy_blobs(src_repo, repo, [layer.layer for layer in reused], report)
            published = _publish(
                repo,
                reused,
                staging if packed else None,
                lineage,
                aliases,
                _push_parts.digest_cache(stores),
                progress,
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return ImportResult(
            where,
            form,
            repo.name,
            published.digest,
            published.version,
            published.existed,
            reused_layers=len(reused),
            repacked=tuple(f"{layer.title}: {why}" for layer, why in repacked),
        )


def _silent(_: TransferEvent) -> None:
    pass


def _choose_layers(
    repository: Repository, layers: Sequence[FileLayer], report: Progress
) -> tuple[list[ReusedLayer], list[tuple[FileLayer, str]]]:
    """Which tar layers are reused as they are; which layers are packed again, and why."""
    reused: list[tuple[FileLayer, ReusedLayer]] = []
    repacked: list[tuple[FileLayer, str]] = []
    for layer in layers:
        if not layer.archive:
            repacked.append((layer, "a raw file is not a tar, which engines need"))
            continue
        if layer.root is not None:  # entries below a root: not where an engine puts them
            repacked.append((layer, f"its files are below {layer.root}/"))
            continue
        checked = check_layer(repository, layer, _checking(layer, report))
        if isinstance(checked, str):
            repacked.append((layer, checked))
        else:
            reused.append((layer, checked))
    # repacked files live under /model/ in a container: a reused entry there would meet them
    while repacked and any(_under_model(found) for _, found in reused):
        moving = [(layer, found) for layer, found in reused if _under_model(found)]
        reused = [pair for pair in reused if pair not in moving]
        why = "its entries under model/ would meet the repacked files"
        repacked += [(layer, why) for layer, _ in moving]
    order = {layer.descriptor.digest: index for index, layer in enumerate(layers)}
    repacked.sort(key=lambda pair: order[pair[0].descriptor.digest])
    return [found for _, found in reused], repacked


def _checking(layer: FileLayer, report: Progress) -> Callable[[int], None]:
    descriptor = layer.descriptor

    def checked(done: int) -> None:
        report(TransferEvent("check", layer.title, descriptor.digest, done, descriptor.size))

    return checked


def _under_model(layer: ReusedLayer) -> bool:
    names = [*layer.files, *layer.directories]
    return any(PurePosixPath(name).parts[0] == MODEL_ROOT for name in names)


def _unpack_layers(repository: Repository, layers: Sequence[FileLayer], target: Path) -> list[str]:
    """The files of ``layers`` written below ``target``, each blob verified (as pull does)."""
    files: list[str] = []
    for layer in layers:
        descriptor = layer.descriptor
        with repository.open_blob(descriptor) as raw:
            reader = VerifyingReader(
                raw, descriptor.digest, descriptor.size, f"layer {descriptor.digest}"
            )
            files += unpack(layer, reader, target)
            reader.finish()
    return files


def _check_one_tree(reused: Sequence[ReusedLayer], packed: Sequence[str]) -> None:
    """The layers' files make one tree, as pulling the source needs: no name twice, no
    file where another layer has a directory."""
    seen: set[str] = set(packed)
    directories = {str(p) for name in packed for p in PurePosixPath(name).parents}
    for layer in reused:
        twice = seen & layer.files.keys()
        clash = (layer.files.keys() & directories) | (seen & layer.directories)
        if twice or clash:
            name = sorted(twice or clash)[0]
            raise IntegrityError(
                f"two layer entries both write {name!r}",
                "the artifact's layers overlap; pulling it fails the same way; nothing was "
                "written at DEST",
            )
        seen |= layer.files.keys()
        directories |= layer.directories


def _publish(
    repository: Repository,
    reused: Sequence[ReusedLayer],
    staging: Path | None,
    lineage: Lineage,
    aliases: tuple[str, ...],
    cache: DigestCache,
    progress: Progress | None,
) -> Published:
    annotations, meta = _push_parts.lineage_layout(lineage, None)
    annotations.update(at_root_label(reused))
    if staging is not None:
        annotations.update(describe_model(staging))
        _learn_digests(staging, cache)
    pushed = push_model(
        repository,
        staging,
        annotations=annotations,
        meta_layers=meta,
        cache=cache,
        progress=progress,
        push_manifest=False,  # publish pushes it, under its anchor tag
        extra_blobs=[EMPTY_JSON_BYTES],
        leading_layers=[(layer.layer, layer.diff_id) for layer in reused],
    )
    return publish(
        repository,
        pushed.manifest_bytes,
        pushed.descriptor.media_type,
        aliases=aliases,
        record_blob_present=True,
    )


def _learn_digests(staging: Path, cache: DigestCache) -> None:
    """Digest the repacked layers here: a re-run then finds them at DEST, sending nothing
    (the staging directory is new each time, so the digest cache cannot know them)."""
    for plan in plan_layers(scan_model(staging)):
        hasher = hashlib.sha256()
        for chunk in plan:
            hasher.update(chunk)
        sources = [entry.source for entry in plan.files if entry.source is not None]
        cache.put(fingerprint("layer", sources, plan.header_digest), f"sha256:{hasher.hexdigest()}")
