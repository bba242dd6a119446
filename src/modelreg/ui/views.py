"""What each page shows, read through the library (the same bulk reads as the CLI).

Pure data out: the templates only lay it out. Nothing here reads a model's weights:
manifests, tags, lineage annotations and promotion records only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import api
from .. import lineage as lineage_mod
from .._open import trust_state
from ..errors import InvalidInput, ModelregError, NotFound
from ..promotion import parse_record_tag
from ..reference import parse_reference
from ..store import Stores
from ..store.base import Repository
from ..versions import DEFAULT_STAGES, VersionInfo, parse_version_tag, version_tag

if TYPE_CHECKING:
    from ..pending import PendingProposal
    from ..policy import TrustPolicy
    from ..stages import HistoryEntry

NO_POLICY = (
    "not verified: no trust policy; start 'modelreg ui' with --trust KEY.pub or --policy FILE"
)


@dataclass(frozen=True)
class StageState:
    """A stage as it verifies right now: a holder only when its signed chain verified."""

    name: str
    verified: bool
    reason: str | None = None
    hint: str | None = None
    digest: str | None = None
    version: int | None = None
    sequence: int | None = None
    signers: tuple[str, ...] = ()
    issued_at: str | None = None


@dataclass(frozen=True)
class RepositorySummary:
    name: str
    newest: int | None = None
    stages: list[StageState] = field(default_factory=list)
    last_moved: str | None = None
    error: ModelregError | None = None


@dataclass(frozen=True)
class VersionRow:
    info: VersionInfo
    metrics: Mapping[str, float]
    problem: str | None = None  # lineage annotations that do not parse


@dataclass(frozen=True)
class RepositoryPage:
    name: str
    rows: list[VersionRow]
    metric_names: list[str]
    stages: list[StageState]
    history: list[HistoryEntry]
    where: list[str]
    pending: list[PendingProposal] = field(default_factory=list)


def repository_handle(stores: Stores, name: str) -> Repository:
    return stores.repository(parse_reference(name))


def stage_states(
    stores: Stores, repository: Repository, tags: Sequence[str], policy: TrustPolicy | None
) -> list[StageState]:
    """Every stage that has a tag or a promotion record, or that the policy names, verified
    now (full chain): a policy's stage whose records were deleted still shows as refused."""
    from .. import stages

    recorded = {p[0] for t in tags if (p := parse_record_tag(t)) is not None}
    named = {s for s in policy.stage_names() if s in tags} if policy is not None else set()
    names = sorted(recorded | named | {s for s in DEFAULT_STAGES if s in tags})
    states = []
    for stage in names:
        if policy is None:
            states.append(StageState(stage, False, NO_POLICY))
            continue
        try:
            held = stages.verify_stage(
                repository, stage, policy, state=trust_state(stores), full=True
            )
        except NotFound:
            reason = f"the {stage} tag was set without any signed promotion record"
            states.append(StageState(stage, False, reason))
            continue
        except ModelregError as exc:
            states.append(StageState(stage, False, exc.message, exc.hint))
            continue
        states.append(
            StageState(
                stage,
                True,
                digest=held.digest,
                version=held.version,
                sequence=held.sequence,
                signers=held.signers,
                issued_at=held.issued_at,
            )
        )
    return states


def summarize(stores: Stores, name: str, policy: TrustPolicy | None) -> RepositorySummary:
    try:
        repository = repository_handle(stores, name)
        tags = repository.list_tags()
        numbers = [n for n in (parse_version_tag(t) for t in tags) if n is not None]
        states = stage_states(stores, repository, tags, policy)
    except ModelregError as exc:
        return RepositorySummary(name, error=exc)
    moved = [s.issued_at for s in states if s.issued_at]
    return RepositorySummary(
        name, max(numbers) if numbers else None, states, max(moved) if moved else None
    )


def summaries(
    stores: Stores, names: Sequence[str], policy: TrustPolicy | None
) -> list[RepositorySummary]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda n: summarize(stores, n, policy), names))


def version_rows(versions: Sequence[VersionInfo]) -> list[VersionRow]:
    rows = []
    for info in versions:
        try:
            metrics = lineage_mod.from_annotations(info.annotations).metrics
        except ModelregError as exc:
            rows.append(VersionRow(info, {}, exc.message))
            continue
        rows.append(VersionRow(info, metrics))
    return rows


def sort_rows(rows: list[VersionRow], key: str, descending: bool) -> list[VersionRow]:
    """Sort by version, created, size or ``metric:NAME`` (rows without the metric last)."""
    if key.startswith("metric:"):
        metric = key[len("metric:") :]
        present = [r for r in rows if metric in r.metrics]
        absent = [r for r in rows if metric not in r.metrics]
        present.sort(key=lambda r: r.metrics[metric], reverse=descending)
        return present + absent
    pick: dict[str, Any] = {
        "version": lambda r: r.info.version,
        "created": lambda r: r.info.created,
        "size": lambda r: r.info.size,
    }
    if key not in pick:
        raise InvalidInput(
            f"cannot sort by {key!r}", "sort by version, created, size or metric:NAME"
        )
    return sorted(rows, key=pick[key], reverse=descending)


def repository_page(
    stores: Stores, name: str, policy: TrustPolicy | None, where: Sequence[str]
) -> RepositoryPage:
    from .. import stages
    from ..pending import pending_proposals

    repository = repository_handle(stores, name)
    # the listing (one request per version tag) is the long part: the stages, their
    # history and the pending proposals (a few records each) are read meanwhile
    with ThreadPoolExecutor(3) as pool:
        states = pool.submit(
            lambda: stage_states(stores, repository, repository.list_tags(), policy)
        )
        history_read = pool.submit(stages.history, repository, None, policy)
        pending = pool.submit(pending_proposals, repository, None, policy)
        rows = version_rows(api.versions(name, where=where, stores=stores))
    metric_names = sorted({m for row in rows for m in row.metrics})
    history = history_read.result()
    history.sort(key=lambda e: (e.stored.record.issued_at, e.stored.record.sequence), reverse=True)
    return RepositoryPage(
        name,
        rows,
        metric_names,
        states.result(),
        history,
        list(where),
        pending.result(),
    )


@dataclass(frozen=True)
class FileRow:
    name: str
    size: int | None
    digest: str
    layer: str


@dataclass(frozen=True)
class VersionPage:
    name: str
    info: api.ModelInfo
    lineage: dict[str, Any] | None
    files: list[FileRow]
    records: list[HistoryEntry]
    uses: dict[str, str]


def version_page(
    stores: Stores, name: str, identifier: str, policy: TrustPolicy | None
) -> VersionPage:
    from .. import stages
    from ..cli._output import human_size
    from ..oci import layer_title, listed_files
    from ..transfer import model_layers

    reference = f"{name}@{identifier}" if ":" in identifier else f"{name}:{identifier}"
    info = api.inspect(reference, trust=policy, stores=stores)
    files = []
    for layer in model_layers(info.manifest):
        title = layer_title(layer)
        if title and info.files.get(title) == layer.digest:
            files.append(FileRow(title, layer.size, layer.digest, "own layer"))
            continue
        bundled = sorted(listed_files(layer) or {})
        files.extend(
            FileRow(
                n, None, info.files[n], f"bundle {layer.digest[:19]} ({human_size(layer.size)})"
            )
            for n in bundled
            if n in info.files
        )
    listed = {f.name for f in files}
    files.extend(FileRow(n, None, d, "") for n, d in info.files.items() if n not in listed)
    history = stages.history(repository_handle(stores, name), None, policy)
    records = [e for e in history if e.stored.record.digest == info.digest]
    return VersionPage(name, info, info.lineage_dict(), files, records, usage_lines(name, info))


def usage_lines(name: str, info: api.ModelInfo) -> dict[str, str]:
    pinned = f"{name}@{info.digest}"
    lines = {
        "modelreg pull": f"modelreg pull {pinned} ./model",
        "Resolver": (
            "from modelreg import Resolver\n"
            'resolver = Resolver(trust=["YOUR-TRUSTED-KEY.pub"], cache_dir="/var/cache/models")\n'
            f'model = resolver.resolve("{name}", stage="production")\n'
            "path = resolver.fetch(model)"
        ),
    }
    if parse_reference(name).registry:
        lines["docker pull"] = f"docker pull {pinned}"
        lines["Kubernetes image volume"] = (
            "volumes:\n"
            "  - name: model\n"
            "    image:\n"
            f"      reference: {pinned}\n"
            "      pullPolicy: IfNotPresent"
        )
    else:
        lines["copy to a registry"] = f"modelreg copy {pinned} REGISTRY/{name}"
    lines["files in a container"] = container_paths(info)
    return lines


def container_paths(info: api.ModelInfo) -> str:
    """Where an engine puts the files: /model/, or (layers reused by an import) their paths."""
    from ..formats.reuse import ANNOTATION_ROOT
    from ..oci import listed_files
    from ..transfer import model_layers

    layers = model_layers(info.manifest)
    own = [layer for layer in layers if ANNOTATION_ROOT not in layer.annotations]
    if len(own) == len(layers):
        return "/model/ (e.g. /model/<file>; below the mountPath in an image volume)"
    reused = sorted(
        name
        for layer in layers
        if ANNOTATION_ROOT in layer.annotations
        for name in listed_files(layer) or {}
    )
    example = f" (e.g. /{reused[0]})" if reused else ""
    text = (
        f"at their own paths from the image root, as the imported artifact laid them out{example}"
    )
    return text + ("; files repacked at import under /model/" if own else "")


@dataclass(frozen=True)
class DiffPage:
    name: str
    first: str
    second: str
    changes: dict[str, list[dict[str, Any]]]
    versions: list[int]


def diff_page(
    stores: Stores, name: str, first: str, second: str, policy: TrustPolicy | None
) -> DiffPage:
    def label(identifier: str) -> str:
        return version_tag(int(identifier)) if identifier.isdigit() else identifier

    def reference(identifier: str) -> str:
        separator = "@" if identifier.startswith("sha256:") else ":"
        return f"{name}{separator}{label(identifier)}"

    changes = api.diff(reference(first), reference(second), trust=policy, stores=stores)
    tags = repository_handle(stores, name).list_tags()
    numbers = sorted(n for n in (parse_version_tag(t) for t in tags) if n is not None)
    return DiffPage(name, label(first), label(second), changes, numbers)
