"""Strict JSON: the one writer of bytes that get hashed or signed, and the one reader.

The writer (:func:`canonical_json`) gives sorted keys, no insignificant white
space, UTF-8 (non-ASCII kept, not escaped); it refuses what JSON cannot say
exactly: NaN and infinities, non-string keys, text that is not valid Unicode (a
lone surrogate), other types, and nesting deeper than ``MAX_DEPTH``.

The reader (:func:`read_json`) refuses what two JSON parsers could read
differently: duplicate keys, NaN and infinities (and numbers too large for a
float), lone surrogates (valid escapes, not text), nesting deeper than
``MAX_DEPTH``, and bytes that are not UTF-8. It raises :class:`JsonReadError`,
which each caller turns into its own one-line error.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Literal, NoReturn

from .errors import IntegrityError, InvalidInput

MAX_DEPTH = 64
"""The deepest a value may sit below the top level (the top level is depth 0)."""

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_VALUE_HINT = "use only strings, numbers, booleans, null, lists and string-keyed objects"

# --------------------------------------------------------------------------- writer


def canonical_json(value: object) -> bytes:
    """The one byte form modelreg signs and hashes: sorted keys, no whitespace, UTF-8.

    Accepts None, bool, int, finite float, str, lists/tuples and mappings with str
    keys (nested at most ``MAX_DEPTH`` deep). Floats use Python's shortest
    round-trip form; prefer integers or strings in signed data that other
    languages must reproduce. Anything else raises :class:`InvalidInput`.
    """
    try:
        plain = _plain_json(value, "$", 0)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"cannot encode as canonical JSON: {exc}", hint=_VALUE_HINT) from None
    return json.dumps(
        plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _plain_json(value: object, where: str, depth: int) -> Any:
    """A copy of *value* made of dict/list/str/int/float/bool/None, or TypeError/ValueError."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{where} is nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value}, which JSON cannot represent")
        return float(value)
    if isinstance(value, str):
        _require_encodable(value, where)
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain_json(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        return _plain_mapping(value, where, depth)
    raise TypeError(f"{where} is a {type(value).__name__}, which JSON cannot represent")


def _plain_mapping(value: Mapping[Any, Any], where: str, depth: int) -> dict[str, Any]:
    plain = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"{where} has a non-string key {quote(key)}")
        _require_encodable(key, where)
        plain[str(key)] = _plain_json(item, f"{where}[{quote(key)}]", depth + 1)
    return plain


def _require_encodable(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where} holds text that is not valid Unicode") from None


def quote(value: object) -> str:
    """repr() of an untrusted value, shortened, safe to put in a one-line message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- reader

ReadProblem = Literal["syntax", "number", "duplicate", "depth", "unicode"]


class JsonReadError(ValueError):
    """Why a document was refused; ``line``/``column`` are set for syntax errors."""

    def __init__(
        self, problem: ReadProblem, detail: str, line: int | None = None, column: int | None = None
    ) -> None:
        super().__init__(detail if line is None else f"{detail} (line {line}, column {column})")
        self.problem: ReadProblem = problem
        self.detail = detail
        self.line = line
        self.column = column


def read_json(data: bytes | str) -> Any:
    """Parse one untrusted JSON document strictly (see the module docstring)."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise JsonReadError("syntax", str(exc)) from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
        )
    except RecursionError:
        raise _too_deep() from None
    except JsonReadError:
        raise
    except json.JSONDecodeError as exc:
        raise JsonReadError("syntax", exc.msg, exc.lineno, exc.colno) from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise JsonReadError("syntax", str(exc)) from None
    _check_depth(value, 0)
    if _SURROGATE_ESCAPE.search(text):  # only an escape can smuggle one past the decoder
        _check_unicode(value, None)
    return value


def load_json_object(data: bytes, what: str, *, limit: int) -> dict[str, Any]:
    """Parse untrusted bytes that must hold one JSON object no larger than ``limit``.

    Raises IntegrityError (the bytes came from a store or registry).
    """
    if len(data) > limit:
        raise IntegrityError(f"{what} is {len(data)} bytes, over the {limit}-byte limit")
    try:
        value = read_json(data)
    except JsonReadError as exc:
        if exc.problem == "unicode":
            raise IntegrityError(f"{what}: {exc}") from None
        raise IntegrityError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise IntegrityError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate keys are where two JSON parsers can disagree about a signed document.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JsonReadError("duplicate", f"duplicate key {quote(key)}")
        result[key] = value
    return result


def _refuse_constant(name: str) -> NoReturn:
    raise JsonReadError("number", f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise JsonReadError("number", f"{quote(text)} is {number}, which JSON cannot represent")
    return number


def _too_deep() -> JsonReadError:
    return JsonReadError("depth", f"it is nested deeper than {MAX_DEPTH} levels")


def _check_depth(value: Any, depth: int) -> None:
    if isinstance(value, (dict, list)):
        if depth >= MAX_DEPTH:
            if value:  # a container at the limit may be empty, not hold more
                raise _too_deep()
            return
        for item in value.values() if isinstance(value, dict) else value:
            _check_depth(item, depth + 1)


def _check_unicode(value: Any, key: str | None) -> None:
    where = f"the text under key {quote(key)}" if key is not None else "a text"
    if isinstance(value, str):
        _require_text(value, where)
    elif isinstance(value, list):
        for item in value:
            _check_unicode(item, key)
    elif isinstance(value, dict):
        for name, item in value.items():
            _require_text(name, "a key")
            _check_unicode(item, name)


def _require_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonReadError("unicode", f"{where} is not valid Unicode (a lone surrogate)") from None
