"""Tests for modelreg.lineage: real files, real git repositories, no mocks."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import modelreg
from modelreg.errors import IntegrityError, InvalidInput, NotFound
from modelreg.lineage import (
    MISSING,
    CodeInfo,
    DataRef,
    Environment,
    Lineage,
    capture_code,
    capture_environment,
    capture_lineage,
    diff_lineage,
    digest_data_path,
    from_annotations,
    lineage_as_dict,
    load_metrics_file,
    load_params_file,
    parse_data_arg,
    parse_key_values,
    parse_metrics,
    parse_where,
    sha256_file,
    to_annotations,
)
from modelreg.lineage import annotations as lineage_annotations
from modelreg.lineage.capture import environment as env_capture

# ----------------------------------------------------------------------- helpers


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class BlobStore:
    """A content-addressed dict standing in for the caller's registry store."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.names: list[str] = []

    def store(self, name: str, data: bytes) -> str:
        digest = sha256(data)
        self.blobs[digest] = data
        self.names.append(name)
        return digest

    def load(self, digest: str) -> bytes:
        return self.blobs[digest]


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        [
            "git",
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "commit.gpgsign=false",
            "-C",
            str(repo),
            *args,
        ],
        capture_output=True,
        check=True,
        text=True,
    )
    return result.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "train.py").write_text("print('train')\n")
    (path / ".gitignore").write_text("outputs/\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "first")
    return path


def full_lineage() -> Lineage:
    return Lineage(
        code=CodeInfo(
            commit="a" * 40,
            branch="main",
            dirty=True,
            diff_digest=sha256(b"diff"),
            remote="https://example.com/org/repo.git",
        ),
        data=(
            DataRef("data/train", sha256(b"train"), None),
            DataRef("s3://bucket/eval.parquet", None, "v12"),
        ),
        params={"lr": 0.01, "layers": 3, "name": "bert", "opt": {"beta": [0.9, 0.999]}, "x": None},
        metrics={"auc": 0.93, "loss": 1e-5},
        environment=Environment(
            python="3.11.7",
            platform="linux/amd64",
            packages_digest=sha256(b"numpy==2.0.0\n"),
            accelerators={"torch": "2.3.0+cu121"},
        ),
        annotations={"team": "fraud", "org.opencontainers.image.version": "v3"},
        description="fraud model, ünïcode",
    )


# ------------------------------------------------------------------- annotations


def test_every_key_constant_is_in_the_docstring_table() -> None:
    keys = [v for k, v in vars(lineage_annotations).items() if k.startswith("KEY_")]
    assert len(keys) == 17
    table = lineage_annotations.__doc__ or ""
    for key in keys:
        assert f"\n{key} " in table, key


def test_annotations_use_documented_keys_and_canonical_json() -> None:
    store = BlobStore()
    packages = b"numpy==2.0.0\n"
    annotations = to_annotations(full_lineage(), packages, store.store)
    assert annotations["org.opencontainers.image.revision"] == "a" * 40
    assert annotations["dev.modelreg.code.commit"] == "a" * 40
    assert annotations["org.opencontainers.image.source"] == "https://example.com/org/repo.git"
    assert annotations["org.opencontainers.image.description"] == "fraud model, ünïcode"
    assert annotations["dev.modelreg.code.dirty"] == "true"
    assert annotations["dev.modelreg.lineage"] == "1"
    assert annotations["dev.modelreg.params"] == (
        '{"layers":3,"lr":0.01,"name":"bert","opt":{"beta":[0.9,0.999]},"x":null}'
    )
    assert annotations["dev.modelreg.metrics"] == '{"auc":0.93,"loss":1e-05}'
    assert json.loads(annotations["dev.modelreg.data"])[1] == {
        "uri": "s3://bucket/eval.parquet",
        "digest": None,
        "version": "v12",
    }
    assert annotations["dev.modelreg.env.packages"] == sha256(packages)
    assert annotations["dev.modelreg.env.accelerators"] == '{"torch":"2.3.0+cu121"}'
    assert annotations["team"] == "fraud"
    assert store.names == ["packages.txt"]
    assert list(annotations) == sorted(annotations)


def test_round_trip_is_exact() -> None:
    store = BlobStore()
    lineage = full_lineage()
    annotations = to_annotations(lineage, b"numpy==2.0.0\n", store.store)
    assert from_annotations(annotations) == lineage
    assert from_annotations(annotations, store.load) == lineage


def test_empty_lineage_round_trips_with_only_the_schema_key() -> None:
    annotations = to_annotations(Lineage(), None, BlobStore().store)
    assert annotations == {"dev.modelreg.lineage": "1"}
    assert from_annotations(annotations) == Lineage()


def test_large_params_go_to_a_blob() -> None:
    store = BlobStore()
    params = {"vocab": [f"token-{i:05d}" for i in range(1000)], "lr": 0.1}
    lineage = Lineage(params=params)
    annotations = to_annotations(lineage, None, store.store)
    assert "dev.modelreg.params" not in annotations
    digest = annotations["dev.modelreg.params.blob"]
    assert store.names == ["params.json"]
    assert len(store.blobs[digest]) > 8 * 1024
    assert from_annotations(annotations, store.load) == lineage

    lazy = from_annotations(annotations)
    assert lazy.params == {}
    assert lazy.params_blob == digest
    # A lazily read lineage writes the same annotations back without the blob.
    assert to_annotations(lazy, None, BlobStore().store) == annotations


def test_params_just_at_the_limit_stay_inline() -> None:
    params = {"s": "x" * (8 * 1024 - len('{"s":""}'))}
    annotations = to_annotations(Lineage(params=params), None, BlobStore().store)
    assert len(annotations["dev.modelreg.params"].encode()) == 8 * 1024
    params = {"s": "é" * 4093}  # 8186 characters of JSON but 8194 bytes of UTF-8
    annotations = to_annotations(Lineage(params=params), None, BlobStore().store)
    assert "dev.modelreg.params.blob" in annotations


def test_params_blob_with_wrong_content_is_refused() -> None:
    store = BlobStore()
    annotations = to_annotations(Lineage(params={"v": "x" * 9000}), None, store.store)
    digest = annotations["dev.modelreg.params.blob"]
    store.blobs[digest] = b'{"v":"tampered"}'
    with pytest.raises(IntegrityError, match=r"dev\.modelreg\.params\.blob"):
        from_annotations(annotations, store.load)


@pytest.mark.parametrize(
    "key", ["dev.modelreg.params", "dev.modelreg.anything", "org.opencontainers.image.source"]
)
def test_user_annotation_colliding_with_our_keys_is_refused(key: str) -> None:
    with pytest.raises(InvalidInput, match="reserved") as raised:
        to_annotations(Lineage(annotations={key: "x"}), None, BlobStore().store)
    assert key in raised.value.message
    assert raised.value.hint


@pytest.mark.parametrize(
    ("lineage", "match"),
    [
        (Lineage(params={"lr": float("nan")}), "param 'lr' is not a finite number"),
        (Lineage(params={"opt": {"lr": float("inf")}}), "param 'opt.lr'"),
        (Lineage(params={"s": {1, 2}}), "param 's' is not a JSON value: set"),
        (Lineage(params={"t": (1, 2)}), "param 't' is not a JSON value: tuple"),
        (Lineage(params={"k": {1: "a"}}), "key 1"),
        (Lineage(metrics={"ok": True}), "metric 'ok' is not a number"),
        (Lineage(metrics={"loss": float("nan")}), "metric 'loss' is not a finite number"),
        (Lineage(annotations={"k": 1}), "string"),  # type: ignore[dict-item]
        (Lineage(description="\ud800"), "not valid Unicode"),
        (Lineage(params={"s": "\ud800"}), "not valid Unicode"),
    ],
)
def test_values_that_cannot_be_stored_are_refused(lineage: Lineage, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        to_annotations(lineage, None, BlobStore().store)


def test_packages_annotation_names_the_stored_blob() -> None:
    store = BlobStore()
    annotations = to_annotations(full_lineage(), b"other==1\n", store.store)
    assert store.blobs[annotations["dev.modelreg.env.packages"]] == b"other==1\n"
    with pytest.raises(InvalidInput, match="no environment"):
        to_annotations(Lineage(), b"numpy==2.0.0\n", BlobStore().store)


def test_unknown_modelreg_keys_are_ignored_and_others_pass_through() -> None:
    annotations = to_annotations(full_lineage(), None, BlobStore().store)
    annotations["dev.modelreg.future.thing"] = "whatever"
    annotations["dev.modelreg.code.future"] = "x"
    assert from_annotations(annotations) == full_lineage()


def test_foreign_manifest_without_lineage_reads_as_empty() -> None:
    lineage = from_annotations({"org.opencontainers.image.version": "1.0"})
    assert lineage == Lineage(annotations={"org.opencontainers.image.version": "1.0"})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("dev.modelreg.lineage", "2"),
        ("dev.modelreg.code.dirty", "yes"),
        ("dev.modelreg.data", "not json"),
        ("dev.modelreg.data", '{"uri":"x"}'),
        ("dev.modelreg.data", '[{"digest":"sha256:00"}]'),
        ("dev.modelreg.data", '[{"uri":"x","version":3}]'),
        ("dev.modelreg.params", "[1,2]"),
        ("dev.modelreg.params", '{"lr":NaN}'),
        ("dev.modelreg.metrics", '{"auc":"high"}'),
        ("dev.modelreg.metrics", '{"ok":true}'),
        ("dev.modelreg.metrics", '{"loss":Infinity}'),
        ("dev.modelreg.metrics", "[0.9]"),
        ("dev.modelreg.env.accelerators", '{"torch":2}'),
        ("dev.modelreg.params.blob", sha256(b"x")),
    ],
)
def test_malformed_annotation_values_raise_integrity_error_naming_the_key(
    key: str, value: str
) -> None:
    annotations = to_annotations(full_lineage(), None, BlobStore().store)
    annotations[key] = value
    with pytest.raises(IntegrityError) as raised:
        from_annotations(annotations, BlobStore().load)
    assert key in raised.value.message
    assert raised.value.hint


@pytest.mark.parametrize(
    ("remove", "missing"),
    [
        ("dev.modelreg.code.commit", "dev.modelreg.code.commit"),
        ("dev.modelreg.code.dirty", "dev.modelreg.code.dirty"),
        ("dev.modelreg.env.platform", "dev.modelreg.env.platform"),
        ("dev.modelreg.env.python", "dev.modelreg.env.python"),
    ],
)
def test_partial_groups_are_malformed(remove: str, missing: str) -> None:
    annotations = to_annotations(full_lineage(), None, BlobStore().store)
    del annotations[remove]
    with pytest.raises(IntegrityError, match=missing):
        from_annotations(annotations)


def test_annotation_that_is_not_a_string_is_malformed() -> None:
    with pytest.raises(IntegrityError, match=r"dev\.modelreg\.code\.branch"):
        from_annotations(
            {
                "dev.modelreg.code.commit": "a",
                "dev.modelreg.code.dirty": "false",
                "dev.modelreg.code.branch": 3,  # type: ignore[dict-item]
            }
        )


# Hypothesis: any lineage made of storable values survives the trip bit for bit.

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
small_params = st.dictionaries(st.text(max_size=10), json_values, max_size=6)
params_strategy = small_params | st.builds(
    lambda params, size: {**params, "big": "ü" * size}, small_params, st.integers(3000, 6000)
)
user_keys = st.text(min_size=1, max_size=20).filter(
    lambda k: not k.startswith(("dev.modelreg.", "org.opencontainers.image."))
)
optional_text = st.none() | st.text(max_size=30)
lineages = st.builds(
    Lineage,
    code=st.none()
    | st.builds(CodeInfo, st.text(max_size=40), optional_text, st.booleans(), optional_text),
    data=st.lists(st.builds(DataRef, st.text(max_size=30), optional_text, optional_text)).map(
        tuple
    ),
    params=params_strategy,
    metrics=st.dictionaries(
        st.text(max_size=10), st.floats(allow_nan=False, allow_infinity=False), max_size=5
    ),
    environment=st.none()
    | st.builds(
        Environment,
        st.text(max_size=10),
        st.text(max_size=10),
        optional_text,
        st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
    ),
    annotations=st.dictionaries(user_keys, st.text(max_size=30), max_size=4),
    description=optional_text,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(lineages)
def test_round_trip_property(lineage: Lineage) -> None:
    store = BlobStore()
    annotations = to_annotations(lineage, None, store.store)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())
    assert from_annotations(annotations, store.load) == lineage
    # The serialised form is a fixed point: writing the read-back gives the same bytes.
    assert to_annotations(from_annotations(annotations), None, store.store) == annotations


# ------------------------------------------------------------------ code capture


def test_clean_repo(repo: Path) -> None:
    code = capture_code(repo)
    assert code == CodeInfo(
        commit=git(repo, "rev-parse", "HEAD").strip(),
        branch="main",
        dirty=False,
        diff_digest=None,
        remote=None,
    )


def test_subdirectory_of_a_repo_describes_the_repo(repo: Path) -> None:
    (repo / "pkg").mkdir()
    (repo / "train.py").write_text("changed\n")
    code = capture_code(repo / "pkg")
    assert code is not None and code.dirty and code.branch == "main"


def test_dirty_repo_digest_is_the_diff_and_follows_it(repo: Path) -> None:
    (repo / "train.py").write_text("print('train v2')\n")
    first = capture_code(repo)
    assert first is not None and first.dirty
    plain_diff = subprocess.run(
        ["git", "-C", str(repo), "diff", "HEAD", "--binary", "--full-index"],
        capture_output=True,
        check=True,
    ).stdout
    assert first.diff_digest == sha256(plain_diff)
    assert capture_code(repo) == first  # stable while nothing changes

    (repo / "train.py").write_text("print('train v3')\n")
    second = capture_code(repo)
    assert second is not None and second.diff_digest != first.diff_digest


def test_binary_change_changes_the_digest(repo: Path) -> None:
    (repo / "weights.bin").write_bytes(bytes(range(256)))
    git(repo, "add", "weights.bin")
    git(repo, "commit", "-q", "-m", "bin")
    (repo / "weights.bin").write_bytes(bytes(range(255)) + b"\x00")
    first = capture_code(repo)
    (repo / "weights.bin").write_bytes(bytes(range(255)) + b"\x01")
    second = capture_code(repo)
    assert first is not None and second is not None
    assert first.diff_digest != second.diff_digest


def test_untracked_files_make_the_tree_dirty_but_ignored_ones_do_not(repo: Path) -> None:
    (repo / "outputs").mkdir()
    (repo / "outputs" / "model.bin").write_bytes(b"weights")
    code = capture_code(repo)
    assert code is not None and not code.dirty
    (repo / "new_script.py").write_text("x = 1\n")
    code = capture_code(repo)
    assert code is not None and code.dirty
    assert code.diff_digest == sha256(b"")  # untracked content is not hashed


def test_staged_change_is_dirty(repo: Path) -> None:
    (repo / "train.py").write_text("staged\n")
    git(repo, "add", "train.py")
    code = capture_code(repo)
    assert code is not None and code.dirty and code.diff_digest != sha256(b"")


def test_detached_head_has_no_branch(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    code = capture_code(repo)
    assert code is not None
    assert code.branch is None
    assert code.commit == git(repo, "rev-parse", "HEAD").strip()


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("https://user:s3cret@example.com/org/repo.git", "https://example.com/org/repo.git"),
        (
            "https://ghp_token@example.com:8443/org/repo.git",
            "https://example.com:8443/org/repo.git",
        ),
        ("ssh://git:pw@example.com/org/repo.git", "ssh://git@example.com/org/repo.git"),
        ("ssh://git@example.com/org/repo.git", "ssh://git@example.com/org/repo.git"),
        ("git@example.com:org/repo.git", "git@example.com:org/repo.git"),
        ("https://example.com/org/repo.git", "https://example.com/org/repo.git"),
    ],
)
def test_remote_credentials_are_stripped(repo: Path, remote: str, expected: str) -> None:
    git(repo, "remote", "add", "origin", remote)
    code = capture_code(repo)
    assert code is not None and code.remote == expected


def test_branch_with_slash(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature/x")
    code = capture_code(repo)
    assert code is not None and code.branch == "feature/x"


def test_not_a_repo_or_no_commit_or_no_git_gives_none(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert capture_code(plain) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    assert capture_code(empty) is None
    assert capture_code(repo / ".git") is None  # inside the git dir, not a work tree
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert capture_code(repo) is None


def test_missing_code_directory_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="code directory does not exist"):
        capture_code(tmp_path / "nope")


# ----------------------------------------------------------- environment capture


def test_capture_environment() -> None:
    start = time.monotonic()
    env, packages = capture_environment()
    assert time.monotonic() - start < 5
    assert env.python == platform.python_version()
    os_name, _, arch = env.platform.partition("/")
    assert os_name == "linux" and arch in {"amd64", "arm64"}
    assert env.packages_digest == sha256(packages)
    lines = packages.decode().splitlines()
    names = [line.split("==")[0] for line in lines]
    assert names == sorted(set(names))
    assert all(name == name.lower() and "_" not in name and "." not in name for name in names)
    assert f"pytest=={pytest.__version__}" in lines
    assert packages.endswith(b"\n")
    assert "torch" not in env.accelerators  # not installed here; and never imported


@pytest.mark.parametrize(
    ("system", "machine", "expected"),
    [
        ("linux", "x86_64", "linux/amd64"),
        ("linux", "aarch64", "linux/arm64"),
        ("darwin", "arm64", "darwin/arm64"),
        ("win32", "AMD64", "windows/amd64"),
        ("linux", "armv7l", "linux/arm/v7"),
        ("freebsd14", "amd64", "freebsd/amd64"),
    ],
)
def test_platform_names_follow_oci(system: str, machine: str, expected: str) -> None:
    assert env_capture._oci_platform(system, machine) == expected


def _fake_nvidia_smi(bin_dir: Path, script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir.mkdir()
    tool = bin_dir / "nvidia-smi"
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_nvidia_driver_is_recorded_when_nvidia_smi_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No GPU here: a stand-in executable prints what nvidia-smi prints on a 2-GPU host.
    line = "535.104.05, NVIDIA A100-SXM4-80GB"
    _fake_nvidia_smi(tmp_path / "bin", f"echo '{line}'\necho '{line}'\n", monkeypatch)
    env, _ = capture_environment()
    assert env.accelerators["nvidia-driver"] == "535.104.05"
    assert env.accelerators["nvidia-gpu"] == "2x NVIDIA A100-SXM4-80GB"


def test_hanging_nvidia_smi_is_abandoned_after_two_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_nvidia_smi(tmp_path / "bin", "exec sleep 30\n", monkeypatch)
    start = time.monotonic()
    env, _ = capture_environment()
    assert time.monotonic() - start < 4.5
    assert "nvidia-driver" not in env.accelerators


# ------------------------------------------------------------------ data digests


def make_dataset(root: Path) -> Path:
    (root / "images" / "cats").mkdir(parents=True)
    (root / "images" / "cats" / "1.jpg").write_bytes(b"\xff\xd8cat1")
    (root / "images" / "dog.jpg").write_bytes(b"\xff\xd8dog")
    (root / "labels.csv").write_text("id,label\n1,cat\n")
    return root


def test_file_digest_is_sha256_of_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    assert sha256_file(path) == sha256(b"hello")
    assert digest_data_path(path) == sha256(b"hello")


def test_sha256_file_streams_large_files(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    data = os.urandom(3 * (1 << 20) + 17)
    path.write_bytes(data)
    assert sha256_file(path) == sha256(data)


def test_directory_digest_follows_the_documented_formula(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    lines = sorted(
        f"{rel}\0{hashlib.sha256((root / rel).read_bytes()).hexdigest()}\n".encode()
        for rel in ["images/cats/1.jpg", "images/dog.jpg", "labels.csv"]
    )
    assert digest_data_path(root) == sha256(b"".join(lines))


def test_directory_digest_is_stable_across_copies_and_follows_content(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    original = digest_data_path(root)
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(root, copy)
    os.utime(copy / "labels.csv", (0, 0))  # metadata is not content
    assert digest_data_path(copy) == original

    data = bytearray((copy / "images" / "dog.jpg").read_bytes())
    data[-1] ^= 1
    (copy / "images" / "dog.jpg").write_bytes(bytes(data))
    assert digest_data_path(copy) != original

    shutil.rmtree(copy)
    shutil.copytree(root, copy)
    (copy / "labels.csv").rename(copy / "labels2.csv")
    assert digest_data_path(copy) != original


def test_empty_directories_add_nothing(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    before = digest_data_path(root)
    (root / "empty").mkdir()
    assert digest_data_path(root) == before
    assert digest_data_path(tmp_path / "ds" / "empty") == sha256(b"")


def test_injected_file_hasher_is_used(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    calls: list[Path] = []

    def counting(path: Path) -> str:
        calls.append(path)
        return sha256_file(path)

    assert digest_data_path(root, counting) == digest_data_path(root)
    assert sorted(p.name for p in calls) == ["1.jpg", "dog.jpg", "labels.csv"]
    calls.clear()
    parse_data_arg(str(root / "labels.csv"), counting)
    assert [p.name for p in calls] == ["labels.csv"]


def test_hasher_returning_a_bare_hex_is_a_programming_error(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    with pytest.raises(ValueError, match="sha256:"):
        digest_data_path(root, lambda p: hashlib.sha256(p.read_bytes()).hexdigest())


def test_symlinks_are_followed(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    real = tmp_path / "real"
    make_dataset(real)
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "labels.csv").symlink_to(real / "labels.csv")
    (linked / "images").symlink_to(real / "images", target_is_directory=True)
    assert digest_data_path(linked) == digest_data_path(root)


@pytest.mark.parametrize("kind", ["broken", "loop", "fifo"])
def test_what_cannot_be_digested_is_an_error_not_skipped(tmp_path: Path, kind: str) -> None:
    root = make_dataset(tmp_path / "ds")
    if kind == "broken":
        (root / "gone.csv").symlink_to(tmp_path / "nowhere.csv")
    elif kind == "loop":
        (root / "images" / "up").symlink_to(root, target_is_directory=True)
    else:
        os.mkfifo(root / "pipe")
    with pytest.raises(InvalidInput, match="cannot digest") as raised:
        digest_data_path(root)
    assert raised.value.hint


def test_missing_data_path_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="nope"):
        digest_data_path(tmp_path / "nope")


# -------------------------------------------------------------------- --data args


def test_local_path_is_kept_relative_and_digested(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_dataset(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    ref = parse_data_arg("./data/")
    assert ref == DataRef("data", digest_data_path(tmp_path / "data"), None)
    ref = parse_data_arg("data/labels.csv")
    assert ref.uri == "data/labels.csv" and ref.digest == sha256(b"id,label\n1,cat\n")


def test_absolute_path_and_file_uri(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data")
    assert parse_data_arg(str(root)).uri == str(root)
    ref = parse_data_arg(f"file://{root}")
    assert ref == DataRef(f"file://{root}", digest_data_path(root), None)


@pytest.mark.parametrize(
    ("arg", "uri", "version"),
    [
        ("s3://bucket/train.parquet@v12", "s3://bucket/train.parquet", "v12"),
        ("s3://bucket/train.parquet", "s3://bucket/train.parquet", None),
        ("gs://b/dir/", "gs://b/dir/", None),
        ("dvc://data/train.csv@3f2a9c1", "dvc://data/train.csv", "3f2a9c1"),
        ("hf://datasets/org/name@main", "hf://datasets/org/name", "main"),
        ("hf://datasets/org/name@rev/train.csv", "hf://datasets/org/name@rev/train.csv", None),
        ("https://user:tok@host.example/x.csv", "https://host.example/x.csv", None),
        ("https://user:tok@host.example/x.csv@v2", "https://host.example/x.csv", "v2"),
        ("https://host.example/x?v=1&sig=a@b", "https://host.example/x?v=1", None),
        ("s3://key:secret@bucket/x", "s3://bucket/x", None),
    ],
)
def test_uri_data_args(arg: str, uri: str, version: str | None) -> None:
    assert parse_data_arg(arg) == DataRef(uri, None, version)


def test_missing_data_path_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotFound) as raised:
        parse_data_arg("data/train.csv@v2")
    assert raised.value.message == "--data path does not exist: data/train.csv@v2"
    assert "URI with a scheme" in (raised.value.hint or "")


@pytest.mark.parametrize("arg", ["", "  ", "s3://bucket/x@", "file://otherhost/x"])
def test_bad_data_args(arg: str) -> None:
    with pytest.raises(InvalidInput):
        parse_data_arg(arg)


def test_missing_file_uri(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        parse_data_arg(f"file://{tmp_path}/nope")


# ---------------------------------------------------------------- params files


EXPECTED_PARAMS = {"lr": 0.01, "layers": 3, "name": "bert", "opt": {"beta": 0.9, "amp": True}}

PARAMS_FILES = {
    "p.json": '{"lr": 0.01, "layers": 3, "name": "bert", "opt": {"beta": 0.9, "amp": true}}',
    "p.yaml": "lr: 0.01\nlayers: 3\nname: bert\nopt:\n  beta: 0.9\n  amp: true\n",
    "p.yml": "lr: 0.01\nlayers: 3\nname: bert\nopt: {beta: 0.9, amp: true}\n",
    "p.toml": 'lr = 0.01\nlayers = 3\nname = "bert"\n[opt]\nbeta = 0.9\namp = true\n',
}


@pytest.mark.parametrize("name", sorted(PARAMS_FILES))
def test_params_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(PARAMS_FILES[name])
    assert load_params_file(path) == EXPECTED_PARAMS


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("p.json", '{"lr": 0.01,\n "layers": }', "line 2"),
        ("p.yaml", "lr: 0.01\nopt: [1, 2\nx: 3\n", "line 3"),
        ("p.yml", "a: b: c\n", "line 1"),
        ("p.toml", "lr = 0.01\nlayers = = 3\n", "line 2"),
    ],
)
def test_unparseable_params_name_file_and_line(
    tmp_path: Path, name: str, text: str, where: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InvalidInput) as raised:
        load_params_file(path)
    assert str(path) in raised.value.message
    assert where in raised.value.message
    assert "\n" not in raised.value.message


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("p.json", "[1, 2]", "mapping at the top level"),
        ("p.yaml", "- a\n- b\n", "mapping at the top level"),
        ("p.json", '{"lr": NaN}', "non-finite"),
        ("p.yaml", "lr: .nan\n", "param 'lr' is not a finite number"),
        ("p.toml", "lr = inf\n", "param 'lr' is not a finite number"),
        ("p.yaml", "tags: !!set {a, b}\n", "param 'tags'"),
        ("p.ini", "[x]\n", "unknown format"),
        ("p.yaml", "!!python/object:os.system {}\n", "not valid YAML"),
    ],
)
def test_bad_params_files(tmp_path: Path, name: str, text: str, match: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InvalidInput, match=match):
        load_params_file(path)


def test_params_file_conversions(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text("day = 2024-01-02\n[sched]\nsteps = [1, 2]\n")
    assert load_params_file(path) == {"day": "2024-01-02", "sched": {"steps": [1, 2]}}
    path = tmp_path / "p.yaml"
    path.write_text("layers: {1: 64, 2: 128}\n")
    assert load_params_file(path) == {"layers": {"1": 64, "2": 128}}
    path.write_text("")
    assert load_params_file(path) == {}


def test_yaml_without_pyyaml_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("lr: 0.1\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # makes "import yaml" fail
    with pytest.raises(InvalidInput) as raised:
        load_params_file(path)
    assert raised.value.hint == "pip install pyyaml"
    json_path = tmp_path / "p.json"
    json_path.write_text('{"lr": 0.1}')
    assert load_params_file(json_path) == {"lr": 0.1}


def test_import_loads_neither_yaml_nor_frameworks() -> None:
    code = (
        "import sys, modelreg.lineage as l; l.capture_environment(); "
        "print(sorted(m for m in ('yaml', 'torch', 'jax', 'tensorflow') if m in sys.modules))"
    )
    src = Path(modelreg.__file__).parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(src)},
    )
    assert result.stdout.strip() == "[]"


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="params file does not exist"):
        load_params_file(tmp_path / "nope.yaml")


def test_non_utf8_params_file(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(b'{"name": "\xff"}')
    with pytest.raises(InvalidInput, match="not UTF-8"):
        load_params_file(path)


# ------------------------------------------------------------------ -p KEY=VALUE


def test_key_values_are_typed_like_json() -> None:
    params = parse_key_values(
        [
            "lr=0.01",
            "layers=3",
            "name=bert",
            "use_amp=true",
            "resume=null",
            "tag=007",
            'quoted="3"',
            "expr=a=b",
            "big=1e400",
            "nan=NaN",
            "list=[1,2]",
            "opt.lr=0.1",
            "opt.sched.kind=cosine",
            "layers=4",
        ]
    )
    assert params == {
        "lr": 0.01,
        "layers": 4,
        "name": "bert",
        "use_amp": True,
        "resume": None,
        "tag": "007",
        "quoted": "3",
        "expr": "a=b",
        "big": "1e400",
        "nan": "NaN",
        "list": "[1,2]",
        "opt": {"lr": 0.1, "sched": {"kind": "cosine"}},
    }


@pytest.mark.parametrize(
    "pairs",
    [["lr"], ["=3"], ["a..b=1"], [".a=1"], ["a=1", "a.b=2"], ["a.b=2", "a=1"]],
)
def test_bad_key_values(pairs: list[str]) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_key_values(pairs)
    assert raised.value.hint


# ----------------------------------------------------------------------- metrics


def test_parse_metrics() -> None:
    assert parse_metrics(["auc=0.93", "loss = 1e-3", "epochs=3", "delta=-.5"]) == {
        "auc": 0.93,
        "loss": 0.001,
        "epochs": 3.0,
        "delta": -0.5,
    }


def test_non_number_metric_message() -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_metrics(["auc=high"])
    assert raised.value.message == "metric 'auc' is not a number: 'high'"


@pytest.mark.parametrize(
    "pair", ["ok=true", "loss=nan", "loss=inf", "loss=-Infinity", "x=1e400", "auc", "=1", "a="]
)
def test_bad_metrics(pair: str) -> None:
    with pytest.raises(InvalidInput):
        parse_metrics([pair])


def test_metrics_files(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text('{"auc": 0.9, "val": {"loss": 0.2, "f1": {"macro": 1}}}')
    (tmp_path / "m.yaml").write_text("auc: 0.9\nval:\n  loss: 0.2\n  f1: {macro: 1}\n")
    (tmp_path / "m.toml").write_text("auc = 0.9\n[val]\nloss = 0.2\n[val.f1]\nmacro = 1\n")
    expected = {"auc": 0.9, "val.loss": 0.2, "val.f1.macro": 1.0}
    for name in ["m.json", "m.yaml", "m.toml"]:
        assert load_metrics_file(tmp_path / name) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"auc": "high"}', "metric 'auc' is not a number: 'high'"),
        ('{"ok": true}', "metric 'ok' is not a number"),
        ('{"v": {"l": [1]}}', "metric 'v.l' is not a number"),
        ('{"a.b": 1, "a": {"b": 2}}', "metric 'a.b' is given twice"),
        ('{"loss": NaN}', "non-finite"),
        ("[1]", "mapping"),
        ('{"auc": 0.9', "line 1"),
    ],
)
def test_bad_metrics_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=match):
        load_metrics_file(path)


# --------------------------------------------------------------- capture_lineage


def test_capture_lineage_end_to_end(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dataset(repo / "outputs" / "data")
    monkeypatch.chdir(repo)
    calls: list[Path] = []

    def counting(path: Path) -> str:
        calls.append(path)
        return sha256_file(path)

    lineage, packages = capture_lineage(
        data=["outputs/data", "s3://bucket/eval@v1"],
        params={"lr": 0.01, "shape": (3, 4)},
        metrics={"auc": 0.9, "val": {"loss": 0.1}},
        annotations={"team": "fraud"},
        description="first model",
        file_sha256=counting,
    )
    assert lineage.code is not None and lineage.code.branch == "main" and not lineage.code.dirty
    assert lineage.data[0].uri == "outputs/data" and lineage.data[0].digest
    assert lineage.data[1] == DataRef("s3://bucket/eval", None, "v1")
    assert lineage.params == {"lr": 0.01, "shape": [3, 4]}
    assert lineage.metrics == {"auc": 0.9, "val.loss": 0.1}
    assert lineage.environment is not None and packages is not None
    assert len(calls) == 3

    store = BlobStore()
    annotations = to_annotations(lineage, packages, store.store)
    assert from_annotations(annotations, store.load) == lineage
    assert store.blobs[annotations["dev.modelreg.env.packages"]] == packages


def test_capture_lineage_without_code_or_environment() -> None:
    lineage, packages = capture_lineage(code_dir=None, capture_env=False)
    assert lineage == Lineage() and packages is None


def test_capture_lineage_refuses_reserved_annotations_before_capturing() -> None:
    with pytest.raises(InvalidInput, match="reserved"):
        capture_lineage(code_dir=None, annotations={"dev.modelreg.params": "{}"})


# ------------------------------------------------------------------------ where


def sample_dict() -> dict[str, Any]:
    lineage = full_lineage()
    return lineage_as_dict(
        Lineage(
            code=lineage.code,
            data=lineage.data,
            params={**lineage.params, "use_amp": True, "tags": ["a", "b"], "n": 1},
            metrics={**lineage.metrics, "val.auc": 0.8},
            environment=lineage.environment,
            annotations=lineage.annotations,
            description=lineage.description,
        )
    )


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("metrics.auc>=0.9", True),
        ("metrics.auc >= 0.95", False),
        ("metrics.auc<1", True),
        ("metrics.auc>0.93", False),
        ("metrics.auc<=0.93", True),
        ("metrics.val.auc=0.8", True),
        ("params.lr=0.01", True),
        ("params.lr==0.010", True),
        ("params.lr!=0.01", False),
        ("params.layers=3.0", True),
        ("params.layers=3", True),
        ("params.opt.beta~0.999", True),
        ("params.opt.beta.1=0.999", True),
        ("params.name=bert", True),
        ("params.name!=gpt", True),
        ("params.use_amp=true", True),
        ("params.n=true", False),
        ("params.x=null", True),
        ("params.tags=b", True),
        ("params.missing=1", False),
        ("params.missing!=1", True),
        ("params.missing<1", False),
        ("code.branch=main", True),
        ("code.dirty=true", True),
        ("code.branch='main'", True),
        ("data.uri~train", True),
        ("data.uri~test", False),
        ("data.uri!=data/train", False),
        ("data.version=v12", True),
        ("env.python~3.11", True),
        ("env.python>=3.9", True),
        ("environment.python<3.11.10", True),
        ("env.accelerators.torch~cu121", True),
        ("annotations.team=fraud", True),
        ("description~ünïcode", True),
        ("code.commit<b", True),
    ],
)
def test_where_matches(expr: str, expected: bool) -> None:
    assert parse_where(expr).matches(sample_dict()) is expected


def test_where_on_missing_groups() -> None:
    empty = lineage_as_dict(Lineage())
    assert not parse_where("code.branch=main").matches(empty)
    assert parse_where("code.branch!=main").matches(empty)
    assert not parse_where("env.python~3").matches(empty)


@pytest.mark.parametrize(
    "expr",
    [
        "",
        "metrics.auc",
        "metrics.auc>=",
        ">=0.9",
        "metric.auc>0.9",
        "metrics..auc=1",
        "auc=1",
        "metrics.auc =! 1",
        "metrics.auc=>1",
        ".x=1",
    ],
)
def test_malformed_where(expr: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_where(expr)
    assert "= != < <= > >= ~" in (raised.value.hint or "")


SAMPLE = sample_dict()
WHERE_LIKE = r"(params|metrics|env|code|data)\.[a-z.0-9]{0,8}[=!<>~]{1,2}.{0,10}"
EMPTY = lineage_as_dict(Lineage())


@settings(max_examples=300)
@example("data.\u00b2=1")  # a Unicode digit is not a list index
@example("params.n=1" + "0" * 5000)
@example("env.python>=3." + "9" * 5000)
@given(st.text() | st.from_regex(WHERE_LIKE))
def test_parse_where_raises_only_invalid_input(expr: str) -> None:
    try:
        condition = parse_where(expr)
    except InvalidInput:
        return
    assert isinstance(condition.matches(SAMPLE), bool)
    assert isinstance(condition.matches(EMPTY), bool)


# ------------------------------------------------------------------------- diff


def test_diff_of_equal_lineages_is_empty() -> None:
    assert diff_lineage(full_lineage(), full_lineage()) == {
        "data": [],
        "code": [],
        "params": [],
        "environment": [],
        "metrics": [],
        "description": [],
    }


def test_diff_groups_and_paths() -> None:
    a = full_lineage()
    assert a.environment is not None
    packages_digest = a.environment.packages_digest
    b = Lineage(
        code=CodeInfo(commit="b" * 40, branch="main", dirty=False),
        data=(DataRef("data/train", sha256(b"train2"), None), DataRef("s3://b/new", None, "v1")),
        params={"lr": 0.02, "layers": True, "name": "bert", "opt": {"beta": [0.9, 0.999]}},
        metrics={"auc": 0.95, "loss": 1e-5},
        environment=Environment("3.12.1", "linux/amd64", packages_digest, {}),
    )
    diff = diff_lineage(a, b)
    by_path = {c.path: c for group in diff.values() for c in group}

    assert [c.path for c in diff["params"]] == ["params.layers", "params.lr", "params.x"]
    assert by_path["params.layers"].before == 3 and by_path["params.layers"].after is True
    assert by_path["params.x"].kind == "removed" and by_path["params.x"].after is MISSING

    assert [c.path for c in diff["data"]] == [
        "data.data/train",
        "data.s3://b/new",
        "data.s3://bucket/eval.parquet",
    ]
    assert by_path["data.data/train"].after == {"digest": sha256(b"train2"), "version": None}
    assert by_path["data.s3://b/new"].kind == "added"
    assert by_path["data.s3://bucket/eval.parquet"].kind == "removed"

    assert {c.path for c in diff["code"]} == {
        "code.commit",
        "code.dirty",
        "code.diff_digest",
        "code.remote",
    }
    assert by_path["code.diff_digest"].after is None
    assert [c.path for c in diff["environment"]] == [
        "environment.accelerators.torch",
        "environment.python",
    ]
    assert by_path["environment.accelerators.torch"].kind == "removed"
    assert [(c.path, c.before, c.after, c.kind) for c in diff["metrics"]] == [
        ("metrics.auc", 0.93, 0.95, "changed")
    ]


def test_diff_against_no_code_and_unloaded_params() -> None:
    a = full_lineage()
    b = Lineage(params_blob=sha256(b"p"))
    diff = diff_lineage(a, b)
    assert all(c.kind == "removed" for c in diff["code"])
    assert {c.path for c in diff["params"]} >= {"params.lr", "params_blob"}


def test_lineage_as_dict_is_json_ready() -> None:
    lineage = full_lineage()
    data = lineage_as_dict(lineage)
    assert json.loads(json.dumps(data)) == data
    assert data["data"][1] == {"uri": "s3://bucket/eval.parquet", "digest": None, "version": "v12"}
    data["params"]["opt"]["beta"].append(1)  # a deep copy: the lineage is untouched
    assert lineage.params["opt"]["beta"] == [0.9, 0.999]


def test_the_freeze_list_matches_what_importlib_metadata_parses() -> None:
    """The plain-line header reader gives the same names and versions as the email parser."""
    import importlib.metadata

    expected: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        if dist.metadata["Name"] and dist.version:
            expected.setdefault(env_capture._normalize_name(dist.metadata["Name"]), dist.version)
    assert env_capture._installed_distributions() == expected
    assert "modelreg" in expected and "cryptography" in expected


def test_a_metadata_header_ends_at_the_first_blank_line() -> None:
    text = "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n\nName: not-this\nVersion: 9\n"
    assert env_capture._name_and_version(text) == ("demo", "1.0")
    assert env_capture._name_and_version(None) == ("", "")
