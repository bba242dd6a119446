"""login / logout: credentials stored the way docker login stores them."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .. import api
from ..errors import InvalidInput
from ._app import app, settings
from ._output import say


@app.command()
def login(
    host: Annotated[str, typer.Argument(help="Registry HOST[:PORT].")],
    username: Annotated[str, typer.Option("--username", "-u", prompt=True)],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Log in to a registry; credentials go to $DOCKER_CONFIG/config.json or its helper."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True)
    if not password:
        raise InvalidInput("empty password", "pass the password on standard input")
    where = api.login(host, username, password, stores=settings.stores())
    say(f"logged in to {host} (credentials stored in {where})")


@app.command()
def logout(host: Annotated[str, typer.Argument(help="Registry HOST[:PORT].")]) -> None:
    """Remove stored credentials for a registry."""
    if api.logout(host):
        say(f"logged out of {host}")
    else:
        say(f"not logged in to {host}")
