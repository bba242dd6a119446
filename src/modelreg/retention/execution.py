"""Executing a gc plan: delete by digest, spare what a stage needed since, free local blobs."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from ..errors import IntegrityError, ModelregError, NotFound
from ..inventory import Inventory, read_tags
from ..oci import manifest_references
from ..promotion import read_record
from ..store.base import LocalMaintenance, Repository
from .planning import Deletion, Plan, freed_blobs
from .snapshot import Snapshot


@dataclass(frozen=True)
class Executed:
    deleted: tuple[Deletion, ...]
    spared: tuple[str, ...]  # planned models a stage needed by the time gc got to them
    freed: int  # bytes only the deleted manifests referenced (a registry frees them at its gc)
    reclaimed: int  # bytes freed on disk now (local store); 0 on a registry


def execute(repository: Repository, planned: Plan, snapshot: Snapshot) -> Executed:
    """Delete what ``planned`` says, sparing models a stage has needed since the snapshot."""
    spared = _needed_since(repository, snapshot, {d.model for d in planned.deletions})
    deleted: list[Deletion] = []
    for deletion in planned.deletions:
        if deletion.model in spared:
            continue
        try:
            repository.delete_manifest(deletion.digest)
        except NotFound:
            pass  # already gone: an earlier, interrupted gc
        except ModelregError as exc:
            raise type(exc)(
                f"gc stopped after {len(deleted)} of {len(planned.deletions)} deletions: "
                f"{exc.message}",
                exc.hint or "run gc again: it finishes what is left",
            ) from None
        deleted.append(deletion)
    _unlist_deleted_records(repository, deleted)
    freed = freed_blobs(snapshot, deleted)
    reclaimed = 0
    if isinstance(repository, LocalMaintenance):
        done = {d.digest for d in deleted}
        reclaimed = sum(
            size
            for digest, size in freed.items()
            if digest in done and not repository.has_blob(digest)
        )
        reclaimed += repository.sweep_blobs(
            [d for d in freed if d not in done] + list(planned.orphan_blobs)
        )
    total = sum(freed.values()) + sum(planned.orphan_blobs.values())
    return Executed(tuple(deleted), tuple(sorted(spared)), total, reclaimed)


def _unlist_deleted_records(repository: Repository, deleted: list[Deletion]) -> None:
    """Take the records gc deleted out of their model's referrers index (the spec asks it);
    every other entry (another tool's signature, SBOM…) stays."""
    from ..store.referrers import remove_from_tag_schema

    by_model: dict[str, set[str]] = {}
    for deletion in deleted:
        if deletion.kind not in ("model", "claim"):
            by_model.setdefault(deletion.model, set()).add(deletion.digest)
    gone = {d.model for d in deleted if d.kind == "referrers-index"}
    for model, digests in sorted(by_model.items()):
        if model in gone:
            continue
        with contextlib.suppress(ModelregError):  # a listing left stale is harmless: fetched
            remove_from_tag_schema(repository, model, digests)  # entries are verified


def _needed_since(repository: Repository, snapshot: Snapshot, planned: set[str]) -> set[str]:
    """Planned models that a stage tag, record or proposal written since the snapshot names."""
    if not planned:
        return set()
    now = Inventory.of(read_tags(repository))
    before = snapshot.inventory
    needed = {digest for digest in now.stages.values() if digest in planned}
    fresh = [
        digest
        for key, digest in [*now.records.items(), *now.pending.items()]
        if digest not in {*before.records.values(), *before.pending.values()}
    ]
    for digest in fresh:
        try:
            record = read_record(repository, digest).record
            needed.update({record.digest, record.replaces or ""} & planned)
        except (IntegrityError, NotFound):
            _, data = repository.fetch_manifest(digest)
            subject = manifest_references(data).subject
            needed.update({subject or ""} & planned)
    return needed
