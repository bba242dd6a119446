"""What the facade's actions return: plain frozen records with ``reference`` and ``to_dict``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .oci import Manifest, layer_title

if TYPE_CHECKING:
    from .lineage import Lineage


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


@dataclass(frozen=True)
class CopyResult:
    """Where :func:`~modelreg.api.copy` put a model: the same digest, maybe a version."""

    repository: str
    digest: str
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
        }


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


__all__ = ["CopyResult", "ModelInfo", "PullResult", "PushResult"]
