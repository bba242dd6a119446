"""A TLS-terminating proxy that hands out ``http://`` upload URLs, and listens for them.

In front of a real HTTPS registry, on one loopback port, it does what a proxy
without ``X-Forwarded-Proto`` does: forwards every TLS request upstream and
rewrites the ``Location`` answers to ``http://<its own host>/…``. The same port
also accepts plain HTTP (the first byte tells TLS from cleartext) and records
the headers of every cleartext request before refusing it: ``cleartext`` is
what a passive listener on the wire would have read.

Stdlib only; bodies must carry a Content-Length.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
_TLS_HANDSHAKE = 0x16


class DowngradeProxy:
    def __init__(self, upstream_host: str, cert: Path, key: Path) -> None:
        self.upstream_host = upstream_host
        self.cleartext: list[dict[str, str]] = []
        self.forwarded = 0
        self._lock = threading.Lock()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert), str(key))
        self._server = _SniffingServer(("127.0.0.1", 0), self._handler(), context)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> DowngradeProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _upstream(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        unverified = ssl._create_unverified_context()
        connection = http.client.HTTPSConnection(self.upstream_host, timeout=30, context=unverified)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if not isinstance(self.connection, ssl.SSLSocket):
                    with proxy._lock:
                        proxy.cleartext.append(dict(self.headers.items()))
                    self.send_response(400)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
                }
                status, out_headers, data = proxy._upstream(self.command, self.path, headers, body)
                with proxy._lock:
                    proxy.forwarded += 1
                self.send_response(status)
                for name, value in out_headers:
                    lower = name.lower()
                    if lower in _HOP_BY_HOP or lower == "content-length":
                        continue
                    if lower == "location" and value.startswith(("/", "https://")):
                        path = value if value.startswith("/") else "/" + value.split("/", 3)[3]
                        value = f"http://{proxy.host}{path}"
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _answer

        return Handler


class _SniffingServer(ThreadingHTTPServer):
    """TLS for connections that start with a handshake, cleartext for the others."""

    def __init__(self, address: tuple[str, int], handler: Any, context: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self._context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        # runs on the connection's own thread: a slow handshake does not block accept()
        connection: socket.socket = request
        connection.settimeout(30)
        try:
            first = connection.recv(1, socket.MSG_PEEK)
            if first and first[0] == _TLS_HANDSHAKE:
                connection = self._context.wrap_socket(connection, server_side=True)
        except (OSError, ssl.SSLError):
            return
        super().finish_request(connection, client_address)
