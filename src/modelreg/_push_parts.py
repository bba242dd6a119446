"""What a push writes beside the model's files: the lineage, a content signature, a ModelPack form.

The lineage is captured or given, then laid out as manifest annotations plus small
blobs; a content signature is made (or checked) before anything is sent and
attached after; the ModelPack form is a second manifest over the same blobs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .digest import hex_part
from .hashcache import DigestCache
from .oci import Descriptor
from .packing import LayerPlan
from .store import Stores
from .store.base import Repository
from .transfer import meta_layer
from .versions import Published

if TYPE_CHECKING:
    from .lineage import Lineage
    from .signing import SigningKey


def digest_cache(stores: Stores) -> DigestCache:
    return DigestCache(stores.home / "cache" / "digests.sqlite")


def push_lineage(
    lineage: Lineage | None,
    packages: bytes | None,
    *,
    capture: bool,
    code_dir: str | Path | None,
    data: Sequence[str],
    params: Mapping[str, Any] | None,
    metrics: Mapping[str, Any] | None,
    annotations: Mapping[str, str] | None,
    description: str | None,
    file_sha256: Callable[[Path], str],
) -> tuple[Lineage, bytes | None]:
    """The lineage a push records and its freeze list: captured, or ``lineage`` as given
    with the explicit keyword fields overriding its fields one by one."""
    from . import lineage as lineage_mod

    given, captured = lineage_mod.capture_lineage(
        code_dir=Path(code_dir) if (capture and code_dir is not None and lineage is None) else None,
        data=data,
        params=params,
        metrics=metrics,
        annotations=annotations,
        description=description,
        capture_env=capture and lineage is None,
        file_sha256=file_sha256,
    )
    if lineage is None:
        return given, packages if packages is not None else captured
    explicit = {
        "data": bool(data),
        "params": params is not None,
        "metrics": metrics is not None,
        "annotations": annotations is not None,
        "description": description is not None,
    }
    chosen = [name for name, on in explicit.items() if on]
    return lineage_mod.with_fields(lineage, given, chosen), packages


def lineage_layout(
    lineage: Lineage, packages: bytes | None
) -> tuple[dict[str, str], list[LayerPlan]]:
    """The manifest annotations that hold ``lineage`` and the small layers they name."""
    from . import lineage as lineage_mod

    meta: list[LayerPlan] = []

    def store_blob(name: str, content: bytes) -> str:
        plan, digest = meta_layer(name, content)
        meta.append(plan)
        return digest

    return lineage_mod.to_annotations(lineage, packages, store_blob), meta


def content_bundle(
    path: str | Path, sign: SigningKey | None, signature: str | Path | None, cache: DigestCache
) -> bytes | None:
    """The content signature to attach: made with ``sign``, or ``signature`` checked."""
    if sign is None and signature is None:
        return None
    from .content_signatures import bundle_for_push

    return bundle_for_push(
        Path(path),
        sign,
        Path(signature) if signature else None,
        lambda file: hex_part(cache.file_sha256(file)),
    )


def attach_content(repo: Repository, model: Descriptor, bundle: bytes | None) -> None:
    if bundle is not None:
        from .content_signatures import attach

        attach(repo, model, bundle)


def modelpack_form(
    repository: Repository, published: Published, lineage: Lineage, path: Path | None
) -> dict[str, str]:
    """Publish (or find) the version's ModelPack form; ``path``: the pushed files, if here."""
    from .formats.publish import publish_modelpack

    form = publish_modelpack(
        repository,
        published.digest,
        version=published.version,
        created=published.created,
        lineage=lineage,
        source=None if path is None else path if path.is_dir() else path.parent,
    )
    return form.to_dict()
