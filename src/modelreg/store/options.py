"""How to talk to registries: timeouts, retries, CA bundle, plain HTTP, from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput
from .credentials import HELPER_TIMEOUT


@dataclass(frozen=True)
class RegistryOptions:
    """How to talk to registries. ``from_env`` reads the environment at call time."""

    timeout: float = 5.0
    read_timeout: float = 120.0
    retries: int = 3
    ca_cert: str | None = None
    plain_http: bool | None = None
    settle: float = 0.3
    helper_timeout: float = HELPER_TIMEOUT

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> RegistryOptions:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if env.get("MODELREG_TIMEOUT"):
            values["timeout"] = _positive_float(env["MODELREG_TIMEOUT"], "MODELREG_TIMEOUT")
        if env.get("MODELREG_RETRIES"):
            values["retries"] = int(_positive_float(env["MODELREG_RETRIES"], "MODELREG_RETRIES"))
        ca = (
            env.get("MODELREG_CA_CERT") or env.get("REQUESTS_CA_BUNDLE") or env.get("SSL_CERT_FILE")
        )
        if ca:
            values["ca_cert"] = ca
        if env.get("MODELREG_HELPER_TIMEOUT"):
            values["helper_timeout"] = _positive_float(
                env["MODELREG_HELPER_TIMEOUT"], "MODELREG_HELPER_TIMEOUT"
            )
        if env.get("MODELREG_PLAIN_HTTP"):
            values["plain_http"] = env["MODELREG_PLAIN_HTTP"].lower() in ("1", "true", "yes")
        if env.get("MODELREG_SETTLE"):
            values["settle"] = _positive_float(env["MODELREG_SETTLE"], "MODELREG_SETTLE")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _positive_float(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise InvalidInput(f"{name}={text!r} is not a positive number")
    return value
