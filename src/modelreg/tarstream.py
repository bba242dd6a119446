"""Tar layers read front to back, the way every engine reads them or not at all.

A layer is extracted by more than one reader: modelreg's pull reads it here, and an
engine (Docker, containerd, podman, umoci: Go's ``archive/tar``) extracts the same
blob when it serves as an image layer. Where the two parsers would disagree on a
header, an entry one of them sees could be invisible to the other (a number field
``tarfile`` ends at a leading NUL while Go skips it; a ``prefix`` field Go ignores
outside ustar), so such a header is refused: only what both read alike is read.
"""

from __future__ import annotations

import os
import re
import tarfile
from collections.abc import Callable, Iterator

from .digest import Readable
from .errors import IntegrityError

CHUNK = 2 * 1024 * 1024
BLOCK = 512


def padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


_MAX_HEADER_DATA = 1 << 20  # a PAX record set or GNU long name; ours are a few hundred bytes
_DATA_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)


class TarStream:
    """A tar archive read front to back from a stream, for layers.

    ``members()`` yields one ``TarInfo`` per entry, with PAX and GNU long-name
    headers applied; the data of a regular file is either copied out with
    ``copy_to`` before the next member is asked for, or skipped. Headers are
    checked by ``tarfile`` (checksums, number fields) and by :func:`check_header`;
    sparse files are refused.
    The archive ends at a zero block or at the end of the stream between entries.
    """

    def __init__(self, stream: Readable, buffer_size: int = CHUNK) -> None:
        self._stream = stream
        self._readinto = getattr(stream, "readinto", None)
        self._buffer = memoryview(bytearray(buffer_size))
        self._pending = 0  # data bytes (padding included) of the current member not read yet
        self.global_headers = False  # a global PAX header was read (tar readers differ on it)

    def members(self) -> Iterator[tarfile.TarInfo]:
        extended: dict[str, str] = {}
        pax_pending = False
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
            check_header(header)
            if info.type == tarfile.SOLARIS_XHDTYPE:  # an entry of unknown type to Go
                raise _ambiguous("it has a Solaris extended header")
            if info.type == tarfile.CONTTYPE:  # a file to tarfile; engines refuse to extract it
                raise _ambiguous("it has a contiguous-file entry (type 7)")
            if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE):
                # Go keeps only the last of two PAX headers and forgets what precedes
                # a global one; tarfile merges them
                if pax_pending or (extended and info.type == tarfile.XGLTYPE):
                    raise _ambiguous("extended headers before one entry that Go would drop")
                records = _pax_records(self._small_data(info.size))
                if info.type == tarfile.XGLTYPE:
                    # Go and the engines ignore a global header; GNU tar and tarfile apply
                    # it to every later entry: one that names or sizes entries is refused
                    if any(_renames(key) for key in records):
                        raise _ambiguous("a global header names or sizes the entries after it")
                    self.global_headers = True
                else:
                    pax_pending = True
                    _once(extended, records)
                    extended.update(records)
                continue
            if info.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
                value = self._small_data(info.size).split(b"\0", 1)[0]
                key = "path" if info.type == tarfile.GNUTYPE_LONGNAME else "linkpath"
                _once(extended, {key: ""})
                extended[key] = value.decode("utf-8", "surrogateescape")
                continue
            _check_entry(header, info, extended)
            _apply_extended(info, extended)
            extended = {}
            pax_pending = False
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
        if not length_text.isdigit() or len(length_text) > _RECORD_LENGTH_DIGITS:
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
        if not _DECIMAL.match(records["size"]) or int(records["size"]) > _INT64_MAX:
            raise IntegrityError("layer is not a valid tar archive: malformed pax size")
        info.size = int(records["size"])
    if info.isdir():
        info.name = info.name.rstrip("/")
    info.pax_headers = records  # what else the entry carries (formats.reuse reads it)


_NUMBER_FIELDS = {
    "mode": (100, 108),
    "uid": (108, 116),
    "gid": (116, 124),
    "size": (124, 136),
    "mtime": (136, 148),
    "checksum": (148, 156),
    "devmajor": (329, 337),
    "devminor": (337, 345),
}
_PLAIN_OCTAL = re.compile(rb" *[0-7]*[ \0]*\Z")
_BASE_256 = 0x80  # a positive binary number (GNU tar's sizes over 8 GiB); both parsers agree
_USTAR = b"ustar\0"
_STAR_TRAILER = b"tar\0"
_STAR_PREFIX = 131  # the prefix field Go reads when the block ends in the star trailer
_DECIMAL = re.compile(r"[0-9]{1,19}\Z")  # Go's ParseInt: at most 2**63 - 1
_INT64_MAX = (1 << 63) - 1
_RECORD_LENGTH_DIGITS = 7  # a record inside a header of at most _MAX_HEADER_DATA bytes


def check_header(header: bytes) -> None:
    """Refuse a header block that ``tarfile`` and Go's ``archive/tar`` read differently."""
    for field, (start, end) in _NUMBER_FIELDS.items():
        value = header[start:end]
        if value[0] == _BASE_256 and field != "checksum":
            continue
        if not _PLAIN_OCTAL.match(value):
            raise _ambiguous(f"its {field} field {value!r} is not a plain octal number")
    prefix = header[345:500].split(b"\0", 1)[0]
    if not prefix:
        return
    if header[257:263] != _USTAR:
        raise _ambiguous("it fills the ustar prefix field without the ustar magic")
    if any(header[345 + len(prefix) : 500]) or (
        header[508:512] == _STAR_TRAILER and len(prefix) >= _STAR_PREFIX
    ):
        raise _ambiguous("its prefix field has bytes after the name")


def _check_entry(header: bytes, info: tarfile.TarInfo, extended: dict[str, str]) -> None:
    """An old-style regular entry (type NUL) is a directory when its name ends in '/':
    tarfile asks the name field alone, Go the final name (a PAX path, a GNU long name,
    the ustar prefix joined to the name). Where they disagree, one extracts a file and
    the other a directory; and one with data named like a directory has its data read
    by one and skipped by the other."""
    if header[156:157] != tarfile.AREGTYPE:
        return
    name_field = header[0:100].split(b"\0", 1)[0]
    prefix = header[345:500].split(b"\0", 1)[0]
    if "path" in extended:
        final = extended["path"].encode("utf-8", "surrogateescape")
    else:
        final = prefix + b"/" + name_field if prefix else name_field
    if name_field.endswith(b"/") != final.endswith(b"/"):
        raise _ambiguous(f"entry {info.name!r} is a file to one tar reader, a directory to another")
    if info.size and (name_field.endswith(b"/") or not name_field):
        raise _ambiguous(f"entry {info.name!r} is typed as a file but named as a directory")


_RENAMING_KEYS = ("path", "linkpath", "size", "hdrcharset")


def _renames(key: str) -> bool:
    """A PAX key that changes which entry, of what size, a reader sees."""
    return key in _RENAMING_KEYS or key.startswith("GNU.sparse")


def _ambiguous(what: str) -> IntegrityError:
    return IntegrityError(
        f"layer is not a valid tar archive: a header that tar readers read differently ({what})",
        "the layer was refused: an engine could extract entries modelreg never checked; "
        "write it with a standard tar writer",
    )
