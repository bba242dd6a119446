"""Keys: ECDSA P-256 signing and public keys, generated, loaded and saved.

Keys are ECDSA P-256 (as with cosign). Signatures are ECDSA-SHA256 in DER form,
made deterministically (RFC 6979). A key's id is the lowercase hex SHA-256 of
its DER-encoded SubjectPublicKeyInfo, all 64 characters; it is what envelopes
carry in ``keyid`` and what trust policies list.

What the keys sign lives beside this module and is re-exported from it:
DSSE envelopes (:mod:`.dsse`) and in-toto statements (:mod:`.in_toto`).

This is the only module of the package that imports ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

if TYPE_CHECKING:  # the PEM/DER machinery loads when a key is written or read the long way
    from cryptography.hazmat.primitives import serialization

from modelreg._json import canonical_json
from modelreg._json import quote as _quote
from modelreg.dsse import (
    MAX_ENVELOPE_BYTES,
    Envelope,
    Signature,
    VerifiedSignatures,
    add_signature,
    pae,
    sign_envelope,
    verify_envelope,
)
from modelreg.errors import InvalidInput, NotFound
from modelreg.in_toto import (
    IN_TOTO_PAYLOAD_TYPE,
    IN_TOTO_STATEMENT_TYPE,
    Statement,
    make_statement,
    parse_statement,
)

MAX_KEY_FILE_BYTES = 64 * 1024

PASSPHRASE_HINT = "pass --passphrase-file or set MODELREG_KEY_PASSPHRASE"

_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

# The DER SubjectPublicKeyInfo of every P-256 key with an uncompressed point starts with
# these 26 bytes: SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING { 04 || X || Y } }
_P256_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")
_P256_SPKI_SIZE = len(_P256_SPKI_PREFIX) + 65


# --- keys ---------------------------------------------------------------------------------------


class PublicKey:
    """An ECDSA P-256 public key that verifies signatures made by a :class:`SigningKey`."""

    def __init__(self, public_key: ec.EllipticCurvePublicKey, _spki: bytes | None = None) -> None:
        _require_p256(public_key, "public key")
        self._public_key = public_key
        if _spki is None:  # (_spki: its DER SubjectPublicKeyInfo, when the caller parsed it)
            from cryptography.hazmat.primitives import serialization

            _spki = public_key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        self.key_id: str = hashlib.sha256(_spki).hexdigest()

    @classmethod
    def from_pem(cls, data: bytes) -> PublicKey:
        """Parse a PEM SubjectPublicKeyInfo block (a ``.pub`` file's content)."""
        return _parse_public_key(data, "public key data")

    @property
    def pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

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

    from cryptography.hazmat.primitives import serialization

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
    from cryptography.hazmat.primitives import serialization

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
    spki = _p256_spki(data)
    if spki is not None:
        try:
            point = ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), spki[len(_P256_SPKI_PREFIX) :]
            )
        except ValueError:
            pass  # not a point on the curve: the full parser below says so
        else:
            return PublicKey(point, spki)
    from cryptography.hazmat.primitives import serialization

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


def _p256_spki(data: bytes) -> bytes | None:
    """The DER of a PEM public key written as modelreg writes them (one P-256 key, its point
    uncompressed, nothing around the block); None for anything else, which takes the full
    parser. Importing that parser costs a cold ``modelreg resolve`` a tenth of its time."""
    lines = data.strip().splitlines()
    if (
        len(lines) < 3
        or lines[0] != b"-----BEGIN PUBLIC KEY-----"
        or lines[-1] != b"-----END PUBLIC KEY-----"
    ):
        return None
    try:
        der = base64.b64decode(b"".join(lines[1:-1]), validate=True)
    except binascii.Error:
        return None
    if len(der) != _P256_SPKI_SIZE or not der.startswith(_P256_SPKI_PREFIX):
        return None
    return der


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
