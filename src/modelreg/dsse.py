"""DSSE envelopes (https://github.com/secure-systems-lab/dsse): sign, co-sign, verify, parse.

Each signature covers ``pae(payload_type, payload)``, so the payload type is
signed too. The keys come from :mod:`.signing`, the only module that touches
``cryptography``; this one only calls their ``sign`` and ``verify``.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelreg._json import canonical_json
from modelreg._json import quote as _quote
from modelreg._strict import SHA256_HEX, exact_fields, malformed, parse_json
from modelreg.errors import IntegrityError, InvalidInput

if TYPE_CHECKING:
    from modelreg.signing import PublicKey, SigningKey

MAX_ENVELOPE_BYTES = 1024 * 1024

_ENVELOPE_HINT = "the envelope is damaged or is not a DSSE JSON envelope; fetch or sign it again"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: the exact bytes a signature covers."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope. ``signatures`` may hold several approvers' signatures."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_json(self) -> bytes:
        """The standard DSSE JSON form, as deterministic bytes (sorted keys, no whitespace)."""
        return canonical_json(
            {
                "payload": _b64encode(self.payload),
                "payloadType": self.payload_type,
                "signatures": [
                    {"keyid": signature.keyid, "sig": _b64encode(signature.sig)}
                    for signature in self.signatures
                ],
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> Envelope:
        """Parse DSSE JSON strictly; anything malformed raises :class:`IntegrityError`.

        Accepts standard or URL-safe base64 (both padded), as DSSE requires. There
        must be at least one signature, each with a modelreg key id (64 lowercase hex).
        """
        if len(data) > MAX_ENVELOPE_BYTES:
            raise IntegrityError(
                f"DSSE envelope is {len(data)} bytes, over the {MAX_ENVELOPE_BYTES} byte limit",
                _ENVELOPE_HINT,
            )
        fields = exact_fields(
            parse_json(data, "DSSE envelope", _ENVELOPE_HINT),
            {"payload", "payloadType", "signatures"},
            "DSSE envelope",
            _ENVELOPE_HINT,
        )
        payload_type = _text(fields["payloadType"], "DSSE envelope field 'payloadType'")
        payload = _b64decode(fields["payload"], "DSSE envelope field 'payload'")
        entries = fields["signatures"]
        if not isinstance(entries, list):
            malformed("DSSE envelope field 'signatures' is not a list", _ENVELOPE_HINT)
        if not entries:
            malformed("DSSE envelope has no signatures", _ENVELOPE_HINT)
        signatures = []
        for index, entry in enumerate(entries):
            where = f"DSSE envelope signature #{index + 1}"
            entry_fields = exact_fields(entry, {"keyid", "sig"}, where, _ENVELOPE_HINT)
            keyid = entry_fields["keyid"]
            if not isinstance(keyid, str) or not SHA256_HEX.fullmatch(keyid):
                malformed(
                    f"{where} has keyid {_quote(keyid)}, not 64 lowercase hex characters",
                    _ENVELOPE_HINT,
                )
            sig = _b64decode(entry_fields["sig"], f"{where} field 'sig'")
            if not sig:
                malformed(f"{where} is empty", _ENVELOPE_HINT)
            signatures.append(Signature(keyid, sig))
        return cls(payload_type, payload, tuple(signatures))


@dataclass(frozen=True)
class VerifiedSignatures:
    """What verifying an envelope found, per key id, in envelope order.

    Each key id appears in exactly one field, however often it signed:
    ``verified`` if any of its signatures verified, else ``invalid`` if the key
    is trusted (the signature or the signed content was altered), else
    ``untrusted``. Thresholds are for the caller (the trust policy) to apply.
    """

    verified: tuple[str, ...]
    untrusted: tuple[str, ...]
    invalid: tuple[str, ...]


def sign_envelope(payload_type: str, payload: bytes, key: SigningKey) -> Envelope:
    return add_signature(Envelope(payload_type, payload, ()), key)


def add_signature(envelope: Envelope, key: SigningKey) -> Envelope:
    """Co-sign *envelope*. An existing signature by the same key is replaced in place.

    Signing is deterministic, so adding the same key twice returns an equal envelope.
    """
    new = Signature(key.key_id, key.sign(pae(envelope.payload_type, envelope.payload)))
    signatures: list[Signature] = []
    replaced = False
    for existing in envelope.signatures:
        if existing.keyid != new.keyid:
            signatures.append(existing)
        elif not replaced:
            signatures.append(new)
            replaced = True
    if not replaced:
        signatures.append(new)
    return dataclasses.replace(envelope, signatures=tuple(signatures))


def verify_envelope(envelope: Envelope, trusted: Mapping[str, PublicKey]) -> VerifiedSignatures:
    """Check every signature of *envelope* against *trusted* (key id -> public key).

    Never raises for bad or unknown signatures; see :class:`VerifiedSignatures`.
    """
    for key_id, public_key in trusted.items():
        # A mislabelled entry could let one key's signature count under two ids.
        if key_id != public_key.key_id:
            raise InvalidInput(
                f"trusted key listed as {_quote(key_id)} has key id {public_key.key_id}",
                hint="key the trusted map by each PublicKey's key_id",
            )
    message = pae(envelope.payload_type, envelope.payload)
    outcome: dict[str, bool | None] = {}  # None: untrusted, True: verified, False: invalid
    for signature in envelope.signatures:
        signer = trusted.get(signature.keyid)
        if signer is None:
            outcome[signature.keyid] = None
        elif outcome.get(signature.keyid) is not True:
            outcome[signature.keyid] = signer.verify(message, signature.sig)
    return VerifiedSignatures(
        verified=tuple(k for k, ok in outcome.items() if ok is True),
        untrusted=tuple(k for k, ok in outcome.items() if ok is None),
        invalid=tuple(k for k, ok in outcome.items() if ok is False),
    )


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        malformed(f"{what} must be a non-empty string", _ENVELOPE_HINT)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        malformed(f"{what} is not valid Unicode", _ENVELOPE_HINT)
    return value


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        malformed(f"{what} is not a base64 string", _ENVELOPE_HINT)
    standard = value.replace("-", "+").replace("_", "/")  # DSSE allows URL-safe base64 too
    try:
        data = base64.b64decode(standard, validate=True)
    except ValueError:
        malformed(f"{what} is not valid base64", _ENVELOPE_HINT)
    if _b64encode(data) != standard:
        # Stray trailing bits would let one envelope have several encodings.
        malformed(f"{what} is not canonical base64", _ENVELOPE_HINT)
    return data
