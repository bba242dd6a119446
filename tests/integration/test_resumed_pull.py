"""A pull killed mid-blob resumes: the next pull, by another process, asks only for the
rest of the blob (Range), through a proxy that counts the bytes it serves. The kept bytes
live under $MODELREG_HOME/partial until their digest checks out and nothing trusts them
before: bytes that do not verify are removed, and a registry that ignores Range works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.fault_proxy import Fault, FaultProxy
from helpers.models import unique_repo, write_model

from modelreg import api
from modelreg.errors import IntegrityError, RegistryUnavailable
from modelreg.store import RegistryOptions, Stores

WEIGHTS = 40 << 20
STALL_AT = 16 << 20


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def model(registry, tmp_path: Path) -> tuple[Path, str, dict[str, int], int]:
    """A model pushed straight to the registry: path, repository@digest, layer sizes, total."""
    root = write_model(tmp_path / "model", large=WEIGHTS)
    pushed = api.push(root, f"{registry.host}/{unique_repo()}", capture=False)
    manifest = api.inspect(pushed.reference).manifest
    sizes = {layer.digest: layer.size for layer in manifest.layers}
    return root, pushed.reference.split("/", 1)[1], sizes, sum(sizes.values())


def weights_digest(sizes: dict[str, int]) -> str:
    return max(sizes, key=lambda digest: sizes[digest])


def stall(digest: str) -> object:
    def rule(method: str, path: str, count: int) -> Fault | None:
        if method == "GET" and path.endswith(digest) and count <= 4:
            return Fault(stall_response_after=STALL_AT)
        return None

    return rule


def pull_process(reference: str, out: Path, home: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "modelreg", "--plain-http", "pull", reference, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MODELREG_HOME": str(home)},
    )


def kept_bytes(home: Path, digest: str) -> int:
    path = home / "partial" / f"sha256-{digest.split(':')[1]}"
    return path.stat().st_size if path.exists() else 0


def kill_mid_blob(proxy: FaultProxy, reference: str, out: Path, home: Path, digest: str) -> int:
    """Start a pull, SIGKILL it while the weights blob stalls half-way; the bytes kept."""
    child = pull_process(f"{proxy.host}/{reference}", out, home)
    deadline = time.monotonic() + 60
    while kept_bytes(home, digest) < STALL_AT // 2 and time.monotonic() < deadline:
        assert child.poll() is None, child.communicate()
        time.sleep(0.05)
    time.sleep(0.3)  # let it drain what the socket holds
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    proxy.release.set()
    return kept_bytes(home, digest)


@pytest.mark.parametrize("range_ignored", [False, True], ids=["ranges", "range-ignored"])
def test_a_killed_pull_resumes_in_another_process_asking_only_for_the_rest(
    proxy: FaultProxy, model, tmp_path: Path, range_ignored: bool
) -> None:
    root, reference, sizes, total = model
    weights = weights_digest(sizes)
    home, out = tmp_path / "home", tmp_path / "out"
    proxy.rules.append(stall(weights))
    kept = kill_mid_blob(proxy, reference, out, home, weights)
    assert 0 < kept <= STALL_AT
    assert not out.exists()
    first_run = proxy.body_bytes["GET blob"]

    proxy.rules.clear()
    proxy.body_bytes.clear()
    proxy.ranges.clear()
    if range_ignored:
        proxy.rules.append(lambda method, path, count: Fault(ignore_range=True))
    again = pull_process(f"{proxy.host}/{reference}", out, home)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert files_of(out) == files_of(root)
    assert proxy.ranges == [f"bytes={kept}-"]  # the weights' rest; the small layer was whole
    if not range_ignored:
        assert proxy.body_bytes["GET blob"] == sizes[weights] - kept
        assert (first_run + proxy.body_bytes["GET blob"]) / total < 1.3
    assert not any((home / "partial").iterdir())  # done with: nothing kept any more


def test_kept_bytes_that_do_not_verify_are_removed_and_the_next_pull_works(
    proxy: FaultProxy, model, tmp_path: Path
) -> None:
    root, reference, sizes, _ = model
    weights = weights_digest(sizes)
    home = tmp_path / "home"
    kept = home / "partial" / f"sha256-{weights.split(':')[1]}"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"\0" * (1 << 20))  # not what the blob starts with
    stores = Stores(home=home, options=RegistryOptions(plain_http=True))
    try:
        with pytest.raises(IntegrityError, match="does not match"):
            api.pull(f"{proxy.host}/{reference}", tmp_path / "out", stores=stores)
        assert not kept.exists() and not (tmp_path / "out").exists()
        api.pull(f"{proxy.host}/{reference}", tmp_path / "out", stores=stores)
    finally:
        stores.close()
    assert files_of(tmp_path / "out") == files_of(root)


def test_a_pull_that_gives_up_keeps_its_bytes_for_the_next(
    proxy: FaultProxy, model, tmp_path: Path
) -> None:
    root, reference, sizes, _ = model
    weights = weights_digest(sizes)

    def cut_always(method: str, path: str, count: int) -> Fault | None:
        return Fault(cut_response_after=4 << 20) if path.endswith(weights) else None

    proxy.rules.append(cut_always)
    stores = Stores(home=tmp_path / "home", options=RegistryOptions(plain_http=True, retries=1))
    try:
        with pytest.raises(RegistryUnavailable):
            api.pull(f"{proxy.host}/{reference}", tmp_path / "out", stores=stores)
        kept = kept_bytes(tmp_path / "home", weights)
        assert kept >= 4 << 20
        proxy.rules.clear()
        proxy.ranges.clear()
        api.pull(f"{proxy.host}/{reference}", tmp_path / "out", stores=stores)
    finally:
        stores.close()
    assert proxy.ranges == [f"bytes={kept}-"]
    assert files_of(tmp_path / "out") == files_of(root)


# ----- the resolver's fetch ----------------------------------------------------------------


def promoted_model(registry, keys: Path, tmp_path: Path) -> tuple[Path, str, dict[str, int]]:
    from modelreg.policy import policy_from_keys
    from modelreg.signing import load_signing_key

    root = write_model(tmp_path / "model", large=WEIGHTS)
    target = f"{registry.host}/{unique_repo()}"
    pushed = api.push(root, target, capture=False)
    api.promote(
        f"{target}:v1",
        "production",
        load_signing_key(keys / "alice.key"),
        policy=policy_from_keys([keys / "alice.pub"]),
    )
    manifest = api.inspect(pushed.reference).manifest
    return root, target.split("/", 1)[1], {layer.digest: layer.size for layer in manifest.layers}


def test_a_killed_fetch_resumes_in_the_next_process(
    proxy: FaultProxy, registry, keys: Path, tmp_path: Path
) -> None:
    root, repository, sizes = promoted_model(registry, keys, tmp_path)
    weights = weights_digest(sizes)
    home, cache = tmp_path / "home", tmp_path / "cache"
    proxy.rules.append(stall(weights))
    script = (
        "import sys; from modelreg import Resolver\n"
        f"r = Resolver(trust=[{str(keys / 'alice.pub')!r}], cache_dir={str(cache)!r})\n"
        "r.fetch(r.resolve(sys.argv[1]))\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, f"{proxy.host}/{repository}"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MODELREG_HOME": str(home), "MODELREG_PLAIN_HTTP": "1"},
    )
    deadline = time.monotonic() + 60
    while kept_bytes(home, weights) < STALL_AT // 2 and time.monotonic() < deadline:
        assert child.poll() is None, child.communicate()
        time.sleep(0.05)
    time.sleep(0.3)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    proxy.release.set()
    kept = kept_bytes(home, weights)
    assert kept > 0

    from modelreg import Resolver

    proxy.rules.clear()
    proxy.ranges.clear()
    proxy.body_bytes.clear()
    stores = Stores(home=home, options=RegistryOptions(plain_http=True))
    try:
        resolver = Resolver(trust=[keys / "alice.pub"], cache_dir=cache, stores=stores)
        path = resolver.fetch(resolver.resolve(f"{proxy.host}/{repository}"))
    finally:
        stores.close()
    assert files_of(path) == files_of(root)
    assert proxy.ranges == [f"bytes={kept}-"]
    assert proxy.body_bytes["GET blob"] <= sizes[weights] - kept + (1 << 20)
    assert kept_bytes(home, weights) == 0  # in the layer cache now; the kept copy is gone


def test_fetch_with_include_downloads_only_the_wanted_layers(
    proxy: FaultProxy, registry, keys: Path, tmp_path: Path
) -> None:
    from modelreg import Resolver

    root, repository, _ = promoted_model(registry, keys, tmp_path)
    stores = Stores(home=tmp_path / "home", options=RegistryOptions(plain_http=True))
    try:
        resolver = Resolver(trust=[keys / "alice.pub"], cache_dir=tmp_path / "c", stores=stores)
        model = resolver.resolve(f"{proxy.host}/{repository}")
        proxy.seen.clear()
        proxy.body_bytes.clear()
        small = resolver.fetch(model, include=["*.json", "tokenizer/"])
        assert sorted(files_of(small)) == ["config.json", "tokenizer/vocab.txt"]
        assert proxy.seen["GET blob"] == 1 and proxy.body_bytes["GET blob"] < 1 << 20
        rest = resolver.fetch(model, exclude=["config.json"])
        assert "config.json" not in files_of(rest) and "weights.bin" in files_of(rest)
        whole = resolver.fetch(model)
        assert files_of(whole) == files_of(root)
        from modelreg.errors import InvalidInput

        with pytest.raises(InvalidInput, match="matches no file"):
            resolver.fetch(model, include=["*.gguf"])
    finally:
        stores.close()


def test_a_registry_that_mishandles_ranges_gets_a_whole_download_instead(
    hostile, stores: Stores, tmp_path: Path
) -> None:
    from helpers.hostile_registry import Reply

    root = write_model(tmp_path / "model", large=WEIGHTS // 4)
    local = api.push(root, "ranged", capture=False, stores=stores)
    hostile.load("ranged", stores.local.repository("ranged"))
    manifest = api.inspect(local.reference, stores=stores).manifest
    weights = max(manifest.layers, key=lambda layer: layer.size)
    blob = (stores.home / "oci" / "ranged" / "blobs" / "sha256" / weights.digest[7:]).read_bytes()
    kept = stores.home / "partial" / f"sha256-{weights.digest[7:]}"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(blob[: 1 << 20])  # a true prefix, kept by an earlier pull
    path = hostile.blob_path("ranged", weights.digest)
    asked: list[str] = []

    def wrong_range_once(method: str, at: str) -> Reply | None:
        if method == "GET" and at == path and not asked:
            asked.append(at)
            return Reply(206, blob[:100], {"Content-Range": f"bytes 0-99/{len(blob)}"})
        return None

    hostile.rule(wrong_range_once)
    api.pull(f"{hostile.host}/ranged@{local.digest}", tmp_path / "out", stores=stores)
    assert files_of(tmp_path / "out") == files_of(root)
    assert [hit for hit in hostile.hits if hit == ("GET", path)] == [("GET", path)] * 2
    assert not kept.exists()


# ----- bytes that arrived before a break ---------------------------------------------------


def test_bytes_received_before_a_reset_are_handed_out_then_the_break(tmp_path: Path) -> None:
    """http.client fills one buffer in several socket reads and drops them all when a
    later one fails: the body reads piece by piece, so what arrived is not lost."""
    import socket
    import struct
    import threading

    import requests

    from modelreg.store.blob_io import ResponseBody

    sent = 1 << 20
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        connection, _ = listener.accept()
        connection.recv(65536)
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (4 * sent) + b"x" * sent
        )
        time.sleep(0.3)  # the reader has taken the megabyte and waits for more
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        response = requests.get(f"http://127.0.0.1:{port}/blob", stream=True, timeout=5)
        body = ResponseBody(response, f"127.0.0.1:{port}", "blob sha256:x")
        buffer = bytearray(2 * sent)
        assert body.readinto(buffer) == sent
        assert bytes(buffer[:sent]) == b"x" * sent
        with pytest.raises(RegistryUnavailable, match="broke mid-transfer"):
            body.readinto(buffer)
        response.close()
    finally:
        server.join(5)
        listener.close()
