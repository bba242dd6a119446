"""Property-based tests (hypothesis) for everything modelreg parses from untrusted bytes.

Each parser gets arbitrary bytes, arbitrary JSON, and mutations of valid documents, and
may only ever answer with its own error (``InvalidInput`` for references a user typed,
``IntegrityError`` for content a store sent); valid documents round-trip byte for byte.
Tar extraction gets random member sequences and must never write outside its target or
leave anything but regular files and directories.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.tars import member, tar_with
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from modelreg.errors import IntegrityError, InvalidInput
from modelreg.oci import (
    DOCKER_MANIFEST,
    IMAGE_MANIFEST,
    Descriptor,
    Manifest,
)
from modelreg.packing import unpack_layer
from modelreg.promotion import (
    ENVELOPE_MEDIA_TYPE,
    PREDICATE_TYPE,
    RECORD_ARTIFACT,
    PromotionRecord,
    read_record,
    record_tag,
)
from modelreg.reference import Reference, parse_reference
from modelreg.signing import IN_TOTO_PAYLOAD_TYPE, make_statement
from modelreg.store.layout import LayoutRepository, LayoutStore

FAST = settings(max_examples=150, deadline=None)
SLOW = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# ----- strategies -----------------------------------------------------------------------------


def json_of(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | text,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4)
        ),
        max_leaves=20,
    )


# any text JSON can carry, lone surrogates included (they travel as \\udXXX escapes)
any_text = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=20)
json_values = json_of(any_text)
hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
digests = hex64.map(lambda h: f"sha256:{h}")
texts = st.text(max_size=30)


@st.composite
def descriptors(draw: st.DrawFn, text: st.SearchStrategy[str] = texts) -> Descriptor:
    return Descriptor(
        media_type=draw(text.filter(bool)),
        digest=draw(digests),
        size=draw(st.integers(min_value=0, max_value=2**53)),
        annotations=draw(st.dictionaries(text, text, max_size=3)),
        artifact_type=draw(st.none() | text.filter(bool)),
    )


@st.composite
def manifests(draw: st.DrawFn, text: st.SearchStrategy[str] = texts) -> Manifest:
    return Manifest(
        config=draw(descriptors(text)),
        layers=tuple(draw(st.lists(descriptors(text), max_size=4))),
        annotations=draw(st.dictionaries(text, text, max_size=3)),
        artifact_type=draw(st.none() | text.filter(bool)),
        subject=draw(st.none() | descriptors(text)),
        media_type=draw(st.sampled_from([IMAGE_MANIFEST, DOCKER_MANIFEST])),
    )


def as_json(manifest: Manifest) -> Any:
    """The JSON shape of a manifest, without serialising it (its text may not encode)."""

    def descriptor(d: Descriptor) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": d.media_type, "digest": d.digest, "size": d.size}
        if d.artifact_type:
            out["artifactType"] = d.artifact_type
        if d.annotations:
            out["annotations"] = dict(d.annotations)
        return out

    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": manifest.media_type,
        "config": descriptor(manifest.config),
        "layers": [descriptor(layer) for layer in manifest.layers],
        "annotations": dict(manifest.annotations),
    }
    if manifest.artifact_type:
        body["artifactType"] = manifest.artifact_type
    if manifest.subject:
        body["subject"] = descriptor(manifest.subject)
    return body


def replace_somewhere(value: Any, data: st.DataObject) -> Any:
    """``value`` with one node (chosen by hypothesis) replaced by arbitrary JSON."""
    if isinstance(value, dict) and value and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(value)))
        return {**value, key: replace_somewhere(value[key], data)}
    if isinstance(value, list) and value and data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(value) - 1))
        return [*value[:index], replace_somewhere(value[index], data), *value[index + 1 :]]
    return data.draw(json_values)


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()  # ensure_ascii: lone surrogates travel as \\udXXX


# ----- references -------------------------------------------------------------------------------

reference_text = st.text(alphabet="abzAZ09._-:/@[]", max_size=40) | st.builds(
    lambda head, digest: f"{head}@{digest}", st.text(alphabet="ab0.:/-", max_size=20), digests
)


@FAST
@given(reference_text)
def test_reference_parse_refuses_with_invalid_input_or_prints_back_exactly(text: str) -> None:
    try:
        parsed = parse_reference(text)
    except InvalidInput as error:
        assert error.hint
        return
    assert str(parsed) == text
    assert parse_reference(str(parsed)) == parsed
    assert parsed.is_local == (parsed.registry is None)


hosts = st.one_of(
    st.just("localhost"),
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z0-9]{1,5}){1,2}", fullmatch=True),
    st.just("[::1]"),
    st.just("127.0.0.1"),
).flatmap(lambda host: st.sampled_from([host, f"{host}:5000", f"{host}:1"]))
alnum = st.text(alphabet="abcz019", min_size=1, max_size=6)
components = st.builds(
    lambda first, rest: first + "".join(sep + word for sep, word in rest),
    alnum,
    st.lists(st.tuples(st.sampled_from([".", "_", "__", "-", "--"]), alnum), max_size=2),
)
repositories = st.lists(components, min_size=1, max_size=4).map("/".join)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}", fullmatch=True)


@FAST
@given(st.none() | hosts, repositories, st.none() | tags, st.none() | digests)
def test_every_valid_reference_round_trips(
    registry: str | None, repository: str, tag: str | None, digest: str | None
) -> None:
    first = repository.split("/", 1)[0]
    # without a registry, a first component that looks like a host would be read as one
    assume(registry is not None or "/" not in repository or "." not in first)
    reference = Reference(registry, repository, tag, digest)
    parsed = parse_reference(str(reference))
    assert parsed == reference
    assert parsed.identifier == (digest or tag)


# ----- manifests --------------------------------------------------------------------------------


def parse_or_refuse(data: bytes) -> Manifest | None:
    try:
        manifest = Manifest.parse(data)
    except IntegrityError as error:
        assert "\n" not in error.message
        return None
    try:
        again = manifest.to_bytes()  # whatever was accepted can be written back
    except IntegrityError:
        return manifest
    assert Manifest.parse(again) == manifest
    return manifest


@FAST
@given(st.binary(max_size=300))
def test_manifest_parse_of_arbitrary_bytes(data: bytes) -> None:
    parse_or_refuse(data)


@FAST
@given(json_values)
def test_manifest_parse_of_arbitrary_json(value: Any) -> None:
    parse_or_refuse(encode(value))


@FAST
@given(manifests(any_text))
def test_manifest_parse_of_manifests_with_any_text(manifest: Manifest) -> None:
    """Lone surrogates are valid JSON escapes but not text: refused, never a crash later."""
    parse_or_refuse(encode(as_json(manifest)))


@pytest.mark.parametrize("where", ["manifest", "config"])
def test_an_empty_artifact_type_reads_as_none_and_round_trips(where: str) -> None:
    """Found by the property below: "" parsed as "", was written back as missing."""
    body = json.loads(Manifest(Descriptor("application/x", "sha256:" + "0" * 64, 0), ()).to_bytes())
    (body if where == "manifest" else body["config"])["artifactType"] = ""
    manifest = parse_or_refuse(encode(body))
    assert manifest is not None
    assert (manifest.artifact_type, manifest.config.artifact_type) == (None, None)


@FAST
@given(manifests(), st.data())
def test_manifest_parse_of_a_mutated_manifest(manifest: Manifest, data: st.DataObject) -> None:
    body = json.loads(manifest.to_bytes())
    parse_or_refuse(encode(replace_somewhere(body, data)))


@FAST
@given(manifests())
def test_valid_manifests_round_trip_byte_exact(manifest: Manifest) -> None:
    data = manifest.to_bytes()
    parsed = Manifest.parse(data)
    assert parsed == manifest
    assert parsed.to_bytes() == data
    assert parsed.descriptor(data).digest == manifest.descriptor().digest


# ----- promotion records ------------------------------------------------------------------------


@st.composite
def records(draw: st.DrawFn) -> PromotionRecord:
    sequence = draw(st.integers(min_value=1, max_value=10**12))
    return PromotionRecord(
        repository=draw(repositories),
        stage=draw(st.sampled_from(["staging", "production", "archived", "canary"])),
        digest=draw(digests),
        sequence=sequence,
        previous=None if sequence == 1 else draw(digests),
        issued_at=draw(st.sampled_from(["2024-01-01T00:00:00Z", "2031-12-31T23:59:59Z"])),
        action=draw(st.sampled_from(["promote", "rollback", "archive"])),
        version=draw(st.none() | st.integers(min_value=1, max_value=10**6)),
        replaces=draw(st.none() | digests),
        expires_at=draw(st.none() | st.just("2032-01-01T00:00:00Z")),
    )


def record_or_refuse(payload: bytes) -> PromotionRecord | None:
    try:
        return PromotionRecord.from_payload(payload)
    except IntegrityError:
        return None


@FAST
@given(st.binary(max_size=300) | json_values.map(encode))
def test_record_parse_of_arbitrary_payloads(payload: bytes) -> None:
    record_or_refuse(payload)


@FAST
@given(records(), st.data())
def test_record_parse_of_a_mutated_statement(record: PromotionRecord, data: st.DataObject) -> None:
    statement = json.loads(record.payload())
    parsed = record_or_refuse(encode(replace_somewhere(statement, data)))
    if parsed is not None:  # what parses is consistent with itself
        assert parsed.digest.startswith("sha256:") and parsed.sequence >= 1
        assert (parsed.sequence == 1) == (parsed.previous is None)


@FAST
@given(records())
def test_valid_records_round_trip(record: PromotionRecord) -> None:
    assert PromotionRecord.from_payload(record.payload()) == record


@pytest.fixture(scope="module")
def record_store() -> Iterator[LayoutRepository]:
    """One real local store for all examples (hypothesis reruns a test body many times)."""
    with tempfile.TemporaryDirectory() as root:
        repository = LayoutStore(Path(root)).repository("ml/records")
        config = repository.push_blob([b"{}"], 2)
        model = Manifest(
            config=Descriptor("application/vnd.oci.empty.v1+json", config, 2), layers=()
        ).to_bytes()
        repository.push_manifest(model, IMAGE_MANIFEST, ["model"])
        yield repository


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    """Envelope bytes: garbage, arbitrary JSON, or DSSE-shaped with arbitrary parts."""
    statement = draw(
        st.binary(max_size=60)
        | json_values.map(encode)
        | records().map(lambda r: r.payload())
        | st.builds(
            lambda digest, predicate: make_statement("ml/records", digest[7:], PREDICATE_TYPE,
                                                     predicate),
            digests,
            st.dictionaries(st.text(max_size=10), json_of(st.text(max_size=10)), max_size=4),
        )
    )  # fmt: skip
    shaped = {
        "payload": draw(
            st.just(base64.b64encode(statement).decode())
            | st.just(base64.urlsafe_b64encode(statement).decode())
            | json_values
        ),
        "payloadType": draw(st.just(IN_TOTO_PAYLOAD_TYPE) | json_values),
        "signatures": draw(
            st.lists(
                st.fixed_dictionaries(
                    {"keyid": hex64 | json_values, "sig": st.just("AAAA") | json_values}
                ),
                max_size=2,
            )
            | json_values
        ),
    }
    return draw(st.binary(max_size=100) | json_values.map(encode) | st.just(encode(shaped)))


@SLOW
@given(envelopes())
def test_read_record_of_arbitrary_envelopes(
    record_store: LayoutRepository, envelope: bytes
) -> None:
    model = record_store.resolve("model")
    assert model is not None
    config = b"{}"
    for blob in (config, envelope):
        record_store.push_blob([blob], len(blob))
    from modelreg.digest import sha256_digest

    manifest = Manifest(
        config=Descriptor("application/vnd.oci.empty.v1+json", sha256_digest(config), 2),
        layers=(Descriptor(ENVELOPE_MEDIA_TYPE, sha256_digest(envelope), len(envelope)),),
        artifact_type=RECORD_ARTIFACT,
        subject=model,
    ).to_bytes()
    tag = record_tag("production", 1)
    record_store.push_manifest(manifest, IMAGE_MANIFEST, [tag])
    try:
        stored = read_record(record_store, tag)
    except IntegrityError:
        return
    assert stored.record.digest == model.digest  # only a record about its subject is read
    assert stored.envelope.signatures


# ----- tar extraction ---------------------------------------------------------------------------

KINDS = [
    tarfile.REGTYPE,
    tarfile.AREGTYPE,
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.FIFOTYPE,
    tarfile.CONTTYPE,
]
parts = st.sampled_from(["model", "..", ".", "", "a", "b", "c.bin", ".wh.a", "sentinel", "x"])
entry_names = st.lists(parts, min_size=1, max_size=5).map("/".join) | st.sampled_from(
    ["/model/a", "./model/a", "model/", "model//a", "model\\..\\a", "SENTINEL/a"]
)
link_names = st.sampled_from(["", "a", "../a", "model/a", "../../sentinel/keep", "SENTINEL"])


@st.composite
def members(draw: st.DrawFn) -> tuple[tarfile.TarInfo, bytes | None]:
    kind = draw(st.sampled_from(KINDS))
    info = member(draw(entry_names), kind, draw(link_names))
    if draw(st.booleans()):
        info.pax_headers = {"path": draw(entry_names)}
    info.mode = draw(st.sampled_from([0o644, 0o755, 0o4777, 0o000]))
    data = draw(st.binary(max_size=8)) if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else None
    return info, data


@contextlib.contextmanager
def arena() -> Iterator[tuple[Path, Path, Path]]:
    """(base, out, sentinel): extraction goes to ``out``; ``sentinel`` must stay as it is."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        out = base / "staging" / "out"
        out.mkdir(parents=True)
        sentinel = base / "sentinel"
        sentinel.mkdir()
        (sentinel / "keep").write_bytes(b"keep")
        yield base, out, sentinel


def resolve_sentinel(info: tarfile.TarInfo, sentinel: Path) -> None:
    for attribute in ("name", "linkname"):
        value = getattr(info, attribute)
        setattr(info, attribute, value.replace("SENTINEL", str(sentinel)))
    if "path" in info.pax_headers:
        info.pax_headers["path"] = info.pax_headers["path"].replace("SENTINEL", str(sentinel))


def everything_below(base: Path) -> set[Path]:
    return set(base.rglob("*"))


@SLOW
@given(st.lists(members(), min_size=1, max_size=6))
def test_random_member_sequences_never_escape(
    entries: list[tuple[tarfile.TarInfo, bytes | None]],
) -> None:
    with arena() as (base, out, sentinel):
        for info, _ in entries:
            resolve_sentinel(info, sentinel)
        try:
            data = tar_with(*entries)
        except (ValueError, UnicodeError, tarfile.TarError):
            return
        before = everything_below(base)
        written: list[str] = []
        with contextlib.suppress(IntegrityError):
            written = unpack_layer(io.BytesIO(data), out)
        created = everything_below(base) - before
        assert all(path.is_relative_to(out) for path in created), created
        assert (sentinel / "keep").read_bytes() == b"keep"
        assert sorted(p.name for p in sentinel.iterdir()) == ["keep"]
        for path in out.rglob("*"):
            info = os.lstat(path)
            assert stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode), path
            if stat.S_ISREG(info.st_mode):
                assert info.st_nlink == 1  # never a hard link to anything
                assert stat.S_IMODE(info.st_mode) in (0o644, 0o755)
        files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
        assert set(written) <= files


safe_part = st.from_regex(r"[a-z0-9_-][a-z0-9_.-]{0,6}", fullmatch=True).filter(
    lambda part: part not in (".", "..") and not part.startswith(".wh.")
)
safe_paths = st.lists(safe_part, min_size=1, max_size=3).map("/".join)


@FAST
@given(st.dictionaries(safe_paths, st.binary(max_size=64), min_size=1, max_size=6))
def test_safe_layers_extract_exactly(files: dict[str, bytes]) -> None:
    names = sorted(files)
    # a path cannot be both a file and a directory
    assume(not any(b.startswith(a + "/") for a in names for b in names))
    with arena() as (_, out, _):
        data = tar_with(*((member(f"model/{name}"), content) for name, content in files.items()))
        assert sorted(unpack_layer(io.BytesIO(data), out)) == names
        assert {
            str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()
        } == files
