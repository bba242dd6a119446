"""Retention rules: keep the newest N, let go of what is old, and the production window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from .._toml import load_toml_file
from ..errors import InvalidInput
from ..timeutil import parse_duration

DEFAULT_PRODUCTION_WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class RetentionRules:
    keep_last: int | None = None
    older_than: timedelta | None = None
    production_window: timedelta = DEFAULT_PRODUCTION_WINDOW

    def __post_init__(self) -> None:
        if self.keep_last is None and self.older_than is None:
            raise InvalidInput(
                "gc needs a rule: --keep-last N, --older-than AGE, or both",
                "or a retention file with [gc] keep_last / older_than (--retention FILE)",
            )
        if self.keep_last is not None and self.keep_last < 0:
            raise InvalidInput(f"keep_last must be 0 or more, not {self.keep_last}")

    def describe(self) -> dict[str, Any]:
        return {
            "keepLast": self.keep_last,
            "olderThan": duration_text(self.older_than),
            "keepProductionWindow": duration_text(self.production_window),
        }


def load_rules(
    path: Path | None = None,
    *,
    keep_last: int | None = None,
    older_than: str | None = None,
    production_window: str | None = None,
) -> RetentionRules:
    """Rules from a policy file's ``[gc]`` table, each overridden by the value given here.

    The file (TOML)::

        [gc]
        keep_last = 10
        older_than = "90d"
        keep_production_window = "30d"
    """
    settings: dict[str, Any] = _read_gc_table(path) if path is not None else {}
    if keep_last is not None:
        settings["keep_last"] = keep_last
    if older_than is not None:
        settings["older_than"] = older_than
    if production_window is not None:
        settings["keep_production_window"] = production_window
    window = settings.get("keep_production_window")
    return RetentionRules(
        keep_last=settings.get("keep_last"),
        older_than=parse_duration(settings["older_than"]) if "older_than" in settings else None,
        production_window=parse_duration(window) if window else DEFAULT_PRODUCTION_WINDOW,
    )


def _read_gc_table(path: Path) -> dict[str, Any]:
    data = load_toml_file(path, "retention policy file")
    table = data.get("gc")
    if not isinstance(table, dict):
        raise InvalidInput(
            f"{path}: no [gc] table",
            'write e.g. [gc] keep_last = 10, older_than = "90d", keep_production_window = "30d"',
        )
    unknown = set(table) - {"keep_last", "older_than", "keep_production_window"}
    if unknown:
        raise InvalidInput(
            f"{path}: unknown [gc] setting(s) {sorted(unknown)}",
            "settings are keep_last, older_than, keep_production_window",
        )
    keep = table.get("keep_last")
    if keep is not None and (not isinstance(keep, int) or isinstance(keep, bool)):
        raise InvalidInput(f"{path}: [gc] keep_last must be a whole number")
    for name in ("older_than", "keep_production_window"):
        if name in table and not isinstance(table[name], str):
            raise InvalidInput(f'{path}: [gc] {name} must be a duration such as "90d"')
    return dict(table)


def duration_text(value: timedelta | None) -> str | None:
    if value is None:
        return None
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
