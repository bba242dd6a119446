"""``modelreg docker-load``: make a model available in the local Docker engine, by digest."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import engines
from ._app import app, settings
from ._output import JsonFlag, emit_json, say, transfer_progress


@app.command("docker-load")
def docker_load(
    reference: Annotated[str, typer.Argument(help="A model reference (see modelreg --help).")],
    tag: Annotated[
        str | None,
        typer.Option("--tag", "-t", help="Also name the image NAME[:TAG] in the engine."),
    ] = None,
    docker_host: Annotated[
        str | None,
        typer.Option(
            "--docker-host",
            help="Engine address, e.g. unix:///run/docker.sock (default: $DOCKER_HOST).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Put a model into the Docker engine as an image pinned by digest.

    A registry model is pulled by the engine itself (docker pull REPO@sha256:…);
    a local-store model is streamed in as an image archive (docker load). Then
    `docker run`, `docker create` or a Dockerfile `COPY --from=` can use it.
    """
    with transfer_progress(not as_json) as progress:
        result = engines.docker_load(
            reference,
            tag=tag,
            docker_host=docker_host,
            stores=settings.stores(),
            progress=progress,
        )
    if as_json:
        emit_json(result.to_dict())
        return
    verb = "pulled" if result.method == "pull" else "loaded"
    say(f"{verb} {result.reference} into docker")
    say(f"image:     {result.image_id}")
    say(f"use it as: {result.docker_reference}")
    for extra in result.tags:
        if extra != result.docker_reference:
            say(f"tagged:    {extra}")
