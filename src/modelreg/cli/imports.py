"""``modelreg import SOURCE DEST`` and ``modelreg modelpack REF``: other tools' forms.

``import`` dispatches on the kind of SOURCE: an OCI reference (a ModelPack or
KitOps ModelKit) today; other kinds (an MLflow model) plug in as one more entry
of ``_IMPORTERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from .. import api
from ._app import app, settings
from ._output import emit_json, say, transfer_progress

JsonFlag = Annotated[bool, typer.Option("--json", help="Print a JSON object.")]


def _import_oci(source: str, destination: str, as_json: bool) -> dict[str, Any]:
    from ..importing import import_oci

    with transfer_progress(not as_json) as progress:
        result = import_oci(source, destination, stores=settings.stores(), progress=progress)
    return result.to_dict()


# (does SOURCE look like this kind, importer): first match wins; OCI references last
_IMPORTERS: list[tuple[Callable[[str], bool], Callable[[str, str, bool], dict[str, Any]]]] = [
    (lambda source: True, _import_oci),
]


@app.command("import")
def import_(
    source: Annotated[str, typer.Argument(help="A ModelPack or KitOps ModelKit reference.")],
    destination: Annotated[str, typer.Argument(help="Repository to import into.")],
    as_json: JsonFlag = False,
) -> None:
    """Import a model another tool published as a modelreg version (idempotent)."""
    importer = next(run for matches, run in _IMPORTERS if matches(source))
    result = importer(source, destination, as_json)
    if as_json:
        emit_json(result)
        return
    version = f" v{result['version']}" if result.get("version") else ""
    verb = "already holds" if result.get("existed") else "imported"
    say(f"{result['repository']}{version} {verb} {result['source']} ({result['form']})")
    say(f"reference: {result['reference']}")


@app.command("modelpack")
def modelpack(
    reference: Annotated[str, typer.Argument(help="A pushed version: REPO:vN or REPO@DIGEST.")],
    as_json: JsonFlag = False,
) -> None:
    """Add the CNCF ModelPack form (a second manifest over the same blobs) to a version."""
    form = api.add_modelpack(reference, stores=settings.stores())
    if as_json:
        emit_json(form)
        return
    say(f"modelpack: {form['reference']}")
    say(f"digest:    {form['digest']}")
