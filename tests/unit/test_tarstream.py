"""tarstream reads only what Go's archive/tar (every engine) reads alike.

The crafted layers are checked against umoci, a Go reader, in
tests/integration/test_import_blobs.py; here the rules themselves, and that the tar
writers people use (GNU tar in each format, busybox, Python's tarfile) still pass.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from helpers.tars import CRAFTED, END, global_size, header, pax_header
from hypothesis import given
from hypothesis import strategies as st

from modelreg.errors import IntegrityError
from modelreg.tarstream import TarStream, check_header


def names(blob: bytes) -> list[str]:
    return [member.name for member in TarStream(io.BytesIO(blob)).members()]


def tarfile_names(blob: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(blob)) as archive:
        return archive.getnames()


@pytest.mark.parametrize("craft", CRAFTED.values(), ids=CRAFTED.keys())
def test_a_header_the_readers_disagree_on_is_refused(craft: object) -> None:
    assert callable(craft)
    blob = craft()
    if craft is not global_size:  # the one GNU tar, not tarfile, reads otherwise than Go
        assert "evil" not in tarfile_names(blob)
    with pytest.raises(IntegrityError, match="read differently") as caught:
        names(blob)
    assert caught.value.hint and "refused" in caught.value.hint


def test_extended_headers_go_would_drop_are_refused() -> None:
    solaris = header("././@PaxHeader", tarfile.SOLARIS_XHDTYPE, 0) + header("a", b"0", 0) + END
    pending = (
        pax_header({"path": "hidden"})
        + header("g", tarfile.XGLTYPE, 0)
        + header("a", tarfile.REGTYPE, 0)
        + END
    )
    for blob in (solaris, pending):
        with pytest.raises(IntegrityError, match="read differently"):
            names(blob)


@pytest.mark.parametrize(
    "size",
    ["١٢", "²", "+1", "1_0", " 1", "", str(1 << 63), "1" * 5000],
    ids=["arabic", "superscript", "plus", "underscore", "space", "empty", "2**63", "5000-digits"],
)
def test_a_pax_size_that_is_not_plain_decimal_is_refused(size: str) -> None:
    blob = pax_header({"size": size}) + header("a", tarfile.REGTYPE, 0) + END
    with pytest.raises(IntegrityError, match="pax"):
        names(blob)


def test_a_pax_record_length_no_header_could_hold_is_refused() -> None:
    body = b"1" * 5000 + b" path=a\n"
    padding = b"\0" * (-len(body) % 512)
    blob = header("p", tarfile.XHDTYPE, len(body)) + body + padding + header("a", b"0", 0) + END
    with pytest.raises(IntegrityError, match="malformed pax header"):
        names(blob)


def test_a_global_header_that_only_comments_is_read_past() -> None:
    """``git archive`` writes one (its commit id); Go and the engines ignore it too."""
    blob = (
        pax_header({"comment": "0" * 40}, tarfile.XGLTYPE)
        + header("model/a", tarfile.REGTYPE, 0)
        + END
    )
    assert names(blob) == ["model/a"]


@pytest.mark.parametrize("key", ["path", "linkpath", "hdrcharset", "GNU.sparse.size"])
def test_a_global_header_that_renames_the_entries_after_it_is_refused(key: str) -> None:
    blob = pax_header({key: "x"}, tarfile.XGLTYPE) + header("model/a", tarfile.REGTYPE, 0) + END
    with pytest.raises(IntegrityError, match="read differently"):
        names(blob)


def _long_tree(root: Path) -> list[str]:
    deep = root / ("d" * 90) / ("e" * 60)
    deep.mkdir(parents=True)
    (deep / ("f" * 80)).write_bytes(b"weights")
    (root / "a.txt").write_bytes(b"x" * 700)
    (root / "run.sh").write_bytes(b"#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("form", ["gnu", "oldgnu", "pax", "posix", "ustar", "busybox"])
def test_archives_of_the_usual_tar_writers_read_as_tarfile_reads_them(
    tmp_path: Path, form: str
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    expected = _long_tree(tree)
    out = tmp_path / "out.tar"
    if form == "busybox":
        busybox = shutil.which("busybox") or pytest.skip("busybox is not installed")
        command = [busybox, "tar", "-cf", str(out), "-C", str(tree), "."]
    else:
        command = ["tar", f"--format={form}", "-cf", str(out), "-C", str(tree), "."]
    subprocess.run(command, check=True, capture_output=True)
    blob = out.read_bytes()
    read = names(blob)
    assert read == tarfile_names(blob)
    assert sorted(n.removeprefix("./") for n in read if n not in (".", "./")) == expected


@pytest.mark.parametrize("form", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_archives_of_python_tarfile_read_back(form: int) -> None:
    out = io.BytesIO()
    entries = {"p" * 120 + "/" + "n" * 90: b"w" * 1000, "small": b"", "big-uid": b"u"}
    with tarfile.open(fileobj=out, mode="w", format=form) as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            if name == "big-uid" and form != tarfile.USTAR_FORMAT:
                info.uid = 1 << 30  # base-256 in GNU form, a PAX record in PAX form
            archive.addfile(info, io.BytesIO(data))
    assert names(out.getvalue()) == list(entries)


def go_number(field: bytes) -> int | None:
    """A number field as Go's archive/tar reads it (reader.go parseNumeric), None where
    Go refuses the header."""
    if field[0] & 0x80:
        value = 0
        for index, byte in enumerate(field):
            value = value << 8 | (byte & 0x7F if index == 0 else byte)
        return value if not field[0] & 0x40 else None  # negative: refused as a size
    trimmed = field.strip(b" \0").split(b"\0", 1)[0]
    if not trimmed:
        return 0
    return int(trimmed, 8) if re.fullmatch(rb"[0-7]+", trimmed) else None


@given(
    st.binary(min_size=12, max_size=12).map(bytes)
    | st.text("01234567 \0", min_size=12, max_size=12).map(str.encode)
)
def test_every_size_field_accepted_reads_the_same_in_go(field: bytes) -> None:
    block = header("a", tarfile.REGTYPE, 0, fields={124: field})
    try:
        check_header(block)
    except IntegrityError:
        return
    assert tarfile.nti(field) == go_number(field)
