"""``modelreg import SOURCE DEST`` and ``modelreg modelpack REF``: other tools' forms.

``import`` dispatches on the kind of SOURCE: an MLflow registered model
(``mlflow+http[s]://…``) or an OCI reference (a ModelPack or KitOps ModelKit);
other kinds plug in as one more entry of ``_IMPORTERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import api
from ..errors import InvalidInput, NotFound
from ._app import app, settings
from ._output import emit_json, say, transfer_progress

JsonFlag = Annotated[bool, typer.Option("--json", help="Print a JSON object.")]


def _import_oci(
    source: str, destination: str, as_json: bool, key: Path | None, passphrase: Path | None
) -> dict[str, Any]:
    from ..importing import import_oci

    if key is not None:
        raise InvalidInput(
            "--stages-as-promotions applies to MLflow imports only",
            "drop it; a ModelPack or ModelKit has no stages",
        )

    with transfer_progress(not as_json) as progress:
        result = import_oci(source, destination, stores=settings.stores(), progress=progress)
    return result.to_dict()


def _import_mlflow(
    source: str, destination: str, as_json: bool, key: Path | None, passphrase: Path | None
) -> dict[str, Any]:
    from ..importers.mlflow import import_mlflow

    signing_key = None
    if key is not None:
        from .stages import _signing_key

        signing_key = _signing_key(key, passphrase)
    with transfer_progress(not as_json) as progress:
        report = import_mlflow(
            source,
            destination,
            stages_as_promotions=key is not None,
            key=signing_key,
            stores=settings.stores(),
            progress=progress,
            timeout=settings.timeout or 30.0,
        )
    return report.to_dict()


def _is_mlflow(source: str) -> bool:
    from ..importers.mlflow_client import is_mlflow_source

    return is_mlflow_source(source)


Importer = Callable[[str, str, bool, Path | None, Path | None], dict[str, Any]]
# (does SOURCE look like this kind, importer): first match wins; OCI references last
_IMPORTERS: list[tuple[Callable[[str], bool], Importer]] = [
    (_is_mlflow, _import_mlflow),
    (lambda source: True, _import_oci),
]


@app.command("import")
def import_(
    source: Annotated[
        str,
        typer.Argument(
            help="mlflow+http[s]://HOST[:PORT][/PATH]/MODEL, or a ModelPack or KitOps reference."
        ),
    ],
    destination: Annotated[str, typer.Argument(help="Repository to import into.")],
    stages_as_promotions: Annotated[
        bool,
        typer.Option(
            "--stages-as-promotions",
            help="MLflow: turn legacy stages (Staging, Production) into signed promotions.",
        ),
    ] = False,
    key: Annotated[
        Path | None, typer.Option("--key", "-k", help="Signing key for --stages-as-promotions.")
    ] = None,
    passphrase_file: Annotated[
        Path | None, typer.Option("--passphrase-file", help="File holding the key's passphrase.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Import models another tool published as modelreg versions (idempotent).

    An MLflow registered model: every version, oldest first, with its run's lineage;
    aliases become alias tags. MLFLOW_TRACKING_TOKEN (or MLFLOW_TRACKING_USERNAME and
    MLFLOW_TRACKING_PASSWORD) authenticate as for MLflow's own client.
    """
    if stages_as_promotions and key is None:
        raise InvalidInput(
            "--stages-as-promotions signs promotion records and needs a key",
            "add --key KEY (from 'modelreg key generate')",
        )
    if key is not None and not stages_as_promotions:
        raise InvalidInput(
            "--key is used only with --stages-as-promotions", "add it, or drop --key"
        )
    importer = next(run for matches, run in _IMPORTERS if matches(source))
    result = importer(source, destination, as_json, key, passphrase_file)
    if as_json:
        emit_json(result)
    elif "imported" in result:
        _say_versions(result)
    if "imported" in result:
        _fail_if_incomplete(result)
    if as_json or "imported" in result:
        return
    version = f" v{result['version']}" if result.get("version") else ""
    verb = "already holds" if result.get("existed") else "imported"
    say(f"{result['repository']}{version} {verb} {result['source']} ({result['form']})")
    say(f"reference: {result['reference']}")
    if result.get("reused_layers"):
        say(f"{result['reused_layers']} layer(s) of the source kept as the same blobs")
    for repacked in result.get("repacked", ()):
        say(f"repacked under /model/: {repacked}")


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


def _say_versions(result: dict[str, Any]) -> None:
    for entry in result["imported"]:
        verb = "already holds" if entry["existed"] else "imported"
        say(
            f"{result['repository']} v{entry['version']} {verb} "
            f"{result['form']} version {entry['sourceVersion']} ({entry['digest'][:19]})"
        )
    for entry in result["skipped"]:
        say(f"skipped {result['form']} version {entry['sourceVersion']}: {entry['reason']}")
    for alias, version in sorted(result["aliases"].items()):
        say(f"alias {alias} -> v{version}")
    for stage, version in sorted(result["promotions"].items()):
        say(f"{stage} -> v{version} (signed promotion)")
    for note in result.get("notes", []):
        say(f"note: {note}")


def _fail_if_incomplete(result: dict[str, Any]) -> None:
    skipped = result["skipped"]
    if skipped:
        versions = ", ".join(str(entry["sourceVersion"]) for entry in skipped)
        raise NotFound(
            f"{len(skipped)} version(s) of {result['source']} not imported ({versions}); "
            f"{len(result['imported'])} imported",
            "restore their artifacts in MLflow and run the import again: it adds only what is new",
        )
