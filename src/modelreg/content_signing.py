"""OpenSSF model-signing content signatures: the format, made and read by our own code.

A content signature is what ``model_signing sign key`` writes (model-signing
1.x, sigstore/model-transparency): a Sigstore bundle v0.3 JSON document holding
a DSSE envelope (reused from :mod:`modelreg.signing`) of an in-toto Statement
v1 with predicate ``https://model_signing/signature/v1.0``. The predicate lists
every file of the model (POSIX path relative to the model directory) with its
sha256; the statement's subject digest is the sha256 of those digests' bytes
concatenated in listing order. The bundle names the signer only by a hint: the
hex sha256 of the public key's PEM bytes.

We write exactly the ``files`` serialization with ``sha256``, no symlinks and
the stock tool's default ignore list (the git files below), so ``model_signing
verify key DIR --signature FILE --public_key KEY.pub`` accepts what we sign,
and we accept what the stock tool signs with its defaults. Pure data, no I/O
except :func:`hash_directory`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

from ._json import JsonReadError, read_json
from .errors import IntegrityError, InvalidInput, VerificationError
from .signing import (
    IN_TOTO_PAYLOAD_TYPE,
    IN_TOTO_STATEMENT_TYPE,
    PublicKey,
    SigningKey,
    canonical_json,
    make_statement,
    pae,
)

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
# what model_signing leaves out by default (paths relative to the model directory)
DEFAULT_IGNORED = (".github", ".gitattributes", ".git", ".gitignore")
MAX_BUNDLE_BYTES = 16 * 1024 * 1024
_CHUNK = 1024 * 1024
_HINT = "the signature is not a model_signing v1.0 bundle; sign again with `model_signing sign key`"


@dataclass(frozen=True)
class ContentBundle:
    """A parsed (not yet verified) content signature and its exact bytes."""

    data: bytes
    model_name: str
    files: Mapping[str, str]  # relative POSIX path -> sha256 hex
    ignored: tuple[str, ...]
    key_hint: str | None
    payload: bytes
    signature: bytes

    def signer(self, trusted: Iterable[PublicKey]) -> PublicKey | None:
        """The trusted key whose signature this is (as the stock verifier checks), or None."""
        message = pae(IN_TOTO_PAYLOAD_TYPE, self.payload)
        for key in trusted:
            if self.key_hint and self.key_hint != key_hint(key):
                continue
            if key.verify(message, self.signature):
                return key
        return None


def key_hint(key: PublicKey) -> str:
    """How a bundle names its key: the hex sha256 of the PEM public key."""
    return hashlib.sha256(key.pem).hexdigest()


def is_ignored(name: str, ignored: Iterable[str] = DEFAULT_IGNORED) -> bool:
    return any(name == path or name.startswith(f"{path}/") for path in ignored)


def signed_part(
    files: Mapping[str, str], ignored: Iterable[str] = DEFAULT_IGNORED
) -> dict[str, str]:
    """The files a signature covers: all but the ignored paths."""
    ignored = tuple(ignored)
    return {name: digest for name, digest in files.items() if not is_ignored(name, ignored)}


def sign_files(files: Mapping[str, str], model_name: str, key: SigningKey) -> bytes:
    """A bundle signing ``files`` (relative POSIX path -> sha256 hex) with ``key``."""
    covered = signed_part(files)
    if not covered:
        raise InvalidInput("the model has no files to sign", "a model needs at least one file")
    for name, digest in covered.items():
        _check_name(name, InvalidInput)
        _check_hex(digest, name, InvalidInput)
    ordered = sorted(covered.items())
    root = hashlib.sha256(b"".join(bytes.fromhex(d) for _, d in ordered)).hexdigest()
    predicate = {
        "serialization": {
            "method": "files",
            "hash_type": "sha256",
            "allow_symlinks": False,
            "ignore_paths": list(DEFAULT_IGNORED),
        },
        "resources": [
            {"name": name, "algorithm": "sha256", "digest": digest} for name, digest in ordered
        ],
    }
    payload = make_statement(model_name or "model", root, PREDICATE_TYPE, predicate)
    signature = key.sign(pae(IN_TOTO_PAYLOAD_TYPE, payload))
    return canonical_json(
        {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {
                "publicKey": {"hint": key_hint(key.public_key)},
                "tlogEntries": [],
            },
            "dsseEnvelope": {
                "payload": base64.b64encode(payload).decode(),
                "payloadType": IN_TOTO_PAYLOAD_TYPE,
                # model_signing writes an empty keyid and names the key by the hint
                "signatures": [{"sig": base64.b64encode(signature).decode(), "keyid": ""}],
            },
        }
    )


def parse_bundle(data: bytes) -> ContentBundle:
    """Read a key-method bundle strictly; anything else raises :class:`IntegrityError`."""
    if len(data) > MAX_BUNDLE_BYTES:
        _bad(f"the signature is {len(data)} bytes, over the {MAX_BUNDLE_BYTES} byte limit")
    bundle = _object(_json(data, "signature"), "signature")
    if bundle.get("mediaType") != BUNDLE_MEDIA_TYPE:
        _bad(f"signature media type is {bundle.get('mediaType')!r}, not {BUNDLE_MEDIA_TYPE!r}")
    material = _object(bundle.get("verificationMaterial"), "verificationMaterial")
    public_key = material.get("publicKey")
    if public_key is None:
        _bad(
            "the signature carries no publicKey hint: it was not made with a key",
            "modelreg reads key-method signatures (`model_signing sign key`)",
        )
    hint = _object(public_key, "verificationMaterial.publicKey").get("hint")
    if hint is not None and not isinstance(hint, str):
        _bad("verificationMaterial.publicKey.hint is not a string")
    envelope = _object(bundle.get("dsseEnvelope"), "dsseEnvelope")
    if envelope.get("payloadType") != IN_TOTO_PAYLOAD_TYPE:
        _bad(f"DSSE payloadType is {envelope.get('payloadType')!r}, not {IN_TOTO_PAYLOAD_TYPE!r}")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        _bad("the DSSE envelope has no signatures")
    payload = _base64(envelope.get("payload"), "dsseEnvelope.payload")
    signature = _base64(_object(signatures[0], "signature").get("sig"), "signature sig")
    name, files, ignored = _parse_statement(payload)
    return ContentBundle(data, name, files, ignored, hint or None, payload, signature)


def _parse_statement(payload: bytes) -> tuple[str, dict[str, str], tuple[str, ...]]:
    statement = _object(_json(payload, "signed statement"), "signed statement")
    if statement.get("_type") != IN_TOTO_STATEMENT_TYPE:
        _bad(f"statement _type is {statement.get('_type')!r}, not {IN_TOTO_STATEMENT_TYPE!r}")
    if statement.get("predicateType") != PREDICATE_TYPE:
        _bad(f"predicate type is {statement.get('predicateType')!r}, not {PREDICATE_TYPE!r}")
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1:
        _bad("the statement must have exactly one subject")
    subject = _object(subjects[0], "subject")
    name = subject.get("name")
    root = _object(subject.get("digest"), "subject digest").get("sha256")
    if not isinstance(name, str) or not isinstance(root, str):
        _bad("the statement subject needs a name and a sha256 digest")
    predicate = _object(statement.get("predicate"), "predicate")
    serialization = _object(predicate.get("serialization"), "predicate serialization")
    if serialization.get("method") != "files" or serialization.get("hash_type") != "sha256":
        _bad(
            f"the signature uses serialization {serialization.get('method')!r} with "
            f"{serialization.get('hash_type')!r}; modelreg reads 'files' with 'sha256'",
            "sign with model_signing's defaults (no --shard or other hash options)",
        )
    ignored = serialization.get("ignore_paths", [])
    if not isinstance(ignored, list) or not all(isinstance(p, str) for p in ignored):
        _bad("serialization ignore_paths is not a list of paths")
    files = _signed_files(predicate.get("resources"))
    concatenated = b"".join(bytes.fromhex(digest) for digest in files.values())
    if hashlib.sha256(concatenated).hexdigest() != root:
        _bad("the statement's subject digest does not match its resources")
    return name, dict(sorted(files.items())), tuple(ignored)


def _signed_files(resources: object) -> dict[str, str]:
    """The predicate's resources: file path -> sha256 hex, in the order they were signed."""
    if not isinstance(resources, list):
        _bad("the predicate has no resources list")
    files: dict[str, str] = {}
    for index, entry in enumerate(resources):
        resource = _object(entry, f"resource #{index + 1}")
        path, digest = resource.get("name"), resource.get("digest")
        if resource.get("algorithm") != "sha256" or not isinstance(path, str):
            _bad(f"resource #{index + 1} is not a named sha256 file digest")
        if path == ".":
            raise VerificationError(
                "the signature was made over a single file, not a directory",
                "a pull writes DIR/FILE, which it cannot cover: put the file in a directory, "
                "sign that with `model_signing sign key DIR`, and push the directory",
            )
        _check_name(path, IntegrityError)
        if not isinstance(digest, str):
            _bad(f"resource {path!r} has no digest")
        _check_hex(digest, path, IntegrityError)
        if path in files:
            _bad(f"the signature lists {path!r} twice")
        files[path] = digest
    return files


def differences(signed: Mapping[str, str], actual: Mapping[str, str]) -> list[str]:
    """How ``actual`` files differ from what a signature covers; empty when they match.

    Files the signature's default ignore list leaves out are not compared.
    """
    present = signed_part(actual)
    problems = [f"{name} is not covered by the signature" for name in present if name not in signed]
    problems += [f"{name} is signed but missing" for name in signed if name not in present]
    problems += [
        f"{name} differs from the signed content"
        for name, digest in present.items()
        if name in signed and signed[name] != digest
    ]
    return sorted(problems)


def hash_directory(directory: Path) -> dict[str, str]:
    """Every regular file below ``directory``: relative POSIX path -> sha256 hex."""
    files: dict[str, str] = {}
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            relative = path.relative_to(directory).as_posix()
            if not stat.S_ISREG(path.lstat().st_mode):
                raise InvalidInput(
                    f"{path} is not a regular file", "model directories hold only regular files"
                )
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
            files[relative] = digest.hexdigest()
    return dict(sorted(files.items()))


def _check_name(name: str, error: type[InvalidInput] | type[IntegrityError]) -> None:
    parts = PurePosixPath(name).parts
    if not name or name.startswith("/") or ".." in parts or "." in name.split("/") or "\0" in name:
        raise error(f"file name {name!r} is not a plain relative path", _HINT)


def _check_hex(digest: object, name: str, error: type[InvalidInput] | type[IntegrityError]) -> None:
    if not isinstance(digest, str) or len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise error(f"the digest of {name!r} is not 64 lowercase hex characters", _HINT)


def _json(data: bytes, what: str) -> Any:
    """Strictly (no duplicate keys: a signed statement must mean one thing to every reader)."""
    try:
        return read_json(data)
    except JsonReadError as exc:
        _bad(f"the {what} is not JSON ({exc})")


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _bad(f"{what} is not a JSON object")
    return value


def _base64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        _bad(f"{what} is not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.urlsafe_b64decode(value)
        except (binascii.Error, ValueError):
            _bad(f"{what} is not base64")


def _bad(problem: str, hint: str = _HINT) -> NoReturn:
    raise IntegrityError(problem, hint)
