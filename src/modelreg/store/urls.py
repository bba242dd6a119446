"""URLs a registry hands back: upload locations with a query, and the next page of a list."""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING

from ..errors import IntegrityError

if TYPE_CHECKING:
    import requests

    from .quick import QuickResponse


def with_query(url: str, **params: str) -> str:
    separator = "&" if urllib.parse.urlsplit(url).query else "?"
    return url + separator + urllib.parse.urlencode(params)


def next_link(response: requests.Response | QuickResponse) -> str | None:
    """The next page of a paginated list (``Link: <…>; rel="next"``), on the same registry."""
    link = response.links.get("next", {}).get("url")
    if not link:
        return None
    here = urllib.parse.urlsplit(response.url)
    there = urllib.parse.urlsplit(urllib.parse.urljoin(response.url, link))
    if (there.scheme, there.netloc) != (here.scheme, here.netloc):
        # credentials for this registry must never follow a link to another host
        raise IntegrityError(f"the registry's tag list links to another host: {link}")
    return urllib.parse.urlunsplit(("", "", there.path, there.query, ""))


def count_page(
    path: str,
    visited: set[str],
    listed: int,
    *,
    bounds: tuple[int, int],
    where: str,
    name: str,
    unit: str,
) -> None:
    """Note a page about to be read; refuse a list whose next-page links loop or never end.

    ``bounds`` is (most pages, most items); ``name`` and ``unit`` word the error
    (``the tag list does not end (over 3 pages, 2000 tags)``).
    """
    if path in visited:
        raise IntegrityError(
            f"{where}: the {name}'s next-page links loop", "the registry is broken or hostile"
        )
    most_pages, most_items = bounds
    if len(visited) >= most_pages or listed > most_items:
        raise IntegrityError(
            f"{where}: the {name} does not end (over {len(visited)} pages, {listed} {unit})",
            "the registry keeps sending more pages; it is broken or hostile",
        )
    visited.add(path)
