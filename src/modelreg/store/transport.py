"""HTTP transport to one registry host: the facade and its chain of sending steps.

Built on ``requests``. ``Transport.request`` sends through small steps, each one
job (the shape httpx uses)::

    request        fail fast until the registry has answered once   (retry.FirstContact)
    _send_retried  bounded retries with backoff: connection failures
                   once answered, 429 and 5xx, replayable requests   (retry)
    _send_authed   auth by challenge: Basic, Bearer tokens, 401/403 (auth.Authenticator)
    _send_once     one request (requests follows GET/HEAD redirects;
                   TLS, CA bundle and proxies from tls)

``quick`` is the same conversation for small requests on a plain keep-alive
connection, falling back to ``request`` for anything but the plain case.
No secret is ever put into an exception message or a log line.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # requests is imported on first use: a push whose requests all take the
    import requests  # quick path (a push of an unchanged model) never pays for importing it

from ..errors import RegistryError, RegistryUnavailable
from .auth import Authenticator, Token
from .credentials import Credentials
from .options import RegistryOptions
from .quick import (
    QuickConnections,
    QuickResponse,
    exchange,
    plain_answer,
)
from .registry_errors import small_body_codes, with_answer
from .retry import RETRY_STATUS, FirstContact, backoff, silent, wait_to_retry
from .tls import (
    TLS_HINT,
    USER_AGENT,
    default_tls,
    environ_proxies,
    is_loopback,
    new_session,
    probe_loopback,
    short_reason,
    ssl_context,
)

__all__ = ["Transport"]


@dataclass
class _Sending:
    """One call of ``Transport.request``, as it goes down the chain."""

    method: str
    url: str
    scope: str
    headers: Mapping[str, str] | None
    data: bytes | Iterable[bytes] | None
    stream: bool
    replayable: bool
    read_timeout: float
    ours: bool
    auth_tries: int = 0


class _Unreachable(Exception):
    """A connection failure of one send, for the retry step to judge."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


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
        self._lock = threading.Lock()
        self._scheme: str | None = "http" if options.plain_http else None
        self._session: requests.Session | None = None
        self._proxies: dict[str, str] = {}
        # loaded on first use: reading a CA bundle costs more than a whole plain-HTTP push
        self._ssl_context_made: ssl.SSLContext | None = None
        self._quick = QuickConnections()
        self._first_contact = FirstContact(options.timeout)
        self.auth = Authenticator(
            host,
            options,
            credentials,
            registry_url=lambda: self.base_url,
            session=lambda: self.session,
            proxies=lambda: self._proxies,
        )

    def __repr__(self) -> str:
        return f"Transport({self.host!r})"

    @property
    def answered(self) -> bool:
        """Whether this registry has answered anything yet: until it has, nothing is
        retried and every answer must come within ``timeout`` (a black hole fails at once)."""
        return self._first_contact.answered

    @answered.setter
    def answered(self, value: bool) -> None:
        self._first_contact.answered = value

    @property
    def _tokens(self) -> dict[str, Token]:
        return self.auth.tokens

    @property
    def _quick_connections(self) -> list[http.client.HTTPConnection]:
        return self._quick.open

    @property
    def session(self) -> requests.Session:
        """The requests session for everything but the quick path, made on first use."""
        with self._lock:
            if self._session is None:
                self._session = new_session(self._ssl_context)
            return self._session

    @property
    def _ssl_context(self) -> ssl.SSLContext | None:
        """The custom CA's context (``ca_cert``), or None for the default trust."""
        if self._ssl_context_made is None and self.options.ca_cert:
            self._ssl_context_made = ssl_context(self.options.ca_cert)
        return self._ssl_context_made

    def credentials(self) -> Credentials | None:
        return self.auth.credentials()

    def redact(self, text: str) -> str:
        """``text`` (from a server: an error body, a message) with every secret we hold masked."""
        return self.auth.redact(text)

    def pause_before_retry(self, attempt: int) -> None:
        """Sleep the backoff before retry number ``attempt`` (1, 2, …) of something."""
        time.sleep(backoff(attempt))

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        self._quick.close()

    # ----- where -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._scheme is None:
            self._scheme = self._probe_scheme()
        return f"{self._scheme}://{self.host}"

    def _probe_scheme(self) -> str:
        if not is_loopback(self.host):
            self._proxies = environ_proxies(self.host)
            return "https"
        scheme, answered = probe_loopback(self.host, self.options.timeout)
        if answered:
            self.answered = True
        return scheme

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    def _ours(self, url: str) -> bool:
        """Whether ``url`` is on this registry: credentials are never sent anywhere else.

        Being ours is not enough: ``auth.refuse_cleartext`` also keeps them on TLS.
        """
        return urllib.parse.urlsplit(url).netloc == self.host

    # ----- the send chain ----------------------------------------------------------

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
        with self._first_contact.guard():
            url = self.url(path)
            ours = self._ours(url)
            if ours:
                self.auth.refuse_cleartext(url, "its own API")
            read_timeout = self.options.read_timeout if bulk else 3 * self.options.timeout
            sending = _Sending(
                method,
                url,
                scope,
                headers,
                data,
                stream,
                replayable,
                read_timeout if self.answered else self.options.timeout,
                ours,
            )
            return self._send_retried(sending)

    def _send_retried(self, sending: _Sending) -> requests.Response:
        deadline = time.monotonic() + self.options.timeout
        attempt = 0
        while True:
            attempt += 1
            may_retry = sending.replayable and attempt <= self.options.retries
            try:
                response = self._send_authed(sending)
            except _Unreachable as failure:
                if self.answered and may_retry and wait_to_retry(attempt, deadline):
                    continue
                raise self._unreachable(failure.cause) from None
            if (
                response.status_code in RETRY_STATUS
                and may_retry
                and wait_to_retry(attempt, deadline, response)
            ):
                response.close()
                continue
            return response

    def _send_authed(self, sending: _Sending) -> requests.Response:
        while True:
            authorization, exact = (
                self.auth.authorization(sending.scope) if sending.ours else (None, False)
            )
            response = self._send_once(sending, authorization)
            status = response.status_code
            if status == 401 and sending.ours and sending.auth_tries < 2:
                sending.auth_tries += 1
                response.close()
                self.auth.answer_challenge(response, sending.scope, authorization, exact)
                if sending.replayable:
                    continue
            if status in (401, 403):
                codes = small_body_codes(response)
                response.close()
                error = self.auth.auth_error() if status == 401 else self.auth.denied(sending.scope)
                raise with_answer(error, status, codes, sending.method, sending.url)
            return response

    def _send_once(self, sending: _Sending, authorization: str | None) -> requests.Response:
        import requests

        headers = dict(sending.headers or {})
        if authorization:
            headers["Authorization"] = authorization
        try:
            response = self.session.request(
                sending.method,
                sending.url,
                headers=headers,
                data=sending.data,
                stream=sending.stream,
                timeout=(self.options.timeout, sending.read_timeout),
                proxies=self._proxies,
                allow_redirects=sending.method in ("GET", "HEAD"),
            )
        except requests.exceptions.SSLError as exc:
            raise RegistryUnavailable(
                f"TLS with registry {self.host} failed: {short_reason(exc)}", TLS_HINT
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise _Unreachable(exc) from None
        except requests.exceptions.RequestException as exc:
            raise RegistryError(
                f"request to registry {self.host} failed: {self.redact(short_reason(exc))}"
            ) from None
        self.answered = True
        return response

    def _unreachable(self, cause: Exception) -> RegistryUnavailable:
        import requests

        if not self.answered and isinstance(cause, requests.exceptions.ReadTimeout):
            return silent(self.host, self.options.timeout)
        return RegistryUnavailable(
            f"cannot reach registry {self.host}: {short_reason(cause)}",
            "check that the registry is running and the host and port are right "
            "(MODELREG_TIMEOUT sets how long to wait)",
        )

    # ----- the quick path ------------------------------------------------------------

    @property
    def answer_grace(self) -> float:
        """Seconds a small answer may take beyond its bytes' time at the slowest pace."""
        return 3 * self.options.timeout

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
        jars, hooks). Only the plain case is handled here: a 2xx or 404 answer
        within ``QUICK_LIMIT`` bytes, not content-encoded. Everything else - an auth
        challenge, a redirect, a retryable status, a proxy, a connection error - goes
        through ``request`` again (streamed: read the body with ``read_body``), which
        does all of that properly.
        """
        with self._first_contact.guard():
            answer = self._quick_once(method, path, scope=scope, headers=headers, data=data)
            if answer is not None:
                return answer
            return self.request(method, path, scope=scope, headers=headers, data=data, stream=True)

    def _quick_once(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        headers: Mapping[str, str] | None,
        data: bytes | None,
    ) -> QuickResponse | None:
        """The answer on the quick path, or None when the full path must take over."""
        if self._proxies or self.base_url.split("://", 1)[0] not in ("http", "https"):
            return None
        send = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **(headers or {})}
        authorization, _ = self.auth.authorization(scope)
        if authorization:
            send["Authorization"] = authorization
        target = self._quick_target(path)
        if target is None:
            return None
        for fresh in (False, True):
            timeout = 3 * self.options.timeout if self.answered else self.options.timeout
            connection = self._quick.get(
                self.base_url, timeout, lambda: self._ssl_context or default_tls(), fresh=fresh
            )
            try:
                answer, body = exchange(connection, method, target, data, send, self.answer_grace)
            except TimeoutError:
                connection.close()
                if not self.answered:
                    raise silent(self.host, self.options.timeout) from None
                continue
            except (OSError, http.client.HTTPException):
                connection.close()
                if not self.answered:
                    return None  # the full path reports why, without retrying
                continue
            self.answered = True
            return plain_answer(connection, answer, body, method, self.base_url + target)
        return None

    def _quick_target(self, path: str) -> str | None:
        """The request target for ``path`` on this registry; None for a URL elsewhere."""
        if not path.startswith(("http://", "https://")):
            return path
        if not path.startswith(self.base_url + "/"):
            return None
        return path[len(self.base_url) :]
