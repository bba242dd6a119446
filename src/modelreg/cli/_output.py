"""Printing: results to stdout (text or --json), errors and progress to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from ..transfer import Progress, TransferEvent

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]
"""The ``--json`` option every command that prints a result takes."""


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def note(text: str) -> None:
    sys.stderr.write(text + "\n")


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


@contextmanager
def transfer_progress(enabled: bool) -> Iterator[Progress | None]:
    """A rich progress display on stderr when it is a terminal; silent otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
    )
    from rich.progress import (
        Progress as RichProgress,
    )

    bars = RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),  # MiB, as every summary prints
        TextColumn("{task.fields[speed]}"),
        console=Console(stderr=True),
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def update(event: TransferEvent) -> None:
        key = event.title
        if key not in tasks:
            tasks[key] = bars.add_task(
                f"{event.action:8} {event.title[:40]}", total=event.total, speed=""
            )
        bars.update(
            tasks[key],
            completed=event.done,
            description=f"{event.action:8} {event.title[:40]}",
        )
        task = next(t for t in bars.tasks if t.id == tasks[key])
        speed = task.speed  # rich's own speed column counts MB, not MiB
        bars.update(tasks[key], speed=f"{human_size(int(speed))}/s" if speed else "")

    with bars:
        yield update
