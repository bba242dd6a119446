"""Files ⇄ deterministic, uncompressed tar layers.

Packing: a file or directory becomes layers whose bytes depend only on the
relative names, sizes, executable bits and contents of the files: entries
sorted, mtime 0, uid/gid 0, no user names, PAX format. Every file lands under
``/model/``. A file of ``LARGE_FILE`` bytes or more gets a layer of its own, so
an unchanged weights file is the same blob in every version; the small files
share one layer. Layers stream from disk: nothing is held in memory.

Unpacking: refuses anything that could land outside the target — absolute
paths, ``..``, links of any kind, devices, whiteouts, duplicates — and writes
only regular files and directories it created itself.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .digest import Readable
from .errors import IntegrityError, InvalidInput, NotFound
from .localfs import NAME_MAX
from .tarstream import BLOCK, CHUNK, TarStream, padded

MODEL_ROOT = "model"
META_ROOT = ".modelreg"
LARGE_FILE = 8 * 1024 * 1024
MAX_LAYERS = 100
END_OF_ARCHIVE = b"\0" * (2 * BLOCK)


@dataclass(frozen=True)
class FileEntry:
    """One regular file of a layer: from disk (``source``) or from memory (``data``)."""

    name: str  # relative POSIX path below the layer root
    size: int
    executable: bool = False
    source: Path | None = None
    data: bytes | None = None


@dataclass(frozen=True)
class LayerPlan:
    """A layer to be streamed: its exact size is known before a byte is read."""

    root: str
    title: str
    files: tuple[FileEntry, ...]
    directories: tuple[str, ...] = ()
    _headers: tuple[bytes, ...] = field(default=(), repr=False, compare=False)

    @property
    def size(self) -> int:
        return (
            sum(len(h) for h in self._headers)
            + sum(padded(f.size) for f in self.files)
            + len(END_OF_ARCHIVE)
        )

    @property
    def header_digest(self) -> str:
        """Digest of everything in the layer but file contents: names, sizes, modes."""
        return hashlib.sha256(b"".join(self._headers)).hexdigest()

    def __iter__(self) -> Iterator[bytes]:
        headers = iter(self._headers)
        for _ in self.directories:
            yield next(headers)
        for entry in self.files:
            yield next(headers)
            yield from _file_chunks(entry)
            padding = padded(entry.size) - entry.size
            if padding:
                yield b"\0" * padding
        yield END_OF_ARCHIVE


def make_layer(
    root: str, title: str, files: Sequence[FileEntry], extra_dirs: Sequence[str] = ()
) -> LayerPlan:
    ordered = sorted(files, key=lambda f: f.name.encode())
    directories = {root}
    for entry in ordered:
        parent = PurePosixPath(entry.name).parent
        while str(parent) != ".":
            directories.add(f"{root}/{parent}")
            parent = parent.parent
    directories.update(f"{root}/{d}" for d in extra_dirs)
    dir_names = tuple(sorted(directories, key=lambda d: d.encode()))
    headers = [tar_header(f"{d}/", tarfile.DIRTYPE, 0, 0o755) for d in dir_names]
    headers.extend(
        tar_header(f"{root}/{f.name}", tarfile.REGTYPE, f.size, 0o755 if f.executable else 0o644)
        for f in ordered
    )
    return LayerPlan(root, title, tuple(ordered), dir_names, tuple(headers))


def tar_header(name: str, kind: bytes, size: int, mode: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def _file_chunks(entry: FileEntry) -> Iterator[bytes]:
    if entry.data is not None:
        yield entry.data
        return
    assert entry.source is not None
    remaining = entry.size
    with open(entry.source, "rb") as handle:
        while remaining:
            chunk = handle.read(min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
        if remaining or handle.read(1):
            raise IntegrityError(
                f"{entry.source} changed while it was being pushed",
                "push again once nothing is writing to the model files",
            )


# ----- planning a model ------------------------------------------------------


def scan_model(path: Path) -> list[FileEntry]:
    """The regular files of a model path, names relative to it (symlinks followed)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise NotFound(
            f"model path does not exist: {path}", "give the path of a model file or directory"
        ) from None
    except OSError as exc:
        raise InvalidInput(f"cannot read model path {path}: {exc.strerror}") from None
    if stat.S_ISREG(info.st_mode):
        _check_readable(path)
        return [_entry(path.name, path, info)]
    if not stat.S_ISDIR(info.st_mode):
        raise InvalidInput(f"model path is neither a file nor a directory: {path}")
    entries: list[FileEntry] = []
    seen_dirs: set[tuple[int, int]] = set()
    _walk(path, "", entries, seen_dirs)
    if not entries:
        raise InvalidInput(
            f"model directory {path} contains no files", "point at the directory with the weights"
        )
    return entries


def _walk(directory: Path, prefix: str, out: list[FileEntry], seen: set[tuple[int, int]]) -> None:
    info = directory.stat()
    key = (info.st_dev, info.st_ino)
    if key in seen:
        raise InvalidInput(f"symlink loop in the model directory at {directory}")
    seen = seen | {key}
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise InvalidInput(f"cannot list {directory}: {exc.strerror}") from None
    for name in names:
        child = directory / name
        _check_name(child)
        relative = f"{prefix}{name}"
        try:
            child_info = child.stat()
        except FileNotFoundError:
            raise InvalidInput(
                f"broken symlink in the model directory: {child}",
                "remove it or point it at an existing file",
            ) from None
        if stat.S_ISDIR(child_info.st_mode):
            _walk(child, f"{relative}/", out, seen)
        elif stat.S_ISREG(child_info.st_mode):
            _check_readable(child)
            out.append(_entry(relative, child, child_info))
        else:
            raise InvalidInput(
                f"{child} is not a regular file or directory",
                "models may contain only files and directories",
            )


def _entry(name: str, path: Path, info: os.stat_result) -> FileEntry:
    return FileEntry(name, info.st_size, bool(info.st_mode & 0o111), source=path)


def _check_name(path: Path) -> None:
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"file name is not valid UTF-8: {path!r}") from None


def _check_readable(path: Path) -> None:
    if not os.access(path, os.R_OK):
        raise InvalidInput(f"cannot read model file {path}: permission denied")


def plan_layers(files: Sequence[FileEntry], large_file: int = LARGE_FILE) -> list[LayerPlan]:
    """Small files share the first layer; each large file gets its own, sorted by name."""
    large = sorted(
        (f for f in files if f.size >= large_file), key=lambda f: (-f.size, f.name.encode())
    )
    own = sorted(large[: MAX_LAYERS - 1], key=lambda f: f.name.encode())
    own_names = {f.name for f in own}
    small = [f for f in files if f.name not in own_names]
    layers: list[LayerPlan] = []
    if small:
        layers.append(make_layer(MODEL_ROOT, MODEL_ROOT, small))
    for entry in own:
        layers.append(make_layer(MODEL_ROOT, entry.name, [entry]))
    return layers


# ----- unpacking ---------------------------------------------------------------


def unpack_layer(
    stream: Readable,
    target: Path,
    *,
    root: str | None = MODEL_ROOT,
    wanted: Callable[[str], bool] | None = None,
) -> list[str]:
    """Extract the ``root/`` entries of one tar layer into ``target``; return file names.

    ``root=None`` takes every entry at its own path (layers other tools wrote).

    ``target`` must be a directory this process created and controls (a staging
    directory): every path is created with O_EXCL and O_NOFOLLOW below it.
    Entries under ``.modelreg/`` (lineage blobs) are read and skipped. File
    contents go from the stream into the file through one reused buffer
    (``readinto`` when the stream has it): no per-chunk copies. Files that
    ``wanted`` (given their relative path) refuses are read past, not written.
    """
    written: list[str] = []
    reader = TarStream(stream)
    for member in reader.members():
        relative = _safe_relative(member, root)
        if relative is None:
            continue
        destination = target.joinpath(*relative.parts) if relative.parts else target
        if member.isdir():
            if wanted is None:
                make_dirs(target, relative)
            continue
        if wanted is not None and not wanted(str(relative)):
            continue
        make_dirs(target, relative.parent)
        mode = 0o755 if member.mode & 0o111 else 0o644
        try:
            fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        except FileExistsError:
            raise IntegrityError(f"two layer entries both write {member.name!r}") from None
        try:
            reader.copy_to(fd, member.size)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        written.append(str(relative))
    return written


def read_single_file(stream: Readable, *, root: str = META_ROOT, limit: int) -> bytes:
    """The content of the one regular file a small layer holds below ``root/``."""
    found: bytes | None = None
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:  # type: ignore[call-overload]
            for member in archive:
                relative = _safe_relative(member, root, skip_meta=False)
                if member.isdir() or relative is None:
                    continue
                if found is not None:
                    raise IntegrityError("a lineage layer holds more than one file")
                if member.size > limit:
                    raise IntegrityError(f"lineage file {member.name!r} is over {limit} bytes")
                source = archive.extractfile(member)
                assert source is not None
                found = source.read()
    except tarfile.TarError as exc:
        raise IntegrityError(f"layer is not a valid tar archive: {exc}") from None
    if found is None:
        raise IntegrityError("a lineage layer holds no file")
    return found


def _safe_relative(
    member: tarfile.TarInfo, root: str | None, *, skip_meta: bool = True
) -> PurePosixPath | None:
    path = checked_entry(member)
    if not path.parts:  # the layer's own root directory, above /model
        return None
    if root is None:
        return path
    if skip_meta and path.parts[0] == META_ROOT:
        return None
    if path.parts[0] != root:
        raise IntegrityError(f"layer entry {member.name!r} is outside /{root}")
    return PurePosixPath(*path.parts[1:])


def relative_path(value: str, where: str) -> PurePosixPath:
    """``value`` as a relative path that stays below the target, or IntegrityError naming
    ``where``: the one rule for a tar entry's name and a foreign layer's file path."""
    text = value
    while text.startswith("./"):
        text = text[2:]
    text = text.rstrip("/")
    if not text or text.startswith("/") or "\0" in text or "\\" in text:
        raise IntegrityError(
            f"{where}: file path {value!r} is not a relative path",
            "the artifact names a path outside the model directory; it was not written",
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes tarfile kept as lone surrogates
        raise IntegrityError(
            f"{where}: file path {value!r} is not valid UTF-8",
            "modelreg pushes only UTF-8 file names (JSON and annotations cannot carry others); "
            "the artifact was not written",
        ) from None
    parts = text.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise IntegrityError(
            f"{where}: file path {value!r} escapes the model directory",
            "the artifact names a path outside the model directory; it was not written",
        )
    longest = max(len(os.fsencode(part)) for part in parts)
    if longest > NAME_MAX:
        raise IntegrityError(
            f"{where}: file path {value[:60]!r}… has a {longest}-byte name, longer than any "
            f"file system allows ({NAME_MAX})",
            "modelreg never writes such a name: the artifact was not pushed by modelreg",
        )
    return PurePosixPath(*parts)


def checked_entry(member: tarfile.TarInfo) -> PurePosixPath:
    """A tar entry's relative path, refused unless it is a plain file or directory inside;
    the empty path for the layer's own root directory (``tar -C DIR -cf - .`` writes "./")."""
    if member.isdir() and member.name in (".", "./"):
        return PurePosixPath()
    path = relative_path(member.name, "unsafe path in layer")
    if any(part.startswith(".wh.") for part in path.parts):
        raise IntegrityError(f"whiteout entry in layer: {member.name!r}")
    if not (member.isreg() or member.isdir()):
        kind = "symlink" if member.issym() else "hardlink" if member.islnk() else "special file"
        raise IntegrityError(
            f"unsafe {kind} in layer: {member.name!r}",
            "model artifacts hold only regular files and directories",
        )
    return path


def make_dirs(target: Path, relative: PurePosixPath) -> None:
    current = target
    for part in relative.parts:
        current = current / part
        try:
            os.mkdir(current, 0o755)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(current).st_mode):
                inside = current.relative_to(target).as_posix()
                raise IntegrityError(
                    f"a layer entry needs the file {inside!r} as a directory"
                ) from None
