"""login / logout: credentials stored the way docker login stores them."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .. import api
from ..errors import InvalidInput
from ..reference import parse_registry_host
from ._app import app, settings
from ._output import note, say


@app.command()
def login(
    host: Annotated[str, typer.Argument(help="Registry HOST[:PORT].")],
    username: Annotated[
        str | None, typer.Option("--username", "-u", help="User name (prompted if omitted).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Log in to a registry; credentials go to $DOCKER_CONFIG/config.json or its helper.

    The credentials are checked against the registry first; nothing is stored if it
    refuses them.
    """
    if username is None:
        if password_stdin:
            raise InvalidInput("--password-stdin needs --username", "pass -u USER as well")
        username = typer.prompt("Username")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True)
    if not password:
        raise InvalidInput("empty password", "pass the password on standard input")
    where = api.login(host, username, password, stores=settings.stores())
    if where.endswith("config.json"):
        note(
            f"note: the password is stored unencrypted in {where}; a credential helper avoids that"
        )
    say(f"logged in to {parse_registry_host(host)} (credentials stored in {where})")


@app.command()
def logout(host: Annotated[str, typer.Argument(help="Registry HOST[:PORT].")]) -> None:
    """Remove stored credentials for a registry."""
    host = parse_registry_host(host)
    if api.logout(host, stores=settings.stores()):
        say(f"logged out of {host}")
    else:
        say(f"not logged in to {host}")
