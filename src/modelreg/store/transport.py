"""HTTP transport to one registry host: timeouts, bounded retries, Basic and Bearer auth.

Built on ``requests``. Everything a registry conversation needs below the
distribution API itself lives here:

* fail fast: a connect timeout and an overall retry budget (default 5 s) — an
  unreachable or black-holed registry is an error within seconds, not minutes;
* bounded retries with backoff for connection failures, 429 and 5xx, only for
  requests that can be replayed;
* auth by challenge: ``WWW-Authenticate: Basic`` sends the docker-config
  credentials; ``Bearer`` fetches a token for exactly the scope asked, caches it
  per scope until it expires, and sends it up front on the next request;
* plain HTTP only for loopback registries that do not speak TLS (docker's rule),
  HTTPS with a custom CA bundle otherwise.

No secret is ever put into an exception message or a log line.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # requests is imported on first use: a push that only needs small
    import requests  # requests (the quick path) never pays for importing it

from ..errors import AuthError, InvalidInput, RegistryError, RegistryUnavailable
from .credentials import Credentials

_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_USER_AGENT = "modelreg"


@dataclass(frozen=True)
class RegistryOptions:
    """How to talk to registries. ``from_env`` reads the environment at call time."""

    timeout: float = 5.0
    read_timeout: float = 120.0
    retries: int = 3
    ca_cert: str | None = None
    plain_http: bool | None = None
    settle: float = 0.3

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> RegistryOptions:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if env.get("MODELREG_TIMEOUT"):
            values["timeout"] = _positive_float(env["MODELREG_TIMEOUT"], "MODELREG_TIMEOUT")
        if env.get("MODELREG_RETRIES"):
            values["retries"] = int(_positive_float(env["MODELREG_RETRIES"], "MODELREG_RETRIES"))
        ca = (
            env.get("MODELREG_CA_CERT") or env.get("REQUESTS_CA_BUNDLE") or env.get("SSL_CERT_FILE")
        )
        if ca:
            values["ca_cert"] = ca
        if env.get("MODELREG_PLAIN_HTTP"):
            values["plain_http"] = env["MODELREG_PLAIN_HTTP"].lower() in ("1", "true", "yes")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _positive_float(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise InvalidInput(f"{name}={text!r} is not a positive number")
    return value


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Challenge:
    scheme: str
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge | None:
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {
        match.group(1).lower(): (
            match.group(2).replace('\\"', '"') if match.group(2) is not None else match.group(3)
        )
        for match in _CHALLENGE_PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


@dataclass
class _Token:
    value: str
    expires: float


class Transport:
    """Requests to one registry host, authenticated and retried as needed."""

    def __init__(
        self,
        host: str,
        options: RegistryOptions,
        credentials: Callable[[], Credentials | None],
    ) -> None:
        self.host = host
        self.options = options
        self._credentials_source = credentials
        self._credentials: Credentials | None = None
        self._credentials_loaded = False
        self._basic = False
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()
        self._scheme: str | None = "http" if options.plain_http else None
        self._session: requests.Session | None = None
        self._verify: bool | str = options.ca_cert or True
        self._proxies: dict[str, str] = {}
        self._local = threading.local()
        self._quick_connections: list[http.client.HTTPConnection] = []
        self._ssl_context: ssl.SSLContext | None = None

    # ----- connection ---------------------------------------------------------

    @property
    def session(self) -> requests.Session:
        """The requests session for everything but the quick path, made on first use."""
        with self._lock:
            if self._session is None:
                import requests
                import requests.adapters

                session = requests.Session()
                session.trust_env = False
                adapter = requests.adapters.HTTPAdapter(
                    pool_connections=4, pool_maxsize=32, max_retries=0
                )
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                session.headers["User-Agent"] = _USER_AGENT
                self._session = session
            return self._session

    @property
    def base_url(self) -> str:
        if self._scheme is None:
            self._scheme = self._probe_scheme()
        return f"{self._scheme}://{self.host}"

    def _probe_scheme(self) -> str:
        if not is_loopback(self.host):
            self._proxies = _environ_proxies(self.host)
            return "https"
        # a loopback registry may speak plain HTTP: try a TLS handshake. Certificates are
        # not checked here (loading a CA bundle costs more than the handshake): the
        # requests that follow verify them, and fail with the same TLS error
        name, port = _host_and_port(self.host)
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        probe.check_hostname = False
        probe.verify_mode = ssl.CERT_NONE
        try:
            with (
                socket.create_connection((name, port), timeout=self.options.timeout) as raw,
                probe.wrap_socket(raw, server_hostname=name),
            ):
                return "https"
        except ssl.SSLError as exc:
            if _speaks_plain_http(exc):
                return "http"
            raise RegistryUnavailable(
                f"TLS with registry {self.host} failed: {_short_reason(exc)}",
                "pass --ca-cert (or set MODELREG_CA_CERT) with the CA that signed its certificate",
            ) from None
        except OSError:
            # nothing listens there: let the real request report it over plain HTTP
            return "http"

    def _tls_context(self) -> ssl.SSLContext:
        """Verification as requests does it: the given CA bundle, else certifi's."""
        with self._lock:
            if self._ssl_context is None:
                if isinstance(self._verify, str):
                    cafile = self._verify
                else:
                    import certifi  # what requests verifies against by default

                    cafile = certifi.where()
                self._ssl_context = ssl.create_default_context(cafile=cafile)
            return self._ssl_context

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    # ----- requests -------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        headers: Mapping[str, str] | None = None,
        data: bytes | Iterable[bytes] | None = None,
        stream: bool = False,
        replayable: bool = True,
        bulk: bool = False,
    ) -> requests.Response:
        """Send a request, authenticating and retrying as needed; never raises on HTTP status.

        ``scope`` is the token scope the request needs, e.g. ``repository:ml/fraud:pull``.
        ``bulk`` requests (blob bodies) may go quiet for ``read_timeout``; every other
        request must answer within three times the connect ``timeout``.
        """
        import requests

        deadline = time.monotonic() + self.options.timeout
        read_timeout = self.options.read_timeout if bulk else 3 * self.options.timeout
        attempt = 0
        auth_tries = 0
        while True:
            attempt += 1
            send_headers = dict(headers or {})
            authorization = self._authorization(scope)
            if authorization:
                send_headers["Authorization"] = authorization
            try:
                response = self.session.request(
                    method,
                    self.url(path),
                    headers=send_headers,
                    data=data,
                    stream=stream,
                    timeout=(self.options.timeout, read_timeout),
                    verify=self._verify,
                    proxies=self._proxies,
                    allow_redirects=method in ("GET", "HEAD"),
                )
            except requests.exceptions.SSLError as exc:
                raise RegistryUnavailable(
                    f"TLS with registry {self.host} failed: {_short_reason(exc)}",
                    "pass --ca-cert (or set MODELREG_CA_CERT) with the CA that signed its "
                    "certificate",
                ) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                if replayable and attempt <= self.options.retries and self._wait(attempt, deadline):
                    continue
                raise RegistryUnavailable(
                    f"cannot reach registry {self.host}: {_short_reason(exc)}",
                    "check that the registry is running and the host and port are right "
                    "(MODELREG_TIMEOUT sets how long to wait)",
                ) from None
            if response.status_code == 401 and auth_tries < 2:
                auth_tries += 1
                self._answer_challenge(response, scope)
                response.close()
                if replayable:
                    continue
            if response.status_code == 401:
                response.close()
                raise self._auth_error()
            if response.status_code == 403:
                response.close()
                raise AuthError(
                    f"registry {self.host} denied access ({scope.replace(':', ' ', 1)})",
                    f"the account you logged in with lacks this permission; log in as another "
                    f"user with 'modelreg login {self.host}'",
                )
            if (
                response.status_code in _RETRY_STATUS
                and replayable
                and attempt <= self.options.retries
                and self._wait(attempt, deadline, response)
            ):
                response.close()
                continue
            return response

    def quick(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> QuickResponse | requests.Response:
        """A small request (HEAD, a manifest, a tag list, a manifest PUT) at a fraction of the cost.

        Sent on this thread's own keep-alive ``http.client`` connection, without
        requests' per-request machinery (URL preparation, settings merging, cookie
        jars, hooks), which costs several times the request itself on a fast
        registry. Only the plain case is handled here: a 2xx or 404 answer
        within ``QUICK_LIMIT`` bytes, not content-encoded. Everything else - an auth challenge, a
        redirect, a retryable status, a proxy, a connection error - goes through
        ``request`` again (streamed: read the body with ``read_body``), which does all
        of that properly.
        """
        if self._proxies or self.base_url.split("://", 1)[0] not in ("http", "https"):
            return self.request(method, path, scope=scope, headers=headers, data=data, stream=True)
        send = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity", **(headers or {})}
        authorization = self._authorization(scope)
        if authorization:
            send["Authorization"] = authorization
        target = path
        if target.startswith(("http://", "https://")):
            if not target.startswith(self.base_url + "/"):
                return self.request(
                    method, path, scope=scope, headers=headers, data=data, stream=True
                )
            target = target[len(self.base_url) :]
        for fresh in (False, True):
            connection = self._quick_connection(fresh)
            try:
                connection.request(method, target, body=data, headers=send)
                answer = connection.getresponse()
                # read even a HEAD answer (b""): http.client refuses the next response on
                # this connection until this one is closed
                body = answer.read(QUICK_LIMIT + 1)
            except (OSError, http.client.HTTPException):
                connection.close()
                continue
            status = answer.status
            if answer.will_close or len(body) > QUICK_LIMIT:
                connection.close()
            encoded = answer.headers.get("Content-Encoding", "identity").lower() != "identity"
            if (200 <= status < 300 or status == 404) and len(body) <= QUICK_LIMIT and not encoded:
                return QuickResponse(status, answer.headers, body, method, self.base_url + target)
            break
        return self.request(method, path, scope=scope, headers=headers, data=data, stream=True)

    def _quick_connection(self, fresh: bool) -> http.client.HTTPConnection:
        local = self._local.__dict__
        connection: http.client.HTTPConnection | None = local.get("connection")
        if connection is not None and not fresh:
            return connection
        if connection is not None:
            connection.close()
        scheme, _, netloc = self.base_url.partition("://")
        timeout = 3 * self.options.timeout
        if scheme == "https":
            connection = http.client.HTTPSConnection(
                netloc, timeout=timeout, context=self._tls_context()
            )
        else:
            connection = http.client.HTTPConnection(netloc, timeout=timeout)
        local["connection"] = connection
        with self._lock:
            self._quick_connections.append(connection)
        return connection

    def _wait(
        self, attempt: int, deadline: float, response: requests.Response | None = None
    ) -> bool:
        delay = min(2.0, 0.1 * (2 ** (attempt - 1))) * (0.5 + random.random())
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if retry_after and retry_after.isdigit():
            delay = max(delay, min(float(retry_after), 10.0))
        if response is None and time.monotonic() + delay > deadline:
            return False
        time.sleep(delay)
        return True

    # ----- auth -------------------------------------------------------------

    def credentials(self) -> Credentials | None:
        if not self._credentials_loaded:
            self._credentials = self._credentials_source()
            self._credentials_loaded = True
        return self._credentials

    def _authorization(self, scope: str) -> str | None:
        with self._lock:
            token = self._tokens.get(scope)
            if token and token.expires > time.monotonic():
                return f"Bearer {token.value}"
        if self._basic:
            creds = self.credentials()
            return creds.basic_header() if creds else None
        return None

    def _auth_error(self) -> AuthError:
        if self.credentials() is None:
            return AuthError(
                f"registry {self.host} requires authentication",
                f"log in with 'modelreg login {self.host}' (or docker login)",
            )
        return AuthError(
            f"registry {self.host} rejected the stored credentials",
            f"log in again with 'modelreg login {self.host}'",
        )

    def _answer_challenge(self, response: requests.Response, scope: str) -> None:
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            raise RegistryError(f"registry {self.host} answered 401 without an auth challenge")
        if challenge.scheme == "basic":
            if self._basic or self.credentials() is None:
                raise self._auth_error()
            self._basic = True
            return
        if challenge.scheme != "bearer":
            raise RegistryError(
                f"registry {self.host} asks for unsupported auth scheme {challenge.scheme!r}"
            )
        self._fetch_token(challenge, scope)

    def _fetch_token(self, challenge: Challenge, scope: str) -> None:
        realm = challenge.params.get("realm")
        if not realm:
            raise RegistryError(f"registry {self.host} sent a Bearer challenge without a realm")
        params: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        scopes = scope.split(" ") if scope else []
        challenged = challenge.params.get("scope")
        if challenged and challenged not in scopes:
            scopes.append(challenged)
        params.extend(("scope", s) for s in scopes)
        import requests

        headers = {}
        creds = self.credentials()
        if creds:
            headers["Authorization"] = creds.basic_header()
        try:
            answer = self.session.get(
                realm,
                params=params,
                headers=headers,
                timeout=(self.options.timeout, self.options.timeout * 2),
                verify=self._verify,
                proxies=self._proxies,
            )
        except requests.exceptions.RequestException as exc:
            raise RegistryUnavailable(
                f"cannot reach the token service of {self.host}: {_short_reason(exc)}"
            ) from None
        if answer.status_code in (401, 403):
            raise self._auth_error()
        if answer.status_code != 200:
            raise RegistryError(
                f"token service of {self.host} answered HTTP {answer.status_code}",
            )
        try:
            body = answer.json()
            value = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            value = None
            lifetime = 0.0
        if not isinstance(value, str) or not value:
            raise RegistryError(f"token service of {self.host} returned no token")
        with self._lock:
            # renew ahead of expiry so a long upload does not start with a dying token
            self._tokens[scope] = _Token(value, time.monotonic() + max(lifetime - 10, 5))

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        with self._lock:
            connections, self._quick_connections = self._quick_connections, []
        for connection in connections:
            connection.close()


QUICK_LIMIT = 4 * 1024 * 1024  # manifests are at most 4 MiB; bigger answers take the full path


def read_body(response: QuickResponse | requests.Response, limit: int) -> bytes:
    """Up to ``limit + 1`` bytes of a body from ``Transport.quick`` (so callers see "too big")."""
    if isinstance(response, QuickResponse):
        return response.content[: limit + 1]
    data: bytes = response.raw.read(limit + 1, decode_content=True)
    return data


class QuickResponse:
    """The parts of a ``requests.Response`` that callers of ``Transport.quick`` use."""

    def __init__(
        self, status: int, headers: http.client.HTTPMessage, content: bytes, method: str, url: str
    ) -> None:
        self.status_code = status
        self.headers = headers  # case-insensitive lookups, like requests' headers
        self.content = content
        self.request = _QuickRequest(method, url)

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


_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^,;]+)*)")


def _host_and_port(host: str) -> tuple[str, int]:
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, int(rest[1:]) if rest.startswith(":") else 443
    name, _, port = host.partition(":")
    return name, int(port) if port else 443


def _environ_proxies(host: str) -> dict[str, str]:
    """The proxies requests would use for ``https://host`` (from the environment)."""
    import urllib.request

    if not urllib.request.getproxies():
        return {}
    import requests.utils

    return dict(requests.utils.get_environ_proxies(f"https://{host}/v2/"))


def _speaks_plain_http(exc: Exception) -> bool:
    text = str(exc).lower()
    return (
        "wrong version number" in text or "record layer failure" in text or "http request" in text
    )


def _short_reason(exc: Exception) -> str:
    text = str(exc)
    for marker in (
        "Connection refused",
        "timed out",
        "Name or service not known",
        "No route to host",
        "Connection reset",
        "certificate verify failed",
        "hostname mismatch",
        "Read timed out",
        "RemoteDisconnected",
        "Connection aborted",
    ):
        if marker.lower() in text.lower():
            return marker.lower()
    return text.split("(Caused by", 1)[-1].strip(" ()'\"")[:160] or type(exc).__name__
