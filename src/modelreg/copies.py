"""Reading a model from a copy another tool made: recompressed, converted, annotations gone.

``skopeo copy`` (defaults) and ``podman push`` gzip the layers; ``docker push``
also converts the manifest to Docker v2 schema 2 and drops every annotation. The
image config is copied byte for byte by all of them, so its digest, its
``rootfs.diff_ids`` and its ``Labels`` (where modelreg writes the lineage too)
are the model's. What is proven when such a copy is read:

* every blob is verified against its own digest (as for any pull);
* each layer's *uncompressed* stream is verified against the config's
  ``diff_id`` at the same position, so the files are exactly the files of the
  image whose config this is;
* lineage comes from the manifest's annotations when they are there, else from
  the config's labels (the same key/value pairs, written at push), and lineage
  blobs named by an uncompressed digest are found through ``diff_ids``.

Nothing here proves the copy is the *signed* manifest: a promotion record signs a
manifest digest, and a copy has another one (see docs/containers.md).
"""

from __future__ import annotations

import io
from collections.abc import Mapping

from .compression import DecodingReader, compression_of
from .digest import CHUNK, VerifyingReader, is_digest
from .errors import IntegrityError
from .oci import MAX_MANIFEST_BYTES, Descriptor, Manifest, parse_image_config
from .store.base import Repository

ANNOTATION_LINEAGE = "dev.modelreg.lineage"


def read_config(repository: Repository, manifest: Manifest) -> dict[str, object]:
    """The image config, verified against its digest."""
    from .transfer import read_small_blob  # transfer imports this module

    return parse_image_config(read_small_blob(repository, manifest.config, MAX_MANIFEST_BYTES))


def diff_ids(config: Mapping[str, object], manifest: Manifest) -> list[str]:
    """The config's ``rootfs.diff_ids``, one per layer; IntegrityError when they don't fit."""
    rootfs = config.get("rootfs")
    found = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if (
        not isinstance(found, list)
        or len(found) != len(manifest.layers)
        or not all(isinstance(d, str) and is_digest(d) for d in found)
    ):
        raise IntegrityError(
            "the image config's rootfs.diff_ids do not match the manifest's layers",
            "this is not a well-formed image; nothing from it was used",
        )
    return list(found)


def labels(config: Mapping[str, object]) -> dict[str, str]:
    inner = config.get("config")
    found = inner.get("Labels") if isinstance(inner, dict) else None
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)}


def is_recompressed(manifest: Manifest) -> bool:
    return any(compression_of(layer.media_type) for layer in manifest.layers)


def model_annotations(repository: Repository, manifest: Manifest) -> Mapping[str, str]:
    """The manifest's annotations, or the config's labels when a copy dropped them."""
    if ANNOTATION_LINEAGE in manifest.annotations:
        return manifest.annotations
    found = labels(read_config(repository, manifest))
    return found if ANNOTATION_LINEAGE in found else manifest.annotations


def layer_of_content(
    repository: Repository, manifest: Manifest, digest: str
) -> tuple[Descriptor, str | None]:
    """The layer whose blob digest, or whose uncompressed digest (diff_id), is ``digest``."""
    for layer in manifest.layers:
        if layer.digest == digest:
            return layer, None
    ids = diff_ids(read_config(repository, manifest), manifest)
    for layer, diff_id in zip(manifest.layers, ids, strict=True):
        if diff_id == digest:
            return layer, diff_id
    raise IntegrityError(f"the manifest names lineage blob {digest} but has no such layer")


def read_layer(repository: Repository, layer: Descriptor, diff_id: str | None, limit: int) -> bytes:
    """A small layer's uncompressed bytes: blob digest and (when given) diff_id verified."""
    if layer.size > limit:
        raise IntegrityError(f"blob {layer.digest} is {layer.size} bytes, over {limit}")
    with repository.open_blob(layer) as raw:
        blob = VerifyingReader(raw, layer.digest, layer.size, f"blob {layer.digest}")
        decoded = DecodingReader(blob, layer.media_type, diff_id, f"layer {layer.digest}")
        out = io.BytesIO()
        while chunk := decoded.read(CHUNK):
            out.write(chunk)
            if out.tell() > limit:
                raise IntegrityError(f"layer {layer.digest} decodes to over {limit} bytes")
        decoded.finish()
        blob.finish()
    return out.getvalue()
