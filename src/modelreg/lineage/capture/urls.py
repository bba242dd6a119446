"""URLs as lineage records them: the scheme, the authority, no credentials."""

from __future__ import annotations

import re
from typing import Final

from ...redact import strip_query_credentials

SCHEME_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_SSH_SCHEMES: Final = frozenset({"ssh", "git+ssh", "ssh+git"})
_TOKEN_USER_SCHEMES: Final = frozenset({"http", "https", "ftp", "ftps"})


def authority_end(url: str, start: int) -> int:
    ends = [i for i in (url.find(c, start) for c in "/?#") if i != -1]
    return min(ends, default=len(url))


def strip_credentials(url: str) -> str:
    """Drop secrets from a URL's userinfo.

    ``user:secret@`` is always dropped (an ssh URL keeps ``user@``); a lone user is
    dropped for http(s)/ftp(s), where it is often a token, and kept elsewhere
    (``ssh://git@host``). scp-like ``git@host:repo`` has no secret and is kept.
    """
    match = SCHEME_RE.match(url)
    if match is None:
        return url
    scheme = match.group(1).lower()
    start = match.end()
    end = authority_end(url, start)
    userinfo, at, host = url[start:end].rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    if scheme in _SSH_SCHEMES:
        keep = f"{user}@"
    elif colon or scheme in _TOKEN_USER_SCHEMES:
        keep = ""
    else:
        return url
    return url[:start] + keep + host + url[end:]


def stored_url(url: str) -> str:
    """``url`` as lineage stores it: no userinfo secret, no credential parameter (``redact``)."""
    return strip_query_credentials(strip_credentials(url)) if SCHEME_RE.match(url) else url
