"""TLS and proxies: CA bundles, the loopback TLS probe, environment proxies, the session.

Plain HTTP only for loopback registries that do not speak TLS (docker's rule) or
with MODELREG_PLAIN_HTTP; HTTPS with the default trust plus a custom CA otherwise.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput, RegistryUnavailable
from .retry import silent

if TYPE_CHECKING:
    import requests

USER_AGENT = "modelreg"
TLS_HINT = "pass --ca-cert (or set MODELREG_CA_CERT) with the CA that signed its certificate"

_DEFAULT_TLS: ssl.SSLContext | None = None


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


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


def default_tls() -> ssl.SSLContext:
    """What requests verifies against by default (certifi's bundle), made once."""
    global _DEFAULT_TLS
    if _DEFAULT_TLS is None:
        import certifi

        _DEFAULT_TLS = ssl.create_default_context(cafile=certifi.where())
    return _DEFAULT_TLS


def new_session(context: ssl.SSLContext | None) -> requests.Session:
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
    session.headers["User-Agent"] = USER_AGENT
    return session


def probe_loopback(host: str, timeout: float) -> tuple[str, bool]:
    """``(scheme, answered)`` for a loopback registry, which may speak plain HTTP.

    Tries a TLS handshake. Certificates are not checked here (loading a CA bundle
    costs more than the handshake): the requests that follow verify them, and fail
    with the TLS error and its hint.
    """
    name, port = host_and_port(host)
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((name, port), timeout=timeout) as raw:
            try:
                with probe.wrap_socket(raw, server_hostname=name):
                    return "https", True
            except TimeoutError:
                # connected, and then nothing: a plain-HTTP server answers a ClientHello
                # at once (with a 400), so this listener is a black hole
                raise silent(host, timeout) from None
    except ssl.SSLError as exc:
        if _speaks_plain_http(exc):
            return "http", True
        raise RegistryUnavailable(
            f"TLS with registry {host} failed: {short_reason(exc)}", TLS_HINT
        ) from None
    except OSError:
        # nothing answers there: let the real request report it over plain HTTP
        return "http", False


def host_and_port(host: str) -> tuple[str, int]:
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, int(rest[1:]) if rest.startswith(":") else 443
    name, _, port = host.partition(":")
    return name, int(port) if port else 443


def environ_proxies(host: str) -> dict[str, str]:
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


def short_reason(exc: Exception) -> str:
    """A few words on why a connection failed (no URL, no headers: nothing secret)."""
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
