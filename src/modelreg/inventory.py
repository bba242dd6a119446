"""What a repository holds, by tag: one snapshot that retention and mirroring plan from.

``read_tags`` reads every tag and the manifest it points at (one ``index.json``
read on the local store, a parallel ``HEAD`` per tag on a registry);
``Inventory.of`` sorts those tags into what modelreg made them for — versions,
anchors, version records, promotion records, pending proposals, stage tags and
aliases. Sorting is pure: it only looks at names and digests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .anchors import model_of_anchor as _model_of_new_anchor
from .anchors import subject_of_referrers_tag
from .digest import is_digest
from .errors import NotFound
from .oci import Descriptor
from .promotion import parse_record_tag
from .store.base import Repository
from .versions import is_internal_tag, parse_version_tag, stage_names

_VERSION_RECORD = re.compile(r"sha256-([a-f0-9]{64})\.version")
_PENDING = re.compile(r"(promotion\.[a-z][a-z0-9_-]{0,29}\.[0-9]{8,18})\.pending")


def read_tags(repository: Repository, *, missing_ok: bool = False) -> dict[str, Descriptor]:
    """Every tag and the manifest it points at now.

    A tag removed between listing and resolving is left out. With ``missing_ok``
    a repository that does not exist reads as empty (a mirror's fresh destination).
    """
    try:
        tags = repository.list_tags()
    except NotFound:
        if missing_ok:
            return {}
        raise
    return repository.tag_map(tags)


def parse_pending_tag(tag: str) -> tuple[str, int] | None:
    match = _PENDING.fullmatch(tag)
    return parse_record_tag(match.group(1)) if match else None


def model_of_anchor(tag: str) -> str | None:
    """The digest an anchor tag names: ``anchor.<hex>``, or the old ``sha256-<hex>``."""
    return _model_of_new_anchor(tag) or subject_of_referrers_tag(tag)


def model_of_version_record(tag: str) -> str | None:
    match = _VERSION_RECORD.fullmatch(tag)
    return f"sha256:{match.group(1)}" if match else None


@dataclass(frozen=True)
class Inventory:
    """A repository's tags, sorted by purpose. Every value is a manifest digest."""

    tags: Mapping[str, Descriptor]
    versions: Mapping[int, str] = field(default_factory=dict)
    anchors: Mapping[str, str] = field(default_factory=dict)  # model digest -> tag
    version_records: Mapping[str, str] = field(default_factory=dict)  # model -> record
    records: Mapping[tuple[str, int], str] = field(default_factory=dict)  # (stage, seq)
    pending: Mapping[tuple[str, int], str] = field(default_factory=dict)
    stages: Mapping[str, str] = field(default_factory=dict)  # stage tag -> model
    aliases: Mapping[str, str] = field(default_factory=dict)
    # subject digest -> its OCI referrers index (tag ``sha256-<hex>``, someone's or ours)
    referrer_indexes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, tags: Mapping[str, Descriptor]) -> Inventory:
        names = stage_names(tags)
        versions: dict[int, str] = {}
        anchors: dict[str, str] = {}
        version_records: dict[str, str] = {}
        records: dict[tuple[str, int], str] = {}
        pending: dict[tuple[str, int], str] = {}
        stages: dict[str, str] = {}
        aliases: dict[str, str] = {}
        referrer_indexes: dict[str, str] = {}
        for tag, descriptor in tags.items():
            digest = descriptor.digest
            if (number := parse_version_tag(tag)) is not None:
                versions[number] = digest
            elif (model := model_of_anchor(tag)) is not None:
                if model == digest:  # an anchor names its own target; anything else is not one
                    anchors[model] = tag
                elif subject_of_referrers_tag(tag) is not None:
                    referrer_indexes[model] = digest
            elif (model := model_of_version_record(tag)) is not None:
                version_records[model] = digest
            elif (found := parse_record_tag(tag)) is not None:
                records[found] = digest
            elif (found := parse_pending_tag(tag)) is not None:
                pending[found] = digest
            elif is_internal_tag(tag):
                continue
            elif tag in names:
                stages[tag] = digest
            else:
                aliases[tag] = digest
        return cls(
            dict(tags),
            versions,
            anchors,
            version_records,
            records,
            pending,
            stages,
            aliases,
            referrer_indexes,
        )

    def tags_of(self, digest: str) -> list[str]:
        """Every tag that points at ``digest``."""
        return sorted(tag for tag, found in self.tags.items() if found.digest == digest)

    def version_of(self, digest: str) -> list[int]:
        return sorted(n for n, found in self.versions.items() if found == digest)

    def chain(self, stage: str) -> list[tuple[int, str]]:
        """(sequence, record digest) of a stage's committed records, in order."""
        return sorted(
            (seq, digest) for (name, seq), digest in self.records.items() if name == stage
        )

    def record_stages(self) -> list[str]:
        return sorted({stage for stage, _ in self.records})

    def descriptor(self, digest: str) -> Descriptor | None:
        if not is_digest(digest):
            return None
        for found in self.tags.values():
            if found.digest == digest:
                return found
        return None
