from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelreg.errors import InvalidInput
from modelreg.reference import Reference, parse_reference

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fraud", Reference(None, "fraud")),
        ("fraud:v3", Reference(None, "fraud", "v3")),
        ("team/fraud:production", Reference(None, "team/fraud", "production")),
        (f"fraud@{DIGEST}", Reference(None, "fraud", None, DIGEST)),
        ("localhost/ml/fraud", Reference("localhost", "ml/fraud")),
        ("localhost:5000/ml/fraud:v1", Reference("localhost:5000", "ml/fraud", "v1")),
        (
            f"127.0.0.1:5000/ml/fraud@{DIGEST}",
            Reference("127.0.0.1:5000", "ml/fraud", None, DIGEST),
        ),
        (
            "ghcr.io/org/model:v1.2.0-bert-large",
            Reference("ghcr.io", "org/model", "v1.2.0-bert-large"),
        ),
        ("[::1]:5000/m", Reference("[::1]:5000", "m")),
        (f"r.example/a/b:t@{DIGEST}", Reference("r.example", "a/b", "t", DIGEST)),
    ],
)
def test_parses_docker_rule(text: str, expected: Reference) -> None:
    parsed = parse_reference(text)
    assert parsed == expected
    assert str(parsed) == text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        (" fraud", "padded"),
        ("Fraud/x", "invalid repository"),  # uppercase first component is a host with no dot
        ("fraud:bad tag", "invalid tag"),
        ("fraud@sha256:1234", "invalid digest"),
        ("fraud@md5:" + "a" * 32, "unsupported digest algorithm"),
        ("registry.example.com:5000/", "invalid repository"),
        ("localhost:5000/ML/x", "invalid repository"),
        ("a//b", "invalid repository"),
        ("x:" + "t" * 129, "invalid tag"),
    ],
)
def test_refuses_bad_references_with_a_hint(text: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_reference(text)
    assert fragment in caught.value.message
    assert caught.value.hint


def test_plain_name_never_means_docker_hub() -> None:
    assert parse_reference("library/ubuntu").is_local
    # like docker, a single component is always a repository, dots or not
    assert parse_reference("bert.base").is_local


@given(st.text(max_size=80))
def test_parse_never_raises_anything_but_invalid_input(text: str) -> None:
    try:
        parsed = parse_reference(text)
    except InvalidInput:
        return
    assert parse_reference(str(parsed)) == parsed


@given(
    st.from_regex(
        r"[a-z0-9]+(?:[_-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)?", fullmatch=True
    ).filter(lambda name: len(name) < 200),
    st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)),
    st.one_of(st.none(), st.just("localhost:5000"), st.just("reg.example:443")),
)
def test_round_trip(repository: str, tag: str | None, registry: str | None) -> None:
    ref = Reference(registry, repository, tag)
    assert parse_reference(str(ref)) == ref
