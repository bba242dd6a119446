"""The resolver against real stores: verified answers, a shared verified cache, offline mode,
replay refusal across restarts, threads, several processes, and watching for promotions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers.cli import Cli
from helpers.fault_proxy import fault_proxy
from helpers.models import unique_repo, write_model

from modelreg import Resolver, api
from modelreg.errors import IntegrityError, RegistryUnavailable, VerificationError
from modelreg.oci import IMAGE_MANIFEST
from modelreg.policy import policy_from_keys
from modelreg.promotion import record_tag
from modelreg.reference import parse_reference
from modelreg.signing import load_signing_key
from modelreg.store import RegistryOptions, Stores


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def promote(stores: Stores, keys: Path, reference: str, stage: str = "production") -> None:
    alice = load_signing_key(keys / "alice.key")
    api.promote(
        reference, stage, alice, policy=policy_from_keys([keys / "alice.pub"]), stores=stores
    )


@pytest.fixture
def promoted(stores: Stores, keys: Path, target: str, tmp_path: Path) -> tuple[str, Path, str]:
    model = write_model(tmp_path / "m1")
    pushed = api.push(model, target, capture=False, params={"lr": 0.01}, stores=stores)
    promote(stores, keys, f"{target}:v1")
    return target, model, pushed.digest


def resolver_for(stores: Stores, keys: Path, cache: Path, **kwargs: object) -> Resolver:
    return Resolver(trust=[keys / "alice.pub"], cache_dir=cache, stores=stores, **kwargs)  # type: ignore[arg-type]


def test_resolve_and_fetch(stores: Stores, keys: Path, promoted, tmp_path: Path) -> None:
    target, model_dir, digest = promoted
    resolver = resolver_for(stores, keys, tmp_path / "cache")
    model = resolver.resolve(target, stage="production")
    assert (model.digest, model.version, model.stale) == (digest, 1, False)
    assert model.reference == f"{target}@{digest}"
    assert model.lineage.params == {"lr": 0.01}
    path = resolver.fetch(model)
    assert files_of(path) == files_of(model_dir)
    assert resolver.fetch(model) == path  # cached


def test_untrusted_stage_is_refused(stores: Stores, keys: Path, promoted, tmp_path: Path) -> None:
    target, _, _ = promoted
    mallory = Resolver(trust=[keys / "mallory.pub"], cache_dir=tmp_path / "c", stores=stores)
    with pytest.raises(VerificationError, match="0 of 1 required: none; missing: mallory"):
        mallory.resolve(target)
    repo = stores.repository(parse_reference(target))
    other = api.push(write_model(tmp_path / "m2"), target, capture=False, stores=stores)
    _, data = repo.fetch_manifest(other.digest)
    repo.push_manifest(data, IMAGE_MANIFEST, ["production"])  # tag moved without a record
    with pytest.raises(VerificationError, match="moved without a signed promotion"):
        resolver_for(stores, keys, tmp_path / "cache").resolve(target)


@pytest.mark.parametrize("warm", [False, True])
def test_a_promotion_between_its_record_and_its_tag_move_resolves_to_the_record(
    stores: Stores, keys: Path, promoted, tmp_path: Path, warm: bool
) -> None:
    """A promotion writes its signed record, then moves the tag: a reader in between (or
    after the promoter died there) gets the new model, not an error; `verify` still
    reports the lagging tag."""
    target, _, first = promoted
    resolver = resolver_for(stores, keys, tmp_path / "cache")
    assert resolver.resolve(target).digest == first
    second = api.push(write_model(tmp_path / "m2"), target, capture=False, stores=stores)
    promote(stores, keys, f"{target}:v2")
    if warm:
        assert resolver.resolve(target).digest == second.digest  # accepted with the tag moved
    repo = stores.repository(parse_reference(target))
    _, data = repo.fetch_manifest(first)
    repo.push_manifest(data, IMAGE_MANIFEST, ["production"])  # the tag back where it was
    model = resolver.resolve(target)
    assert (model.digest, model.version) == (second.digest, 2)
    fresh = resolver_for(stores, keys, tmp_path / "fresh").resolve(target)
    assert fresh.digest == second.digest
    with pytest.raises(VerificationError, match="moved without a signed promotion"):
        api.verify(
            f"{target}:production", policy=policy_from_keys([keys / "alice.pub"]), stores=stores
        )
    # anywhere else than the replaced model is still refused
    third = api.push(write_model(tmp_path / "m3"), target, capture=False, stores=stores)
    _, data = repo.fetch_manifest(third.digest)
    repo.push_manifest(data, IMAGE_MANIFEST, ["production"])
    with pytest.raises(VerificationError, match="moved without a signed promotion"):
        resolver.resolve(target)


def test_replay_refused_across_restarts(
    stores: Stores, keys: Path, promoted, tmp_path: Path
) -> None:
    target, _, _ = promoted
    second = api.push(write_model(tmp_path / "m2"), target, capture=False, stores=stores)
    promote(stores, keys, f"{target}:v2")
    cache = tmp_path / "cache"
    assert resolver_for(stores, keys, cache).resolve(target).digest == second.digest
    repo = stores.repository(parse_reference(target))
    head = repo.resolve(record_tag("production", 2))
    assert head is not None
    repo.delete_manifest(head.digest)
    _, data = repo.fetch_manifest("v1")
    repo.push_manifest(data, IMAGE_MANIFEST, ["production"])
    restarted = resolver_for(stores, keys, cache)  # a new process, same cache directory
    with pytest.raises(VerificationError, match=r"is gone|replayed"):
        restarted.resolve(target)


def test_new_version_downloads_only_what_changed(
    stores: Stores, keys: Path, promoted, tmp_path: Path
) -> None:
    target, model_dir, _ = promoted
    resolver = resolver_for(stores, keys, tmp_path / "cache")
    first = resolver.fetch(resolver.resolve(target))
    (model_dir / "config.json").write_text('{"hidden": 1024}\n')
    api.push(model_dir, target, capture=False, stores=stores)
    promote(stores, keys, f"{target}:v2")
    layers_before = set((tmp_path / "cache" / "layers").iterdir())
    second = resolver.fetch(resolver.resolve(target))
    added = set((tmp_path / "cache" / "layers").iterdir()) - layers_before
    assert len(added) == 1  # only the small-files layer; the weights layer is shared
    assert (first / "weights.bin").stat().st_ino == (second / "weights.bin").stat().st_ino
    assert (second / "config.json").read_text() == '{"hidden": 1024}\n'


def test_corrupt_blob_leaves_nothing_trusted(
    stores: Stores, keys: Path, promoted, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    target, _, digest = promoted
    from test_push_pull import corrupt_blob

    info = api.inspect(f"{target}@{digest}", stores=stores)
    weights = next(
        layer
        for layer in info.manifest.layers
        if layer.annotations.get("dev.modelreg.title") == "weights.bin"
    )
    registry = None if parse_reference(target).is_local else request.getfixturevalue("registry")
    corrupt_blob(stores, target, weights.digest, registry)
    resolver = resolver_for(stores, keys, tmp_path / "cache")
    with pytest.raises(IntegrityError):
        resolver.fetch(resolver.resolve(target))
    cache = tmp_path / "cache"
    assert not (cache / "layers" / weights.digest[7:]).exists()
    assert not (cache / "models" / digest[7:]).exists()
    assert [p for p in (cache / "layers").iterdir() if p.name.startswith(".tmp-")] == []


def landing(layers: Path) -> bool:
    """Whether bytes are being written into a temporary layer directory right now."""
    try:
        temps = [p for p in layers.iterdir() if p.name.startswith(".tmp-")]
        return any(f.stat().st_size > 0 for t in temps for f in t.rglob("*") if f.is_file())
    except FileNotFoundError:  # renamed into place (or removed) while we looked
        return False


def test_killed_fetch_leaves_nothing_a_later_fetch_trusts(
    stores: Stores, keys: Path, registry, tmp_path: Path
) -> None:
    target = f"{registry.host}/{unique_repo()}"
    model = write_model(tmp_path / "big", large=96 * 1024 * 1024)
    api.push(model, target, capture=False, stores=stores)
    promote(stores, keys, f"{target}:v1")
    cache = tmp_path / "cache"
    script = (
        "import sys; from modelreg import Resolver; from modelreg.store import Stores\n"
        f"r = Resolver(trust=[{str(keys / 'alice.pub')!r}], cache_dir={str(cache)!r}, "
        f"stores=Stores(home=__import__('pathlib').Path({str(stores.home)!r})))\n"
        "m = r.resolve(sys.argv[1]); print('resolved', flush=True); r.fetch(m)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, target],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "MODELREG_HOME": str(stores.home)},
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "resolved"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # kill once bytes are landing in a temporary directory
        if landing(cache / "layers"):
            break
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    published = [p for p in (cache / "layers").iterdir() if not p.name.startswith(".tmp-")]
    for layer in published:  # whatever was published before the kill is complete
        assert all(f.stat().st_size > 0 for f in layer.rglob("*") if f.is_file())
    resolver = resolver_for(stores, keys, cache)
    path = resolver.fetch(resolver.resolve(target))
    assert files_of(path) == files_of(model)


def test_processes_share_one_cache(stores: Stores, keys: Path, promoted, tmp_path: Path) -> None:
    target, model_dir, _ = promoted
    cache = tmp_path / "cache"
    script = (
        "import sys, pathlib; from modelreg import Resolver; from modelreg.store import Stores\n"
        f"r = Resolver(trust=[{str(keys / 'alice.pub')!r}], cache_dir={str(cache)!r}, "
        f"stores=Stores(home=pathlib.Path({str(stores.home)!r})))\n"
        "print(r.fetch(r.resolve(sys.argv[1])))\n"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, target],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [child.communicate(timeout=120) for child in children]
    assert all(child.returncode == 0 for child in children), [err for _, err in outputs]
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1
    assert files_of(Path(paths.pop())) == files_of(model_dir)


def test_threads_share_one_resolver(stores: Stores, keys: Path, promoted, tmp_path: Path) -> None:
    target, model_dir, digest = promoted
    resolver = resolver_for(stores, keys, tmp_path / "cache")
    results: list[object] = []

    def work() -> None:
        try:
            model = resolver.resolve(target)
            results.append((model.digest, files_of(resolver.fetch(model)) == files_of(model_dir)))
        except Exception as error:  # reported below
            results.append(error)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [(digest, True)] * 8


def test_offline_answers_from_cache_within_max_stale(
    stores: Stores, keys: Path, make_registry, tmp_path: Path
) -> None:
    registry = make_registry()
    target = f"{registry.host}/{unique_repo()}"
    pushed = api.push(write_model(tmp_path / "m"), target, capture=False, stores=stores)
    promote(stores, keys, f"{target}:v1")
    cache = tmp_path / "cache"
    resolver_for(stores, keys, cache).resolve(target)
    registry.stop()
    offline_stores = Stores(home=stores.home, options=RegistryOptions(timeout=1.0, retries=0))
    model = resolver_for(offline_stores, keys, cache).resolve(target)
    assert (model.digest, model.stale) == (pushed.digest, True)
    strict = resolver_for(offline_stores, keys, cache, max_stale=0.0)
    with pytest.raises(RegistryUnavailable, match="over max_stale"):
        strict.resolve(target)
    with pytest.raises(RegistryUnavailable, match="no verified answer"):
        resolver_for(offline_stores, keys, tmp_path / "empty-cache").resolve(target)


def test_a_warm_resolve_is_three_heads_and_writes_nothing(
    stores: Stores, keys: Path, registry, tmp_path: Path
) -> None:
    target = f"{registry.host}/{unique_repo()}"
    api.push(write_model(tmp_path / "m", large=1024), target, capture=False, stores=stores)
    promote(stores, keys, f"{target}:v1")
    with fault_proxy(registry.host) as proxy:
        via = Stores(home=stores.home, options=RegistryOptions(plain_http=True))
        proxied = target.replace(registry.host, proxy.host)
        resolver = resolver_for(via, keys, tmp_path / "cache")
        resolver.resolve(proxied)
        state = stores.home / "trust-state.json"  # one memory per client (issue 14, item 7)
        before = state.stat()
        proxy.seen.clear()
        for _ in range(3):
            resolver.resolve(proxied)
        # the accepted record, the next sequence, the stage tag: nothing else
        assert dict(proxy.seen) == {"HEAD manifest": 9}
        after = state.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
        second = api.push(
            write_model(tmp_path / "m2", large=1024), target, capture=False, stores=stores
        )
        promote(stores, keys, f"{target}:v2")
        assert resolver.resolve(proxied).digest == second.digest
        assert state.stat().st_ino != before.st_ino  # a new head is written at once
        via.close()


def test_watch_yields_on_every_verified_promotion(
    stores: Stores, keys: Path, promoted, tmp_path: Path
) -> None:
    target, _, first = promoted
    second = api.push(write_model(tmp_path / "m2"), target, capture=False, stores=stores)
    resolver = resolver_for(stores, keys, tmp_path / "cache")
    stop = threading.Event()
    seen: list[str] = []
    watcher = resolver.watch(target, interval=0.05, stop=stop)
    seen.append(next(watcher).digest)
    promote(stores, keys, f"{target}:v2")
    seen.append(next(watcher).digest)
    api.rollback(
        target,
        "production",
        load_signing_key(keys / "alice.key"),
        policy=policy_from_keys([keys / "alice.pub"]),
        stores=stores,
    )
    seen.append(next(watcher).digest)
    stop.set()
    assert seen == [first, second.digest, first]


def test_resolver_import_does_not_load_the_cli_stack() -> None:
    code = (
        "import sys; from modelreg import Resolver; "
        "bad = [m for m in ('typer', 'rich', 'click', 'docker') if m in sys.modules]; "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_cli_resolve_formats(cli: Cli, stores: Stores, keys: Path, promoted) -> None:
    target, _, digest = promoted
    trust = ["--trust", str(keys / "alice.pub")]
    assert cli("resolve", target, *trust).stdout.strip() == digest
    assert cli("resolve", target, "--format", "ref", *trust).stdout.strip() == f"{target}@{digest}"
    assert '"version": 1' in cli("resolve", target, "--format", "json", *trust).stdout
    refused = cli("resolve", target, "--trust", str(keys / "mallory.pub"))
    assert refused.returncode == 7 and refused.stdout == ""
    untrusted = cli("resolve", target)
    assert untrusted.returncode == 7 and "needs trusted keys" in untrusted.stderr
