"""Differences between two lineages, field by field."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from .model import DataRef, Lineage, lineage_as_dict


class _Missing(enum.Enum):
    MISSING = "missing"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing.MISSING
"""``Change.before``/``after`` when the field does not exist on that side."""


@dataclass(frozen=True)
class Change:
    """One difference between two lineages; ``before``/``after`` may be MISSING."""

    path: str
    before: Any
    after: Any

    @property
    def kind(self) -> Literal["added", "removed", "changed"]:
        if self.before is MISSING:
            return "added"
        if self.after is MISSING:
            return "removed"
        return "changed"


def diff_lineage(a: Lineage, b: Lineage) -> dict[str, list[Change]]:
    """Differences from ``a`` to ``b``: data, code, params, environment, metrics, description.

    A code or environment field that is null on one side and absent on the other is
    no change (both say "not recorded"); in params and metrics a null is a value.

    Paths are dotted (``params.opt.lr``); data entries are keyed by URI
    (``data.s3://b/train``) with {digest, version} values. Params not loaded from
    their blob are compared by the blob digest (path ``params_blob``).
    """
    da, db = lineage_as_dict(a), lineage_as_dict(b)

    def params(d: dict[str, Any]) -> dict[str, Any]:
        flat = _flatten(d["params"], "params")
        if d["params_blob"] is not None:
            flat["params_blob"] = d["params_blob"]
        return flat

    return {
        "data": _diff(_data_entries(a.data), _data_entries(b.data)),
        "code": _diff(
            _flatten(da["code"] or {}, "code"), _flatten(db["code"] or {}, "code"), unset=True
        ),
        "params": _diff(params(da), params(db)),
        "environment": _diff(
            _flatten(da["environment"] or {}, "environment"),
            _flatten(db["environment"] or {}, "environment"),
            unset=True,
        ),
        "metrics": _diff(_flatten(da["metrics"], "metrics"), _flatten(db["metrics"], "metrics")),
        "description": _diff(
            {"description": da["description"]}, {"description": db["description"]}, unset=True
        ),
    }


def _flatten(node: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    # An empty mapping adds no path: {} and an absent key are not worth a change line.
    flat: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path))
        else:
            flat[path] = value
    return flat


def _data_entries(refs: Sequence[DataRef]) -> dict[str, Any]:
    entries: dict[str, Any] = {}
    seen: Counter[str] = Counter()
    for ref in refs:
        seen[ref.uri] += 1
        key = f"data.{ref.uri}" if seen[ref.uri] == 1 else f"data.{ref.uri}#{seen[ref.uri]}"
        entries[key] = {"digest": ref.digest, "version": ref.version}
    return entries


def _diff(
    before: Mapping[str, Any], after: Mapping[str, Any], *, unset: bool = False
) -> list[Change]:
    """``unset``: null and absent are the same (a field nobody recorded)."""
    changes = []
    for path in sorted(before.keys() | after.keys()):
        old, new = before.get(path, MISSING), after.get(path, MISSING)
        if unset and (old is None or old is MISSING) and (new is None or new is MISSING):
            continue  # null on one side, absent on the other: nothing changed
        if not _same(old, new):
            changes.append(Change(path, old, new))
    return changes


def _same(a: Any, b: Any) -> bool:
    """Equality that tells True from 1 (a flag turned into a count is a change)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
