"""One error root for everything modelreg raises on purpose.

Every error carries a one-line ``message`` (what was wrong) and a ``hint``
(what to do about it). The CLI prints both and exits with ``exit_code``;
library callers can catch :class:`ModelregError` alone.
"""

from __future__ import annotations


class ModelregError(Exception):
    """Root of every error modelreg raises deliberately."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        status: int | None = None,
        codes: tuple[str, ...] = (),
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # what a registry answered, for callers that branch on it (never part of the message):
        # the HTTP status, the registry's error codes (DENIED, TOOMANYREQUESTS, …), and the
        # request's method and URL (without credentials or query string)
        self.status = status
        self.codes = codes
        self.method = method
        self.url = url

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class InvalidInput(ModelregError):
    """A user-supplied value (reference, path, flag value, file) is malformed."""

    exit_code = 2


class NotFound(ModelregError):
    """A repository, tag, digest or local path does not exist."""

    exit_code = 3


class AuthError(ModelregError):
    """The registry refused our credentials (401/403)."""

    exit_code = 4


class RegistryUnavailable(ModelregError):
    """The registry could not be reached, timed out or kept failing."""

    exit_code = 5


class RegistryError(ModelregError):
    """The registry answered, but not in a way we can use."""

    exit_code = 5


class IntegrityError(ModelregError):
    """Content does not match its digest, or a manifest/archive is malformed or unsafe."""

    exit_code = 6


class VerificationError(ModelregError):
    """A signature, promotion record or record chain failed verification."""

    exit_code = 7


class PolicyError(ModelregError):
    """A promotion was refused by the policy (gates, thresholds, stage order)."""

    exit_code = 8


class EngineError(ModelregError):
    """A container engine (dockerd) could not be reached, or refused the image."""

    exit_code = 5


class ConflictError(ModelregError):
    """A concurrent writer won a race we could not retry past (or a tag is taken)."""

    exit_code = 9


class LocalStorageError(ModelregError):
    """Writing local files failed: the disk (or quota) is full, or the file system is read-only."""

    exit_code = 10


__all__ = [
    "AuthError",
    "ConflictError",
    "EngineError",
    "IntegrityError",
    "InvalidInput",
    "LocalStorageError",
    "ModelregError",
    "NotFound",
    "PolicyError",
    "RegistryError",
    "RegistryUnavailable",
    "VerificationError",
]
