"""What a user does with models, as plain functions: push, pull, inspect, copy, tag, list.

The CLI is a thin layer over these; a training script calls :func:`push` with the
lineage it knows and lets the rest be captured.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._open import default_trust, is_stage, open_reference
from .copies import layer_of_content, model_annotations, read_layer
from .digest import hex_part
from .errors import AuthError, IntegrityError, InvalidInput, NotFound, RegistryError
from .hashcache import DigestCache
from .oci import EMPTY_JSON_BYTES, Descriptor, Manifest, layer_title
from .packing import LayerPlan, read_single_file
from .parallel import concurrency_from
from .reference import Reference, parse_reference, parse_registry_host
from .safetensors import describe_model
from .store import RegistryOptions, Stores, credentials
from .store.base import Repository
from .store.transport import Transport
from .transfer import (
    ANNOTATION_FILES,
    Progress,
    TransferEvent,
    copy_manifest,
    fetch_model_manifest,
    known_image,
    meta_layer,
    model_layers,
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
    from . import content_signatures, retention, stages
    from .lineage import Lineage
    from .mirror import MirrorResult
    from .pending import PendingProposal
    from .policy import TrustPolicy
    from .signing import SigningKey

MAX_LINEAGE_BLOB = 64 * 1024 * 1024


def _reference(value: str | Reference) -> Reference:
    return value if isinstance(value, Reference) else parse_reference(value)


def digest_cache(stores: Stores) -> DigestCache:
    return DigestCache(stores.home / "cache" / "digests.sqlite")


@dataclass(frozen=True)
class PushResult:
    repository: str
    digest: str
    version: int
    created: str
    existed: bool
    size: int
    uploaded: int
    aliases: tuple[str, ...] = ()
    modelpack: Mapping[str, str] | None = None
    """The ModelPack form's digest, tag and reference, when one was asked for."""

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"

    def to_dict(self) -> dict[str, Any]:
        out = {
            "repository": self.repository,
            "digest": self.digest,
            "reference": self.reference,
            "version": self.version,
            "tag": f"v{self.version}",
            "created": self.created,
            "existed": self.existed,
            "size": self.size,
            "uploaded": self.uploaded,
            "aliases": list(self.aliases),
        }
        if self.modelpack is not None:
            out["modelpack"] = dict(self.modelpack)
        return out


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
    """
    from . import lineage as lineage_mod

    stores = stores or Stores()
    concurrency = concurrency_from(concurrency)
    target = _reference(repository)
    if target.digest:
        raise InvalidInput(
            f"cannot push to a digest reference {target}",
            "push to a repository name; the digest is computed from the content",
        )
    repo = stores.repository(target)
    aliases = tuple(aliases) + ((target.tag,) if target.tag else ())
    check_aliases(repo, aliases)
    cache = digest_cache(stores)
    content_bundle = _content_bundle(path, sign, signature, cache)
    given, captured = lineage_mod.capture_lineage(
        code_dir=Path(code_dir) if (capture and code_dir is not None and lineage is None) else None,
        data=data,
        params=params,
        metrics=metrics,
        annotations=annotations,
        description=description,
        capture_env=capture and lineage is None,
        file_sha256=lambda p: cache.file_sha256(p),
    )
    if lineage is None:
        lineage = given
        packages = packages if packages is not None else captured
    else:
        # a full lineage given: the explicit keyword fields still override its fields
        explicit = {
            "data": bool(data),
            "params": params is not None,
            "metrics": metrics is not None,
            "annotations": annotations is not None,
            "description": description is not None,
        }
        lineage = lineage_mod.with_fields(lineage, given, [k for k, on in explicit.items() if on])
    meta: list[LayerPlan] = []

    def store_blob(name: str, content: bytes) -> str:

        plan, digest = meta_layer(name, content)
        meta.append(plan)
        return digest

    manifest_annotations = lineage_mod.to_annotations(lineage, packages, store_blob)
    manifest_annotations.update(describe_model(Path(path)))  # safetensors headers, not weights
    # every digest known from the cache: the manifest is known before anything is sent,
    # and a push of a model that already has its version is two reads
    known = known_image(Path(path), annotations=manifest_annotations, meta_layers=meta, cache=cache)
    found = find_version(repo, known.descriptor.digest) if known else None
    if known and found and found.created and not aliases:
        report = progress or (lambda _: None)
        for layer in known.manifest.layers:
            title = layer_title(layer) or layer.digest
            report(TransferEvent("exists", title, layer.digest, layer.size, layer.size))
        _attach_content(repo, known.descriptor, content_bundle)
        return PushResult(
            repository=repo.name,
            digest=found.digest,
            version=found.version,
            created=found.created,
            existed=True,
            size=sum(layer.size for layer in known.manifest.layers),
            uploaded=0,
            modelpack=_modelpack_form(repo, found, lineage, Path(path)) if modelpack else None,
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
    _attach_content(repo, pushed.descriptor, content_bundle)
    return PushResult(
        repository=repo.name,
        digest=published.digest,
        version=published.version,
        created=published.created,
        existed=published.existed,
        size=sum(layer.size for layer in pushed.manifest.layers),
        uploaded=pushed.uploaded_bytes,
        aliases=aliases,
        modelpack=_modelpack_form(repo, published, lineage, Path(path)) if modelpack else None,
    )


def _content_bundle(
    path: str | Path, sign: SigningKey | None, signature: str | Path | None, cache: DigestCache
) -> bytes | None:
    if sign is None and signature is None:
        return None
    from .content_signatures import bundle_for_push

    return bundle_for_push(
        Path(path),
        sign,
        Path(signature) if signature else None,
        lambda file: hex_part(cache.file_sha256(file)),
    )


def _attach_content(repo: Repository, model: Descriptor, bundle: bytes | None) -> None:
    if bundle is not None:
        from .content_signatures import attach

        attach(repo, model, bundle)


def _modelpack_form(
    repository: Repository, published: Published, lineage: Lineage, path: Path | None
) -> dict[str, str]:
    """Publish (or find) the version's ModelPack form; ``path``: the pushed files, if here."""
    from .formats.publish import publish_modelpack

    form = publish_modelpack(
        repository,
        published.digest,
        version=published.version,
        created=published.created,
        lineage=lineage,
        source=None if path is None else path if path.is_dir() else path.parent,
    )
    return form.to_dict()


def add_modelpack(reference: str | Reference, *, stores: Stores | None = None) -> dict[str, str]:
    """Give an already pushed version its ModelPack form (the same blobs); idempotent."""
    stores = stores or Stores()
    repo, identifier = open_reference(stores, reference)
    descriptor, _, manifest = fetch_model_manifest(repo, identifier)
    found = find_version(repo, descriptor.digest)
    if found is None or not found.created:
        raise NotFound(
            f"{repo.name}@{descriptor.digest} has no version",
            "push the model with modelreg push first (or run 'modelreg versions --repair')",
        )
    return _modelpack_form(repo, found, read_lineage(repo, manifest), None)


@dataclass(frozen=True)
class PullResult:
    repository: str
    digest: str
    path: Path
    files: tuple[str, ...]
    version: int | None = None

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "digest": self.digest,
            "reference": self.reference,
            "version": self.version,
            "path": str(self.path),
            "files": list(self.files),
        }


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
    """
    from .partial import PARTIAL_DIR, PartialArea
    from .selection import Selection

    stores = stores or Stores()
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
            ref = _reference(reference)
            stage = ref.tag if names_stage(ref, stores=stores) else None
            trusted = (
                keys.allowed_keys(stage) if stage else {k.key_id: k for k in keys.keys.values()}
            )
        write_signature(repo, pulled.descriptor.digest, pulled.path, Path(signature), trusted)
    digest = pulled.descriptor.digest
    return PullResult(repo.name, digest, pulled.path, pulled.files, version_of(repo, digest))


@dataclass(frozen=True)
class ModelInfo:
    repository: str
    digest: str
    media_type: str
    size: int
    manifest: Manifest
    version: int | None = None
    tags: tuple[str, ...] = ()
    lineage: Lineage | None = None
    files: Mapping[str, str] = field(default_factory=dict)
    packages: Mapping[str, str] = field(default_factory=dict)
    """The environment's freeze list (name → version), read from its blob."""

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"

    def lineage_dict(self) -> dict[str, Any] | None:
        """The lineage as JSON data, with the freeze list under environment.packages."""
        from . import lineage as lineage_mod

        if self.lineage is None:
            return None
        facts = lineage_mod.lineage_as_dict(self.lineage)
        if facts["environment"] is not None and self.packages:
            facts["environment"]["packages"] = dict(self.packages)
        return facts

    def to_dict(self) -> dict[str, Any]:

        return {
            "repository": self.repository,
            "digest": self.digest,
            "reference": self.reference,
            "version": self.version,
            "mediaType": self.media_type,
            "artifactType": self.manifest.artifact_type,
            "size": self.size,
            "files": dict(self.files),
            "layers": [
                {
                    "digest": layer.digest,
                    "size": layer.size,
                    "mediaType": layer.media_type,
                    "title": layer_title(layer),
                }
                for layer in self.manifest.layers
            ],
            "annotations": dict(self.manifest.annotations),
            "lineage": self.lineage_dict(),
        }


def inspect(
    reference: str | Reference,
    *,
    trust: TrustPolicy | None = None,
    stores: Stores | None = None,
    with_version: bool = True,
) -> ModelInfo:
    """The manifest, version, files and lineage of a model, without downloading its files."""
    stores = stores or Stores()
    repo, identifier = open_reference(stores, reference, trust)
    descriptor, _, manifest = fetch_model_manifest(repo, identifier)
    found = find_version(repo, descriptor.digest) if with_version else None
    from . import formats

    if formats.form_of(manifest) != formats.IMAGE:
        foreign = formats.read_lineage(repo, manifest)
        assert foreign is not None
        return ModelInfo(
            repository=repo.name,
            digest=descriptor.digest,
            media_type=descriptor.media_type,
            size=sum(layer.size for layer in manifest.layers),
            manifest=manifest,
            version=found.version if found else None,
            lineage=foreign,
            files=formats.files_of(manifest),
        )
    lineage = read_lineage(repo, manifest)
    return ModelInfo(
        repository=repo.name,
        digest=descriptor.digest,
        media_type=descriptor.media_type,
        size=sum(layer.size for layer in manifest.layers),
        manifest=manifest,
        version=found.version if found else None,
        lineage=lineage,
        files=model_files(manifest),
        packages=_packages(repo, manifest, lineage),
    )


def inspect_any(
    reference: str | Reference,
    *,
    trust: TrustPolicy | None = None,
    stores: Stores | None = None,
) -> tuple[str, Descriptor, dict[str, Any]]:
    """Any manifest or index as stored (a foreign image, a chart, an index): name,
    descriptor and JSON body, verified against its digest."""
    from ._json import load_json_object
    from .oci import MAX_MANIFEST_BYTES

    stores = stores or Stores()
    repo, identifier = open_reference(stores, reference, trust)
    descriptor, data = repo.fetch_manifest(identifier)
    return repo.name, descriptor, load_json_object(data, "manifest", limit=MAX_MANIFEST_BYTES)


def read_lineage(repository: Repository, manifest: Manifest) -> Lineage:
    """The lineage in a manifest; blobs it names (large params) are fetched on demand."""
    from . import lineage as lineage_mod

    def load_blob(digest: str) -> bytes:
        return _meta_blob_content(repository, manifest, digest)

    # a copy another tool made may have dropped the annotations: the config's labels
    # hold the same lineage (see copies.py)
    return lineage_mod.from_annotations(model_annotations(repository, manifest), load_blob)


def _meta_blob_content(repository: Repository, manifest: Manifest, digest: str) -> bytes:
    layer, diff_id = layer_of_content(repository, manifest, digest)
    content = read_layer(repository, layer, diff_id, MAX_LINEAGE_BLOB)
    return read_single_file(io.BytesIO(content), limit=MAX_LINEAGE_BLOB)


def model_files(manifest: Manifest) -> dict[str, str]:
    """File name → content identity: file sha256 for bundled files, layer digest otherwise."""
    files: dict[str, str] = {}
    for layer in model_layers(manifest):
        listed = layer.annotations.get(ANNOTATION_FILES)
        if listed:
            try:
                bundled = json.loads(listed)
            except ValueError:
                bundled = None
            if not isinstance(bundled, dict) or not all(
                isinstance(v, str) for v in bundled.values()
            ):
                raise IntegrityError(f"layer {layer.digest}: {ANNOTATION_FILES} is malformed")
            files.update(bundled)
            continue
        title = layer_title(layer)
        if title:
            files[title] = layer.digest
    return dict(sorted(files.items()))


def copy(
    source: str | Reference,
    destination: str | Reference,
    *,
    stores: Stores | None = None,
    progress: Progress | None = None,
    concurrency: int | None = None,
) -> tuple[str, str]:
    """Copy one model (and what it references) between any two stores; digest preserved.

    Returns the destination repository name and the digest.
    """
    stores = stores or Stores()
    concurrency = concurrency_from(concurrency)
    src = _reference(source)
    dst = _reference(destination)
    src_repo, identifier = open_reference(stores, src)
    dst_repo = stores.repository(dst)
    if dst.digest:
        raise InvalidInput(f"cannot copy to a digest reference {dst}", "name a repository")
    tags = (dst.tag,) if dst.tag else ()
    check_aliases(dst_repo, tags)
    descriptor = copy_manifest(src_repo, identifier, dst_repo, (), progress, concurrency)
    _, data = dst_repo.fetch_manifest(descriptor.digest)
    publish(dst_repo, data, descriptor.media_type, aliases=tags)
    from .content_signatures import copy_signatures

    copy_signatures(src_repo, dst_repo, descriptor)
    from .formats.modelpack import modelpack_tag

    companion = modelpack_tag(descriptor.digest)  # the version's ModelPack form comes along
    if src_repo.resolve(companion) is not None:
        copy_manifest(src_repo, companion, dst_repo, (companion,), progress)
    return dst_repo.name, descriptor.digest


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
    """
    from . import lifecycle

    return lifecycle.gc(
        repository, rules=rules, dry_run=dry_run, policy=policy, stores=stores, now=now
    )


def tag(reference: str | Reference, alias: str, *, stores: Stores | None = None) -> str:
    stores = stores or Stores()
    repo, identifier = open_reference(stores, reference)
    return tag_alias(repo, identifier, alias)


def versions(
    repository: str | Reference,
    *,
    where: Sequence[str] = (),
    stores: Stores | None = None,
) -> list[VersionInfo]:
    """Every version of a repository, optionally filtered by lineage conditions."""
    stores = stores or Stores()
    ref = _reference(repository)
    if not where:
        return list_versions(stores.repository(ref))
    from . import lineage as lineage_mod  # only filters need it

    conditions = [lineage_mod.parse_where(expr) for expr in where]
    repo = stores.repository(ref)

    def matches(info: VersionInfo) -> bool:
        facts = lineage_mod.lineage_as_dict(lineage_mod.from_annotations(info.annotations))
        return all(condition.matches(facts) for condition in conditions)

    return list_versions(repo, where=matches)


def diff(
    first: str | Reference,
    second: str | Reference,
    *,
    trust: TrustPolicy | None = None,
    stores: Stores | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """What changed from ``first`` to ``second``, grouped by lineage part and files."""
    from . import lineage as lineage_mod

    stores = stores or Stores()
    sides = []
    for reference in (first, second):
        repo, identifier = open_reference(stores, reference, trust)
        _, _, manifest = fetch_model_manifest(repo, identifier)
        sides.append((repo, manifest, read_lineage(repo, manifest)))
    (repo_a, manifest_a, lineage_a), (repo_b, manifest_b, lineage_b) = sides
    grouped = lineage_mod.diff_lineage(lineage_a, lineage_b)
    out: dict[str, list[dict[str, Any]]] = {
        group: [_change(c.path, c.before, c.after) for c in changes]
        for group, changes in grouped.items()
    }
    packages = [
        _packages(repo, manifest, lin)
        for repo, manifest, lin in (
            (repo_a, manifest_a, lineage_a),
            (repo_b, manifest_b, lineage_b),
        )
    ]
    out["environment"].extend(
        _change(f"packages.{name}", packages[0].get(name), packages[1].get(name))
        for name in sorted(set(packages[0]) | set(packages[1]))
        if packages[0].get(name) != packages[1].get(name)
    )
    files_a, files_b = model_files(manifest_a), model_files(manifest_b)
    changed = [n for n in sorted(set(files_a) | set(files_b)) if files_a.get(n) != files_b.get(n)]
    from .file_sizes import file_sizes

    sizes_a = file_sizes(repo_a, manifest_a, [n for n in changed if n in files_a])
    sizes_b = file_sizes(repo_b, manifest_b, [n for n in changed if n in files_b])
    out["files"] = [
        {
            **_change(name, files_a.get(name), files_b.get(name)),
            "sizeBefore": sizes_a.get(name),
            "sizeAfter": sizes_b.get(name),
        }
        for name in changed
    ]
    return out


def _change(path: str, before: Any, after: Any) -> dict[str, Any]:
    from . import lineage as lineage_mod

    def plain(value: Any) -> Any:
        return None if value is lineage_mod.MISSING else value

    return {"path": path, "before": plain(before), "after": plain(after)}


def _packages(repository: Repository, manifest: Manifest, lineage: Lineage) -> dict[str, str]:
    digest = lineage.environment.packages_digest if lineage.environment else None
    if not digest or not any(layer.digest == digest for layer in manifest.layers):
        return {}
    text = _meta_blob_content(repository, manifest, digest).decode("utf-8", "replace")
    found = {}
    for line in text.splitlines():
        name, sep, version = line.partition("==")
        if sep:
            found[name] = version
    return found


def unversioned(
    repository: str | Reference, listed: Sequence[VersionInfo], *, stores: Stores | None = None
) -> list[str]:
    """Pushed digests that none of ``listed`` (all versions) names: in flight, or a lost claim."""
    stores = stores or Stores()
    return unversioned_digests(stores.repository(_reference(repository)), listed)


def repair(repository: str | Reference, *, stores: Stores | None = None) -> list[Published]:
    """Give every pushed digest that lost a version race the next free number."""
    stores = stores or Stores()
    return repair_versions(stores.repository(_reference(repository)))


# ----- stages ------------------------------------------------------------------------------


def load_key(path: str | Path, passphrase: bytes | None = None) -> SigningKey:
    """A signing key; the passphrase defaults to $MODELREG_KEY_PASSPHRASE."""
    from .signing import load_signing_key

    if passphrase is None:
        passphrase = passphrase_from_env()
    return load_signing_key(Path(path), passphrase)


def passphrase_from_env() -> bytes | None:
    """$MODELREG_KEY_PASSPHRASE as bytes; None when it is unset or empty."""
    value = os.environ.get("MODELREG_KEY_PASSPHRASE")
    return value.encode() if value else None


def promote(
    reference: str | Reference,
    stage: str,
    key: SigningKey,
    *,
    policy: TrustPolicy | None = None,
    expires_in: timedelta | None = None,
    stores: Stores | None = None,
    sign_content: bool = False,
) -> stages.Outcome:
    """Sign a move of ``stage`` to this model (gated by ``policy``, k-of-n aware).

    ``sign_content`` first attaches a content signature of the model's files by ``key``.
    The positional form kept for existing callers; ``modelreg.promote`` is
    :func:`modelreg.lifecycle.promote`, with the CLI's option names.
    """
    from . import lifecycle

    moved = lifecycle.promote(
        reference,
        to=stage,
        key=key,
        policy=policy,
        expires=expires_in,
        stores=stores,
        sign_content=sign_content,
    )
    return moved.outcome


def approve(
    reference: str | Reference,
    stage: str,
    key: SigningKey,
    *,
    policy: TrustPolicy | None = None,
    stores: Stores | None = None,
) -> stages.Outcome:
    from . import lifecycle

    approved = lifecycle.approve(reference, to=stage, key=key, policy=policy, stores=stores)
    return approved.outcome


def rollback(
    repository: str | Reference,
    stage: str,
    key: SigningKey,
    *,
    policy: TrustPolicy | None = None,
    stores: Stores | None = None,
) -> stages.Outcome:
    from . import lifecycle

    rolled = lifecycle.rollback(repository, stage=stage, key=key, policy=policy, stores=stores)
    return rolled.outcome


def history(
    repository: str | Reference,
    *,
    stage: str | None = None,
    policy: TrustPolicy | None = None,
    stores: Stores | None = None,
) -> list[stages.HistoryEntry]:
    from . import lifecycle

    return list(lifecycle.history(repository, stage=stage, policy=policy, stores=stores))


def verify(
    reference: str | Reference,
    *,
    policy: TrustPolicy | None = None,
    stores: Stores | None = None,
) -> stages.VerifiedStage:
    """Verify a stage's whole chain and its tag; remember the head so replays are refused."""
    from . import lifecycle

    return lifecycle.verify(reference, policy=policy, stores=stores)


def names_stage(reference: str | Reference, *, stores: Stores | None = None) -> bool:
    """Whether ``reference`` is a stage (``fraud:production``) rather than a version."""
    ref = _reference(reference)
    if not ref.tag or ref.digest:
        return False
    return is_stage((stores or Stores()).repository(ref), ref.tag)


def verify_content(
    reference: str | Reference,
    *,
    policy: TrustPolicy | None = None,
    stores: Stores | None = None,
) -> content_signatures.ContentVerification:
    """Verify a version's content signatures against the trusted keys; who signed.

    VerificationError when no signature by a trusted key covers exactly its files.
    """
    from . import content_signatures

    stores = stores or Stores()
    ref = _reference(reference)
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


def login(host: str, username: str, secret: str, *, stores: Stores | None = None) -> str:
    """Check the credentials against the registry, then store them as docker login does.

    Returns where they were stored (config.json or a credential helper).
    Nothing is stored when the registry refuses them.
    """
    host = parse_registry_host(host)
    if not username or not secret:
        raise InvalidInput("login needs a username and a password", "pass -u USER and the password")
    stores = stores or Stores()
    creds = credentials.Credentials(username, secret)
    transport = Transport(host, stores.options, lambda: creds)
    try:
        response = transport.request("GET", "/v2/", scope="")
        response.close()
        if response.status_code != 200:
            raise RegistryError(f"registry {host} answered HTTP {response.status_code} on /v2/")
    except AuthError:
        raise AuthError(
            f"registry {host} rejected the username or password for {username!r}",
            "check them and log in again; nothing was stored",
        ) from None
    finally:
        transport.close()
    return credentials.save(host, creds, helper_timeout=stores.options.helper_timeout)


def logout(host: str, *, stores: Stores | None = None) -> bool:
    """Forget the stored credentials for ``host``; whether there were any."""
    options = stores.options if stores is not None else RegistryOptions.from_env()
    return credentials.remove(parse_registry_host(host), helper_timeout=options.helper_timeout)


def version_number(
    repository: str | Reference, digest: str, *, stores: Stores | None = None
) -> int | None:
    """The version number ``digest`` has in ``repository``, or None."""
    stores = stores or Stores()
    return version_of(stores.repository(_reference(repository)), digest)


def pending(
    repository: str | Reference,
    *,
    stage: str | None = None,
    policy: TrustPolicy | None = None,
    stores: Stores | None = None,
) -> list[PendingProposal]:
    """Live pending proposals (waiting for 'approve'), with their verified signers."""
    from .pending import pending_proposals

    stores = stores or Stores()
    repo = stores.repository(_reference(repository))
    return pending_proposals(repo, stage, policy or default_trust(stores))


__all__ = [
    "ModelInfo",
    "PullResult",
    "PushResult",
    "add_modelpack",
    "copy",
    "diff",
    "gc",
    "inspect",
    "login",
    "logout",
    "mirror",
    "pending",
    "pull",
    "push",
    "repair",
    "stage_names",
    "tag",
    "version_number",
    "versions",
]
