"""Timestamps (UTC, RFC 3339, second precision) and durations like ``90d`` or ``12h``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from .errors import InvalidInput

_DURATION = re.compile(r"([0-9]+)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput(
            f"invalid timestamp {text!r}", "use RFC 3339 UTC like 2026-01-31T12:00:00Z"
        ) from None


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``1w2d``: a positive duration."""
    compact = text.replace(" ", "")
    parts = _DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise InvalidInput(
            f"invalid duration {text!r}", "write a number and a unit: 30s, 15m, 12h, 90d, 2w"
        )
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise InvalidInput(f"duration {text!r} must be positive")
    return timedelta(seconds=seconds)
