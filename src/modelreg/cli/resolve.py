"""``modelreg resolve``: the verified digest a stage holds, for deploy tooling.

Its own module so a deploy script's cold ``modelreg resolve`` imports the resolver and
the trust stack only (see ``_commands``), not the library behind every other command.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import InvalidInput
from ._app import PolicyOption, TrustOption, app, settings, trust_policy
from ._output import JsonFlag, emit_json, say


@app.command()
def resolve(
    repository: Annotated[str, typer.Argument(help="Repository: fraud or HOST/REPO.")],
    stage: Annotated[str, typer.Option("--stage", help="The stage to resolve.")] = "production",
    trust: TrustOption = None,
    policy: PolicyOption = None,
    output: Annotated[
        str, typer.Option("--format", help="digest, or ref (REPO@sha256:…, for Kubernetes).")
    ] = "digest",
    as_json: JsonFlag = False,
) -> None:
    """Print the verified digest a stage holds (fail closed), for deploy tooling."""
    if output not in ("digest", "ref", "json"):  # json: the old spelling of --json
        raise InvalidInput(f"unknown --format {output!r}", "use digest or ref, or --json")
    output = "json" if as_json else output
    from ..policy import require_trust
    from ..resolver import Resolver

    resolver = Resolver(
        policy=require_trust(trust_policy(trust, policy), f"{repository}:{stage}"),
        stores=settings.stores(),
    )
    model = resolver.resolve(repository, stage)
    if output == "json":
        emit_json(model.to_dict())
    else:
        say(model.reference if output == "ref" else model.digest)
