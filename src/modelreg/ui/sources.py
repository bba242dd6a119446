"""What a ``modelreg ui`` shows: whole registries (their catalogs), named repositories, or
the local store; and which repository names a request may ask about (no others: the
server never fetches from a registry its operator did not name)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InvalidInput, ModelregError
from ..reference import is_registry_host, parse_reference, parse_registry_host
from ..store import Stores
from ..store.catalog import local_repositories, registry_repositories


@dataclass(frozen=True)
class Listing:
    """The repositories of every source, and one error per source that could not list."""

    names: list[str]
    errors: list[ModelregError]


@dataclass(frozen=True)
class Sources:
    registries: tuple[str, ...] = ()
    repositories: tuple[str, ...] = ()
    local: bool = False

    @classmethod
    def parse(cls, texts: Sequence[str]) -> Sources:
        """``localhost:5000`` (its whole catalog), ``HOST/REPO`` or ``REPO``; none: local store."""
        if not texts:
            return cls(local=True)
        registries: list[str] = []
        repositories: list[str] = []
        for text in texts:
            if is_registry_host(text.rstrip("/")) and "/" not in text.rstrip("/"):
                registries.append(parse_registry_host(text))
                continue
            ref = parse_reference(text)
            if ref.tag or ref.digest:
                raise InvalidInput(
                    f"{text} names a model, not a repository",
                    f"name the repository alone: {ref.name}",
                )
            repositories.append(ref.name)
        return cls(tuple(dict.fromkeys(registries)), tuple(dict.fromkeys(repositories)))

    def allows(self, name: str) -> bool:
        if name in self.repositories:
            return True
        first, slash, _ = name.partition("/")
        if slash and is_registry_host(first):
            return first in self.registries
        return self.local

    def list(self, stores: Stores) -> Listing:
        names: list[str] = list(self.repositories)
        errors: list[ModelregError] = []
        if self.local:
            names.extend(local_repositories(stores.local.root))
        for host in self.registries:
            try:
                listed = registry_repositories(stores.transport(host))
            except ModelregError as exc:
                errors.append(exc)
                continue
            names.extend(f"{host}/{name}" for name in listed)
        return Listing(list(dict.fromkeys(names)), errors)
