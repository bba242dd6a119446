"""Safetensors shards are described at push from their headers alone (files written by the
real safetensors library), and hostile headers are refused by a strict, bounded reader."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from helpers.models import unique_repo
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from modelreg import api
from modelreg.safetensors import (
    ANNOTATION,
    MAX_HEADER,
    InvalidHeader,
    read_summary,
    read_weights_annotation,
    summarise,
)
from modelreg.store import Stores


def shard(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    save_file(tensors, str(path), metadata={"format": "np"})
    return path


def test_a_real_shard_is_summarised(tmp_path: Path) -> None:
    path = shard(
        tmp_path / "model.safetensors",
        {
            "embed": np.zeros((32, 16), dtype=np.float16),
            "bias": np.zeros((16,), dtype=np.float32),
            "ids": np.zeros((0,), dtype=np.int64),
        },
    )
    summary = read_summary(path)
    assert summary.dtypes == ("F16", "F32", "I64")
    assert summary.tensors == 3
    assert summary.parameters == 32 * 16 + 16


def test_push_records_dtypes_tensors_and_parameters_in_the_lineage(
    stores: Stores, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    shard(model / "model-00001-of-00002.safetensors", {"a": np.ones((64, 64), dtype=np.float32)})
    shard(model / "model-00002-of-00002.safetensors", {"b": np.ones((8,), dtype=np.float16)})
    (model / "notes.safetensors").write_bytes(b"\xff" * 64)  # named so, but is not
    (model / "config.json").write_text("{}\n")
    pushed = api.push(model, unique_repo("st"), capture=False, stores=stores)
    info = api.inspect(pushed.reference, stores=stores)
    weights = read_weights_annotation(info.manifest.annotations)
    assert weights == {
        "format": "safetensors",
        "dtypes": ["F16", "F32"],
        "tensors": 2,
        "parameters": 64 * 64 + 8,
        "files": {
            "model-00001-of-00002.safetensors": {
                "dtypes": ["F32"],
                "tensors": 1,
                "parameters": 4096,
            },
            "model-00002-of-00002.safetensors": {"dtypes": ["F16"], "tensors": 1, "parameters": 8},
        },
    }
    assert ANNOTATION not in (info.lineage.annotations if info.lineage else {})  # reserved key


def test_the_header_is_read_without_the_weights(tmp_path: Path) -> None:
    """The summary comes from the header alone: scribbling over the weights changes nothing."""
    path = shard(tmp_path / "big.safetensors", {"w": np.zeros((1024, 1024), dtype=np.float32)})
    header_end = 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]
    with open(path, "r+b") as handle:
        handle.seek(header_end)
        handle.write(b"\xff" * (1 << 20))
    assert read_summary(path).parameters == 1024 * 1024


def header_file(tmp_path: Path, header: bytes, data: int = 0, length: int | None = None) -> Path:
    path = tmp_path / "x.safetensors"
    size = len(header) if length is None else length
    path.write_bytes(struct.pack("<Q", size) + header + b"\0" * data)
    return path


@pytest.mark.parametrize(
    ("header", "data", "length", "fragment"),
    [
        (b"{}", 0, 1 << 62, "over the"),
        (b"{}", 0, MAX_HEADER + 1, "limit"),
        (b"{}", 0, 100, "over the file"),
        (b"[1]", 0, None, "not a JSON object"),
        (b"{not json", 0, None, "not valid JSON"),
        (b'{"a": NaN}', 0, None, "not valid JSON"),
        (b"{" + b'"a":' * 0 + b"[" * 100_000 + b"]" * 100_000 + b"}", 0, None, "not valid JSON"),
        (
            b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {}}',
            4,
            None,
            "duplicate",
        ),
        (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}}', 4, None, "outside"),
        (b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}', 4, None, "is not its"),
        (b'{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}', 4, None, "shape"),
        (b'{"a": {"dtype": "F32", "shape": [true], "data_offsets": [0, 4]}}', 4, None, "shape"),
        (b'{"a": {"dtype": "f32; rm", "shape": [1], "data_offsets": [0, 4]}}', 4, None, "dtype"),
        (
            b'{"a": {"dtype": "X9", "shape": [4294967296, 4294967296, 4294967296], '
            b'"data_offsets": [0, 4]}}',
            4,
            None,
            "more elements",
        ),
        (
            b'{"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}, '
            b'"b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}',
            6,
            None,
            "overlap",
        ),
        (b'{"__metadata__": {"a": 1}}', 0, None, "__metadata__"),
        (b"\xff\xfe{}", 0, None, "not a JSON object"),
    ],
)
def test_hostile_headers_are_refused(
    tmp_path: Path, header: bytes, data: int, length: int | None, fragment: str
) -> None:
    with pytest.raises(InvalidHeader, match=fragment):
        read_summary(header_file(tmp_path, header, data, length))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=64))
def test_any_bytes_are_a_summary_or_invalid_never_a_crash(header: bytes, data: int) -> None:
    try:
        summary = summarise(header, data)
    except InvalidHeader:
        return
    assert summary.tensors >= 0 and summary.parameters >= 0
    assert list(summary.dtypes) == sorted(set(summary.dtypes))


def test_an_unreadable_or_short_file_is_invalid(tmp_path: Path) -> None:
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x02\0\0")
    with pytest.raises(InvalidHeader, match="8-byte"):
        read_summary(short)
    cut = header_file(tmp_path, b'{"a": 1}', length=8)
    cut.write_bytes(cut.read_bytes()[:12])
    with pytest.raises(InvalidHeader):
        read_summary(cut)
