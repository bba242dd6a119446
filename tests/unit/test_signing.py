"""Tests for modelreg.signing: real keys in tmp_path, real files, no mocks."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given
from hypothesis import strategies as st

from modelreg.errors import IntegrityError, InvalidInput, NotFound
from modelreg.signing import (
    IN_TOTO_PAYLOAD_TYPE,
    MAX_ENVELOPE_BYTES,
    Envelope,
    PublicKey,
    Signature,
    SigningKey,
    Statement,
    add_signature,
    canonical_json,
    generate_keypair,
    load_public_key,
    load_signing_key,
    make_statement,
    pae,
    parse_statement,
    sign_envelope,
    verify_envelope,
)

PASSPHRASE = b"correct horse battery staple"
DIGEST = "a" * 64
PREDICATE_TYPE = "https://modelreg.dev/promotion/v1"
_DROP = object()  # marks a field to delete in the malformed-document helpers


def _problem_id(value: object) -> str | None:
    """Name malformed-input cases by the expected problem, not by their (huge) bytes."""
    return "input" if isinstance(value, bytes) else None


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def alice(key_dir: Path) -> SigningKey:
    key_path, _ = generate_keypair(key_dir, "alice")
    return load_signing_key(key_path)


@pytest.fixture(scope="module")
def bob(key_dir: Path) -> SigningKey:
    key_path, _ = generate_keypair(key_dir, "bob")
    return load_signing_key(key_path)


def trusted(*keys: SigningKey) -> dict[str, PublicKey]:
    return {key.key_id: key.public_key for key in keys}


def write_pem_private_key(path: Path, private_key: Any) -> Path:
    path.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def write_pem_public_key(path: Path, private_key: Any) -> Path:
    path.write_bytes(
        private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


# --- key generation and loading -----------------------------------------------------------------


def test_generate_and_load_unencrypted(tmp_path: Path) -> None:
    key_path, pub_path = generate_keypair(tmp_path, "release")

    assert key_path == tmp_path / "release.key"
    assert pub_path == tmp_path / "release.pub"
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert pub_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----\n")
    signing_key = load_signing_key(key_path)
    public_key = load_public_key(pub_path)
    assert signing_key.public_key == public_key
    assert signing_key.key_id == public_key.key_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release.key", "release.pub"]


def test_generate_and_load_with_passphrase(tmp_path: Path) -> None:
    key_path, pub_path = generate_keypair(tmp_path, "release", passphrase=PASSPHRASE)

    assert key_path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    signing_key = load_signing_key(key_path, PASSPHRASE)
    assert signing_key.key_id == load_public_key(pub_path).key_id


def test_private_key_is_0600_even_with_open_umask(tmp_path: Path, open_umask: None) -> None:
    key_path, pub_path = generate_keypair(tmp_path, "release")

    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub_path.stat().st_mode) == 0o644


@pytest.mark.parametrize("existing", ["release.key", "release.pub"])
def test_generate_refuses_to_overwrite(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_bytes(b"precious")

    with pytest.raises(InvalidInput, match="already exists") as caught:
        generate_keypair(tmp_path, "release")

    assert caught.value.hint
    assert (tmp_path / existing).read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == [existing]


def test_generate_refuses_to_replace_a_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "release.key").symlink_to(tmp_path / "elsewhere")

    with pytest.raises(InvalidInput, match="already exists"):
        generate_keypair(tmp_path, "release")
    assert not (tmp_path / "elsewhere").exists()


def test_generating_twice_keeps_the_first_key(tmp_path: Path) -> None:
    key_path, _ = generate_keypair(tmp_path, "release")
    first = key_path.read_bytes()

    with pytest.raises(InvalidInput):
        generate_keypair(tmp_path, "release")
    assert key_path.read_bytes() == first


@pytest.mark.parametrize(
    "name", ["", "a/b", "../a", "..", ".", ".hidden", "a\\b", "a\x00b", "with space", "x" * 101]
)
def test_generate_rejects_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput, match="invalid key name"):
        generate_keypair(tmp_path, name)
    assert list(tmp_path.iterdir()) == []


def test_generate_rejects_empty_passphrase(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="passphrase is empty"):
        generate_keypair(tmp_path, "release", passphrase=b"")


def test_generate_needs_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        generate_keypair(tmp_path / "missing", "release")


def test_two_generated_keys_differ(tmp_path: Path) -> None:
    generate_keypair(tmp_path, "one")
    generate_keypair(tmp_path, "two")

    one = load_public_key(tmp_path / "one.pub")
    two = load_public_key(tmp_path / "two.pub")
    assert one != two
    assert one.key_id != two.key_id


def test_key_id_is_sha256_of_der_subject_public_key_info(tmp_path: Path) -> None:
    key_path, pub_path = generate_keypair(tmp_path, "release")
    loaded = serialization.load_pem_public_key(pub_path.read_bytes())
    der = loaded.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    expected = hashlib.sha256(der).hexdigest()
    assert load_public_key(pub_path).key_id == expected
    assert load_signing_key(key_path).key_id == expected
    assert len(expected) == 64


def test_public_key_pem_round_trip(alice: SigningKey) -> None:
    again = PublicKey.from_pem(alice.public_key.pem)

    assert again == alice.public_key
    assert hash(again) == hash(alice.public_key)
    assert again.pem == alice.public_key.pem


def test_signing_key_from_pem(tmp_path: Path) -> None:
    key_path, _ = generate_keypair(tmp_path, "release", passphrase=PASSPHRASE)

    from_pem = SigningKey.from_pem(key_path.read_bytes(), PASSPHRASE)
    assert from_pem.key_id == load_signing_key(key_path, PASSPHRASE).key_id


def test_reprs_show_only_the_key_id(alice: SigningKey) -> None:
    assert repr(alice) == f"SigningKey(key_id={alice.key_id!r})"
    assert repr(alice.public_key) == f"PublicKey(key_id={alice.key_id!r})"


def test_load_missing_files(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="signing key not found") as caught:
        load_signing_key(tmp_path / "nope.key")
    assert caught.value.hint
    with pytest.raises(NotFound, match="public key not found"):
        load_public_key(tmp_path / "nope.pub")


def test_load_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read signing key"):
        load_signing_key(tmp_path)


def test_encrypted_key_without_passphrase(tmp_path: Path) -> None:
    key_path, _ = generate_keypair(tmp_path, "release", passphrase=PASSPHRASE)

    with pytest.raises(InvalidInput, match="encrypted and no passphrase") as caught:
        load_signing_key(key_path)
    assert str(key_path) in caught.value.message
    assert caught.value.hint is not None
    assert "--passphrase-file" in caught.value.hint
    assert "MODELREG_KEY_PASSPHRASE" in caught.value.hint


def test_wrong_passphrase(tmp_path: Path) -> None:
    key_path, _ = generate_keypair(tmp_path, "release", passphrase=PASSPHRASE)
    wrong = b"tr0ub4dor&3"

    with pytest.raises(InvalidInput, match="wrong passphrase") as caught:
        load_signing_key(key_path, wrong)

    error = caught.value
    text = f"{error.message} {error.hint}"
    assert str(key_path) in text
    assert wrong.decode() not in text
    assert PASSPHRASE.decode() not in text
    assert "MII" not in text  # no base64 key material either


def test_traditional_openssl_encrypted_key(tmp_path: Path) -> None:
    path = tmp_path / "legacy.key"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.BestAvailableEncryption(PASSPHRASE),
        )
    )

    assert b"Proc-Type: 4,ENCRYPTED" in path.read_bytes()
    assert load_signing_key(path, PASSPHRASE).key_id
    with pytest.raises(InvalidInput, match="encrypted and no passphrase"):
        load_signing_key(path)
    with pytest.raises(InvalidInput, match="wrong passphrase"):
        load_signing_key(path, b"wrong")


def test_passphrase_for_unencrypted_key(tmp_path: Path) -> None:
    key_path, _ = generate_keypair(tmp_path, "release")

    with pytest.raises(InvalidInput, match="not encrypted, but a passphrase was given") as caught:
        load_signing_key(key_path, PASSPHRASE)
    assert PASSPHRASE.decode() not in str(caught.value)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"garbage\x00\xff",
        b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
    ],
)
def test_garbage_private_key_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.key"
    path.write_bytes(content)

    with pytest.raises(InvalidInput) as caught:
        load_signing_key(path)
    assert str(path) in caught.value.message
    assert caught.value.hint


def test_foreign_encrypted_key_with_passphrase_is_unreadable_not_wrong_passphrase(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cosign.key"
    path.write_bytes(
        b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\neyJrZGYiOnt9fQ==\n"
        b"-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
    )

    with pytest.raises(InvalidInput, match="not a readable PEM private key"):
        load_signing_key(path, PASSPHRASE)


def test_public_key_file_is_not_a_signing_key(tmp_path: Path) -> None:
    _, pub_path = generate_keypair(tmp_path, "release")

    with pytest.raises(InvalidInput, match="not a PEM private key"):
        load_signing_key(pub_path)


def test_private_key_file_is_not_a_public_key(tmp_path: Path) -> None:
    key_path, _ = generate_keypair(tmp_path, "release")

    with pytest.raises(InvalidInput, match="not a PEM public key") as caught:
        load_public_key(key_path)
    assert str(key_path) in caught.value.message


def test_garbage_public_key(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pub"
    path.write_bytes(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")

    with pytest.raises(InvalidInput, match="not a PEM public key"):
        load_public_key(path)
    with pytest.raises(InvalidInput, match="public key data is not a PEM public key"):
        PublicKey.from_pem(b"hello")


def test_oversized_key_file(tmp_path: Path) -> None:
    path = tmp_path / "huge.key"
    path.write_bytes(b"x" * (64 * 1024 + 1))

    with pytest.raises(InvalidInput, match="too large"):
        load_signing_key(path)


@pytest.mark.parametrize(
    ("make_key", "kind"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "RSA"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "secp384r1"),
    ],
    ids=["rsa", "p384"],
)
def test_other_key_types_refused(tmp_path: Path, make_key: Any, kind: str) -> None:
    private_key = make_key()
    key_path = write_pem_private_key(tmp_path / "other.key", private_key)
    pub_path = write_pem_public_key(tmp_path / "other.pub", private_key)

    with pytest.raises(InvalidInput, match="not an ECDSA P-256 key") as caught:
        load_signing_key(key_path)
    assert str(key_path) in caught.value.message
    assert kind in caught.value.message
    with pytest.raises(InvalidInput, match="not an ECDSA P-256 key") as caught:
        load_public_key(pub_path)
    assert str(pub_path) in caught.value.message


# --- raw signatures -----------------------------------------------------------------------------


def test_sign_and_verify(alice: SigningKey, bob: SigningKey) -> None:
    signature = alice.sign(b"model weights")

    assert alice.public_key.verify(b"model weights", signature)
    assert not alice.public_key.verify(b"model weightz", signature)
    assert not bob.public_key.verify(b"model weights", signature)
    assert not alice.public_key.verify(b"model weights", b"not a DER signature")
    assert not alice.public_key.verify(b"model weights", b"")


def test_signing_is_deterministic(alice: SigningKey) -> None:
    assert alice.sign(b"same data") == alice.sign(b"same data")


# --- DSSE ---------------------------------------------------------------------------------------

# From the DSSE spec, protocol.md "Test Vectors".
SPEC_PAYLOAD_TYPE = "http://example.com/HelloWorld"
SPEC_PAYLOAD = b"hello world"
SPEC_PAE = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
SPEC_D = 97358161215184420915383655311931858321456579547487070936769975997791359926199
SPEC_SIG_RAW_B64 = (
    "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA=="
)


def test_pae_matches_spec_vector() -> None:
    assert pae(SPEC_PAYLOAD_TYPE, SPEC_PAYLOAD) == SPEC_PAE


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("é", b"") == b"DSSEv1 2 \xc3\xa9 0 "
    assert pae("t", b"\x00 \xff") == b"DSSEv1 1 t 3 \x00 \xff"


def test_spec_vector_signature_reproduced_and_verified() -> None:
    spec_key = SigningKey(ec.derive_private_key(SPEC_D, ec.SECP256R1()))

    envelope = sign_envelope(SPEC_PAYLOAD_TYPE, SPEC_PAYLOAD, spec_key)
    r, s = decode_dss_signature(envelope.signatures[0].sig)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert base64.b64encode(raw).decode() == SPEC_SIG_RAW_B64
    assert json.loads(envelope.to_json())["payload"] == "aGVsbG8gd29ybGQ="

    spec_raw = base64.b64decode(SPEC_SIG_RAW_B64)
    spec_der = encode_dss_signature(
        int.from_bytes(spec_raw[:32], "big"), int.from_bytes(spec_raw[32:], "big")
    )
    spec_envelope = Envelope(
        SPEC_PAYLOAD_TYPE, SPEC_PAYLOAD, (Signature(spec_key.key_id, spec_der),)
    )
    result = verify_envelope(spec_envelope, trusted(spec_key))
    assert result.verified == (spec_key.key_id,)


def test_sign_and_verify_envelope(alice: SigningKey) -> None:
    envelope = sign_envelope(IN_TOTO_PAYLOAD_TYPE, b"{}", alice)

    assert envelope.payload_type == IN_TOTO_PAYLOAD_TYPE
    assert envelope.payload == b"{}"
    assert [s.keyid for s in envelope.signatures] == [alice.key_id]
    result = verify_envelope(envelope, trusted(alice))
    assert result.verified == (alice.key_id,)
    assert result.untrusted == ()
    assert result.invalid == ()


def test_tampered_payload_is_invalid(alice: SigningKey) -> None:
    envelope = sign_envelope(IN_TOTO_PAYLOAD_TYPE, b'{"stage":"staging"}', alice)
    tampered = dataclasses.replace(envelope, payload=b'{"stage":"production"}')

    result = verify_envelope(tampered, trusted(alice))
    assert result.invalid == (alice.key_id,)
    assert result.verified == ()


def test_tampered_payload_type_is_invalid(alice: SigningKey) -> None:
    envelope = sign_envelope(IN_TOTO_PAYLOAD_TYPE, b"{}", alice)
    tampered = dataclasses.replace(envelope, payload_type="application/vnd.other+json")

    assert verify_envelope(tampered, trusted(alice)).invalid == (alice.key_id,)


def test_tampered_signature_is_invalid(alice: SigningKey) -> None:
    envelope = sign_envelope(IN_TOTO_PAYLOAD_TYPE, b"{}", alice)
    sig = bytearray(envelope.signatures[0].sig)
    sig[-1] ^= 0x01
    tampered = dataclasses.replace(envelope, signatures=(Signature(alice.key_id, bytes(sig)),))

    result = verify_envelope(tampered, trusted(alice))
    assert result.invalid == (alice.key_id,)
    assert result.verified == ()


def test_signature_relabelled_with_another_trusted_key_id_is_invalid(
    alice: SigningKey, bob: SigningKey
) -> None:
    envelope = sign_envelope(IN_TOTO_PAYLOAD_TYPE, b"{}", alice)
    relabelled = dataclasses.replace(
        envelope, signatures=(Signature(bob.key_id, envelope.signatures[0].sig),)
    )

    result = verify_envelope(relabelled, trusted(alice, bob))
    assert result.invalid == (bob.key_id,)
    assert result.verified == ()


def test_untrusted_key_is_reported_untrusted(alice: SigningKey, bob: SigningKey) -> None:
    envelope = sign_envelope(IN_TOTO_PAYLOAD_TYPE, b"{}", alice)

    result = verify_envelope(envelope, trusted(bob))
    assert result.untrusted == (alice.key_id,)
    assert result.verified == ()
    assert result.invalid == ()
    assert verify_envelope(envelope, {}).untrusted == (alice.key_id,)


def test_two_co_signers(alice: SigningKey, bob: SigningKey) -> None:
    envelope = add_signature(sign_envelope(IN_TOTO_PAYLOAD_TYPE, b"{}", alice), bob)

    assert [s.keyid for s in envelope.signatures] == [alice.key_id, bob.key_id]
    assert verify_envelope(envelope, trusted(alice, bob)).verified == (alice.key_id, bob.key_id)
    only_alice = verify_envelope(envelope, trusted(alice))
    assert only_alice.verified == (alice.key_id,)
    assert only_alice.untrusted == (bob.key_id,)


def test_add_signature_is_idempotent(alice: SigningKey, bob: SigningKey) -> None:
    once = add_signature(sign_envelope(IN_TOTO_PAYLOAD_TYPE, b"{}", alice), bob)

    assert add_signature(once, bob) == once
    assert add_signature(once, alice) == once
    assert add_signature(once, alice).to_json() == once.to_json()


def test_add_signature_replaces_a_broken_signature_in_place(
    alice: SigningKey, bob: SigningKey
) -> None:
    good = add_signature(sign_envelope(IN_TOTO_PAYLOAD_TYPE, b"{}", alice), bob)
    broken = dataclasses.replace(
        good,
        signatures=(
            Signature(alice.key_id, b"junk"),
            good.signatures[1],
            Signature(alice.key_id, b"more junk"),
        ),
    )

    assert add_signature(broken, alice) == good


def test_duplicate_key_ids_count_once(alice: SigningKey) -> None:
    envelope = sign_envelope(IN_TOTO_PAYLOAD_TYPE, b"{}", alice)
    signature = envelope.signatures[0]
    doubled = dataclasses.replace(envelope, signatures=(signature, signature))
    with_junk = dataclasses.replace(
        envelope, signatures=(Signature(alice.key_id, b"junk"), signature)
    )

    assert verify_envelope(doubled, trusted(alice)).verified == (alice.key_id,)
    result = verify_envelope(with_junk, trusted(alice))
    assert result.verified == (alice.key_id,)
    assert result.invalid == ()


def test_trusted_map_must_be_keyed_by_key_id(alice: SigningKey, bob: SigningKey) -> None:
    envelope = sign_envelope(IN_TOTO_PAYLOAD_TYPE, b"{}", alice)

    with pytest.raises(InvalidInput, match="trusted key listed as"):
        verify_envelope(envelope, {bob.key_id: alice.public_key})


def test_envelope_json_round_trip_exact_bytes(alice: SigningKey, bob: SigningKey) -> None:
    envelope = add_signature(sign_envelope(IN_TOTO_PAYLOAD_TYPE, b"\x00\xffpayload", alice), bob)

    data = envelope.to_json()
    assert Envelope.from_json(data) == envelope
    assert Envelope.from_json(data).to_json() == data
    assert b" " not in data
    assert json.loads(data) == {
        "payload": base64.b64encode(b"\x00\xffpayload").decode(),
        "payloadType": IN_TOTO_PAYLOAD_TYPE,
        "signatures": [
            {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode()} for s in envelope.signatures
        ],
    }
    assert data.index(b'"payload"') < data.index(b'"payloadType"') < data.index(b'"signatures"')
    assert data.index(b'"keyid"') < data.index(b'"sig"')


def test_envelope_from_json_accepts_url_safe_base64(alice: SigningKey) -> None:
    payload = bytes(range(256))  # encodes with both '+' and '/'
    envelope = sign_envelope(IN_TOTO_PAYLOAD_TYPE, payload, alice)
    document = json.loads(envelope.to_json())
    document["payload"] = base64.urlsafe_b64encode(payload).decode()
    document["signatures"][0]["sig"] = base64.urlsafe_b64encode(envelope.signatures[0].sig).decode()

    parsed = Envelope.from_json(json.dumps(document).encode())
    assert parsed == envelope
    assert verify_envelope(parsed, trusted(alice)).verified == (alice.key_id,)


def _valid_document() -> dict[str, Any]:
    return {
        "payload": base64.b64encode(b"{}").decode(),
        "payloadType": IN_TOTO_PAYLOAD_TYPE,
        "signatures": [{"keyid": "ab" * 32, "sig": base64.b64encode(b"sig").decode()}],
    }


def _document_with(**changes: Any) -> bytes:
    document = _valid_document()
    for field, value in changes.items():
        if value is _DROP:
            del document[field]
        else:
            document[field] = value
    return json.dumps(document).encode()


def _signature_with(**changes: Any) -> bytes:
    document = _valid_document()
    entry = document["signatures"][0]
    for field, value in changes.items():
        if value is _DROP:
            del entry[field]
        else:
            entry[field] = value
    return json.dumps(document).encode()


def test_valid_document_helper_parses() -> None:
    assert Envelope.from_json(json.dumps(_valid_document()).encode()).payload == b"{}"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "not valid UTF-8 JSON"),
        (b"not json", "not valid UTF-8 JSON"),
        (b"\xff\xfe{}", "not valid UTF-8 JSON"),
        (b"\xef\xbb\xbf" + json.dumps(_valid_document()).encode(), "not valid UTF-8 JSON"),
        (json.dumps(_valid_document()).encode("utf-16"), "not valid UTF-8 JSON"),
        (b"[]", "not a JSON object"),
        (b"null", "not a JSON object"),
        (b"{}", "missing field"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (_document_with(payload=_DROP), "missing field 'payload'"),
        (_document_with(payloadType=_DROP), "missing field 'payloadType'"),
        (_document_with(signatures=_DROP), "missing field 'signatures'"),
        (_document_with(extra=1), "unknown field 'extra'"),
        (_document_with(payloadType=""), "'payloadType' must be a non-empty string"),
        (_document_with(payloadType=7), "'payloadType' must be a non-empty string"),
        (_document_with(payloadType="\ud800"), "'payloadType' is not valid Unicode"),
        (_document_with(payload=None), "'payload' is not a base64 string"),
        (_document_with(payload="not base64!"), "'payload' is not valid base64"),
        (_document_with(payload="e30"), "'payload' is not valid base64"),
        (_document_with(payload="e31="), "'payload' is not canonical base64"),
        (_document_with(payload="é"), "'payload' is not valid base64"),
        (_document_with(signatures={}), "'signatures' is not a list"),
        (_document_with(signatures=[]), "has no signatures"),
        (_document_with(signatures=["x"]), "signature #1 is not a JSON object"),
        (_signature_with(keyid=_DROP), "missing field 'keyid'"),
        (_signature_with(sig=_DROP), "missing field 'sig'"),
        (_signature_with(extension={}), "unknown field 'extension'"),
        (_signature_with(keyid=""), "not 64 lowercase hex"),
        (_signature_with(keyid="AB" * 32), "not 64 lowercase hex"),
        (_signature_with(keyid=5), "not 64 lowercase hex"),
        (_signature_with(sig=""), "signature #1 is empty"),
        (_signature_with(sig="%%%"), "'sig' is not valid base64"),
        (b'{"payload":"e30=","payload":"e30=","payloadType":"t","signatures":[]}', "duplicate"),
        (b'{"payload":NaN,"payloadType":"t","signatures":[]}', "NaN is not valid JSON"),
        (b"x" * (MAX_ENVELOPE_BYTES + 1), "byte limit"),
    ],
    ids=_problem_id,
)
def test_malformed_envelopes_refused(data: bytes, problem: str) -> None:
    with pytest.raises(IntegrityError) as caught:
        Envelope.from_json(data)
    assert problem in caught.value.message
    assert "\n" not in caught.value.message
    assert caught.value.hint


def test_envelope_at_size_limit_is_parsed(alice: SigningKey) -> None:
    envelope = sign_envelope(IN_TOTO_PAYLOAD_TYPE, b"{}", alice)
    data = envelope.to_json()
    padded = data[:-1] + b" " * (MAX_ENVELOPE_BYTES - len(data)) + b"}"

    assert len(padded) == MAX_ENVELOPE_BYTES
    assert Envelope.from_json(padded) == envelope


_json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_base64_text = st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode())
_envelope_like = st.fixed_dictionaries(
    {
        "payload": _base64_text | _json_values,
        "payloadType": st.text(max_size=20) | _json_values,
        "signatures": st.lists(
            st.fixed_dictionaries(
                {
                    "keyid": st.just("ab" * 32) | st.text(max_size=70) | _json_values,
                    "sig": _base64_text | _json_values,
                },
                optional={"extra": _json_values},
            ),
            max_size=3,
        )
        | _json_values,
    },
    optional={"extra": _json_values},
)


def _from_json_outcome(data: bytes) -> None:
    try:
        envelope = Envelope.from_json(data)
    except IntegrityError as error:
        assert error.message
        assert "\n" not in error.message
        assert error.hint
    else:
        assert Envelope.from_json(envelope.to_json()) == envelope


@given(st.binary(max_size=2048))
def test_from_json_only_raises_integrity_error_on_arbitrary_bytes(data: bytes) -> None:
    _from_json_outcome(data)


@given(_json_values)
def test_from_json_only_raises_integrity_error_on_arbitrary_json(value: Any) -> None:
    _from_json_outcome(json.dumps(value).encode())


@given(_envelope_like)
def test_from_json_only_raises_integrity_error_on_envelope_like_json(value: Any) -> None:
    _from_json_outcome(json.dumps(value).encode())


@given(st.data())
def test_from_json_only_raises_integrity_error_on_mutated_envelopes(data: st.DataObject) -> None:
    valid = json.dumps(_valid_document()).encode()
    position = data.draw(st.integers(0, len(valid)))
    cut = data.draw(st.integers(0, 5))
    insert = data.draw(st.binary(max_size=5))
    _from_json_outcome(valid[:position] + insert + valid[position + cut :])


# --- in-toto statements -------------------------------------------------------------------------


def test_make_statement_exact_bytes() -> None:
    statement = make_statement("model", DIGEST, PREDICATE_TYPE, {"stage": "prod", "seq": 3})

    assert statement == (
        b'{"_type":"https://in-toto.io/Statement/v1",'
        b'"predicate":{"seq":3,"stage":"prod"},'
        b'"predicateType":"https://modelreg.dev/promotion/v1",'
        b'"subject":[{"digest":{"sha256":"' + DIGEST.encode() + b'"},"name":"model"}]}'
    )


def test_statement_round_trip() -> None:
    predicate = {"stage": "production", "sequence": 7, "approvers": ["alice", "bob"], "x": None}
    payload = make_statement("team/model", DIGEST, PREDICATE_TYPE, predicate)

    assert parse_statement(payload) == Statement("team/model", DIGEST, PREDICATE_TYPE, predicate)


def test_statement_keeps_non_ascii_as_utf8() -> None:
    payload = make_statement("modèle", DIGEST, PREDICATE_TYPE, {"note": "größer"})

    assert "modèle".encode() in payload
    assert "größer".encode() in payload
    assert parse_statement(payload).subject_name == "modèle"


def test_statement_in_signed_envelope(alice: SigningKey, bob: SigningKey) -> None:
    payload = make_statement("model", DIGEST, PREDICATE_TYPE, {"stage": "production"})
    envelope = add_signature(sign_envelope(IN_TOTO_PAYLOAD_TYPE, payload, alice), bob)

    received = Envelope.from_json(envelope.to_json())
    result = verify_envelope(received, trusted(alice, bob))
    assert result.verified == (alice.key_id, bob.key_id)
    assert received.payload_type == IN_TOTO_PAYLOAD_TYPE
    assert parse_statement(received.payload).predicate == {"stage": "production"}


@pytest.mark.parametrize(
    ("subject", "digest", "predicate_type", "predicate", "problem"),
    [
        ("", DIGEST, PREDICATE_TYPE, {}, "subject name is empty"),
        ("m", "sha256:" + DIGEST, PREDICATE_TYPE, {}, "not 64 lowercase hex"),
        ("m", DIGEST.upper(), PREDICATE_TYPE, {}, "not 64 lowercase hex"),
        ("m", DIGEST[:-1], PREDICATE_TYPE, {}, "not 64 lowercase hex"),
        ("m", DIGEST, "", {}, "predicate type is empty"),
        ("m", DIGEST, PREDICATE_TYPE, {"f": float("nan")}, "cannot encode"),
        ("m", DIGEST, PREDICATE_TYPE, {"when": object()}, "cannot encode"),
    ],
)
def test_make_statement_rejects_bad_input(
    subject: str, digest: str, predicate_type: str, predicate: dict[str, Any], problem: str
) -> None:
    with pytest.raises(InvalidInput, match=problem):
        make_statement(subject, digest, predicate_type, predicate)


def _statement_with(**changes: Any) -> bytes:
    document: dict[str, Any] = json.loads(make_statement("m", DIGEST, PREDICATE_TYPE, {"a": 1}))
    for field, value in changes.items():
        if value is _DROP:
            del document[field]
        else:
            document[field] = value
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"", "not valid UTF-8 JSON"),
        (b"\xff", "not valid UTF-8 JSON"),
        (b"[]", "not a JSON object"),
        (_statement_with(_type=_DROP), "missing field '_type'"),
        (_statement_with(_type="https://in-toto.io/Statement/v0.1"), "statement _type is"),
        (_statement_with(subject=_DROP), "missing field 'subject'"),
        (_statement_with(subject=[]), "exactly one subject"),
        (_statement_with(subject={"name": "m"}), "exactly one subject"),
        (
            _statement_with(subject=[{"name": "m", "digest": {"sha256": DIGEST}}] * 2),
            "exactly one subject",
        ),
        (_statement_with(subject=[{"name": "m"}]), "missing field 'digest'"),
        (_statement_with(subject=[{"name": "", "digest": {"sha256": DIGEST}}]), "name must be"),
        (_statement_with(subject=[{"name": 1, "digest": {"sha256": DIGEST}}]), "name must be"),
        (_statement_with(subject=[{"name": "m", "digest": {}}]), "missing field 'sha256'"),
        (_statement_with(subject=[{"name": "m", "digest": {"sha256": "x"}}]), "sha256 is not"),
        (
            _statement_with(subject=[{"name": "m", "digest": {"sha256": DIGEST, "md5": "x"}}]),
            "unknown field 'md5'",
        ),
        (
            _statement_with(subject=[{"name": "m", "digest": {"sha256": DIGEST}, "uri": "x"}]),
            "unknown field 'uri'",
        ),
        (_statement_with(predicateType=""), "predicateType must be"),
        (_statement_with(predicateType=None), "predicateType must be"),
        (_statement_with(predicate=_DROP), "missing field 'predicate'"),
        (_statement_with(predicate=[1]), "predicate must be a JSON object"),
        (_statement_with(extra=True), "unknown field 'extra'"),
        (_statement_with(predicate={"big": "BIG"}).replace(b'"BIG"', b"1e400"), "inf, which"),
        (_statement_with(predicate={"bad": "\ud800"}), "not valid Unicode"),
        (b'{"predicate":{"x":-Infinity}}', "-Infinity is not valid JSON"),
        (_statement_with(predicate=json.loads("[" * 70 + "]" * 70)), "nested deeper"),
        (b'{"_type":"a","_type":"b"}', "duplicate key '_type'"),
    ],
    ids=_problem_id,
)
def test_malformed_statements_refused(payload: bytes, problem: str) -> None:
    with pytest.raises(IntegrityError) as caught:
        parse_statement(payload)
    assert problem in caught.value.message
    assert caught.value.hint


@given(st.binary(max_size=1024) | _json_values.map(lambda v: json.dumps(v).encode()))
def test_parse_statement_only_raises_integrity_error(payload: bytes) -> None:
    try:
        parse_statement(payload)
    except IntegrityError as error:
        assert error.message


# --- canonical JSON -----------------------------------------------------------------------------


def test_canonical_json_is_sorted_compact_utf8() -> None:
    value = {"b": [1, 2.5, True, None], "a": {"z": "é", "y": (1, 2)}}

    assert canonical_json(value) == '{"a":{"y":[1,2],"z":"é"},"b":[1,2.5,true,null]}'.encode()
    assert canonical_json(MappingProxyType({"k": "v"})) == b'{"k":"v"}'


@pytest.mark.parametrize(
    "value",
    [
        {"x": float("inf")},
        {"x": float("nan")},
        {1: "int key"},
        {"x": b"bytes"},
        {"x": {1, 2}},
        {"x": "\udc80"},
        json.loads("[" * 70 + "]" * 70),
    ],
)
def test_canonical_json_rejects_what_json_cannot_say_exactly(value: Any) -> None:
    with pytest.raises(InvalidInput, match="cannot encode as canonical JSON"):
        canonical_json(value)


# ----- the short way a modelreg .pub is read (no PEM machinery) ----------------------------


def test_a_public_key_read_the_short_way_is_the_key_the_full_parser_reads(tmp_path: Path) -> None:
    from modelreg.signing import PublicKey, _p256_spki, generate_keypair, load_signing_key

    key_path, pub_path = generate_keypair(tmp_path, "k")
    data = pub_path.read_bytes()
    assert _p256_spki(data) is not None  # what modelreg writes takes the short way
    short = PublicKey.from_pem(data)
    full = PublicKey(serialization.load_pem_public_key(data))
    assert short.key_id == full.key_id == load_signing_key(key_path).key_id
    assert short.pem == full.pem == data
    signature = load_signing_key(key_path).sign(b"payload")
    assert short.verify(b"payload", signature)
    assert not short.verify(b"other", signature)


def test_a_public_key_the_short_way_does_not_accept_takes_the_full_parser(tmp_path: Path) -> None:
    from modelreg.signing import PublicKey, _p256_spki

    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    compressed = public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    der = bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200") + compressed
    pem = b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(der) + b"-----END PUBLIC KEY-----\n"
    assert _p256_spki(pem) is None
    assert PublicKey.from_pem(pem) == PublicKey(public)  # the same key, read the long way
    uncompressed = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert _p256_spki(b"junk before\n" + uncompressed) is None
    assert PublicKey.from_pem(b"junk before\n" + uncompressed) == PublicKey(public)
    # a point that is not on the curve: the full parser's refusal, as before
    spki = _p256_spki(uncompressed)
    assert spki is not None
    off_curve = spki[:-1] + bytes([spki[-1] ^ 1])
    bad = b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(off_curve)
    bad += b"-----END PUBLIC KEY-----\n"
    assert _p256_spki(bad) == off_curve
    with pytest.raises(InvalidInput, match="not a PEM public key"):
        PublicKey.from_pem(bad)
