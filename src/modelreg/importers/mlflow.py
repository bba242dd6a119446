"""Import an MLflow registered model: every version becomes a modelreg version.

Oldest first, each version's artifacts are downloaded (bounded, paths checked)
into a staging directory and pushed with the lineage its run holds: params,
metrics, the ``mlflow.source.git.*`` tags as code, dataset inputs as data, the
run's other tags and the MLflow provenance (model, version, run id) as
annotations, the version's (else the model's) description. Aliases become alias
tags; with a signing key, legacy stages become signed promotions. A version
already imported (recognised by its provenance annotations) is not downloaded
again, so a scheduled re-run imports only what is new. A version whose
artifacts are gone is skipped and reported; the others are still imported.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import api
from ..errors import InvalidInput, NotFound
from ..lineage import CodeInfo, DataRef, Lineage
from ..reference import Reference, parse_reference
from ..store import Stores, opened
from ..transfer import Progress, TransferEvent
from ..versions import list_versions
from .mlflow_client import MAX_BYTES, MlflowClient, MlflowSource, parse_source

if TYPE_CHECKING:
    from ..signing import SigningKey

ANNOTATION_SOURCE = "modelreg.import.source"
ANNOTATION_MODEL = "io.mlflow.registered-model"
ANNOTATION_VERSION = "io.mlflow.model-version"
ANNOTATION_RUN = "io.mlflow.run-id"
ANNOTATION_TAG_PREFIX = "io.mlflow.tag."
# legacy MLflow stages and the modelreg stages they become
STAGES = {"Staging": "staging", "Production": "production"}
_GIT_TAGS = ("mlflow.source.git.commit", "mlflow.source.git.branch", "mlflow.source.git.repoURL")


@dataclass(frozen=True)
class ImportedVersion:
    source_version: int | None  # the version in the source registry (MLflow's number)
    version: int | None  # the modelreg version
    digest: str
    existed: bool  # imported by an earlier run


@dataclass(frozen=True)
class SkippedVersion:
    source_version: int
    reason: str


@dataclass(frozen=True)
class ImportReport:
    """What an import did: versions imported (or found), skipped, aliases and stages set."""

    source: str
    repository: str
    form: str
    imported: tuple[ImportedVersion, ...] = ()
    skipped: tuple[SkippedVersion, ...] = ()
    aliases: Mapping[str, int] = field(default_factory=dict)  # alias -> modelreg version
    promotions: Mapping[str, int] = field(default_factory=dict)  # stage -> modelreg version
    notes: tuple[str, ...] = ()  # e.g. an MLflow alias that cannot be a tag here

    @property
    def complete(self) -> bool:
        return not self.skipped

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "repository": self.repository,
            "form": self.form,
            "imported": [
                {
                    "sourceVersion": v.source_version,
                    "version": v.version,
                    "digest": v.digest,
                    "reference": f"{self.repository}@{v.digest}",
                    "existed": v.existed,
                }
                for v in self.imported
            ],
            "skipped": [
                {"sourceVersion": s.source_version, "reason": s.reason} for s in self.skipped
            ],
            "aliases": dict(self.aliases),
            "promotions": dict(self.promotions),
            "notes": list(self.notes),
            "complete": self.complete,
        }


def import_mlflow(
    source: str | MlflowSource,
    destination: str | Reference,
    *,
    stages_as_promotions: bool = False,
    key: SigningKey | None = None,
    stores: Stores | None = None,
    progress: Progress | None = None,
    environ: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> ImportReport:
    """Import every version of an MLflow registered model into ``destination``, oldest first."""
    mlflow = source if isinstance(source, MlflowSource) else parse_source(source)
    target = destination if isinstance(destination, Reference) else parse_reference(destination)
    if target.tag or target.digest:
        raise InvalidInput(
            f"{target} names one model; an MLflow import fills a repository",
            "write the repository alone; MLflow's versions become its versions",
        )
    if stages_as_promotions and key is None:
        raise InvalidInput(
            "--stages-as-promotions signs promotion records and needs a key",
            "add --key KEY (from 'modelreg key generate')",
        )
    with (
        opened(stores) as stores,
        MlflowClient(mlflow.base_url, timeout=timeout, environ=environ) as client,
    ):
        return _import(client, mlflow, target, stages_as_promotions, key, stores, progress)


def _import(
    client: MlflowClient,
    mlflow: MlflowSource,
    target: Reference,
    stages_as_promotions: bool,
    key: SigningKey | None,
    stores: Stores,
    progress: Progress | None,
) -> ImportReport:
    model = client.registered_model(mlflow.model)
    versions = sorted(client.model_versions(mlflow.model), key=_number)
    repo = stores.repository(target)
    done = _already_imported(repo, mlflow.model)
    imported: list[ImportedVersion] = []
    skipped: list[SkippedVersion] = []
    for entry in versions:
        number = _number(entry)
        if number in done:
            imported.append(ImportedVersion(number, *done[number], existed=True))
            continue
        if entry.get("status", "READY") != "READY":
            skipped.append(SkippedVersion(number, f"its status is {entry.get('status')}"))
            continue
        try:
            pushed = _import_version(client, mlflow, model, entry, target, stores, progress)
        except NotFound as exc:
            skipped.append(SkippedVersion(number, exc.message))
            continue
        imported.append(ImportedVersion(number, pushed.version, pushed.digest, pushed.existed))
    by_mlflow = {v.source_version: v for v in imported if v.source_version is not None}
    notes: list[str] = []
    aliases = _sync_aliases(model, by_mlflow, target, stores, notes)
    promotions: dict[str, int] = {}
    if stages_as_promotions and key is not None:
        promotions = _promote_stages(versions, by_mlflow, target, key, stores)
    return ImportReport(
        source=str(mlflow),
        repository=repo.name,
        form="mlflow",
        imported=tuple(imported),
        skipped=tuple(skipped),
        aliases=aliases,
        promotions=promotions,
        notes=tuple(notes),
    )


def _number(entry: Mapping[str, Any]) -> int:
    try:
        return int(str(entry.get("version")))
    except ValueError:
        raise InvalidInput(
            f"MLflow model version {entry.get('version')!r} is not a number"
        ) from None


def _already_imported(repo: Any, model: str) -> dict[int, tuple[int | None, str]]:
    """MLflow version -> (modelreg version, digest) of versions an earlier import pushed."""
    try:
        existing = list_versions(repo)
    except NotFound:
        return {}
    found: dict[int, tuple[int | None, str]] = {}
    for info in existing:
        annotations = info.annotations
        if (
            annotations.get(ANNOTATION_MODEL) == model
            and annotations.get(ANNOTATION_VERSION, "").isdigit()
        ):
            found.setdefault(int(annotations[ANNOTATION_VERSION]), (info.version, info.digest))
    return found


def _import_version(
    client: MlflowClient,
    mlflow: MlflowSource,
    model: Mapping[str, Any],
    entry: Mapping[str, Any],
    target: Reference,
    stores: Stores,
    progress: Progress | None,
) -> api.PushResult:
    number = str(_number(entry))
    run_id = entry.get("run_id") or ""
    run = client.run(run_id) if isinstance(run_id, str) and run_id else {}
    root = client.artifact_root(
        _artifact_uri(client, client.download_uri(mlflow.model, number), run)
    )
    staging = Path(tempfile.mkdtemp(prefix="modelreg-mlflow-"))
    try:
        files = staging / "model"
        files.mkdir()
        _download(client, root, files, progress)
        lineage = lineage_of(mlflow, model, entry, run)
        return api.push(
            files, target, lineage=lineage, capture=False, stores=stores, progress=progress
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _artifact_uri(client: MlflowClient, uri: str, run: Mapping[str, Any]) -> str:
    """``runs:/RUN_ID/PATH`` (what get-download-uri often answers) as the run's artifact URI."""
    if not uri.startswith("runs:/"):
        return uri
    run_id, _, path = uri[len("runs:/") :].partition("/")
    info = run.get("info") if isinstance(run.get("info"), dict) else None
    if not isinstance(info, dict) or info.get("run_id") != run_id:
        info = client.run(run_id).get("info")
    base = info.get("artifact_uri") if isinstance(info, dict) else None
    if not isinstance(base, str) or not base:
        raise NotFound(f"the MLflow run {run_id} names no artifact location", "")
    return f"{base.rstrip('/')}/{path}" if path else base


def _download(client: MlflowClient, root: str, into: Path, progress: Progress | None) -> None:
    listing = list(client.walk(root))  # the whole listing checked before any byte is written
    if not listing:
        raise NotFound(f"the MLflow artifacts at {root} are gone (nothing listed)", "")
    budget = MAX_BYTES
    report: Callable[[TransferEvent], None] = progress or (lambda _: None)
    for relative, size in listing:
        path = into.joinpath(*relative.parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        name = str(relative)
        total = size or 0
        done = 0

        def moved(count: int, name: str = name, total: int = total) -> None:
            nonlocal done
            done += count
            report(TransferEvent("download", name, "", done, total))

        budget -= client.download(f"{root}/{name}", path, size, budget, moved)


def lineage_of(
    mlflow: MlflowSource,
    model: Mapping[str, Any],
    entry: Mapping[str, Any],
    run: Mapping[str, Any],
) -> Lineage:
    """The lineage a version's run records, with the MLflow provenance as annotations."""
    data = run.get("data") if isinstance(run.get("data"), dict) else {}
    assert isinstance(data, dict)
    tags = _pairs(data.get("tags"))
    params = _pairs(data.get("params"))
    metrics: dict[str, float] = {}
    for item in data.get("metrics") or []:
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            value = item.get("value")
            if isinstance(value, int | float) and value == value and abs(value) != float("inf"):
                metrics[item["key"]] = float(value)
    commit = tags.get("mlflow.source.git.commit")
    code = (
        CodeInfo(
            commit=commit,
            branch=tags.get("mlflow.source.git.branch"),
            remote=tags.get("mlflow.source.git.repoURL"),
        )
        if commit
        else None
    )
    number = str(_number(entry))
    annotations = {
        ANNOTATION_SOURCE: f"{mlflow}/{number}",
        ANNOTATION_MODEL: mlflow.model,
        ANNOTATION_VERSION: number,
    }
    run_id = entry.get("run_id")
    if isinstance(run_id, str) and run_id:
        annotations[ANNOTATION_RUN] = run_id
    for name, value in sorted(tags.items()):
        if not name.startswith("mlflow.") and len(name) <= 128 and len(value) <= 1024:
            annotations[ANNOTATION_TAG_PREFIX + name] = value
    description = entry.get("description") or model.get("description") or None
    return Lineage(
        code=code,
        data=_datasets(run.get("inputs")),
        params=params,
        metrics=metrics,
        annotations=annotations,
        description=description if isinstance(description, str) else None,
    )


def _pairs(items: Any) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            value = item.get("value")
            pairs[item["key"]] = value if isinstance(value, str) else json.dumps(value)
    return pairs


def _datasets(inputs: Any) -> tuple[DataRef, ...]:
    """Dataset inputs: the dataset's source URI (else ``mlflow-dataset:NAME``) and digest."""
    refs: list[DataRef] = []
    entries = inputs.get("dataset_inputs") if isinstance(inputs, dict) else None
    for item in entries if isinstance(entries, list) else []:
        dataset = item.get("dataset") if isinstance(item, dict) else None
        if not isinstance(dataset, dict):
            continue
        name = str(dataset.get("name") or "dataset")
        uri = f"mlflow-dataset:{name}"
        try:
            source = json.loads(dataset.get("source") or "{}")
        except (TypeError, ValueError):
            source = {}
        if isinstance(source, dict):
            found = source.get("uri") or source.get("url") or source.get("path")
            uri = str(found) if found else uri
        digest = dataset.get("digest")
        refs.append(DataRef(uri=uri, version=f"{name}@{digest}" if digest else name))
    return tuple(refs)


def _sync_aliases(
    model: Mapping[str, Any],
    imported: Mapping[int, ImportedVersion],
    target: Reference,
    stores: Stores,
    notes: list[str],
) -> dict[str, int]:
    """Each MLflow alias as an alias tag on the version it names (moved if it moved).

    An alias modelreg cannot take (a stage's name, ``v3``) is a note, not a failure.
    """
    aliases: dict[str, int] = {}
    for item in model.get("aliases") or []:
        if not isinstance(item, dict):
            continue
        alias, version = item.get("alias"), item.get("version")
        pushed = imported.get(int(str(version))) if str(version).isdigit() else None
        if not isinstance(alias, str) or pushed is None:
            continue
        ref = f"{_repository_text(target)}@{pushed.digest}"
        try:
            api.tag(ref, alias, stores=stores)
        except InvalidInput as exc:
            notes.append(f"MLflow alias {alias!r} not set: {exc.message}")
            continue
        if pushed.version is not None:
            aliases[alias] = pushed.version
    return aliases


def _promote_stages(
    versions: list[dict[str, Any]],
    imported: Mapping[int, ImportedVersion],
    target: Reference,
    key: SigningKey,
    stores: Stores,
) -> dict[str, int]:
    """Legacy stages as signed promotions, oldest version first (the newest holder wins)."""
    from .. import lifecycle

    promotions: dict[str, int] = {}
    for entry in versions:
        stage = STAGES.get(str(entry.get("current_stage")))
        pushed = imported.get(_number(entry))
        if stage is None or pushed is None:
            continue
        ref = f"{_repository_text(target)}@{pushed.digest}"
        moved = lifecycle.promote(ref, to=stage, key=key, stores=stores)
        if pushed.version is not None and moved.status != "pending":
            promotions[stage] = pushed.version
    return promotions


def _repository_text(target: Reference) -> str:
    return f"{target.registry}/{target.repository}" if target.registry else target.repository


__all__ = ["ImportReport", "ImportedVersion", "SkippedVersion", "import_mlflow", "lineage_of"]
