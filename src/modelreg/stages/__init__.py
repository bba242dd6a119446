"""Stages (moved to a package; split in the next commit)."""

from .verify import *  # noqa: F403
from .verify import _ChainMoved, _Lookups  # noqa: F401
