"""A full disk and an over-long name end as ModelregErrors, with nothing partial left.

ENOSPC for real: a 2 MiB tmpfs (root only) is the pull destination, the resolver's
cache or MODELREG_HOME (the local store) while a 9 MiB model is written there.
The CLI exits 10 with one line and a hint; the library raises LocalStorageError;
the tmpfs holds nothing afterwards but what was there before.

ENAMETOOLONG: a hostile layer with a 300-byte name component is refused before
anything is written (exit 6, IntegrityError), by pull and by the Resolver.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.cli import Cli
from helpers.hostile_registry import HostileRegistry
from helpers.models import unique_repo
from helpers.registry import Registry
from helpers.tars import member, tar_with
from test_hostile import (
    GOOD,
    REPO,
    assert_cache_holds_nothing_for,
    assert_refused,
    model_layer,
    pull,
    seed,  # noqa: F401  (the fixture)
    snapshot,
)

from modelreg import Resolver, api
from modelreg.errors import IntegrityError, LocalStorageError
from modelreg.store import RegistryOptions, Stores

FULL = "no space left on device"


def files_below(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def assert_one_line_error(stderr: str, fragment: str) -> None:
    lines = stderr.splitlines()
    assert "Traceback" not in stderr
    assert lines and lines[0].startswith("error: ") and fragment in lines[0], stderr
    assert len(lines) == 2 and lines[1].startswith("hint: "), stderr


def test_pull_onto_a_full_disk(
    registry: Registry, model_dir: Path, small_disk: Path, cli: Cli, tmp_path: Path
) -> None:
    target = f"{registry.host}/{unique_repo()}"
    pushed = cli("push", str(model_dir), target, "--no-capture", "--json")
    assert pushed.returncode == 0, pushed.stderr
    reference = json.loads(pushed.stdout)["reference"]
    (small_disk / "kept.txt").write_text("mine\n")

    run = cli.process("pull", reference, str(small_disk / "out"))
    assert run.returncode == 10, run.stderr
    assert_one_line_error(run.stderr, FULL)
    assert "nothing partial was kept" in run.stderr
    assert files_below(small_disk) == ["kept.txt"]

    stores = Stores(home=tmp_path / "lib-home", options=RegistryOptions())
    try:
        with pytest.raises(LocalStorageError, match=FULL) as caught:
            api.pull(reference, small_disk / "out", stores=stores)
    finally:
        stores.close()
    assert caught.value.exit_code == 10
    assert files_below(small_disk) == ["kept.txt"]


def test_local_store_on_a_full_disk(
    model_dir: Path, small_disk: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELREG_HOME", str(small_disk))
    run = cli.process("push", str(model_dir), "fraud", "--no-capture")
    assert run.returncode == 10, run.stderr
    assert_one_line_error(run.stderr, "writing the local store failed: " + FULL)
    # no temp file, no blob of the model, no tag: at most the empty layout it set up
    store = small_disk / "oci" / "fraud"
    leftovers = [p for p in files_below(small_disk) if ".tmp-" in p]
    assert leftovers == []
    listed = cli("versions", "fraud")
    assert "v1" not in listed.stdout
    if (store / "index.json").exists():
        assert json.loads((store / "index.json").read_text())["manifests"] == []

    stores = Stores(home=small_disk, options=RegistryOptions())
    try:
        with pytest.raises(LocalStorageError, match=FULL):
            api.push(model_dir, "fraud", capture=False, stores=stores)
    finally:
        stores.close()
    assert [p for p in files_below(small_disk) if ".tmp-" in p] == []


BIG = model_layer({"config.json": b"{}\n", "weights.bin": os.urandom(3 * 1024 * 1024)})


def test_resolver_cache_on_a_full_disk(
    seed,  # noqa: F811
    hostile: HostileRegistry,
    small_disk: Path,
    stores: Stores,
    keys: Path,
) -> None:
    seed(("model", BIG))  # promoted to production by alice, served by the (honest) server
    resolver = Resolver(trust=[keys / "alice.pub"], cache_dir=small_disk, stores=stores)
    model = resolver.resolve(f"{hostile.host}/{REPO}")  # small: the manifest and the state fit
    with pytest.raises(LocalStorageError, match=FULL) as caught:
        resolver.fetch(model)
    assert caught.value.exit_code == 10
    assert caught.value.hint and "cache_dir" in caught.value.hint
    assert files_below(small_disk / "layers") == []
    assert files_below(small_disk / "models") == []


LONG_NAME = "a" * 300
LONG = tar_with((member("model/", b"5"), None), (member(f"model/{LONG_NAME}"), b"x"))


def test_a_300_byte_name_in_a_layer_is_refused_by_pull(
    hostile: HostileRegistry, tmp_path: Path
) -> None:
    digest, _ = hostile.add_model(REPO, [("model", GOOD), ("long", LONG)])
    before = snapshot(tmp_path)
    run = pull(hostile, f"@{digest}", tmp_path)
    assert_refused(run, 6, "has a 300-byte name, longer than any file system allows (255)")
    assert snapshot(tmp_path) == before


def test_a_300_byte_name_in_a_layer_is_refused_by_the_resolver(
    seed,  # noqa: F811
    hostile: HostileRegistry,
    tmp_path: Path,
) -> None:
    seeded = seed(("model", GOOD), ("long", LONG))
    model = seeded.resolver.resolve(f"{hostile.host}/{REPO}")
    before = snapshot(tmp_path)
    with pytest.raises(IntegrityError, match="300-byte name"):
        seeded.resolver.fetch(model)
    assert snapshot(tmp_path) == before
    assert_cache_holds_nothing_for(seeded, LONG)
