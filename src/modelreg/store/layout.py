"""The embedded default store: one OCI image-layout directory per repository.

``$MODELREG_HOME/oci/<repository>/`` holds ``oci-layout``, ``index.json`` and
``blobs/sha256/…`` exactly as the image-layout spec says, so skopeo (``oci:``),
crane and oras read it directly. Tags are index entries annotated with
``org.opencontainers.image.ref.name``. Writers serialise on a per-repository
``flock``; blobs are written to a temporary name and renamed into place only
after their digest checked out, so a crash never leaves a blob that lies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .._json import load_json_object
from ..digest import Readable, hex_part, is_digest, verify_bytes
from ..errors import IntegrityError, InvalidInput, NotFound
from ..localfs import local_writes
from ..oci import (
    ANNOTATION_REF_NAME,
    IMAGE_INDEX,
    MAX_MANIFEST_BYTES,
    Descriptor,
    manifest_references,
    media_type_of,
)
from .base import BytesCallback

_RESERVED = {"blobs", "index.json", "oci-layout", ".lock"}
_LAYOUT_MARKER = b'{"imageLayoutVersion":"1.0.0"}'
_MAX_INDEX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class _ParsedIndex:
    data: bytes
    entries: tuple[Descriptor, ...]
    by_tag: dict[str, Descriptor]

    @classmethod
    def of(cls, data: bytes, entries: list[Descriptor]) -> _ParsedIndex:
        by_tag: dict[str, Descriptor] = {}
        for entry in entries:  # the first entry of a tag wins, as a scan of the index finds it
            by_tag.setdefault(entry.annotations.get(ANNOTATION_REF_NAME, ""), entry)
        by_tag.pop("", None)
        return cls(data, tuple(entries), by_tag)


class LayoutStore:
    """A directory of image layouts, one per repository."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # repository path -> (index.json bytes, their parse): see LayoutRepository._read_index
        self.parsed_indexes: dict[Path, _ParsedIndex] = {}

    def repository(self, name: str) -> LayoutRepository:
        parts = name.split("/")
        clash = _RESERVED.intersection(parts)
        if clash:
            raise InvalidInput(
                f"repository name {name!r} uses the reserved component {sorted(clash)[0]!r}",
                "pick another name: these names are files of the OCI image layout",
            )
        return LayoutRepository(self.root / name, name, self)


class LayoutRepository:
    def __init__(self, path: Path, name: str, store: LayoutStore) -> None:
        self.path = path
        self._name = name
        self._store = store

    @property
    def name(self) -> str:
        return self._name

    @property
    def store_id(self) -> str:
        return f"layout:{self._store.root.resolve()}"

    @property
    def path_in_store(self) -> str:
        return self._name

    # ----- blobs -------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.path / "blobs" / "sha256" / hex_part(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    @contextlib.contextmanager
    def open_blob(self, descriptor: Descriptor) -> Iterator[Readable]:
        try:
            handle = open(self.blob_path(descriptor.digest), "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise NotFound(
                f"blob {descriptor.digest} is missing from {self.path}",
                "the local store is incomplete; push or copy the model again",
            ) from None
        with handle:
            yield handle

    def push_blob(
        self,
        chunks: Iterable[bytes],
        size: int,
        expected_digest: str | None = None,
        on_bytes: BytesCallback | None = None,
    ) -> str:
        self._ensure_layout()
        blob_dir = self.path / "blobs" / "sha256"
        hasher = hashlib.sha256()
        written = 0
        with _temporary_file(blob_dir) as (handle, temp_path):
            for chunk in chunks:
                handle.write(chunk)
                hasher.update(chunk)
                written += len(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
            handle.flush()
            digest = f"sha256:{hasher.hexdigest()}"
            if written != size:
                raise IntegrityError(f"blob stream gave {written} bytes, expected {size}")
            if expected_digest and digest != expected_digest:
                raise IntegrityError(
                    f"blob content digest {digest} does not match the expected {expected_digest}"
                )
            os.chmod(temp_path, 0o644)
            os.replace(temp_path, self.blob_path(digest))
        return digest

    def mount_blob(self, digest: str, source_path: str) -> bool:
        if source_path == self._name:
            return False
        source = self._store.repository(source_path)
        if not source.has_blob(digest):
            return False
        self._ensure_layout()
        target = self.blob_path(digest)
        if target.exists():
            return True
        temp = target.with_name(f".link-{os.getpid()}-{hex_part(digest)[:16]}")
        try:
            os.link(source.blob_path(digest), temp)
            os.replace(temp, target)
        except OSError:
            temp.unlink(missing_ok=True)
            return False
        return True

    def _write_small_blob(self, data: bytes) -> str:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        if not self.has_blob(digest):
            self.push_blob([data], len(data), digest)
        return digest

    # ----- manifests and tags -------------------------------------------------

    def resolve(self, reference: str) -> Descriptor | None:
        if is_digest(reference):
            path = self.blob_path(reference)
            if not path.is_file():
                return None
            for entry in self._read_index():
                if entry.digest == reference:
                    return _strip_ref_name(entry)
            # a manifest blob that no index entry names: still addressable by digest
            data = path.read_bytes()
            return Descriptor(media_type_of(data), reference, len(data))
        found = self._parsed_index().by_tag.get(reference)
        return _strip_ref_name(found) if found is not None else None

    def fetch_manifest(self, reference: str) -> tuple[Descriptor, bytes]:
        descriptor = self.resolve(reference)
        if descriptor is None:
            self._require_exists()
            raise NotFound(
                f"{self.name}: no tag or digest {reference!r} in the local store",
                f"list what exists with 'modelreg versions {self.name}'",
            )
        if descriptor.size > MAX_MANIFEST_BYTES:
            raise IntegrityError(f"manifest {descriptor.digest} is over {MAX_MANIFEST_BYTES} bytes")
        try:
            data = self.blob_path(descriptor.digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(
                f"manifest blob {descriptor.digest} is missing from {self.path}"
            ) from None
        verify_bytes(data, descriptor.digest, f"manifest {descriptor.digest}")
        return descriptor, data

    def push_manifest(self, data: bytes, media_type: str, tags: Iterable[str] = ()) -> Descriptor:
        tags = list(tags)
        digest = self._write_small_blob(data)
        descriptor = Descriptor(media_type, digest, len(data))
        with self._locked():
            self._require_content(data, digest)
            entries = self._read_index()
            entries = [
                entry
                for entry in entries
                if entry.annotations.get(ANNOTATION_REF_NAME) not in tags
                and not (entry.digest == digest and ANNOTATION_REF_NAME not in entry.annotations)
            ]
            for tag in tags:
                entries.append(_with_ref_name(descriptor, tag))
            if not any(entry.digest == digest for entry in entries):
                entries.append(descriptor)
            self._write_index(entries)
        return descriptor

    def claim_tag(self, tag: str, data: bytes, media_type: str, stamp: str = "") -> bool:
        digest = self._write_small_blob(data)
        with self._locked():
            entries = self._read_index()
            if any(entry.annotations.get(ANNOTATION_REF_NAME) == tag for entry in entries):
                return False
            self._require_content(data, digest)
            entries = [
                entry
                for entry in entries
                if not (entry.digest == digest and ANNOTATION_REF_NAME not in entry.annotations)
            ]
            entries.append(_with_ref_name(Descriptor(media_type, digest, len(data)), tag))
            self._write_index(entries)
        return True

    def list_tags(self) -> list[str]:
        self._require_exists()
        return sorted(
            {
                entry.annotations[ANNOTATION_REF_NAME]
                for entry in self._read_index()
                if ANNOTATION_REF_NAME in entry.annotations
            }
        )

    def tag_map(self, tags: Collection[str] | None = None) -> dict[str, Descriptor]:
        """Every tag (or those of ``tags``) and what it points at, from one read of index.json."""
        wanted = None if tags is None else set(tags)
        found = {
            entry.annotations[ANNOTATION_REF_NAME]: _strip_ref_name(entry)
            for entry in self._read_index()
            if ANNOTATION_REF_NAME in entry.annotations
        }
        return found if wanted is None else {t: d for t, d in found.items() if t in wanted}

    def delete_manifest(self, digest: str) -> None:
        with self._locked():
            entries = self._read_index()
            kept = [entry for entry in entries if entry.digest != digest]
            if len(kept) == len(entries) and not self.has_blob(digest):
                raise NotFound(f"{self.name}: no manifest {digest}")
            self._write_index(kept)
            self.blob_path(digest).unlink(missing_ok=True)

    def delete_blob(self, digest: str) -> None:
        self.blob_path(digest).unlink(missing_ok=True)

    def _require_content(self, data: bytes, digest: str) -> None:
        """Under the lock: the manifest and every blob it names are on disk.

        A concurrent ``gc`` removes unreferenced blobs under the same lock, so a
        manifest is only ever indexed while all it references is there; a push
        whose reused blob was swept fails here, whole, instead of indexing a
        model that cannot be pulled.
        """
        if not self.has_blob(digest):
            self.push_blob([data], len(data), digest)
        missing = [d for d in manifest_references(data).blobs if not self.has_blob(d)]
        if missing:
            raise NotFound(
                f"{self.name}: blob {missing[0]} of manifest {digest} is missing from {self.path}",
                "a concurrent 'modelreg gc' may have removed it; push or copy again",
            )

    def manifest_digests(self) -> list[str]:
        """Every manifest the index names, tagged or not."""
        return sorted({entry.digest for entry in self._read_index()})

    def referenced_blobs(self) -> set[str]:
        """Every blob a manifest in the index is or references (the gc mark set)."""
        referenced: set[str] = set()
        pending = [entry.digest for entry in self._read_index()]
        while pending:
            digest = pending.pop()
            if digest in referenced:
                continue
            referenced.add(digest)
            try:
                data = self.blob_path(digest).read_bytes()
            except FileNotFoundError:
                continue
            found = manifest_references(data)
            referenced.update(found.blobs)
            pending.extend(found.children)
        return referenced

    def sweep_blobs(self, candidates: Iterable[str]) -> int:
        """Delete the candidates no indexed manifest references; return the bytes freed.

        Runs under the repository lock, against the index as it is now, so a
        manifest indexed since the candidates were chosen keeps its blobs.
        """
        freed = 0
        with self._locked():
            referenced = self.referenced_blobs()
            for digest in candidates:
                if digest in referenced:
                    continue
                path = self.blob_path(digest)
                try:
                    size = path.stat().st_size
                    path.unlink()
                except FileNotFoundError:
                    continue
                freed += size
        return freed

    def blob_sizes(self) -> dict[str, tuple[int, float]]:
        """Every blob file: digest -> (size, modification time)."""
        blob_dir = self.path / "blobs" / "sha256"
        if not blob_dir.is_dir():
            return {}
        found = {}
        for path in blob_dir.iterdir():
            if path.name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                found[f"sha256:{path.name}"] = (stat.st_size, stat.st_mtime)
        return found

    def list_blobs(self) -> list[str]:
        blob_dir = self.path / "blobs" / "sha256"
        if not blob_dir.is_dir():
            return []
        return [f"sha256:{p.name}" for p in blob_dir.iterdir() if not p.name.startswith(".")]

    # ----- files -------------------------------------------------------------

    def exists(self) -> bool:
        return (self.path / "index.json").is_file()

    def _require_exists(self) -> None:
        if not self.exists():
            raise NotFound(
                f"no model repository {self.name!r} in the local store ({self.path.parent})",
                "push a model there first, or check the name (set MODELREG_HOME to use "
                "another store)",
            )

    def _ensure_layout(self) -> None:
        blob_dir = self.path / "blobs" / "sha256"
        if blob_dir.is_dir() and self.exists():
            return
        blob_dir.mkdir(parents=True, exist_ok=True)
        marker = self.path / "oci-layout"
        if not marker.exists():
            _atomic_write(marker, _LAYOUT_MARKER)
        if not (self.path / "index.json").exists():
            with self._locked():
                if not (self.path / "index.json").exists():
                    self._write_index([])

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_index(self) -> list[Descriptor]:
        return list(self._parsed_index().entries)

    def _parsed_index(self) -> _ParsedIndex:
        try:
            data = (self.path / "index.json").read_bytes()
        except FileNotFoundError:
            return _ParsedIndex.of(b"", [])
        # parsing is the cost (~0.1 s for 2,000 tags), and a bulk read (every version's
        # manifest) resolves one tag after another: reuse the parse while the bytes are equal
        cached = self._store.parsed_indexes.get(self.path)
        if cached is not None and cached.data == data:
            return cached
        body = load_json_object(data, f"{self.path}/index.json", limit=_MAX_INDEX_BYTES)
        manifests = body.get("manifests", [])
        if not isinstance(manifests, list):
            raise IntegrityError(f"{self.path}/index.json: manifests must be a list")
        entries = [
            Descriptor.from_dict(entry, f"index.json manifests[{n}]")
            for n, entry in enumerate(manifests)
        ]
        parsed = _ParsedIndex.of(data, entries)
        self._store.parsed_indexes[self.path] = parsed
        return parsed

    def _write_index(self, entries: list[Descriptor]) -> None:
        body: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": IMAGE_INDEX,
            "manifests": [entry.to_dict() for entry in entries],
        }
        _atomic_write(self.path / "index.json", json.dumps(body, indent=1).encode())


def _with_ref_name(descriptor: Descriptor, tag: str) -> Descriptor:
    return Descriptor(
        descriptor.media_type,
        descriptor.digest,
        descriptor.size,
        {**descriptor.annotations, ANNOTATION_REF_NAME: tag},
        descriptor.artifact_type,
    )


def _strip_ref_name(descriptor: Descriptor) -> Descriptor:
    annotations = {k: v for k, v in descriptor.annotations.items() if k != ANNOTATION_REF_NAME}
    return Descriptor(
        descriptor.media_type,
        descriptor.digest,
        descriptor.size,
        annotations,
        descriptor.artifact_type,
    )


@contextlib.contextmanager
def _temporary_file(directory: Path) -> Iterator[tuple[IO[bytes], Path]]:
    """A temp file in ``directory``, removed unless the caller renamed it away.

    Every write to the local store goes through here: a full or read-only disk ends
    as a ModelregError (``localfs``), with the temp file gone.
    """
    with local_writes("writing the local store", directory):
        fd, name = tempfile.mkstemp(prefix=".tmp-", dir=directory)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle, path
        finally:
            path.unlink(missing_ok=True)


def _atomic_write(path: Path, data: bytes) -> None:
    with _temporary_file(path.parent) as (handle, temp_path):
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
        os.chmod(temp_path, 0o644)
        os.replace(temp_path, path)


def layout_directory(directory: Path) -> LayoutRepository:
    """An OCI image-layout directory named on its own (``oci:DIR``, skopeo's syntax).

    It is a repository of a store whose root is its parent directory, so blobs
    are hard-linked from a sibling layout as they are within the local store.
    """
    directory = directory.expanduser()
    absolute = directory.resolve()
    if absolute.name in _RESERVED or not absolute.name:
        raise InvalidInput(
            f"oci:{directory} is not a usable layout directory name",
            "name the directory that holds (or will hold) index.json and blobs/",
        )
    return _NamedLayout(absolute, absolute.name, LayoutStore(absolute.parent), f"oci:{directory}")


class _NamedLayout(LayoutRepository):
    """A layout directory shown as ``oci:DIR``; inside its store it is its own name."""

    def __init__(self, path: Path, name: str, store: LayoutStore, shown: str) -> None:
        super().__init__(path, name, store)
        self._shown = shown

    @property
    def name(self) -> str:
        return self._shown
