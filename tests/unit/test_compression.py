"""Layer streams by media type: decoded in bounded chunks, checked against diff_ids."""

from __future__ import annotations

import gzip
import io
import os

import pytest
import zstandard

from modelreg.compression import (
    DOCKER_LAYER_GZIP,
    LAYER_TAR_GZIP,
    LAYER_TAR_ZSTD,
    DecodingReader,
    compression_of,
)
from modelreg.digest import VerifyingReader, sha256_digest
from modelreg.errors import IntegrityError, InvalidInput
from modelreg.oci import LAYER_TAR

PAYLOAD = os.urandom(300_000) + b"\0" * 700_000


def encoded(media_type: str) -> bytes:
    compression = compression_of(media_type)
    if compression == "gzip":
        # two members, as a tool that appends may write
        return gzip.compress(PAYLOAD[:1000]) + gzip.compress(PAYLOAD[1000:])
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(PAYLOAD)
    return PAYLOAD


@pytest.mark.parametrize(
    "media_type", [LAYER_TAR, LAYER_TAR_GZIP, DOCKER_LAYER_GZIP, LAYER_TAR_ZSTD]
)
def test_both_digests_checked_while_streaming(media_type: str) -> None:
    blob = encoded(media_type)
    raw = VerifyingReader(io.BytesIO(blob), sha256_digest(blob), len(blob), "layer")
    decoded = DecodingReader(raw, media_type, sha256_digest(PAYLOAD))
    first = decoded.read(4096)
    assert 0 < len(first) <= 4096 and PAYLOAD.startswith(first)
    assert decoded.finish() == sha256_digest(PAYLOAD)
    assert decoded.bytes_read == len(PAYLOAD)
    raw.finish()


@pytest.mark.parametrize("media_type", [LAYER_TAR_GZIP, LAYER_TAR_ZSTD])
def test_other_content_fails_the_diff_id(media_type: str) -> None:
    blob = encoded(media_type)
    decoded = DecodingReader(io.BytesIO(blob), media_type, sha256_digest(b"something else"))
    with pytest.raises(IntegrityError, match="diff_id"):
        decoded.finish()


@pytest.mark.parametrize("media_type", [LAYER_TAR, DOCKER_LAYER_GZIP, LAYER_TAR_ZSTD])
def test_the_stream_decides_not_the_label(media_type: str) -> None:
    """docker push labels an uncompressed layer it reuses as tar+gzip: still the same files."""
    for blob in (PAYLOAD, encoded(LAYER_TAR_GZIP), encoded(LAYER_TAR_ZSTD)):
        decoded = DecodingReader(io.BytesIO(blob), media_type, sha256_digest(PAYLOAD))
        assert decoded.finish() == sha256_digest(PAYLOAD)


def test_garbage_is_an_integrity_error_naming_the_layer() -> None:
    bad = b"\x1f\x8b" + b"not really gzip" * 10
    decoded = DecodingReader(io.BytesIO(bad), LAYER_TAR_GZIP, None, "layer 0")
    with pytest.raises(IntegrityError, match="layer 0: the compressed stream does not decode"):
        decoded.finish()


def test_unknown_media_type_is_bad_input_naming_what_is_accepted() -> None:
    with pytest.raises(InvalidInput) as raised:
        compression_of("application/octet-stream", "layer 2")
    assert raised.value.exit_code == 2
    assert "application/octet-stream" in str(raised.value)
    assert LAYER_TAR_ZSTD in (raised.value.hint or "")
