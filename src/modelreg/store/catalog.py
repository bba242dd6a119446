"""Which repositories a store holds: the registry's catalog API, or the local store's folders.

The distribution spec's ``GET /v2/_catalog`` is optional and many public
registries (GHCR, Docker Hub, most cloud registries for non-admins) disable it;
then the only way forward is to name repositories, and the error says so.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from ..errors import AuthError, IntegrityError, RegistryError
from .quick import read_body
from .registry_errors import registry_errors as _registry_errors
from .transport import Transport
from .urls import count_page
from .urls import next_link as _next_link

CATALOG_PAGE = 1000
MAX_CATALOG_PAGES = 1000
MAX_CATALOG_PAGE_BYTES = 4 * 1024 * 1024
MAX_REPOSITORIES = 100_000
_CATALOG_SCOPE = "registry:catalog:*"


def _name_them_hint(host: str) -> str:
    return (
        f"name repositories explicitly instead, e.g. 'modelreg versions {host}/ORG/MODEL' "
        f"or 'modelreg ui {host}/ORG/MODEL'"
    )


def registry_repositories(transport: Transport, prefix: str = "") -> list[str]:
    """Every repository the registry's catalog lists (under ``prefix``), sorted."""
    host = transport.host
    names: list[str] = []
    path: str | None = f"/v2/_catalog?n={CATALOG_PAGE}"
    visited: set[str] = set()
    while path:
        count_page(
            path,
            visited,
            len(names),
            bounds=(MAX_CATALOG_PAGES, MAX_REPOSITORIES),
            where=f"registry {host}",
            name="catalog",
            unit="repositories",
        )
        try:
            response = transport.quick("GET", path, scope=_CATALOG_SCOPE)
        except AuthError as exc:
            raise AuthError(
                f"registry {host} does not let you list its repositories ({exc.message})",
                f"log in if it needs one ('modelreg login {host}'); otherwise "
                + _name_them_hint(host),
            ) from None
        with contextlib.closing(response):
            codes, message = _registry_errors(response) if response.status_code != 200 else ({}, "")
            if response.status_code in (404, 405) or "UNSUPPORTED" in codes:
                raise RegistryError(
                    f"registry {host} does not list its repositories (its catalog API is "
                    f"disabled: HTTP {response.status_code})",
                    _name_them_hint(host),
                )
            if response.status_code != 200:
                detail = f": {transport.redact(message)}" if message else ""
                raise RegistryError(
                    f"registry {host}: listing repositories: HTTP {response.status_code}{detail}",
                    _name_them_hint(host),
                )
            data = read_body(response, MAX_CATALOG_PAGE_BYTES, transport.answer_grace)
            if len(data) > MAX_CATALOG_PAGE_BYTES:
                raise IntegrityError(
                    f"registry {host}: a catalog page is over {MAX_CATALOG_PAGE_BYTES} bytes",
                    "the registry is broken or hostile",
                )
            names.extend(_page_names(host, data))
            try:
                path = _next_link(response)
            except IntegrityError:
                raise IntegrityError(
                    f"registry {host}: the catalog's next page links to another host",
                    "the registry is broken or hostile; credentials never follow such a link",
                ) from None
    return sorted({n for n in names if under_prefix(n, prefix)})


def _page_names(host: str, data: bytes) -> list[str]:
    try:
        page = json.loads(data)
    except (ValueError, RecursionError):
        raise IntegrityError(f"registry {host}: the catalog is not valid JSON") from None
    listed = page.get("repositories") if isinstance(page, dict) else None
    if listed is None:
        listed = []
    if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
        raise IntegrityError(f"registry {host}: the catalog is malformed")
    return [n for n in listed if _is_repository_name(n)]


def _is_repository_name(name: str) -> bool:
    # a hostile catalog may list anything; only names a reference can carry are kept
    from ..reference import _REPOSITORY, MAX_NAME

    return len(name) <= MAX_NAME and _REPOSITORY.fullmatch(name) is not None


def under_prefix(name: str, prefix: str) -> bool:
    prefix = prefix.strip("/")
    return not prefix or name == prefix or name.startswith(prefix + "/")


def local_repositories(root: Path, prefix: str = "") -> list[str]:
    """Every repository of the local store (a directory with an image layout), sorted."""
    if not root.is_dir():
        return []
    found = []
    for marker in root.rglob("oci-layout"):
        name = marker.parent.relative_to(root).as_posix()
        if name != "." and "blobs" not in marker.parent.relative_to(root).parts:
            found.append(name)
    return sorted(n for n in found if under_prefix(n, prefix))


def parse_listing(text: str | None) -> tuple[str | None, str]:
    """``REGISTRY[/PREFIX]`` or a local ``PREFIX`` (or nothing): the registry and the prefix."""
    from ..errors import InvalidInput
    from ..reference import _REPOSITORY, is_registry_host, parse_registry_host

    if not text:
        return None, ""
    first, _, rest = text.strip().partition("/")
    registry = parse_registry_host(first) if is_registry_host(first) else None
    prefix = (rest if registry else text.strip()).strip("/")
    if prefix and not _REPOSITORY.fullmatch(prefix):
        raise InvalidInput(
            f"invalid repository prefix {prefix!r} in {text!r}",
            "write REGISTRY[/PREFIX] (e.g. localhost:5000/ml) or a local prefix (e.g. ml)",
        )
    return registry, prefix
