"""JSON documents of one exact shape, read strictly: anything else is an IntegrityError.

Shared by the signed formats (DSSE envelopes, in-toto statements), where a
lenient reader would let one signed document be read two ways.
"""

from __future__ import annotations

import re
from typing import Any, NoReturn

from modelreg._json import JsonReadError, read_json
from modelreg._json import quote as _quote
from modelreg.errors import IntegrityError

SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def parse_json(data: bytes, what: str, hint: str) -> Any:
    try:
        return read_json(data)
    except JsonReadError as exc:
        if exc.problem == "depth":
            malformed(f"{what} is nested too deeply ({exc})", hint)
        if exc.problem == "unicode":
            malformed(f"{what}: {exc}", hint)
        malformed(f"{what} is not valid UTF-8 JSON: {exc}", hint)


def exact_fields(value: object, names: set[str], what: str, hint: str) -> dict[str, Any]:
    """*value* as a JSON object with exactly the fields *names*."""
    if not isinstance(value, dict):
        malformed(f"{what} is not a JSON object", hint)
    missing = sorted(names - value.keys())
    if missing:
        malformed(f"{what} is missing field {_quote(missing[0])}", hint)
    unknown = sorted(value.keys() - names)
    if unknown:
        malformed(f"{what} has unknown field {_quote(unknown[0])}", hint)
    return value


def malformed(problem: str, hint: str) -> NoReturn:
    raise IntegrityError(problem, hint)
