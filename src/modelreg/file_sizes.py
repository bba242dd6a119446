"""The sizes of named model files, read from their layers' tar headers.

``diff`` names changed files with their sizes; the manifest lists only digests.
A file with a layer of its own (8 MiB or more) costs one header read; small files
share a bundle layer, whose headers are walked (the data between them is read and
dropped), so bundles larger than ``MAX_BUNDLE`` are skipped: their files show no size.
"""

from __future__ import annotations

import contextlib
import tarfile
from collections.abc import Collection
from typing import Any, cast

from .oci import ANNOTATION_FILES, Manifest, layer_title
from .packing import MODEL_ROOT
from .store.base import Repository
from .transfer import model_layers

MAX_BUNDLE = 64 * 1024 * 1024


def file_sizes(
    repository: Repository, manifest: Manifest, names: Collection[str]
) -> dict[str, int]:
    """Size in bytes of each of ``names`` that this model holds (best effort)."""
    wanted = set(names)
    sizes: dict[str, int] = {}
    for layer in model_layers(manifest):
        listed = layer.annotations.get(ANNOTATION_FILES)
        title = layer_title(layer)
        if listed:
            if layer.size > MAX_BUNDLE or not any(f'"{name}"' in listed for name in wanted):
                continue
        elif title not in wanted:
            continue
        # "r|*": a copy another tool recompressed (gzip) reads the same
        with (
            contextlib.suppress(tarfile.TarError),
            repository.open_blob(layer) as stream,
            tarfile.open(fileobj=cast(Any, stream), mode="r|*") as archive,
        ):
            for member in archive:
                name = member.name.removeprefix(f"{MODEL_ROOT}/")
                if member.isfile() and name in wanted:
                    sizes[name] = member.size
                    if not listed:
                        break
    return sizes
