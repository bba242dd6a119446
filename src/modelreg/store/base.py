"""The one interface every store implements: a repository of blobs, manifests and tags.

Two real implementations: :mod:`.layout` (an OCI image-layout directory, the
embedded default) and :mod:`.remote` (any registry speaking the distribution API).
Everything above this layer — push, pull, copy, versions, stages — talks to a
``Repository`` and never knows which one it has.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar, runtime_checkable

from ..digest import CHUNK, Readable, VerifyingReader
from ..errors import IntegrityError, NotFound
from ..oci import Descriptor

BytesCallback = Callable[[int], None]
_T = TypeVar("_T")

# registry:2 writes a tag's index link before its current link, so a tag list can name a
# tag a moment before the tag can be read (14 in 300 listings raced against a tag write)
_TAG_SETTLING = (0.05, 0.1, 0.2, 0.4)


def read_listed(read: Callable[[], _T]) -> _T:
    """``read()`` of a tag found by listing: a NotFound is retried for up to 0.75 s."""
    for pause in _TAG_SETTLING:
        try:
            return read()
        except NotFound:
            time.sleep(pause)
    return read()


class Repository(Protocol):
    """One repository in a store (``fraud`` locally, ``host:5000/ml/fraud`` remotely)."""

    @property
    def name(self) -> str:
        """What a user would type to name this repository."""
        ...

    @property
    def store_id(self) -> str:
        """Identifies the store: two repositories with the same id can share blobs cheaply."""
        ...

    @property
    def path_in_store(self) -> str:
        """The repository's name inside its store (``ml/fraud``), for cross-repository mounts."""
        ...

    def has_blob(self, digest: str) -> bool: ...

    def open_blob(self, descriptor: Descriptor) -> AbstractContextManager[Readable]:
        """A raw stream of the blob's bytes. Callers verify (see ``digest.VerifyingReader``)."""
        ...

    def push_blob(
        self,
        chunks: Iterable[bytes],
        size: int,
        expected_digest: str | None = None,
        on_bytes: BytesCallback | None = None,
    ) -> str:
        """Store a blob from a stream in one pass; return its digest.

        The digest is computed while the bytes go out; when ``expected_digest`` is
        given, a mismatch raises IntegrityError and nothing is stored.
        """
        ...

    def mount_blob(self, digest: str, source_path: str) -> bool:
        """Make a blob of another repository of the same store available here, uncopied.

        Returns False when the store cannot mount it (the caller then copies).
        """
        ...

    def resolve(self, reference: str) -> Descriptor | None:
        """The descriptor a tag or digest points at, or None when there is none."""
        ...

    def fetch_manifest(self, reference: str) -> tuple[Descriptor, bytes]:
        """The manifest's descriptor and exact bytes, verified against its digest."""
        ...

    def push_manifest(self, data: bytes, media_type: str, tags: Iterable[str] = ()) -> Descriptor:
        """Store these exact manifest bytes, reachable by digest and under each tag."""
        ...

    def claim_tag(self, tag: str, data: bytes, media_type: str, stamp: str = "") -> bool:
        """Point ``tag`` at this manifest only if the tag does not exist yet.

        ``stamp`` (a time, ``20261130T013756Z``) is kept in the claim tag's name
        where the store writes one, so a tag listing alone can tell it.

        Exact on the local store (a file lock). On a registry, which has no
        compare-and-swap, each claimant first writes a claim tag of its own and
        lists the tags: alone, it takes the tag at once; with rivals, it waits a
        settle delay and claims-then-verifies (see ``RemoteRepository.claim_tag``).
        """
        ...

    def list_tags(self) -> list[str]: ...

    def tag_map(self, tags: Collection[str] | None = None) -> dict[str, Descriptor]:
        """Each of ``tags`` (every tag when None) that exists, and what it points at now.

        A store without a bulk read answers with ``resolve_tags``.
        """
        ...

    def delete_manifest(self, digest: str) -> None:
        """Delete a manifest and with it every tag that points at it."""
        ...


@runtime_checkable
class LocalMaintenance(Protocol):
    """What a store on this machine can do beyond ``Repository``: see and sweep its files.

    Optional: check with ``isinstance(repository, LocalMaintenance)``. A registry
    collects its own garbage, so it has none of this.
    """

    def manifest_digests(self) -> list[str]:
        """Every manifest stored, tagged or not."""
        ...

    def referenced_blobs(self) -> set[str]:
        """Every blob a stored manifest names."""
        ...

    def blob_sizes(self) -> dict[str, tuple[int, float]]:
        """Every blob stored: its size and modification time."""
        ...

    def sweep_blobs(self, candidates: Iterable[str]) -> int:
        """Delete those of ``candidates`` no manifest names; returns the bytes freed."""
        ...


_TAG_WORKERS = 16


def resolve_tags(repository: Repository, tags: Iterable[str]) -> dict[str, Descriptor]:
    """``tag_map`` one request per tag (in parallel); a tag removed meanwhile is left out."""
    wanted = list(tags)
    from concurrent.futures import ThreadPoolExecutor  # here: it imports logging, ~10 ms

    with ThreadPoolExecutor(_TAG_WORKERS) as pool:
        resolved = list(pool.map(repository.resolve, wanted))
    return {tag: found for tag, found in zip(wanted, resolved, strict=True) if found is not None}


_CLAIM = re.compile(r"sha256-([a-f0-9]{64})\.claim-(.+?)(?:\.(\d{8}T\d{6}Z))?")
STAMP = re.compile(r"\d{8}T\d{6}Z")


def claim_tag_name(digest: str, tag: str, stamp: str = "") -> str:
    """The tag a claimant with manifest ``digest`` writes before it takes ``tag``."""
    if stamp and not STAMP.fullmatch(stamp):
        raise ValueError(f"not a claim stamp: {stamp!r}")
    name = f"sha256-{digest.split(':', 1)[1]}.claim-{tag}"
    return f"{name}.{stamp}" if stamp else name


CLAIM_ARTIFACT = "application/vnd.modelreg.claim.v1"


def claim_marker(digest: str, tag: str, stamp: str = "") -> bytes:
    """What a claim tag points at: a tiny manifest of its own, so removing the claim
    (a delete by digest, the only delete registry:2 has) removes nothing else."""
    from .._json import canonical_json
    from ..oci import EMPTY_JSON, IMAGE_MANIFEST, empty_config_descriptor

    annotations = {"dev.modelreg.claim.digest": digest, "dev.modelreg.claim.tag": tag}
    if stamp:
        annotations["dev.modelreg.claim.stamp"] = stamp
    config = empty_config_descriptor()
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": IMAGE_MANIFEST,
            "artifactType": CLAIM_ARTIFACT,
            "config": {"mediaType": EMPTY_JSON, "digest": config.digest, "size": config.size},
            "layers": [],
            "annotations": annotations,
        }
    )


def parse_claim_tag(name: str) -> tuple[str, str, str] | None:
    """``(digest, claimed tag, stamp or "")`` of a claim tag; None for any other tag."""
    match = _CLAIM.fullmatch(name)
    if match is None:
        return None
    return f"sha256:{match.group(1)}", match.group(2), match.group(3) or ""


class Store(Protocol):
    def repository(self, name: str) -> Repository: ...


def iter_file(path_handle: Readable, chunk: int) -> Iterator[bytes]:
    while True:
        data = path_handle.read(chunk)
        if not data:
            return
        yield data


def read_small_blob(repository: Repository, descriptor: Descriptor, limit: int) -> bytes:
    """A small blob's bytes, verified; refuses blobs over ``limit`` before reading them."""
    if descriptor.size > limit:
        raise IntegrityError(f"blob {descriptor.digest} is {descriptor.size} bytes, over {limit}")
    with repository.open_blob(descriptor) as raw:
        reader = VerifyingReader(
            raw, descriptor.digest, descriptor.size, f"blob {descriptor.digest}"
        )
        parts = []
        while chunk := reader.read(CHUNK):
            parts.append(chunk)
        reader.finish()
    return b"".join(parts)
