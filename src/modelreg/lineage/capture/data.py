"""Data capture: a ``--data`` value as a reference, a local path by its content digest.

``file_sha256`` hashes one file; pass a :class:`~modelreg.hashcache.HashCache`'s
``file_sha256`` to skip files unchanged since they were last hashed.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Final
from urllib.parse import unquote

from ...digest import sha256_file
from ...errors import InvalidInput, NotFound
from ..model import DataRef, FileHasher
from .urls import SCHEME_RE, authority_end, stored_url

_FILE_DIGEST: Final = re.compile(r"sha256:([0-9a-f]{64})")
_DATA_HINT: Final = (
    "give an existing file or directory, or a URI with a scheme such as s3://bucket/key@v3"
)


def digest_data_path(path: Path, file_sha256: FileHasher = sha256_file) -> str:
    """Return ``sha256:<hex>`` identifying a data file or directory by content.

    A file's digest is the sha256 of its bytes. A directory's is the sha256 of the
    lines ``<relative posix path>\\0<file sha256 hex>\\n`` of every regular file
    below it, sorted by path bytes: the same content anywhere gives the same digest.
    ``file_sha256`` hashes one file (inject a cache to skip unchanged files).
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise NotFound(f"data path does not exist: {path}", hint=_DATA_HINT) from None
    except OSError as error:
        raise InvalidInput(
            f"cannot read data path {path}: {error.strerror}", hint="check its permissions"
        ) from None
    if stat.S_ISREG(mode):
        return f"sha256:{_file_hex(file_sha256, path)}"
    if not stat.S_ISDIR(mode):
        raise InvalidInput(f"data path is neither a file nor a directory: {path}", hint=_DATA_HINT)
    digest = hashlib.sha256()
    for relative, file in _regular_files(path):
        digest.update(relative + b"\0" + _file_hex(file_sha256, file).encode("ascii") + b"\n")
    return f"sha256:{digest.hexdigest()}"


def _file_hex(file_sha256: FileHasher, path: Path) -> str:
    try:
        digest = file_sha256(path)
    except OSError as error:
        raise InvalidInput(
            f"cannot read data file {path}: {error.strerror}", hint="check its permissions"
        ) from None
    match = _FILE_DIGEST.fullmatch(digest)
    if match is None:
        raise ValueError(f"file_sha256 must return 'sha256:' and 64 hex digits, got {digest!r}")
    return match.group(1)


def _regular_files(root: Path) -> list[tuple[bytes, Path]]:
    """Every regular file below ``root`` (symlinks followed) as (relative path bytes, path)."""
    root_stat = root.stat()
    files: list[tuple[bytes, Path]] = []
    # Each entry carries the (device, inode) of its ancestors to detect symlink loops.
    pending: list[tuple[Path, str, frozenset[tuple[int, int]]]] = [
        (root, "", frozenset({(root_stat.st_dev, root_stat.st_ino)}))
    ]
    while pending:
        directory, prefix, ancestors = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as error:
            raise InvalidInput(
                f"cannot list data directory {directory}: {error.strerror}",
                hint="check its permissions",
            ) from None
        for entry in entries:
            path = Path(entry.path)
            relative = prefix + entry.name
            try:
                info = os.stat(entry.path)
            except OSError:
                raise InvalidInput(
                    f"cannot digest {path}: it is a broken symlink or unreadable",
                    hint="fix or remove it; a data directory is digested whole",
                ) from None
            if stat.S_ISDIR(info.st_mode):
                identity = (info.st_dev, info.st_ino)
                if identity in ancestors:
                    raise InvalidInput(
                        f"cannot digest {path}: a symlink loops back to a parent directory",
                        hint="remove the loop; a data directory is digested whole",
                    )
                pending.append((path, relative + "/", ancestors | {identity}))
            elif stat.S_ISREG(info.st_mode):
                files.append((os.fsencode(relative), path))
            else:
                raise InvalidInput(
                    f"cannot digest {path}: not a regular file or directory",
                    hint="remove it or point --data at a directory of regular files",
                )
    files.sort()
    return files


def parse_data_arg(arg: str, file_sha256: FileHasher = sha256_file) -> DataRef:
    """Turn a ``--data`` value into a DataRef.

    ``scheme://...[@VERSION]`` is a remote URI (credentials stripped); the version
    is the text after the last ``@`` in the URI's path, when it has no ``/``. A
    ``file://`` URI or anything else is a local path that must exist; it is kept as
    given (normalised) and its content digested.
    """
    if not arg.strip():
        raise InvalidInput("--data value is empty", hint=_DATA_HINT)
    match = SCHEME_RE.match(arg)
    if match is not None and match.group(1).lower() == "file":
        return _file_uri_ref(arg, match.end(), file_sha256)
    if match is not None:
        return _remote_ref(arg, match.end())
    path = Path(arg)
    if not path.exists():
        raise NotFound(f"--data path does not exist: {arg}", hint=_DATA_HINT)
    uri = os.path.normpath(arg).replace(os.sep, "/")
    return DataRef(uri, digest_data_path(path, file_sha256), None)


_VERSION_RE: Final = re.compile(r"[^/?#@\s]+")


def _remote_ref(arg: str, start: int) -> DataRef:
    end = authority_end(arg, start)
    uri, version = arg, None
    at = arg.rfind("@")
    if at >= end and not any(c in arg[end:at] for c in "?#"):
        candidate = arg[at + 1 :]
        if not candidate:
            raise InvalidInput(
                f"--data version after '@' is empty: {arg}",
                hint="write URI@VERSION, e.g. s3://bucket/train.parquet@v12, or drop the '@'",
            )
        if _VERSION_RE.fullmatch(candidate):
            uri, version = arg[:at], candidate
    return DataRef(stored_url(uri), None, version)


def _file_uri_ref(arg: str, start: int, file_sha256: FileHasher) -> DataRef:
    end = authority_end(arg, start)
    if arg[start:end] not in ("", "localhost"):
        raise InvalidInput(
            f"--data file URI names another host: {arg}",
            hint="use file:///path for a local path, or a remote scheme",
        )
    path = Path(unquote(arg[end:]))
    if not path.exists():
        raise NotFound(f"--data path does not exist: {arg}", hint=_DATA_HINT)
    return DataRef(arg, digest_data_path(path, file_sha256), None)
