"""Moving models: files → store (push), store → files (pull), store → store (copy).

All three move blobs the same way — skip what the destination has, mount what
the same registry holds elsewhere, stream the rest in one verified pass — and
write a manifest only after everything it references is in place, so no tag
ever points at an incomplete artifact.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._json import canonical_json
from .compression import DecodingReader, compression_of, verified_first
from .copies import diff_ids, is_recompressed, labels, read_config
from .digest import CHUNK, Readable, VerifyingReader, sha256_digest
from .errors import IntegrityError, InvalidInput, NotFound
from .hashcache import DigestCache, fingerprint
from .localfs import local_writes
from .oci import (
    ANNOTATION_FILEPATH,
    ANNOTATION_FILES,
    ANNOTATION_LAYER_TITLE,
    IMAGE_CONFIG,
    IMAGE_MANIFEST,
    LAYER_TAR,
    MAX_MANIFEST_BYTES,
    MODEL_ARTIFACT,
    Descriptor,
    Manifest,
    image_config,
    layer_name,
    layer_title,
)
from .packing import (
    META_ROOT,
    MODEL_ROOT,
    FileEntry,
    LayerPlan,
    make_layer,
    plan_layers,
    scan_model,
    unpack_layer,
)
from .parallel import ProgressHub, concurrency_from, run_layers
from .partial import PartialArea
from .selection import Selection, check_written, select_layers
from .store.base import Repository

if TYPE_CHECKING:
    from .formats.layers import FileLayer


@dataclass(frozen=True)
class TransferEvent:
    """Progress of one blob: ``action`` is upload, download, exists, mounted or done."""

    action: str
    title: str
    digest: str | None
    done: int
    total: int


Progress = Callable[[TransferEvent], None]


def _silent(_: TransferEvent) -> None:
    pass


@dataclass(frozen=True)
class PushedImage:
    descriptor: Descriptor
    manifest: Manifest
    manifest_bytes: bytes
    uploaded_bytes: int


# ----- push: files → store ---------------------------------------------------------


def meta_layer(name: str, data: bytes) -> tuple[LayerPlan, str]:
    """A small in-memory layer under ``/.modelreg/`` and its digest."""
    plan = make_layer(META_ROOT, f"{META_ROOT}/{name}", [FileEntry(name, len(data), data=data)])
    return plan, sha256_digest(b"".join(plan))


def push_model(
    repository: Repository,
    path: Path | None,
    *,
    annotations: Mapping[str, str],
    meta_layers: Sequence[LayerPlan] = (),
    cache: DigestCache | None = None,
    progress: Progress | None = None,
    push_manifest: bool = True,
    extra_blobs: Sequence[bytes] = (),
    concurrency: int | None = None,
    leading_layers: Sequence[tuple[Descriptor, str]] = (),
) -> PushedImage:
    """Push the files at ``path`` as an untagged image manifest; return it.

    The manifest is a function of the file names, modes and contents and of
    ``annotations`` only, so the same inputs give the same digest anywhere.
    With ``push_manifest=False`` the blobs are pushed and the manifest only
    built: the caller pushes it (under a tag) itself. ``extra_blobs`` are small
    blobs the caller will reference next (mounted like the rest when the registry
    holds them elsewhere). Up to ``concurrency`` layers go at once.

    ``leading_layers`` (descriptor, diff_id) come first: blobs the caller has put in
    the repository itself (an import's reused layers); ``path`` may then be None.
    """
    cache = cache or DigestCache(None)
    layers = [*(plan_layers(scan_model(path)) if path else []), *meta_layers]
    _check_annotation_budget(annotations, len(layers) + len(leading_layers))
    hub = ProgressHub(progress or _silent, TransferEvent, sum(plan.size for plan in layers))
    pushed = run_layers(
        layers,
        lambda plan: _push_layer(repository, plan, cache, hub),
        name=lambda plan: plan.title,
        concurrency=concurrency_from(concurrency),
        hub=hub,
    )
    digests = [digest for digest, _ in pushed]
    uploaded = sum(sent for _, sent in pushed)
    config, manifest, data = _image(layers, digests, annotations, cache, leading_layers)
    for blob in [config, *extra_blobs]:
        _push_small(repository, blob, cache)
    if push_manifest:
        descriptor = repository.push_manifest(data, IMAGE_MANIFEST)
    else:
        descriptor = Descriptor(IMAGE_MANIFEST, sha256_digest(data), len(data))
    return PushedImage(descriptor, manifest, data, uploaded)


def known_image(
    path: Path,
    *,
    annotations: Mapping[str, str],
    meta_layers: Sequence[LayerPlan] = (),
    cache: DigestCache,
) -> PushedImage | None:
    """The image ``push_model`` would push, if every layer digest is known without reading
    a file (from the digest cache); None otherwise. Talks to no store."""
    layers = [*plan_layers(scan_model(path)), *meta_layers]
    digests = []
    for plan in layers:
        known = _known_digest(plan, cache)[1]
        if known is None:
            return None
        digests.append(known)
    _check_annotation_budget(annotations, len(layers))
    _, manifest, data = _image(layers, digests, annotations, cache)
    descriptor = Descriptor(IMAGE_MANIFEST, sha256_digest(data), len(data))
    return PushedImage(descriptor, manifest, data, 0)


def _image(
    layers: Sequence[LayerPlan],
    digests: Sequence[str],
    annotations: Mapping[str, str],
    cache: DigestCache,
    leading: Sequence[tuple[Descriptor, str]] = (),
) -> tuple[bytes, Manifest, bytes]:
    """Config bytes, manifest and manifest bytes for layers with these digests."""
    descriptors = tuple(layer for layer, _ in leading) + tuple(
        Descriptor(LAYER_TAR, digest, plan.size, _layer_annotations(plan, cache))
        for plan, digest in zip(layers, digests, strict=True)
    )
    config = image_config([*(diff_id for _, diff_id in leading), *digests], annotations)
    manifest = Manifest(
        config=Descriptor(IMAGE_CONFIG, sha256_digest(config), len(config)),
        layers=descriptors,
        annotations=dict(annotations),
        artifact_type=MODEL_ARTIFACT,
    )
    data = manifest.to_bytes()
    if len(data) > MAX_MANIFEST_BYTES:
        raise InvalidInput(
            f"the manifest would be {len(data)} bytes, over the {MAX_MANIFEST_BYTES} bytes "
            "registries accept",
            "shorten the annotations or description",
        )
    return config, manifest, data


def _check_annotation_budget(annotations: Mapping[str, str], layer_count: int) -> None:
    size = len(canonical_json(dict(annotations)))
    # annotations appear twice (manifest and config labels); each layer descriptor is ~400 bytes
    budget = MAX_MANIFEST_BYTES - 400 * layer_count - 4096
    if size > budget:
        raise InvalidInput(
            f"annotations total {size} bytes, over the {budget} bytes left in a "
            f"{MAX_MANIFEST_BYTES}-byte manifest",
            "put large values in a file and push it with the model, or shorten them",
        )


def _layer_annotations(plan: LayerPlan, cache: DigestCache) -> dict[str, str]:
    if plan.root == META_ROOT:
        return {ANNOTATION_LAYER_TITLE: plan.title}
    annotations = {ANNOTATION_LAYER_TITLE: plan.title}
    if plan.title == MODEL_ROOT:
        annotations[ANNOTATION_FILEPATH] = f"/{MODEL_ROOT}"
        annotations[ANNOTATION_FILES] = canonical_json(
            {f.name: cache.file_sha256(f.source) for f in plan.files if f.source}
        ).decode()
    else:
        annotations[ANNOTATION_FILEPATH] = f"/{MODEL_ROOT}/{plan.title}"
    return annotations


def _known_digest(plan: LayerPlan, cache: DigestCache) -> tuple[str | None, str | None]:
    """The layer's cache key (None for in-memory layers) and its digest when known."""
    sources = [f.source for f in plan.files if f.source is not None]
    if not sources:
        return None, sha256_digest(b"".join(plan))
    key = fingerprint("layer", sources, plan.header_digest)
    return key, cache.get(key)


def _push_layer(
    repository: Repository, plan: LayerPlan, cache: DigestCache, report: Progress
) -> tuple[str, int]:
    key, known = _known_digest(plan, cache)
    reused = _reuse_blob(repository, known, cache) if known else None
    if known and reused:
        report(TransferEvent(reused, plan.title, known, plan.size, plan.size))
        return known, 0
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        report(TransferEvent("upload", plan.title, known, done, plan.size))

    digest = repository.push_blob(plan, plan.size, known, on_bytes=advance)
    sources = [f.source for f in plan.files if f.source is not None]
    if key and fingerprint("layer", sources, plan.header_digest) == key:
        cache.put(key, digest)
    cache.remember_location(digest, repository.store_id, repository.path_in_store)
    report(TransferEvent("done", plan.title, digest, plan.size, plan.size))
    return digest, plan.size


def _reuse_blob(repository: Repository, digest: str, cache: DigestCache) -> str | None:
    """ "exists" or "mounted" (from a sibling repository) when no upload is needed.

    A blob last seen in other repositories of the same store is mounted straight
    away (one request; a mount of a blob the repository already has succeeds too);
    otherwise the repository is asked whether it has it.
    """
    here = repository.path_in_store
    locations = cache.locations(digest, repository.store_id)
    others = [source for source in locations if source != here]
    if here in locations and repository.has_blob(digest):
        return "exists"
    for source in others:
        if repository.mount_blob(digest, source):
            cache.remember_location(digest, repository.store_id, here)
            return "mounted"
    if here not in locations and repository.has_blob(digest):
        return "exists"
    return None


def _push_small(repository: Repository, data: bytes, cache: DigestCache) -> str:
    digest = sha256_digest(data)
    if not _reuse_blob(repository, digest, cache):
        repository.push_blob([data], len(data), digest)
        cache.remember_location(digest, repository.store_id, repository.path_in_store)
    return digest


# ----- pull: store → files ---------------------------------------------------------


@dataclass(frozen=True)
class PulledModel:
    descriptor: Descriptor
    manifest: Manifest
    files: tuple[str, ...]
    path: Path


def fetch_model_manifest(
    repository: Repository, reference: str
) -> tuple[Descriptor, bytes, Manifest]:
    from .foreign import model_manifest  # follows a single-image index, refuses the rest

    return model_manifest(repository, reference)


def model_layers(manifest: Manifest) -> list[Descriptor]:
    """The layers that hold model files (lineage layers under /.modelreg are left out)."""
    layers = []
    for layer in manifest.layers:
        if (layer_title(layer) or "").startswith(f"{META_ROOT}/"):
            continue
        compression_of(layer.media_type, f"layer {layer.digest}")  # exit 2 unless a tar
        layers.append(layer)
    return layers


def unpack_model(
    repository: Repository,
    manifest: Manifest,
    target: Path,
    progress: Progress | None = None,
    concurrency: int | None = None,
    selection: Selection | None = None,
    partial: PartialArea | None = None,
) -> list[str]:
    """Download, verify and extract every model layer into ``target`` (a fresh directory).

    Up to ``concurrency`` layers at once; layers hold disjoint files (a file in two
    layers is refused), so they extract side by side into the same directory. With a
    ``selection``, only the layers holding wanted files are downloaded (each verified
    whole) and only the wanted files written. With a ``partial`` area, downloads keep
    what arrived there and resume from it (see ``partial``). The form (image,
    ModelPack, ModelKit) says how layers become files; a model image another tool
    recompressed is checked against its config's ``diff_ids`` as it is unpacked.
    """
    from . import formats
    from .formats import reuse
    from .formats.layers import unpack

    what = f"{repository.name}"
    foreign = formats.form_of(manifest) != formats.IMAGE
    uncompressed: dict[str, str] = {}
    if foreign:
        formats.read_facts(repository, manifest)  # its config is verified and checked first
    elif is_recompressed(manifest):
        config = read_config(repository, manifest)
        ids = diff_ids(config, manifest)
        uncompressed = dict(zip((x.digest for x in manifest.layers), ids, strict=True))
    file_layers = formats.file_layers(manifest)
    if foreign and not file_layers:  # as import says: an empty DEST is no model
        raise IntegrityError(f"{what} holds no files", "nothing to pull; nothing was written")
    if uncompressed:  # a copy that dropped the layer annotations: the config still says
        file_layers = reuse.with_config_roots(file_layers, uncompressed, labels(config))
    chosen = {
        layer.digest
        for layer in select_layers([f.descriptor for f in file_layers], selection, what)
    }
    layers = [f for f in file_layers if f.descriptor.digest in chosen]
    wanted = selection.wants if selection is not None else None
    hub = ProgressHub(progress or _silent, TransferEvent, sum(f.descriptor.size for f in layers))

    def extract(file_layer: FileLayer) -> list[str]:
        layer = file_layer.descriptor
        title = file_layer.title or layer_name(layer)

        def downloaded(count: int) -> None:
            hub(TransferEvent("download", title, layer.digest, count, layer.size))

        try:
            opened = (
                partial.open_blob(repository, layer) if partial else repository.open_blob(layer)
            )
            kept = (
                partial.kept_only_for_the_transport(layer.digest)
                if partial
                else contextlib.nullcontext()
            )
            with kept, opened as raw:
                reader = VerifyingReader(
                    _Counting(raw, downloaded), layer.digest, layer.size, f"layer {layer.digest}"
                )
                if foreign:
                    written = unpack(file_layer, reader, target, wanted)
                else:
                    written = _unpack_image_layer(reader, file_layer, uncompressed, target, wanted)
                reader.finish()
        except NotFound as exc:
            if exc.hint:
                raise
            raise NotFound(
                exc.message,
                "the manifest names a layer the registry does not have: the artifact is "
                "incomplete; nothing was written",
            ) from None
        hub(TransferEvent("done", title, layer.digest, layer.size, layer.size))
        return written

    unpacked = run_layers(
        layers,
        extract,
        name=lambda f: f.title or layer_name(f.descriptor),
        concurrency=concurrency_from(concurrency),
        hub=hub,
    )
    files = [name for names in unpacked for name in names]
    check_written(files, selection, what)
    return files


def _unpack_image_layer(
    reader: VerifyingReader,
    file_layer: FileLayer,
    uncompressed: dict[str, str],
    target: Path,
    wanted: Callable[[str], bool] | None,
) -> list[str]:
    """One layer of a model image (maybe recompressed by another tool, or a tar layer
    reused from another tool's artifact: ``file_layer.root``) into ``target``."""
    layer = file_layer.descriptor
    if compression_of(layer.media_type):
        with verified_first(reader, target) as verified:
            decoded = DecodingReader(
                verified, layer.media_type, uncompressed[layer.digest], f"layer {layer.digest}"
            )
            files = _unpack_tar(decoded, target, file_layer, reader, wanted)
            decoded.finish()
        return files
    if uncompressed and uncompressed[layer.digest] != layer.digest:
        raise IntegrityError(
            f"layer {layer.digest} is not the config's diff_id {uncompressed[layer.digest]}",
            "the image's config and layers disagree; nothing was kept",
        )
    return _unpack_tar(reader, target, file_layer, reader, wanted)


def _unpack_tar(
    stream: Readable,
    target: Path,
    file_layer: FileLayer,
    blob: VerifyingReader,
    wanted: Callable[[str], bool] | None,
) -> list[str]:
    """``unpack_layer``; an intact blob that is not a tar is bad input, named."""
    layer = file_layer.descriptor
    try:
        return unpack_layer(stream, target, root=file_layer.root, wanted=wanted)
    except IntegrityError as exc:
        if not exc.message.startswith("layer is not a valid tar archive"):
            raise
        try:
            blob.finish()  # a corrupted blob is an integrity error, whatever it holds
        except IntegrityError as corrupt:
            raise IntegrityError(
                f"layer {layer.digest}: {exc.message}, and {corrupt.message}", corrupt.hint
            ) from None
        raise InvalidInput(
            f"layer {layer.digest} ({layer.media_type}) is not a tar archive "
            f"({exc.message.split(': ', 1)[-1]})",
            "a model image's layers are tars of files under /model; this looks like an "
            "artifact of raw files (ORAS): fetch it with 'oras pull'",
        ) from None


def pull_model(
    repository: Repository,
    reference: str,
    destination: Path,
    *,
    force: bool = False,
    progress: Progress | None = None,
    concurrency: int | None = None,
    selection: Selection | None = None,
    partial: PartialArea | None = None,
) -> PulledModel:
    """Write the model's files into ``destination``; all or nothing.

    Files are extracted into a staging directory beside ``destination`` while
    every layer is verified, and moved into place only when all checked out.
    With a ``selection`` only the wanted files are written (see ``selection``).
    """
    descriptor, _, manifest = fetch_model_manifest(repository, reference)
    _check_destination(destination, force)
    with staging_directory(destination.parent, destination.name) as staging:
        files = unpack_model(
            repository, manifest, staging, progress, concurrency, selection, partial
        )
        replace_directory(staging, destination)
    if partial is not None:
        partial.discard(layer.digest for layer in manifest.layers)
    return PulledModel(descriptor, manifest, tuple(sorted(files)), destination)


def _check_destination(destination: Path, force: bool) -> None:
    if destination.exists() and not destination.is_dir():
        raise InvalidInput(f"{destination} exists and is not a directory")
    if destination.is_dir() and any(destination.iterdir()) and not force:
        raise InvalidInput(
            f"{destination} is not empty",
            "pull into a new or empty directory, or pass --force to replace its contents",
        )
    destination.parent.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def staging_directory(parent: Path, name: str) -> Iterator[Path]:
    """A fresh hidden directory beside the destination, removed unless moved away.

    A full or read-only disk while it is filled ends as a ModelregError (``localfs``).
    """
    with local_writes(f"writing {parent / name}", parent):
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent))
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def replace_directory(staging: Path, destination: Path) -> None:
    os.chmod(staging, 0o755)
    if not destination.exists():
        os.rename(staging, destination)
        return
    with contextlib.suppress(OSError):
        destination.rmdir()
        os.rename(staging, destination)
        return
    backup = destination.with_name(f".{destination.name}.old-{os.getpid()}")
    os.rename(destination, backup)
    try:
        os.rename(staging, destination)
    except OSError:
        os.rename(backup, destination)
        raise
    shutil.rmtree(backup, ignore_errors=True)


class _Counting:
    def __init__(self, raw: object, on_total: Callable[[int], None]) -> None:
        self._raw = raw
        self._total = 0
        self._on_total = on_total
        self._last = 0

    def read(self, size: int = -1, /) -> bytes:
        data: bytes = self._raw.read(size)  # type: ignore[attr-defined]
        self._count(len(data))
        return data

    def readinto(self, buffer: memoryview | bytearray, /) -> int:
        readinto = getattr(self._raw, "readinto", None)
        if readinto is None:
            data = self.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        count = int(readinto(buffer) or 0)
        self._count(count)
        return count

    def _count(self, count: int) -> None:
        self._total += count
        if self._total - self._last >= CHUNK or not count:
            self._last = self._total
            self._on_total(self._total)
