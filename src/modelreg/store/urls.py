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
