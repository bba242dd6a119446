"""Credentials in URL query strings: found by parameter name and dropped before anything is stored.

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
``#access_token=…``). Userinfo (``user:secret@``) is lineage's concern.
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
