"""Auth by challenge: Basic, Bearer tokens per scope, the token cache, and where secrets may go.

``WWW-Authenticate: Basic`` sends the docker-config credentials; ``Bearer``
fetches a token for exactly the scope asked, caches it per scope until it
expires, and sends it up front on the next request. Credentials travel only to
the registry itself or the token service it names, and never leave TLS
(``refuse_cleartext``). No secret is ever put into an exception message.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import AuthError, RegistryError, RegistryUnavailable
from .credentials import Credentials
from .options import RegistryOptions
from .tls import TLS_HINT, USER_AGENT, is_loopback, short_reason

if TYPE_CHECKING:
    import requests

_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')

Grants = Mapping[str, frozenset[str]]


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


def _scope_key(scope: str) -> str:
    return " ".join(format_scope(parse_scope(scope)))


@dataclass
class Token:
    value: str = field(repr=False)
    expires: float
    grants: Grants

    def covers(self, wanted: Grants) -> bool:
        return all(
            actions <= self.grants.get(resource, frozenset())
            for resource, actions in wanted.items()
        )


def refuse_cleartext(
    url: str, whom: str, *, host: str, registry_url: str, plain_http: bool
) -> None:
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
    if split.scheme != "http" or plain_http:
        return
    if registry_url.startswith("http://") and is_loopback(split.netloc):
        return
    raise RegistryError(
        f"registry {host} sent a plain-HTTP URL for {whom} (http://{split.netloc}): "
        "refusing to talk to it without TLS",
        "a TLS-terminating proxy in front of the registry must pass X-Forwarded-Proto: "
        "https (or the registry must use relative URLs); set MODELREG_PLAIN_HTTP=1 only "
        "if plain HTTP to this registry is really meant",
    )


class Authenticator:
    """The credentials, challenges and tokens of one registry host, shared by its threads."""

    def __init__(
        self,
        host: str,
        options: RegistryOptions,
        credentials: Callable[[], Credentials | None],
        *,
        registry_url: Callable[[], str],
        session: Callable[[], requests.Session],
        proxies: Callable[[], dict[str, str]],
    ) -> None:
        self.host = host
        self.options = options
        self._credentials_source = credentials
        self._credentials: Credentials | None = None
        self._credentials_loaded = False
        self._registry_url = registry_url
        self._session = session
        self._proxies = proxies
        self.basic = False
        # realm and service once the registry has asked for a bearer token: later
        # scopes get their token before the request instead of after a 401
        self._bearer: Challenge | None = None
        self.tokens: dict[str, Token] = {}
        self._fetch_locks: dict[str, threading.Lock] = {}
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Authenticator({self.host!r})"

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

    def refuse_cleartext(self, url: str, whom: str) -> None:
        refuse_cleartext(
            url,
            whom,
            host=self.host,
            registry_url=self._registry_url(),
            plain_http=bool(self.options.plain_http),
        )

    def authorization(self, scope: str) -> tuple[str | None, bool]:
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
        if self.basic:
            creds = self.credentials()
            return (creds.basic_header() if creds else None), False
        return None, False

    def _cached_token(self, scope: str) -> tuple[str, bool] | None:
        wanted = parse_scope(scope)
        with self._lock:
            now = time.monotonic()
            token = self.tokens.get(_scope_key(scope))
            if token is not None and token.expires > now:
                return f"Bearer {token.value}", True
            for other in self.tokens.values():
                if other.expires > now and other.covers(wanted):
                    return f"Bearer {other.value}", False
        return None

    def _fetch_lock(self, scope: str) -> threading.Lock:
        with self._lock:
            return self._fetch_locks.setdefault(_scope_key(scope), threading.Lock())

    def auth_error(self) -> AuthError:
        if self.credentials() is None:
            return AuthError(
                f"registry {self.host} requires authentication",
                f"log in with 'modelreg login {self.host}' (or docker login)",
            )
        return AuthError(
            f"registry {self.host} rejected the stored credentials",
            f"log in again with 'modelreg login {self.host}'",
        )

    def denied(self, scope: str) -> AuthError:
        creds = self.credentials()
        if creds is None:
            return self.auth_error()
        return AuthError(
            f"registry {self.host} denied {creds.username!r} {_describe_scope(scope)}",
            f"ask the registry's administrator for it, or log in as another user with "
            f"'modelreg login {self.host}'",
        )

    def answer_challenge(
        self, response: requests.Response, scope: str, sent: str | None, exact: bool
    ) -> None:
        """Learn from a 401 how to authenticate next time (fetching a token if asked)."""
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            raise RegistryError(f"registry {self.host} answered 401 without an auth challenge")
        if challenge.scheme == "basic":
            # credentials sent and refused; or none to send. A request that went out
            # without them while another thread learnt the scheme just tries again.
            if (self.basic and sent) or self.credentials() is None:
                raise self.auth_error()
            self.basic = True
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
                    self.tokens = {
                        key: token
                        for key, token in self.tokens.items()
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
                raise self.denied(scope)
            cached = self._cached_token(scope)
            if cached is not None and cached[1] and cached[0] != sent:
                return  # another thread fetched a fresh one meanwhile
            self._fetch_token(challenge, scope)

    def _fetch_token(self, challenge: Challenge, scope: str) -> Token:
        realm = challenge.params.get("realm", "")
        if urllib.parse.urlsplit(realm).scheme not in ("http", "https"):
            raise RegistryError(
                f"registry {self.host} sent a Bearer challenge without a usable realm URL"
            )
        self.refuse_cleartext(realm, "its token service")
        grants = parse_scope(scope)
        for resource, actions in parse_scope(challenge.params.get("scope", "")).items():
            grants[resource] = grants.get(resource, frozenset()) | actions
        answer = self._ask_token_service(realm, challenge.params.get("service"), grants)
        with contextlib.closing(answer):
            value, lifetime = self._read_token(answer)
        # renew a little before expiry so a request does not start with a dying token
        margin = min(10.0, lifetime / 5)
        token = Token(value, time.monotonic() + lifetime - margin, grants)
        with self._lock:
            self._secrets.add(value)
            self.tokens[_scope_key(scope)] = token
        return token

    def _ask_token_service(
        self, realm: str, service: str | None, grants: Grants
    ) -> requests.Response:
        """GET the token with Basic credentials, or POST an OAuth2 refresh token for it."""
        params: list[tuple[str, str]] = []
        if service:
            params.append(("service", service))
        params.extend(("scope", value) for value in format_scope(grants))
        headers = {}
        form: dict[str, str] | None = None
        creds = self.credentials()
        if creds and creds.is_identity_token:
            # OAuth2 (docker's token spec, "oauth"): trade the identity token for an access token
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.secret,
                "client_id": USER_AGENT,
                "scope": " ".join(value for key, value in params if key == "scope"),
            }
            form.update((key, value) for key, value in params if key == "service")
        elif creds:
            params.append(("account", creds.username))
            headers["Authorization"] = creds.basic_header()
        where = urllib.parse.urlsplit(realm).netloc
        import requests

        try:
            return self._session().request(
                "POST" if form is not None else "GET",
                realm,
                params=None if form is not None else params,
                data=form,
                headers=headers,
                timeout=(self.options.timeout, self.options.timeout * 2),
                proxies=self._proxies(),
            )
        except requests.exceptions.SSLError as exc:
            raise RegistryUnavailable(
                f"TLS with the token service of {self.host} ({where}) failed: {short_reason(exc)}",
                TLS_HINT,
            ) from None
        except requests.exceptions.RequestException as exc:
            raise RegistryUnavailable(
                f"cannot reach the token service of {self.host} ({where}): {short_reason(exc)}",
                "check that the token service the registry names is up and reachable",
            ) from None

    def _read_token(self, answer: requests.Response) -> tuple[str, float]:
        """The token and its lifetime in seconds from the token service's answer."""
        if answer.status_code in (401, 403):
            raise self.auth_error()
        if answer.status_code != 200:
            detail = body_excerpt(answer)
            raise RegistryError(
                f"token service of {self.host} answered HTTP {answer.status_code}"
                + (f": {self.redact(detail)}" if detail else ""),
                "the registry's token service failed; try again later or tell its operator",
                status=answer.status_code,
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
        return value, lifetime


def body_excerpt(response: requests.Response, limit: int = 200) -> str:
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
