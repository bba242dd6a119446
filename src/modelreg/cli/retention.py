"""Retention: ``modelreg gc``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .. import lifecycle
from ._app import PolicyOption, TrustOption, app, settings, trust_policy
from ._output import JsonFlag, emit_json, human_size, say

if TYPE_CHECKING:
    from ..retention import GcReport, VersionDecision


def _names(decisions: list[VersionDecision]) -> str:
    return ", ".join("/".join(f"v{n}" for n in d.versions) for d in decisions) or "none"


@app.command()
def gc(
    repository: Annotated[str, typer.Argument(help="Repository: fraud or HOST/REPO.")],
    keep_last: Annotated[
        int | None, typer.Option("--keep-last", help="Keep the newest N versions.", min=0)
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="Delete only versions created longer ago, e.g. 90d."),
    ] = None,
    keep_production_window: Annotated[
        str | None,
        typer.Option(
            "--keep-production-window",
            help="Keep every version that held production this recently [30d].",
        ),
    ] = None,
    retention: Annotated[
        Path | None,
        typer.Option("--retention", help="Retention rules file (TOML, a [gc] table)."),
    ] = None,
    policy_file: Annotated[  # the old spelling of --retention
        Path | None, typer.Option("--policy-file", hidden=True)
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would go; delete nothing.")
    ] = False,
    trust: TrustOption = None,
    policy: PolicyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Delete old versions, never one a stage holds or that held production recently.

    Flags override the --retention file. Bytes count blobs only deleted versions used;
    a registry frees them at its own garbage-collect, the local store at once.
    """
    report = lifecycle.gc(
        repository,
        keep_last=keep_last,
        older_than=older_than,
        keep_production_window=keep_production_window,
        policy_file=retention or policy_file,
        dry_run=dry_run,
        policy=trust_policy(trust, policy),
        stores=settings.stores(),
    )
    if as_json:
        emit_json(report.to_dict())
        return
    _print(report)


def _print(report: GcReport) -> None:
    removed = report.removed
    count = sum(len(d.versions) for d in removed)
    what = f"{count} version{'s' if count != 1 else ''} of {report.repository}"
    if report.dry_run:
        say(f"would remove {what} ({_names(removed)}), freeing {human_size(report.bytes)}")
    else:
        say(f"removed {what} ({_names(removed)}), freeing {human_size(report.bytes)}")
    for decision in report.plan.kept:
        say(f"  kept {_names([decision])}: {'; '.join(decision.reasons)}")
    if report.executed and report.executed.spared:
        say(f"  spared {len(report.executed.spared)} planned model(s) a stage moved to meanwhile")
    if report.plan.records_kept_for_removed:
        say(
            f"  {report.plan.records_kept_for_removed} promotion record(s) of removed versions "
            "stay: the signed history remains whole"
        )
    if not report.plan.verified:
        say("note: stage chains were read unverified (no trust policy; pass --trust or --policy)")
    if not report.local and not report.dry_run and count:
        say(
            "note: the registry frees the disk at its own garbage-collect "
            "(registry:2: 'registry garbage-collect CONFIG')"
        )
