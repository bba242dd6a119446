"""A fault-injecting HTTP proxy in front of a real registry, for tests.

It forwards every request to the upstream registry, streaming bodies both ways,
except where a test's rule says otherwise: answer with a status of its own
(503, 500, 429), or reset the connection after a number of body bytes — of the
request (a cut upload) or of the response (a cut download), or drop a Range header
(a registry that does not serve ranges). Rules see each
request in order and how many times that method and path class was seen.
"""

from __future__ import annotations

import fcntl
import http.client
import socket
import struct
import termios
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Fault:
    status: int | None = None  # answer this instead of forwarding
    cut_request_after: int | None = None  # reset after reading this many request-body bytes
    cut_response_after: int | None = None  # reset after sending this many response-body bytes
    ignore_range: bool = False  # forward without the Range header: the whole body comes back
    stall_response_after: int | None = None  # after this many body bytes, send nothing more


Rule = Callable[[str, str, int], Fault | None]  # (method, path, nth time of this kind) -> fault


def kind(method: str, path: str) -> str:
    """Requests grouped the way faults are aimed: 'PATCH upload', 'GET blob', …"""
    if "/blobs/uploads/" in path:
        return f"{method} upload"
    if "/blobs/" in path:
        return f"{method} blob"
    if "/manifests/" in path:
        return f"{method} manifest"
    if "/tags/list" in path:
        return f"{method} tags"
    return f"{method} other"


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rules: list[Rule] = []
        self.seen: Counter[str] = Counter()
        self.faults: list[str] = []
        self.ranges: list[str] = []  # the Range headers of the requests, in order
        self.in_flight: Counter[str] = Counter()  # requests of each kind being served now
        self.peak: Counter[str] = Counter()  # the most of each kind served at once
        self.body_bytes: Counter[str] = Counter()  # response body bytes sent, by kind
        self.release = threading.Event()  # ends every stall (the test sets it when done)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                key = kind(self.command, self.path)
                with proxy._lock:
                    proxy.in_flight[key] += 1
                    proxy.peak[key] = max(proxy.peak[key], proxy.in_flight[key])
                landed = threading.Event()

                def done() -> None:
                    if not landed.is_set():
                        landed.set()
                        with proxy._lock:
                            proxy.in_flight[key] -= 1

                try:
                    proxy.forward(self, done)
                finally:
                    done()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            key = kind(method, path)
            self.seen[key] += 1
            count = self.seen[key]
        for rule in self.rules:
            fault = rule(method, path, count)
            if fault is not None:
                return fault
        return None

    def _record(self, method: str, path: str, what: str) -> None:
        """Note a fault that actually happened (a cut only happens if the body is long enough)."""
        with self._lock:
            self.faults.append(f"{kind(method, path)}: {what}")

    def _sent(self, method: str, path: str, count: int) -> None:
        with self._lock:
            self.body_bytes[kind(method, path)] += count

    def forward(self, handler: BaseHTTPRequestHandler, done: Callable[[], None]) -> None:
        """Pass one request on; ``done()`` just before the client can have the whole
        answer (it may ask again at once, on another connection, before this returns)."""
        method, path = handler.command, handler.path
        fault = self._fault_for(method, path)
        length = int(handler.headers.get("Content-Length") or 0)
        if fault and fault.status:
            self._record(method, path, f"status {fault.status}")
            _drain(handler, length)
            body = b'{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}'
            handler.send_response(fault.status)
            handler.send_header("Content-Length", str(len(body)))
            handler.send_header("Content-Type", "application/json")
            handler.end_headers()
            handler.wfile.write(body)
            return
        upstream = http.client.HTTPConnection(self.upstream, timeout=60)
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
        if "Range" in headers:
            with self._lock:
                self.ranges.append(headers["Range"])
            if fault and fault.ignore_range:
                del headers["Range"]
        headers["Host"] = self.upstream
        upstream.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            upstream.putheader(name, value)
        upstream.endheaders()
        remaining = length
        sent = 0
        while remaining:
            chunk = handler.rfile.read(min(1 << 20, remaining))
            if not chunk:
                break
            if (
                fault
                and fault.cut_request_after is not None
                and sent + len(chunk) > fault.cut_request_after
            ):
                upstream.close()  # the registry sees a broken upload
                self._record(method, path, "request cut")
                _reset(handler)
                return
            upstream.send(chunk)
            remaining -= len(chunk)
            sent += len(chunk)
        response = upstream.getresponse()
        handler.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() in ("transfer-encoding", "connection"):
                continue
            location = value.replace(f"http://{self.upstream}", f"http://{self.host}")
            handler.send_header(name, location)
        if method == "HEAD" or response.length == 0:
            done()
        handler.end_headers()
        forwarded = 0
        if method != "HEAD":
            while True:
                chunk = response.read(1 << 16)
                if not chunk:
                    break
                if (
                    fault
                    and fault.cut_response_after is not None
                    and forwarded + len(chunk) > fault.cut_response_after
                ):
                    keep = fault.cut_response_after - forwarded
                    handler.wfile.write(chunk[:keep])
                    self._sent(method, path, keep)
                    handler.wfile.flush()
                    upstream.close()
                    self._record(method, path, "response cut")
                    _delivered(handler.connection)  # the cut comes after the bytes, always
                    _reset(handler)
                    return
                if (
                    fault
                    and fault.stall_response_after is not None
                    and forwarded + len(chunk) > fault.stall_response_after
                ):
                    keep = fault.stall_response_after - forwarded
                    handler.wfile.write(chunk[:keep])
                    handler.wfile.flush()
                    self._sent(method, path, keep)
                    self._record(method, path, "response stalled")
                    self.release.wait(120)
                    upstream.close()
                    _reset(handler)
                    return
                if response.length == 0:
                    done()
                handler.wfile.write(chunk)
                self._sent(method, path, len(chunk))
                forwarded += len(chunk)
        upstream.close()


def _drain(handler: BaseHTTPRequestHandler, length: int) -> None:
    while length > 0:
        chunk = handler.rfile.read(min(1 << 20, length))
        if not chunk:
            return
        length -= len(chunk)


def _delivered(connection: socket.socket, bound: float = 10.0) -> None:
    """Wait until the client's kernel has acknowledged every byte sent (Linux SIOCOUTQ):
    a reset discards what is still queued, so under load a cut "after N bytes" delivered
    fewer, by however much the client was behind."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        unsent = struct.unpack("i", fcntl.ioctl(connection, termios.TIOCOUTQ, b"\0" * 4))[0]
        if unsent == 0:
            return
        time.sleep(0.01)


def _reset(handler: BaseHTTPRequestHandler) -> None:
    """Close with RST, as a crashing server or a dropped connection does."""
    connection = handler.connection
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.close_connection = True
    connection.close()


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream)
    thread = threading.Thread(target=proxy.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.release.set()
        proxy.server.shutdown()
        proxy.server.server_close()
