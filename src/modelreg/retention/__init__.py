"""Retention (moved to a package; split in the next commit)."""

from .planning import *  # noqa: F403
from .planning import VersionDecision  # noqa: F401
