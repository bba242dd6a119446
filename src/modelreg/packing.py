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

MODEL_ROOT = "model"
META_ROOT = ".modelreg"
LARGE_FILE = 8 * 1024 * 1024
MAX_LAYERS = 100
CHUNK = 2 * 1024 * 1024
BLOCK = 512
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


def padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


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
            raise IntegrityError(f"two layers both contain {member.name!r}") from None
        try:
            reader.copy_to(fd, member.size)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        written.append(str(relative))
    return written


_MAX_HEADER_DATA = 1 << 20  # a PAX record set or GNU long name; ours are a few hundred bytes
_DATA_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)


class TarStream:
    """A tar archive read front to back from a stream, for layers.

    ``members()`` yields one ``TarInfo`` per entry, with PAX and GNU long-name
    headers applied; the data of a regular file is either copied out with
    ``copy_to`` before the next member is asked for, or skipped. Headers are
    checked by ``tarfile`` (checksums, number fields); sparse files are refused.
    The archive ends at a zero block or at the end of the stream between entries.
    """

    def __init__(self, stream: Readable, buffer_size: int = CHUNK) -> None:
        self._stream = stream
        self._readinto = getattr(stream, "readinto", None)
        self._buffer = memoryview(bytearray(buffer_size))
        self._pending = 0  # data bytes (padding included) of the current member not read yet
        self.global_headers = False  # a global PAX header was read (tar readers differ on it)

    def members(self) -> Iterator[tarfile.TarInfo]:
        global_pax: dict[str, str] = {}
        extended: dict[str, str] = {}
        while True:
            self._skip(self._pending)
            self._pending = 0
            header = self._header()
            if header is None:
                return
            try:
                info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
            except tarfile.HeaderError as exc:
                raise IntegrityError(f"layer is not a valid tar archive: {exc}") from None
            if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE):
                records = _pax_records(self._small_data(info.size))
                if info.type == tarfile.XGLTYPE:
                    self.global_headers = True
                else:
                    _once(extended, records)
                (global_pax if info.type == tarfile.XGLTYPE else extended).update(records)
                continue
            if info.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
                value = self._small_data(info.size).split(b"\0", 1)[0]
                key = "path" if info.type == tarfile.GNUTYPE_LONGNAME else "linkpath"
                _once(extended, {key: ""})
                extended[key] = value.decode("utf-8", "surrogateescape")
                continue
            _apply_extended(info, {**global_pax, **extended})
            extended = {}
            if info.type in _DATA_TYPES or info.type not in tarfile.SUPPORTED_TYPES:
                self._pending = padded(info.size)
            yield info

    def copy_to(self, fd: int, size: int) -> None:
        """Write the current member's ``size`` data bytes to ``fd``; skip its padding."""

        def write(view: memoryview) -> None:
            while view:
                view = view[os.write(fd, view) :]

        self.feed(size, write)

    def feed(self, size: int, sink: Callable[[memoryview], None]) -> None:
        """Hand the current member's ``size`` data bytes to ``sink`` chunk by chunk."""
        if padded(size) != self._pending:
            raise AssertionError("feed must get the size of the current member")
        remaining = size
        buffer = self._buffer
        while remaining:
            count = self._read_into(buffer[: min(remaining, len(buffer))])
            if not count:
                raise IntegrityError("layer is not a valid tar archive: unexpected end of data")
            sink(buffer[:count])
            remaining -= count
        self._pending -= size

    def _header(self) -> bytes | None:
        block = bytearray(BLOCK)
        view = memoryview(block)
        first = self._read_into(view)
        if first == 0:
            return None  # the stream ended between entries
        self._fill(view[first:])
        if not any(block):
            return None
        return bytes(block)

    def _small_data(self, size: int) -> bytes:
        if size > _MAX_HEADER_DATA:
            raise IntegrityError(f"layer has an extended tar header of {size} bytes")
        data = bytearray(padded(size))
        self._fill(memoryview(data))
        return bytes(data[:size])

    def _skip(self, count: int) -> None:
        while count:
            view = self._buffer[: min(count, len(self._buffer))]
            self._fill(view)
            count -= len(view)

    def _fill(self, view: memoryview) -> None:
        done = 0
        while done < len(view):
            count = self._read_into(view[done:])
            if not count:
                raise IntegrityError("layer is not a valid tar archive: unexpected end of data")
            done += count

    def _read_into(self, view: memoryview) -> int:
        if self._readinto is not None:
            return int(self._readinto(view) or 0)
        data = self._stream.read(len(view))
        view[: len(data)] = data
        return len(data)


def _pax_records(data: bytes) -> dict[str, str]:
    """``"<length> <key>=<value>\\n"`` records (POSIX pax extended headers)."""
    records: dict[str, str] = {}
    position = 0
    while position < len(data) and data[position] != 0:
        space = data.find(b" ", position)
        length_text = data[position:space] if space > position else b""
        if not length_text.isdigit():
            raise IntegrityError("layer is not a valid tar archive: malformed pax header")
        length = int(length_text)
        record = data[space + 1 : position + length]
        if position + length > len(data) or not record.endswith(b"\n") or b"=" not in record:
            raise IntegrityError("layer is not a valid tar archive: malformed pax header")
        key, _, value = record[:-1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        position += length
    return records


def _once(extended: dict[str, str], records: dict[str, str]) -> None:
    """An entry's name given twice (GNU long name and PAX path): tar readers differ on
    which wins, so the name is ambiguous."""
    for key in ("path", "linkpath"):
        if key in records and key in extended:
            raise IntegrityError(
                f"layer is not a valid tar archive: an entry's {key} is given twice"
            )


def _apply_extended(info: tarfile.TarInfo, records: dict[str, str]) -> None:
    if info.type == tarfile.GNUTYPE_SPARSE or any(k.startswith("GNU.sparse") for k in records):
        raise IntegrityError(
            f"sparse file in layer: {info.name!r}", "model layers hold plain regular files"
        )
    if "path" in records:
        info.name = records["path"]
    if "linkpath" in records:
        info.linkname = records["linkpath"]
    if "size" in records:
        if not records["size"].isdigit():
            raise IntegrityError("layer is not a valid tar archive: malformed pax size")
        info.size = int(records["size"])
    if info.isdir():
        info.name = info.name.rstrip("/")
    info.pax_headers = records  # what else the entry carries (formats.reuse reads it)


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
                raise IntegrityError(f"layer entry conflicts with a file: {current}") from None
