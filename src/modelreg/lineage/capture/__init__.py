"""Capture a model's lineage where it is trained: code, data, params, metrics, environment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...digest import sha256_file
from ..annotations import to_annotations
from ..inputs import flatten_metrics
from ..model import DataRef, FileHasher, Lineage
from ..values import json_value
from .data import parse_data_arg
from .environment import capture_environment
from .git import capture_code


def capture_lineage(
    *,
    code_dir: Path | None = Path("."),
    data: Sequence[str | DataRef] = (),
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
    description: str | None = None,
    capture_env: bool = True,
    file_sha256: FileHasher = sha256_file,
) -> tuple[Lineage, bytes | None]:
    """Capture a model's lineage in one call, for training scripts.

    ``code_dir=None`` skips git; ``data`` items are ``--data`` strings or DataRefs;
    nested ``metrics`` are flattened with dots. Returns the lineage and the freeze
    list bytes to pass to :func:`to_annotations` (None when ``capture_env`` is off).
    """
    user_annotations = dict(annotations or {})
    # Fail now, before a long training run's end, rather than at push time.
    to_annotations(Lineage(annotations=user_annotations), None, _no_blobs)
    environment, packages = capture_environment() if capture_env else (None, None)
    lineage = Lineage(
        code=capture_code(code_dir) if code_dir is not None else None,
        data=tuple(
            item if isinstance(item, DataRef) else parse_data_arg(item, file_sha256)
            for item in data
        ),
        params=json_value(dict(params or {}), "", "param", lenient=True),
        metrics=flatten_metrics(metrics or {}),
        environment=environment,
        annotations=user_annotations,
        description=description,
    )
    return lineage, packages


def _no_blobs(name: str, data: bytes) -> str:
    raise AssertionError("no blob is stored for annotations alone")
