"""modelreg: a model registry on any OCI registry.

Push a model once as an immutable, digest-pinned OCI image with its lineage;
version it, promote it through signed stages, and resolve "production" to a
verified digest in serving code. Nothing is imported until it is used, so
``from modelreg import Resolver`` stays cheap for serving processes.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from ._lazy import lazy_names

__version__ = "0.1.0"

_EXPORTS = {
    "push": "api",
    "pull": "api",
    "inspect": "api",
    "copy": "api",
    "tag": "api",
    "versions": "api",
    "diff": "api",
    "PushResult": "_results",
    "PullResult": "_results",
    "CopyResult": "_results",
    "ModelInfo": "_results",
    "promote": "lifecycle",
    "approve": "lifecycle",
    "rollback": "lifecycle",
    "history": "lifecycle",
    "verify": "lifecycle",
    "gc": "lifecycle",
    "mirror": "lifecycle",
    "PromotionResult": "lifecycle",
    "History": "lifecycle",
    "HistoryEntry": "stages",
    "VerifiedStage": "stages",
    "GcReport": "retention",
    "MirrorResult": "mirror",
    "load_key": "api",
    "import_model": "importers",
    "ImportReport": "importers",
    "Lineage": "lineage",
    "capture_lineage": "lineage",
    "Reference": "reference",
    "parse_reference": "reference",
    "Stores": "store",
    "RegistryOptions": "store",
    "ModelregError": "errors",
    "Resolver": "resolver",
    "ResolvedModel": "resolver",
}

if TYPE_CHECKING:
    from ._results import CopyResult, ModelInfo, PullResult, PushResult
    from .api import (
        copy,
        diff,
        inspect,
        load_key,
        pull,
        push,
        tag,
        versions,
    )
    from .errors import ModelregError
    from .importers import ImportReport, import_model
    from .lifecycle import (
        History,
        PromotionResult,
        approve,
        gc,
        history,
        mirror,
        promote,
        rollback,
        verify,
    )
    from .lineage import Lineage, capture_lineage
    from .mirror import MirrorResult
    from .reference import Reference, parse_reference
    from .resolver import ResolvedModel, Resolver
    from .retention import GcReport
    from .stages import HistoryEntry, VerifiedStage
    from .store import RegistryOptions, Stores


class _Package(types.ModuleType):
    """Importing a submodule sets it as an attribute of its package: ``modelreg.versions``
    (the function) would become ``modelreg/versions.py`` once anything imported it."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__getattr__ = lazy_names(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "CopyResult",
    "GcReport",
    "History",
    "HistoryEntry",
    "ImportReport",
    "Lineage",
    "MirrorResult",
    "ModelInfo",
    "ModelregError",
    "PromotionResult",
    "PullResult",
    "PushResult",
    "Reference",
    "RegistryOptions",
    "ResolvedModel",
    "Resolver",
    "Stores",
    "VerifiedStage",
    "approve",
    "capture_lineage",
    "copy",
    "diff",
    "gc",
    "history",
    "import_model",
    "inspect",
    "load_key",
    "mirror",
    "parse_reference",
    "promote",
    "pull",
    "push",
    "rollback",
    "tag",
    "verify",
    "versions",
]
