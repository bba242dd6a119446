"""Lineage as OCI annotations: the key table, the writer and the reader.

Pure data: :func:`to_annotations` and :func:`from_annotations` never touch the
disk; blobs go through the ``store_blob`` and ``load_blob`` callbacks. One small
writer per section, mirrored by one reader method per section.

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
dev.modelreg.weights                    safetensors dtypes/tensors/parameters (safetensors.py)
======================================  ===============================================

Every ``dev.modelreg.*`` key and the three ``org.opencontainers.image`` keys above
are reserved: a user annotation may not use them. Unknown ``dev.modelreg.*`` keys
are ignored when reading (a newer writer may add some).

Canonical JSON: sorted keys, ``,`` and ``:`` separators, non-ASCII kept as UTF-8,
floats written so they read back bit-exact, NaN and infinity refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any, Final

from .._json import JsonReadError, read_json
from ..errors import IntegrityError, InvalidInput
from .model import CodeInfo, DataRef, Environment, Lineage
from .values import check_utf8, encoded, json_value, metric_value, one_line, str_key

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


def _stored_url(url: str) -> str:
    """``url`` without credentials (userinfo, query parameters), however the lineage was built."""
    from .capture.urls import stored_url  # imported here: the capture package imports this module

    return stored_url(url)


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
    out.update(_user_annotations(lineage.annotations))
    if lineage.description is not None:
        out[KEY_DESCRIPTION] = lineage.description
    out.update(_code_annotations(lineage.code))
    out.update(_data_annotations(lineage.data))
    out.update(_params_annotations(lineage, store_blob))
    out.update(_metrics_annotations(lineage.metrics))
    out.update(_environment_annotations(lineage.environment, packages, store_blob))
    for key, value in out.items():
        check_utf8(key + value, f"annotation {key!r}")
    return dict(sorted(out.items()))


def _user_annotations(annotations: Mapping[str, str]) -> dict[str, str]:
    for key, value in annotations.items():
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
    return dict(annotations)


def _code_annotations(code: CodeInfo | None) -> dict[str, str]:
    if code is None:
        return {}
    out = {
        KEY_REVISION: code.commit,
        KEY_CODE_COMMIT: code.commit,
        KEY_CODE_DIRTY: "true" if code.dirty else "false",
    }
    if code.branch is not None:
        out[KEY_CODE_BRANCH] = code.branch
    if code.diff_digest is not None:
        out[KEY_CODE_DIFF_DIGEST] = code.diff_digest
    if code.remote is not None:
        out[KEY_SOURCE] = out[KEY_CODE_REMOTE] = _stored_url(code.remote)
    return out


def _data_annotations(data: tuple[DataRef, ...]) -> dict[str, str]:
    if not data:
        return {}
    entries = [
        {"uri": _stored_url(ref.uri), "digest": ref.digest, "version": ref.version} for ref in data
    ]
    return {KEY_DATA: encoded(json_value(entries, "data", "data", lenient=False), "data").decode()}


def _params_annotations(
    lineage: Lineage, store_blob: Callable[[str, bytes], str]
) -> dict[str, str]:
    if not lineage.params:
        return {} if lineage.params_blob is None else {KEY_PARAMS_BLOB: lineage.params_blob}
    raw = encoded(json_value(lineage.params, "", "param", lenient=False), "params")
    if len(raw) > PARAMS_INLINE_LIMIT:
        return {KEY_PARAMS_BLOB: store_blob(PARAMS_BLOB_NAME, raw)}
    return {KEY_PARAMS: raw.decode()}


def _metrics_annotations(metrics: Mapping[str, float]) -> dict[str, str]:
    if not metrics:
        return {}
    values = {str_key(k, "metric"): metric_value(k, v) for k, v in metrics.items()}
    return {KEY_METRICS: encoded(values, "metrics").decode()}


def _environment_annotations(
    env: Environment | None, packages: bytes | None, store_blob: Callable[[str, bytes], str]
) -> dict[str, str]:
    if env is None:
        if packages is not None:
            raise InvalidInput(
                "packages were given but the lineage has no environment",
                hint="pass the Environment from capture_environment() with its packages",
            )
        return {}
    out = {KEY_ENV_PYTHON: env.python, KEY_ENV_PLATFORM: env.platform}
    if packages is not None:
        # the annotation names the blob that holds the list (for modelreg, a tar layer)
        out[KEY_ENV_PACKAGES] = store_blob(PACKAGES_BLOB_NAME, packages)
    elif env.packages_digest is not None:
        out[KEY_ENV_PACKAGES] = env.packages_digest
    if env.accelerators:
        accelerators = json_value(env.accelerators, "", "accelerator", lenient=False)
        if not all(isinstance(v, str) for v in accelerators.values()):
            raise InvalidInput(
                "accelerator versions must be strings", hint="convert them with str()"
            )
        out[KEY_ENV_ACCELERATORS] = encoded(accelerators, "accelerators").decode()
    return out


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
            return read_json(text)
        except JsonReadError as error:
            raise IntegrityError(
                f"annotation {key} is not valid JSON: {one_line(str(error))}", _REWRITE_HINT
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
            return {name: metric_value(name, value) for name, value in values.items()}
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
