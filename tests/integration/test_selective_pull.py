"""--include/--exclude on pull: only the layers holding wanted files cross the wire, only
wanted files are written, every downloaded blob is still verified whole."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.cli import Cli
from helpers.fault_proxy import FaultProxy
from helpers.models import unique_repo

from modelreg import api
from modelreg.errors import InvalidInput
from modelreg.store import RegistryOptions, Stores

SHARD = 9 << 20


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("selective") / "model"
    root.mkdir()
    for index in range(3):
        (root / f"model-{index}.safetensors").write_bytes(os.urandom(SHARD))
    (root / "config.json").write_text('{"layers": 2}\n')
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    (root / "tokenizer" / "merges.txt").write_text("a b\n")
    return root


@pytest.fixture
def via_proxy(home: Path) -> Iterator[Stores]:
    made = Stores(home=home, options=RegistryOptions(plain_http=True, settle=0.05))
    yield made
    made.close()


@pytest.fixture
def pushed(registry, sharded: Path, proxy: FaultProxy, via_proxy: Stores) -> str:
    """The model on the registry; the reference through the proxy."""
    result = api.push(sharded, f"{registry.host}/{unique_repo()}", capture=False)
    return result.reference.replace(registry.host, proxy.host)


def test_include_one_small_file_fetches_only_the_small_files_layer(
    pushed: str, proxy: FaultProxy, via_proxy: Stores, sharded: Path, tmp_path: Path
) -> None:
    result = api.pull(pushed, tmp_path / "out", stores=via_proxy, include=["config.json"])
    assert result.files == ("config.json",)
    assert files_of(tmp_path / "out") == {"config.json": (sharded / "config.json").read_bytes()}
    assert proxy.seen["GET blob"] == 1  # the small-files layer only, no shard
    assert proxy.body_bytes["GET blob"] < 1 << 20


def test_include_a_shard_and_a_directory(
    pushed: str, proxy: FaultProxy, via_proxy: Stores, sharded: Path, tmp_path: Path
) -> None:
    api.pull(
        pushed,
        tmp_path / "out",
        stores=via_proxy,
        include=["model-1.safetensors", "tokenizer"],
        exclude=["*/merges.txt"],
    )
    want = {
        name: data
        for name, data in files_of(sharded).items()
        if name in ("model-1.safetensors", "tokenizer/vocab.txt")
    }
    assert files_of(tmp_path / "out") == want
    assert proxy.seen["GET blob"] == 2  # the shard's layer and the small-files layer
    assert SHARD < proxy.body_bytes["GET blob"] < SHARD + (1 << 20)


def test_exclude_the_shards_through_the_cli(
    pushed: str, proxy: FaultProxy, sharded: Path, tmp_path: Path
) -> None:
    result = Cli.process(
        "--plain-http", "pull", pushed, str(tmp_path / "out"), "--exclude", "*.safetensors"
    )
    assert result.returncode == 0, result.stderr
    assert sorted(files_of(tmp_path / "out")) == [
        "config.json",
        "tokenizer/merges.txt",
        "tokenizer/vocab.txt",
    ]
    assert proxy.seen["GET blob"] == 1


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--include", "nothing-*.bin"], "matches no file"),
        (["--include", "*.json", "--exclude", "*"], "leave no file"),
        (["--include", ""], "empty"),
        (["--include", "../x"], "not relative"),
        (["--include", "/etc/*"], "not relative"),
        (["--include", "model-[0"], "unclosed"),
    ],
)
def test_bad_or_empty_selections_are_clear_errors_and_write_nothing(
    pushed: str, proxy: FaultProxy, tmp_path: Path, options: list[str], fragment: str
) -> None:
    result = Cli.process("--plain-http", "pull", pushed, str(tmp_path / "out"), *options)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr and "hint: " in result.stderr
    assert "Traceback" not in result.stderr
    assert proxy.seen["GET blob"] == 0
    assert not (tmp_path / "out").exists()


def test_selection_from_the_local_store(stores: Stores, sharded: Path, tmp_path: Path) -> None:
    pushed = api.push(sharded, unique_repo("local"), capture=False, stores=stores)
    api.pull(pushed.reference, tmp_path / "out", stores=stores, include=["tokenizer/*"])
    assert sorted(files_of(tmp_path / "out")) == ["tokenizer/merges.txt", "tokenizer/vocab.txt"]
    with pytest.raises(InvalidInput, match="matches no file"):
        api.pull(pushed.reference, tmp_path / "none", stores=stores, include=["x"])
