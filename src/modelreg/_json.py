"""Canonical JSON: the one way modelreg turns data into bytes that get hashed or signed."""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import IntegrityError

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant white space, UTF-8; NaN and infinities refused."""
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except ValueError as exc:
        raise IntegrityError(f"value cannot be written as JSON: {exc}") from None
    return text.encode("utf-8")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load_json_object(data: bytes, what: str, *, limit: int) -> dict[str, Any]:
    """Parse untrusted bytes that must hold one JSON object no larger than ``limit``."""
    if len(data) > limit:
        raise IntegrityError(f"{what} is {len(data)} bytes, over the {limit}-byte limit")
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise IntegrityError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise IntegrityError(f"{what} must be a JSON object, got {type(value).__name__}")
    if _SURROGATE_ESCAPE.search(data):  # only an escape can smuggle one past the decoder
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise IntegrityError(
                f"{what} holds text that is not valid Unicode (a lone surrogate)"
            ) from None
    return value
