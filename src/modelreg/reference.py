"""Model references: ``[host[:port]/]repository[:tag][@sha256:…]``.

Docker's rule decides where a reference lives: when the first path component
contains a ``.`` or a ``:``, or is ``localhost``, it names a registry; otherwise
the whole name is a repository in the local store (``$MODELREG_HOME``). There is
no implicit ``docker.io``: a plain name never leaves the machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .digest import parse_digest
from .errors import InvalidInput

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HOST_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST = re.compile(rf"(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?")
MAX_NAME = 255

_SYNTAX_HINT = (
    "write [HOST[:PORT]/]NAME[:TAG][@sha256:DIGEST], e.g. fraud:v3 or localhost:5000/ml/fraud"
)


@dataclass(frozen=True)
class Reference:
    """A parsed reference. ``registry`` is None for the local store."""

    registry: str | None
    repository: str
    tag: str | None = None
    digest: str | None = None
    # ``oci:DIR[:TAG]`` (skopeo's syntax): an OCI image-layout directory of its own
    layout: str | None = None

    @property
    def is_local(self) -> bool:
        return self.registry is None

    @property
    def name(self) -> str:
        """Repository with its registry: the part before any tag or digest."""
        if self.layout is not None:
            return f"oci:{self.layout}"
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    @property
    def identifier(self) -> str | None:
        """What to ask the store for: the digest when pinned, else the tag."""
        return self.digest or self.tag

    def with_tag(self, tag: str) -> Reference:
        return replace(self, tag=validate_tag(tag), digest=None)

    def with_digest(self, digest: str) -> Reference:
        return replace(self, tag=None, digest=parse_digest(digest))

    def bare(self) -> Reference:
        return replace(self, tag=None, digest=None)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def validate_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise InvalidInput(
            f"invalid tag {tag!r}",
            "a tag is 1-128 characters of letters, digits, '_', '.' and '-', "
            "not starting with '.' or '-'",
        )
    return tag


def is_registry_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"


def parse_reference(text: str) -> Reference:
    """Parse ``text`` into a Reference, raising InvalidInput with a fix on any error."""
    original = text
    if not text or text != text.strip():
        raise InvalidInput(f"invalid reference {original!r}: empty or padded", _SYNTAX_HINT)
    if text.startswith(OCI_PREFIX):
        return _parse_layout_reference(text)
    digest = None
    if "@" in text:
        text, digest_text = text.split("@", 1)
        digest = parse_digest(digest_text)
    registry = None
    first, slash, rest = text.partition("/")
    if slash and is_registry_host(first):
        if not _HOST.fullmatch(first):
            raise InvalidInput(f"invalid registry host {first!r} in {original!r}", _SYNTAX_HINT)
        registry, text = first, rest
    tag = None
    last_slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > last_slash:
        text, tag = text[:colon], validate_tag(text[colon + 1 :])
    if not _REPOSITORY.fullmatch(text):
        raise InvalidInput(
            f"invalid repository name {text!r} in {original!r}",
            "repository names are lowercase letters, digits and separators ('.', '_', '-', '/'),"
            " e.g. ml/fraud",
        )
    if len(text) + len(registry or "") + 1 > MAX_NAME:
        raise InvalidInput(f"reference {original!r} is longer than {MAX_NAME} characters")
    return Reference(registry=registry, repository=text, tag=tag, digest=digest)


OCI_PREFIX = "oci:"


def _parse_layout_reference(text: str) -> Reference:
    """``oci:DIR[:TAG][@sha256:…]``: DIR is a path (no ``:`` in it, as in skopeo)."""
    body = text[len(OCI_PREFIX) :]
    digest = None
    if "@" in body:
        body, digest_text = body.rsplit("@", 1)
        digest = parse_digest(digest_text)
    directory, colon, tag_text = body.partition(":")
    if not directory:
        raise InvalidInput(
            f"invalid reference {text!r}: no directory after 'oci:'",
            "write oci:DIR[:TAG], e.g. oci:./fraud-layout:v3",
        )
    tag = validate_tag(tag_text) if colon else None
    name = directory.rstrip("/").rsplit("/", 1)[-1] or directory
    return Reference(registry=None, repository=name, tag=tag, digest=digest, layout=directory)


def parse_registry_host(text: str) -> str:
    """``HOST[:PORT]`` from what ``docker login`` accepts (``https://host:5000/`` too)."""
    host = text.strip()
    for prefix in ("https://", "http://"):
        if host.lower().startswith(prefix):
            host = host[len(prefix) :]
    host = host.split("/", 1)[0]
    if not host or not _HOST.fullmatch(host) or not is_registry_host(host):
        raise InvalidInput(
            f"invalid registry host {text!r}",
            "name a registry as HOST[:PORT], e.g. localhost:5000 or registry.example.com",
        )
    return host


__all__ = [
    "Reference",
    "is_registry_host",
    "parse_reference",
    "parse_registry_host",
    "validate_tag",
]
