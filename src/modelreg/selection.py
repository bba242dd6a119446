"""Pulling part of a model: ``--include``/``--exclude`` globs over its file paths.

A model's manifest says which files each layer holds (a large file's layer is
titled with its path; the small-files layer lists them in ``dev.modelreg.files``),
so the layers without a wanted file are never downloaded. A layer holding several
small files is downloaded whole — and verified whole — and only its wanted files
are written. Layers that do not say what they hold (images not pushed by modelreg)
are downloaded and filtered as they are extracted.

Globs are ``fnmatch`` patterns matched against the file's path in the model
(``*`` also crosses ``/``, as in Hugging Face's ``allow_patterns``); a pattern
also matches every file below a directory it matches (``tokenizer`` or
``tokenizer/``).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from .errors import InvalidInput
from .oci import Descriptor, layer_title, listed_files
from .packing import MODEL_ROOT

MAX_PATTERN = 1024


@dataclass(frozen=True)
class Selection:
    """Which files of a model to write: those matching an include (all, when there is
    none) and no exclude."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None
    ) -> Selection | None:
        """A checked selection, or None when nothing is filtered."""
        included = tuple(_checked(p, "--include") for p in include or ())
        excluded = tuple(_checked(p, "--exclude") for p in exclude or ())
        if not included and not excluded:
            return None
        return cls(included, excluded)

    def wants(self, path: str) -> bool:
        if self.include and not any(_matches(path, p) for p in self.include):
            return False
        return not any(_matches(path, p) for p in self.exclude)

    def key(self) -> str:
        """A stable name for this selection (the resolver caches each one apart)."""
        return json.dumps([sorted(self.include), sorted(self.exclude)], separators=(",", ":"))


def _checked(pattern: str, option: str) -> str:
    hint = "write a glob over the model's file paths, e.g. '*.json' or 'tokenizer/*'"
    if not isinstance(pattern, str) or not pattern.strip():
        raise InvalidInput(f"{option} pattern is empty", hint)
    if len(pattern) > MAX_PATTERN or "\0" in pattern or "\\" in pattern:
        raise InvalidInput(f"{option} pattern {pattern[:80]!r} is not a usable glob", hint)
    if pattern.startswith("/") or ".." in pattern.split("/"):
        raise InvalidInput(
            f"{option} pattern {pattern!r} is not relative to the model directory", hint
        )
    if _unbalanced(pattern):
        raise InvalidInput(f"{option} pattern {pattern!r} has an unclosed '['", hint)
    return pattern.removeprefix("./")


def _unbalanced(pattern: str) -> bool:
    depth_open = False
    for index, char in enumerate(pattern):
        if char == "[" and not depth_open:
            depth_open = True
            start = index
        elif char == "]" and depth_open and index > start + 1:
            depth_open = False
    return depth_open


def _matches(path: str, pattern: str) -> bool:
    pattern = pattern.rstrip("/") or pattern
    if fnmatch.fnmatchcase(path, pattern):
        return True
    parents = PurePosixPath(path).parents
    return any(
        fnmatch.fnmatchcase(str(parent), pattern) for parent in parents if str(parent) != "."
    )


def layer_files(layer: Descriptor) -> list[str] | None:
    """The model files ``layer`` holds, from its annotations; None when it does not say."""
    listed = listed_files(layer)
    if listed is not None:
        return sorted(listed)
    title = layer_title(layer)
    if title and title != MODEL_ROOT:
        return [title]
    return None


def select_layers(
    layers: Sequence[Descriptor], selection: Selection | None, what: str
) -> list[Descriptor]:
    """The layers to download for ``selection``; a pattern that matches no file is an error."""
    if selection is None:
        return list(layers)
    chosen: list[Descriptor] = []
    known: list[str] = []
    for layer in layers:
        files = layer_files(layer)
        if files is None or any(selection.wants(name) for name in files):
            chosen.append(layer)
        known.extend(files or ())
    unknown = any(layer_files(layer) is None for layer in layers)
    if not unknown:
        for pattern in selection.include:
            if not any(_matches(name, pattern) for name in known):
                raise InvalidInput(
                    f"--include {pattern!r} matches no file of {what}",
                    f"its files are: {_some(known)}",
                )
        if not any(selection.wants(name) for name in known):
            raise InvalidInput(
                f"the --include/--exclude patterns leave no file of {what}",
                f"its files are: {_some(known)}",
            )
    return chosen


def check_written(written: Sequence[str], selection: Selection | None, what: str) -> None:
    """After extraction (layers that did not list their files): nothing written is an error."""
    if selection is not None and not written:
        raise InvalidInput(
            f"the --include/--exclude patterns leave no file of {what}",
            "list its files with 'modelreg inspect' and adjust the patterns",
        )


def _some(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
