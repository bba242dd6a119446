"""Copying a model between repositories: each blob skipped, mounted or streamed
verified, then the manifest (its subject first), tagged only once all of it is there."""

from __future__ import annotations

from collections.abc import Sequence

from .digest import CHUNK, VerifyingReader
from .oci import Descriptor, Manifest, layer_name
from .parallel import ProgressHub, concurrency_from, run_layers
from .store.base import Repository, iter_file
from .transfer import Progress, TransferEvent


def copy_blob(
    source: Repository, destination: Repository, descriptor: Descriptor, report: Progress
) -> str:
    """Make one blob available in ``destination``: skip, mount, or stream verified."""
    title = layer_name(descriptor)
    if destination.has_blob(descriptor.digest):
        report(TransferEvent("exists", title, descriptor.digest, descriptor.size, descriptor.size))
        return "exists"
    if destination.store_id == source.store_id and destination.mount_blob(
        descriptor.digest, source.path_in_store
    ):
        report(TransferEvent("mounted", title, descriptor.digest, descriptor.size, descriptor.size))
        return "mounted"
    with source.open_blob(descriptor) as raw:
        reader = VerifyingReader(
            raw, descriptor.digest, descriptor.size, f"blob {descriptor.digest}"
        )
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            report(TransferEvent("upload", title, descriptor.digest, done, descriptor.size))

        destination.push_blob(
            iter_file(reader, CHUNK), descriptor.size, descriptor.digest, on_bytes=advance
        )
        reader.finish()
    return "copied"


def copy_blobs(
    source: Repository,
    destination: Repository,
    blobs: Sequence[Descriptor],
    report: Progress,
    concurrency: int | None = None,
) -> list[str]:
    """``copy_blob`` for each blob, up to ``concurrency`` at once; the actions, in order."""
    hub = ProgressHub(report, TransferEvent, sum(blob.size for blob in blobs))
    return run_layers(
        blobs,
        lambda blob: copy_blob(source, destination, blob, hub),
        name=layer_name,
        concurrency=concurrency_from(concurrency),
        hub=hub,
    )


def copy_manifest(
    source: Repository,
    reference: str,
    destination: Repository,
    tags: Sequence[str] = (),
    progress: Progress | None = None,
    concurrency: int | None = None,
) -> Descriptor:
    """Copy a manifest and everything it references; tag only once all of it is there."""
    report = progress or (lambda _: None)
    descriptor, data = source.fetch_manifest(reference)
    manifest = Manifest.parse(data, f"manifest {source.name}@{descriptor.digest}")
    if manifest.subject and destination.resolve(manifest.subject.digest) is None:
        copy_manifest(source, manifest.subject.digest, destination, (), progress, concurrency)
    copy_blobs(source, destination, [manifest.config, *manifest.layers], report, concurrency)
    return destination.push_manifest(data, descriptor.media_type, tags)
