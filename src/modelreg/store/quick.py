"""The quick path's pieces: keep-alive ``http.client`` connections and their responses.

Small requests (HEAD, a manifest, a tag list, a manifest PUT) skip requests'
per-request machinery, which costs several times the request itself on a fast
registry; ``Transport.quick`` decides when that is safe.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .pacing import read_paced

if TYPE_CHECKING:
    import requests

QUICK_LIMIT = 4 * 1024 * 1024  # manifests are at most 4 MiB; bigger answers take the full path

_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^,;]+)*)")


def read_body(response: QuickResponse | requests.Response, limit: int, grace: float) -> bytes:
    """Up to ``limit + 1`` bytes of a body from ``Transport.quick`` (so callers see "too big"),
    which must not trickle (``pacing``)."""
    if isinstance(response, QuickResponse):
        return response.content[: limit + 1]
    raw = response.raw
    host = urllib.parse.urlsplit(response.url).netloc
    return read_paced(lambda size: raw.read1(size, decode_content=True), limit + 1, grace, host)


class QuickResponse:
    """The parts of a ``requests.Response`` that callers of ``Transport.quick`` use."""

    def __init__(
        self, status: int, headers: http.client.HTTPMessage, content: bytes, method: str, url: str
    ) -> None:
        self.status_code = status
        self.headers = headers  # case-insensitive lookups, like requests' headers
        self.content = content
        self.request = _QuickRequest(method, url)
        self.url = url

    @property
    def links(self) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for url, params in _LINK.findall(self.headers.get("Link") or ""):
            rel = re.search(r'rel\s*=\s*"?([^";]+)"?', params)
            found[rel.group(1).strip() if rel else url] = {"url": url}
        return found

    def json(self) -> Any:
        return json.loads(self.content)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class _QuickRequest:
    method: str
    url: str


def exchange(
    connection: http.client.HTTPConnection,
    method: str,
    target: str,
    data: bytes | None,
    headers: Mapping[str, str],
    grace: float,
) -> tuple[http.client.HTTPResponse, bytes]:
    """One request on ``connection`` and up to ``QUICK_LIMIT + 1`` bytes of its answer,
    which must not trickle (``pacing``)."""
    connection.request(method, target, body=data, headers=headers)
    answer = connection.getresponse()
    # read even a HEAD answer (b""): http.client refuses the next response on this
    # connection until this one is closed
    body = read_paced(answer.read1, QUICK_LIMIT + 1, grace, connection.host)
    if answer.length == 0:
        answer.close()  # read1 (unlike read) leaves a fully read answer open
    return answer, body


def plain_answer(
    connection: http.client.HTTPConnection,
    answer: http.client.HTTPResponse,
    body: bytes,
    method: str,
    url: str,
) -> QuickResponse | None:
    """The answer if it is the plain case (2xx or 404, small, not content-encoded), else None."""
    if answer.will_close or len(body) > QUICK_LIMIT:
        connection.close()
    encoded = answer.headers.get("Content-Encoding", "identity").lower() != "identity"
    status = answer.status
    if (200 <= status < 300 or status == 404) and len(body) <= QUICK_LIMIT and not encoded:
        return QuickResponse(status, answer.headers, body, method, url)
    return None


class QuickConnections:
    """One keep-alive connection per thread to one registry, all closed by ``close``."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self.open: list[http.client.HTTPConnection] = []

    def get(
        self, base_url: str, timeout: float, context: Callable[[], ssl.SSLContext], *, fresh: bool
    ) -> http.client.HTTPConnection:
        """This thread's connection (a new one if ``fresh`` or none yet)."""
        local = self._local.__dict__
        connection: http.client.HTTPConnection | None = local.get("connection")
        if connection is not None and not fresh:
            return connection
        if connection is not None:
            connection.close()
        scheme, _, netloc = base_url.partition("://")
        if scheme == "https":
            connection = http.client.HTTPSConnection(netloc, timeout=timeout, context=context())
        else:
            connection = http.client.HTTPConnection(netloc, timeout=timeout)
        local["connection"] = connection
        with self._lock:
            self.open.append(connection)
        return connection

    def close(self) -> None:
        with self._lock:
            connections, self.open = self.open, []
        for connection in connections:
            connection.close()
