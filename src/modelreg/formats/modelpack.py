"""CNCF ModelPack (model-spec v0.0.7): the second manifest over an image's blobs, and reading.

Writing: a modelreg image's file layers are uncompressed tars whose entries sit
under ``model/``. A spec-following unpacker (modctl's tar codec) extracts a tar
layer by its entry names and ignores ``org.cncf.model.filepath`` for tars, so it
writes ``DEST/model/<file>``; the annotation says exactly that path
(``model/weights.bin``, or ``model`` for the layer that bundles the small
files). The manifest's ``subject`` is the image, so it is a referrer of it, and
the annotation ``dev.modelreg.root=model`` tells modelreg's own reader to take
the files from below ``model/``, as the image pull does.

Reading: both namespaces (``cncf`` and the legacy ``cnai``), raw and tar layers,
gzip and zstd. A raw layer is written to its ``filepath`` (executable when its file
metadata says so, as modctl restores it); a tar by its entry names, its ``filepath``
only a title. Anything else is refused by name.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._json import canonical_json, load_json_object
from ..digest import hex_part, sha256_digest
from ..errors import IntegrityError
from ..oci import (
    ANNOTATION_FILES,
    IMAGE_MANIFEST,
    Descriptor,
    Manifest,
    layer_title,
    listed_files,
)
from ..packing import META_ROOT, MODEL_ROOT
from .layers import FileLayer, raw_file_layer, tar_title

ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.cncf.model.config.v1+json"
ARTIFACT_TYPES = (ARTIFACT_TYPE, "application/vnd.cnai.model.manifest.v1+json")
CONFIG_MEDIA_TYPES = (CONFIG_MEDIA_TYPE, "application/vnd.cnai.model.config.v1+json")
FILEPATH_KEYS = ("org.cncf.model.filepath", "org.cnai.model.filepath")
FILE_METADATA_KEYS = ("org.cncf.model.file.metadata+json", "org.cnai.model.file.metadata+json")
ANNOTATION_ROOT = "dev.modelreg.root"
SPEC_VERSION = "v0.0.7"
MAX_CONFIG_BYTES = 1024 * 1024

_LAYER = re.compile(
    r"application/vnd\.(cncf|cnai)\.model\.(weight|weight\.config|doc|code|dataset)"
    r"\.v1\.(raw|tar|tar\+gzip|tar\+zstd)"
)
# the image's per-layer annotations modelreg writes (see transfer._layer_annotations)

WEIGHT_SUFFIXES = {
    ".safetensors": "safetensors",
    ".gguf": "gguf",
    ".onnx": "onnx",
    ".pt": "pt",
    ".pth": "pt",
    ".bin": "",
    ".ckpt": "",
    ".h5": "",
    ".keras": "",
    ".pb": "",
    ".tflite": "",
    ".msgpack": "",
    ".npz": "",
    ".pkl": "",
    ".joblib": "",
}
DOC_NAMES = ("readme", "license", "licence", "notice", "model_card", "modelcard")
DOC_SUFFIXES = (".md", ".rst", ".txt", ".pdf")
CODE_SUFFIXES = (".py", ".sh", ".ipynb", ".js", ".go", ".rs", ".c", ".cpp", ".java")


def is_modelpack(manifest: Manifest) -> bool:
    return (
        manifest.artifact_type in ARTIFACT_TYPES or manifest.config.media_type in CONFIG_MEDIA_TYPES
    )


def modelpack_tag(image_digest: str) -> str:
    """The tag of the ModelPack form of the image ``image_digest``: one per version."""
    return f"sha256-{hex_part(image_digest)}.modelpack"


# ----- reading -------------------------------------------------------------------------


def file_layers(manifest: Manifest) -> list[FileLayer]:
    root = MODEL_ROOT if manifest.annotations.get(ANNOTATION_ROOT) == MODEL_ROOT else None
    layers = []
    for index, layer in enumerate(manifest.layers):
        where = f"ModelPack layer {index} ({layer.digest})"
        match = _LAYER.fullmatch(layer.media_type)
        if match is None:
            raise IntegrityError(
                f"{where} has media type {layer.media_type!r}, which ModelPack does not define",
                "modelreg reads weight, weight.config, doc, code and dataset layers (raw or tar, "
                "tar+gzip, tar+zstd); nothing was written",
            )
        packing = match.group(3)
        path = next((layer.annotations[k] for k in FILEPATH_KEYS if k in layer.annotations), "")
        if packing != "raw":
            title = tar_title(path, layer.digest[:19])
            layers.append(FileLayer(layer, True, packing.partition("+")[2], "", root, title))
            continue
        layers.append(raw_file_layer(layer, path, where, FILE_METADATA_KEYS, root=root))
    return layers


def parse_config(data: bytes) -> dict[str, Any]:
    body = load_json_object(data, "ModelPack config", limit=MAX_CONFIG_BYTES)
    for part in ("descriptor", "config", "modelfs"):
        if not isinstance(body.get(part, {}), dict):
            raise IntegrityError(f"ModelPack config: {part} must be an object")
    return body


def facts(config: Mapping[str, Any]) -> dict[str, Any]:
    """What the config says, in the shape every form maps to lineage (see formats.lineage)."""
    descriptor = config.get("descriptor") or {}
    technical = config.get("config") or {}
    found: dict[str, Any] = {"form": "modelpack"}
    for key in ("name", "version", "description", "sourceURL", "revision", "createdAt", "vendor"):
        if isinstance(descriptor.get(key), str) and descriptor[key]:
            found[key] = descriptor[key]
    for key in ("authors", "licenses"):
        values = descriptor.get(key)
        if isinstance(values, list) and all(isinstance(v, str) for v in values) and values:
            found[key] = list(values)
    for key in ("architecture", "format", "paramSize", "precision", "quantization"):
        if isinstance(technical.get(key), str) and technical[key]:
            found[key] = technical[key]
    return found


# ----- writing ---------------------------------------------------------------------------


def layer_media_type(names: Iterable[str]) -> str:
    """weight / weight.config / doc / code for a tar layer holding ``names`` (heuristic)."""
    kinds = {_kind(name) for name in names}
    for kind in ("weight", "weight.config", "code", "doc"):
        if kind in kinds:
            return f"application/vnd.cncf.model.{kind}.v1.tar"
    return "application/vnd.cncf.model.weight.config.v1.tar"


def _kind(name: str) -> str:
    base = name.rsplit("/", 1)[-1].lower()
    suffix = "." + base.rsplit(".", 1)[-1] if "." in base else ""
    if suffix in WEIGHT_SUFFIXES:
        return "weight"
    if base.startswith(DOC_NAMES) or suffix in DOC_SUFFIXES:
        return "doc"
    if suffix in CODE_SUFFIXES:
        return "code"
    return "weight.config"


def layer_files(layer: Descriptor) -> list[str]:
    listed = listed_files(layer)
    if listed is not None:
        return list(listed)
    title = layer_title(layer)
    return [title] if title else []


def image_file_layers(image: Manifest) -> list[Descriptor]:
    """The image's layers that hold model files (not its /.modelreg lineage layers)."""
    return [
        layer
        for layer in image.layers
        if not (layer_title(layer) or "").startswith(f"{META_ROOT}/")
    ]


def detect(names: Sequence[str], source: Path | None = None) -> dict[str, str]:
    """``config.format`` (and, from safetensors headers under ``source``, precision/paramSize)."""
    formats = [WEIGHT_SUFFIXES.get("." + n.rsplit(".", 1)[-1].lower(), "") for n in names]
    found = sorted({f for f in formats if f})
    out: dict[str, str] = {}
    if len(found) == 1:
        out["format"] = found[0]
    if source is not None and found == ["safetensors"]:
        dtypes: set[str] = set()
        params = 0
        for name in names:
            if name.endswith(".safetensors"):
                header = _safetensors_header(source / name)
                if header is None:
                    return out
                for tensor in header.values():
                    dtypes.add(str(tensor.get("dtype", "")))
                    count = 1
                    for dim in tensor.get("shape", []):
                        count *= int(dim)
                    params += count
        precisions = [_PRECISIONS[d] for d in sorted(dtypes) if d in _PRECISIONS]
        if precisions and len(precisions) == len(dtypes):
            out["precision"] = ",".join(precisions)
        if params >= 100:
            out["paramSize"] = param_size(params)
    return out


_PRECISIONS = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3",
    "F8_E5M2": "float8_e5m2",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
    "U8": "uint8",
    "U16": "uint16",
    "U32": "uint32",
    "U64": "uint64",
    "BOOL": "bool",
}


def param_size(count: int) -> str:
    """``<count><scale-prefix>`` as config.md defines it: 6.7B, 100M, 1.2K."""
    for prefix, scale in (("Q", 10**15), ("T", 10**12), ("B", 10**9), ("M", 10**6)):
        if count >= scale:
            return f"{count / scale:.1f}".removesuffix(".0") + prefix
    return f"{count / 1000:.1f}".removesuffix(".0") + "K"


def _safetensors_header(path: Path) -> dict[str, dict[str, Any]] | None:
    """The tensor table of a safetensors file, or None when it is not one."""
    try:
        with open(path, "rb") as handle:
            length = struct.unpack("<Q", handle.read(8))[0]
            if length > 64 * 1024 * 1024:
                return None
            body = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error):
        return None
    if not isinstance(body, dict):
        return None
    tensors = {k: v for k, v in body.items() if k != "__metadata__" and isinstance(v, dict)}
    for tensor in tensors.values():
        shape = tensor.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
            return None
    return tensors


def build(
    image: Manifest,
    image_descriptor: Descriptor,
    descriptor: Mapping[str, Any],
    technical: Mapping[str, str],
) -> tuple[bytes, Manifest]:
    """The ModelPack config bytes and manifest over the image's file layers. Pure data."""
    layers = []
    for layer in image_file_layers(image):
        names = layer_files(layer)
        title = layer_title(layer) or ""
        bundled = ANNOTATION_FILES in layer.annotations or title == MODEL_ROOT
        filepath = MODEL_ROOT if bundled else f"{MODEL_ROOT}/{title}"
        layers.append(
            Descriptor(
                layer_media_type(names),
                layer.digest,
                layer.size,
                {FILEPATH_KEYS[0]: filepath},
            )
        )
    if not layers:
        raise IntegrityError(f"image {image_descriptor.digest} has no file layers")
    config = canonical_json(
        {
            "descriptor": {k: v for k, v in descriptor.items() if v},
            "config": {k: v for k, v in technical.items() if v},
            "modelfs": {"type": "layers", "diffIds": [layer.digest for layer in layers]},
        }
    )
    manifest = Manifest(
        config=Descriptor(CONFIG_MEDIA_TYPE, sha256_digest(config), len(config)),
        layers=tuple(layers),
        annotations={ANNOTATION_ROOT: MODEL_ROOT},
        artifact_type=ARTIFACT_TYPE,
        subject=Descriptor(
            image_descriptor.media_type, image_descriptor.digest, image_descriptor.size
        ),
        media_type=IMAGE_MANIFEST,
    )
    return config, manifest
