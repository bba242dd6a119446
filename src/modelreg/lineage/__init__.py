"""Lineage of a model (moving into a package; the next commit splits it by idea)."""

from .annotations import *  # noqa: F403
from .annotations import __all__  # noqa: F401
