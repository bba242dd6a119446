"""Hand-built tar archives (hostile members included) for extraction tests."""

from __future__ import annotations

import io
import tarfile


def tar_with(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


# Layers whose headers Python's tarfile and Go's archive/tar (every engine) read
# differently: a symlink to /etc/shadow or a file's path that only one of them sees.

END = b"\0" * 1024


def header(
    name: str,
    kind: bytes,
    size: int,
    *,
    mode: int = 0o644,
    link: str = "",
    fields: dict[int, bytes] | None = None,
) -> bytes:
    """A ustar header block, with raw ``fields`` (offset -> bytes) written over it and
    the checksum computed again."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.linkname = kind, size, mode, link
    block = bytearray(info.tobuf(tarfile.USTAR_FORMAT))
    for offset, value in (fields or {}).items():
        block[offset : offset + len(value)] = value
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def pax_header(records: dict[str, str], kind: bytes = tarfile.XHDTYPE) -> bytes:
    body = b""
    for key, value in records.items():
        text = f" {key}={value}\n".encode()
        length = len(text) + 1
        while len(str(length)) + len(text) != length:  # the length counts its own digits
            length = len(str(length)) + len(text)
        body += str(length).encode() + text
    padding = b"\0" * (-len(body) % 512)
    return header("././@PaxHeader", kind, len(body)) + body + padding


def evil_link() -> bytes:
    return header("evil", tarfile.SYMTYPE, 0, mode=0o777, link="/etc/shadow")


def nul_led_size() -> bytes:
    """tarfile ends the size field at its first NUL (size 0); Go skips leading NULs (512):
    Go reads the next block as data, tarfile as the header of ``b``, whose data Go takes
    for a header."""
    size = {124: b"\0" + b"0000001000" + b"\0"}
    return (
        header("a", tarfile.REGTYPE, 0, fields=size)
        + header("b", tarfile.REGTYPE, 512)
        + evil_link()
        + END
    )


def prefix_without_magic() -> bytes:
    """tarfile joins the prefix field to the name in any header; Go only in ustar ones."""
    return header("weights.bin", tarfile.REGTYPE, 0, fields={257: b"\0" * 8, 345: b"model"}) + END


def two_pax_headers() -> bytes:
    """tarfile merges two PAX headers (size 1024 hides the link); Go keeps only the last."""
    return (
        pax_header({"size": "1024"})
        + pax_header({"mtime": "1"})
        + header("a", tarfile.REGTYPE, 0)
        + evil_link()
        + b"\0" * 512
        + END
    )


def file_named_as_directory() -> bytes:
    """An old-style file (type NUL) named ``d/`` with data: tarfile makes it a directory
    and reads no data; a reader that skips its 512 bytes (the header of ``x``) takes the
    link for the next entry. (The umoci here reads it as tarfile does; Go's versions
    differ.)"""
    return (
        header("d/", tarfile.AREGTYPE, 512) + header("x", tarfile.REGTYPE, 512) + evil_link() + END
    )


def global_size() -> bytes:
    """GNU tar (and modelreg's reader, before) applies a global header's size to ``a``,
    whose data is then the link's header; Go, the engines and tarfile ignore it and
    extract the link."""
    return (
        pax_header({"size": "512"}, tarfile.XGLTYPE)
        + header("model/a", tarfile.REGTYPE, 0)
        + evil_link()
        + END
    )


def typeless_directory_by_pax_path() -> bytes:
    """A typeless entry named ``model/x`` whose PAX path is ``model/x/``: tarfile decides
    from the name field (a file), Go from the final name (a directory)."""
    return pax_header({"path": "model/x/"}) + header("model/x", tarfile.AREGTYPE, 0) + END


def typeless_file_by_pax_path() -> bytes:
    """The reverse: the name field ``model/x/`` (a directory to tarfile), the PAX path
    ``model/x`` (an empty file to Go)."""
    return pax_header({"path": "model/x"}) + header("model/x/", tarfile.AREGTYPE, 0) + END


def endless_pax_size() -> bytes:
    """A PAX size of 5,000 digits: over Python's int-parsing limit and Go's int64."""
    return pax_header({"size": "1" * 5000}) + header("model/a", tarfile.REGTYPE, 0) + END


def contiguous_file() -> bytes:
    """Type 7: a regular file to tarfile, an unknown type the engines refuse to extract."""
    return header("model/a", tarfile.CONTTYPE, 1) + b"x".ljust(512, b"\0") + END


CRAFTED = {
    "nul-led-size": nul_led_size,
    "prefix-without-magic": prefix_without_magic,
    "two-pax-headers": two_pax_headers,
    "file-named-as-directory": file_named_as_directory,
    "global-size": global_size,
    "typeless-directory-by-pax-path": typeless_directory_by_pax_path,
    "typeless-file-by-pax-path": typeless_file_by_pax_path,
    "contiguous-file": contiguous_file,
}
