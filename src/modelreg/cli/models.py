"""Commands on models: push, pull, inspect, copy, tag, versions, show, lineage, diff."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .. import api
from .. import lineage as lineage_mod
from ..errors import InvalidInput
from ._app import PolicyOption, TrustOption, app, settings, trust_policy
from ._output import JsonFlag, emit_json, human_size, say, transfer_progress

ConcurrencyOption = Annotated[
    int | None,
    typer.Option(
        "--concurrency",
        help="Layers moved at once (default 4, or MODELREG_CONCURRENCY).",
        show_default=False,
    ),
]


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"{what} {item!r} is not KEY=VALUE", f"write {what} as key=value")
        out[key] = value
    return out


@app.command()
def push(
    path: Annotated[Path, typer.Argument(help="Model file or directory.")],
    repository: Annotated[str, typer.Argument(help="Repository: fraud or HOST/REPO.")],
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Alias tag.")] = None,
    data: Annotated[
        list[str] | None, typer.Option("--data", help="Dataset: a path, or URI[@VERSION].")
    ] = None,
    params_file: Annotated[
        Path | None, typer.Option("--params", help="Hyperparameters (JSON/YAML/TOML).")
    ] = None,
    param: Annotated[list[str] | None, typer.Option("-p", help="Hyperparameter KEY=VALUE.")] = None,
    metrics_file: Annotated[
        Path | None, typer.Option("--metrics", help="Metrics file (JSON/YAML/TOML).")
    ] = None,
    metric: Annotated[list[str] | None, typer.Option("-m", help="Metric KEY=NUMBER.")] = None,
    annotation: Annotated[
        list[str] | None, typer.Option("--annotation", help="Extra annotation KEY=VALUE.")
    ] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    code_dir: Annotated[
        Path, typer.Option("--code-dir", help="Git work tree to record as the code version.")
    ] = Path("."),
    no_capture: Annotated[
        bool, typer.Option("--no-capture", help="Record only what is given explicitly.")
    ] = False,
    sign: Annotated[
        Path | None,
        typer.Option("--sign", help="Private key: attach an OpenSSF model-signing signature."),
    ] = None,
    signature: Annotated[
        Path | None,
        typer.Option("--signature", help="Attach this `model_signing sign key` bundle."),
    ] = None,
    modelpack: Annotated[
        bool,
        typer.Option("--modelpack", help="Also publish the CNCF ModelPack form (same blobs)."),
    ] = False,
    concurrency: ConcurrencyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Push a model as an immutable, digest-pinned OCI image with its lineage."""
    signing_key = api.load_key(sign) if sign else None
    params: dict[str, Any] = {}
    if params_file:
        params.update(lineage_mod.load_params_file(params_file))
    _merge(params, lineage_mod.parse_key_values(param or []))
    metrics: dict[str, float] = {}
    if metrics_file:
        metrics.update(lineage_mod.load_metrics_file(metrics_file))
    metrics.update(lineage_mod.parse_metrics(metric or []))
    with transfer_progress(not as_json) as progress:
        result = api.push(
            path,
            repository,
            capture=not no_capture,
            code_dir=code_dir,
            data=data or [],
            params=params,
            metrics=metrics,
            annotations=_pairs(annotation, "annotation"),
            description=description,
            aliases=tag or [],
            modelpack=modelpack,
            stores=settings.stores(),
            progress=progress,
            sign=signing_key,
            signature=signature,
            concurrency=concurrency,
        )
    if as_json:
        emit_json(result.to_dict())
        return
    if result.existed:
        say(f"{result.repository} v{result.version} already holds this model; nothing new pushed")
    else:
        say(f"pushed {result.repository} v{result.version} ({human_size(result.size)})")
    say(f"digest:    {result.digest}")
    say(f"reference: {result.reference}")
    if sign or signature:
        say("content signature attached (OpenSSF model-signing)")
    if result.modelpack:
        say(f"modelpack: {result.modelpack['reference']}")


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@app.command()
def pull(
    reference: Annotated[str, typer.Argument(help="A model reference (see modelreg --help).")],
    destination: Annotated[Path, typer.Argument(help="Directory to write the model files to.")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace a non-empty destination.")
    ] = False,
    trust: TrustOption = None,
    policy: PolicyOption = None,
    signature: Annotated[
        Path | None,
        typer.Option(
            "--signature", help="Write its content signature here, for `model_signing verify`."
        ),
    ] = None,
    concurrency: ConcurrencyOption = None,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="Only files matching this glob (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Leave out files matching this glob (repeatable)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Pull a model's files, every byte verified against its digest, all or nothing.

    A stage (REPO:production) is pulled only after its signed chain verifies. With
    --include/--exclude only the layers holding wanted files are downloaded.
    """
    with transfer_progress(not as_json) as progress:
        result = api.pull(
            reference,
            destination,
            force=force,
            trust=trust_policy(trust, policy),
            stores=settings.stores(),
            progress=progress,
            signature=signature,
            concurrency=concurrency,
            include=include or (),
            exclude=exclude or (),
        )
    if as_json:
        emit_json(result.to_dict())
        return
    version = f" (v{result.version})" if result.version else ""
    say(f"pulled {result.reference}{version}")
    say(f"into {result.path} ({len(result.files)} files)")
    if signature:
        say(f"content signature: {signature}")


@app.command()
def inspect(
    reference: Annotated[str, typer.Argument(help="A model reference (see modelreg --help).")],
    trust: TrustOption = None,
    policy: PolicyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Show a model's manifest: digest, layers, annotations (any other manifest as stored)."""
    try:
        info = api.inspect(reference, trust=trust_policy(trust, policy), stores=settings.stores())
    except InvalidInput:
        # not a model (an index, a chart, an ORAS artifact): show it as it is
        name, descriptor, body = api.inspect_any(
            reference, trust=trust_policy(trust, policy), stores=settings.stores()
        )
        if as_json:
            emit_json({"repository": name, "digest": descriptor.digest, "manifest": body})
            return
        say(f"reference:    {name}@{descriptor.digest}")
        say(f"mediaType:    {body.get('mediaType') or descriptor.media_type}")
        say("not a model; the manifest as stored:")
        emit_json(body)
        return
    if as_json:
        emit_json(info.to_dict())
        return
    data = info.to_dict()
    say(f"reference:    {info.reference}")
    if info.version is not None:
        say(f"version:      v{info.version}")
    say(f"mediaType:    {info.media_type}")
    if info.manifest.artifact_type:
        say(f"artifactType: {info.manifest.artifact_type}")
    say(f"size:         {human_size(info.size)}")
    say("layers:")
    for layer in data["layers"]:
        say(f"  {layer['digest']}  {human_size(layer['size']):>10}  {layer['title'] or ''}")
    if info.manifest.annotations:
        say("annotations:")
        for key, value in sorted(info.manifest.annotations.items()):
            say(f"  {key}: {value if len(value) < 120 else value[:117] + '...'}")


@app.command()
def copy(
    source: Annotated[str, typer.Argument(help="A model reference (see modelreg --help).")],
    destination: Annotated[str, typer.Argument(help="Repository (any store) to copy to.")],
    all_versions: Annotated[
        bool,
        typer.Option(
            "--all-versions",
            help="Mirror the whole repository: every version, alias, record and stage.",
        ),
    ] = False,
    stage: Annotated[
        list[str] | None,
        typer.Option(
            "--stage",
            help="Mirror a stage: its holder, its whole signed chain and the models it names.",
        ),
    ] = None,
    concurrency: ConcurrencyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Copy a model between any two stores (local ⇄ registry ⇄ registry); digest preserved.

    With --all-versions or --stage, mirror a repository with its versions, lineage,
    aliases, signed promotion records and stage tags, so it verifies at the
    destination with the same trust policy. Safe to re-run after an interruption.
    """
    if all_versions and stage:
        raise InvalidInput("--all-versions and --stage exclude each other", "pick one")
    if all_versions or stage:
        with transfer_progress(not as_json) as progress:
            from .. import lifecycle

            result = lifecycle.mirror(
                source,
                destination,
                stage=stage or None,
                stores=settings.stores(),
                progress=progress,
                concurrency=concurrency,
            )
        if as_json:
            emit_json(result.to_dict())
            return
        versions = ", ".join(f"v{n}" for n in result.versions) or "no versions"
        say(f"mirrored {result.source} -> {result.destination}: {versions}")
        say(
            f"  {result.versions_copied} version(s), {result.records} record(s), "
            f"{result.pending} proposal(s) written; {human_size(result.bytes_copied)} copied"
        )
        if result.stage_tags:
            say(f"  stage tags set: {', '.join(result.stage_tags)}")
        for skipped in result.skipped:
            say(f"  skipped {skipped}")
        return
    with transfer_progress(not as_json) as progress:
        copied = api.copy(
            source,
            destination,
            stores=settings.stores(),
            progress=progress,
            concurrency=concurrency,
        )
    if as_json:
        emit_json(copied.to_dict())
        return
    version = f" (v{copied.version})" if copied.version else ""
    say(f"copied {source} to {copied.reference}{version}")


@app.command()
def tag(
    reference: Annotated[str, typer.Argument(help="The model: REPO:TAG or REPO@DIGEST.")],
    alias: Annotated[str, typer.Argument(help="The alias tag to add, e.g. v1.2.0-bert-large.")],
    as_json: JsonFlag = False,
) -> None:
    """Add a free-form alias tag to a model (version tags vN are assigned by push)."""
    digest = api.tag(reference, alias, stores=settings.stores())
    if as_json:
        emit_json({"digest": digest, "alias": alias})
        return
    say(f"tagged {digest} as {alias}")
