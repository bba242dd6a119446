"""HTTP transport to one registry host: timeouts, bounded retries, Basic and Bearer auth.

Built on ``requests``. Everything a registry conversation needs below the
distribution API itself lives here:

* fail fast: until a registry has answered once, the first connection that is
  refused or gets no answer within ``timeout`` (default 5 s) ends the command -
  an unreachable or black-holed registry is an error within seconds, not minutes;
* bounded retries with backoff for connection failures (only once the registry has
  answered: it broke mid-way), 429 and 5xx, only for requests that can be replayed;
* auth by challenge: ``WWW-Authenticate: Basic`` sends the docker-config
  credentials; ``Bearer`` fetches a token for exactly the scope asked, caches it
  per scope until it expires, and sends it up front on the next request;
* plain HTTP only for loopback registries that do not speak TLS (docker's rule)
  or with MODELREG_PLAIN_HTTP, HTTPS with a custom CA bundle otherwise; an https
  registry's http:// upload URL or token realm is refused (``_refuse_cleartext``).

No secret is ever put into an exception message or a log line.
"""

from __future__ import annotations

import contextlib
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
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # requests is imported on first use: a push whose requests all take the
    import requests  # quick path (a push of an unchanged model) never pays for importing it

from ..errors import AuthError, InvalidInput, RegistryError, RegistryUnavailable
from .credentials import HELPER_TIMEOUT, Credentials

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
    helper_timeout: float = HELPER_TIMEOUT

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
        if env.get("MODELREG_HELPER_TIMEOUT"):
            values["helper_timeout"] = _positive_float(
                env["MODELREG_HELPER_TIMEOUT"], "MODELREG_HELPER_TIMEOUT"
            )
        if env.get("MODELREG_PLAIN_HTTP"):
            values["plain_http"] = env["MODELREG_PLAIN_HTTP"].lower() in ("1", "true", "yes")
        if env.get("MODELREG_SETTLE"):
            values["settle"] = _positive_float(env["MODELREG_SETTLE"], "MODELREG_SETTLE")
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


_TLS_HINT = "pass --ca-cert (or set MODELREG_CA_CERT) with the CA that signed its certificate"


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


Grants = Mapping[str, frozenset[str]]


def parse_scope(scope: str) -> dict[str, frozenset[str]]:
    """``repository:a:pull,push repository:b:pull`` -> ``{"repository:a": {pull, push}, …}``."""
    grants: dict[str, set[str]] = {}
    for item in scope.split():
        resource, sep, actions = item.rpartition(":")
        if sep and resource:
            grants.setdefault(resource, set()).update(a for a in actions.split(",") if a)
    return {resource: frozenset(actions) for resource, actions in grants.items()}


def format_scope(grants: Grants) -> list[str]:
    """The token-request ``scope`` values for ``grants``, one per resource, in a stable order."""
    return [
        f"{resource}:{','.join(sorted(actions))}" for resource, actions in sorted(grants.items())
    ]


def _describe_scope(scope: str) -> str:
    parts = [
        f"{','.join(sorted(actions))} access to {resource.partition(':')[2] or resource}"
        for resource, actions in sorted(parse_scope(scope).items())
    ]
    return " and ".join(parts) or "access"


@dataclass
class _Token:
    value: str = field(repr=False)
    expires: float
    grants: Grants

    def covers(self, wanted: Grants) -> bool:
        return all(
            actions <= self.grants.get(resource, frozenset())
            for resource, actions in wanted.items()
        )


def _new_session(context: ssl.SSLContext | None) -> requests.Session:
    """A requests session whose TLS connections use ``context`` (system CAs + a custom CA)."""
    import requests
    import requests.adapters

    class Adapter(requests.adapters.HTTPAdapter):
        def __init__(self, **kwargs: Any) -> None:
            self._context = context  # before super().__init__, which builds the pool manager
            super().__init__(**kwargs)

        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            if self._context is not None:
                kwargs["ssl_context"] = self._context
            super().init_poolmanager(*args, **kwargs)

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            if self._context is not None:
                kwargs["ssl_context"] = self._context
            return super().proxy_manager_for(proxy, **kwargs)

    session = requests.Session()
    session.trust_env = False
    adapter = Adapter(pool_connections=4, pool_maxsize=32, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = _USER_AGENT
    return session


def ssl_context(ca_cert: str) -> ssl.SSLContext:
    """The default trust (system store, ``SSL_CERT_FILE``/``SSL_CERT_DIR``) plus ``ca_cert``.

    The custom CA is *added*: a registry signed by a private CA and a token
    service or redirect target with a public certificate both verify.
    """
    path = Path(ca_cert).expanduser()
    if not path.exists():
        raise InvalidInput(
            f"CA certificate {ca_cert} does not exist",
            "pass the PEM file of the CA that signed the registry's certificate with --ca-cert "
            "or MODELREG_CA_CERT (REQUESTS_CA_BUNDLE and SSL_CERT_FILE are read too)",
        )
    context = ssl.create_default_context()
    try:
        if path.is_dir():
            context.load_verify_locations(capath=str(path))
        else:
            context.load_verify_locations(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError):
        raise InvalidInput(
            f"CA certificate {ca_cert} could not be loaded",
            "it must be a readable PEM file (-----BEGIN CERTIFICATE-----) or a hashed CA directory",
        ) from None
    return context


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
        # realm and service once the registry has asked for a bearer token: later
        # scopes get their token before the request instead of after a 401
        self._bearer: Challenge | None = None
        self._tokens: dict[str, _Token] = {}
        self._fetch_locks: dict[str, threading.Lock] = {}
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        self._scheme: str | None = "http" if options.plain_http else None
        self._session: requests.Session | None = None
        self._proxies: dict[str, str] = {}
        # loaded on first use: reading a CA bundle costs more than a whole plain-HTTP push
        self._ssl_context_made: ssl.SSLContext | None = None
        self._local = threading.local()
        self._quick_connections: list[http.client.HTTPConnection] = []
        # whether this registry has answered anything yet: until it has, nothing is retried
        # and every answer must come within ``timeout`` (a black hole fails at once)
        self.answered = False
        self._contact_lock = threading.RLock()
        self._contact_failed: tuple[RegistryUnavailable, float] | None = None

    def __repr__(self) -> str:
        return f"Transport({self.host!r})"

    @property
    def session(self) -> requests.Session:
        """The requests session for everything but the quick path, made on first use."""
        with self._lock:
            if self._session is None:
                self._session = _new_session(self._ssl_context)
            return self._session

    @property
    def _ssl_context(self) -> ssl.SSLContext | None:
        """The custom CA's context (``ca_cert``), or None for the default trust."""
        if self._ssl_context_made is None and self.options.ca_cert:
            self._ssl_context_made = ssl_context(self.options.ca_cert)
        return self._ssl_context_made

    # ----- connection ---------------------------------------------------------

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
        # requests that follow verify them, and fail with the TLS error and its hint
        name, port = _host_and_port(self.host)
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        probe.check_hostname = False
        probe.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection((name, port), timeout=self.options.timeout) as raw:
                try:
                    with probe.wrap_socket(raw, server_hostname=name):
                        self.answered = True
                        return "https"
                except TimeoutError:
                    # connected, and then nothing: a plain-HTTP server answers a ClientHello
                    # at once (with a 400), so this listener is a black hole
                    raise self._silent() from None
        except ssl.SSLError as exc:
            if _speaks_plain_http(exc):
                self.answered = True
                return "http"
            raise RegistryUnavailable(
                f"TLS with registry {self.host} failed: {_short_reason(exc)}", _TLS_HINT
            ) from None
        except OSError:
            # nothing answers there: let the real request report it over plain HTTP
            return "http"

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    def _ours(self, url: str) -> bool:
        """Whether ``url`` is on this registry: credentials are never sent anywhere else.

        Being ours is not enough: ``_refuse_cleartext`` also keeps them on TLS.
        """
        return urllib.parse.urlsplit(url).netloc == self.host

    def _refuse_cleartext(self, url: str, whom: str) -> None:
        """Raise unless credentials may travel to ``url`` (ours, or the announced token service).

        The one rule for where a secret may go in cleartext: over https always;
        over http only when the user opted into plain HTTP (``MODELREG_PLAIN_HTTP``)
        or to a loopback host while the registry itself is a loopback one that
        speaks no TLS. An https registry that hands out an ``http://`` URL (a
        TLS-terminating proxy without ``X-Forwarded-Proto``, a token realm on
        plain HTTP) is refused rather than quietly followed or upgraded: the
        user learns the registry is misconfigured, and no secret leaves TLS.
        """
        split = urllib.parse.urlsplit(url)
        if split.scheme != "http" or self.options.plain_http:
            return
        if self.base_url.startswith("http://") and is_loopback(split.netloc):
            return
        raise RegistryError(
            f"registry {self.host} sent a plain-HTTP URL for {whom} (http://{split.netloc}): "
            "refusing to talk to it without TLS",
            "a TLS-terminating proxy in front of the registry must pass X-Forwarded-Proto: "
            "https (or the registry must use relative URLs); set MODELREG_PLAIN_HTTP=1 only "
            "if plain HTTP to this registry is really meant",
        )

    # ----- requests -------------------------------------------------------------

    @contextlib.contextmanager
    def _contact(self) -> Iterator[None]:
        """Until the registry has answered once, one request at a time (threads of a
        parallel transfer queue here); when that one finds it silent or unreachable, the
        others fail with the same error at once instead of each waiting a timeout."""
        self._contact_lock.acquire()
        if self.answered:
            self._contact_lock.release()
            yield
            return
        try:
            failed = self._contact_failed
            if failed is not None and time.monotonic() - failed[1] < self.options.timeout:
                raise RegistryUnavailable(failed[0].message, failed[0].hint)
            try:
                yield
            except RegistryUnavailable as error:
                if not self.answered:
                    self._contact_failed = (error, time.monotonic())
                raise
        finally:
            self._contact_lock.release()

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
        with self._contact():
            return self._request(
                method,
                path,
                scope=scope,
                headers=headers,
                data=data,
                stream=stream,
                replayable=replayable,
                bulk=bulk,
            )

    def _request(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        headers: Mapping[str, str] | None,
        data: bytes | Iterable[bytes] | None,
        stream: bool,
        replayable: bool,
        bulk: bool,
    ) -> requests.Response:
        import requests

        deadline = time.monotonic() + self.options.timeout
        read_timeout = self.options.read_timeout if bulk else 3 * self.options.timeout
        url = self.url(path)
        if not self.answered:
            read_timeout = self.options.timeout
        ours = self._ours(url)
        if ours:
            self._refuse_cleartext(url, "its own API")
        attempt = 0
        auth_tries = 0
        while True:
            attempt += 1
            send_headers = dict(headers or {})
            authorization, exact = self._authorization(scope) if ours else (None, False)
            if authorization:
                send_headers["Authorization"] = authorization
            try:
                response = self.session.request(
                    method,
                    url,
                    headers=send_headers,
                    data=data,
                    stream=stream,
                    timeout=(self.options.timeout, read_timeout),
                    proxies=self._proxies,
                    allow_redirects=method in ("GET", "HEAD"),
                )
                self.answered = True
            except requests.exceptions.SSLError as exc:
                raise RegistryUnavailable(
                    f"TLS with registry {self.host} failed: {_short_reason(exc)}", _TLS_HINT
                ) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                if (
                    self.answered
                    and replayable
                    and attempt <= self.options.retries
                    and self._wait(attempt, deadline)
                ):
                    continue
                if not self.answered and isinstance(exc, requests.exceptions.ReadTimeout):
                    raise self._silent() from None
                raise RegistryUnavailable(
                    f"cannot reach registry {self.host}: {_short_reason(exc)}",
                    "check that the registry is running and the host and port are right "
                    "(MODELREG_TIMEOUT sets how long to wait)",
                ) from None
            except requests.exceptions.RequestException as exc:
                raise RegistryError(
                    f"request to registry {self.host} failed: {self.redact(_short_reason(exc))}"
                ) from None
            if response.status_code == 401 and ours and auth_tries < 2:
                auth_tries += 1
                response.close()
                self._answer_challenge(response, scope, authorization, exact)
                if replayable:
                    continue
            if response.status_code == 401:
                response.close()
                raise self._auth_error()
            if response.status_code == 403:
                response.close()
                raise self._denied(scope)
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
        with self._contact():
            return self._quick(method, path, scope=scope, headers=headers, data=data)

    def _quick(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        headers: Mapping[str, str] | None,
        data: bytes | None,
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
        authorization, _ = self._authorization(scope)
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
            except TimeoutError:
                connection.close()
                if not self.answered:
                    raise self._silent() from None
                continue
            except (OSError, http.client.HTTPException):
                connection.close()
                if not self.answered:
                    break  # the full path reports why, without retrying
                continue
            self.answered = True
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
        timeout = 3 * self.options.timeout if self.answered else self.options.timeout
        if scheme == "https":
            connection = http.client.HTTPSConnection(
                netloc, timeout=timeout, context=self._ssl_context or _default_tls()
            )
        else:
            connection = http.client.HTTPConnection(netloc, timeout=timeout)
        local["connection"] = connection
        with self._lock:
            self._quick_connections.append(connection)
        return connection

    def _silent(self) -> RegistryUnavailable:
        return RegistryUnavailable(
            f"registry {self.host} accepted the connection but did not answer within "
            f"{self.options.timeout:g} s",
            "check that a registry (and not something else) listens there and is not hung "
            "(--timeout or MODELREG_TIMEOUT sets how long to wait)",
        )

    def pause_before_retry(self, attempt: int) -> None:
        """Sleep the backoff before retry number ``attempt`` (1, 2, …) of something."""
        time.sleep(_backoff(attempt))

    def _wait(
        self, attempt: int, deadline: float, response: requests.Response | None = None
    ) -> bool:
        delay = _backoff(attempt)
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
            if self._credentials is not None:
                with self._lock:
                    self._secrets.update(self._credentials.secret_forms())
        return self._credentials

    def redact(self, text: str) -> str:
        """``text`` (from a server: an error body, a message) with every secret we hold masked."""
        with self._lock:
            known = sorted(self._secrets, key=len, reverse=True)
        for secret in known:
            text = text.replace(secret, "***")
        return text

    def _authorization(self, scope: str) -> tuple[str | None, bool]:
        """The Authorization header for a request needing ``scope``.

        The flag says whether it is a token fetched for exactly this scope (as
        opposed to a cached token for a wider one, or none).
        """
        cached = self._cached_token(scope)
        if cached is not None:
            return cached
        with self._lock:
            bearer = self._bearer
        if bearer is not None:
            # one fetch per scope, however many threads want it at once
            with self._fetch_lock(scope):
                cached = self._cached_token(scope)
                if cached is not None:
                    return cached
                return f"Bearer {self._fetch_token(bearer, scope).value}", True
        if self._basic:
            creds = self.credentials()
            return (creds.basic_header() if creds else None), False
        return None, False

    def _cached_token(self, scope: str) -> tuple[str, bool] | None:
        wanted = parse_scope(scope)
        with self._lock:
            now = time.monotonic()
            token = self._tokens.get(_scope_key(scope))
            if token is not None and token.expires > now:
                return f"Bearer {token.value}", True
            for other in self._tokens.values():
                if other.expires > now and other.covers(wanted):
                    return f"Bearer {other.value}", False
        return None

    def _fetch_lock(self, scope: str) -> threading.Lock:
        with self._lock:
            return self._fetch_locks.setdefault(_scope_key(scope), threading.Lock())

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

    def _denied(self, scope: str) -> AuthError:
        creds = self.credentials()
        if creds is None:
            return self._auth_error()
        return AuthError(
            f"registry {self.host} denied {creds.username!r} {_describe_scope(scope)}",
            f"ask the registry's administrator for it, or log in as another user with "
            f"'modelreg login {self.host}'",
        )

    def _answer_challenge(
        self, response: requests.Response, scope: str, sent: str | None, exact: bool
    ) -> None:
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            raise RegistryError(f"registry {self.host} answered 401 without an auth challenge")
        if challenge.scheme == "basic":
            # credentials sent and refused; or none to send. A request that went out
            # without them while another thread learnt the scheme just tries again.
            if (self._basic and sent) or self.credentials() is None:
                raise self._auth_error()
            self._basic = True
            return
        if challenge.scheme != "bearer":
            raise RegistryError(
                f"registry {self.host} asks for unsupported auth scheme {challenge.scheme!r}"
            )
        wanted = parse_scope(scope)
        asked = parse_scope(challenge.params.get("scope", ""))
        with self._fetch_lock(scope):
            with self._lock:
                if sent:
                    # the token we sent is expired, revoked or too narrow: never send it again
                    self._tokens = {
                        key: token
                        for key, token in self._tokens.items()
                        if f"Bearer {token.value}" != sent
                    }
                self._bearer = Challenge(
                    "bearer",
                    {k: v for k, v in challenge.params.items() if k in ("realm", "service")},
                )
            if (
                exact
                and challenge.params.get("error") == "insufficient_scope"
                and all(actions <= wanted.get(res, frozenset()) for res, actions in asked.items())
            ):
                # a fresh token for everything the registry wants still is not enough
                raise self._denied(scope)
            cached = self._cached_token(scope)
            if cached is not None and cached[1] and cached[0] != sent:
                return  # another thread fetched a fresh one meanwhile
            self._fetch_token(challenge, scope)

    def _fetch_token(self, challenge: Challenge, scope: str) -> _Token:
        realm = challenge.params.get("realm", "")
        if urllib.parse.urlsplit(realm).scheme not in ("http", "https"):
            raise RegistryError(
                f"registry {self.host} sent a Bearer challenge without a usable realm URL"
            )
        grants = parse_scope(scope)
        for resource, actions in parse_scope(challenge.params.get("scope", "")).items():
            grants[resource] = grants.get(resource, frozenset()) | actions
        params: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        params.extend(("scope", value) for value in format_scope(grants))
        headers = {}
        form: dict[str, str] | None = None
        self._refuse_cleartext(realm, "its token service")
        creds = self.credentials()
        if creds and creds.is_identity_token:
            # OAuth2 (docker's token spec, "oauth"): trade the identity token for an access token
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.secret,
                "client_id": _USER_AGENT,
                "scope": " ".join(value for key, value in params if key == "scope"),
            }
            form.update((key, value) for key, value in params if key == "service")
        elif creds:
            params.append(("account", creds.username))
            headers["Authorization"] = creds.basic_header()
        service = urllib.parse.urlsplit(realm).netloc
        import requests

        try:
            answer = self.session.request(
                "POST" if form is not None else "GET",
                realm,
                params=None if form is not None else params,
                data=form,
                headers=headers,
                timeout=(self.options.timeout, self.options.timeout * 2),
                proxies=self._proxies,
            )
        except requests.exceptions.SSLError as exc:
            raise RegistryUnavailable(
                f"TLS with the token service of {self.host} ({service}) failed: "
                f"{_short_reason(exc)}",
                _TLS_HINT,
            ) from None
        except requests.exceptions.RequestException as exc:
            raise RegistryUnavailable(
                f"cannot reach the token service of {self.host} ({service}): {_short_reason(exc)}",
                "check that the token service the registry names is up and reachable",
            ) from None
        with contextlib.closing(answer):
            if answer.status_code in (401, 403):
                raise self._auth_error()
            if answer.status_code != 200:
                detail = _body_excerpt(answer)
                raise RegistryError(
                    f"token service of {self.host} answered HTTP {answer.status_code}"
                    + (f": {self.redact(detail)}" if detail else ""),
                    "the registry's token service failed; try again later or tell its operator",
                )
            try:
                body = answer.json()
                value = body.get("token") or body.get("access_token")
                lifetime = float(body.get("expires_in") or 60)
            except (ValueError, AttributeError, TypeError):
                value, lifetime = None, 0.0
        if not isinstance(value, str) or not value:
            raise RegistryError(f"token service of {self.host} returned no token")
        if not 0 < lifetime < 10**9:
            lifetime = 60.0  # the spec's default
        # renew a little before expiry so a request does not start with a dying token
        margin = min(10.0, lifetime / 5)
        token = _Token(value, time.monotonic() + lifetime - margin, grants)
        with self._lock:
            self._secrets.add(value)
            self._tokens[_scope_key(scope)] = token
        return token

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


_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^,;]+)*)")


_DEFAULT_TLS: ssl.SSLContext | None = None


def _backoff(attempt: int) -> float:
    """Exponential from 0.1 s, capped at 2 s, with jitter so that clients spread out."""
    return min(2.0, 0.1 * 2.0 ** (attempt - 1)) * (0.5 + random.random())


def _default_tls() -> ssl.SSLContext:
    """What requests verifies against by default (certifi's bundle), made once."""
    global _DEFAULT_TLS
    if _DEFAULT_TLS is None:
        import certifi

        _DEFAULT_TLS = ssl.create_default_context(cafile=certifi.where())
    return _DEFAULT_TLS


def _scope_key(scope: str) -> str:
    return " ".join(format_scope(parse_scope(scope)))


def _body_excerpt(response: requests.Response, limit: int = 200) -> str:
    """The first line of an error body, or its JSON ``errors``/``error``/``details`` message."""
    import requests

    try:
        text = response.content[:4096].decode("utf-8", "replace")
    except requests.exceptions.RequestException:
        return ""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list):
            messages = [
                str(e.get("message") or e.get("code") or "") for e in errors if isinstance(e, dict)
            ]
            text = "; ".join(m for m in messages if m)
        else:
            text = str(
                body.get("error_description") or body.get("details") or body.get("error") or ""
            )
    lines = text.strip().splitlines()
    return lines[0][:limit] if lines else ""


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
