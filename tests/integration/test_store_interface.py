"""The store interface callers use without knowing the store: tag_map, local maintenance.

Both real stores: the local OCI layout and a real registry:2.
"""

from __future__ import annotations

from modelreg._json import canonical_json
from modelreg.oci import EMPTY_JSON, EMPTY_JSON_BYTES, IMAGE_MANIFEST, empty_config_descriptor
from modelreg.reference import parse_reference
from modelreg.store import Stores
from modelreg.store.base import LocalMaintenance


def _manifest(note: str) -> bytes:
    config = empty_config_descriptor()
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": IMAGE_MANIFEST,
            "config": {"mediaType": EMPTY_JSON, "digest": config.digest, "size": config.size},
            "layers": [],
            "annotations": {"note": note},
        }
    )


def test_tag_map_names_each_existing_tag_on_either_store(target: str, stores: Stores) -> None:
    repository = stores.repository(parse_reference(target))
    repository.push_blob([EMPTY_JSON_BYTES], len(EMPTY_JSON_BYTES))
    first = repository.push_manifest(_manifest("a"), IMAGE_MANIFEST, ["v1", "latest"])
    second = repository.push_manifest(_manifest("b"), IMAGE_MANIFEST, ["v2"])
    every = repository.tag_map()
    assert {tag: found.digest for tag, found in every.items()} == {
        "v1": first.digest,
        "latest": first.digest,
        "v2": second.digest,
    }
    assert every["v2"].size == second.size
    # only those asked for, and a tag that does not exist is left out
    some = repository.tag_map(["v2", "gone"])
    assert {tag: found.digest for tag, found in some.items()} == {"v2": second.digest}


def test_only_the_local_store_offers_local_maintenance(target: str, stores: Stores) -> None:
    repository = stores.repository(parse_reference(target))
    assert isinstance(repository, LocalMaintenance) == ("/" not in target)
