"""Keys, DSSE envelopes and in-toto statements: everything modelreg signs or verifies.

Keys are ECDSA P-256 (as with cosign). Signatures are ECDSA-SHA256 in DER form,
made deterministically (RFC 6979). A key's id is the lowercase hex SHA-256 of
its DER-encoded SubjectPublicKeyInfo, all 64 characters; it is what envelopes
carry in ``keyid`` and what trust policies list.

Envelopes follow DSSE (https://github.com/secure-systems-lab/dsse): each
signature covers ``pae(payload_type, payload)``, so the payload type is signed
too. The payload modelreg signs is an in-toto Statement v1 (``make_statement``).

This is the only module of the package that imports ``cryptography``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelreg._json import MAX_DEPTH, JsonReadError, canonical_json, read_json
from modelreg._json import quote as _quote
from modelreg.errors import IntegrityError, InvalidInput, NotFound

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
"""DSSE payloadType of an envelope whose payload is an in-toto statement."""

IN_TOTO_STATEMENT_TYPE = "https://in-toto.io/Statement/v1"

MAX_ENVELOPE_BYTES = 1024 * 1024
MAX_KEY_FILE_BYTES = 64 * 1024
MAX_JSON_DEPTH = MAX_DEPTH

PASSPHRASE_HINT = "pass --passphrase-file or set MODELREG_KEY_PASSPHRASE"

_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_ENVELOPE_HINT = "the envelope is damaged or is not a DSSE JSON envelope; fetch or sign it again"
_STATEMENT_HINT = "the signed payload is not an in-toto v1 statement in the form modelreg writes"


# --- keys ---------------------------------------------------------------------------------------


class PublicKey:
    """An ECDSA P-256 public key that verifies signatures made by a :class:`SigningKey`."""

    def __init__(self, public_key: ec.EllipticCurvePublicKey) -> None:
        _require_p256(public_key, "public key")
        self._public_key = public_key
        der = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key_id: str = hashlib.sha256(der).hexdigest()

    @classmethod
    def from_pem(cls, data: bytes) -> PublicKey:
        """Parse a PEM SubjectPublicKeyInfo block (a ``.pub`` file's content)."""
        return _parse_public_key(data, "public key data")

    @property
    def pem(self) -> bytes:
        return self._public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, data: bytes, signature: bytes) -> bool:
        """True when *signature* is this key's ECDSA-SHA256 DER signature over *data*."""
        try:
            self._public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.key_id == self.key_id

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __repr__(self) -> str:
        return f"PublicKey(key_id={self.key_id!r})"


class SigningKey:
    """An ECDSA P-256 private key; signs with ECDSA-SHA256 and returns DER signatures."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        _require_p256(private_key, "signing key")
        self._private_key = private_key
        self.public_key = PublicKey(private_key.public_key())

    @classmethod
    def from_pem(cls, data: bytes, passphrase: bytes | None = None) -> SigningKey:
        """Parse a PEM private key, e.g. one handed over in a CI secret instead of a file."""
        return _parse_signing_key(data, passphrase, "signing key data")

    @property
    def key_id(self) -> str:
        return self.public_key.key_id

    def sign(self, data: bytes) -> bytes:
        # Deterministic nonces (RFC 6979) need no randomness at signing time and make
        # re-signing the same data return the same bytes, which keeps add_signature idempotent.
        try:
            return self._private_key.sign(
                data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
            )
        except UnsupportedAlgorithm:  # OpenSSL older than 3.2
            return self._private_key.sign(data, ec.ECDSA(hashes.SHA256()))

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"


def generate_keypair(
    directory: Path, name: str, passphrase: bytes | None = None
) -> tuple[Path, Path]:
    """Create ``<name>.key`` (PKCS#8 PEM, mode 0600) and ``<name>.pub`` in *directory*.

    The private key is encrypted when *passphrase* is given. Existing files are
    never overwritten. Returns ``(key_path, pub_path)``.
    """
    if not _KEY_NAME.fullmatch(name):
        raise InvalidInput(
            f"invalid key name {_quote(name)}",
            hint="use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    if passphrase is not None and not passphrase:
        raise InvalidInput(
            "the key passphrase is empty",
            hint="give a non-empty passphrase, or none to write an unencrypted key",
        )
    if not directory.is_dir():
        raise NotFound(f"key directory does not exist: {directory}", hint="create it first")
    key_path = directory / f"{name}.key"
    pub_path = directory / f"{name}.pub"
    for path in (key_path, pub_path):
        if path.exists() or path.is_symlink():
            raise _refuse_overwrite(path)

    private_key = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    key_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    _write_new_file(key_path, key_pem, mode=0o600)
    try:
        _write_new_file(pub_path, PublicKey(private_key.public_key()).pem, mode=0o644)
    except BaseException:
        key_path.unlink(missing_ok=True)
        raise
    return key_path, pub_path


def load_signing_key(path: Path, passphrase: bytes | None = None) -> SigningKey:
    """Read a PEM private key file; *passphrase* is needed exactly when the file is encrypted."""
    return _parse_signing_key(
        _read_key_file(path, "signing key"), passphrase, f"signing key {path}"
    )


def load_public_key(path: Path) -> PublicKey:
    """Read a PEM public key file (a ``.pub`` written by :func:`generate_keypair`)."""
    return _parse_public_key(_read_key_file(path, "public key"), f"public key {path}")


def _parse_signing_key(data: bytes, passphrase: bytes | None, source: str) -> SigningKey:
    passphrase = passphrase or None
    if b"PRIVATE KEY-----" not in data:
        raise InvalidInput(
            f"{source} is not a PEM private key",
            hint="expected a '-----BEGIN PRIVATE KEY-----' block as written by modelreg",
        )
    try:
        private_key = serialization.load_pem_private_key(data, passphrase)
    except TypeError as exc:  # documented: passphrase missing, or given for a plain key
        if passphrase is None:
            raise InvalidInput(
                f"{source} is encrypted and no passphrase was given", PASSPHRASE_HINT
            ) from exc
        raise InvalidInput(
            f"{source} is not encrypted, but a passphrase was given",
            hint="drop the passphrase (--passphrase-file, MODELREG_KEY_PASSPHRASE)",
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        encrypted = (
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data or b"Proc-Type: 4,ENCRYPTED" in data
        )
        if passphrase is not None and encrypted:
            raise InvalidInput(
                f"cannot decrypt {source}: wrong passphrase or damaged key",
                hint="check the passphrase (--passphrase-file, MODELREG_KEY_PASSPHRASE)",
            ) from exc
        raise InvalidInput(
            f"{source} is not a readable PEM private key",
            hint="expected a PKCS#8 ECDSA P-256 key as written by modelreg",
        ) from exc
    if not isinstance(private_key, ec.EllipticCurvePrivateKey):
        raise _not_p256(private_key, source)
    _require_p256(private_key, source)
    return SigningKey(private_key)


def _parse_public_key(data: bytes, source: str) -> PublicKey:
    try:
        public_key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidInput(
            f"{source} is not a PEM public key",
            hint="expected a '-----BEGIN PUBLIC KEY-----' block as written by modelreg",
        ) from exc
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise _not_p256(public_key, source)
    _require_p256(public_key, source)
    return PublicKey(public_key)


def _require_p256(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey, source: str) -> None:
    if not isinstance(key.curve, ec.SECP256R1):
        raise _not_p256(key, source)


def _not_p256(key: object, source: str) -> InvalidInput:
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        kind = f"an ECDSA {key.curve.name}"
    else:
        kind = f"a {type(key).__name__.lstrip('_')}"
    return InvalidInput(
        f"{source} is {kind} key, not an ECDSA P-256 key",
        hint="generate a P-256 key pair with modelreg and use that",
    )


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        raise NotFound(
            f"{what} not found: {path}", hint="check the path, or generate a key pair first"
        ) from None
    except OSError as exc:
        raise InvalidInput(
            f"cannot read {what} {path}: {exc.strerror or type(exc).__name__}",
            hint="check that the path is a readable file",
        ) from exc
    if len(data) > MAX_KEY_FILE_BYTES:
        raise InvalidInput(
            f"{what} {path} is larger than {MAX_KEY_FILE_BYTES} bytes, too large for a key file",
            hint="check the path",
        )
    return data


def _write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Write *path* atomically, failing if it exists; the content is never visible half-written."""
    try:
        # mkstemp creates the file with mode 0600 whatever the umask, so a private key
        # is never readable by others, not even before the chmod below.
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    temp_path = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if mode != 0o600:
            os.chmod(temp_path, mode)
        # link() + unlink() instead of rename(): rename would silently replace a file
        # created by someone else since our existence check; link refuses.
        os.link(temp_path, path)
    except FileExistsError:
        raise _refuse_overwrite(path) from None
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    finally:
        temp_path.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the file itself is synced
    finally:
        os.close(fd)


def _refuse_overwrite(path: Path) -> InvalidInput:
    return InvalidInput(
        f"{path} already exists; refusing to overwrite a key file",
        hint="choose another key name or move the existing file away",
    )


def _cannot_write(path: Path, exc: OSError) -> InvalidInput:
    return InvalidInput(
        f"cannot write {path}: {exc.strerror or type(exc).__name__}",
        hint="check that the key directory is writable",
    )


# --- DSSE envelopes -----------------------------------------------------------------------------


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
        fields = _fields(
            _parse_json(data, "DSSE envelope", _ENVELOPE_HINT),
            {"payload", "payloadType", "signatures"},
            "DSSE envelope",
            _ENVELOPE_HINT,
        )
        payload_type = _text(fields["payloadType"], "DSSE envelope field 'payloadType'")
        payload = _b64decode(fields["payload"], "DSSE envelope field 'payload'")
        entries = fields["signatures"]
        if not isinstance(entries, list):
            _malformed("DSSE envelope field 'signatures' is not a list", _ENVELOPE_HINT)
        if not entries:
            _malformed("DSSE envelope has no signatures", _ENVELOPE_HINT)
        signatures = []
        for index, entry in enumerate(entries):
            where = f"DSSE envelope signature #{index + 1}"
            entry_fields = _fields(entry, {"keyid", "sig"}, where, _ENVELOPE_HINT)
            keyid = entry_fields["keyid"]
            if not isinstance(keyid, str) or not _SHA256_HEX.fullmatch(keyid):
                _malformed(
                    f"{where} has keyid {_quote(keyid)}, not 64 lowercase hex characters",
                    _ENVELOPE_HINT,
                )
            sig = _b64decode(entry_fields["sig"], f"{where} field 'sig'")
            if not sig:
                _malformed(f"{where} is empty", _ENVELOPE_HINT)
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


# --- in-toto statements -------------------------------------------------------------------------


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
    if not _SHA256_HEX.fullmatch(subject_sha256_hex):
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
        _malformed(f"statement is over the {MAX_ENVELOPE_BYTES} byte limit", _STATEMENT_HINT)
    document = _parse_json(payload, "in-toto statement", _STATEMENT_HINT)
    fields = _fields(
        document,
        {"_type", "subject", "predicateType", "predicate"},
        "in-toto statement",
        _STATEMENT_HINT,
    )
    if fields["_type"] != IN_TOTO_STATEMENT_TYPE:
        _malformed(
            f"statement _type is {_quote(fields['_type'])}, not {IN_TOTO_STATEMENT_TYPE!r}",
            _STATEMENT_HINT,
        )
    subjects = fields["subject"]
    if not isinstance(subjects, list) or len(subjects) != 1:
        _malformed("statement subject must be a list of exactly one subject", _STATEMENT_HINT)
    subject = _fields(subjects[0], {"name", "digest"}, "statement subject", _STATEMENT_HINT)
    name = subject["name"]
    if not isinstance(name, str) or not name:
        _malformed("statement subject name must be a non-empty string", _STATEMENT_HINT)
    digest = _fields(subject["digest"], {"sha256"}, "statement subject digest", _STATEMENT_HINT)
    sha256 = digest["sha256"]
    if not isinstance(sha256, str) or not _SHA256_HEX.fullmatch(sha256):
        _malformed("statement subject sha256 is not 64 lowercase hex characters", _STATEMENT_HINT)
    predicate_type = fields["predicateType"]
    if not isinstance(predicate_type, str) or not predicate_type:
        _malformed("statement predicateType must be a non-empty string", _STATEMENT_HINT)
    predicate = fields["predicate"]
    if not isinstance(predicate, dict):
        _malformed("statement predicate must be a JSON object", _STATEMENT_HINT)
    return Statement(name, sha256, predicate_type, predicate)


# --- strict parsing -----------------------------------------------------------------------------


def _parse_json(data: bytes, what: str, hint: str) -> Any:
    try:
        return read_json(data)
    except JsonReadError as exc:
        if exc.problem == "depth":
            _malformed(f"{what} is nested too deeply ({exc})", hint)
        if exc.problem == "unicode":
            _malformed(f"{what}: {exc}", hint)
        _malformed(f"{what} is not valid UTF-8 JSON: {exc}", hint)


def _fields(value: object, names: set[str], what: str, hint: str) -> dict[str, Any]:
    """*value* as a JSON object with exactly the fields *names*."""
    if not isinstance(value, dict):
        _malformed(f"{what} is not a JSON object", hint)
    missing = sorted(names - value.keys())
    if missing:
        _malformed(f"{what} is missing field {_quote(missing[0])}", hint)
    unknown = sorted(value.keys() - names)
    if unknown:
        _malformed(f"{what} has unknown field {_quote(unknown[0])}", hint)
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        _malformed(f"{what} must be a non-empty string", _ENVELOPE_HINT)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        _malformed(f"{what} is not valid Unicode", _ENVELOPE_HINT)
    return value


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        _malformed(f"{what} is not a base64 string", _ENVELOPE_HINT)
    standard = value.replace("-", "+").replace("_", "/")  # DSSE allows URL-safe base64 too
    try:
        data = base64.b64decode(standard, validate=True)
    except ValueError:
        _malformed(f"{what} is not valid base64", _ENVELOPE_HINT)
    if _b64encode(data) != standard:
        # Stray trailing bits would let one envelope have several encodings.
        _malformed(f"{what} is not canonical base64", _ENVELOPE_HINT)
    return data


def _malformed(problem: str, hint: str) -> NoReturn:
    raise IntegrityError(problem, hint)


__all__ = [
    "IN_TOTO_PAYLOAD_TYPE",
    "IN_TOTO_STATEMENT_TYPE",
    "MAX_ENVELOPE_BYTES",
    "PASSPHRASE_HINT",
    "Envelope",
    "PublicKey",
    "Signature",
    "SigningKey",
    "Statement",
    "VerifiedSignatures",
    "add_signature",
    "canonical_json",
    "generate_keypair",
    "load_public_key",
    "load_signing_key",
    "make_statement",
    "pae",
    "parse_statement",
    "sign_envelope",
    "verify_envelope",
]
