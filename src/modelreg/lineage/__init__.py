"""Lineage of a model: capture it, carry it in OCI annotations, query it, diff it.

A :class:`Lineage` says where a model came from: code (git), data, hyperparameters,
metrics and the software environment. It travels as manifest annotations (and the
image config's Labels), so any OCI client can read it without modelreg.

One idea a module:

* :mod:`.model`: the data classes (pure data), :func:`lineage_as_dict`, :func:`with_fields`;
* :mod:`.annotations`: the annotation key table, :func:`to_annotations` and
  :func:`from_annotations` (pure);
* :mod:`.capture`: :func:`capture_lineage` and its parts, which do the I/O:
  :mod:`.capture.git`, :mod:`.capture.environment`, :mod:`.capture.data`;
* :mod:`.inputs`: params and metrics from files and ``KEY=VALUE`` pairs;
* :mod:`.query`: the ``--where`` language (pure);
* :mod:`.diff`: differences between two lineages (pure).

Choices worth knowing:

* A local ``--data`` path is stored as the user gave it (normalised, relative stays
  relative) plus its content digest: the digest identifies the data, the path is
  only a label, and absolute machine paths would leak into a shared registry.
* Untracked (not ignored) files make the work tree dirty, since a new file may be
  what the training ran; the diff digest covers tracked changes only (untracked
  files may be big outputs). With git's default config it equals
  ``git diff HEAD --binary --full-index | sha256sum``; the diff options are pinned
  so that the user's git config does not change it.
* A directory digest covers every regular file below it, following symlinks;
  anything it cannot digest (a broken symlink, a socket, a symlink loop, an
  unreadable file) is an error, never skipped. Empty directories add nothing.
"""

from __future__ import annotations

from ..digest import sha256_file
from .annotations import from_annotations, to_annotations
from .capture import capture_lineage
from .capture.data import digest_data_path, parse_data_arg
from .capture.environment import capture_environment
from .capture.git import capture_code
from .diff import MISSING, Change, diff_lineage
from .inputs import load_metrics_file, load_params_file, parse_key_values, parse_metrics
from .model import CodeInfo, DataRef, Environment, FileHasher, Lineage, lineage_as_dict, with_fields
from .query import Condition, parse_where

__all__ = [
    "MISSING",
    "Change",
    "CodeInfo",
    "Condition",
    "DataRef",
    "Environment",
    "FileHasher",
    "Lineage",
    "capture_code",
    "capture_environment",
    "capture_lineage",
    "diff_lineage",
    "digest_data_path",
    "from_annotations",
    "lineage_as_dict",
    "load_metrics_file",
    "load_params_file",
    "parse_data_arg",
    "parse_key_values",
    "parse_metrics",
    "parse_where",
    "sha256_file",
    "to_annotations",
    "with_fields",
]
