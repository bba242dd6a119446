"""Several layers at once on push, pull, copy and mirror, through a fault proxy that sees
how many blob requests it serves at a time: a bounded pool, ordered writes (manifest
after every blob, tags after the manifest), progress per layer plus a total, and a
failing layer that stops the others and is named in the error."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers.cli import Cli
from helpers.fault_proxy import Fault, FaultProxy, kind
from helpers.models import unique_repo

from modelreg import api
from modelreg.errors import InvalidInput, RegistryError, RegistryUnavailable
from modelreg.oci import layer_title
from modelreg.parallel import TOTAL
from modelreg.store import RegistryOptions, Stores
from modelreg.transfer import TransferEvent

SHARD = 9 << 20  # over packing.LARGE_FILE: one layer per shard


def sharded_model(root: Path, shards: int = 6) -> Path:
    root.mkdir(parents=True)
    for index in range(shards):
        (root / f"model-{index:05d}-of-{shards:05d}.safetensors").write_bytes(os.urandom(SHARD))
    (root / "config.json").write_text('{"layers": 2}\n')
    (root / "tokenizer.json").write_text('{"vocab": []}\n')
    return root


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def tags_on(registry, repository: str) -> list[str]:
    answer = requests.get(f"{registry.url}/v2/{repository}/tags/list", timeout=10)
    return answer.json().get("tags") or [] if answer.status_code == 200 else []


@pytest.fixture
def via_proxy(home: Path) -> Iterator[Stores]:
    made = Stores(home=home, options=RegistryOptions(plain_http=True, settle=0.05, retries=1))
    yield made
    made.close()


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sharded_model(tmp_path_factory.mktemp("sharded") / "model")


def test_push_and_pull_move_layers_side_by_side_within_the_bound(
    via_proxy: Stores, proxy: FaultProxy, registry, shards: Path, tmp_path: Path
) -> None:
    repository = unique_repo()
    events: list[TransferEvent] = []
    pushed = api.push(
        shards,
        f"{proxy.host}/{repository}",
        capture=False,
        stores=via_proxy,
        progress=events.append,
        concurrency=3,
    )
    assert 2 <= proxy.peak["PATCH upload"] <= 3
    layers = [e for e in events if e.action != TOTAL]
    assert {e.title for e in layers if e.action == "done"} >= {p.name for p in shards.glob("*.st*")}
    totals = [e for e in events if e.action == TOTAL]
    assert [t.done for t in totals] == sorted(t.done for t in totals)  # never goes back
    assert totals[-1].done == totals[-1].total >= 6 * SHARD
    assert {e.title for e in totals} == {""}

    events.clear()
    pulled = api.pull(
        pushed.reference, tmp_path / "out", stores=via_proxy, progress=events.append, concurrency=2
    )
    assert proxy.peak["GET blob"] == 2
    assert files_of(tmp_path / "out") == files_of(shards)
    assert pulled.digest == pushed.digest
    totals = [e for e in events if e.action == TOTAL]
    assert totals[-1].done == totals[-1].total


def test_concurrency_one_moves_one_layer_at_a_time(
    via_proxy: Stores, proxy: FaultProxy, shards: Path, tmp_path: Path
) -> None:
    pushed = api.push(
        shards, f"{proxy.host}/{unique_repo()}", capture=False, stores=via_proxy, concurrency=1
    )
    api.pull(pushed.reference, tmp_path / "out", stores=via_proxy, concurrency=1)
    assert proxy.peak["PATCH upload"] == 1, proxy.peak
    assert proxy.peak["GET blob"] == 1, proxy.peak
    assert files_of(tmp_path / "out") == files_of(shards)


def test_copy_and_mirror_move_blobs_side_by_side(
    via_proxy: Stores, proxy: FaultProxy, registry, shards: Path
) -> None:
    source = unique_repo()
    pushed = api.push(shards, f"{registry.host}/{source}", capture=False, stores=via_proxy)
    copied = unique_repo()
    api.copy(pushed.reference, f"{proxy.host}/{copied}:copy-one", stores=via_proxy, concurrency=4)
    assert proxy.peak["PATCH upload"] >= 2
    assert "copy-one" in tags_on(registry, copied)
    proxy.peak.clear()
    mirrored = api.mirror(
        f"{registry.host}/{source}", f"{proxy.host}/{source}-m", stores=via_proxy, concurrency=4
    )
    assert mirrored.versions == [1]
    assert proxy.peak["PATCH upload"] >= 2


def test_a_layer_failing_while_others_run_leaves_no_manifest_and_names_the_layer(
    via_proxy: Stores, proxy: FaultProxy, registry, shards: Path
) -> None:
    repository = unique_repo()

    def refuse_third_upload(method: str, path: str, count: int) -> Fault | None:
        return Fault(status=400) if kind(method, path) == "PATCH upload" and count == 3 else None

    proxy.rules.append(refuse_third_upload)
    with pytest.raises(RegistryError) as caught:
        api.push(
            shards, f"{proxy.host}/{repository}", capture=False, stores=via_proxy, concurrency=3
        )
    assert caught.value.message.startswith("layer model-0000")
    assert proxy.seen["PUT manifest"] == 0
    assert tags_on(registry, repository) == []
    # the layers queued behind the failure never started
    assert proxy.seen["PATCH upload"] < 7


def test_a_download_failing_while_others_run_leaves_nothing_and_names_the_layer(
    via_proxy: Stores, proxy: FaultProxy, registry, shards: Path, tmp_path: Path
) -> None:
    pushed = api.push(shards, f"{registry.host}/{unique_repo()}", capture=False)
    shard = "model-00002-of-00006.safetensors"
    manifest = api.inspect(pushed.reference).manifest
    broken = next(layer for layer in manifest.layers if layer_title(layer) == shard)

    def cut_always(method: str, path: str, count: int) -> Fault | None:
        if method == "GET" and path.endswith(broken.digest):
            return Fault(cut_response_after=1 << 20)
        return None

    proxy.rules.append(cut_always)
    reference = pushed.reference.replace(registry.host, proxy.host)
    with pytest.raises(RegistryUnavailable) as caught:
        api.pull(reference, tmp_path / "out", stores=via_proxy, concurrency=3)
    assert caught.value.message.startswith(f"layer {shard}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # no staging left behind


def test_bad_concurrency_is_refused_before_anything_moves(tmp_path: Path, shards: Path) -> None:
    with pytest.raises(InvalidInput, match="concurrency"):
        api.push(shards, "local-x", capture=False, concurrency=0)
    result = Cli.process("pull", "--concurrency", "1000", "ml/x", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert "concurrency" in result.stderr and "hint: " in result.stderr
    result = Cli.process("pull", "ml/x", str(tmp_path / "out"), env={"MODELREG_CONCURRENCY": "x"})
    assert result.returncode == 2 and "MODELREG_CONCURRENCY" in result.stderr
    assert not (tmp_path / "out").exists()
