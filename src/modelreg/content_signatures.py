"""Content signatures stored next to a model: attach, list, verify, write out.

Each signature is a Sigstore bundle (:mod:`.content_signing`) in a small OCI
artifact manifest: ``artifactType`` the bundle media type, one layer holding
the bundle's exact bytes, ``subject`` the model's manifest. :func:`_attach` and
:func:`_listed` are the only two places that know where such manifests live: always
under a tag ``sha256-<model hex>.sig-<bundle manifest hex[:16]>`` and as an OCI 1.1
referrer (``store.referrers``), so other tools (oras, cosign) see them.

What the files are is never taken from the model manifest's annotations (a
pusher writes those): it is hashed from the files themselves, on disk after a
pull, or from the verified layers for :func:`verify_model`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .content_signing import (
    BUNDLE_MEDIA_TYPE,
    ContentBundle,
    differences,
    hash_directory,
    parse_bundle,
    sign_files,
)
from .content_signing import MAX_BUNDLE_BYTES as MAX_BUNDLE_BYTES
from .digest import hex_part, sha256_digest
from .errors import IntegrityError, InvalidInput, NotFound, VerificationError
from .oci import EMPTY_JSON_BYTES, IMAGE_MANIFEST, Descriptor, Manifest, empty_config_descriptor
from .packing import scan_model
from .signing import PublicKey, SigningKey
from .store.base import Repository
from .transfer import fetch_model_manifest, read_small_blob, staging_directory, unpack_model

MAX_SIGNATURES = 64


@dataclass(frozen=True)
class SignedBy:
    """A content signature that verified: by which trusted key, and the bundle itself."""

    key: PublicKey
    bundle: ContentBundle


# ----- where bundles live (the one switch to the OCI referrers machinery) -------------------


def _signature_tag(subject: str, bundle_manifest: str) -> str:
    return f"sha256-{hex_part(subject)}.sig-{hex_part(bundle_manifest)[:16]}"


def _attach(repository: Repository, manifest: bytes, subject: Descriptor) -> Descriptor:
    from .store.referrers import attach_referrer

    tag = _signature_tag(subject.digest, sha256_digest(manifest))
    return attach_referrer(repository, manifest, IMAGE_MANIFEST, subject, [tag])


def _listed(repository: Repository, subject: str) -> list[Descriptor]:
    prefix = f"sha256-{hex_part(subject)}.sig-"
    found: dict[str, Descriptor] = {}
    from .store.referrers import list_referrers

    # bundles other tools attached as referrers count too
    for descriptor in list_referrers(repository, subject, BUNDLE_MEDIA_TYPE):
        found.setdefault(descriptor.digest, descriptor)
    for tag in sorted(t for t in repository.list_tags() if t.startswith(prefix)):
        tagged = repository.resolve(tag)
        if tagged is not None:
            found.setdefault(tagged.digest, tagged)
    return list(found.values())[:MAX_SIGNATURES]


@dataclass(frozen=True)
class ContentVerification:
    """What ``modelreg verify REF`` found for a version: its trusted content signers."""

    repository: str
    digest: str
    signers: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "repository": self.repository,
            "digest": self.digest,
            "reference": f"{self.repository}@{self.digest}",
            "contentSigners": list(self.signers),
        }


# ----- attach ---------------------------------------------------------------------------


def attach(repository: Repository, model: Descriptor, bundle: bytes) -> Descriptor:
    """Store ``bundle`` as a content signature of ``model``; returns its manifest."""
    layer = Descriptor(BUNDLE_MEDIA_TYPE, sha256_digest(bundle), len(bundle))
    config = empty_config_descriptor()
    repository.push_blob([EMPTY_JSON_BYTES], config.size, config.digest)
    repository.push_blob([bundle], len(bundle), layer.digest)
    manifest = Manifest(
        config=config,
        layers=(layer,),
        artifact_type=BUNDLE_MEDIA_TYPE,
        subject=Descriptor(model.media_type, model.digest, model.size),
    )
    return _attach(repository, manifest.to_bytes(), model)


def copy_signatures(source: Repository, destination: Repository, model: Descriptor) -> int:
    """Attach every content signature of ``model`` in ``source`` to it in ``destination``."""
    found = bundles(source, model.digest)
    for bundle in found:
        attach(destination, model, bundle.data)
    return len(found)


def sign_and_attach(
    repository: Repository, model: Descriptor, files: Mapping[str, str], name: str, key: SigningKey
) -> Descriptor:
    """Sign ``files`` (path -> sha256) with ``key`` and attach the bundle to ``model``."""
    return attach(repository, model, sign_files(files, name, key))


def bundle_for_push(
    path: Path,
    sign: SigningKey | None,
    signature: Path | None,
    file_sha256: Callable[[Path], str],
) -> bytes | None:
    """The bundle a push attaches: made with ``sign`` or read from ``signature`` and checked.

    Runs before anything is pushed, so a bundle that does not cover exactly the
    files being pushed refuses the push (VerificationError) with nothing written.
    """
    if sign is None and signature is None:
        return None
    if sign is not None and signature is not None:
        raise InvalidInput(
            "--sign and --signature both given", "sign with a key, or attach a bundle, not both"
        )
    files = {entry.name: file_sha256(entry.source) for entry in scan_model(path) if entry.source}
    if sign is not None:
        return sign_files(files, path.resolve().name, sign)
    assert signature is not None
    data = _read_bundle_file(signature)
    check_covers(parse_bundle(data), files, f"the files of {path}")
    return data


def _read_bundle_file(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BUNDLE_BYTES + 1)
    except FileNotFoundError:
        raise NotFound(
            f"signature file does not exist: {path}", "give the file `model_signing sign` wrote"
        ) from None
    except OSError as exc:
        raise InvalidInput(f"cannot read signature file {path}: {exc.strerror}") from None
    if len(data) > MAX_BUNDLE_BYTES:
        raise InvalidInput(f"signature file {path} is over {MAX_BUNDLE_BYTES} bytes")
    return data


def check_covers(bundle: ContentBundle, files: Mapping[str, str], what: str) -> None:
    """Raise VerificationError unless ``bundle`` covers exactly ``files``."""
    problems = differences(bundle.files, files)
    if problems:
        more = f"; and {len(problems) - 5} more" if problems[5:] else ""
        shown = "; ".join(problems[:5]) + more
        raise VerificationError(
            f"the signature does not cover exactly {what}: {shown}",
            "sign the same directory you push (`model_signing sign key DIR`), with the "
            "signature file outside it",
        )


# ----- read and verify ------------------------------------------------------------------


def bundles(repository: Repository, model: str) -> list[ContentBundle]:
    """Every well-formed content signature attached to ``model``; damaged ones are skipped."""
    found = []
    for descriptor in _listed(repository, model):
        try:
            _, data = repository.fetch_manifest(descriptor.digest)
            manifest = Manifest.parse(data, f"signature manifest {descriptor.digest}")
            if (
                manifest.subject is None
                or manifest.subject.digest != model
                or manifest.artifact_type != BUNDLE_MEDIA_TYPE
                or len(manifest.layers) != 1
                or manifest.layers[0].media_type != BUNDLE_MEDIA_TYPE
            ):
                continue
            found.append(
                parse_bundle(read_small_blob(repository, manifest.layers[0], MAX_BUNDLE_BYTES))
            )
        except (IntegrityError, NotFound, VerificationError):
            continue  # another writer's damaged or unusable bundle counts for nothing
    return found


def signed_by(
    candidates: Iterable[ContentBundle], files: Mapping[str, str], trusted: Iterable[PublicKey]
) -> list[SignedBy]:
    """The signatures by a trusted key that cover exactly ``files``."""
    keys = list(trusted)
    found = []
    for bundle in candidates:
        key = bundle.signer(keys)
        if key is not None and not differences(bundle.files, files):
            found.append(SignedBy(key, bundle))
    return found


def sign_model(repository: Repository, model: str, key: SigningKey) -> Descriptor:
    """Sign the files of the stored model ``model`` (tag or digest) and attach the bundle."""
    descriptor, _, manifest = fetch_model_manifest(repository, model)
    name = repository.name.rsplit("/", 1)[-1]
    return sign_and_attach(repository, descriptor, model_files(repository, manifest), name, key)


def model_files(repository: Repository, manifest: Manifest) -> dict[str, str]:
    """Path -> sha256 of the model's files, from its verified layers (unpacked to a temp dir)."""
    with staging_directory(Path(tempfile.gettempdir()), "modelreg-verify") as scratch:
        unpack_model(repository, manifest, scratch)
        return hash_directory(scratch)


def verify_model(
    repository: Repository, model: str, trusted: Mapping[str, PublicKey], what: str
) -> list[SignedBy]:
    """The trusted content signatures of ``model``; VerificationError when there is none."""
    candidates = bundles(repository, model)
    if not candidates:
        raise VerificationError(
            f"{what} has no content signature",
            "sign it: `modelreg push DIR REF --sign KEY` or `promote --sign-content`",
        )
    if not any(bundle.signer(trusted.values()) for bundle in candidates):
        raise VerificationError(
            f"none of the {len(candidates)} content signature(s) of {what} is by a trusted key",
            "trust the signer's public key (--trust KEY.pub) or have a trusted key sign it",
        )
    _, _, manifest = fetch_model_manifest(repository, model)
    found = signed_by(candidates, model_files(repository, manifest), trusted.values())
    if not found:
        raise VerificationError(
            f"the content signatures of {what} by trusted keys do not match its files",
            "the signatures were made for other files; sign this model's files again",
        )
    return found


def write_signature(
    repository: Repository,
    model: str,
    directory: Path,
    output: Path,
    trusted: Mapping[str, PublicKey] | None = None,
) -> SignedBy | ContentBundle:
    """Write a signature covering the pulled ``directory`` as it lies on disk to ``output``.

    With ``trusted`` keys only a signature by one of them is written; without, the
    first that covers the files. Returns what was written.
    """
    files = hash_directory(directory)
    if output.resolve().is_relative_to(directory.resolve()):
        files.pop(output.resolve().relative_to(directory.resolve()).as_posix(), None)
    candidates = bundles(repository, model)
    chosen: SignedBy | ContentBundle | None
    if trusted is not None:
        matches = signed_by(candidates, files, trusted.values())
        chosen = matches[0] if matches else None
    else:
        chosen = next((b for b in candidates if not differences(b.files, files)), None)
    if chosen is None:
        by = " by a trusted key" if trusted is not None else ""
        raise VerificationError(
            f"no content signature{by} of {repository.name}@{model} covers the pulled files "
            f"({len(candidates)} attached)",
            "sign the model (`modelreg push DIR REF --sign KEY` or `promote --sign-content`); "
            "the files were pulled and verified against their digest",
        )
    data = chosen.bundle.data if isinstance(chosen, SignedBy) else chosen.data
    _write_file(output, data)
    return chosen


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(name, path)
    except OSError as exc:
        raise InvalidInput(
            f"cannot write the signature to {path}: {exc.strerror}", "choose a writable path"
        ) from None
    finally:
        Path(name).unlink(missing_ok=True)
