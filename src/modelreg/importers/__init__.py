"""Importing models other tools published: ``modelreg.import_model(SOURCE, DEST)``.

The kind of SOURCE picks the importer: ``mlflow+http[s]://HOST[:PORT][/PATH]/MODEL``
(an MLflow registered model, every version) or an OCI reference (a ModelPack or
KitOps ModelKit). Another kind plugs in as one more branch of :func:`import_model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..reference import Reference
from ..store import Stores
from ..transfer import Progress
from .mlflow import ImportedVersion, ImportReport, SkippedVersion
from .mlflow_client import is_mlflow_source

if TYPE_CHECKING:
    from pathlib import Path

    from ..signing import SigningKey


def import_model(
    source: str,
    destination: str | Reference,
    *,
    stages_as_promotions: bool = False,
    key: str | Path | SigningKey | None = None,
    passphrase: str | bytes | None = None,
    stores: Stores | None = None,
    progress: Progress | None = None,
    environ: Mapping[str, str] | None = None,
) -> ImportReport:
    """Import ``source`` into ``destination``; idempotent, so it can run on a schedule.

    ``report.complete`` is False when some versions were skipped (their reasons in
    ``report.skipped``); the others were imported.
    """
    if is_mlflow_source(source):
        from .mlflow import import_mlflow

        signing_key = None
        if key is not None:
            from ..lifecycle import _key

            signing_key = _key(key, passphrase)
        return import_mlflow(
            source,
            destination,
            stages_as_promotions=stages_as_promotions,
            key=signing_key,
            stores=stores,
            progress=progress,
            environ=environ,
        )
    from ..errors import InvalidInput
    from ..importing import import_oci

    if stages_as_promotions:
        raise InvalidInput(
            "--stages-as-promotions applies to MLflow imports only",
            "drop it; a ModelPack or ModelKit has no stages",
        )
    result = import_oci(source, destination, stores=stores, progress=progress)
    return ImportReport(
        source=result.source,
        repository=result.repository,
        form=result.form,
        imported=(ImportedVersion(None, result.version, result.digest, result.existed),),
    )


__all__ = ["ImportReport", "ImportedVersion", "SkippedVersion", "import_model"]
