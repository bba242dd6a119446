"""The lineage data model: what is recorded about how a model was made. Pure data."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FileHasher = Callable[[Path], str]
"""Returns ``sha256:<hex>`` of a file's bytes, like ``HashCache.file_sha256``."""


@dataclass(frozen=True)
class CodeInfo:
    """The git state the model was trained from."""

    commit: str
    branch: str | None = None
    dirty: bool = False
    diff_digest: str | None = None
    remote: str | None = None


@dataclass(frozen=True)
class DataRef:
    """One input data set: a local path as given (with a content digest) or a URI."""

    uri: str
    digest: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class Environment:
    """The software the model was trained with."""

    python: str
    platform: str
    packages_digest: str | None = None
    accelerators: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Lineage:
    """Everything recorded about how a model was made.

    ``params`` holds JSON values only (str, int, float, bool, None, list, dict).
    ``params_blob`` is set only by :func:`from_annotations` when the params live in
    a blob that was not loaded; ``params`` is then empty.
    """

    code: CodeInfo | None = None
    data: tuple[DataRef, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    environment: Environment | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    description: str | None = None
    params_blob: str | None = None


def with_fields(base: Lineage, source: Lineage, names: Sequence[str]) -> Lineage:
    """``base`` with the fields ``names`` taken from ``source`` (per-field overrides)."""
    return dataclasses.replace(base, **{name: getattr(source, name) for name in names})


def lineage_as_dict(lineage: Lineage) -> dict[str, Any]:
    """Return the lineage as plain nested JSON data (for queries and ``--json``)."""
    code, env = lineage.code, lineage.environment
    return {
        "code": None if code is None else _fields_of(code),
        "data": [_fields_of(ref) for ref in lineage.data],
        "params": copy.deepcopy(dict(lineage.params)),
        "params_blob": lineage.params_blob,
        "metrics": dict(lineage.metrics),
        "environment": None
        if env is None
        else {**_fields_of(env), "accelerators": dict(env.accelerators)},
        "annotations": dict(lineage.annotations),
        "description": lineage.description,
    }


def _fields_of(record: CodeInfo | DataRef | Environment) -> dict[str, Any]:
    """A record's fields by name, in declaration order (values not copied)."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
