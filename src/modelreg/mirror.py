"""Mirroring: copy a repository's versions with everything that makes them trustworthy.

``mirror`` copies, between any two stores (registry, local store, registry…),
each selected version's model with its lineage (it is in the manifest), its
``anchor.…`` anchor, its ``vN`` tag (same number, same digest), its alias tags
and its version record; the promotion records of the selected stages and their
pending proposals under the same ``promotion.<stage>.<seq>`` tags; and the stage
tags. Digests are preserved, so records — which are signed for the repository
*path* — verify at the destination with the same trust policy when the path
is the same (a different path is refused up front: those records would not
verify there).

Selection: every version and every stage (``stages=None``), or the given
stages: their whole chains, the model each stage tag points at, and every model
those records name (so history can be pulled and ``rollback`` works at the
destination). A model the source no longer has (gc removed it; its records
stay) is skipped: records verify without it. Last, the OCI referrers of every
copied model (its records, and what other tools attached: signatures, SBOMs)
are copied and listed at the destination the same way (referrers API or the
tag-schema index), other tools' entries kept as they were.

Order at the destination: per version the blobs, then the model (anchor, vN,
aliases), then its version record; then each stage's records in sequence
order, then pending proposals; stage tags last. Nothing is tagged before all
it references is there, so an interrupted mirror leaves no tag pointing at a
partial model, and running it again skips what is there and finishes.

Before writing anything the destination is checked: a ``vN`` holding another
digest, a model there under another number, an alias naming another model, a
promotion record that differs (a forked history) or a chain that is ahead of
the source's refuses the whole copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .anchors import anchor_tag
from .errors import ConflictError, InvalidInput, NotFound
from .formats.modelpack import modelpack_tag
from .inventory import Inventory, read_tags
from .oci import Manifest, manifest_references
from .policy import validate_stage
from .promotion import pending_tag
from .promotion import record_tag as promotion_tag
from .store.base import Repository
from .store.referrers import add_to_tag_schema_or_api, fetch_referrer, list_referrers
from .transfer import Progress, TransferEvent, copy_blobs
from .versions import version_record_tag, version_tag

_WORKERS = 16
_SHOWN_CONFLICTS = 3


@dataclass(frozen=True)
class MirrorPlan:
    """What to copy, in the order it is written."""

    versions: tuple[tuple[int, str], ...]  # (number, model digest), ascending
    models: tuple[str, ...]  # models records or stage tags name that have no version
    aliases: Mapping[str, str]
    version_records: Mapping[str, str]  # model digest -> version record digest
    records: tuple[tuple[str, str], ...]  # (tag, record digest), per stage in sequence order
    pending: tuple[tuple[str, str], ...]
    stage_tags: Mapping[str, str]
    stages: tuple[str, ...]


def select(
    inventory: Inventory, subjects: Mapping[str, str], stages: Sequence[str] | None
) -> MirrorPlan:
    """Pick what to copy from the source's tags (pure). ``subjects``: record -> model."""
    if stages is None:
        proposed = {stage for stage, _ in inventory.pending}
        chosen = sorted(set(inventory.record_stages()) | set(inventory.stages) | proposed)
        wanted = set(inventory.versions.values())
    else:
        chosen = sorted(dict.fromkeys(validate_stage(s) for s in stages))
        missing = [
            s
            for s in chosen
            if not inventory.chain(s)
            and s not in inventory.stages
            and not any(stage == s for stage, _ in inventory.pending)
        ]
        if missing:
            raise NotFound(
                f"the source has no stage {missing[0]!r}: no promotion records, no tag",
                "copy a stage the source has, or --all-versions",
            )
        wanted = set()
    records = [
        (promotion_tag(stage, seq), digest)
        for stage in chosen
        for seq, digest in inventory.chain(stage)
    ]
    pending = sorted(
        (pending_tag(stage, seq), digest)
        for (stage, seq), digest in inventory.pending.items()
        if stage in chosen
    )
    stage_tags = {s: inventory.stages[s] for s in chosen if s in inventory.stages}
    named = {subjects[d] for _, d in records + pending if d in subjects} | set(stage_tags.values())
    wanted |= named
    versions = tuple(sorted((n, d) for n, d in inventory.versions.items() if d in wanted))
    versioned = {d for _, d in versions}
    return MirrorPlan(
        versions=versions,
        models=tuple(sorted(wanted - versioned)),
        aliases={a: d for a, d in sorted(inventory.aliases.items()) if d in versioned},
        version_records={d: r for d, r in inventory.version_records.items() if d in versioned},
        records=tuple(records),
        pending=tuple(pending),
        stage_tags=stage_tags,
        stages=tuple(chosen),
    )


def conflicts(planned: MirrorPlan, source: Inventory, destination: Inventory) -> list[str]:
    """Why the destination's history disagrees with what would be copied (pure)."""
    found: list[str] = []
    for number, digest in planned.versions:
        there = destination.versions.get(number)
        if there is not None and there != digest:
            found.append(f"{version_tag(number)} is {there} there, {digest} here")
            continue
        other = [n for n in destination.version_of(digest) if n != number]
        if other:
            found.append(
                f"{digest} is {version_tag(other[0])} there but {version_tag(number)} here"
            )
    for alias, digest in planned.aliases.items():
        there = destination.aliases.get(alias) or (
            destination.tags[alias].digest if alias in destination.tags else None
        )
        if there is not None and there != digest:
            found.append(f"alias {alias!r} names {there} there, {digest} here")
    for tag, digest in planned.records:
        if tag in destination.tags and destination.tags[tag].digest != digest:
            found.append(f"{tag} differs there: the two histories have forked")
    for stage in planned.stages:
        ours = source.chain(stage)
        theirs = destination.chain(stage)
        if theirs and (not ours or theirs[-1][0] > ours[-1][0]):
            head = theirs[-1][0]
            found.append(f"{stage} is at record {head} there, ahead of this source")
    return found


# ----- executing ----------------------------------------------------------------------------------


@dataclass
class MirrorResult:
    source: str
    destination: str
    stages: tuple[str, ...] = ()
    versions: list[int] = field(default_factory=list)  # version numbers the destination has now
    versions_copied: int = 0  # of those, written by this run
    models: int = 0
    records: int = 0
    pending: int = 0
    referrers: int = 0  # OCI referrers of the copied models (signatures, SBOMs, records)
    stage_tags: list[str] = field(default_factory=list)
    blobs: dict[str, int] = field(default_factory=dict)  # copied / mounted / exists -> count
    bytes_copied: int = 0
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "stages": list(self.stages),
            "versions": self.versions,
            "versionsCopied": self.versions_copied,
            "models": self.models,
            "records": self.records,
            "pending": self.pending,
            "referrers": self.referrers,
            "stageTags": self.stage_tags,
            "blobs": dict(self.blobs),
            "bytesCopied": self.bytes_copied,
            "skipped": self.skipped,
        }


def mirror(
    source: Repository,
    destination: Repository,
    *,
    stages: Sequence[str] | None = None,
    progress: Progress | None = None,
    concurrency: int | None = None,
) -> MirrorResult:
    """Copy every version (``stages=None``) or the given stages' chains; see the module docs."""
    src = Inventory.of(read_tags(source))
    subjects = _subjects(source, [*src.records.values(), *src.pending.values()])
    planned = select(src, subjects, stages)
    if (planned.records or planned.pending) and source.path_in_store != destination.path_in_store:
        raise InvalidInput(
            f"promotion records are signed for the repository path {source.path_in_store!r}; "
            f"at {destination.path_in_store!r} they would not verify",
            "mirror into a repository with the same path (e.g. HOST/"
            f"{source.path_in_store} or the local {source.path_in_store})",
        )
    dst = Inventory.of(read_tags(destination, missing_ok=True))
    problems = conflicts(planned, src, dst)
    if problems:
        more = len(problems) - _SHOWN_CONFLICTS
        raise ConflictError(
            f"{destination.name} has a different history: "
            + "; ".join(problems[:_SHOWN_CONFLICTS])
            + (f"; and {more} more" if more > 0 else ""),
            "nothing was copied; mirror into an empty repository, or remove what conflicts there",
        )
    result = MirrorResult(source.name, destination.name, planned.stages)
    copier = _Copier(source, destination, dst, result, progress, concurrency)
    for number, digest in planned.versions:
        copier.version(number, digest, planned)
        form = modelpack_tag(digest)  # the version's ModelPack form, where it has one
        if form in src.tags:
            copier.artifact(form, src.tags[form].digest)
    for digest in planned.models:
        copier.model(digest)
    for tag, digest in planned.records:
        if copier.artifact(tag, digest):
            result.records += 1
    for tag, digest in planned.pending:
        if tag in dst.tags and dst.tags[tag].digest != digest:
            result.skipped.append(f"{tag}: the destination has another proposal; kept it")
            continue
        if copier.artifact(tag, digest):
            result.pending += 1
    for stage, digest in sorted(planned.stage_tags.items()):
        if copier.stage_tag(stage, digest):
            result.stage_tags.append(stage)
    for digest in [d for _, d in planned.versions] + list(planned.models):
        result.referrers += copier.referrers(digest)
    result.versions = sorted(n for n, _ in planned.versions)
    return result


def _subjects(repository: Repository, records: Sequence[str]) -> dict[str, str]:
    """Record artifact digest -> the model it names (the artifact's subject)."""

    def subject(digest: str) -> str | None:
        _, data = repository.fetch_manifest(digest)
        return manifest_references(data).subject

    with ThreadPoolExecutor(_WORKERS) as pool:
        found = dict(zip(records, pool.map(subject, records), strict=True))
    return {record: model for record, model in found.items() if model}


class _Copier:
    """Writes to the destination in order, skipping what is already there."""

    def __init__(
        self,
        source: Repository,
        destination: Repository,
        there: Inventory,
        result: MirrorResult,
        progress: Progress | None,
        concurrency: int | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.source = source
        self.destination = destination
        self.there = {tag: found.digest for tag, found in there.tags.items()}
        self.result = result
        self.progress = progress

    def _report(self, event: TransferEvent) -> None:
        if self.progress is not None:
            self.progress(event)

    def _missing(self, digest: str, tags: Sequence[str]) -> list[str]:
        return [t for t in tags if self.there.get(t) != digest]

    def _copy(self, digest: str, tags: Sequence[str]) -> None:
        """The manifest's blobs, then the manifest under ``tags`` (all of them, or none)."""
        descriptor, data = self.source.fetch_manifest(digest)
        manifest = Manifest.parse(data, f"manifest {self.source.name}@{digest}")
        blobs = [manifest.config, *manifest.layers]
        actions = copy_blobs(self.source, self.destination, blobs, self._report, self.concurrency)
        for blob, action in zip(blobs, actions, strict=True):
            self.result.blobs[action] = self.result.blobs.get(action, 0) + 1
            if action == "copied":
                self.result.bytes_copied += blob.size
        self.destination.push_manifest(data, descriptor.media_type, tags)
        self.there.update(dict.fromkeys(tags, digest))

    def version(self, number: int, digest: str, planned: MirrorPlan) -> None:
        aliases = [a for a, d in planned.aliases.items() if d == digest]
        tags = self._missing(digest, [anchor_tag(digest), version_tag(number), *aliases])
        if tags:
            self._copy(digest, tags)
            if version_tag(number) in tags:
                self.result.versions_copied += 1
        record = planned.version_records.get(digest)
        if record is not None and self._missing(record, [version_record_tag(digest)]):
            self._copy(record, [version_record_tag(digest)])

    def model(self, digest: str) -> None:
        tags = self._missing(digest, [anchor_tag(digest)])
        if not tags:
            return
        if self.source.resolve(digest) is None:
            self.result.skipped.append(f"{digest}: not in the source any more (its records stay)")
            return
        self._copy(digest, tags)
        self.result.models += 1

    def artifact(self, tag: str, digest: str) -> bool:
        if not self._missing(digest, [tag]):
            return False
        self._copy(digest, [tag])
        return True

    def referrers(self, subject: str) -> int:
        """Copy what refers to ``subject`` (ours and other tools') and list it there.

        Every entry of the source's list is kept (other tools' annotations too);
        a referrer that is not an image manifest, or whose subject is not this
        model, is skipped with a note.
        """
        try:
            listed = list_referrers(self.source, subject)
        except NotFound:
            return 0
        there = {d.digest for d in list_referrers(self.destination, subject)}
        entries = []
        for descriptor in listed:
            if descriptor.digest in there:
                continue
            if fetch_referrer(self.source, descriptor, subject) is None:
                self.result.skipped.append(
                    f"referrer {descriptor.digest} of {subject}: not an image manifest naming it"
                )
                continue
            self._copy(descriptor.digest, [])
            entries.append(descriptor.to_dict())
        if entries:
            add_to_tag_schema_or_api(self.destination, subject, entries)
        return len(entries)

    def stage_tag(self, stage: str, digest: str) -> bool:
        if not self._missing(digest, [stage]):
            return False
        descriptor, data = self.destination.fetch_manifest(digest)
        self.destination.push_manifest(data, descriptor.media_type, [stage])
        self.there[stage] = digest
        return True
