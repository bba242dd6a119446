"""Credentials in URLs (userinfo, query parameters): dropped before anything is stored.

Lineage stores URLs (a git remote, ``--data`` URIs) in manifest annotations,
readable by anyone with pull access and frozen into the digest. A pre-signed or
token-carrying URL works as a password while it is valid, so its secret
parameters are removed, not masked: the same object reached through two
different signed URLs then has the same lineage.

A parameter is a credential when its name, split into words (``X-Amz-Signature``
-> ``x amz signature``, ``apiKey`` -> ``api key``), contains one of
``CREDENTIAL_WORDS`` (S3 and GCS pre-signed URLs, Azure SAS ``sig``, GitLab
``private_token``, OAuth ``access_token``, ``api_key``, ``password``…). The
fragment is treated the same way when it looks like a query (OAuth's
``#access_token=…``). Userinfo (``user:secret@``) is dropped by
:func:`strip_credentials`; :func:`stored_url` does both.
"""

from __future__ import annotations

import re
from typing import Final

CREDENTIAL_WORDS: Final = frozenset(
    {
        "apikey",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "key",
        "passwd",
        "password",
        "pwd",
        "secret",
        "sig",
        "signature",
        "token",
    }
)

_WORD: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
SCHEME_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_SSH_SCHEMES: Final = frozenset({"ssh", "git+ssh", "ssh+git"})
_TOKEN_USER_SCHEMES: Final = frozenset({"http", "https", "ftp", "ftps"})


def is_credential_parameter(name: str) -> bool:
    """Whether a query parameter called ``name`` carries a secret (by its name alone)."""
    from urllib.parse import unquote_plus

    words = {word.lower() for word in _WORD.findall(unquote_plus(name))}
    words |= {word[:-1] for word in words if word.endswith("s")}  # tokens, keys
    return not words.isdisjoint(CREDENTIAL_WORDS)


def strip_query_credentials(url: str) -> str:
    """``url`` without the credential parameters of its query and of a query-like fragment.

    Everything else is kept byte for byte, in order; a query or fragment left
    empty is dropped with its ``?`` or ``#``.
    """
    if "?" not in url and "#" not in url:
        return url
    head, hash_mark, fragment = url.partition("#")
    base, question_mark, query = head.partition("?")
    if question_mark:
        query = _without_credentials(query)
        head = f"{base}?{query}" if query else base
    if hash_mark:
        if "=" in fragment:
            fragment = _without_credentials(fragment)
        return f"{head}#{fragment}" if fragment else head
    return head


def _without_credentials(query: str) -> str:
    kept = [
        item
        for item in re.split(r"[&;]", query)
        if item and not is_credential_parameter(item.partition("=")[0])
    ]
    return "&".join(kept)


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
    """``url`` as lineage stores it: no userinfo secret, no credential parameter."""
    return strip_query_credentials(strip_credentials(url)) if SCHEME_RE.match(url) else url
