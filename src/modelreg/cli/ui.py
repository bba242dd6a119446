"""Browsing commands: ``ls`` lists repositories, ``ui`` serves the read-only web UI.

The server stack (Starlette, uvicorn, Jinja2: the ``[ui]`` extra) is imported only
when ``ui`` runs, so every other command starts as fast as before.
"""

from __future__ import annotations

import socket
from typing import Annotated

import typer

from ..errors import InvalidInput
from ._app import PolicyOption, TrustOption, app, settings, trust_policy
from ._output import emit_json, note, say


@app.command(name="ls")
def list_repositories(
    where: Annotated[
        str | None,
        typer.Argument(help="REGISTRY[/PREFIX] (e.g. localhost:5000/ml); none: the local store."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List repositories: a registry's catalog (all pages) or the local store."""
    from ..store.catalog import local_repositories, parse_listing, registry_repositories

    stores = settings.stores()
    registry, prefix = parse_listing(where)
    if registry is None:
        names = local_repositories(stores.local.root, prefix)
    else:
        names = [
            f"{registry}/{n}" for n in registry_repositories(stores.transport(registry), prefix)
        ]
    if as_json:
        emit_json(names)
        return
    if not names:
        note("no repositories" + (f" under {where}" if where else " in the local store"))
    for name in names:
        say(name)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidInput(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            "pick another --port (0: any free port) or --host",
        ) from None
    sock.listen(128)
    return sock


@app.command()
def ui(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="Registries (localhost:5000: every repository of its catalog) or "
            "repositories; none: the local store."
        ),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback unless you say so).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: any free port).")] = 8080,
    trust: TrustOption = None,
    policy: PolicyOption = None,
) -> None:
    """Serve a read-only web UI: versions, metrics, verified stages, lineage, diffs."""
    try:
        import uvicorn

        from ..ui.app import create_app
    except ImportError as exc:
        raise InvalidInput(
            f"the web UI needs its extra packages ({exc.name} is missing)",
            "install them: pip install 'modelreg[ui]'",
        ) from None
    from ..ui.sources import Sources

    chosen = Sources.parse(sources or [])
    stores = settings.stores()
    application = create_app(stores, chosen, trust_policy(trust, policy))
    sock = _bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    import ipaddress

    if not ipaddress.ip_address(bound_host).is_loopback:
        note(f"warning: serving on {shown}: anyone who can reach it can read these registries")
    say(f"modelreg ui: http://{shown}:{bound_port}/  (Ctrl-C stops it)")
    import sys

    sys.stdout.flush()
    config = uvicorn.Config(
        application, log_level="warning", lifespan="off", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: it has shut down
        pass
    finally:
        sock.close()
        stores.close()
    note("modelreg ui: stopped")
