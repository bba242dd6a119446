"""modelreg: a model registry on any OCI registry.

Push a model once as an immutable, digest-pinned OCI image with its lineage;
version it, promote it through signed stages, and resolve "production" to a
verified digest in serving code. Nothing is imported until it is used, so
``from modelreg import Resolver`` stays cheap for serving processes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "push": "api",
    "pull": "api",
    "inspect": "api",
    "copy": "api",
    "tag": "api",
    "versions": "api",
    "diff": "api",
    "PushResult": "api",
    "PullResult": "api",
    "ModelInfo": "api",
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
    from .api import (
        ModelInfo,
        PullResult,
        PushResult,
        copy,
        diff,
        inspect,
        pull,
        push,
        tag,
        versions,
    )
    from .errors import ModelregError
    from .lineage import Lineage, capture_lineage
    from .reference import Reference, parse_reference
    from .resolver import ResolvedModel, Resolver
    from .store import RegistryOptions, Stores


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'modelreg' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "Lineage",
    "ModelInfo",
    "ModelregError",
    "PullResult",
    "PushResult",
    "Reference",
    "RegistryOptions",
    "ResolvedModel",
    "Resolver",
    "Stores",
    "capture_lineage",
    "copy",
    "diff",
    "inspect",
    "parse_reference",
    "pull",
    "push",
    "tag",
    "versions",
]
