"""A layer of any form as files: a tar (maybe gzip or zstd) or one raw file at a path.

Every form modelreg reads (its own image, ModelPack, KitOps) comes down to
these two kinds. The stream handed in is the blob's *verified* stream; the
caller finishes the verification after the files are written, into a staging
directory it throws away on any error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..digest import CHUNK, Readable, VerifyingReader
from ..errors import IntegrityError
from ..oci import Descriptor
from ..packing import make_dirs, relative_path, unpack_layer

COMPRESSIONS = ("", "gzip", "zstd")
_REFUSED = "the layer is damaged or unsafe; nothing was written (ask its publisher to re-push)"


@dataclass(frozen=True)
class FileLayer:
    """How one layer becomes files below the target directory."""

    descriptor: Descriptor
    archive: bool  # a tar archive (True) or one raw file (False)
    compression: str  # "", "gzip" or "zstd"
    path: str  # a raw layer's file path, relative; "" for a tar
    root: str | None  # a tar's entries are taken from below this directory; None: all
    title: str
    executable: bool = False  # a raw file's mode says so (ModelPack's file metadata)

    def __post_init__(self) -> None:
        assert self.compression in COMPRESSIONS


def tar_title(path: str, fallback: str) -> str:
    """A tar layer's ``filepath`` annotation as its title: it places no file (the entry
    names do), so one that is not a clean relative path ('.', a Windows path) is not
    refused, only not shown."""
    try:
        return str(relative_path(path, "")) if path else fallback
    except IntegrityError:
        return fallback


def raw_file_layer(
    layer: Descriptor,
    path: str,
    where: str,
    metadata_keys: Sequence[str],
    *,
    compression: str = "",
    root: str | None = None,
) -> FileLayer:
    """A raw layer: one file, written at its ``filepath`` (required, relative),
    executable when its file metadata says so."""
    if not path:
        raise IntegrityError(
            f"{where} is a raw file with no org.cncf.model.filepath annotation",
            "a raw layer must say where its file goes; nothing was written",
        )
    relative = str(relative_path(path, where))
    executable = _executable(layer.annotations, metadata_keys)
    return FileLayer(layer, False, compression, relative, root, relative, executable)


def _executable(annotations: Mapping[str, str], keys: Sequence[str]) -> bool:
    """Whether ModelPack's per-file metadata (``…file.metadata+json``, as modctl and kit
    write it) gives the raw file an executable bit; anything malformed says no."""
    import json

    for key in keys:
        if key in annotations:
            try:
                mode = json.loads(annotations[key]).get("mode")
            except (ValueError, AttributeError):
                return False
            return isinstance(mode, int) and not isinstance(mode, bool) and bool(mode & 0o111)
    return False


def decoded(stream: Readable, compression: str, what: str) -> Readable:
    """The uncompressed bytes of a layer stream (``compression.DecodingReader`` does it)."""
    if not compression:
        return stream
    from ..compression import LAYER_TAR_GZIP, LAYER_TAR_ZSTD, DecodingReader

    media_type = LAYER_TAR_GZIP if compression == "gzip" else LAYER_TAR_ZSTD
    return DecodingReader(stream, media_type, None, what)


def unpack(
    layer: FileLayer,
    blob: VerifyingReader,
    target: Path,
    wanted: Callable[[str], bool] | None = None,
) -> list[str]:
    """Write one layer's files below ``target`` (a staging directory); return their paths.

    Files ``wanted`` refuses (given their relative path) are read past, not written.
    A compressed layer is decoded only after ``blob`` verified (``verified_first``);
    the caller finishes ``blob`` either way.
    """
    where = f"layer {layer.descriptor.digest}"
    if layer.compression:
        from ..compression import verified_first

        with verified_first(blob, target) as verified:
            return _unpack_decoded(
                layer, decoded(verified, layer.compression, where), target, wanted
            )
    return _unpack_decoded(layer, blob, target, wanted)


def _unpack_decoded(
    layer: FileLayer, source: Readable, target: Path, wanted: Callable[[str], bool] | None
) -> list[str]:
    where = f"layer {layer.descriptor.digest}"
    try:
        if layer.archive:
            return unpack_layer(source, target, root=layer.root, wanted=wanted)
        relative = relative_path(layer.path, where)
        if wanted is not None and not wanted(str(relative)):
            while source.read(CHUNK):
                pass
            return []
        return [_write_raw(source, target, relative, layer.executable)]
    except IntegrityError as exc:
        if exc.hint:
            raise
        raise IntegrityError(exc.message, _REFUSED) from None


def _write_raw(source: Readable, target: Path, relative: PurePosixPath, executable: bool) -> str:
    make_dirs(target, relative.parent)
    destination = target.joinpath(*relative.parts)
    mode = 0o755 if executable else 0o644  # as a tar entry's: never set-uid, always readable
    try:
        fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise IntegrityError(f"two layer entries both write {str(relative)!r}") from None
    try:
        os.fchmod(fd, mode)  # whatever the umask
        while chunk := source.read(CHUNK):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    return str(relative)
