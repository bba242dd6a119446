"""Params and metrics as the user gives them: files (JSON, YAML, TOML) and KEY=VALUE pairs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from .._json import JsonReadError, read_json
from ..errors import InvalidInput, NotFound
from .values import NUMBER_RE, join, json_value, metric_value, one_line, str_key

_FILE_FORMATS: Final = (".json", ".yaml", ".yml", ".toml")


def load_params_file(path: Path) -> dict[str, Any]:
    """Read hyperparameters from a .json, .yaml/.yml or .toml mapping (nesting kept).

    Dates become ISO strings and integer keys strings; NaN and infinity are refused.
    """
    data = _load_mapping_file(path, "params")
    result: dict[str, Any] = json_value(data, "", "param", lenient=True)
    return result


def load_metrics_file(path: Path) -> dict[str, float]:
    """Read metrics from a .json, .yaml/.yml or .toml mapping of numbers.

    Nested mappings are flattened with dots: ``{"val": {"auc": 0.9}}`` gives ``val.auc``.
    """
    return flatten_metrics(_load_mapping_file(path, "metrics"))


def flatten_metrics(values: Mapping[Any, Any]) -> dict[str, float]:
    flat: dict[str, float] = {}

    def visit(node: Mapping[Any, Any], prefix: str) -> None:
        for key, value in node.items():
            name = join(prefix, str_key(key, "metric"))
            if isinstance(value, Mapping):
                visit(value, name)
            elif name in flat:
                raise InvalidInput(
                    f"metric '{name}' is given twice", hint="a dotted name collides with nesting"
                )
            else:
                flat[name] = metric_value(name, value)

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
                f"{what} file {path} is not valid TOML: {one_line(str(error))}",
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
        return read_json(text)
    except JsonReadError as error:
        if error.problem == "number":
            raise InvalidInput(
                f"{what} file {path} contains a non-finite number: {error.detail}",
                hint="NaN and infinity cannot be stored; remove them",
            ) from None
        where = f" at line {error.line}, column {error.column}" if error.line else ""
        raise InvalidInput(
            f"{what} file {path} is not valid JSON{where}: {error.detail}",
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
            f"{what} file {path} is not valid YAML{where}: {one_line(problem)}",
            hint="fix the file's syntax",
        ) from None
    except yaml.YAMLError as error:
        raise InvalidInput(
            f"{what} file {path} is not valid YAML: {one_line(str(error))}",
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
        key, raw = _split_pair(
            pair, "param", "KEY=VALUE", "write -p name=value, e.g. -p lr=0.01 or -p opt.lr=0.1"
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


def _split_pair(pair: str, what: str, form: str, hint: str) -> tuple[str, str]:
    key, equals, value = pair.partition("=")
    key = key.strip()
    if not equals or not key:
        raise InvalidInput(f"{what} {pair!r} is not {form}", hint=hint)
    return key, value


def _scalar(raw: str) -> Any:
    try:
        value = read_json(raw)
    except JsonReadError as error:
        if error.problem == "unicode":  # a quoted escape such as "\ud800" names no text
            raise InvalidInput(
                f"param value {raw!r} has text that is not valid Unicode",
                hint="remove lone surrogate characters",
            ) from None
        return raw  # NaN, 1e400 and anything not JSON stay text
    return raw if isinstance(value, (dict, list)) else value


def parse_metrics(pairs: Sequence[str]) -> dict[str, float]:
    """Parse ``-m NAME=NUMBER`` pairs; booleans, NaN and infinity are refused."""
    metrics: dict[str, float] = {}
    for pair in pairs:
        name, raw = _split_pair(
            pair, "metric", "NAME=NUMBER", "write -m name=number, e.g. -m auc=0.93"
        )
        text = raw.strip()
        if not NUMBER_RE.fullmatch(text):
            raise InvalidInput(
                f"metric '{name}' is not a number: {text!r}",
                hint="give metrics as NAME=NUMBER, e.g. auc=0.93",
            )
        metrics[name] = metric_value(name, float(text))
    return metrics
