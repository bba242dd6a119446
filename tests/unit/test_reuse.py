"""formats.reuse, the pure parts: where an image layer's files are; file lists that fit."""

from __future__ import annotations

import pytest

from modelreg.errors import IntegrityError
from modelreg.formats.reuse import ANNOTATION_ROOT, ReusedLayer, fit_file_lists, root_of
from modelreg.oci import ANNOTATION_FILES, Descriptor

DIGEST = "sha256:" + "a" * 64


def layer(**annotations: str) -> Descriptor:
    return Descriptor("application/vnd.oci.image.layer.v1.tar", DIGEST, 10, annotations)


def test_a_layer_without_a_root_is_modelregs_own_and_slash_means_at_their_paths() -> None:
    assert root_of(layer()) == "model"
    assert root_of(layer(**{ANNOTATION_ROOT: "/"})) is None


@pytest.mark.parametrize("value", ["", "..", "../", "model", "/etc", "//"])
def test_any_other_root_is_refused(value: str) -> None:
    with pytest.raises(IntegrityError, match=ANNOTATION_ROOT):
        root_of(layer(**{ANNOTATION_ROOT: value}))


def reused(listing: str) -> ReusedLayer:
    return ReusedLayer(
        layer(**{ANNOTATION_FILES: listing, ANNOTATION_ROOT: "/"}), DIGEST, {}, frozenset()
    )


def test_the_longest_file_lists_are_left_out_until_the_rest_fit() -> None:
    layers = [reused("x" * 30), reused("y" * 100), reused("z" * 50)]
    kept = fit_file_lists(layers, budget=90)
    assert [ANNOTATION_FILES in r.layer.annotations for r in kept] == [True, False, True]
    assert all(r.layer.annotations[ANNOTATION_ROOT] == "/" for r in kept)
    assert fit_file_lists(layers, budget=1000) == layers
    assert not any(ANNOTATION_FILES in r.layer.annotations for r in fit_file_lists(layers, 10))
