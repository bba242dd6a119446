"""A foreign tar layer (ModelPack, KitOps) as an image layer: the same blob, checked first.

Docker and containerd extract an image layer verbatim at the container's root, so a
layer reused as it is must be one modelreg's pull and every engine read alike, and
harmless for both. One pass over the verified blob decides:

* unsafe (IntegrityError, exit 6): what ``pull`` refuses too — an entry that is
  absolute or climbs out with ``..``, a link of any kind, a device or FIFO, a
  whiteout, a sparse file, an over-long name, a name given twice (GNU and PAX), a
  file listed twice, a file where a directory is, a header Go's ``archive/tar``
  reads otherwise than ``tarfile`` (see ``tarstream``);
* repacked (a reason is returned; the files go under ``/model/`` like a raw layer's):
  what ``pull`` accepts but an engine would honour — set-uid/set-gid/sticky bits,
  files or directories not readable by all, PAX records beyond names, sizes, times
  and owners (extended attributes, ACLs, file capabilities), global PAX headers,
  entries under ``.modelreg/`` (modelreg's lineage), bytes after the archive's end,
  over ``MAX_ENTRIES`` entries (the file list is held in memory);
* reused otherwise, with what the image needs computed on the way: the digest of
  the uncompressed tar (the config's ``diff_id``) and the sha256 of every file
  (the layer's ``dev.modelreg.files`` list, which inspect, show and selective
  pull read).

The image layer carries ``dev.modelreg.root: /``: its entries sit at their own
paths from the root of the layer, so in a container too. A layer without it holds
its files below ``model/`` (modelreg's own). Pull lays such a layer out as pulling
the source did: entries at their names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from .._json import canonical_json
from ..compression import LAYER_TAR_GZIP, LAYER_TAR_ZSTD, DecodingReader
from ..digest import CHUNK, Readable, VerifyingReader
from ..errors import IntegrityError
from ..oci import ANNOTATION_FILES, ANNOTATION_LAYER_TITLE, LAYER_TAR, Descriptor
from ..packing import META_ROOT, MODEL_ROOT, checked_entry
from ..tarstream import TarStream
from .layers import FileLayer

if TYPE_CHECKING:
    from ..store.base import Repository

ANNOTATION_ROOT = "dev.modelreg.root"
ENTRIES_AT_ROOT = "/"
LABEL_AT_ROOT = "dev.modelreg.layers-at-root"
_MEDIA_TYPES = {"": LAYER_TAR, "gzip": LAYER_TAR_GZIP, "zstd": LAYER_TAR_ZSTD}
_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}
# PAX records every tar writer may add that change nothing once extracted by an engine
_PLAIN_RECORDS = frozenset(
    {"path", "size", "mtime", "atime", "ctime", "uid", "gid", "uname", "gname", "comment"}
)
FILE_LIST_BUDGET = 2 * 1024 * 1024
MAX_ENTRIES = 100_000
_REFUSED = "the layer is unsafe to serve as an image layer; nothing was written at DEST"


@dataclass(frozen=True)
class ReusedLayer:
    """A source tar layer as it appears in the image, and what was found in it."""

    layer: Descriptor  # the same blob: digest and size of the source's
    diff_id: str
    files: Mapping[str, str]  # entry path -> sha256 of the file
    directories: frozenset[str]


def root_of(layer: Descriptor) -> str | None:
    """Where an image layer's files are: ``model`` (modelreg's own), None (at their paths)."""
    value = layer.annotations.get(ANNOTATION_ROOT)
    if value is None:
        return MODEL_ROOT
    if value == ENTRIES_AT_ROOT:
        return None
    raise IntegrityError(
        f"layer {layer.digest} has {ANNOTATION_ROOT}={value!r}, which modelreg does not define",
        f"the only value is {ENTRIES_AT_ROOT!r}; the image was not written by modelreg",
    )


def at_root_label(reused: Sequence[ReusedLayer]) -> dict[str, str]:
    """The manifest annotation (and so config label) naming the reused layers by diff_id.

    ``docker push`` drops every annotation but copies the config byte for byte: from its
    labels a reader still knows which layers hold their files at their own paths."""
    if not reused:
        return {}
    return {LABEL_AT_ROOT: canonical_json(sorted(layer.diff_id for layer in reused)).decode()}


def at_root_diff_ids(labels: Mapping[str, str]) -> frozenset[str]:
    """The diff_ids :func:`at_root_label` named; empty when there is no such label."""
    try:
        found = json.loads(labels.get(LABEL_AT_ROOT, "[]"))
    except ValueError:
        found = None
    if not isinstance(found, list) or not all(isinstance(d, str) for d in found):
        raise IntegrityError(
            f"the image config's label {LABEL_AT_ROOT} is malformed",
            "the image was not written by modelreg; nothing was written",
        )
    return frozenset(found)


def with_config_roots(
    layers: Sequence[FileLayer], diff_ids: Mapping[str, str], labels: Mapping[str, str]
) -> list[FileLayer]:
    """``layers`` of an image, those the config's label names (by diff_id) at their paths."""
    at_root = at_root_diff_ids(labels)
    return [
        dataclasses.replace(layer, root=None)
        if diff_ids.get(layer.descriptor.digest) in at_root
        else layer
        for layer in layers
    ]


def check_layer(
    repository: Repository, layer: FileLayer, on_bytes: Callable[[int], None] | None = None
) -> ReusedLayer | str:
    """The image layer ``layer`` (a tar) can be, or why its files must be repacked.

    ``on_bytes`` is told how many bytes of the blob have been read, now and then."""
    source = layer.descriptor
    where = f"layer {source.digest}"
    with repository.open_blob(source) as raw:
        blob = VerifyingReader(_Head(raw, on_bytes), source.digest, source.size, where)
        head = _Head(blob)
        tar = DecodingReader(head, LAYER_TAR, None, where)  # decodes by magic number
        try:
            found = _walk(tar, where)
        except IntegrityError as exc:
            blob.finish()  # a corrupt blob is named as such first
            raise IntegrityError(exc.message, exc.hint or _REFUSED) from None
        trailing = _trailing_data(tar)
        diff_id = tar.finish()
        blob.finish()
    if isinstance(found, str):
        return found
    if trailing:
        return "it has data after the end of the archive"
    files, directories = found
    annotations = {
        ANNOTATION_LAYER_TITLE: _title(layer),
        ANNOTATION_ROOT: ENTRIES_AT_ROOT,
        ANNOTATION_FILES: canonical_json(dict(sorted(files.items()))).decode(),
    }
    media_type = _MEDIA_TYPES[_MAGIC.get(head.head[:2]) or _MAGIC.get(head.head[:4]) or ""]
    return ReusedLayer(
        Descriptor(media_type, source.digest, source.size, annotations),
        diff_id,
        files,
        frozenset(directories),
    )


def fit_file_lists(
    layers: Sequence[ReusedLayer], budget: int = FILE_LIST_BUDGET
) -> list[ReusedLayer]:
    """``layers`` with the longest file lists left out until the rest fit in ``budget`` bytes
    of the manifest (registries refuse manifests over 4 MiB). A layer without its list is
    still laid out the same; inspect then names it by its title, and a selective pull
    downloads it whole."""
    sizes = [len(layer.layer.annotations.get(ANNOTATION_FILES, "")) for layer in layers]
    dropped: set[int] = set()
    for index in sorted(range(len(layers)), key=lambda i: -sizes[i]):
        if sum(size for i, size in enumerate(sizes) if i not in dropped) <= budget:
            break
        dropped.add(index)
    return [_without_list(layer) if i in dropped else layer for i, layer in enumerate(layers)]


def _without_list(layer: ReusedLayer) -> ReusedLayer:
    notes = {k: v for k, v in layer.layer.annotations.items() if k != ANNOTATION_FILES}
    return dataclasses.replace(layer, layer=dataclasses.replace(layer.layer, annotations=notes))


def _walk(tar: Readable, where: str) -> tuple[dict[str, str], set[str]] | str:
    reader = TarStream(tar, CHUNK)
    files: dict[str, str] = {}
    directories: set[str] = set()
    reason = ""
    for member in reader.members():
        if len(files) + len(directories) >= MAX_ENTRIES:
            return f"it has more than {MAX_ENTRIES} entries"  # memory stays bounded
        path = checked_entry(member)  # unsafe: IntegrityError, as pull
        name = str(path)
        if not path.parts:  # the layer's own root directory
            continue
        if name in files or (member.isreg() and name in directories):
            raise IntegrityError(f"{where} lists {name!r} twice")
        parents = {str(p) for p in PurePosixPath(name).parents if str(p) != "."}
        if parents & files.keys():
            raise IntegrityError(f"{where}: {name!r} is below a file of the same layer")
        directories |= parents
        reason = reason or _engine_difference(member, path)
        if member.isdir():
            directories.add(name)
            continue
        digest = hashlib.sha256()
        reader.feed(member.size, digest.update)
        files[name] = f"sha256:{digest.hexdigest()}"
    if reader.global_headers:
        reason = reason or "it has a global PAX header, which tar readers apply differently"
    return reason or (files, directories)


def _engine_difference(member: object, path: PurePosixPath) -> str:
    """Why an engine would extract this (safe) entry unlike ``pull``; "" when it would not."""
    import tarfile

    assert isinstance(member, tarfile.TarInfo)
    if path.parts[0] == META_ROOT:
        return f"it holds {member.name!r}, where modelreg keeps lineage"
    if member.mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX):
        return f"{member.name!r} has a set-uid, set-gid or sticky bit"
    needed = 0o555 if member.isdir() else 0o444
    if member.mode & needed != needed:
        return f"{member.name!r} is not readable by all (mode {member.mode & 0o7777:o})"
    extra = sorted(set(member.pax_headers) - _PLAIN_RECORDS)
    if extra:
        return f"{member.name!r} carries PAX records {', '.join(extra)[:80]}"
    return ""


def _trailing_data(tar: Readable) -> bool:
    """Whether anything but zero padding follows the archive's end."""
    found = False
    while chunk := tar.read(CHUNK):
        found = found or any(chunk)
    return found


def _title(layer: FileLayer) -> str:
    """The layer's name as shown; never one the lineage reader would take for its own."""
    title = layer.title or layer.descriptor.digest[:19]
    if title == META_ROOT or title.startswith(f"{META_ROOT}/"):
        return layer.descriptor.digest[:19]
    return title


class _Head:
    """A stream that keeps its first four bytes (the compression's magic number) and
    reports how many it has passed on."""

    def __init__(self, raw: Readable, on_bytes: Callable[[int], None] | None = None) -> None:
        self._raw = raw
        self._on_bytes = on_bytes
        self._count = self._reported = 0
        self.head = b""

    def read(self, size: int = -1, /) -> bytes:
        data = self._raw.read(size)
        if len(self.head) < 4:
            self.head += data[: 4 - len(self.head)]
        self._count += len(data)
        if self._on_bytes and (self._count - self._reported >= CHUNK or not data):
            self._reported = self._count
            self._on_bytes(self._count)
        return data
