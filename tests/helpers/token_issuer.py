"""A small, real token issuer for distribution's ``auth: token`` (the docker token spec).

https://distribution.github.io/distribution/spec/auth/token/ : the registry
answers ``401`` with ``WWW-Authenticate: Bearer realm=…,service=…,scope=…``; the
client GETs ``realm?service=…&scope=…[&scope=…]`` with Basic credentials (or
none, anonymously); the issuer answers ``{"token", "access_token", "expires_in",
"issued_at"}`` where the token is a JWT signed with a key whose certificate is in
the registry's ``rootcertbundle``.  Claims: ``iss`` (= the registry's
``issuer``), ``aud`` (= ``service``), ``sub``, ``exp``/``nbf``/``iat``, ``jti``
and ``access``: ``[{"type", "name", "actions"}]`` — the subset of the requested
actions this account is granted.

Tokens are ES256 JWS with the signing certificate in the ``x5c`` header
(distribution verifies that chain against ``rootcertbundle``).  The issuer runs
``http.server`` in a thread on 127.0.0.1 (optionally over TLS), records every
token request, and can be told to refuse everyone or to answer with an error
body (optionally echoing what the client sent, to prove the client never
repeats it).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

__all__ = [
    "EchoRegistry",
    "Grant",
    "TokenIssuer",
    "TokenRequest",
    "make_ca_signed_cert",
    "make_signing_cert",
]

# (account or None for anonymous, resource type, resource name, requested actions) -> granted
Grant = Callable[[str | None, str, str, list[str]], list[str]]


@dataclass(frozen=True)
class TokenRequest:
    """One request the issuer saw: who asked (None = anonymous) and for what."""

    account: str | None
    scopes: tuple[str, ...]
    service: str | None
    status: int
    method: str = "GET"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _make_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A P-256 key and a self-signed CA certificate for it, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_signing_cert(
    directory: Path, common_name: str = "modelreg test token signer"
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    """A P-256 key and a self-signed certificate for it; returns (key, cert, cert.pem path)."""
    key, cert = _make_ca(common_name)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "token-signer.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def make_ca_signed_cert(directory: Path, ca_name: str) -> tuple[Path, Path, Path]:
    """A fresh CA and a server certificate for 127.0.0.1/localhost that it signed.

    Returns (ca.pem, server-cert.pem, server-key.pem): a TLS server whose
    certificate only a client trusting ``ca.pem`` accepts.  server-cert.pem holds
    the chain (server certificate, then the CA).
    """
    now = datetime.datetime.now(datetime.UTC)
    ca_key, ca = _make_ca(ca_name)
    ca_subject = ca.subject
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = (
        directory / "ca.pem",
        directory / "server-cert.pem",
        directory / "server-key.pem",
    )
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    # the full chain, so whoever trusts only this file (the registry fixture's readiness
    # check) finds the CA in it; clients are given ca.pem alone
    cert_path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


def _serve(
    handler: type[BaseHTTPRequestHandler], tls: tuple[Path, Path] | None = None
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve ``handler`` on 127.0.0.1 (a free port, TLS with ``(cert, key)``) in a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    return server, thread


def _shutdown(server: ThreadingHTTPServer | None, thread: threading.Thread | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()
    if thread is not None:
        thread.join(timeout=10)


def grant_all(account: str | None, kind: str, name: str, actions: list[str]) -> list[str]:
    """Default policy: any authenticated account gets what it asks; anonymous gets nothing."""
    return list(actions) if account is not None else []


class TokenIssuer:
    """A token service on 127.0.0.1; use as a context manager (or ``start``/``stop``).

    ``users`` maps account -> password (checked from the Basic header).
    ``grant`` decides the granted actions per resource.  ``expires_in`` is the
    token lifetime (seconds) announced and written into ``exp``.  Set
    ``refuse`` to answer every request 401; set ``error_status`` (and
    ``error_body``, where ``{authorization}``, ``{password}`` and ``{account}``
    are replaced by what the client sent) to answer with an error instead.
    """

    def __init__(
        self,
        directory: Path,
        users: dict[str, str],
        *,
        service: str = "modelreg-test-registry",
        issuer: str = "modelreg-test-issuer",
        expires_in: int = 300,
        grant: Grant = grant_all,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.users = dict(users)
        # OAuth2 identity (refresh) tokens -> account, for POST grant_type=refresh_token
        self.refresh_tokens: dict[str, str] = {}
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.grant = grant
        self.refuse = False
        self.error_status: int | None = None
        self.error_body = ""
        self.requests: list[TokenRequest] = []
        self.tokens: list[str] = []
        self._key, cert, self.cert_path = make_signing_cert(directory)
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self._tls = tls
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----- lifecycle --------------------------------------------------------------

    def start(self) -> TokenIssuer:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer._handle(self)

            def do_POST(self) -> None:
                issuer._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server, self._thread = _serve(Handler, self._tls)
        return self

    def stop(self) -> None:
        _shutdown(self._server, self._thread)
        self._server = self._thread = None

    def __enter__(self) -> TokenIssuer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def realm(self) -> str:
        assert self._server is not None, "start the issuer first"
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}/token"

    def registry_config(self) -> dict[str, Any]:
        """The ``auth`` section for a registry that trusts this issuer (``extra_config``)."""
        return {
            "auth": {
                "token": {
                    "realm": self.realm,
                    "service": self.service,
                    "issuer": self.issuer,
                    "rootcertbundle": str(self.cert_path),
                }
            }
        }

    def count(self, status: int | None = 200) -> int:
        """How many token requests were answered with ``status`` (None: all)."""
        with self._lock:
            return sum(1 for r in self.requests if status is None or r.status == status)

    # ----- the endpoint -------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        query = parse_qs(url.query)
        authorization = handler.headers.get("Authorization", "")
        account: str | None
        password: str | None
        if handler.command == "POST":
            # OAuth2 refresh-token grant: the identity token replaces the password
            length = int(handler.headers.get("Content-Length") or 0)
            query = parse_qs(handler.rfile.read(length).decode())
            refresh = (query.get("refresh_token") or [""])[0]
            grant_type = (query.get("grant_type") or [""])[0]
            account = self.refresh_tokens.get(refresh) if grant_type == "refresh_token" else None
            password, authenticated = refresh, account is not None
            if not authenticated:
                authorization = "refresh_token"  # a failed grant is a failed login
        else:
            account, password, authenticated = self._check(authorization)
        scopes = tuple(s for value in query.get("scope", []) for s in value.split(" ") if s)
        service = (query.get("service") or [""])[0] or None

        def answer(status: int, body: dict[str, Any] | str) -> None:
            with self._lock:
                self.requests.append(
                    TokenRequest(account, scopes, service, status, handler.command)
                )
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            if status == 401:
                handler.send_header("WWW-Authenticate", 'Basic realm="modelreg-test-issuer"')
            handler.end_headers()
            handler.wfile.write(data)

        if url.path != "/token":
            answer(404, {"errors": [{"code": "NOT_FOUND", "message": "no such endpoint"}]})
            return
        if self.error_status is not None:
            body = (
                self.error_body.replace("{authorization}", authorization)
                .replace("{password}", password or "")
                .replace("{account}", account or "")
            )
            answer(self.error_status, body)
            return
        if self.refuse or (authorization and not authenticated):
            answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid credentials"}]})
            return
        if service != self.service:
            answer(400, {"errors": [{"code": "DENIED", "message": "unknown service"}]})
            return
        user = account if authenticated else None
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = self.grant(user, kind, name, [a for a in actions.split(",") if a])
            if granted:
                access.append({"type": kind, "name": name, "actions": granted})
        token = self._sign(user or "", access)
        with self._lock:
            self.tokens.append(token)
        answer(
            200,
            {
                "token": token,
                "access_token": token,
                "expires_in": self.expires_in,
                "issued_at": datetime.datetime.now(datetime.UTC).isoformat(),
            },
        )

    def _check(self, authorization: str) -> tuple[str | None, str | None, bool]:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic" or not value:
            return None, None, False
        try:
            account, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None, None, False
        expected = self.users.get(account)
        ok = expected is not None and secrets.compare_digest(expected, password)
        return account, password, ok

    def _sign(self, subject: str, access: Iterable[dict[str, Any]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self._x5c]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now - 5,
            "iat": now,
            "jti": secrets.token_hex(12),
            "access": list(access),
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


class EchoRegistry:
    """A broken registry (plain HTTP on 127.0.0.1) that repeats what the client sent.

    Without credentials it asks for Basic auth; with them every request fails
    with HTTP 400 and a distribution-style error whose message quotes the
    Authorization header and the decoded password — what a careless proxy or
    registry might do.  A client must never repeat such a message verbatim.
    """

    def __init__(self, users: dict[str, str]) -> None:
        self.users = dict(users)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> EchoRegistry:
        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: bool) -> None:
                authorization = self.headers.get("Authorization", "")
                if not authorization:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="echo"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                try:
                    decoded = base64.b64decode(authorization.partition(" ")[2]).decode()
                except ValueError:
                    decoded = ""
                message = f"bad request; you sent {authorization} ({decoded})"
                data = json.dumps({"errors": [{"code": "UNKNOWN", "message": message}]}).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer(True)

            def do_HEAD(self) -> None:
                self._answer(False)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server, self._thread = _serve(Handler)
        return self

    def __exit__(self, *exc: object) -> None:
        _shutdown(self._server, self._thread)
        self._server = self._thread = None

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"
