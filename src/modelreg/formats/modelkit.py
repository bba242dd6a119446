"""KitOps ModelKits, read: the Kitfile (as JSON) is the config, tar layers by kind.

Layers are ``application/vnd.kitops.modelkit.<kind>.v1.{tar,raw}[+gzip|+zstd]``,
kinds model, modelpart, dataset, code, docs and mcpb (an MCP bundle, a zip kept
verbatim). ``kit unpack`` extracts each tar by its entry names, relative to the
unpack directory, and writes a raw layer to its ``org.cncf.model.filepath``;
modelreg does the same.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .._json import load_json_object
from ..errors import IntegrityError, InvalidInput
from ..oci import Manifest
from .layers import FileLayer, raw_file_layer, tar_title

CONFIG_MEDIA_TYPE = "application/vnd.kitops.modelkit.config.v1+json"
MAX_KITFILE_BYTES = 1024 * 1024
_LAYER = re.compile(
    r"application/vnd\.kitops\.modelkit\.(model|modelpart|dataset|code|docs|mcpb)\.v1"
    r"\.(tar|raw)(?:\+(gzip|zstd))?"
)
_FILEPATH = "org.cncf.model.filepath"
_FILE_METADATA = ("org.cncf.model.file.metadata+json",)


def is_modelkit(manifest: Manifest) -> bool:
    return manifest.config.media_type == CONFIG_MEDIA_TYPE


def file_layers(manifest: Manifest) -> list[FileLayer]:
    layers = []
    for index, layer in enumerate(manifest.layers):
        where = f"ModelKit layer {index} ({layer.digest})"
        match = _LAYER.fullmatch(layer.media_type)
        if match is None:
            raise IntegrityError(
                f"{where} has media type {layer.media_type!r}, which KitOps does not define",
                "modelreg reads model, modelpart, dataset, code, docs and mcpb layers (tar "
                "or raw, plain, gzip or zstd); nothing was written",
            )
        kind, packing, compression = match.group(1), match.group(2), match.group(3) or ""
        path = layer.annotations.get(_FILEPATH, "")
        if packing == "tar":
            title = tar_title(path, f"{kind} {layer.digest[:19]}")
            layers.append(FileLayer(layer, True, compression, "", None, title))
            continue
        layers.append(raw_file_layer(layer, path, where, _FILE_METADATA, compression=compression))
    return layers


def parse_kitfile(data: bytes) -> dict[str, Any]:
    body = load_json_object(data, "ModelKit Kitfile", limit=MAX_KITFILE_BYTES)
    for part in ("package", "model"):
        if not isinstance(body.get(part) or {}, dict):
            raise IntegrityError(f"ModelKit Kitfile: {part} must be an object")
    for part in ("code", "datasets", "docs"):
        if not isinstance(body.get(part) or [], list):
            raise IntegrityError(f"ModelKit Kitfile: {part} must be a list")
    return body


def check_layers(manifest: Manifest, kitfile: Mapping[str, Any]) -> None:
    """The Kitfile's model must have a model layer: a ModelKit without it is incomplete,
    unless the model is another ModelKit (``kit pack`` then writes no model layer)."""
    file_layers(manifest)  # an unknown layer type is named as such, first
    model = kitfile.get("model") or {}
    path = model.get("path")
    if not path or not isinstance(path, str):
        return
    if _names_a_modelkit(path):
        raise InvalidInput(
            f"the Kitfile's model is another ModelKit, {path!r}, which modelreg does not follow",
            f"pull or import {path} for the model; this ModelKit holds only what it adds",
        )
    kinds = {m.group(1) for layer in manifest.layers if (m := _LAYER.fullmatch(layer.media_type))}
    if "model" not in kinds:
        raise IntegrityError(
            f"the Kitfile names the model {path!r} but the ModelKit has no model layer",
            "the ModelKit is incomplete; push it again with kit pack/push; nothing was written",
        )


def _names_a_modelkit(path: str) -> bool:
    """As KitOps decides: a ':' or '@' in a path that parses as a reference."""
    from ..reference import parse_reference

    if ":" not in path and "@" not in path:
        return False
    try:
        parse_reference(path)
    except InvalidInput:
        return False
    return True


def facts(kitfile: Mapping[str, Any]) -> dict[str, Any]:
    """What the Kitfile says, in the shape every form maps to lineage."""
    package = kitfile.get("package") or {}
    model = kitfile.get("model") or {}
    found: dict[str, Any] = {"form": "modelkit"}
    name = package.get("name") or model.get("name")
    if isinstance(name, str) and name:
        found["name"] = name
    version = package.get("version") or model.get("version")
    if isinstance(version, str) and version:
        found["version"] = version
    description = package.get("description") or model.get("description")
    if isinstance(description, str) and description:
        found["description"] = description
    authors = package.get("authors")
    if isinstance(authors, list) and authors and all(isinstance(a, str) for a in authors):
        found["authors"] = list(authors)
    license_ = package.get("license") or model.get("license")
    if isinstance(license_, str) and license_:
        found["licenses"] = [license_]
    if isinstance(model.get("framework"), str) and model["framework"]:
        found["framework"] = model["framework"]
    if package:
        found["package"] = {k: v for k, v in package.items() if isinstance(v, (str, list))}
    return found
