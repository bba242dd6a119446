"""What a registry's error answer means: a one-line modelreg error that keeps its structure.

Every error made from an HTTP answer carries the status, the registry's error
codes (``DENIED``, ``TOOMANYREQUESTS``, ``MANIFEST_UNKNOWN``, …), the method and
the URL without credentials or query string, as attributes; the message and hint
are the same one-liners as ever.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..errors import ConflictError, IntegrityError, ModelregError, NotFound, RegistryError

if TYPE_CHECKING:
    import requests

    from .quick import QuickResponse

_E = TypeVar("_E", bound=ModelregError)
_MAX_ERROR_BODY = 64 * 1024


class _Request(Protocol):
    @property
    def method(self) -> str | None: ...

    @property
    def url(self) -> str | None: ...


def without_credentials(url: str) -> str:
    """``url`` with no user, password or query string (upload states, signed URLs)."""
    split = urllib.parse.urlsplit(url)
    netloc = split.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((split.scheme, netloc, split.path, "", ""))


def registry_errors(response: requests.Response | QuickResponse) -> tuple[set[str], str]:
    """The error codes and the joined messages of a distribution-API error body."""
    try:
        body: Any = response.json()
        errors = body.get("errors", []) if isinstance(body, dict) else []
    except ValueError:
        return set(), ""
    codes = {e.get("code", "") for e in errors if isinstance(e, dict)}
    messages = [str(e.get("message", "")) for e in errors if isinstance(e, dict)]
    return codes, "; ".join(m for m in messages if m)[:200]


def small_body_codes(response: requests.Response) -> set[str]:
    """The error codes of an answer whose body is declared small (else none are read)."""
    declared = response.headers.get("Content-Length") or ""
    if not declared.isdigit() or int(declared) > _MAX_ERROR_BODY:
        return set()
    try:
        return registry_errors(response)[0]
    except Exception:  # a body that breaks while read only loses the codes
        return set()


def with_answer(
    error: _E,
    status: int,
    codes: set[str],
    method: str | None,
    url: str | None,
) -> _E:
    """``error`` with the registry's answer attached (its message is left as it is)."""
    error.status = status
    error.codes = tuple(sorted(code for code in codes if code))
    error.method = method
    error.url = without_credentials(url) if url else None
    return error


def error_for(
    response: requests.Response | QuickResponse,
    doing: str,
    where: str,
    host: str,
    redact: Callable[[str], str],
) -> ModelregError:
    """The error for an unexpected answer while ``doing`` something on repository ``where``."""
    codes, message = registry_errors(response)
    request: _Request = response.request
    error = _error_for(response.status_code, codes, redact(message), request, doing, where, host)
    return with_answer(error, response.status_code, codes, request.method, request.url)


def _error_for(
    status: int, codes: set[str], message: str, request: _Request, doing: str, where: str, host: str
) -> ModelregError:
    # message is redacted: a registry may echo what we sent
    if status == 404 or "NAME_UNKNOWN" in codes or "MANIFEST_UNKNOWN" in codes:
        if "NAME_UNKNOWN" in codes:
            return NotFound(
                f"repository {where} does not exist",
                "check the name, or push a model there first",
            )
        if "BLOB_UNKNOWN" in codes or "/blobs/" in (request.url or ""):
            return NotFound(f"{where}: {doing}: blob not found on the registry")
        return NotFound(
            f"{where}: {doing}: not found",
            f"list what exists with 'modelreg versions {where}'",
        )
    if status == 405 or "UNSUPPORTED" in codes:
        if request.method == "DELETE":
            return RegistryError(
                f"registry {host} does not allow deletes",
                "enable deletes (registry:2: storage.delete.enabled: true)",
            )
        return RegistryError(f"{where}: {doing}: the registry does not support this")
    if "DIGEST_INVALID" in codes:
        return IntegrityError(f"{where}: {doing}: the registry says the digest does not match")
    if status == 413 or "SIZE_INVALID" in codes:
        return RegistryError(f"{where}: {doing}: the registry refused the size ({message})")
    if "TAG_INVALID" in codes or "MANIFEST_INVALID" in codes or "MANIFEST_BLOB_UNKNOWN" in codes:
        return RegistryError(f"{where}: {doing}: the registry refused the manifest ({message})")
    if status == 409:
        return ConflictError(f"{where}: {doing}: conflict ({message})")
    detail = f": {message}" if message else ""
    return RegistryError(f"{where}: {doing}: HTTP {status}{detail}")
