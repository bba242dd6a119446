"""A small real HTTP proxy in front of a real registry, for pagination and fault injection.

``RegistryProxy(upstream_url)`` listens on a free loopback port in a thread and
forwards every request byte for byte to the registry. Two things can be switched
on per proxy:

* ``page_size``: answer ``GET /v2/<name>/tags/list`` in pages of at most that
  many tags, sorted, honouring ``n`` and ``last`` and linking the next page with
  ``Link: </v2/<name>/tags/list?n=…&last=…>; rel="next"`` as the distribution
  spec says (registry:2 2.8 ignores ``n`` and always answers with every tag);
* ``next_link``: a fixed ``Link`` target to send instead (loops, other hosts);
* ``before``: a callback ``before(method, path)`` run before a request is
  forwarded (e.g. to land a competing write at a chosen moment).

Stdlib only; bodies must carry a Content-Length (every client here sends one).
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class RegistryProxy:
    def __init__(
        self,
        upstream: str,
        *,
        page_size: int | None = None,
        next_link: str | None = None,
        before: Callable[[str, str], None] | None = None,
    ) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.page_size = page_size
        self.next_link = next_link
        self.before = before
        self.requests: list[tuple[str, str]] = []
        self.tag_pages = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> RegistryProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # ----- forwarding ---------------------------------------------------------

    def _upstream(self, method: str, path: str, headers: dict[str, str], body: bytes | None) -> Any:
        connection = http.client.HTTPConnection(self.upstream.netloc, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            return response.status, response.getheaders(), data
        finally:
            connection.close()

    def _tag_page(self, path: str, headers: dict[str, str]) -> tuple[int, list[Any], bytes]:
        split = urllib.parse.urlsplit(path)
        status, upstream_headers, data = self._upstream("GET", split.path, headers, None)
        if status != 200:
            return status, upstream_headers, data
        body = json.loads(data)
        query = urllib.parse.parse_qs(split.query)
        assert self.page_size is not None
        wanted = int(query.get("n", [str(self.page_size)])[0])
        size = max(1, min(wanted, self.page_size))
        last = query.get("last", [""])[0]
        remaining = sorted(t for t in body.get("tags") or [] if t > last)
        page = remaining[:size]
        out_headers = [("Content-Type", "application/json; charset=utf-8")]
        link = self.next_link
        if link is None and len(remaining) > size:
            following = urllib.parse.urlencode({"n": wanted, "last": page[-1]})
            link = f"{split.path}?{following}"
        if link is not None:
            out_headers.append(("Link", f'<{link}>; rel="next"'))
        with self._lock:
            self.tag_pages += 1
        return 200, out_headers, json.dumps({"name": body.get("name"), "tags": page}).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                method, path = self.command, self.path
                with proxy._lock:
                    proxy.requests.append((method, path))
                if proxy.before is not None:
                    proxy.before(method, path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
                }
                is_tag_list = urllib.parse.urlsplit(path).path.endswith("/tags/list")
                if method == "GET" and is_tag_list and proxy.page_size:
                    status, out_headers, data = proxy._tag_page(path, headers)
                else:
                    status, out_headers, data = proxy._upstream(method, path, headers, body)
                self.send_response(status)
                for key, value in out_headers:
                    lower = key.lower()
                    if lower in _HOP_BY_HOP or (lower == "content-length" and method != "HEAD"):
                        continue
                    self.send_header(key, value)
                if method != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        return Handler


@contextmanager
def running_proxy(upstream: str, **options: Any) -> Iterator[RegistryProxy]:
    proxy = RegistryProxy(upstream, **options).start()
    try:
        yield proxy
    finally:
        proxy.stop()
