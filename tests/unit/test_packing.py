"""Deterministic layers out, safe extraction in — against real tar files and real dirs."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from helpers.tars import member, tar_with
from hypothesis import given, settings
from hypothesis import strategies as st

from modelreg.digest import VerifyingReader
from modelreg.errors import IntegrityError, InvalidInput, NotFound
from modelreg.packing import LARGE_FILE, plan_layers, scan_model, unpack_layer


def layer_digests(path: Path) -> list[tuple[str, str, int]]:
    return [
        (p.title, hashlib.sha256(b"".join(p)).hexdigest(), p.size)
        for p in plan_layers(scan_model(path))
    ]


def test_same_files_same_bytes_wherever_they_live(tmp_path: Path, model_dir: Path) -> None:
    copy = tmp_path / "elsewhere" / "other-name"
    shutil.copytree(model_dir, copy)
    os.utime(copy / "config.json", (1, 1))  # mtime and directory name do not matter
    assert layer_digests(model_dir) == layer_digests(copy)


def test_any_change_changes_a_layer(tmp_path: Path, model_dir: Path) -> None:
    before = layer_digests(model_dir)
    (model_dir / "config.json").write_text('{"hidden": 1024}\n')
    after = layer_digests(model_dir)
    assert before[0] != after[0]  # the shared small-files layer changed
    assert before[1:] == after[1:]  # the weights layer did not
    (model_dir / "serve.sh").chmod(0o644)
    assert layer_digests(model_dir)[0] != after[0]  # the executable bit is content


def test_large_files_get_their_own_layer(model_dir: Path) -> None:
    titles = [p.title for p in plan_layers(scan_model(model_dir))]
    assert titles == ["model", "weights.bin"]
    assert (model_dir / "weights.bin").stat().st_size >= LARGE_FILE


def test_tar_is_canonical(model_dir: Path) -> None:
    plan = plan_layers(scan_model(model_dir))[0]
    data = b"".join(plan)
    assert len(data) == plan.size
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = archive.getmembers()
    names = [m.name for m in members]
    assert names[0] == "model"
    assert all(n == "model" or n.startswith("model/") for n in names)
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and not m.uname for m in members)
    modes = {m.name: m.mode for m in members}
    assert modes["model/serve.sh"] == 0o755 and modes["model/config.json"] == 0o644


def test_single_file(tmp_path: Path) -> None:
    weights = tmp_path / "model.pkl"
    weights.write_bytes(b"pickle")
    [plan] = plan_layers(scan_model(weights))
    assert [f.name for f in plan.files] == ["model.pkl"]


def test_symlinks_are_followed_like_a_huggingface_snapshot(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (blobs / "abc").write_bytes(b"weights")
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "model.bin").symlink_to(blobs / "abc")
    [entry] = scan_model(snapshot)
    assert entry.name == "model.bin" and entry.size == 7


@pytest.mark.parametrize("kind", ["missing", "empty", "broken-link", "fifo", "loop"])
def test_bad_model_paths(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "m"
    error: type[Exception] = InvalidInput
    if kind == "missing":
        error = NotFound
    else:
        path.mkdir()
    if kind == "broken-link":
        (path / "x").symlink_to(tmp_path / "nowhere")
    if kind == "fifo":
        os.mkfifo(path / "pipe")
    if kind == "loop":
        (path / "sub").symlink_to(path)
        (path / "f").write_text("x")
    with pytest.raises(error) as caught:
        scan_model(path)
    assert str(path) in caught.value.message


def test_file_changing_while_pushed_is_detected(tmp_path: Path) -> None:
    weights = tmp_path / "w"
    weights.write_bytes(b"x" * 1000)
    [plan] = plan_layers(scan_model(weights))
    stream = iter(plan)
    next(stream)  # directory header
    next(stream)  # file header
    weights.write_bytes(b"x" * 10)
    with pytest.raises(IntegrityError, match="changed while"):
        list(stream)


# ----- extraction ---------------------------------------------------------------------------


def test_round_trip_extracts_identical_files(tmp_path: Path, model_dir: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for plan in plan_layers(scan_model(model_dir)):
        unpack_layer(io.BytesIO(b"".join(plan)), out)
    for path in model_dir.rglob("*"):
        twin = out / path.relative_to(model_dir)
        assert twin.is_dir() == path.is_dir()
        if path.is_file():
            assert twin.read_bytes() == path.read_bytes()
            assert os.access(twin, os.X_OK) == os.access(path, os.X_OK)


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ((member("model/../../etc/passwd"), b"x"), "escapes"),
        ((member("/model/abs"), b"x"), "unsafe path"),
        ((member("model/link", tarfile.SYMTYPE, "/etc/passwd"), None), "symlink"),
        ((member("model/hard", tarfile.LNKTYPE, "model/x"), None), "hardlink"),
        ((member("model/dev", tarfile.CHRTYPE), None), "special file"),
        ((member("model/fifo", tarfile.FIFOTYPE), None), "special file"),
        ((member("etc/cron.d/x"), b"x"), "outside /model"),
        ((member("model/.wh.config.json"), b""), "whiteout"),
    ],
)
def test_hostile_entries_are_refused(tmp_path: Path, entry: tuple, fragment: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(IntegrityError) as caught:
        unpack_layer(io.BytesIO(tar_with((member("model/", tarfile.DIRTYPE), None), entry)), out)
    assert fragment in caught.value.message
    assert not (tmp_path / "etc").exists()
    assert not any(p.is_symlink() for p in out.rglob("*"))


def test_symlink_then_file_through_it_cannot_escape(tmp_path: Path) -> None:
    out, victim = tmp_path / "out", tmp_path / "victim"
    out.mkdir()
    victim.mkdir()
    data = tar_with(
        (member("model/d", tarfile.SYMTYPE, str(victim)), None), (member("model/d/x"), b"pwn")
    )
    with pytest.raises(IntegrityError):
        unpack_layer(io.BytesIO(data), out)
    assert not any(victim.iterdir())


def test_duplicate_entries_across_layers_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    data = tar_with((member("model/x"), b"1"))
    unpack_layer(io.BytesIO(data), out)
    with pytest.raises(IntegrityError, match="two layer entries both write"):
        unpack_layer(io.BytesIO(data), out)


def test_garbage_is_not_a_tar(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="not a valid tar"):
        unpack_layer(io.BytesIO(b"\x01" * 1024), tmp_path)


class ReadOnly:
    """A stream with ``read`` and nothing else (no ``readinto``), like some wrappers."""

    def __init__(self, data: bytes, step: int = 7) -> None:
        self._data = io.BytesIO(data)
        self._step = step

    def read(self, size: int = -1, /) -> bytes:
        return self._data.read(min(size, self._step) if size >= 0 else self._step)


def archive_in(fmt: int, *members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("short_reads", [False, True])
def test_long_names_in_every_tar_format_extract(
    tmp_path: Path, fmt: int, short_reads: bool
) -> None:
    deep = "model/" + "/".join(["d" * 40] * 3) + "/weights-" + "é" * 3 + ".bin"
    if fmt == tarfile.USTAR_FORMAT:
        deep = "model/" + "/".join(["d" * 40] * 3) + "/w.bin"  # ustar: prefix + name, ASCII
    body = os.urandom(5000)
    data = archive_in(fmt, (member("model/", tarfile.DIRTYPE), None), (member(deep), body))
    out = tmp_path / "out"
    out.mkdir()
    stream = ReadOnly(data) if short_reads else io.BytesIO(data)
    names = unpack_layer(stream, out)
    relative = deep.removeprefix("model/")
    assert names == [relative]
    assert (out / relative).read_bytes() == body


def test_sparse_files_are_refused(tmp_path: Path) -> None:
    sparse = member("model/holes")
    sparse.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}
    with pytest.raises(IntegrityError, match="sparse"):
        unpack_layer(io.BytesIO(tar_with((sparse, b"x"))), tmp_path)


@pytest.mark.parametrize("cut", [100, 512 + 10, 512 + 4000])
def test_truncated_layer_is_refused(tmp_path: Path, cut: int) -> None:
    data = tar_with((member("model/x"), os.urandom(8000)))
    with pytest.raises(IntegrityError, match="not a valid tar"):
        unpack_layer(io.BytesIO(data[:cut]), tmp_path)


def test_verifying_reader_readinto_hashes_what_it_fills() -> None:
    data = os.urandom(3 * 4096 + 5)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    for stream in (io.BytesIO(data), ReadOnly(data, step=1000)):
        reader = VerifyingReader(stream, digest, len(data), "blob")
        buffer = bytearray(4096)
        got = b""
        while count := reader.readinto(buffer):
            got += bytes(buffer[:count])
        reader.finish()
        assert got == data


def test_verifying_reader_catches_substitution() -> None:
    good = tar_with((member("model/x"), b"good"))
    digest = "sha256:" + hashlib.sha256(good).hexdigest()
    bad = tar_with((member("model/x"), b"evil"))
    reader = VerifyingReader(io.BytesIO(bad), digest, len(bad), "layer")
    reader.read(10_000)
    with pytest.raises(IntegrityError, match="does not match"):
        reader.finish()
    longer = VerifyingReader(io.BytesIO(good + b"tail"), digest, len(good), "layer")
    with pytest.raises(IntegrityError, match="more than"):
        longer.finish()
    shorter = VerifyingReader(io.BytesIO(good[:-1]), digest, len(good), "layer")
    with pytest.raises(IntegrityError, match="expected"):
        shorter.finish()


names = st.text(alphabet=st.sampled_from("ab./-_\\\0 "), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            names,
            st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE]),
        ),
        max_size=5,
    )
)
def test_extraction_never_writes_outside(entries: list[tuple[str, bytes]]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        out = base / "out"
        out.mkdir()
        members = []
        for name, kind in entries:
            try:
                members.append(
                    (
                        member("model/" + name, kind, "../x"),
                        b"z" if kind == tarfile.REGTYPE else None,
                    )
                )
            except ValueError:
                continue
        try:
            data = tar_with(*members)
        except (ValueError, UnicodeError, tarfile.TarError):
            return
        with contextlib.suppress(IntegrityError):
            unpack_layer(io.BytesIO(data), out)
        outside = [p for p in base.rglob("*") if not p.is_relative_to(out) and p != out]
        assert outside == []
        assert not any(p.is_symlink() for p in out.rglob("*"))


def test_the_layer_root_entry_is_skipped_and_nothing_else_named_dot_is_accepted(
    tmp_path: Path,
) -> None:
    # `tar -C dir -cf layer.tar .` starts with a "./" directory entry
    out = tmp_path / "out"
    out.mkdir()
    data = tar_with((member("./", tarfile.DIRTYPE), None), (member("./model/x"), b"1"))
    assert unpack_layer(io.BytesIO(data), out) == ["x"]
    with pytest.raises(IntegrityError, match="unsafe path"):
        unpack_layer(io.BytesIO(tar_with((member("."), b"file named dot"))), tmp_path / "other")
