"""Hand a model to a container engine: the model is an OCI image, so Docker can hold it.

A model in a **registry** is pulled by the Docker engine itself, by digest
(``docker pull host/repo@sha256:…``): the engine verifies it and records the
pinned reference. A model in the **local store** is streamed to the engine as
an image archive (``docker load``): Docker cannot read an OCI image-layout
directory, and Docker 20.10 does not accept a bare OCI archive either (it
looks for the legacy ``repositories`` layout), so the archive carries both
indexes over one set of blobs — ``manifest.json`` (the docker-archive format
every Docker reads) and ``oci-layout`` + ``index.json`` (the OCI image layout
that newer Docker, containerd's ``ctr images import`` and skopeo read, which
keeps the manifest digest). Every blob is verified while it streams, and the
two index files come last, so an archive cut short by a bad blob never
describes an image.

docker-py is optional: it is imported inside :func:`docker_load` only.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ._json import canonical_json
from ._open import open_reference
from .digest import CHUNK, VerifyingReader, hex_part
from .errors import EngineError, InvalidInput
from .oci import (
    ANNOTATION_REF_NAME,
    IMAGE_CONFIG,
    IMAGE_INDEX,
    Descriptor,
    Manifest,
    layer_name,
)
from .packing import END_OF_ARCHIVE, tar_header
from .reference import Reference, as_reference, is_registry_host, parse_reference, validate_tag
from .store import Stores, opened
from .store.base import Repository, read_small_blob
from .tarstream import padded
from .transfer import Progress, TransferEvent, fetch_model_manifest
from .versions import find_version

DOCKER_HINT = "install the Docker SDK for Python: pip install 'modelreg[docker]'"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
_OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
_MAX_CONFIG = 4 * 1024 * 1024


@dataclass(frozen=True)
class DockerLoadResult:
    """What the engine now holds.

    ``method`` is ``pull`` (the engine pulled from the registry by digest) or
    ``load`` (modelreg streamed an archive from the local store).
    ``docker_reference`` is what to type in ``docker run``/``COPY --from``: the
    pinned ``host/repo@sha256:…`` after a pull, the first tag after a load.
    """

    reference: str
    digest: str
    image_id: str
    method: str
    docker_reference: str
    tags: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tags": list(self.tags)}


# ----- the archive -----------------------------------------------------------------


def docker_image_name(name: str) -> str:
    """Docker's fully qualified repository name: ``fraud`` → ``docker.io/library/fraud``."""
    first, slash, _ = name.partition("/")
    if slash and is_registry_host(first):
        return name
    return f"docker.io/{name}" if slash else f"docker.io/library/{name}"


def image_archive(
    repository: Repository,
    manifest_data: bytes,
    manifest: Manifest,
    repo_tags: Sequence[str],
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """Stream an image archive that ``docker load`` and OCI tools both read.

    Blobs are read from ``repository`` and verified on the way; an IntegrityError
    stops the stream before ``index.json`` and ``manifest.json`` are written.
    """
    if manifest.config.media_type != IMAGE_CONFIG and not manifest.config.media_type.endswith(
        "container.image.v1+json"
    ):
        raise InvalidInput(
            f"{repository.name} holds an artifact with config type "
            f"{manifest.config.media_type!r}, not a container image",
            "only models (OCI images) can be loaded into Docker",
        )
    manifest_digest = manifest.descriptor(manifest_data).digest
    yield from _entry("oci-layout", _OCI_LAYOUT)
    config = read_small_blob(repository, manifest.config, _MAX_CONFIG)
    yield from _entry(_blob_path(manifest.config.digest), config)
    seen = {manifest.config.digest}
    for layer in manifest.layers:
        if layer.digest in seen:
            continue
        seen.add(layer.digest)
        yield from _blob_entry(repository, layer, progress)
    yield from _entry(_blob_path(manifest_digest), manifest_data)

    descriptor = manifest.descriptor(manifest_data).to_dict()
    if repo_tags:
        name, _, tag = repo_tags[0].rpartition(":")
        descriptor["annotations"] = {
            ANNOTATION_CONTAINERD_NAME: f"{docker_image_name(name)}:{tag}",
            ANNOTATION_REF_NAME: tag,
        }
    index = {"schemaVersion": 2, "mediaType": IMAGE_INDEX, "manifests": [descriptor]}
    yield from _entry("index.json", canonical_json(index))
    docker_manifest = [
        {
            "Config": _blob_path(manifest.config.digest),
            "RepoTags": list(repo_tags),
            "Layers": [_blob_path(layer.digest) for layer in manifest.layers],
        }
    ]
    yield from _entry("manifest.json", canonical_json(docker_manifest))
    yield END_OF_ARCHIVE


def _blob_path(digest: str) -> str:
    return f"blobs/sha256/{hex_part(digest)}"


def _entry(name: str, data: bytes) -> Iterator[bytes]:
    yield tar_header(name, tarfile.REGTYPE, len(data), 0o644)
    yield data
    yield b"\0" * (padded(len(data)) - len(data))


def _blob_entry(
    repository: Repository, descriptor: Descriptor, progress: Progress | None
) -> Iterator[bytes]:
    title = layer_name(descriptor)
    yield tar_header(_blob_path(descriptor.digest), tarfile.REGTYPE, descriptor.size, 0o644)
    with repository.open_blob(descriptor) as raw:
        reader = VerifyingReader(
            raw, descriptor.digest, descriptor.size, f"blob {descriptor.digest}"
        )
        while chunk := reader.read(CHUNK):
            yield chunk
            if progress:
                progress(
                    TransferEvent(
                        "load", title, descriptor.digest, reader.bytes_read, descriptor.size
                    )
                )
        reader.finish()
    yield b"\0" * (padded(descriptor.size) - descriptor.size)


# ----- the engine ------------------------------------------------------------------


def docker_client(docker_host: str | None = None) -> Any:
    """A docker-py client for ``docker_host``, or for ``DOCKER_HOST`` & co. when None."""
    try:
        import docker
    except ImportError:  # a missing optional part is the caller's to install: exit 2
        raise InvalidInput("the Docker SDK for Python is not installed", DOCKER_HINT) from None
    try:
        if docker_host:
            return docker.DockerClient(base_url=docker_host, version="auto")
        return docker.from_env(version="auto")
    except docker.errors.DockerException as exc:
        where = docker_host or "DOCKER_HOST (default unix:///var/run/docker.sock)"
        raise EngineError(
            f"cannot reach the Docker engine at {where}: {_first_line(exc)}",
            "start dockerd, or point --docker-host / DOCKER_HOST at a running engine",
        ) from None


def docker_load(
    reference: str | Reference,
    *,
    tag: str | None = None,
    docker_host: str | None = None,
    stores: Stores | None = None,
    progress: Progress | None = None,
) -> DockerLoadResult:
    """Make the model ``reference`` names available in a Docker engine, pinned by digest.

    A tag or ``latest`` is resolved to a digest first; the engine then holds
    exactly that manifest's image (image ID = config digest, labels = lineage).
    ``tag`` (``name[:tag]``) adds a local name in the engine.
    """
    with opened(stores) as stores:
        ref = as_reference(reference)
        extra_tags = (_docker_tag(tag),) if tag else ()
        repo, identifier = open_reference(stores, ref)
        descriptor, data, manifest = fetch_model_manifest(repo, identifier)
        pinned = f"{repo.name}@{descriptor.digest}"
        client = docker_client(docker_host)
        try:
            if ref.is_local:
                tags = extra_tags or (_default_local_tag(repo, ref, descriptor.digest),)
                image_id = _load(client, repo, data, manifest, tags, progress)
                docker_reference = tags[0]
            else:
                tags = (*((f"{repo.name}:{ref.tag}",) if ref.tag else ()), *extra_tags)
                image_id = _pull(client, repo.name, descriptor.digest, tags)
                docker_reference = pinned
        finally:
            client.close()
        return DockerLoadResult(
            reference=pinned,
            digest=descriptor.digest,
            image_id=image_id,
            method="load" if ref.is_local else "pull",
            docker_reference=docker_reference,
            tags=tuple(tags),
        )


def _docker_tag(value: str) -> str:
    parsed = parse_reference(value)
    if parsed.digest:
        raise InvalidInput(
            f"--tag {value!r} carries a digest", "give a name with an optional :tag, e.g. fraud:v3"
        )
    return f"{parsed.name}:{parsed.tag or 'latest'}"


def _default_local_tag(repository: Repository, ref: Reference, digest: str) -> str:
    if ref.tag:
        return f"{repository.name}:{ref.tag}"
    found = find_version(repository, digest)
    suffix = f"v{found.version}" if found else f"sha256-{hex_part(digest)[:12]}"
    return f"{repository.name}:{validate_tag(suffix)}"


def _pull(client: Any, name: str, digest: str, tags: Sequence[str]) -> str:
    import docker

    try:
        for event in client.api.pull(name, tag=digest, stream=True, decode=True):
            if isinstance(event, dict) and event.get("error"):
                raise EngineError(
                    f"docker could not pull {name}@{digest}: {_first_line(event['error'])}",
                    _PULL_HINT,
                )
        image = client.images.get(f"{name}@{digest}")
        _tag_image(image, tags)
    except docker.errors.APIError as exc:
        raise EngineError(
            f"docker could not pull {name}@{digest}: {_explain(exc)}", _PULL_HINT
        ) from None
    return str(image.id)


_PULL_HINT = (
    "the Docker engine pulls on its own: it needs its own access to the registry "
    "(docker login HOST; a plain-HTTP registry other than localhost/127.0.0.1 must be "
    "listed in insecure-registries in daemon.json)"
)


def _load(
    client: Any,
    repository: Repository,
    manifest_data: bytes,
    manifest: Manifest,
    tags: Sequence[str],
    progress: Progress | None,
) -> str:
    import docker

    archive = image_archive(repository, manifest_data, manifest, tags, progress)
    try:
        for event in client.api.load_image(archive):
            if isinstance(event, dict) and event.get("error"):
                raise EngineError(
                    f"docker refused the image of {repository.name}: {_first_line(event['error'])}",
                    "check the engine's log (dockerd) for details",
                )
        image = client.images.get(tags[0])
        _tag_image(image, tags[1:])
    except docker.errors.APIError as exc:
        raise EngineError(
            f"docker could not load {repository.name}: {_explain(exc)}",
            "check the engine's log (dockerd) for details",
        ) from None
    image_id = str(image.id)
    if image_id != manifest.config.digest:
        raise EngineError(
            f"docker loaded image {image_id}, expected {manifest.config.digest}",
            "the engine rewrote the image; report this with the engine's version",
        )
    return image_id


def _tag_image(image: Any, tags: Sequence[str]) -> None:
    for full in tags:
        name, _, tag = full.rpartition(":")
        image.tag(name, tag)


def _explain(exc: Any) -> str:
    return _first_line(getattr(exc, "explanation", None) or exc)


def _first_line(value: object) -> str:
    text = str(value).strip()
    return _untuple(text.splitlines()[0]) if text else "no details"


def _untuple(text: str) -> str:
    """``…: ('Connection aborted.', FileNotFoundError(2, 'No such file'))`` as words.

    docker-py passes urllib3's exception arguments through as a printed tuple.
    """
    start = text.find("('")
    if start < 0:
        return text
    words = [w.strip().rstrip(".") for w in re.findall(r"'([^']+)'", text[start:])]
    prefix = text[:start].rstrip(" :")
    return ": ".join([p for p in (prefix, *words) if p])


__all__ = [
    "DOCKER_HINT",
    "DockerLoadResult",
    "docker_client",
    "docker_image_name",
    "docker_load",
    "image_archive",
]
