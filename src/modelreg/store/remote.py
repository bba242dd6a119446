"""A repository on any registry that speaks the OCI distribution API.

What this layer adds over a naive client: blobs stream in one pass (hashed as
they go out, never held in memory), uploads are ``Content-Length`` PATCHes that
the registry verifies against the digest we computed, downloads resume where a
broken connection left them (and are verified by the caller), manifests are
sent as the exact bytes that were hashed, blobs are mounted across repositories
of the same registry, and every HTTP error becomes a one-line error that says
what to do.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
import urllib.parse
from collections.abc import Collection, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import requests

from ..digest import Readable, is_digest, sha256_digest, verify_bytes
from ..errors import (
    AuthError,
    IntegrityError,
    ModelregError,
    RegistryError,
)
from ..oci import (
    EMPTY_JSON_BYTES,
    IMAGE_INDEX,
    IMAGE_MANIFEST,
    MANIFEST_MEDIA_TYPES,
    MAX_MANIFEST_BYTES,
    Descriptor,
    media_type_of,
)
from .base import BytesCallback, claim_marker, claim_tag_name, parse_claim_tag, resolve_tags
from .blob_io import HashingBody, ResponseBody, ResumingBlob
from .quick import QuickResponse
from .registry_errors import error_for
from .tag_page import parse_tag_page
from .transport import Transport
from .urls import count_page, next_link, with_query

_T = TypeVar("_T")
_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)
_SMALL_BLOB = 1 << 20
TAG_PAGE = 1000
# bounds on what a registry may make us read when listing tags (a hostile one can send
# an endless body or an endless chain of pages)
MAX_TAG_PAGE_BYTES = 32 * 1024 * 1024
MAX_TAGS = 500_000
MAX_TAG_PAGES = 2_000


class RemoteRepository:
    def __init__(self, transport: Transport, repository: str) -> None:
        self.transport = transport
        self.repository = repository

    @property
    def name(self) -> str:
        return f"{self.transport.host}/{self.repository}"

    @property
    def store_id(self) -> str:
        return f"registry:{self.transport.host}"

    @property
    def path_in_store(self) -> str:
        return self.repository

    @property
    def _pull(self) -> str:
        return f"repository:{self.repository}:pull"

    @property
    def _push(self) -> str:
        return f"repository:{self.repository}:pull,push"

    def _path(self, suffix: str) -> str:
        return f"/v2/{self.repository}/{suffix}"

    # ----- blobs --------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        response = self.transport.quick("HEAD", self._path(f"blobs/{digest}"), scope=self._pull)
        response.close()
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self._error(response, f"checking blob {digest}")

    @contextlib.contextmanager
    def open_blob(self, descriptor: Descriptor) -> Iterator[Readable]:
        blob = ResumingBlob(self, descriptor.digest)
        try:
            yield blob
        finally:
            blob.close()

    @contextlib.contextmanager
    def open_blob_from(self, descriptor: Descriptor, offset: int) -> Iterator[Readable]:
        """The blob's bytes from ``offset`` on (the caller kept the ones before)."""
        blob = ResumingBlob(self, descriptor.digest, offset)
        try:
            yield blob
        finally:
            blob.close()

    def _get_blob(self, digest: str, offset: int) -> tuple[requests.Response, int]:
        """GET a blob from ``offset`` on; returns the response and how many leading bytes
        of its body to skip (a registry may answer a range request with the whole blob)."""
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        response = self.transport.request(
            "GET",
            self._path(f"blobs/{digest}"),
            scope=self._pull,
            headers=headers,
            stream=True,
            bulk=True,
        )
        if response.status_code == 200:
            return response, offset
        if response.status_code == 206 and offset:
            answered = response.headers.get("Content-Range", "")
            if answered.startswith(f"bytes {offset}-"):
                return response, 0
            response.close()
            raise RegistryError(
                f"{self.name}: resuming blob {digest}: asked for bytes {offset}- and got "
                f"{answered or 'no Content-Range'}",
                "the registry mishandles range requests; try again",
            )
        try:
            raise self._error(response, f"fetching blob {digest}")
        finally:
            response.close()

    def push_blob(
        self,
        chunks: Iterable[bytes],
        size: int,
        expected_digest: str | None = None,
        on_bytes: BytesCallback | None = None,
    ) -> str:
        if size <= _SMALL_BLOB and not isinstance(chunks, Iterator):
            return self._push_whole_blob(b"".join(chunks), size, expected_digest, on_bytes)
        attempts = 1 + (self.transport.options.retries if not isinstance(chunks, Iterator) else 0)
        for attempt in range(1, attempts + 1):
            location = self._start_upload()
            body = HashingBody(chunks, size, on_bytes)
            try:
                response = self.transport.request(
                    "PATCH",
                    location,
                    scope=self._push,
                    headers={"Content-Type": "application/octet-stream"},
                    data=body,
                    replayable=False,
                    bulk=True,
                )
            except Exception:
                if attempt < attempts and body.restartable:
                    self._cancel(location)
                    self.transport.pause_before_retry(attempt)
                    continue
                raise
            if response.status_code in (500, 502, 503, 504) and attempt < attempts:
                response.close()
                self._cancel(location)
                self.transport.pause_before_retry(attempt)
                continue
            if response.status_code != 202:
                raise self._error(response, "uploading blob")
            digest = body.digest()
            if body.sent != size:
                self._cancel(response.headers.get("Location", location))
                raise IntegrityError(f"blob stream gave {body.sent} bytes, expected {size}")
            if expected_digest and digest != expected_digest:
                self._cancel(response.headers.get("Location", location))
                raise IntegrityError(
                    f"blob content digest {digest} does not match the expected {expected_digest}"
                )
            self._finish_upload(response.headers.get("Location", location), digest)
            return digest
        raise AssertionError("unreachable")

    def _push_whole_blob(
        self, data: bytes, size: int, expected_digest: str | None, on_bytes: BytesCallback | None
    ) -> str:
        if len(data) != size:
            raise IntegrityError(f"blob stream gave {len(data)} bytes, expected {size}")
        digest = sha256_digest(data)
        if expected_digest and digest != expected_digest:
            raise IntegrityError(
                f"blob content digest {digest} does not match the expected {expected_digest}"
            )
        self._put_whole(data, digest)
        if on_bytes:
            on_bytes(size)
        return digest

    def push_small_blob(self, data: bytes) -> str:
        """Upload a small blob in a single PUT (config, records), skipping it if present."""
        digest = sha256_digest(data)
        if self.has_blob(digest):
            return digest
        self._put_whole(data, digest)
        return digest

    def _put_whole(self, data: bytes, digest: str) -> None:
        """A monolithic upload: POST, then one PUT with the bytes (small blobs only)."""
        location = self._start_upload()
        response = self.transport.quick(
            "PUT",
            with_query(location, digest=digest),
            scope=self._push,
            headers={"Content-Type": "application/octet-stream"},
            data=data,
        )
        response.close()
        if response.status_code != 201:
            raise self._error(response, f"uploading blob {digest}")

    def mount_blob(self, digest: str, source_path: str) -> bool:
        if source_path == self.repository:
            return False
        scope = f"{self._push} repository:{source_path}:pull"
        try:
            response = self.transport.quick(
                "POST",
                self._path("blobs/uploads/")
                + "?"
                + urllib.parse.urlencode({"mount": digest, "from": source_path}),
                scope=scope,
            )
        except AuthError:
            # no pull right on the source (or no push here): upload instead, as docker does;
            # the upload names the real problem if there is one
            return False
        response.close()
        if response.status_code == 201:
            return True
        if response.status_code == 202:
            self._cancel(response.headers.get("Location", ""))
            return False
        raise self._error(response, f"mounting blob {digest} from {source_path}")

    def _start_upload(self) -> str:
        response = self.transport.quick("POST", self._path("blobs/uploads/"), scope=self._push)
        response.close()
        location = response.headers.get("Location")
        if response.status_code != 202 or not location:
            raise self._error(response, "starting a blob upload")
        return self._absolute(location)

    def _finish_upload(self, location: str, digest: str) -> None:
        response = self.transport.request(
            "PUT",
            with_query(self._absolute(location), digest=digest),
            scope=self._push,
            headers={"Content-Length": "0"},
            bulk=True,
        )
        response.close()
        if response.status_code != 201:
            raise self._error(response, f"completing the upload of {digest}")

    def _cancel(self, location: str) -> None:
        if not location:
            return
        with contextlib.suppress(Exception):
            self.transport.request(
                "DELETE", self._absolute(location), scope=self._push, replayable=False
            ).close()

    def _absolute(self, location: str) -> str:
        if location.startswith(("http://", "https://")):
            return location
        return self.transport.base_url + location

    # ----- manifests and tags ---------------------------------------------------

    def resolve(self, reference: str) -> Descriptor | None:
        response = self.transport.quick(
            "HEAD",
            self._path(f"manifests/{reference}"),
            scope=self._pull,
            headers={"Accept": _ACCEPT},
        )
        response.close()
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._error(response, f"resolving {reference}")
        digest = response.headers.get("Docker-Content-Digest")
        size = response.headers.get("Content-Length")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if digest and is_digest(digest) and size and size.isdigit() and media_type:
            if is_digest(reference) and digest != reference:
                raise IntegrityError(f"registry answered {digest} when asked for {reference}")
            return Descriptor(media_type, digest, int(size))
        descriptor, _ = self.fetch_manifest(reference)
        return descriptor

    def fetch_manifest(self, reference: str) -> tuple[Descriptor, bytes]:
        response = self.transport.quick(
            "GET",
            self._path(f"manifests/{reference}"),
            scope=self._pull,
            headers={"Accept": _ACCEPT},
        )
        with contextlib.closing(response):
            if response.status_code != 200:
                raise self._error(response, f"fetching manifest {reference}")
            data = self._read_body(
                response,
                MAX_MANIFEST_BYTES,
                f"manifest {reference}",
                "a model manifest is a few kilobytes; this registry sent something else",
            )
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            header_digest = response.headers.get("Docker-Content-Digest")
        digest = reference if is_digest(reference) else sha256_digest(data)
        verify_bytes(data, digest, f"manifest {self.name}@{reference}")
        if header_digest and is_digest(header_digest) and header_digest != digest:
            raise IntegrityError(
                f"manifest {reference}: registry says {header_digest} but the bytes hash to "
                f"{digest}",
                "the registry or a proxy altered the manifest; nothing was used",
            )
        return Descriptor(media_type or media_type_of(data), digest, len(data)), data

    def push_manifest(self, data: bytes, media_type: str, tags: Iterable[str] = ()) -> Descriptor:
        digest = sha256_digest(data)
        for reference in [*tags] or [digest]:
            self._put_manifest(reference, data, media_type, digest)
        return Descriptor(media_type, digest, len(data))

    def push_manifest_with_subject(
        self, data: bytes, media_type: str, tags: Iterable[str] = ()
    ) -> tuple[Descriptor, bool]:
        """Push a manifest that has a ``subject``; True when the registry processed it.

        A registry with the referrers API says so with ``OCI-Subject`` on the PUT.
        """
        digest = sha256_digest(data)
        subject = self._put_manifest(digest, data, media_type, digest)
        for tag in tags:
            self._put_manifest(tag, data, media_type, digest)
        return Descriptor(media_type, digest, len(data)), bool(subject)

    def referrers_from_api(
        self, subject_digest: str, artifact_type: str | None = None
    ) -> list[Descriptor] | None:
        """``GET /v2/<name>/referrers/<digest>``; None when the registry has no such API."""
        path: str | None = self._path(f"referrers/{subject_digest}")
        if artifact_type:
            path = with_query(path or "", artifactType=artifact_type)
        found: list[Descriptor] = []
        pages = 0
        while path and pages < MAX_TAG_PAGES:
            pages += 1
            response = self.transport.quick(
                "GET", path, scope=self._pull, headers={"Accept": IMAGE_INDEX}
            )
            with contextlib.closing(response):
                if response.status_code in (404, 400, 405) and not found:
                    return None  # the spec: no referrers API, use the tag schema
                if response.status_code != 200:
                    raise self._error(response, f"listing referrers of {subject_digest}")
                data = self._read_body(response, MAX_MANIFEST_BYTES, "referrers list")
                path = next_link(response)
            try:
                manifests = json.loads(data).get("manifests")
            except (ValueError, AttributeError):
                raise IntegrityError(f"{self.name}: referrers list is not an image index") from None
            for index, entry in enumerate(manifests if isinstance(manifests, list) else []):
                try:
                    found.append(Descriptor.from_dict(entry, f"referrers entry {index}"))
                except IntegrityError:
                    continue
        return found

    def _put_manifest(self, reference: str, data: bytes, media_type: str, digest: str) -> str:
        """PUT the manifest; the ``OCI-Subject`` the registry answered ("" when none)."""
        response = self.transport.quick(
            "PUT",
            self._path(f"manifests/{reference}"),
            scope=self._push,
            headers={"Content-Type": media_type},
            data=data,
        )
        response.close()
        if response.status_code != 201:
            raise self._error(response, f"pushing manifest {reference}")
        answered = response.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise IntegrityError(
                f"registry stored manifest {reference} as {answered}, not {digest}",
                "the registry rewrote the manifest bytes; modelreg needs byte-exact storage",
            )
        return response.headers.get("OCI-Subject", "")

    def claim_tag(self, tag: str, data: bytes, media_type: str, stamp: str = "") -> bool:
        """Create ``tag`` if absent, without compare-and-swap; no waiting when nobody competes.

        Every claimant first writes a claim tag of its own (``sha256-<hex>.claim-<tag>``
        and the stamp, named after its digest, so claimants never overwrite each
        other's), then lists
        the tags. A claimant that sees no other claim for ``tag`` takes it at once: of
        two claimants at least one sees the other's claim (whoever listed later wrote
        its own claim before listing), so at most one ever takes this fast path.
        Claimants that see a rival wait a settle delay — long enough for a fast-path
        winner's tag write to land — and, when the tag is still absent, fall back to
        claim, settle, read back (last writer wins). The claim tag points at a marker
        manifest of its own and is deleted once the claim is decided (the tag exists by
        then, so a later claimant sees the tag itself); where deletes are refused, it
        stays and ``gc`` lists it.
        """
        digest = sha256_digest(data)
        marker = claim_marker(digest, tag, stamp)
        self.push_small_blob(EMPTY_JSON_BYTES)  # the marker's config
        marker_digest = sha256_digest(marker)
        self._put_manifest(
            claim_tag_name(digest, tag, stamp), marker, IMAGE_MANIFEST, marker_digest
        )
        try:
            return self._decide_claim(tag, data, media_type, digest)
        finally:
            with contextlib.suppress(ModelregError):
                self.delete_manifest(marker_digest)

    def _decide_claim(self, tag: str, data: bytes, media_type: str, digest: str) -> bool:
        tags = self.list_tags()
        if tag in tags:
            current = self.resolve(tag)
            return current is not None and current.digest == digest
        claims = [parse_claim_tag(t) for t in tags]
        rivals = [c for c in claims if c is not None and c[1] == tag and c[0] != digest]
        if not rivals:
            self._put_manifest(tag, data, media_type, digest)
            return True
        settle = self.transport.options.settle
        time.sleep(settle * (1 + random.random()))
        current = self.resolve(tag)
        if current is not None:
            return current.digest == digest
        self._put_manifest(tag, data, media_type, digest)
        time.sleep(settle * (1 + random.random()))
        current = self.resolve(tag)
        return current is not None and current.digest == digest

    def list_tags(self) -> list[str]:
        tags: list[str] = []
        path: str | None = self._path(f"tags/list?n={TAG_PAGE}")
        visited: set[str] = set()
        while path:
            count_page(
                path,
                visited,
                len(tags),
                bounds=(MAX_TAG_PAGES, MAX_TAGS),
                where=self.name,
                name="tag list",
                unit="tags",
            )
            response = self.transport.quick("GET", path, scope=self._pull)
            with contextlib.closing(response):
                if response.status_code != 200:
                    raise self._error(response, "listing tags")
                data = self._read_body(response, MAX_TAG_PAGE_BYTES, f"{self.name}: tag list")
                what, room = f"{self.name}: tag list", MAX_TAGS - len(tags)
                tags.extend(parse_tag_page(data, what, room, MAX_TAGS))
                path = next_link(response)
        return sorted(set(tags))

    def tag_map(self, tags: Collection[str] | None = None) -> dict[str, Descriptor]:
        return resolve_tags(self, self.list_tags() if tags is None else tags)

    def _read_body(
        self,
        response: requests.Response | QuickResponse,
        limit: int,
        what: str,
        hint: str | None = None,
    ) -> bytes:
        """A response body of at most ``limit`` bytes; never reads more (streamed ones)."""
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise IntegrityError(f"{what} is {declared} bytes, over the {limit} byte limit", hint)
        if isinstance(response, QuickResponse):
            data = response.content[: limit + 1]
        else:
            body = ResponseBody(response, self.transport.host, what, decode=True)
            data = body.read_small(limit + 1, self.transport.answer_grace)
        if len(data) > limit:
            raise IntegrityError(f"{what} is over the {limit} byte limit", hint)
        return data

    def delete_manifest(self, digest: str) -> None:
        response = self.transport.request(
            "DELETE", self._path(f"manifests/{digest}"), scope=f"{self._push},delete"
        )
        response.close()
        if response.status_code not in (200, 202, 404):
            raise self._error(response, f"deleting manifest {digest}")

    def delete_blob(self, digest: str) -> None:
        response = self.transport.request(
            "DELETE", self._path(f"blobs/{digest}"), scope=f"{self._push},delete"
        )
        response.close()
        if response.status_code not in (200, 202, 404):
            raise self._error(response, f"deleting blob {digest}")

    # ----- errors -------------------------------------------------------------

    def _error(self, response: requests.Response | QuickResponse, doing: str) -> Exception:
        return error_for(response, doing, self.name, self.transport.host, self.transport.redact)
