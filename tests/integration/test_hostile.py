"""Hostile and broken registries: every lie refused with one clear line, nothing written
outside the target, nothing half-written.

The registry here is :mod:`hostile_registry` (a real HTTP server on loopback that lies on
purpose); the client is the real ``modelreg`` CLI in a subprocess, or the Resolver that
serving code uses. After every refusal the test directory is compared with a snapshot
taken before: no destination, no staging directory, the sentinel directory that hostile
tar entries aim at untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.hostile_registry import (
    HostileRegistry,
    Reply,
    digest_of,
    endless,
    error_reply,
    push_model,
)
from helpers.tars import member, tar_with

from modelreg import Resolver
from modelreg.errors import IntegrityError, ModelregError, VerificationError
from modelreg.oci import (
    DOCKER_MANIFEST_LIST,
    IMAGE_INDEX,
    IMAGE_MANIFEST,
    MAX_MANIFEST_BYTES,
    Manifest,
)
from modelreg.policy import policy_from_keys
from modelreg.promotion import ENVELOPE_MEDIA_TYPE, RECORD_ARTIFACT, record_tag
from modelreg.signing import (
    IN_TOTO_PAYLOAD_TYPE,
    load_signing_key,
    make_statement,
    sign_envelope,
)
from modelreg.stages import promote
from modelreg.store import Stores

REPO = "ml/hostile"
MiB = 1024 * 1024
# a client that read an endless or oversized answer would blow far past this
RSS_BOUND_KIB = 400 * 1024
SENT_BOUND = 64 * MiB


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    """A directory hostile layers aim at; it must never change."""
    path = tmp_path / "sentinel"
    path.mkdir()
    (path / "keep.txt").write_text("untouched\n")
    return path


# ----- running the CLI and checking what it left -----------------------------------------------


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    max_rss_kib: int


def run_cli(*args: str, cwd: Path, timeout: float = 120) -> Run:
    """``python -m modelreg ARGS`` in a subprocess; also reports its peak memory (wait4)."""
    out, err = cwd / ".cli-stdout", cwd / ".cli-stderr"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "modelreg", *args],
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            env=os.environ.copy(),
        )
    watchdog = threading.Timer(timeout, child.kill)  # fail fast, never hang the suite
    watchdog.start()
    try:
        _, status, usage = os.wait4(child.pid, 0)
    finally:
        watchdog.cancel()
    child.returncode = os.waitstatus_to_exitcode(status)
    run = Run(child.returncode, out.read_text(), err.read_text(), usage.ru_maxrss)
    out.unlink()
    err.unlink()
    return run


def assert_refused(run: Run, code: int, fragment: str) -> None:
    """One ``error:`` line (plus an optional ``hint:`` line), the right exit code."""
    assert run.returncode == code, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert lines and lines[0].startswith("error: "), run.stderr
    assert fragment in lines[0], run.stderr
    assert all(line.startswith("hint: ") for line in lines[1:]), run.stderr
    assert len(lines) <= 2, run.stderr
    assert run.stdout == ""


def snapshot(root: Path, skip: tuple[str, ...] = ("home", "docker-config", "cache")) -> dict:
    """Every path below ``root`` with its type and content (files hashed)."""
    seen: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] in skip:
            continue
        if path.is_symlink():
            seen[str(relative)] = ("link", os.readlink(path))
        elif path.is_file():
            seen[str(relative)] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            seen[str(relative)] = ("dir", path.stat().st_mode & 0o7777)
    return seen


def pull(hostile: HostileRegistry, reference: str, tmp_path: Path, *extra: str) -> Run:
    return run_cli(
        "pull", f"{hostile.host}/{REPO}{reference}", str(tmp_path / "out"), *extra, cwd=tmp_path
    )


# ----- building content ---------------------------------------------------------------------------


def model_layer(files: dict[str, bytes]) -> bytes:
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (member("model/", tarfile.DIRTYPE), None)
    ]
    entries.extend((member(f"model/{name}"), data) for name, data in sorted(files.items()))
    return tar_with(*entries)


GOOD = model_layer({"config.json": b'{"hidden": 768}\n', "weights.bin": b"\x01" * 300_000})
GOOD_HEX = digest_of(GOOD)[7:]
OTHER = model_layer({"config.json": b'{"hidden": 1}\n', "weights.bin": b"\x02" * 300_000})


def honest_model(hostile: HostileRegistry, layer: bytes = GOOD, tags: tuple[str, ...] = ()) -> str:
    digest, _ = hostile.add_model(REPO, [("model", layer)], tags)
    return digest


def manifest_bytes(**changes: object) -> bytes:
    """A model manifest as JSON with some fields replaced (None removes a field)."""
    body = json.loads(Manifest.parse(_any_manifest()).to_bytes())
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return json.dumps(body).encode()


def _any_manifest() -> bytes:
    from helpers.hostile_registry import build_model

    return build_model([("model", GOOD)])[0]


# ----- manifests ------------------------------------------------------------------------------


def lie_substituted(hostile: HostileRegistry) -> str:
    wanted = honest_model(hostile)
    other = honest_model(hostile, OTHER)
    _, data = hostile.repo(REPO).manifests[other]
    # another valid model, and a header that claims it is the one asked for
    hostile.override(
        hostile.manifest_path(REPO, wanted),
        Reply(200, data, {"Content-Type": IMAGE_MANIFEST, "Docker-Content-Digest": wanted}),
    )
    return f"@{wanted}"


def lie_header_by_tag(hostile: HostileRegistry) -> str:
    claimed = honest_model(hostile)
    other = honest_model(hostile, OTHER)
    _, data = hostile.repo(REPO).manifests[other]
    hostile.override(
        hostile.manifest_path(REPO, "v1"),
        Reply(200, data, {"Content-Type": IMAGE_MANIFEST, "Docker-Content-Digest": claimed}),
    )
    return ":v1"


def serve_as_manifest(data: bytes, media_type: str = IMAGE_MANIFEST) -> Callable[..., str]:
    """Serve ``data`` under its own digest: the digest checks out, the content must not."""

    def setup(hostile: HostileRegistry) -> str:
        honest_model(hostile)
        return "@" + hostile.add_manifest(REPO, data, media_type)

    return setup


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        pytest.param(lie_substituted, "does not match the expected", id="bytes-not-the-digest"),
        pytest.param(lie_header_by_tag, "registry says", id="header-digest-by-tag"),
        pytest.param(serve_as_manifest(b'{"schemaVersion": 2,'), "not valid JSON", id="json"),
        pytest.param(serve_as_manifest(b"\xff\xfe{}"), "not valid JSON", id="not-utf8"),
        pytest.param(serve_as_manifest(b"[" * 100_000), "not valid JSON", id="deep-nesting"),
        pytest.param(serve_as_manifest(b"[]"), "must be a JSON object", id="array"),
        pytest.param(
            serve_as_manifest(manifest_bytes(schemaVersion=1)), "schemaVersion", id="schema-1"
        ),
        pytest.param(
            serve_as_manifest(manifest_bytes(schemaVersion=None)), "schemaVersion", id="schema-none"
        ),
        pytest.param(
            serve_as_manifest(manifest_bytes(layers={"not": "a list"})), "layers", id="layers"
        ),
        pytest.param(
            serve_as_manifest(
                manifest_bytes(layers=[{"mediaType": "x", "digest": "sha256:../../etc", "size": 1}])
            ),
            "not a sha256 digest",
            id="descriptor-digest",
        ),
        pytest.param(
            serve_as_manifest(
                manifest_bytes(
                    layers=[{"mediaType": "x", "digest": "sha256:" + "a" * 64, "size": -1}]
                )
            ),
            "non-negative integer",
            id="descriptor-size",
        ),
    ],
)
def test_lying_or_malformed_manifest_is_refused(
    hostile: HostileRegistry, tmp_path: Path, sentinel: Path, setup, fragment: str
) -> None:
    reference = setup(hostile)
    before = snapshot(tmp_path)
    run = pull(hostile, reference, tmp_path)
    assert_refused(run, 6, fragment)
    assert snapshot(tmp_path) == before
    assert not any(path.startswith("/v2/ml/hostile/blobs/") for _, path in hostile.hits)


@pytest.mark.parametrize(
    "setup, fragment",
    [
        pytest.param(
            serve_as_manifest(manifest_bytes(mediaType=IMAGE_INDEX), IMAGE_INDEX),
            "is an image index",
            id="oci-index",
        ),
        pytest.param(
            serve_as_manifest(manifest_bytes(mediaType=DOCKER_MANIFEST_LIST), DOCKER_MANIFEST_LIST),
            "is an image index",
            id="docker-list",
        ),
        pytest.param(
            serve_as_manifest(
                manifest_bytes(
                    layers=[
                        {
                            "mediaType": "application/vnd.example.not-a-layer",
                            "digest": "sha256:" + "a" * 64,
                            "size": 1,
                        }
                    ]
                )
            ),
            "not a tar layer",
            id="layer-media-type",
        ),
    ],
)
def test_foreign_manifest_is_bad_input_and_nothing_is_fetched(
    hostile: HostileRegistry, tmp_path: Path, sentinel: Path, setup, fragment: str
) -> None:
    """Not a model (an index without one linux/amd64 image, an unknown layer type): exit 2,
    with a hint naming what modelreg reads; no blob is asked for."""
    reference = setup(hostile)
    before = snapshot(tmp_path)
    run = pull(hostile, reference, tmp_path)
    assert_refused(run, 2, fragment)
    assert "hint: modelreg reads" in run.stderr
    assert snapshot(tmp_path) == before
    assert not any(path.startswith("/v2/ml/hostile/blobs/") for _, path in hostile.hits)


def test_text_that_is_not_unicode_is_refused_not_a_crash(
    hostile: HostileRegistry, tmp_path: Path
) -> None:
    """A lone surrogate is a valid JSON escape but not text: printing it crashed inspect."""
    body = json.loads(manifest_bytes())
    body["annotations"] = {"org.opencontainers.image.description": "\ud800"}
    honest_model(hostile)
    digest = hostile.add_manifest(REPO, json.dumps(body).encode())
    for command in (["inspect"], ["inspect", "--json"]):
        run = run_cli(*command, f"{hostile.host}/{REPO}@{digest}", cwd=tmp_path)
        assert_refused(run, 6, "not valid Unicode")


def gzip_forever() -> Iterator[bytes]:
    """A gzip stream of zeros that never ends: about 1 KiB per decoded MiB.

    A full flush resets the compressor, so every MiB after the first compresses to the
    same bytes: computed once, sent forever.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MiB)
    yield compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    while True:
        yield block * 64


# (reply, pulled by): each way a manifest can be too big, by digest or by tag alike
OVERSIZED = {
    # the header alone says it is too big: refused before the body is read
    "content-length": (
        Reply(200, endless(b" "), {"Content-Type": IMAGE_MANIFEST}, 1 << 40),
        "digest",
    ),
    # no length: the body is read up to the limit and no further
    "endless-without-length": (
        Reply(200, endless(b" ", prefix=b"{"), {"Content-Type": IMAGE_MANIFEST}, None),
        "tag",
    ),
    "one-byte-over-without-length": (
        Reply(200, b"{" + b" " * MAX_MANIFEST_BYTES, {"Content-Type": IMAGE_MANIFEST}, None),
        "digest",
    ),
    # a small body that decompresses forever
    "gzip-bomb": (
        Reply(200, gzip_forever, {"Content-Type": IMAGE_MANIFEST, "Content-Encoding": "gzip"}),
        "tag",
    ),
}


@pytest.mark.parametrize("kind", sorted(OVERSIZED))
def test_oversized_manifest_is_refused_without_reading_it(
    hostile: HostileRegistry, tmp_path: Path, kind: str
) -> None:
    digest = honest_model(hostile, tags=("v1",))
    reply, by = OVERSIZED[kind]
    reference = f"@{digest}" if by == "digest" else ":v1"
    path = hostile.manifest_path(REPO, reference[1:])
    hostile.override(path, reply)
    before = snapshot(tmp_path)
    run = pull(hostile, reference, tmp_path)
    assert_refused(run, 6, "byte limit")
    assert snapshot(tmp_path) == before
    assert hostile.sent.get(path, 0) < SENT_BOUND
    assert run.max_rss_kib < RSS_BOUND_KIB


# ----- blobs ----------------------------------------------------------------------------------


BLOB_LIES: dict[str, tuple[Callable[[bytes], Reply], int, str]] = {
    # honest Content-Length, too few bytes
    "short": (lambda good: Reply(200, good[: len(good) // 2]), 6, "not a valid tar"),
    # Content-Length promises everything, the connection is cut half way: a transport
    # failure (exit 5, try again), never a traceback
    "cut": (lambda good: Reply(200, good[: len(good) // 2], length=len(good)), 5, "broke"),
    # the right bytes and then some
    "long": (lambda good: Reply(200, good + b"\0" * 4096), 6, "more than the declared"),
    "long-endless": (
        lambda good: Reply(200, endless(b"\0", prefix=good), length=None),
        6,
        "more than the declared",
    ),
    # same size, another (valid) tar: extracted to staging, then the digest says no
    "substituted": (lambda good: Reply(200, OTHER), 6, "does not match the expected"),
    # same size, garbage
    "garbage": (lambda good: Reply(200, os.urandom(len(good))), 6, "not a valid tar"),
    "missing": (lambda good: error_reply(404, "BLOB_UNKNOWN"), 3, "blob not found"),
    "server-error": (lambda good: error_reply(500, "UNKNOWN", "boom"), 5, "HTTP 500"),
}


@pytest.mark.parametrize("lie", sorted(BLOB_LIES))
def test_lying_blob_is_refused_and_nothing_is_kept(
    hostile: HostileRegistry, tmp_path: Path, lie: str
) -> None:
    assert len(OTHER) == len(GOOD)
    digest = honest_model(hostile)
    reply, code, fragment = BLOB_LIES[lie]
    path = hostile.blob_path(REPO, digest_of(GOOD))
    hostile.override(path, reply(GOOD))
    before = snapshot(tmp_path)
    run = pull(hostile, f"@{digest}", tmp_path)
    assert_refused(run, code, fragment)
    assert snapshot(tmp_path) == before
    assert hostile.sent.get(path, 0) < SENT_BOUND
    assert run.max_rss_kib < RSS_BOUND_KIB


def test_existing_destination_is_untouched_by_a_refused_pull(
    hostile: HostileRegistry, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "weights.bin").write_bytes(b"the model we had")
    digest = honest_model(hostile)
    hostile.override(hostile.blob_path(REPO, digest_of(GOOD)), Reply(200, OTHER))
    before = snapshot(tmp_path)
    run = pull(hostile, f"@{digest}", tmp_path, "--force")
    assert_refused(run, 6, "does not match the expected")
    assert snapshot(tmp_path) == before


# ----- tar layers that try to escape ------------------------------------------------------------


def escapes(sentinel: Path) -> dict[str, tuple[list[tuple[tarfile.TarInfo, bytes | None]], str]]:
    """Layers aimed at ``sentinel``, and what the refusal says."""
    up = "../" * 40  # out of any staging or cache directory, then down into the sentinel
    target = str(sentinel)
    keep = str(sentinel / "keep.txt")
    pax = member("model/innocent")
    pax.pax_headers = {"path": f"model/{up}{target[1:]}/pax"}
    device = member("model/null", tarfile.CHRTYPE)
    device.devmajor, device.devminor = 1, 3
    block = member("model/disk", tarfile.BLKTYPE)
    block.devmajor, block.devminor = 7, 0
    return {
        "dotdot": ([(member(f"model/{up}{target[1:]}/pwned"), b"x")], "escapes"),
        "dotdot-short": ([(member("model/../sentinel/pwned"), b"x")], "escapes"),
        "absolute": ([(member(f"{target}/pwned"), b"x")], "unsafe path"),
        "pax-path": ([(pax, b"x")], "escapes"),
        "symlink-dir-then-file": (
            [(member("model/d", tarfile.SYMTYPE, target), None), (member("model/d/pwned"), b"x")],
            "symlink",
        ),
        "symlink-relative": (
            [(member("model/d", tarfile.SYMTYPE, f"{up}{target[1:]}"), None)],
            "symlink",
        ),
        "hardlink-then-write": (
            [(member("model/h", tarfile.LNKTYPE, keep), None), (member("model/h"), b"pwned")],
            "hardlink",
        ),
        "hardlink-relative": (
            [(member("model/h", tarfile.LNKTYPE, f"model/{up}{keep[1:]}"), None)],
            "hardlink",
        ),
        "char-device": ([(device, None)], "special file"),
        "block-device": ([(block, None)], "special file"),
        "fifo": ([(member("model/p", tarfile.FIFOTYPE), None)], "special file"),
        "whiteout": ([(member("model/.wh..wh..opq"), b"")], "whiteout"),
        "outside-model": ([(member("etc/cron.d/pwned"), b"x")], "outside /model"),
        "backslash": ([(member("model\\..\\..\\pwned"), b"x")], "unsafe path"),
        "not-utf8": ([(member("model/w\udcff.bin"), b"x")], "not valid UTF-8"),
    }


ESCAPES = sorted(escapes(Path("/x")))


def hostile_layer(sentinel: Path, kind: str) -> tuple[bytes, str]:
    entries, fragment = escapes(sentinel)[kind]
    return tar_with((member("model/", tarfile.DIRTYPE), None), *entries), fragment


@pytest.mark.parametrize("kind", ESCAPES)
def test_escaping_tar_layer_is_refused_by_pull(
    hostile: HostileRegistry, tmp_path: Path, sentinel: Path, kind: str
) -> None:
    layer, fragment = hostile_layer(sentinel, kind)
    # the escaping layer comes second, after an honest one was extracted to staging
    digest, _ = hostile.add_model(REPO, [("model", GOOD), ("evil", layer)])
    before = snapshot(tmp_path)
    run = pull(hostile, f"@{digest}", tmp_path)
    assert_refused(run, 6, fragment)
    assert snapshot(tmp_path) == before
    assert (sentinel / "keep.txt").read_text() == "untouched\n"


def test_same_file_in_two_layers_is_refused(hostile: HostileRegistry, tmp_path: Path) -> None:
    overwrite = model_layer({"config.json": b'{"evil": true}\n'})
    digest, _ = hostile.add_model(REPO, [("model", GOOD), ("again", overwrite)])
    before = snapshot(tmp_path)
    assert_refused(pull(hostile, f"@{digest}", tmp_path), 6, "'model/config.json'")
    assert snapshot(tmp_path) == before


def test_a_file_where_another_layer_has_a_directory_is_refused(
    hostile: HostileRegistry, tmp_path: Path
) -> None:
    below = model_layer({"config.json/inside": b"x"})
    digest, _ = hostile.add_model(REPO, [("model", GOOD), ("below", below)])
    before = snapshot(tmp_path)
    run = pull(hostile, f"@{digest}", tmp_path, "--concurrency", "1")  # the file comes first
    assert_refused(run, 6, "needs the file 'config.json' as a directory")
    assert snapshot(tmp_path) == before


# ----- the Resolver: the same lies, behind a verified signed chain -------------------------------


@dataclass
class Seeded:
    digest: str
    resolver: Resolver
    cache: Path


@pytest.fixture
def seed(
    hostile: HostileRegistry, stores: Stores, keys: Path, tmp_path: Path
) -> Callable[..., Seeded]:
    """Push layers to a local store, promote them to production with a trusted key, and
    serve that repository from the hostile registry: the chain verifies, the content may
    not."""

    def make(*layers: tuple[str, bytes]) -> Seeded:
        local = stores.local.repository(REPO)
        digest = push_model(local, list(layers))
        alice = load_signing_key(keys / "alice.key")
        promote(local, digest, "production", alice, policy_from_keys([keys / "alice.pub"]))
        hostile.load(REPO, local)
        cache = tmp_path / "cache"
        resolver = Resolver(trust=[keys / "alice.pub"], cache_dir=cache, stores=stores)
        return Seeded(digest, resolver, cache)

    return make


def assert_cache_holds_nothing_for(seeded: Seeded, *layers: bytes) -> None:
    cache = seeded.cache
    assert not (cache / "models" / seeded.digest[7:]).exists()
    for layer in layers:
        assert not (cache / "layers" / digest_of(layer)[7:]).exists()
    leftovers = [
        p
        for sub in ("blobs", "layers", "models")
        for p in (cache / sub).iterdir()
        if p.name.startswith(".tmp-")
    ]
    assert leftovers == []


@pytest.mark.parametrize("kind", ESCAPES)
def test_escaping_tar_layer_is_refused_by_the_resolver(
    seed, hostile: HostileRegistry, tmp_path: Path, sentinel: Path, kind: str
) -> None:
    layer, fragment = hostile_layer(sentinel, kind)
    seeded = seed(("model", GOOD), ("evil", layer))
    model = seeded.resolver.resolve(f"{hostile.host}/{REPO}")  # a trusted key promoted it…
    assert model.digest == seeded.digest
    before = snapshot(tmp_path)
    with pytest.raises(IntegrityError) as caught:  # …and it is still refused
        seeded.resolver.fetch(model)
    assert fragment in caught.value.message
    assert snapshot(tmp_path) == before
    assert_cache_holds_nothing_for(seeded, layer)


@pytest.mark.parametrize(
    "second", [{"config.json": b"{}"}, {"config.json/inside": b"x"}], ids=["same", "below"]
)
def test_overlapping_layers_are_refused_by_the_resolver(
    seed, hostile: HostileRegistry, tmp_path: Path, second: dict[str, bytes]
) -> None:
    seeded = seed(("model", GOOD), ("again", model_layer(second)))
    model = seeded.resolver.resolve(f"{hostile.host}/{REPO}")
    with pytest.raises(IntegrityError, match=r"both write 'config\.json"):
        seeded.resolver.fetch(model)
    assert_cache_holds_nothing_for(seeded)


@pytest.mark.parametrize("lie", ["short", "cut", "long", "long-endless", "substituted", "garbage"])
def test_lying_blob_is_refused_by_the_resolver(
    seed, hostile: HostileRegistry, tmp_path: Path, lie: str
) -> None:
    seeded = seed(("model", GOOD))
    model = seeded.resolver.resolve(f"{hostile.host}/{REPO}")
    reply, code, fragment = BLOB_LIES[lie]
    hostile.override(hostile.blob_path(REPO, digest_of(GOOD)), reply(GOOD))
    before = snapshot(tmp_path)
    with pytest.raises(ModelregError) as caught:
        seeded.resolver.fetch(model)
    assert caught.value.exit_code == code and fragment in caught.value.message
    assert snapshot(tmp_path) == before
    assert_cache_holds_nothing_for(seeded, GOOD)


def test_substituted_model_manifest_is_refused_by_the_resolver(
    seed, hostile: HostileRegistry, tmp_path: Path
) -> None:
    seeded = seed(("model", GOOD))
    other, data = hostile.add_model(REPO, [("model", OTHER)])
    hostile.override(
        hostile.manifest_path(REPO, seeded.digest),
        Reply(200, data, {"Content-Type": IMAGE_MANIFEST, "Docker-Content-Digest": seeded.digest}),
    )
    with pytest.raises(IntegrityError, match="does not match the expected"):
        seeded.resolver.resolve(f"{hostile.host}/{REPO}")
    assert not (seeded.cache / "blobs" / seeded.digest[7:]).exists()
    assert not (seeded.cache / "blobs" / other[7:]).exists()


@pytest.mark.parametrize("kind", ["content-length", "endless-without-length", "gzip-bomb"])
def test_oversized_model_manifest_is_refused_by_the_resolver(
    seed, hostile: HostileRegistry, kind: str
) -> None:
    seeded = seed(("model", GOOD))
    path = hostile.manifest_path(REPO, seeded.digest)
    hostile.override(path, OVERSIZED[kind][0])
    with pytest.raises(IntegrityError, match="byte limit"):
        seeded.resolver.resolve(f"{hostile.host}/{REPO}")
    assert hostile.sent.get(path, 0) < SENT_BOUND
    assert list((seeded.cache / "blobs").iterdir()) == []


# ----- promotion records with garbage envelopes -------------------------------------------------


def record_artifact(hostile: HostileRegistry, subject_digest: str, envelope: bytes) -> bytes:
    """A record artifact (right shape, right digests) whose envelope is ``envelope``."""
    from modelreg.oci import Descriptor, empty_config_descriptor

    hostile.add_blob(REPO, b"{}")
    hostile.add_blob(REPO, envelope)
    _, model = hostile.repo(REPO).manifests[subject_digest]
    return Manifest(
        config=empty_config_descriptor(),
        layers=(Descriptor(ENVELOPE_MEDIA_TYPE, digest_of(envelope), len(envelope)),),
        artifact_type=RECORD_ARTIFACT,
        subject=Descriptor(IMAGE_MANIFEST, subject_digest, len(model)),
    ).to_bytes()


def dsse(payload: bytes, payload_type: str = IN_TOTO_PAYLOAD_TYPE, sigs: object = None) -> bytes:
    import base64

    return json.dumps(
        {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": payload_type,
            "signatures": sigs if sigs is not None else [{"keyid": "a" * 64, "sig": "AAAA"}],
        }
    ).encode()


def garbage_envelopes(digest: str, keys: Path) -> dict[str, tuple[bytes, str]]:
    statement = make_statement(REPO, digest[7:], "https://modelreg.dev/promotion/v1", {})
    valid_record = make_statement(
        REPO,
        digest[7:],
        "https://modelreg.dev/promotion/v1",
        {
            "repository": REPO,
            "stage": "production",
            "digest": digest,
            "sequence": 1,
            "previous": None,
            "issuedAt": "2030-01-01T00:00:00Z",
            "action": "promote",
            "version": None,
            "replaces": None,
            "expiresAt": None,
        },
    )
    mallory = load_signing_key(keys / "mallory.key")
    return {
        "not-json": (b"\x00garbage", "not valid UTF-8 JSON"),
        "json-array": (b"[1, 2]", "not a JSON object"),
        "no-signatures": (dsse(valid_record, sigs=[]), "no signatures"),
        "bad-base64": (
            json.dumps({"payload": "!!", "payloadType": "x", "signatures": []}).encode(),
            "not valid base64",
        ),
        "duplicate-keys": (
            b'{"payload":"","payload":"","payloadType":"x","signatures":[]}',
            "duplicate key",
        ),
        "payload-type": (dsse(valid_record, payload_type="text/plain"), "payload type"),
        "payload-not-json": (dsse(b"\xff"), "not valid UTF-8 JSON"),
        "empty-predicate": (dsse(statement), "record field"),
        "oversized": (b" " * (2 * MiB), "over 1048576"),
        "unsigned-by-trust": (
            sign_envelope(IN_TOTO_PAYLOAD_TYPE, valid_record, mallory).to_json(),
            "too few signatures: 0 of 1 required",
        ),
    }


ENVELOPES = [
    "not-json",
    "json-array",
    "no-signatures",
    "bad-base64",
    "duplicate-keys",
    "payload-type",
    "payload-not-json",
    "empty-predicate",
    "oversized",
    "unsigned-by-trust",
]


@pytest.mark.parametrize("kind", ENVELOPES)
def test_garbage_promotion_record_is_refused(
    seed, hostile: HostileRegistry, keys: Path, kind: str
) -> None:
    seeded = seed(("model", GOOD))
    envelope, fragment = garbage_envelopes(seeded.digest, keys)[kind]
    data = record_artifact(hostile, seeded.digest, envelope)
    hostile.add_manifest(REPO, data, IMAGE_MANIFEST, [record_tag("production", 1)])
    with pytest.raises(VerificationError) as caught:
        seeded.resolver.resolve(f"{hostile.host}/{REPO}")
    assert fragment in caught.value.message, caught.value.message
    assert list((seeded.cache / "models").iterdir()) == []


@pytest.mark.parametrize("kind", ["not-json", "unsigned-by-trust"])
def test_stage_pull_with_a_garbage_record_writes_nothing(
    seed, hostile: HostileRegistry, keys: Path, tmp_path: Path, kind: str
) -> None:
    seeded = seed(("model", GOOD))
    envelope, fragment = garbage_envelopes(seeded.digest, keys)[kind]
    data = record_artifact(hostile, seeded.digest, envelope)
    hostile.add_manifest(REPO, data, IMAGE_MANIFEST, [record_tag("production", 1)])
    before = snapshot(tmp_path)
    run = run_cli(
        "pull",
        f"{hostile.host}/{REPO}:production",
        str(tmp_path / "out"),
        "--trust",
        str(keys / "alice.pub"),
        cwd=tmp_path,
    )
    assert_refused(run, 7, fragment)
    assert snapshot(tmp_path) == before
    assert not any("/blobs/" in path and GOOD_HEX in path for _, path in hostile.hits)


def test_record_artifact_that_is_not_a_manifest_is_refused(seed, hostile: HostileRegistry) -> None:
    seeded = seed(("model", GOOD))
    hostile.add_manifest(
        REPO, b"<html>gateway timeout</html>", "text/html", [record_tag("production", 1)]
    )
    with pytest.raises(VerificationError, match="not valid JSON"):
        seeded.resolver.resolve(f"{hostile.host}/{REPO}")


def test_a_registry_that_answers_for_every_record_cannot_keep_a_client_probing(
    seed, hostile: HostileRegistry
) -> None:
    """A warm client looks for newer records one HEAD at a time; a registry that says
    every sequence exists must not keep it asking forever."""
    seeded = seed(("model", GOOD))
    repository = f"{hostile.host}/{REPO}"
    seeded.resolver.resolve(repository)  # accepted: production record 1
    record = re.compile(rf"/v2/{REPO}/manifests/promotion\.production\.(\d+)")

    def every_record_exists(method: str, path: str) -> Reply | None:
        match = record.fullmatch(path)
        if method != "HEAD" or match is None or int(match[1]) < 2:
            return None
        headers = {"Content-Type": IMAGE_MANIFEST, "Docker-Content-Digest": seeded.digest}
        return Reply(200, b"", headers, length=500)

    hostile.rule(every_record_exists)
    outcome: list[BaseException | object] = []

    def resolve() -> None:
        try:
            outcome.append(seeded.resolver.resolve(repository))
        except BaseException as error:  # reported below
            outcome.append(error)

    worker = threading.Thread(target=resolve, daemon=True)
    worker.start()
    worker.join(60)  # a fail-fast bound: the bug was an endless loop
    assert outcome, "resolve kept probing for records"
    assert isinstance(outcome[0], VerificationError), outcome
    assert "tag list" in outcome[0].message
    assert len(hostile.hits) < 1000


# ----- tag lists ---------------------------------------------------------------------------------


def tag_page(tags: list[str], next_link: str | None = None) -> Reply:
    headers = {"Content-Type": "application/json"}
    if next_link:
        headers["Link"] = f'<{next_link}>; rel="next"'
    return Reply(200, json.dumps({"name": REPO, "tags": tags}).encode(), headers)


def fresh_pages() -> Callable[[], Reply]:
    """Every page five thousand new tags and a link to one more page, forever."""
    counter = iter(range(1 << 40))

    def page() -> Reply:
        number = next(counter)
        tags = [f"t{number}-{i}" for i in range(5000)]
        return tag_page(tags, f"/v2/{REPO}/tags/list?n=1000&last=t{number}-4999")

    return page


TAG_LISTS: dict[str, Callable[[], Reply | Callable[[], Reply]]] = {
    "endless-body": lambda: Reply(
        200,
        endless(b'"vvvvvvvvvvvvvvvvvvvvvvvvvv",', prefix=b'{"name":"x","tags":['),
        {"Content-Type": "application/json"},
        None,
    ),
    "huge-content-length": lambda: Reply(
        200, endless(b" "), {"Content-Type": "application/json"}, 1 << 40
    ),
    "link-loop": lambda: tag_page(["v1"], f"/v2/{REPO}/tags/list?n=1000&last=v1"),
    "endless-pages": fresh_pages,
    "not-json": lambda: Reply(200, b"<html>", {"Content-Type": "text/html"}),
    "tags-not-strings": lambda: Reply(200, b'{"tags": [1, 2]}'),
}


@pytest.mark.parametrize("kind", sorted(TAG_LISTS))
def test_oversized_or_endless_tag_list_is_refused(
    hostile: HostileRegistry, tmp_path: Path, kind: str
) -> None:
    honest_model(hostile, tags=("v1",))
    path = f"/v2/{REPO}/tags/list"
    hostile.override(path, TAG_LISTS[kind]())
    before = snapshot(tmp_path)
    run = run_cli("pull", f"{hostile.host}/{REPO}", str(tmp_path / "out"), cwd=tmp_path)
    assert_refused(run, 6, "tag list")
    assert snapshot(tmp_path) == before
    assert hostile.sent.get(path, 0) < SENT_BOUND
    assert run.max_rss_kib < RSS_BOUND_KIB
    assert len(hostile.hits) < 2000


def trickle(prefix: bytes, every: float, gate: threading.Event) -> Callable[[], Iterator[bytes]]:
    """``prefix``, then a space every ``every`` seconds until ``gate`` is set: each byte
    well within any read timeout, the answer never done."""

    def stream() -> Iterator[bytes]:
        yield prefix
        while not gate.wait(every):
            yield b" "

    return stream


def test_a_tag_list_that_trickles_is_refused_after_its_grace(
    hostile: HostileRegistry, tmp_path: Path
) -> None:
    """A read timeout bounds the wait for the next byte only: this answer kept a pull
    (and a web UI's worker thread) for ever. With --timeout 1 the grace is 3 s."""
    honest_model(hostile, tags=("v1",))
    body = trickle(b'{"name":"x","tags":[', 0.5, hostile.gate())
    hostile.override(
        f"/v2/{REPO}/tags/list", Reply(200, body, {"Content-Type": "application/json"}, None)
    )
    started = time.monotonic()
    run = run_cli(
        "--timeout", "1", "pull", f"{hostile.host}/{REPO}", str(tmp_path / "out"),
        cwd=tmp_path, timeout=90,
    )  # fmt: skip
    assert_refused(run, 5, "too slowly")
    assert time.monotonic() - started < 45
    assert not (tmp_path / "out").exists()


def test_the_resolver_refuses_an_endless_tag_list(seed, hostile: HostileRegistry) -> None:
    seeded = seed(("model", GOOD))
    hostile.override(f"/v2/{REPO}/tags/list", TAG_LISTS["endless-body"]())
    with pytest.raises(IntegrityError, match="tag list"):
        seeded.resolver.resolve(f"{hostile.host}/{REPO}")


def test_an_honest_hostile_registry_works(seed, hostile: HostileRegistry, tmp_path: Path) -> None:
    """The harness itself: without lies, pull and resolve succeed (so refusals above are
    caused by the lies, not by the server)."""
    digest = honest_model(hostile, tags=("v1",))
    run = pull(hostile, f"@{digest}", tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out" / "weights.bin").read_bytes() == b"\x01" * 300_000
    again = pull(hostile, "", tmp_path, "--force")  # bare name: the tag list, then v1
    assert again.returncode == 0, again.stderr
    seeded = seed(("model", GOOD))
    path = seeded.resolver.fetch(seeded.resolver.resolve(f"{hostile.host}/{REPO}"))
    assert (path / "config.json").read_bytes() == b'{"hidden": 768}\n'
