"""Small answers (manifests, tag lists, catalog pages) must arrive at a pace, not trickle.

A socket read timeout only bounds the wait for the *next* byte: a registry that sends
one byte every few seconds keeps a read of a tag list alive for ever, and with it a
thread (the web UI ran out of workers that way). A small answer is therefore read one
socket read at a time and refused once it has taken longer than a grace period plus
the time its bytes need at ``SLOWEST_RATE``: generous for any registry that answers,
short for one that trickles.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import RegistryUnavailable

SLOWEST_RATE = 64 * 1024  # bytes a second a small answer must average after its grace
_PIECE = 64 * 1024


def read_paced(read1: Callable[[int], bytes], limit: int, grace: float, host: str) -> bytes:
    """Up to ``limit`` bytes from ``read1`` (one socket read per call, b"" at the end);
    RegistryUnavailable when they come slower than ``grace`` seconds plus SLOWEST_RATE."""
    start = time.monotonic()
    parts: list[bytes] = []
    total = 0
    while total < limit:
        piece = read1(min(limit - total, _PIECE))
        if not piece:
            break
        parts.append(piece)
        total += len(piece)
        if time.monotonic() - start > grace + total / SLOWEST_RATE:
            raise RegistryUnavailable(
                f"registry {host} sends its answer too slowly ({total} bytes in "
                f"{time.monotonic() - start:.0f} s)",
                "the registry is overloaded or hostile; try again later "
                "(--timeout or MODELREG_TIMEOUT sets the grace period)",
            )
    return b"".join(parts)
