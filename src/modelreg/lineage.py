"""Lineage of a model: capture it, carry it in OCI annotations, query it, diff it.

A :class:`Lineage` says where a model came from: code (git), data, hyperparameters,
metrics and the software environment. It travels as manifest annotations (and the
image config's Labels), so any OCI client can read it without modelreg.

Pure data and queries (:func:`to_annotations`, :func:`from_annotations`,
:func:`lineage_as_dict`, :func:`parse_where`, :func:`diff_lineage`) never touch the
disk; the ``capture_*``, ``load_*``, ``digest_data_path`` and ``parse_data_arg``
functions do the I/O.

Annotation keys
---------------
This table is the single source of truth for the keys (the ``KEY_*`` constants
below spell them; a test checks that each constant appears here). A key is absent
when its value is None or empty, except ``dev.modelreg.lineage`` and, when there is
code, ``dev.modelreg.code.dirty``.

======================================  ===============================================
key                                     value
======================================  ===============================================
org.opencontainers.image.revision       git commit (same as dev.modelreg.code.commit)
org.opencontainers.image.source         git remote (same as dev.modelreg.code.remote)
org.opencontainers.image.description    free-text description
dev.modelreg.lineage                    lineage schema version, ``"1"``
dev.modelreg.code.commit                full hash of HEAD
dev.modelreg.code.branch                branch name; absent when HEAD is detached
dev.modelreg.code.dirty                 ``"true"`` or ``"false"``
dev.modelreg.code.diff-digest           ``sha256:`` of the diff from HEAD; only when dirty
dev.modelreg.code.remote                URL of ``origin``, credentials stripped
dev.modelreg.data                       canonical JSON list of {uri, digest, version}
dev.modelreg.params                     canonical JSON object, when it is <= 8 KiB
dev.modelreg.params.blob                digest of blob ``params.json``, when > 8 KiB
dev.modelreg.metrics                    canonical JSON object of numbers
dev.modelreg.env.python                 Python version, e.g. ``3.11.7``
dev.modelreg.env.platform               OCI ``os/arch``, e.g. ``linux/amd64``
dev.modelreg.env.packages               digest of blob ``packages.txt`` (freeze list)
dev.modelreg.env.accelerators           canonical JSON object name -> version
======================================  ===============================================

Every ``dev.modelreg.*`` key and the three ``org.opencontainers.image`` keys above
are reserved: a user annotation may not use them. Unknown ``dev.modelreg.*`` keys
are ignored when reading (a newer writer may add some).

Canonical JSON: sorted keys, ``,`` and ``:`` separators, non-ASCII kept as UTF-8,
floats written so they read back bit-exact, NaN and infinity refused.

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

import contextlib
import copy
import dataclasses
import datetime
import enum
import hashlib
import json
import math
import numbers
import operator
import os
import re
import shutil
import stat
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import unquote

from ._json import canonical_json
from .errors import IntegrityError, InvalidInput, NotFound
from .redact import strip_query_credentials

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

SCHEMA_VERSION: Final = "1"
PARAMS_INLINE_LIMIT: Final = 8 * 1024
PARAMS_BLOB_NAME: Final = "params.json"
PACKAGES_BLOB_NAME: Final = "packages.txt"

KEY_REVISION: Final = "org.opencontainers.image.revision"
KEY_SOURCE: Final = "org.opencontainers.image.source"
KEY_DESCRIPTION: Final = "org.opencontainers.image.description"
NAMESPACE: Final = "dev.modelreg."
KEY_LINEAGE: Final = "dev.modelreg.lineage"
KEY_CODE_COMMIT: Final = "dev.modelreg.code.commit"
KEY_CODE_BRANCH: Final = "dev.modelreg.code.branch"
KEY_CODE_DIRTY: Final = "dev.modelreg.code.dirty"
KEY_CODE_DIFF_DIGEST: Final = "dev.modelreg.code.diff-digest"
KEY_CODE_REMOTE: Final = "dev.modelreg.code.remote"
KEY_DATA: Final = "dev.modelreg.data"
KEY_PARAMS: Final = "dev.modelreg.params"
KEY_PARAMS_BLOB: Final = "dev.modelreg.params.blob"
KEY_METRICS: Final = "dev.modelreg.metrics"
KEY_ENV_PYTHON: Final = "dev.modelreg.env.python"
KEY_ENV_PLATFORM: Final = "dev.modelreg.env.platform"
KEY_ENV_PACKAGES: Final = "dev.modelreg.env.packages"
KEY_ENV_ACCELERATORS: Final = "dev.modelreg.env.accelerators"

_OCI_KEYS: Final = frozenset({KEY_REVISION, KEY_SOURCE, KEY_DESCRIPTION})
_CODE_KEYS: Final = (
    KEY_CODE_COMMIT,
    KEY_CODE_BRANCH,
    KEY_CODE_DIRTY,
    KEY_CODE_DIFF_DIGEST,
    KEY_CODE_REMOTE,
)
_ENV_KEYS: Final = (KEY_ENV_PYTHON, KEY_ENV_PLATFORM, KEY_ENV_PACKAGES, KEY_ENV_ACCELERATORS)

FileHasher = Callable[[Path], str]
"""Returns ``sha256:<hex>`` of a file's bytes, like ``HashCache.file_sha256``."""


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class CodeInfo:
    """The git state the model was trained from."""

    commit: str
    branch: str | None = None
    dirty: bool = False
    diff_digest: str | None = None
    remote: str | None = None


@dataclass(frozen=True)
class DataRef:
    """One input data set: a local path as given (with a content digest) or a URI."""

    uri: str
    digest: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class Environment:
    """The software the model was trained with."""

    python: str
    platform: str
    packages_digest: str | None = None
    accelerators: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Lineage:
    """Everything recorded about how a model was made.

    ``params`` holds JSON values only (str, int, float, bool, None, list, dict).
    ``params_blob`` is set only by :func:`from_annotations` when the params live in
    a blob that was not loaded; ``params`` is then empty.
    """

    code: CodeInfo | None = None
    data: tuple[DataRef, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    environment: Environment | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    description: str | None = None
    params_blob: str | None = None


# ------------------------------------------------------------ JSON value checking

_NOT_JSON_HINT = "use only strings, numbers, booleans, null, lists and mappings with string keys"


def _json_value(value: Any, path: str, what: str, *, lenient: bool) -> Any:
    """Return ``value`` as plain JSON data, or raise InvalidInput naming ``path``.

    Strict mode accepts exactly what reads back equal, so to_annotations round-trips.
    Lenient mode (for user input) also converts what has one obvious JSON form:
    tuples, numpy-style numbers, integer keys, dates (ISO strings).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) or (lenient and isinstance(value, numbers.Integral)):
        return int(value)
    if isinstance(value, float) or (lenient and isinstance(value, numbers.Real)):
        number = float(value)
        if not math.isfinite(number):
            raise InvalidInput(
                f"{what} '{path}' is not a finite number: {number!r}",
                hint="NaN and infinity cannot be stored; drop the value or record it as a string",
            )
        return number
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if lenient and isinstance(key, int) and not isinstance(key, bool):
                key = str(key)
            if not isinstance(key, str):
                raise InvalidInput(
                    f"{what} key {key!r} under '{path}' is not a string", hint=_NOT_JSON_HINT
                )
            result[key] = _json_value(item, _join(path, key), what, lenient=lenient)
        return result
    if isinstance(value, list) or (lenient and isinstance(value, tuple)):
        return [_json_value(v, f"{path}[{i}]", what, lenient=lenient) for i, v in enumerate(value)]
    if lenient and isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    raise InvalidInput(
        f"{what} '{path}' is not a JSON value: {type(value).__name__}", hint=_NOT_JSON_HINT
    )


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _metric_value(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInput(
            f"metric '{name}' is not a number: {value!r}",
            hint="give metrics as NAME=NUMBER, e.g. auc=0.93 (booleans are not numbers)",
        )
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise InvalidInput(
            f"metric '{name}' is not a finite number: {value!r}",
            hint="NaN and infinity cannot be stored; drop the metric",
        )
    return number


def _encoded(value: Any, what: str) -> bytes:
    """Canonical JSON of already-checked JSON data (see the module docstring)."""
    try:
        return canonical_json(value)
    except UnicodeEncodeError as error:
        raise _not_unicode(what, error) from None


def _check_utf8(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _not_unicode(what, error) from None


def _not_unicode(what: str, error: UnicodeEncodeError) -> InvalidInput:
    bad = error.object[error.start : error.end]
    return InvalidInput(
        f"{what} has text that is not valid Unicode: {bad!r}",
        hint="remove lone surrogate characters",
    )


# ------------------------------------------------------------------- annotations


def _is_reserved(key: str) -> bool:
    return key in _OCI_KEYS or key.startswith(NAMESPACE)


def to_annotations(
    lineage: Lineage,
    packages: bytes | None,
    store_blob: Callable[[str, bytes], str],
) -> dict[str, str]:
    """Serialise ``lineage`` to manifest annotations (see the module's key table).

    ``packages`` is the freeze list from :func:`capture_environment`; when given it
    is stored as blob ``packages.txt``. Params over 8 KiB are stored as blob
    ``params.json``. ``store_blob(name, data)`` stores a blob and returns its digest.
    Raises InvalidInput for values that cannot be stored or a reserved user key.
    """
    out: dict[str, str] = {KEY_LINEAGE: SCHEMA_VERSION}
    for key, value in lineage.annotations.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidInput(
                f"annotation {key!r} must map a string to a string, got {value!r}",
                hint="convert annotation keys and values to strings",
            )
        if _is_reserved(key):
            raise InvalidInput(
                f"annotation key '{key}' is reserved for modelreg lineage",
                hint="rename it; keys under dev.modelreg. and the OCI revision, source and "
                "description keys are written from the lineage fields",
            )
        out[key] = value
    if lineage.description is not None:
        out[KEY_DESCRIPTION] = lineage.description

    code = lineage.code
    if code is not None:
        out[KEY_REVISION] = out[KEY_CODE_COMMIT] = code.commit
        out[KEY_CODE_DIRTY] = "true" if code.dirty else "false"
        if code.branch is not None:
            out[KEY_CODE_BRANCH] = code.branch
        if code.diff_digest is not None:
            out[KEY_CODE_DIFF_DIGEST] = code.diff_digest
        if code.remote is not None:
            out[KEY_SOURCE] = out[KEY_CODE_REMOTE] = _stored_url(code.remote)

    if lineage.data:
        entries = [
            {"uri": _stored_url(ref.uri), "digest": ref.digest, "version": ref.version}
            for ref in lineage.data
        ]
        out[KEY_DATA] = _encoded(
            _json_value(entries, "data", "data", lenient=False), "data"
        ).decode()

    if lineage.params:
        raw = _encoded(_json_value(lineage.params, "", "param", lenient=False), "params")
        if len(raw) > PARAMS_INLINE_LIMIT:
            out[KEY_PARAMS_BLOB] = store_blob(PARAMS_BLOB_NAME, raw)
        else:
            out[KEY_PARAMS] = raw.decode()
    elif lineage.params_blob is not None:
        out[KEY_PARAMS_BLOB] = lineage.params_blob

    if lineage.metrics:
        metrics = {_str_key(k, "metric"): _metric_value(k, v) for k, v in lineage.metrics.items()}
        out[KEY_METRICS] = _encoded(metrics, "metrics").decode()

    env = lineage.environment
    if env is not None:
        out[KEY_ENV_PYTHON] = env.python
        out[KEY_ENV_PLATFORM] = env.platform
        if packages is not None:
            # the annotation names the blob that holds the list (for modelreg, a tar layer)
            out[KEY_ENV_PACKAGES] = store_blob(PACKAGES_BLOB_NAME, packages)
        elif env.packages_digest is not None:
            out[KEY_ENV_PACKAGES] = env.packages_digest
        if env.accelerators:
            accelerators = _json_value(env.accelerators, "", "accelerator", lenient=False)
            if not all(isinstance(v, str) for v in accelerators.values()):
                raise InvalidInput(
                    "accelerator versions must be strings", hint="convert them with str()"
                )
            out[KEY_ENV_ACCELERATORS] = _encoded(accelerators, "accelerators").decode()
    elif packages is not None:
        raise InvalidInput(
            "packages were given but the lineage has no environment",
            hint="pass the Environment from capture_environment() with its packages",
        )

    for key, value in out.items():
        _check_utf8(key + value, f"annotation {key!r}")
    return dict(sorted(out.items()))


def _str_key(key: Any, what: str) -> str:
    if not isinstance(key, str):
        raise InvalidInput(f"{what} name {key!r} is not a string", hint="use string names")
    return key


def from_annotations(
    annotations: Mapping[str, str],
    load_blob: Callable[[str], bytes] | None = None,
) -> Lineage:
    """Read a Lineage back from manifest annotations (inverse of :func:`to_annotations`).

    Params stored in a blob are loaded with ``load_blob(digest)`` when it is given;
    otherwise ``params`` is empty and ``params_blob`` holds the blob's digest.
    Raises IntegrityError naming the key whose value is malformed.
    """
    reader = _AnnotationReader(annotations)
    version = reader.get(KEY_LINEAGE)
    if version is not None and version != SCHEMA_VERSION:
        raise IntegrityError(
            f"unsupported lineage schema version {version!r} in {KEY_LINEAGE}",
            hint="upgrade modelreg to read this model's lineage",
        )
    params, params_blob = reader.params(load_blob)
    return Lineage(
        code=reader.code(),
        data=reader.data(),
        params=params,
        metrics=reader.metrics(),
        environment=reader.environment(),
        annotations={k: v for k, v in annotations.items() if not _is_reserved(k)},
        description=reader.get(KEY_DESCRIPTION),
        params_blob=params_blob,
    )


_REWRITE_HINT = "the manifest was written by another tool or damaged; re-push the model"


class _AnnotationReader:
    def __init__(self, annotations: Mapping[str, str]) -> None:
        self._annotations = annotations

    def get(self, key: str) -> str | None:
        value = self._annotations.get(key)
        if value is not None and not isinstance(value, str):
            raise IntegrityError(f"annotation {key} is not a string: {value!r}", _REWRITE_HINT)
        return value

    def require(self, key: str, because: str) -> str:
        value = self.get(key)
        if value is None:
            raise IntegrityError(f"annotation {key} is missing but {because} is set", _REWRITE_HINT)
        return value

    def json(self, key: str, text: str) -> Any:
        try:
            return json.loads(text, parse_constant=_refuse_constant)
        except ValueError as error:
            raise IntegrityError(
                f"annotation {key} is not valid JSON: {_one_line(str(error))}", _REWRITE_HINT
            ) from None

    def bad(self, key: str, what: str) -> IntegrityError:
        return IntegrityError(f"annotation {key} is malformed: {what}", _REWRITE_HINT)

    def code(self) -> CodeInfo | None:
        present = [k for k in _CODE_KEYS if k in self._annotations]
        if not present:
            return None
        commit = self.require(KEY_CODE_COMMIT, present[0])
        dirty = self.require(KEY_CODE_DIRTY, present[0])
        if dirty not in ("true", "false"):
            raise self.bad(KEY_CODE_DIRTY, f"expected 'true' or 'false', got {dirty!r}")
        return CodeInfo(
            commit=commit,
            branch=self.get(KEY_CODE_BRANCH),
            dirty=dirty == "true",
            diff_digest=self.get(KEY_CODE_DIFF_DIGEST),
            remote=self.get(KEY_CODE_REMOTE),
        )

    def data(self) -> tuple[DataRef, ...]:
        text = self.get(KEY_DATA)
        if text is None:
            return ()
        entries = self.json(KEY_DATA, text)
        if not isinstance(entries, list):
            raise self.bad(KEY_DATA, "expected a JSON list")
        refs = []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("uri"), str):
                raise self.bad(KEY_DATA, f"entry without a string 'uri': {entry!r}")
            digest, version = entry.get("digest"), entry.get("version")
            if not all(v is None or isinstance(v, str) for v in (digest, version)):
                raise self.bad(KEY_DATA, f"digest and version must be strings: {entry!r}")
            refs.append(DataRef(entry["uri"], digest, version))
        return tuple(refs)

    def params(self, load_blob: Callable[[str], bytes] | None) -> tuple[dict[str, Any], str | None]:
        inline, blob = self.get(KEY_PARAMS), self.get(KEY_PARAMS_BLOB)
        if inline is not None and blob is not None:
            raise self.bad(KEY_PARAMS_BLOB, f"both {KEY_PARAMS} and {KEY_PARAMS_BLOB} are set")
        if blob is not None:
            if load_blob is None:
                return {}, blob
            data = load_blob(blob)
            _verify_digest(blob, data, KEY_PARAMS_BLOB)
            try:
                inline = data.decode("utf-8")
            except UnicodeDecodeError:
                raise self.bad(KEY_PARAMS_BLOB, "the params blob is not UTF-8") from None
        if inline is None:
            return {}, None
        params = self.json(KEY_PARAMS_BLOB if blob else KEY_PARAMS, inline)
        if not isinstance(params, dict):
            raise self.bad(KEY_PARAMS_BLOB if blob else KEY_PARAMS, "expected a JSON object")
        return params, None

    def metrics(self) -> dict[str, float]:
        text = self.get(KEY_METRICS)
        if text is None:
            return {}
        values = self.json(KEY_METRICS, text)
        if not isinstance(values, dict):
            raise self.bad(KEY_METRICS, "expected a JSON object")
        try:
            return {name: _metric_value(name, value) for name, value in values.items()}
        except InvalidInput as error:
            raise self.bad(KEY_METRICS, error.message) from None

    def environment(self) -> Environment | None:
        present = [k for k in _ENV_KEYS if k in self._annotations]
        if not present:
            return None
        accelerators: dict[str, str] = {}
        text = self.get(KEY_ENV_ACCELERATORS)
        if text is not None:
            values = self.json(KEY_ENV_ACCELERATORS, text)
            if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
                raise self.bad(KEY_ENV_ACCELERATORS, "expected a JSON object of strings")
            accelerators = values
        return Environment(
            python=self.require(KEY_ENV_PYTHON, present[0]),
            platform=self.require(KEY_ENV_PLATFORM, present[0]),
            packages_digest=self.get(KEY_ENV_PACKAGES),
            accelerators=accelerators,
        )


def _verify_digest(digest: str, data: bytes, key: str) -> None:
    algorithm, _, expected = digest.partition(":")
    if algorithm not in ("sha256", "sha512"):
        return  # an algorithm we cannot check; the store vouches for the content
    actual = hashlib.new(algorithm, data).hexdigest()
    if actual != expected:
        raise IntegrityError(
            f"blob named by annotation {key} does not match its digest {digest}",
            hint="the registry returned different content; pull again or re-push the model",
        )


class _NonFiniteNumber(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NonFiniteNumber(f"{name} is not allowed")


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ------------------------------------------------------------------ code capture

# Pinned so that the digest does not depend on the user's git config.
_DIFF_FLAGS: Final = (
    "--binary",
    "--full-index",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--no-renames",
    "--no-relative",
    "--src-prefix=a/",
    "--dst-prefix=b/",
    "--submodule=short",
    "--diff-algorithm=myers",
    "--indent-heuristic",
    "--unified=3",
    "--inter-hunk-context=0",
)


def _git_command(directory: Path, *args: str) -> list[str]:
    # core.fsmonitor could name a program from the repo's own config; never run it.
    return ["git", "-c", "core.fsmonitor=false", "-C", str(directory), *args]


def _git_env() -> dict[str, str]:
    # No optional index lock: capture must not race a concurrent git in the same tree.
    return {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}


def _git(directory: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        _git_command(directory, *args),
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env=_git_env(),
        check=False,
    )


def capture_code(directory: Path) -> CodeInfo | None:
    """Describe the git work tree containing ``directory``.

    Returns None when ``directory`` is not in a git work tree, the repository has
    no commit yet, or git is not installed. Runs four git commands at most, all
    local.
    """
    if not directory.is_dir():
        raise NotFound(
            f"code directory does not exist: {directory}",
            hint="pass the directory of the training code's git work tree",
        )
    try:
        head = _git(
            directory, "rev-parse", "--is-inside-work-tree", "HEAD", "--symbolic-full-name", "HEAD"
        )
    except FileNotFoundError:
        return None
    if head.returncode != 0:
        if b"dubious ownership" in head.stderr:
            raise InvalidInput(
                f"git refuses to read {directory}: the repository belongs to another user",
                hint="if you trust it: git config --global --add safe.directory "
                "<the repository's top directory>",
            )
        return None
    lines = head.stdout.decode("utf-8", "replace").splitlines()
    if len(lines) != 3 or lines[0] != "true":
        return None
    commit, ref = lines[1], lines[2]
    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None

    status = _git(directory, "status", "--porcelain", "-z", "--untracked-files=normal")
    if status.returncode != 0:
        raise InvalidInput(
            f"git status failed in {directory}: "
            f"{_one_line(status.stderr.decode('utf-8', 'replace'))}",
            hint=f"run 'git -C {directory} status' to see why",
        )
    dirty = bool(status.stdout)
    remote = _git(directory, "remote", "get-url", "origin")
    remote_url = remote.stdout.decode("utf-8", "replace").strip() if remote.returncode == 0 else ""
    return CodeInfo(
        commit=commit,
        branch=branch,
        dirty=dirty,
        diff_digest=_diff_digest(directory) if dirty else None,
        remote=_stored_url(remote_url) if remote_url else None,
    )


def _diff_digest(directory: Path) -> str:
    # Streamed: a changed large tracked file can make a diff of gigabytes.
    digest = hashlib.sha256()
    with subprocess.Popen(
        _git_command(directory, "diff", "HEAD", *_DIFF_FLAGS),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=_git_env(),
    ) as process:
        assert process.stdout is not None
        while chunk := process.stdout.read(1 << 20):
            digest.update(chunk)
    if process.returncode != 0:
        raise InvalidInput(
            f"git diff HEAD failed in {directory} (exit code {process.returncode})",
            hint=f"run 'git -C {directory} diff HEAD' to see why",
        )
    return f"sha256:{digest.hexdigest()}"


_SCHEME_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_SSH_SCHEMES: Final = frozenset({"ssh", "git+ssh", "ssh+git"})
_TOKEN_USER_SCHEMES: Final = frozenset({"http", "https", "ftp", "ftps"})


def _authority_end(url: str, start: int) -> int:
    ends = [i for i in (url.find(c, start) for c in "/?#") if i != -1]
    return min(ends, default=len(url))


def _strip_credentials(url: str) -> str:
    """Drop secrets from a URL's userinfo.

    ``user:secret@`` is always dropped (an ssh URL keeps ``user@``); a lone user is
    dropped for http(s)/ftp(s), where it is often a token, and kept elsewhere
    (``ssh://git@host``). scp-like ``git@host:repo`` has no secret and is kept.
    """
    match = _SCHEME_RE.match(url)
    if match is None:
        return url
    scheme = match.group(1).lower()
    start = match.end()
    end = _authority_end(url, start)
    userinfo, at, host = url[start:end].rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    if scheme in _SSH_SCHEMES:
        keep = f"{user}@"
    elif colon or scheme in _TOKEN_USER_SCHEMES:
        keep = ""
    else:
        return url
    return url[:start] + keep + host + url[end:]


def _stored_url(url: str) -> str:
    """``url`` as stored in annotations: no userinfo secret, no credential parameter."""
    return strip_query_credentials(_strip_credentials(url)) if _SCHEME_RE.match(url) else url


# ----------------------------------------------------------- environment capture

_OCI_ARCH: Final = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "x64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
    "x86": "386",
    "armv7l": "arm/v7",
    "armv6l": "arm/v6",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
_OCI_OS: Final = {"linux": "linux", "darwin": "darwin", "win32": "windows", "cygwin": "windows"}

_ACCELERATOR_PACKAGES: Final = frozenset(
    {
        "torch",
        "jax",
        "jaxlib",
        "tensorflow",
        "tensorflow-gpu",
        "tensorflow-cpu",
        "tensorflow-macos",
        "tensorflow-metal",
        "triton",
        "onnxruntime-gpu",
        "cupy",
    }
)
_ACCELERATOR_PREFIXES: Final = (
    "nvidia-cuda-runtime-",
    "nvidia-cudnn-",
    "nvidia-nccl-",
    "jax-cuda",
    "jax-rocm",
    "cupy-cuda",
    "pytorch-triton",
)


def capture_environment() -> tuple[Environment, bytes]:
    """Describe this Python and machine; return it with the freeze list's bytes.

    The freeze list is ``name==version`` lines, names normalised (PEP 503), sorted,
    one version per name (the one that imports first on ``sys.path``). Accelerator
    versions come from that list (nothing is imported) plus the NVIDIA driver when
    ``nvidia-smi`` is on PATH and answers within 2 s.
    """
    installed = _installed_distributions()
    packages = "".join(f"{name}=={version}\n" for name, version in sorted(installed.items()))
    raw = packages.encode("utf-8")
    accelerators = {
        name: version
        for name, version in installed.items()
        if name in _ACCELERATOR_PACKAGES or name.startswith(_ACCELERATOR_PREFIXES)
    }
    accelerators.update(_nvidia_smi())
    import platform  # here, not at module import: only environment capture needs it

    environment = Environment(
        python=platform.python_version(),
        platform=_oci_platform(sys.platform, platform.machine()),
        packages_digest=f"sha256:{hashlib.sha256(raw).hexdigest()}",
        accelerators=dict(sorted(accelerators.items())),
    )
    return environment, raw


def _normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_distributions() -> dict[str, str]:
    import importlib.metadata  # here: ~20 ms of imports a push with capture=False never needs

    installed: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name, version = _name_and_version(dist.read_text("METADATA") or dist.read_text("PKG-INFO"))
        if name and version:
            installed.setdefault(_normalize_name(name), version)
    return installed


def _name_and_version(metadata: str | None) -> tuple[str, str]:
    """``Name`` and ``Version`` from a core-metadata header, read as plain lines: the
    email parser ``Distribution.metadata`` uses costs ~1 ms a package, a push ~0.1 s."""
    name = version = ""
    for line in (metadata or "").splitlines():
        if not line.strip():
            break  # the end of the header: the description follows
        key, _, value = line.partition(":")
        if key == "Name" and not name:
            name = value.strip()
        elif key == "Version" and not version:
            version = value.strip()
    return name, version


def _oci_platform(system: str, machine: str) -> str:
    os_name = "freebsd" if system.startswith("freebsd") else _OCI_OS.get(system, system)
    arch = _OCI_ARCH.get(machine.lower(), machine.lower())
    return f"{os_name}/{arch}"


def _nvidia_smi() -> dict[str, str]:
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return {}
    try:
        process = subprocess.Popen(
            [executable, "--query-gpu=driver_version,name", "--format=csv,noheader"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
    except OSError:
        return {}
    try:
        output, _ = process.communicate(timeout=2)
    except subprocess.TimeoutExpired:
        # A wedged driver is common; do not let it stall the training script's exit.
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.communicate(timeout=1)
        return {}
    if process.returncode != 0:
        return {}
    drivers: set[str] = set()
    gpus: Counter[str] = Counter()
    for line in output.decode("utf-8", "replace").splitlines():
        driver, _, name = line.partition(",")
        if driver.strip():
            drivers.add(driver.strip())
            gpus[name.strip()] += 1
    if not drivers:
        return {}
    return {
        "nvidia-driver": ", ".join(sorted(drivers)),
        "nvidia-gpu": ", ".join(f"{count}x {name}" for name, count in sorted(gpus.items())),
    }


# ------------------------------------------------------------------ data capture

_CHUNK: Final = 1 << 20
_FILE_DIGEST: Final = re.compile(r"sha256:([0-9a-f]{64})")
_DATA_HINT: Final = (
    "give an existing file or directory, or a URI with a scheme such as s3://bucket/key@v3"
)


def sha256_file(path: Path) -> str:
    """Return ``sha256:<hex>`` of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as stream:
        while size := stream.readinto(view):
            digest.update(view[:size])
    return f"sha256:{digest.hexdigest()}"


def digest_data_path(path: Path, file_sha256: FileHasher = sha256_file) -> str:
    """Return ``sha256:<hex>`` identifying a data file or directory by content.

    A file's digest is the sha256 of its bytes. A directory's is the sha256 of the
    lines ``<relative posix path>\\0<file sha256 hex>\\n`` of every regular file
    below it, sorted by path bytes: the same content anywhere gives the same digest.
    ``file_sha256`` hashes one file (inject a cache to skip unchanged files).
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise NotFound(f"data path does not exist: {path}", hint=_DATA_HINT) from None
    except OSError as error:
        raise InvalidInput(
            f"cannot read data path {path}: {error.strerror}", hint="check its permissions"
        ) from None
    if stat.S_ISREG(mode):
        return f"sha256:{_file_hex(file_sha256, path)}"
    if not stat.S_ISDIR(mode):
        raise InvalidInput(f"data path is neither a file nor a directory: {path}", hint=_DATA_HINT)
    digest = hashlib.sha256()
    for relative, file in _regular_files(path):
        digest.update(relative + b"\0" + _file_hex(file_sha256, file).encode("ascii") + b"\n")
    return f"sha256:{digest.hexdigest()}"


def _file_hex(file_sha256: FileHasher, path: Path) -> str:
    try:
        digest = file_sha256(path)
    except OSError as error:
        raise InvalidInput(
            f"cannot read data file {path}: {error.strerror}", hint="check its permissions"
        ) from None
    match = _FILE_DIGEST.fullmatch(digest)
    if match is None:
        raise ValueError(f"file_sha256 must return 'sha256:' and 64 hex digits, got {digest!r}")
    return match.group(1)


def _regular_files(root: Path) -> list[tuple[bytes, Path]]:
    """Every regular file below ``root`` (symlinks followed) as (relative path bytes, path)."""
    root_stat = root.stat()
    files: list[tuple[bytes, Path]] = []
    # Each entry carries the (device, inode) of its ancestors to detect symlink loops.
    pending: list[tuple[Path, str, frozenset[tuple[int, int]]]] = [
        (root, "", frozenset({(root_stat.st_dev, root_stat.st_ino)}))
    ]
    while pending:
        directory, prefix, ancestors = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as error:
            raise InvalidInput(
                f"cannot list data directory {directory}: {error.strerror}",
                hint="check its permissions",
            ) from None
        for entry in entries:
            path = Path(entry.path)
            relative = prefix + entry.name
            try:
                info = os.stat(entry.path)
            except OSError:
                raise InvalidInput(
                    f"cannot digest {path}: it is a broken symlink or unreadable",
                    hint="fix or remove it; a data directory is digested whole",
                ) from None
            if stat.S_ISDIR(info.st_mode):
                identity = (info.st_dev, info.st_ino)
                if identity in ancestors:
                    raise InvalidInput(
                        f"cannot digest {path}: a symlink loops back to a parent directory",
                        hint="remove the loop; a data directory is digested whole",
                    )
                pending.append((path, relative + "/", ancestors | {identity}))
            elif stat.S_ISREG(info.st_mode):
                files.append((os.fsencode(relative), path))
            else:
                raise InvalidInput(
                    f"cannot digest {path}: not a regular file or directory",
                    hint="remove it or point --data at a directory of regular files",
                )
    files.sort()
    return files


def parse_data_arg(arg: str, file_sha256: FileHasher = sha256_file) -> DataRef:
    """Turn a ``--data`` value into a DataRef.

    ``scheme://...[@VERSION]`` is a remote URI (credentials stripped); the version
    is the text after the last ``@`` in the URI's path, when it has no ``/``. A
    ``file://`` URI or anything else is a local path that must exist; it is kept as
    given (normalised) and its content digested.
    """
    if not arg.strip():
        raise InvalidInput("--data value is empty", hint=_DATA_HINT)
    match = _SCHEME_RE.match(arg)
    if match is not None and match.group(1).lower() == "file":
        return _file_uri_ref(arg, match.end(), file_sha256)
    if match is not None:
        return _remote_ref(arg, match.end())
    path = Path(arg)
    if not path.exists():
        raise NotFound(f"--data path does not exist: {arg}", hint=_DATA_HINT)
    uri = os.path.normpath(arg).replace(os.sep, "/")
    return DataRef(uri, digest_data_path(path, file_sha256), None)


_VERSION_RE: Final = re.compile(r"[^/?#@\s]+")


def _remote_ref(arg: str, start: int) -> DataRef:
    end = _authority_end(arg, start)
    uri, version = arg, None
    at = arg.rfind("@")
    if at >= end and not any(c in arg[end:at] for c in "?#"):
        candidate = arg[at + 1 :]
        if not candidate:
            raise InvalidInput(
                f"--data version after '@' is empty: {arg}",
                hint="write URI@VERSION, e.g. s3://bucket/train.parquet@v12, or drop the '@'",
            )
        if _VERSION_RE.fullmatch(candidate):
            uri, version = arg[:at], candidate
    return DataRef(_stored_url(uri), None, version)


def _file_uri_ref(arg: str, start: int, file_sha256: FileHasher) -> DataRef:
    end = _authority_end(arg, start)
    if arg[start:end] not in ("", "localhost"):
        raise InvalidInput(
            f"--data file URI names another host: {arg}",
            hint="use file:///path for a local path, or a remote scheme",
        )
    path = Path(unquote(arg[end:]))
    if not path.exists():
        raise NotFound(f"--data path does not exist: {arg}", hint=_DATA_HINT)
    return DataRef(arg, digest_data_path(path, file_sha256), None)


# ---------------------------------------------------------- params and metrics

_FILE_FORMATS: Final = (".json", ".yaml", ".yml", ".toml")


def load_params_file(path: Path) -> dict[str, Any]:
    """Read hyperparameters from a .json, .yaml/.yml or .toml mapping (nesting kept).

    Dates become ISO strings and integer keys strings; NaN and infinity are refused.
    """
    data = _load_mapping_file(path, "params")
    result: dict[str, Any] = _json_value(data, "", "param", lenient=True)
    return result


def load_metrics_file(path: Path) -> dict[str, float]:
    """Read metrics from a .json, .yaml/.yml or .toml mapping of numbers.

    Nested mappings are flattened with dots: ``{"val": {"auc": 0.9}}`` gives ``val.auc``.
    """
    return _flatten_metrics(_load_mapping_file(path, "metrics"))


def _flatten_metrics(values: Mapping[Any, Any]) -> dict[str, float]:
    flat: dict[str, float] = {}

    def visit(node: Mapping[Any, Any], prefix: str) -> None:
        for key, value in node.items():
            name = _join(prefix, _str_key(key, "metric"))
            if isinstance(value, Mapping):
                visit(value, name)
            elif name in flat:
                raise InvalidInput(
                    f"metric '{name}' is given twice", hint="a dotted name collides with nesting"
                )
            else:
                flat[name] = _metric_value(name, value)

    visit(values, "")
    return flat


def _load_mapping_file(path: Path, what: str) -> dict[Any, Any]:
    suffix = path.suffix.lower()
    if suffix not in _FILE_FORMATS:
        raise InvalidInput(
            f"{what} file has an unknown format: {path}",
            hint="use a .json, .yaml, .yml or .toml file",
        )
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{what} file does not exist: {path}", hint="check the path") from None
    except OSError as error:
        raise InvalidInput(
            f"cannot read {what} file {path}: {error.strerror}", hint="check the path"
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(
            f"{what} file is not UTF-8 text: {path}", hint="save it as UTF-8"
        ) from None
    if suffix == ".json":
        data = _parse_json_text(text, path, what)
    elif suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise InvalidInput(
                f"{what} file {path} is not valid TOML: {_one_line(str(error))}",
                hint="fix the file's syntax",
            ) from None
    else:
        data = _parse_yaml_text(text, path, what)
        if data is None:  # an empty YAML document
            data = {}
    if not isinstance(data, dict):
        raise InvalidInput(
            f"{what} file {path} must hold a mapping at the top level, not {type(data).__name__}",
            hint="write it as key: value pairs",
        )
    return data


def _parse_json_text(text: str, path: Path, what: str) -> Any:
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except _NonFiniteNumber as error:
        raise InvalidInput(
            f"{what} file {path} contains a non-finite number: {error}",
            hint="NaN and infinity cannot be stored; remove them",
        ) from None
    except json.JSONDecodeError as error:
        raise InvalidInput(
            f"{what} file {path} is not valid JSON at line {error.lineno}, "
            f"column {error.colno}: {error.msg}",
            hint="fix the file's syntax",
        ) from None


def _parse_yaml_text(text: str, path: Path, what: str) -> Any:
    try:
        import yaml  # imported here: PyYAML is needed only for YAML files
    except ImportError:
        raise InvalidInput(
            f"reading {path} needs PyYAML, which is not installed", hint="pip install pyyaml"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = error.problem or str(error)
        raise InvalidInput(
            f"{what} file {path} is not valid YAML{where}: {_one_line(problem)}",
            hint="fix the file's syntax",
        ) from None
    except yaml.YAMLError as error:
        raise InvalidInput(
            f"{what} file {path} is not valid YAML: {_one_line(str(error))}",
            hint="fix the file's syntax",
        ) from None


def parse_key_values(pairs: Sequence[str]) -> dict[str, Any]:
    """Parse ``-p KEY=VALUE`` pairs into (nested) params.

    A value that is a JSON scalar (number, true, false, null, or a quoted string)
    takes that type; anything else is a string. ``opt.lr=0.1`` nests. A repeated
    key keeps its last value.
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        key, equals, raw = pair.partition("=")
        key = key.strip()
        if not equals or not key:
            raise InvalidInput(
                f"param {pair!r} is not KEY=VALUE",
                hint="write -p name=value, e.g. -p lr=0.01 or -p opt.lr=0.1",
            )
        parts = key.split(".")
        if not all(parts):
            raise InvalidInput(
                f"param key {key!r} has an empty part between dots",
                hint="write dotted keys like opt.lr",
            )
        node = params
        for depth, part in enumerate(parts):
            existing = node.get(part)
            is_leaf = depth == len(parts) - 1
            if (is_leaf and isinstance(existing, dict)) or (
                not is_leaf and existing is not None and not isinstance(existing, dict)
            ):
                taken = ".".join(parts[: depth + 1])
                raise InvalidInput(
                    f"param '{key}' conflicts with param '{taken}'",
                    hint="a key cannot hold both a value and nested keys",
                )
            if is_leaf:
                node[part] = _scalar(raw)
            else:
                node = node.setdefault(part, {})
    return params


def _scalar(raw: str) -> Any:
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except ValueError:
        return raw
    if isinstance(value, (dict, list)) or (isinstance(value, float) and not math.isfinite(value)):
        return raw
    return value


_NUMBER_RE: Final = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def parse_metrics(pairs: Sequence[str]) -> dict[str, float]:
    """Parse ``-m NAME=NUMBER`` pairs; booleans, NaN and infinity are refused."""
    metrics: dict[str, float] = {}
    for pair in pairs:
        name, equals, raw = pair.partition("=")
        name = name.strip()
        if not equals or not name:
            raise InvalidInput(
                f"metric {pair!r} is not NAME=NUMBER", hint="write -m name=number, e.g. -m auc=0.93"
            )
        text = raw.strip()
        if not _NUMBER_RE.fullmatch(text):
            raise InvalidInput(
                f"metric '{name}' is not a number: {text!r}",
                hint="give metrics as NAME=NUMBER, e.g. auc=0.93",
            )
        metrics[name] = _metric_value(name, float(text))
    return metrics


def capture_lineage(
    *,
    code_dir: Path | None = Path("."),
    data: Sequence[str | DataRef] = (),
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
    description: str | None = None,
    capture_env: bool = True,
    file_sha256: FileHasher = sha256_file,
) -> tuple[Lineage, bytes | None]:
    """Capture a model's lineage in one call, for training scripts.

    ``code_dir=None`` skips git; ``data`` items are ``--data`` strings or DataRefs;
    nested ``metrics`` are flattened with dots. Returns the lineage and the freeze
    list bytes to pass to :func:`to_annotations` (None when ``capture_env`` is off).
    """
    user_annotations = dict(annotations or {})
    # Fail now, before a long training run's end, rather than at push time.
    to_annotations(Lineage(annotations=user_annotations), None, _no_blobs)
    environment, packages = capture_environment() if capture_env else (None, None)
    lineage = Lineage(
        code=capture_code(code_dir) if code_dir is not None else None,
        data=tuple(
            item if isinstance(item, DataRef) else parse_data_arg(item, file_sha256)
            for item in data
        ),
        params=_json_value(dict(params or {}), "", "param", lenient=True),
        metrics=_flatten_metrics(metrics or {}),
        environment=environment,
        annotations=user_annotations,
        description=description,
    )
    return lineage, packages


def with_fields(base: Lineage, source: Lineage, names: Sequence[str]) -> Lineage:
    """``base`` with the fields ``names`` taken from ``source`` (per-field overrides)."""
    return dataclasses.replace(base, **{name: getattr(source, name) for name in names})


def _no_blobs(name: str, data: bytes) -> str:
    raise AssertionError("no blob is stored for annotations alone")


# ------------------------------------------------------------------------ queries


def lineage_as_dict(lineage: Lineage) -> dict[str, Any]:
    """Return the lineage as plain nested JSON data (for queries and ``--json``)."""
    code, env = lineage.code, lineage.environment
    return {
        "code": None
        if code is None
        else {
            "commit": code.commit,
            "branch": code.branch,
            "dirty": code.dirty,
            "diff_digest": code.diff_digest,
            "remote": code.remote,
        },
        "data": [{"uri": d.uri, "digest": d.digest, "version": d.version} for d in lineage.data],
        "params": copy.deepcopy(dict(lineage.params)),
        "params_blob": lineage.params_blob,
        "metrics": dict(lineage.metrics),
        "environment": None
        if env is None
        else {
            "python": env.python,
            "platform": env.platform,
            "packages_digest": env.packages_digest,
            "accelerators": dict(env.accelerators),
        },
        "annotations": dict(lineage.annotations),
        "description": lineage.description,
    }


_WHERE_RE: Final = re.compile(
    r"\s*(?P<path>[^\s=!<>~]+)\s*(?P<op>==|!=|<=|>=|=|<|>|~)\s*(?P<value>.*?)\s*", re.DOTALL
)
_ROOTS: Final = {
    "code": "code",
    "data": "data",
    "params": "params",
    "metrics": "metrics",
    "environment": "environment",
    "env": "environment",
    "annotations": "annotations",
    "description": "description",
}
_WHERE_HINT: Final = (
    "write FIELD OP VALUE, e.g. metrics.auc>=0.9 or code.branch=main; FIELD is a dotted "
    "path starting with code, data, params, metrics, env, annotations or description; "
    "OP is one of = != < <= > >= ~ (contains); quote VALUE to compare it as text"
)
Operator = Literal["=", "!=", "<", "<=", ">", ">=", "~"]
_OPERATORS: Final[dict[str, Operator]] = {
    "=": "=",
    "==": "=",
    "!=": "!=",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
    "~": "~",
}
_ORDER: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_VERSION_LIKE: Final = re.compile(r"\d{1,18}(\.\d{1,18})+", re.ASCII)


@dataclass(frozen=True)
class Condition:
    """One parsed ``--where`` test: ``path op value``.

    Numbers compare numerically when both sides are numbers; otherwise the field's
    text (JSON spelling: ``true``, ``null``) is compared, with dotted versions such
    as ``3.11.7`` ordered component-wise. A path through a list tests each item.
    """

    path: tuple[str, ...]
    op: Operator
    value: str
    number: int | float | None = None

    def matches(self, lineage: Mapping[str, Any]) -> bool:
        """Test a :func:`lineage_as_dict` result. A missing field matches only ``!=``."""
        found = list(_lookup(lineage, self.path))
        if self.op == "!=":
            return not any(self._equal(value) for value in found)
        return any(self._test(value) for value in found)

    def _equal(self, actual: Any) -> bool:
        if self.number is not None and _is_number(actual):
            return bool(actual == self.number)
        return _as_text(actual) == self.value

    def _test(self, actual: Any) -> bool:
        if self.op == "=":
            return self._equal(actual)
        if self.op == "~":
            return self.value in _as_text(actual)
        compare = _ORDER[self.op]
        if self.number is not None and _is_number(actual):
            return compare(actual, self.number)
        text = _as_text(actual)
        if _VERSION_LIKE.fullmatch(text) and _VERSION_LIKE.fullmatch(self.value):
            return compare(_version_tuple(text), _version_tuple(self.value))
        return compare(text, self.value)


def parse_where(expr: str) -> Condition:
    """Parse ``metrics.auc>=0.9``-style expressions; InvalidInput when malformed."""
    match = _WHERE_RE.fullmatch(expr)
    if match is None:
        raise InvalidInput(f"cannot parse where expression {expr!r}", hint=_WHERE_HINT)
    parts = match.group("path").split(".")
    if not all(parts):
        raise InvalidInput(
            f"where field {match.group('path')!r} has an empty part", hint=_WHERE_HINT
        )
    root = _ROOTS.get(parts[0])
    if root is None:
        raise InvalidInput(f"unknown where field {parts[0]!r} in {expr!r}", hint=_WHERE_HINT)
    op: str = match.group("op")
    value: str = match.group("value")
    quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
    if quoted:
        value = value[1:-1]
    elif not value:
        raise InvalidInput(f"where expression {expr!r} has no value", hint=_WHERE_HINT)
    elif value[0] in "=!<>~":  # '=>', '=!' and the like are typos, not values
        raise InvalidInput(
            f"where expression {expr!r} has an unknown operator {op + value[0]!r}",
            hint=_WHERE_HINT,
        )
    number: int | float | None = None
    if not quoted and _NUMBER_RE.fullmatch(value):
        parsed = float(value)
        if math.isfinite(parsed):
            is_int = re.fullmatch(r"[+-]?[0-9]+", value) is not None
            number = int(value) if is_int else parsed
    return Condition(path=(root, *parts[1:]), op=_OPERATORS[op], value=value, number=number)


def _lookup(node: Any, path: Sequence[str]) -> Iterator[Any]:
    if not path:
        if isinstance(node, list):
            yield from node
        else:
            yield node
        return
    if isinstance(node, Mapping):
        # Longest key first, so a dotted key such as metric "val.auc" resolves.
        for size in range(len(path), 0, -1):
            key = ".".join(path[:size])
            if key in node:
                yield from _lookup(node[key], path[size:])
                return
    elif isinstance(node, list):
        if re.fullmatch(r"[0-9]{1,9}", path[0]):
            index = int(path[0])
            if index < len(node):
                yield from _lookup(node[index], path[1:])
        else:
            for item in node:
                yield from _lookup(item, path)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr
    )


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


# -------------------------------------------------------------------------- diffs


class _Missing(enum.Enum):
    MISSING = "missing"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing.MISSING
"""``Change.before``/``after`` when the field does not exist on that side."""


@dataclass(frozen=True)
class Change:
    """One difference between two lineages; ``before``/``after`` may be MISSING."""

    path: str
    before: Any
    after: Any

    @property
    def kind(self) -> Literal["added", "removed", "changed"]:
        if self.before is MISSING:
            return "added"
        if self.after is MISSING:
            return "removed"
        return "changed"


def diff_lineage(a: Lineage, b: Lineage) -> dict[str, list[Change]]:
    """Differences from ``a`` to ``b``, grouped as data, code, params, environment, metrics.

    Paths are dotted (``params.opt.lr``); data entries are keyed by URI
    (``data.s3://b/train``) with {digest, version} values. Params not loaded from
    their blob are compared by the blob digest (path ``params_blob``).
    """
    da, db = lineage_as_dict(a), lineage_as_dict(b)

    def params(d: dict[str, Any]) -> dict[str, Any]:
        flat = _flatten(d["params"], "params")
        if d["params_blob"] is not None:
            flat["params_blob"] = d["params_blob"]
        return flat

    return {
        "data": _diff(_data_entries(a.data), _data_entries(b.data)),
        "code": _diff(_flatten(da["code"] or {}, "code"), _flatten(db["code"] or {}, "code")),
        "params": _diff(params(da), params(db)),
        "environment": _diff(
            _flatten(da["environment"] or {}, "environment"),
            _flatten(db["environment"] or {}, "environment"),
        ),
        "metrics": _diff(_flatten(da["metrics"], "metrics"), _flatten(db["metrics"], "metrics")),
    }


def _flatten(node: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    # An empty mapping adds no path: {} and an absent key are not worth a change line.
    flat: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path))
        else:
            flat[path] = value
    return flat


def _data_entries(refs: Sequence[DataRef]) -> dict[str, Any]:
    entries: dict[str, Any] = {}
    seen: Counter[str] = Counter()
    for ref in refs:
        seen[ref.uri] += 1
        key = f"data.{ref.uri}" if seen[ref.uri] == 1 else f"data.{ref.uri}#{seen[ref.uri]}"
        entries[key] = {"digest": ref.digest, "version": ref.version}
    return entries


def _diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    changes = []
    for path in sorted(before.keys() | after.keys()):
        old, new = before.get(path, MISSING), after.get(path, MISSING)
        if not _same(old, new):
            changes.append(Change(path, old, new))
    return changes


def _same(a: Any, b: Any) -> bool:
    """Equality that tells True from 1 (a flag turned into a count is a change)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
