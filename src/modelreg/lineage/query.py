"""The ``--where`` language: ``FIELD OP VALUE`` tests over :func:`lineage_as_dict` data."""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..errors import InvalidInput
from .values import NUMBER_RE

_WHERE_RE: Final = re.compile(
    r"\s*(?P<path>[^\s=!<>~]+)\s*(?P<op>==|!=|<=|>=|=|<|>|~)\s*(?P<value>.*?)\s*", re.DOTALL
)
_ROOTS: Final = {
    "code": "code",
    "data": "data",
    "params": "params",
    "metrics": "metrics",
    "environment": "environment",
    "env": "environment",
    "annotations": "annotations",
    "description": "description",
}
_WHERE_HINT: Final = (
    "write FIELD OP VALUE, e.g. metrics.auc>=0.9 or code.branch=main; FIELD is a dotted "
    "path starting with code, data, params, metrics, env, annotations or description; "
    "OP is one of = != < <= > >= ~ (contains); quote VALUE to compare it as text"
)
Operator = Literal["=", "!=", "<", "<=", ">", ">=", "~"]
_OPERATORS: Final[dict[str, Operator]] = {
    "=": "=",
    "==": "=",
    "!=": "!=",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
    "~": "~",
}
_ORDER: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_VERSION_LIKE: Final = re.compile(r"\d{1,18}(\.\d{1,18})+", re.ASCII)


@dataclass(frozen=True)
class Condition:
    """One parsed ``--where`` test: ``path op value``.

    Numbers compare numerically when both sides are numbers; otherwise the field's
    text (JSON spelling: ``true``, ``null``) is compared, with dotted versions such
    as ``3.11.7`` ordered component-wise. A path through a list tests each item.
    """

    path: tuple[str, ...]
    op: Operator
    value: str
    number: int | float | None = None

    def matches(self, lineage: Mapping[str, Any]) -> bool:
        """Test a :func:`lineage_as_dict` result. A missing field matches only ``!=``."""
        found = list(_lookup(lineage, self.path))
        if self.op == "!=":
            return not any(self._equal(value) for value in found)
        return any(self._test(value) for value in found)

    def _equal(self, actual: Any) -> bool:
        if self.number is not None and _is_number(actual):
            return bool(actual == self.number)
        return _as_text(actual) == self.value

    def _test(self, actual: Any) -> bool:
        if self.op == "=":
            return self._equal(actual)
        if self.op == "~":
            return self.value in _as_text(actual)
        compare = _ORDER[self.op]
        if self.number is not None and _is_number(actual):
            return compare(actual, self.number)
        text = _as_text(actual)
        if _VERSION_LIKE.fullmatch(text) and _VERSION_LIKE.fullmatch(self.value):
            return compare(_version_tuple(text), _version_tuple(self.value))
        return compare(text, self.value)


def parse_where(expr: str) -> Condition:
    """Parse ``metrics.auc>=0.9``-style expressions; InvalidInput when malformed."""
    match = _WHERE_RE.fullmatch(expr)
    if match is None:
        raise InvalidInput(f"cannot parse where expression {expr!r}", hint=_WHERE_HINT)
    parts = match.group("path").split(".")
    if not all(parts):
        raise InvalidInput(
            f"where field {match.group('path')!r} has an empty part", hint=_WHERE_HINT
        )
    root = _ROOTS.get(parts[0])
    if root is None:
        raise InvalidInput(f"unknown where field {parts[0]!r} in {expr!r}", hint=_WHERE_HINT)
    op: str = match.group("op")
    value: str = match.group("value")
    quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
    if quoted:
        value = value[1:-1]
    elif not value:
        raise InvalidInput(f"where expression {expr!r} has no value", hint=_WHERE_HINT)
    elif value[0] in "=!<>~":  # '=>', '=!' and the like are typos, not values
        raise InvalidInput(
            f"where expression {expr!r} has an unknown operator {op + value[0]!r}",
            hint=_WHERE_HINT,
        )
    number: int | float | None = None
    if not quoted and NUMBER_RE.fullmatch(value):
        parsed = float(value)
        if math.isfinite(parsed):
            is_int = re.fullmatch(r"[+-]?[0-9]+", value) is not None
            number = int(value) if is_int else parsed
    return Condition(path=(root, *parts[1:]), op=_OPERATORS[op], value=value, number=number)


def _lookup(node: Any, path: Sequence[str]) -> Iterator[Any]:
    if not path:
        if isinstance(node, list):
            yield from node
        else:
            yield node
        return
    if isinstance(node, Mapping):
        # Longest key first, so a dotted key such as metric "val.auc" resolves.
        for size in range(len(path), 0, -1):
            key = ".".join(path[:size])
            if key in node:
                yield from _lookup(node[key], path[size:])
                return
    elif isinstance(node, list):
        if re.fullmatch(r"[0-9]{1,9}", path[0]):
            index = int(path[0])
            if index < len(node):
                yield from _lookup(node[index], path[1:])
        else:
            for item in node:
                yield from _lookup(item, path)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr
    )


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))
