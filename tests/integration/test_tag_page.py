"""A huge tag-list page is refused before it is parsed, so listing stays bounded in memory.

A hostile (or just enormous) registry answers ``tags/list`` with one 30 MB page of
3.4 million tags: ``versions`` refuses it with one line and exit 6 instead of
building millions of strings (peak RSS 555 MB before; measured by
scripts/measure_tag_list.py, not asserted here). Pages within the bound are read
as before, extra fields (a GCR-style ``manifest`` map) included.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.hostile_registry import HostileRegistry, Reply
from test_hostile import assert_refused, run_cli

from modelreg.errors import IntegrityError
from modelreg.reference import parse_reference
from modelreg.store import Stores, remote

NAME = "ml/huge"
PATH = f"/v2/{NAME}/tags/list"


def serve_page(hostile: HostileRegistry, body: dict[str, object]) -> None:
    data = json.dumps(body, separators=(",", ":")).encode()
    hostile.override(PATH, Reply(200, data, {"Content-Type": "application/json"}))


def test_one_page_of_millions_of_tags_is_refused(hostile: HostileRegistry, tmp_path: Path) -> None:
    tags = [f"{i:06x}" for i in range(3_400_000)]
    serve_page(hostile, {"name": NAME, "tags": tags})
    run = run_cli("versions", f"{hostile.host}/{NAME}", cwd=tmp_path)
    assert_refused(run, 6, f"{NAME}: tag list has over {remote.MAX_TAGS} tags")


def list_tags(hostile: HostileRegistry, stores: Stores) -> list[str]:
    return stores.repository(parse_reference(f"{hostile.host}/{NAME}")).list_tags()


def test_the_bound_is_exact(
    hostile: HostileRegistry, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote, "MAX_TAGS", 1000)
    tags = [f"v{i}" for i in range(1, 1001)]
    serve_page(hostile, {"name": NAME, "tags": tags})
    assert list_tags(hostile, stores) == sorted(tags)
    serve_page(hostile, {"name": NAME, "tags": [*tags, "v1001"]})
    with pytest.raises(IntegrityError, match="has over 1000 tags"):
        list_tags(hostile, stores)


def test_extra_fields_within_the_bound_are_still_read(
    hostile: HostileRegistry, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote, "MAX_TAGS", 1000)
    tags = [f"v{i}" for i in range(1, 301)]
    manifests = {
        f"sha256:{i:064x}": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "tag": [t]}
        for i, t in enumerate(tags)
    }
    serve_page(hostile, {"child": [], "manifest": manifests, "name": NAME, "tags": tags})
    assert list_tags(hostile, stores) == sorted(tags)


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"tags": "v1"}', b'{"tags": [1, 2]}', b'["v1"]'],
)
def test_a_malformed_page_is_refused(hostile: HostileRegistry, stores: Stores, body: bytes) -> None:
    hostile.override(PATH, Reply(200, body, {"Content-Type": "application/json"}))
    with pytest.raises(IntegrityError, match=r"tag list is (not valid JSON|malformed)"):
        list_tags(hostile, stores)
