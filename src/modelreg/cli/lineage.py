"""Commands that answer questions: versions, show, lineage, diff."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from .. import api
from .. import lineage as lineage_mod
from ._app import PolicyOption, TrustOption, app, settings, trust_policy
from ._output import JsonFlag, emit_json, human_size, say


@app.command()
def versions(
    repository: Annotated[str, typer.Argument(help="Repository: fraud or HOST/REPO.")],
    where: Annotated[
        list[str] | None,
        typer.Option("--where", help="Filter, e.g. 'metrics.auc>=0.9' or 'params.lr=0.01'."),
    ] = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Number pushed digests that lost a version race.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """List versions: number, digest, created, size, aliases, stages, metrics."""
    stores = settings.stores()
    if repair:
        for fixed in api.repair(repository, stores=stores):
            # stderr under --json, so that stdout stays one JSON document
            typer.echo(f"repaired: {fixed.digest} is now v{fixed.version}", err=as_json)
    found = api.versions(repository, where=where or [], stores=stores)
    missing = [] if where else api.unversioned(repository, found, stores=stores)
    if missing:
        typer.echo(
            f"note: {len(missing)} pushed model(s) without a version tag ({missing[0]}"
            f"{', …' if len(missing) > 1 else ''}): a push in flight, or a lost claim that "
            f"'modelreg versions {repository} --repair' numbers",
            err=True,
        )
    rows = []
    for info in found:
        row = info.to_dict()
        row["metrics"] = lineage_mod.from_annotations(info.annotations).metrics
        rows.append(row)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        say("no versions" + (" match" if where else ""))
        return
    table = [
        (
            f"v{row['version']}",
            row["digest"][:19],
            row["created"] or "-",
            human_size(row["size"]),
            ",".join(row["stages"]) or "-",
            ",".join(row["aliases"]) or "-",
            " ".join(f"{k}={v:g}" for k, v in sorted(row["metrics"].items())) or "-",
        )
        for row in rows
    ]
    header = ("VERSION", "DIGEST", "CREATED", "SIZE", "STAGES", "ALIASES", "METRICS")
    widths = [max(len(cells[i]) for cells in [header, *table]) for i in range(len(header) - 1)]
    for cells in [header, *table]:
        padded = [
            cell.rjust(width) if column == 3 else cell.ljust(width)  # sizes align right
            for column, (cell, width) in enumerate(zip(cells[:-1], widths, strict=True))
        ]
        say("  ".join([*padded, cells[-1]]))


@app.command()
def show(
    reference: Annotated[str, typer.Argument(help="A model reference (see modelreg --help).")],
    trust: TrustOption = None,
    policy: PolicyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """A version's digest, files and full lineage."""
    info = api.inspect(reference, trust=trust_policy(trust, policy), stores=settings.stores())
    data = info.to_dict()
    if as_json:
        emit_json(data)
        return
    say(f"{info.reference}")
    if info.version is not None:
        say(f"version: v{info.version}")
    say(f"size:    {human_size(info.size)}")
    say("files:")
    for name in info.files:
        say(f"  {name}")
    facts = data["lineage"] or {}
    if facts.get("environment"):
        facts["environment"].pop("packages", None)  # hundreds of lines: --json lists them
    _print_lineage(facts)


@app.command(name="lineage")
def lineage_command(
    reference: Annotated[str, typer.Argument(help="A model reference (see modelreg --help).")],
    trust: TrustOption = None,
    policy: PolicyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Which data, code, parameters and environment made this model."""
    info = api.inspect(reference, trust=trust_policy(trust, policy), stores=settings.stores())
    facts = lineage_mod.lineage_as_dict(info.lineage) if info.lineage else {}
    if as_json:
        emit_json({"reference": info.reference, "version": info.version, **facts})
        return
    say(f"{info.reference}" + (f"  (v{info.version})" if info.version else ""))
    _print_lineage(facts)


def _print_lineage(facts: dict[str, Any]) -> None:
    for group in ("data", "code", "params", "metrics", "environment", "annotations"):
        value = facts.get(group)
        if value in (None, {}, [], ""):
            continue
        say(f"{group}:")
        if isinstance(value, list):
            for item in value:
                say(f"  - {_inline(item)}")
        elif isinstance(value, dict):
            for key, item in value.items():
                if item not in (None, {}, [], ""):
                    say(f"  {key}: {_inline(item)}")
        else:
            say(f"  {value}")
    if facts.get("description"):
        say(f"description: {facts['description']}")


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_inline(v)}" for k, v in value.items() if v is not None)
    if isinstance(value, str):
        return value
    return json.dumps(value)


@app.command()
def diff(
    first: Annotated[str, typer.Argument(help="The older model reference.")],
    second: Annotated[str, typer.Argument(help="The newer model reference.")],
    trust: TrustOption = None,
    policy: PolicyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """What changed between two versions: data, code, params, environment, metrics, files."""
    changes = api.diff(first, second, trust=trust_policy(trust, policy), stores=settings.stores())
    if as_json:
        emit_json(changes)
        return
    if not any(changes.values()):
        say("no differences")
        return
    for group, items in changes.items():
        if not items:
            continue
        say(f"{group}:")
        for change in items:
            if group == "files":
                say(f"  {change['path']}: {_file_change(change)}")
            else:
                before, after = _inline(change["before"]), _inline(change["after"])
                say(f"  {change['path']}: {before} -> {after}")


def _file_change(change: dict[str, Any]) -> str:
    def size(value: int | None) -> str:
        return human_size(value) if value is not None else "size unknown"

    if change["before"] is None:
        return f"added ({size(change['sizeAfter'])})"
    if change["after"] is None:
        return f"removed (was {size(change['sizeBefore'])})"
    return f"changed ({size(change['sizeBefore'])} -> {size(change['sizeAfter'])})"
