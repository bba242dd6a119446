"""Checking what a lineage holds: JSON data, finite numbers, valid Unicode text."""

from __future__ import annotations

import datetime
import math
import numbers
import re
from collections.abc import Mapping
from typing import Any, Final

from .._json import canonical_json
from ..errors import InvalidInput

_NOT_JSON_HINT = "use only strings, numbers, booleans, null, lists and mappings with string keys"


def json_value(value: Any, path: str, what: str, *, lenient: bool) -> Any:
    """Return ``value`` as plain JSON data, or raise InvalidInput naming ``path``.

    Strict mode accepts exactly what reads back equal, so to_annotations round-trips.
    Lenient mode (for user input) also converts what has one obvious JSON form:
    tuples, numpy-style numbers, integer keys, dates (ISO strings).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) or (lenient and isinstance(value, numbers.Integral)):
        return int(value)
    if isinstance(value, float) or (lenient and isinstance(value, numbers.Real)):
        number = float(value)
        if not math.isfinite(number):
            raise InvalidInput(
                f"{what} '{path}' is not a finite number: {number!r}",
                hint="NaN and infinity cannot be stored; drop the value or record it as a string",
            )
        return number
    if isinstance(value, Mapping):
        return _json_mapping(value, path, what, lenient=lenient)
    if isinstance(value, list) or (lenient and isinstance(value, tuple)):
        return [json_value(v, f"{path}[{i}]", what, lenient=lenient) for i, v in enumerate(value)]
    if lenient and isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    raise InvalidInput(
        f"{what} '{path}' is not a JSON value: {type(value).__name__}", hint=_NOT_JSON_HINT
    )


def _json_mapping(value: Mapping[Any, Any], path: str, what: str, *, lenient: bool) -> Any:
    result: dict[str, Any] = {}
    for key, item in value.items():
        if lenient and isinstance(key, int) and not isinstance(key, bool):
            key = str(key)
        if not isinstance(key, str):
            raise InvalidInput(
                f"{what} key {key!r} under '{path}' is not a string", hint=_NOT_JSON_HINT
            )
        result[key] = json_value(item, join(path, key), what, lenient=lenient)
    return result


def join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def metric_value(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInput(
            f"metric '{name}' is not a number: {value!r}",
            hint="give metrics as NAME=NUMBER, e.g. auc=0.93 (booleans are not numbers)",
        )
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise InvalidInput(
            f"metric '{name}' is not a finite number: {value!r}",
            hint="NaN and infinity cannot be stored; drop the metric",
        )
    return number


def encoded(value: Any, what: str) -> bytes:
    """Canonical JSON of already-checked JSON data; what is left to refuse is a lone
    surrogate or nesting deeper than the canonical writer allows."""
    try:
        return canonical_json(value)
    except InvalidInput as error:
        raise InvalidInput(f"{what}: {error.message}", hint=error.hint) from None


def check_utf8(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _not_unicode(what, error) from None


def _not_unicode(what: str, error: UnicodeEncodeError) -> InvalidInput:
    bad = error.object[error.start : error.end]
    return InvalidInput(
        f"{what} has text that is not valid Unicode: {bad!r}",
        hint="remove lone surrogate characters",
    )


def str_key(key: Any, what: str) -> str:
    if not isinstance(key, str):
        raise InvalidInput(f"{what} name {key!r} is not a string", hint="use string names")
    return key


def one_line(text: str) -> str:
    return " ".join(text.split())


NUMBER_RE: Final = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
