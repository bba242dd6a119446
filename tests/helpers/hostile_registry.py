"""A hostile OCI registry for tests: serves ``/v2/`` from in-memory content the test controls.

A real registry never lies about a digest, never streams an endless manifest and
never serves a tar that climbs out of its directory. To show that modelreg
refuses all of that, the tests need a server that does it on purpose. This is a
small stdlib ``http.server`` on 127.0.0.1 (a free port), running in a thread of
the test process; it speaks plain HTTP/1.1 with keep-alive, like registry:2.

Honest by default: content added with :meth:`HostileRegistry.add_blob`,
:meth:`~HostileRegistry.add_manifest`, :meth:`~HostileRegistry.add_model` or
copied from any modelreg ``Repository`` with :meth:`~HostileRegistry.load` is
served the way registry:2 serves it (``Docker-Content-Digest``, ``Content-Type``,
``Content-Length``, HEAD, ``tags/list``, JSON error bodies). Read-only: writes
are answered ``405 UNSUPPORTED``.

Lies are per path: :meth:`~HostileRegistry.override` replaces the answer for one
path, :meth:`~HostileRegistry.rule` for any path a function picks, with a
:class:`Reply` — any status and headers; a body of bytes, or a callable returning
an iterator of chunks (endless or throttled streams); with the right, a wrong or
no ``Content-Length`` (then the connection closes after the body, like HTTP/1.0).

For assertions: ``sent[path]`` counts body bytes written, ``hits`` lists every
``(method, path)`` asked. :func:`gated` makes a body that stops after some bytes
until the test releases it, so a client is provably mid-transfer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from modelreg.oci import (
    ANNOTATION_TITLE,
    IMAGE_CONFIG,
    IMAGE_INDEX,
    IMAGE_MANIFEST,
    LAYER_TAR,
    MODEL_ARTIFACT,
    Descriptor,
    Manifest,
    image_config,
)
from modelreg.store.base import Repository

Body = bytes | Callable[[], Iterable[bytes]]
AUTO = "auto"
_ROUTE = re.compile(r"/v2/(?P<name>.+?)/(?P<kind>manifests|blobs|tags)/(?P<rest>[^/]*)")


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@dataclass
class Reply:
    """One answer. ``length``: ``"auto"`` = the real length of a bytes body (none for a
    stream), an int = that header whatever the body is, None = no header (close after)."""

    status: int = 200
    body: Body = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    length: int | str | None = AUTO


def error_reply(status: int, code: str, message: str = "") -> Reply:
    body = json.dumps({"errors": [{"code": code, "message": message or code.lower()}]}).encode()
    return Reply(status, body, {"Content-Type": "application/json"})


def gated(data: bytes, after: int, gate: threading.Event, *, chunk: int = 64 * 1024) -> Body:
    """``data`` in chunks, pausing after ``after`` bytes until ``gate`` is set."""

    def stream() -> Iterator[bytes]:
        for start in range(0, len(data), chunk):
            if start >= after and not gate.is_set():
                gate.wait(120)  # a bound, so a forgotten gate cannot hang the suite
            yield data[start : start + chunk]

    return stream


def endless(pattern: bytes, *, cap: int = 512 * 1024 * 1024, prefix: bytes = b"") -> Body:
    """``prefix`` then ``pattern`` over and over, up to ``cap`` bytes.

    The cap keeps a client that (wrongly) reads everything from eating the
    machine's memory; tests assert it stopped long before.
    """
    block = pattern * max(1, (256 * 1024) // max(1, len(pattern)))

    def stream() -> Iterator[bytes]:
        yield prefix
        total = len(prefix)
        while total < cap:
            yield block
            total += len(block)

    return stream


@dataclass
class _Repo:
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class HostileRegistry:
    """The server's content, its lies and what it saw. ``host`` is ``127.0.0.1:PORT``."""

    def __init__(self) -> None:
        self.repos: dict[str, _Repo] = {}
        self.overrides: dict[tuple[str, str], Reply | Callable[[], Reply]] = {}
        self.rules: list[Callable[[str, str], Reply | None]] = []
        self.sent: dict[str, int] = {}
        self.hits: list[tuple[str, str]] = []
        self.gates: list[threading.Event] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.registry = self
        self.port = self._server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # ----- lifecycle -----------------------------------------------------------------

    def start(self) -> HostileRegistry:
        self._thread.start()
        return self

    def stop(self) -> None:
        for gate in self.gates:
            gate.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def __enter__(self) -> HostileRegistry:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ----- content -------------------------------------------------------------------

    def repo(self, name: str) -> _Repo:
        return self.repos.setdefault(name, _Repo())

    def add_blob(self, name: str, data: bytes) -> str:
        digest = digest_of(data)
        self.repo(name).blobs[digest] = data
        return digest

    def add_manifest(
        self, name: str, data: bytes, media_type: str = IMAGE_MANIFEST, tags: Sequence[str] = ()
    ) -> str:
        digest = digest_of(data)
        repo = self.repo(name)
        repo.manifests[digest] = (media_type, data)
        for tag in tags:
            repo.tags[tag] = digest
        return digest

    def add_model(
        self, name: str, layers: Sequence[tuple[str, bytes]], tags: Sequence[str] = ()
    ) -> tuple[str, bytes]:
        """A modelreg-shaped image whose layers are the given (title, tar bytes); honest
        descriptors, so only the layers' contents can be wrong. Returns (digest, bytes)."""
        data, blobs = build_model(layers)
        for blob in blobs:
            self.add_blob(name, blob)
        return self.add_manifest(name, data, IMAGE_MANIFEST, tags), data

    def load(self, name: str, source: Repository) -> None:
        """Copy every tag of ``source`` (and all it references) to be served as ``name``."""
        for tag in source.list_tags():
            descriptor = source.resolve(tag)
            assert descriptor is not None
            self._load_manifest(name, source, descriptor.digest)
            self.repo(name).tags[tag] = descriptor.digest

    def _load_manifest(self, name: str, source: Repository, digest: str) -> None:
        if digest in self.repo(name).manifests:
            return
        descriptor, data = source.fetch_manifest(digest)
        self.add_manifest(name, data, descriptor.media_type)
        if descriptor.media_type == IMAGE_INDEX:  # an OCI referrers index: load what it lists
            for entry in json.loads(data)["manifests"]:
                self._load_manifest(name, source, entry["digest"])
            return
        manifest = Manifest.parse(data)
        for blob in [manifest.config, *manifest.layers]:
            with source.open_blob(blob) as raw:
                self.add_blob(name, raw.read())
        if manifest.subject is not None:
            self._load_manifest(name, source, manifest.subject.digest)

    # ----- lies ----------------------------------------------------------------------

    def override(
        self,
        path: str,
        reply: Reply | Callable[[], Reply],
        methods: Sequence[str] = ("GET", "HEAD"),
    ) -> None:
        """Answer ``path`` (no query string) with ``reply`` from now on."""
        for method in methods:
            self.overrides[(method, path)] = reply

    def rule(self, answer: Callable[[str, str], Reply | None]) -> None:
        """``answer(method, path)`` is asked first; None lets the request through."""
        self.rules.append(answer)

    def blob_path(self, name: str, digest: str) -> str:
        return f"/v2/{name}/blobs/{digest}"

    def manifest_path(self, name: str, reference: str) -> str:
        return f"/v2/{name}/manifests/{reference}"

    def gate(self) -> threading.Event:
        """A gate for :func:`gated` that :meth:`stop` opens, so no handler outlives a test."""
        event = threading.Event()
        self.gates.append(event)
        return event

    # ----- answering -----------------------------------------------------------------

    def answer(self, method: str, target: str) -> Reply:
        path = urllib.parse.urlsplit(target).path
        with self._lock:
            self.hits.append((method, path))
        for rule in self.rules:
            ruled = rule(method, path)
            if ruled is not None:
                return ruled
        override = self.overrides.get((method, path))
        if override is not None:
            return override() if callable(override) else override
        return self._honest(method, path)

    def _honest(self, method: str, path: str) -> Reply:
        if method not in ("GET", "HEAD"):
            return error_reply(405, "UNSUPPORTED", "this registry is read-only")
        if path in ("/v2/", "/v2"):
            return Reply(200, b"{}", {"Content-Type": "application/json"})
        match = _ROUTE.fullmatch(path)
        if match is None or match["name"] not in self.repos:
            return error_reply(404, "NAME_UNKNOWN", "repository name not known to registry")
        repo = self.repos[match["name"]]
        kind, rest = match["kind"], match["rest"]
        if kind == "tags" and rest == "list":
            body = json.dumps({"name": match["name"], "tags": sorted(repo.tags)}).encode()
            return Reply(200, body, {"Content-Type": "application/json"})
        if kind == "blobs" and rest in repo.blobs:
            return Reply(
                200,
                repo.blobs[rest],
                {"Content-Type": "application/octet-stream", "Docker-Content-Digest": rest},
            )
        if kind == "manifests":
            digest = repo.tags.get(rest, rest)
            if digest in repo.manifests:
                media_type, data = repo.manifests[digest]
                return Reply(
                    200, data, {"Content-Type": media_type, "Docker-Content-Digest": digest}
                )
            return error_reply(404, "MANIFEST_UNKNOWN", "manifest unknown")
        return error_reply(404, "BLOB_UNKNOWN", "blob unknown to registry")

    def count(self, path: str, amount: int) -> None:
        with self._lock:
            self.sent[path] = self.sent.get(path, 0) + amount


def build_model(layers: Sequence[tuple[str, bytes]]) -> tuple[bytes, list[bytes]]:
    """Manifest bytes and blobs (config first) of a model image with these layers."""
    descriptors = [
        Descriptor(LAYER_TAR, digest_of(data), len(data), {ANNOTATION_TITLE: title})
        for title, data in layers
    ]
    config = image_config([d.digest for d in descriptors], {})
    manifest = Manifest(
        config=Descriptor(IMAGE_CONFIG, digest_of(config), len(config)),
        layers=tuple(descriptors),
        artifact_type=MODEL_ARTIFACT,
    )
    return manifest.to_bytes(), [config, *(data for _, data in layers)]


def push_model(repository: Repository, layers: Sequence[tuple[str, bytes]]) -> str:
    """Store a model built by :func:`build_model` in any modelreg ``Repository``, untagged."""
    data, blobs = build_model(layers)
    for blob in blobs:
        if not repository.has_blob(digest_of(blob)):
            repository.push_blob([blob], len(blob), digest_of(blob))
    return repository.push_manifest(data, IMAGE_MANIFEST).digest


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a keep-alive connection must not hold up stop()
    registry: HostileRegistry


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30  # a client that stops reading cannot pin a thread forever

    def handle(self) -> None:
        with contextlib.suppress(OSError):  # a client that hangs up is not the server's error
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the TLS probe of the client and the lies are expected; keep test output clean

    def _answer(self) -> None:
        self._drain_request_body()
        registry = self.server.registry
        reply = registry.answer(self.command, self.path)
        path = urllib.parse.urlsplit(self.path).path
        headers = {"Docker-Distribution-API-Version": "registry/2.0", **reply.headers}
        length = reply.length
        if length == AUTO:
            length = len(reply.body) if isinstance(reply.body, bytes) else None
        self.send_response(reply.status)
        for name, value in headers.items():
            self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD":
            return
        chunks = [reply.body] if isinstance(reply.body, bytes) else reply.body()
        written = 0
        try:
            for chunk in chunks:
                if chunk:
                    self.wfile.write(chunk)
                    written += len(chunk)
                    registry.count(path, len(chunk))
            self.wfile.flush()
        except (OSError, ValueError):
            self.close_connection = True  # the client hung up: that is what we hoped for
            return
        if isinstance(length, int) and written != length:
            self.close_connection = True  # the body lied about its length: cut the connection
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _drain_request_body(self) -> None:
        size = self.headers.get("Content-Length")
        if size and size.isdigit():
            remaining = int(size)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
        elif self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _answer
