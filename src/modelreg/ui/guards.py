"""What every response of the UI carries, and which requests it answers at all.

``SecurityHeaders``: the CSP and friends on every response, static files and errors
included. ``LocalHostsOnly``: the UI answers only requests that name this machine by
an IP address or as ``localhost`` in their ``Host`` header. A web page on another
site cannot read the UI (no CORS), but DNS rebinding would make it the same site: the
attacker's name is pointed at 127.0.0.1 after the page loaded, and the browser then
sends ``Host: attacker.example`` to the UI, which would answer with pages it read
from private registries with the operator's credentials. Rebinding always carries the
attacker's name, never an address, so refusing names other than ``localhost`` ends
it while every way of opening the printed URL still works.
"""

from __future__ import annotations

import ipaddress

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class SecurityHeaders:
    """Adds the CSP and friends to every response, static files and errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for header, value in SECURITY_HEADERS.items():
                    headers[header] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class LocalHostsOnly:
    """400 for a request whose Host is not an IP address or ``localhost`` (DNS rebinding)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not names_this_machine(Headers(scope=scope).get("host")):
            refused = PlainTextResponse(
                "modelreg ui answers only to an IP address or localhost in the Host header: "
                "open the URL it printed\n",
                status_code=400,
            )
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)


def names_this_machine(host: str | None) -> bool:
    """``Host`` is ``localhost`` or an IP literal (``[v6]`` bracketed), with any port."""
    if not host:
        return False
    if host.startswith("["):
        literal, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not _is_port(rest)):
            return False
        return _is_address(literal) and ":" in literal
    name, _, port = host.partition(":")
    if port and not _is_port(":" + port):
        return False
    return name.lower() == "localhost" or _is_address(name)


def _is_port(text: str) -> bool:
    return text.startswith(":") and text[1:].isascii() and text[1:].isdigit()


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
