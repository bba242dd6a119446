"""What a user does with models, as plain functions: push, pull, inspect, copy, tag, list.

The CLI is a thin layer over these; a training script calls :func:`push` with the
lineage it knows and lets the rest be captured. Each function opens its own
:class:`~modelreg.store.Stores` (and closes it) unless given one.

Errors are :class:`~modelreg.errors.ModelregError` subclasses with a message and a
hint. Besides those each function names under ``Raises:``, any call that reaches a
registry may raise AuthError, RegistryUnavailable or RegistryError.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _push_parts as parts
from ._login import login, logout
from ._model_reading import model_info, read_lineage
from ._open import default_trust, names_stage, open_reference
from ._results import CopyResult, ModelInfo, PullResult, PushResult
from ._stage_calls import approve, history, promote, rollback, verify
from .copying import copy_manifest
from .errors import InvalidInput, NotFound
from .oci import EMPTY_JSON_BYTES, Descriptor, layer_name
from .parallel import concurrency_from
from .reference import Reference, as_reference
from .safetensors import describe_model
from .store import Stores, opened
from .transfer import (
    Progress,
    TransferEvent,
    fetch_model_manifest,
    known_image,
    pull_model,
    push_model,
)
from .versions import (
    Published,
    VersionInfo,
    check_aliases,
    find_version,
    list_versions,
    publish,
    repair_versions,
    stage_names,
    tag_alias,
    version_of,
)
from .versions import unversioned as unversioned_digests

if TYPE_CHECKING:  # imported by the calls that use them: a push or pull loads no crypto
    from . import content_signatures, retention
    from .lineage import Lineage
    from .mirror import MirrorResult
    from .pending import PendingProposal
    from .policy import TrustPolicy
    from .signing import SigningKey


def push(
    path: str | Path,
    repository: str | Reference,
    *,
    lineage: Lineage | None = None,
    packages: bytes | None = None,
    capture: bool = True,
    code_dir: str | Path | None = ".",
    data: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
    description: str | None = None,
    aliases: Sequence[str] = (),
    modelpack: bool = False,
    stores: Stores | None = None,
    progress: Progress | None = None,
    sign: SigningKey | None = None,
    signature: str | Path | None = None,
    concurrency: int | None = None,
) -> PushResult:
    """Push a model file or directory with its lineage; returns its version and digest.

    With ``modelpack`` the version also gets its CNCF ModelPack form: a second
    manifest over the same layer blobs (see :mod:`modelreg.formats.publish`).

    With ``capture`` (the default) the code (git at ``code_dir``) and the
    environment are recorded automatically; ``data`` (paths are digested, URIs
    kept), ``params``, ``metrics``, ``annotations`` and ``description`` are
    recorded as given. ``lineage=`` replaces capture with a complete Lineage (with
    ``packages``, its freeze list); the keyword fields above, when given, still
    override that lineage's fields one by one. ``concurrency`` layers are uploaded at
    once (default 4, or ``MODELREG_CONCURRENCY``). Bad input (lineage, annotations too
    large for a manifest, aliases) is refused before anything is written. Pushing
    the same files with the same lineage again reports the existing version.

    ``sign`` attaches an OpenSSF model-signing content signature of the files made
    with that key; ``signature`` attaches one made by ``model_signing sign key``,
    refused (VerificationError) unless it covers exactly the files pushed.

    Raises: InvalidInput (a digest reference, bad lineage, annotations or aliases),
    NotFound (no such path), ConflictError (an alias held by another version),
    VerificationError (``signature`` does not cover the files), IntegrityError.
    """
    with opened(stores) as stores:
        concurrency = concurrency_from(concurrency)
        target = as_reference(repository)
        if target.digest:
            raise InvalidInput(
                f"cannot push to a digest reference {target}",
                "push to a repository name; the digest is computed from the content",
            )
        repo = stores.repository(target)
        aliases = tuple(aliases) + ((target.tag,) if target.tag else ())
        check_aliases(repo, aliases)
        cache = parts.digest_cache(stores)
        content_bundle = parts.content_bundle(path, sign, signature, cache)
        lineage, packages = parts.push_lineage(
            lineage,
            packages,
            capture=capture,
            code_dir=code_dir,
            data=data,
            params=params,
            metrics=metrics,
            annotations=annotations,
            description=description,
            file_sha256=lambda p: cache.file_sha256(p),
        )
        manifest_annotations, meta = parts.lineage_layout(lineage, packages)
        manifest_annotations.update(describe_model(Path(path)))  # safetensors headers, not weights
        # every digest known from the cache: the manifest is known before anything is sent,
        # and a push of a model that already has its version is two reads
        known = known_image(
            Path(path), annotations=manifest_annotations, meta_layers=meta, cache=cache
        )
        found = find_version(repo, known.descriptor.digest) if known else None
        if known and found and found.created and not aliases:
            report = progress or (lambda _: None)
            for layer in known.manifest.layers:
                title = layer_name(layer)
                report(TransferEvent("exists", title, layer.digest, layer.size, layer.size))
            parts.attach_content(repo, known.descriptor, content_bundle)
            return PushResult(
                repository=repo.name,
                digest=found.digest,
                version=found.version,
                created=found.created,
                existed=True,
                size=sum(layer.size for layer in known.manifest.layers),
                uploaded=0,
                modelpack=parts.modelpack_form(repo, found, lineage, Path(path))
                if modelpack
                else None,
            )
        pushed = push_model(
            repo,
            Path(path),
            annotations=manifest_annotations,
            meta_layers=meta,
            cache=cache,
            progress=progress,
            push_manifest=False,  # publish pushes it, under its anchor tag
            extra_blobs=[EMPTY_JSON_BYTES],  # the version record's, mounted like the rest
            concurrency=concurrency,
        )
        looked_up = known is not None and known.descriptor.digest == pushed.descriptor.digest
        published = publish(
            repo,
            pushed.manifest_bytes,
            pushed.descriptor.media_type,
            aliases=aliases,
            unversioned=looked_up and found is None,
            record_blob_present=True,
        )
        parts.attach_content(repo, pushed.descriptor, content_bundle)
        return PushResult(
            repository=repo.name,
            digest=published.digest,
            version=published.version,
            created=published.created,
            existed=published.existed,
            size=sum(layer.size for layer in pushed.manifest.layers),
            uploaded=pushed.uploaded_bytes,
            aliases=aliases,
            modelpack=parts.modelpack_form(repo, published, lineage, Path(path))
            if modelpack
            else None,
        )


def add_modelpack(reference: str | Reference, *, stores: Stores | None = None) -> dict[str, str]:
    """Give an already pushed version its ModelPack form (the same blobs); idempotent.

    Raises: NotFound (no such model, or it has no version), InvalidInput, IntegrityError.
    """
    with opened(stores) as stores:
        repo, identifier = open_reference(stores, reference)
        descriptor, _, manifest = fetch_model_manifest(repo, identifier)
        found = find_version(repo, descriptor.digest)
        if found is None or not found.created:
            raise NotFound(
                f"{repo.name}@{descriptor.digest} has no version",
                "push the model with modelreg push first (or run 'modelreg versions --repair')",
            )
        return parts.modelpack_form(repo, found, read_lineage(repo, manifest), None)


def pull(
    reference: str | Reference,
    destination: str | Path,
    *,
    force: bool = False,
    trust: TrustPolicy | None = None,
    stores: Stores | None = None,
    progress: Progress | None = None,
    signature: str | Path | None = None,
    concurrency: int | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> PullResult:
    """Write a model's files into ``destination``, every byte verified, all or nothing.

    A stage reference (``fraud:production``) is verified against ``trust`` first.
    ``signature`` names a file to write the model's content signature to, one that
    ``model_signing verify key DESTINATION --signature FILE`` accepts; with trusted
    keys (``trust`` or the configured default) only one by a trusted key.
    ``concurrency`` layers are downloaded at once (default 4, or ``MODELREG_CONCURRENCY``).
    ``include``/``exclude`` globs select files: only layers holding a wanted file are
    downloaded, and only wanted files are written. A pull that was killed or cut off
    resumes: the next one asks the registry only for the bytes it did not get.

    Raises: NotFound, InvalidInput (``destination`` not empty without ``force``, a
    selection with ``signature``),
    IntegrityError (a byte that does not match its digest), VerificationError and
    PolicyError (a stage that does not verify).
    """
    from .partial import PARTIAL_DIR, PartialArea
    from .selection import Selection

    with opened(stores) as stores:
        concurrency = concurrency_from(concurrency)
        selection = Selection.of(include, exclude)
        if signature is not None and selection is not None:
            raise InvalidInput(
                "a content signature covers every file; it cannot be written for a selection",
                "pull without --include/--exclude to write --signature",
            )
        repo, identifier = open_reference(stores, reference, trust)
        pulled = pull_model(
            repo,
            identifier,
            Path(destination),
            force=force,
            progress=progress,
            concurrency=concurrency,
            selection=selection,
            partial=PartialArea(stores.home / PARTIAL_DIR),
        )
        if signature is not None:
            from .content_signatures import write_signature

            keys = trust or default_trust(stores)
            trusted = None
            if keys is not None:
                ref = as_reference(reference)
                stage = ref.tag if names_stage(ref, policy=keys, stores=stores) else None
                trusted = (
                    keys.allowed_keys(stage) if stage else {k.key_id: k for k in keys.keys.values()}
                )
            write_signature(repo, pulled.descriptor.digest, pulled.path, Path(signature), trusted)
        digest = pulled.descriptor.digest
        version = version_of(repo, digest)
        return PullResult(repo.name, digest, pulled.path, pulled.files, version)


def inspect(
    reference: str | Reference,
    *,
    trust: TrustPolicy | None = None,
    stores: Stores | None = None,
    with_version: bool = True,
) -> ModelInfo:
    """The manifest, version, files and lineage of a model, without downloading its files.

    Raises: NotFound, InvalidInput, IntegrityError; VerificationError and PolicyError
    (a stage that does not verify).
    """
    with opened(stores) as stores:
        repo, identifier = open_reference(stores, reference, trust)
        descriptor, _, manifest = fetch_model_manifest(repo, identifier)
        found = find_version(repo, descriptor.digest) if with_version else None
        return model_info(repo, descriptor, manifest, found.version if found else None)


def inspect_any(
    reference: str | Reference,
    *,
    trust: TrustPolicy | None = None,
    stores: Stores | None = None,
) -> tuple[str, Descriptor, dict[str, Any]]:
    """Any manifest or index as stored (a foreign image, a chart, an index): name,
    descriptor and JSON body, verified against its digest.

    Raises: NotFound, InvalidInput, IntegrityError (not JSON, or not its digest);
    VerificationError and PolicyError (a stage that does not verify).
    """
    from ._json import load_json_object
    from .oci import MAX_MANIFEST_BYTES

    with opened(stores) as stores:
        repo, identifier = open_reference(stores, reference, trust)
        descriptor, data = repo.fetch_manifest(identifier)
        return repo.name, descriptor, load_json_object(data, "manifest", limit=MAX_MANIFEST_BYTES)


def copy(
    source: str | Reference,
    destination: str | Reference,
    *,
    stores: Stores | None = None,
    progress: Progress | None = None,
    concurrency: int | None = None,
) -> CopyResult:
    """Copy one model (and what it references) between any two stores; digest preserved.

    Returns where it went: the destination repository, the digest and its version there.

    Raises: InvalidInput (a digest destination, a bad alias), NotFound,
    ConflictError (the alias names another version), IntegrityError;
    VerificationError and PolicyError (a stage source that does not verify).
    """
    with opened(stores) as stores:
        concurrency = concurrency_from(concurrency)
        src = as_reference(source)
        dst = as_reference(destination)
        src_repo, identifier = open_reference(stores, src)
        dst_repo = stores.repository(dst)
        if dst.digest:
            raise InvalidInput(f"cannot copy to a digest reference {dst}", "name a repository")
        tags = (dst.tag,) if dst.tag else ()
        check_aliases(dst_repo, tags)
        descriptor = copy_manifest(src_repo, identifier, dst_repo, (), progress, concurrency)
        _, data = dst_repo.fetch_manifest(descriptor.digest)
        published = publish(dst_repo, data, descriptor.media_type, aliases=tags)
        from .content_signatures import copy_signatures

        copy_signatures(src_repo, dst_repo, descriptor)
        from .formats.modelpack import modelpack_tag

        companion = modelpack_tag(descriptor.digest)  # the version's ModelPack form comes along
        if src_repo.resolve(companion) is not None:
            copy_manifest(src_repo, companion, dst_repo, (companion,), progress)
        return CopyResult(dst_repo.name, descriptor.digest, published.version)


def mirror(
    source: str | Reference,
    destination: str | Reference,
    *,
    stages: Sequence[str] | None = None,
    stores: Stores | None = None,
    progress: Progress | None = None,
    concurrency: int | None = None,
) -> MirrorResult:
    """Copy a whole repository (``stages=None``: every version) or the given stages' chains.

    Versions keep their numbers, aliases, version records and digests; promotion
    records and stage tags come along so the destination verifies with the same
    trust policy. Safe to run again after an interruption: it finishes.

    Raises: InvalidInput, NotFound, IntegrityError, VerificationError, PolicyError.
    """
    from . import lifecycle  # here: a push need not load the mirror and gc code

    return lifecycle.mirror(
        source,
        destination,
        stage=stages,
        stores=stores,
        progress=progress,
        concurrency=concurrency,
    )


def gc(
    repository: str | Reference,
    rules: retention.RetentionRules,
    *,
    dry_run: bool = False,
    policy: TrustPolicy | None = None,
    stores: Stores | None = None,
    now: datetime | None = None,
) -> retention.GcReport:
    """Delete versions the rules let go, never one a stage needs; report versions and bytes.

    Stage chains are verified against ``policy`` (or the configured default) when
    there is one; without any, they are read unverified.

    Raises: InvalidInput, NotFound, VerificationError and PolicyError (a stage chain
    that does not verify: nothing is deleted).
    """
    from . import lifecycle

    return lifecycle.gc(
        repository, rules=rules, dry_run=dry_run, policy=policy, stores=stores, now=now
    )


def tag(reference: str | Reference, alias: str, *, stores: Stores | None = None) -> str:
    """Add the alias tag ``alias`` to the model ``reference`` names; returns its digest.

    Raises: InvalidInput (a reserved or malformed alias), NotFound, ConflictError.
    """
    with opened(stores) as stores:
        repo, identifier = open_reference(stores, reference)
        return tag_alias(repo, identifier, alias)


def versions(
    repository: str | Reference,
    *,
    where: Sequence[str] = (),
    stores: Stores | None = None,
) -> list[VersionInfo]:
    """Every version of a repository, optionally filtered by lineage conditions.

    Raises: InvalidInput (a malformed ``where``), NotFound, IntegrityError.
    """
    with opened(stores) as stores:
        ref = as_reference(repository)
        if not where:
            return list_versions(stores.repository(ref), reads=stores.reads)
        from . import lineage as lineage_mod  # only filters need it

        conditions = [lineage_mod.parse_where(expr) for expr in where]
        repo = stores.repository(ref)

        def matches(info: VersionInfo) -> bool:
            facts = lineage_mod.lineage_as_dict(lineage_mod.from_annotations(info.annotations))
            return all(condition.matches(facts) for condition in conditions)

        return list_versions(repo, where=matches, reads=stores.reads)


def diff(
    first: str | Reference,
    second: str | Reference,
    *,
    trust: TrustPolicy | None = None,
    stores: Stores | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """What changed from ``first`` to ``second``, grouped by lineage part and files.

    Raises: NotFound, InvalidInput, IntegrityError; VerificationError and PolicyError
    (a stage that does not verify).
    """
    from ._model_diff import model_changes

    with opened(stores) as stores:
        sides = []
        for reference in (first, second):
            repo, identifier = open_reference(stores, reference, trust)
            _, _, manifest = fetch_model_manifest(repo, identifier)
            sides.append((repo, manifest, read_lineage(repo, manifest)))
        return model_changes(sides[0], sides[1])


def unversioned(
    repository: str | Reference, listed: Sequence[VersionInfo], *, stores: Stores | None = None
) -> list[str]:
    """Pushed digests that none of ``listed`` (all versions) names: in flight, or a lost claim.

    Raises: NotFound, IntegrityError.
    """
    with opened(stores) as stores:
        return unversioned_digests(stores.repository(as_reference(repository)), listed)


def repair(repository: str | Reference, *, stores: Stores | None = None) -> list[Published]:
    """Give every pushed digest that lost a version race the next free number.

    Raises: NotFound, IntegrityError, ConflictError.
    """
    with opened(stores) as stores:
        return repair_versions(stores.repository(as_reference(repository)))


# ----- stages (promote, approve, rollback, history, verify: see _stage_calls) --------------


def load_key(path: str | Path, passphrase: bytes | None = None) -> SigningKey:
    """A signing key; the passphrase defaults to $MODELREG_KEY_PASSPHRASE.

    Raises: InvalidInput (no such key, a wrong passphrase, not a signing key).
    """
    from .signing import load_signing_key

    if passphrase is None:
        passphrase = passphrase_from_env()
    return load_signing_key(Path(path), passphrase)


def passphrase_from_env() -> bytes | None:
    """$MODELREG_KEY_PASSPHRASE as bytes; None when it is unset or empty."""
    value = os.environ.get("MODELREG_KEY_PASSPHRASE")
    return value.encode() if value else None


def verify_content(
    reference: str | Reference,
    *,
    policy: TrustPolicy | None = None,
    stores: Stores | None = None,
) -> content_signatures.ContentVerification:
    """Verify a version's content signatures against the trusted keys; who signed.

    VerificationError when no signature by a trusted key covers exactly its files.

    Raises: InvalidInput (no trusted keys), NotFound, VerificationError (no signature
    by a trusted key covers exactly its files), PolicyError.
    """
    from . import content_signatures

    with opened(stores) as stores:
        ref = as_reference(reference)
        trust = policy or default_trust(stores)
        if trust is None:
            raise InvalidInput(
                f"verifying the content of {ref} needs trusted keys",
                "pass --trust KEY.pub or --policy FILE (or set MODELREG_POLICY / MODELREG_TRUST)",
            )
        repo, identifier = open_reference(stores, ref, trust)
        digest = repo.resolve(identifier)
        if digest is None:
            raise NotFound(f"{ref} does not exist", "check the name with `modelreg versions`")
        keys = {key.key_id: key for key in trust.keys.values()}
        found = content_signatures.verify_model(repo, digest.digest, keys, str(ref))
        signers = tuple(dict.fromkeys(trust.name_of(item.key.key_id) for item in found))
        return content_signatures.ContentVerification(repo.name, digest.digest, signers)


def pending(
    repository: str | Reference,
    *,
    stage: str | None = None,
    policy: TrustPolicy | None = None,
    stores: Stores | None = None,
) -> list[PendingProposal]:
    """Live pending proposals (waiting for 'approve'), with their verified signers."""
    from .pending import pending_proposals

    with opened(stores) as stores:
        repo = stores.repository(as_reference(repository))
        return pending_proposals(repo, stage, policy or default_trust(stores))


__all__ = [
    "CopyResult",
    "ModelInfo",
    "PullResult",
    "PushResult",
    "add_modelpack",
    "approve",
    "copy",
    "diff",
    "gc",
    "history",
    "inspect",
    "login",
    "logout",
    "mirror",
    "names_stage",
    "pending",
    "promote",
    "pull",
    "push",
    "repair",
    "rollback",
    "stage_names",
    "tag",
    "verify",
    "versions",
]
