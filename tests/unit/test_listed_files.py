"""What a bundle layer says it holds (``dev.modelreg.files``): one reading for every caller."""

from __future__ import annotations

import json

import pytest

from modelreg.errors import IntegrityError
from modelreg.formats.modelpack import layer_files as modelpack_layer_files
from modelreg.oci import ANNOTATION_FILES, ANNOTATION_LAYER_TITLE, Descriptor, listed_files
from modelreg.selection import layer_files as selected_layer_files

DIGEST = "sha256:" + "ab" * 32
SHA = "sha256:" + "cd" * 32


def layer(annotations: dict[str, str]) -> Descriptor:
    return Descriptor("application/vnd.oci.image.layer.v1.tar", DIGEST, 1024, annotations)


def test_a_listed_bundle_reads_as_its_map() -> None:
    bundle = layer({ANNOTATION_FILES: json.dumps({"b.txt": SHA, "a/c.json": SHA})})
    assert listed_files(bundle) == {"b.txt": SHA, "a/c.json": SHA}
    assert selected_layer_files(bundle) == ["a/c.json", "b.txt"]
    assert sorted(modelpack_layer_files(bundle)) == ["a/c.json", "b.txt"]


def test_a_layer_without_a_list_is_named_by_its_title() -> None:
    single = layer({ANNOTATION_LAYER_TITLE: "weights.bin"})
    assert listed_files(single) is None
    assert selected_layer_files(single) == ["weights.bin"]
    assert modelpack_layer_files(single) == ["weights.bin"]


@pytest.mark.parametrize(
    "garbled",
    ["{not json", "[]", '"a"', json.dumps({"a": 1}), json.dumps({"a": None}), "null"],
)
def test_a_garbled_list_is_refused_by_every_reader(garbled: str) -> None:
    bad = layer({ANNOTATION_FILES: garbled})
    for read in (listed_files, selected_layer_files, modelpack_layer_files):
        with pytest.raises(IntegrityError, match=r"dev\.modelreg\.files is malformed"):
            read(bad)
