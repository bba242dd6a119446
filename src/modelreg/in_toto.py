"""in-toto Statement v1: the one-subject statements modelreg signs, written and read strictly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelreg._json import canonical_json
from modelreg._json import quote as _quote
from modelreg._strict import SHA256_HEX, exact_fields, malformed, parse_json
from modelreg.dsse import MAX_ENVELOPE_BYTES
from modelreg.errors import InvalidInput

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
"""DSSE payloadType of an envelope whose payload is an in-toto statement."""

IN_TOTO_STATEMENT_TYPE = "https://in-toto.io/Statement/v1"

_STATEMENT_HINT = "the signed payload is not an in-toto v1 statement in the form modelreg writes"


@dataclass(frozen=True)
class Statement:
    """An in-toto Statement v1 about exactly one subject, identified by its sha256."""

    subject_name: str
    subject_sha256: str
    predicate_type: str
    predicate: dict[str, Any]


def make_statement(
    subject_name: str, subject_sha256_hex: str, predicate_type: str, predicate: Mapping[str, Any]
) -> bytes:
    """Canonical JSON of an in-toto Statement v1; sign it with ``IN_TOTO_PAYLOAD_TYPE``."""
    if not subject_name:
        raise InvalidInput("statement subject name is empty", hint="name the subject")
    if not SHA256_HEX.fullmatch(subject_sha256_hex):
        raise InvalidInput(
            f"statement subject digest {_quote(subject_sha256_hex)} is not 64 lowercase hex",
            hint="pass the bare sha256 hex, without the 'sha256:' prefix",
        )
    if not predicate_type:
        raise InvalidInput("statement predicate type is empty", hint="give a predicate type URI")
    return canonical_json(
        {
            "_type": IN_TOTO_STATEMENT_TYPE,
            "subject": [{"name": subject_name, "digest": {"sha256": subject_sha256_hex}}],
            "predicateType": predicate_type,
            "predicate": predicate,
        }
    )


def parse_statement(payload: bytes) -> Statement:
    """Parse a statement strictly: exactly the shape :func:`make_statement` writes.

    One subject with a sha256 digest only, an object predicate, no unknown fields;
    anything else raises :class:`IntegrityError`.
    """
    if len(payload) > MAX_ENVELOPE_BYTES:
        malformed(f"statement is over the {MAX_ENVELOPE_BYTES} byte limit", _STATEMENT_HINT)
    document = parse_json(payload, "in-toto statement", _STATEMENT_HINT)
    fields = exact_fields(
        document,
        {"_type", "subject", "predicateType", "predicate"},
        "in-toto statement",
        _STATEMENT_HINT,
    )
    if fields["_type"] != IN_TOTO_STATEMENT_TYPE:
        malformed(
            f"statement _type is {_quote(fields['_type'])}, not {IN_TOTO_STATEMENT_TYPE!r}",
            _STATEMENT_HINT,
        )
    subjects = fields["subject"]
    if not isinstance(subjects, list) or len(subjects) != 1:
        malformed("statement subject must be a list of exactly one subject", _STATEMENT_HINT)
    subject = exact_fields(subjects[0], {"name", "digest"}, "statement subject", _STATEMENT_HINT)
    name = subject["name"]
    if not isinstance(name, str) or not name:
        malformed("statement subject name must be a non-empty string", _STATEMENT_HINT)
    digest = exact_fields(
        subject["digest"], {"sha256"}, "statement subject digest", _STATEMENT_HINT
    )
    sha256 = digest["sha256"]
    if not isinstance(sha256, str) or not SHA256_HEX.fullmatch(sha256):
        malformed("statement subject sha256 is not 64 lowercase hex characters", _STATEMENT_HINT)
    predicate_type = fields["predicateType"]
    if not isinstance(predicate_type, str) or not predicate_type:
        malformed("statement predicateType must be a non-empty string", _STATEMENT_HINT)
    predicate = fields["predicate"]
    if not isinstance(predicate, dict):
        malformed("statement predicate must be a JSON object", _STATEMENT_HINT)
    return Statement(name, sha256, predicate_type, predicate)
