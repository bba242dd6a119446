"""What a model's safetensors shards hold, read from their headers alone.

A ``.safetensors`` file starts with 8 bytes (a little-endian u64, the header's
length ``N``), then ``N`` bytes of JSON: ``{"name": {"dtype", "shape",
"data_offsets": [begin, end]}, …, "__metadata__": {str: str}}``, then the raw
tensor bytes. At push the headers of the model's shards are read — never the
weights — and summarised (dtypes, tensor count, parameter count) in the manifest
annotation ``dev.modelreg.weights``, next to the rest of the lineage.

The reader is strict and bounded, since a file is only named ``.safetensors``: the
header length must fit the file and the 100 MB the format allows, the JSON must be
an object without duplicate keys, every tensor's dtype, shape and offsets must be
well-formed, its offsets inside the data, and for known dtypes its byte size must
equal its shape's element count times the dtype's width (so no shape can claim more
parameters than the file has bytes). A file that fails any check is not described.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._json import canonical_json

SUFFIX = ".safetensors"
ANNOTATION = "dev.modelreg.weights"
MAX_HEADER = 100_000_000  # the format's own limit
MAX_DIMENSIONS = 64
_DTYPE = re.compile(r"[A-Z][A-Z0-9_]{0,15}")
_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E4M3": 8,
    "F8_E5M2": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}


class InvalidHeader(ValueError):
    """The file is not a well-formed safetensors file (the reason is the message)."""


@dataclass(frozen=True)
class TensorSummary:
    dtypes: tuple[str, ...]
    tensors: int
    parameters: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "dtypes": list(self.dtypes),
            "tensors": self.tensors,
            "parameters": self.parameters,
        }


def read_summary(path: Path) -> TensorSummary:
    """The header of the safetensors file at ``path``, checked and summarised."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise InvalidHeader("shorter than the 8-byte header length")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER:
            raise InvalidHeader(f"header length {length} is over the {MAX_HEADER} byte limit")
        if length > size - 8:
            raise InvalidHeader(f"header length {length} is over the file's {size - 8} bytes")
        header = handle.read(length)
    if len(header) != length:
        raise InvalidHeader("the file ended inside its header")
    return summarise(header, size - 8 - length)


def summarise(header: bytes, data_size: int) -> TensorSummary:
    """Check a header (the JSON bytes) against ``data_size`` bytes of tensor data."""
    if not header.lstrip(b" ").startswith(b"{"):
        raise InvalidHeader("the header is not a JSON object")
    try:
        parsed = json.loads(
            header.decode("utf-8"),
            object_pairs_hook=_unique_keys,
            parse_constant=_no_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidHeader(f"the header is not valid JSON ({_reason(exc)})") from None
    if not isinstance(parsed, dict):
        raise InvalidHeader("the header is not a JSON object")
    metadata = parsed.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InvalidHeader("__metadata__ is not an object of strings")
    dtypes: set[str] = set()
    parameters = 0
    spans: list[tuple[int, int]] = []
    for name, tensor in parsed.items():
        dtype, count, span = _tensor(name, tensor, data_size)
        dtypes.add(dtype)
        parameters += count
        spans.append(span)
    spans.sort()
    for (_, end), (begin, _) in itertools.pairwise(spans):
        if begin < end:
            raise InvalidHeader("two tensors' data overlap")
    return TensorSummary(tuple(sorted(dtypes)), len(parsed), parameters)


def _tensor(name: str, tensor: Any, data_size: int) -> tuple[str, int, tuple[int, int]]:
    where = f"tensor {name[:80]!r}"
    if not isinstance(tensor, dict) or set(tensor) != {"dtype", "shape", "data_offsets"}:
        raise InvalidHeader(f"{where} is not {{dtype, shape, data_offsets}}")
    dtype, shape, offsets = tensor["dtype"], tensor["shape"], tensor["data_offsets"]
    if not isinstance(dtype, str) or not _DTYPE.fullmatch(dtype):
        raise InvalidHeader(f"{where} has an invalid dtype")
    if not isinstance(shape, list) or len(shape) > MAX_DIMENSIONS:
        raise InvalidHeader(f"{where} has an invalid shape")
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(_natural(o) for o in offsets)
        and offsets[0] <= offsets[1] <= data_size
    ):
        raise InvalidHeader(f"{where} has data offsets outside the file's data")
    begin, end = offsets
    count = 1
    for dimension in shape:
        if not _natural(dimension):
            raise InvalidHeader(f"{where} has an invalid shape")
        count *= dimension
        if count > 8 * data_size and count != 0:  # no element is under a bit wide
            raise InvalidHeader(f"{where} claims more elements than the file holds")
    bits = _BITS.get(dtype)
    if bits is not None and (count * bits + 7) // 8 != end - begin:
        raise InvalidHeader(f"{where}: {count} x {dtype} is not its {end - begin} data bytes")
    return dtype, count, (begin, end)


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:80]!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _reason(exc: Exception) -> str:
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:120]


def weights_annotation(files: Iterable[tuple[str, Path]]) -> dict[str, str]:
    """``{ANNOTATION: canonical JSON}`` for the readable safetensors among ``files``
    (model-relative name, path); empty when there are none."""
    described: dict[str, dict[str, Any]] = {}
    for name, path in files:
        if not name.endswith(SUFFIX):
            continue
        try:
            described[name] = read_summary(path).to_dict()
        except (InvalidHeader, OSError):
            continue  # not a safetensors file after all: nothing is claimed about it
    if not described:
        return {}
    record = {
        "format": "safetensors",
        "dtypes": sorted({d for entry in described.values() for d in entry["dtypes"]}),
        "tensors": sum(entry["tensors"] for entry in described.values()),
        "parameters": sum(entry["parameters"] for entry in described.values()),
        "files": described,
    }
    return {ANNOTATION: canonical_json(record).decode()}


def describe_model(path: Path) -> dict[str, str]:
    """``weights_annotation`` for the model file or directory at ``path``."""
    from .packing import scan_model

    return weights_annotation(
        (entry.name, entry.source) for entry in scan_model(path) if entry.source is not None
    )


def read_weights_annotation(annotations: Mapping[str, str]) -> dict[str, Any] | None:
    """The recorded summary of a pushed model, or None (absent or not an object)."""
    value = annotations.get(ANNOTATION)
    if not value:
        return None
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None
