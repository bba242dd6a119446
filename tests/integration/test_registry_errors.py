"""A registry's error answer keeps its structure on the error: status, codes, method, URL.

Against the hostile registry (a real HTTP server that answers what it is told);
the one-line message and hint are what they always were, the structure rides along.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.hostile_registry import HostileRegistry, Reply, error_reply

from modelreg.errors import AuthError, ModelregError, RegistryError
from modelreg.reference import parse_reference
from modelreg.store import RegistryOptions, Stores
from modelreg.store.registry_errors import without_credentials

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def quick_stores(tmp_path: Path) -> Iterator[Stores]:
    made = Stores(home=tmp_path / "home", options=RegistryOptions(retries=1))
    yield made
    made.close()


def test_a_throttled_fetch_carries_status_codes_method_and_url(
    hostile: HostileRegistry, quick_stores: Stores
) -> None:
    hostile.override("/v2/ml/fraud/manifests/v1", error_reply(429, "TOOMANYREQUESTS", "slow down"))
    repository = quick_stores.repository(parse_reference(f"{hostile.host}/ml/fraud:v1"))
    with pytest.raises(RegistryError) as caught:
        repository.fetch_manifest("v1")
    error = caught.value
    assert error.message == f"{hostile.host}/ml/fraud: fetching manifest v1: HTTP 429: slow down"
    assert (error.status, error.codes, error.method) == (429, ("TOOMANYREQUESTS",), "GET")
    assert error.url == f"http://{hostile.host}/v2/ml/fraud/manifests/v1"


def test_a_denial_carries_the_registry_code(hostile: HostileRegistry, quick_stores: Stores) -> None:
    hostile.override("/v2/ml/fraud/tags/list", error_reply(403, "DENIED", "not yours"))
    repository = quick_stores.repository(parse_reference(f"{hostile.host}/ml/fraud:v1"))
    with pytest.raises(AuthError) as caught:
        repository.list_tags()
    error = caught.value
    assert error.message == f"registry {hostile.host} requires authentication"
    assert (error.status, error.codes, error.method) == (403, ("DENIED",), "GET")
    assert error.url is not None and error.url.endswith("/v2/ml/fraud/tags/list")


def test_the_url_on_an_error_has_no_upload_state_or_credentials(
    hostile: HostileRegistry, quick_stores: Stores
) -> None:
    location = "/v2/ml/fraud/blobs/uploads/u1?_state=SECRET-STATE"
    hostile.override(
        "/v2/ml/fraud/blobs/uploads/", Reply(202, b"", {"Location": location}), methods=["POST"]
    )
    repository = quick_stores.repository(parse_reference(f"{hostile.host}/ml/fraud:v1"))
    with pytest.raises(ModelregError) as caught:
        repository.push_small_blob(b"weights")
    error = caught.value
    assert (error.status, error.method) == (405, "PUT")
    assert error.url == f"http://{hostile.host}/v2/ml/fraud/blobs/uploads/u1"
    assert "SECRET" not in str(error.url)


def test_errors_not_from_an_answer_carry_no_structure() -> None:
    error = RegistryError("something", "do this")
    assert (error.status, error.codes, error.method, error.url) == (None, (), None, None)
    assert str(error) == "something (do this)"


def test_without_credentials_drops_user_password_and_query() -> None:
    url = "https://alice:pw@registry.test:5000/v2/x/blobs/uploads/1?_state=s&digest=d"
    assert without_credentials(url) == "https://registry.test:5000/v2/x/blobs/uploads/1"
