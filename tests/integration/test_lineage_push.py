"""Lineage end to end: captured on push (CLI and Python API), stored in the artifact,
answered by show / lineage / diff, and bad input refused before anything is pushed.

Real git repositories, real files, a real (metadata-only) installed distribution,
the real local store and a real registry:2.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import io
import json
import platform
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import test_lineage
from helpers.cli import Cli
from helpers.oci_state import raw_tags
from test_lineage import git

import modelreg
from modelreg import api, hashcache
from modelreg.errors import InvalidInput, NotFound
from modelreg.lineage import CodeInfo, DataRef, Environment, Lineage
from modelreg.oci import Descriptor
from modelreg.reference import parse_reference
from modelreg.store import Stores
from modelreg.store.base import read_small_blob

LAYER = "application/vnd.oci.image.layer.v1.tar"


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def small_model(root: Path, weights: str = "weights") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "weights.bin").write_text(weights * 100)
    (root / "config.json").write_text('{"hidden": 8}\n')
    return root


git_repo = test_lineage.repo  # the fixture: a committed work tree with outputs/ ignored


@pytest.fixture
def code(git_repo: Path) -> Path:
    """A git work tree on a branch, with a remote whose URL carries credentials."""
    git(git_repo, "checkout", "-q", "-b", "exp/lr-sweep")
    git(git_repo, "remote", "add", "origin", "https://alice:s3cret@git.example.com/ml/fraud.git")
    return git_repo


@pytest.fixture
def install_demo_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Make ``demo-pkg==VERSION`` an installed distribution (real metadata on sys.path)."""
    original = list(sys.path)

    def install(version: str) -> None:
        site = tmp_path / f"site-{version}"
        info = site / f"demo_pkg-{version}.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: demo-pkg\nVersion: {version}\n"
        )
        monkeypatch.setattr(sys, "path", [str(site), *original])
        importlib.invalidate_caches()

    return install


@pytest.fixture
def nothing_stored(target: str, home: Path, request: pytest.FixtureRequest) -> Callable[[], bool]:
    """True while nothing at all was written for ``target`` (no tag, no blob, no upload)."""
    ref = parse_reference(target)

    def check() -> bool:
        if ref.registry is None:
            return not (home / "oci" / ref.repository).exists()
        registry = request.getfixturevalue("registry")
        stored = registry.root / "docker" / "registry" / "v2" / "repositories" / ref.repository
        return not stored.exists() and raw_tags(target, home) == set()

    return check


def manifest_and_config(stores: Stores, reference: str) -> tuple[dict, dict]:
    ref = parse_reference(reference)
    repository = stores.repository(ref)
    _, data = repository.fetch_manifest(ref.identifier or "v1")
    manifest = json.loads(data)
    config = Descriptor.from_dict(manifest["config"], "config")
    return manifest, json.loads(read_small_blob(repository, config, 1 << 20))


def layer_file(stores: Stores, reference: str, layer: dict) -> tuple[str, bytes]:
    repository = stores.repository(parse_reference(reference))
    blob = read_small_blob(repository, Descriptor.from_dict(layer, "layer"), 64 << 20)
    with tarfile.open(fileobj=io.BytesIO(blob)) as archive:
        member = next(m for m in archive.getmembers() if m.isfile())
        extracted = archive.extractfile(member)
        assert extracted is not None
        return member.name, extracted.read()


def directory_digest(root: Path) -> str:
    """The documented formula: sha256 of '<relative path>\\0<file sha256 hex>\\n', sorted."""
    lines = sorted(
        (p.relative_to(root).as_posix().encode(), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in root.rglob("*")
        if p.is_file()
    )
    return sha256(b"".join(name + b"\0" + digest.encode() + b"\n" for name, digest in lines))


# ----- capture through the CLI --------------------------------------------------------------


def test_cli_push_records_the_whole_lineage(
    target: str, cli: Cli, code: Path, tmp_path: Path, stores: Stores
) -> None:
    (code / "train.py").write_text("print('train, tuned')\n")  # uncommitted: dirty
    data_file = tmp_path / "train.csv"
    data_file.write_text("x,y\n1,0\n")
    data_dir = tmp_path / "images"
    (data_dir / "cats").mkdir(parents=True)
    (data_dir / "cats" / "1.txt").write_text("meow")
    (data_dir / "dogs.txt").write_text("woof")
    params = tmp_path / "params.yaml"
    params.write_text("lr: 0.01\nopt:\n  beta: [0.9, 0.99]\n")
    metrics = tmp_path / "metrics.json"
    metrics.write_text('{"val": {"auc": 0.93}}')
    args = [
        "push",
        str(small_model(tmp_path / "model")),
        target,
        "--code-dir",
        str(code),
        "--data",
        str(data_file),
        "--data",
        str(data_dir),
        "--data",
        "s3://bucket/raw/events@v12",
        "--params",
        str(params),
        "-p",
        "batch=32",
        "-p",
        "opt.lr=0.1",
        "--metrics",
        str(metrics),
        "-m",
        "loss=0.25",
        "--annotation",
        "team=risk",
        "--description",
        "fraud model, nightly",
        "--json",
    ]
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    pushed = json.loads(result.stdout)
    assert (pushed["version"], pushed["tag"], pushed["existed"]) == (1, "v1", False)

    facts = json.loads(cli("lineage", f"{target}:v1", "--json").stdout)
    diff = subprocess.run(
        ["git", "-C", str(code), "diff", "HEAD", "--binary", "--full-index"],
        capture_output=True,
        check=True,
    ).stdout
    assert facts["code"] == {
        "commit": git(code, "rev-parse", "HEAD").strip(),
        "branch": "exp/lr-sweep",
        "dirty": True,
        "diff_digest": sha256(diff),
        "remote": "https://git.example.com/ml/fraud.git",
    }
    assert facts["data"] == [
        {"uri": str(data_file), "digest": sha256(data_file.read_bytes()), "version": None},
        {"uri": str(data_dir), "digest": directory_digest(data_dir), "version": None},
        {"uri": "s3://bucket/raw/events", "digest": None, "version": "v12"},
    ]
    assert facts["params"] == {"lr": 0.01, "opt": {"beta": [0.9, 0.99], "lr": 0.1}, "batch": 32}
    assert facts["metrics"] == {"val.auc": 0.93, "loss": 0.25}
    assert facts["environment"]["python"] == platform.python_version()
    assert facts["environment"]["platform"].startswith(f"{sys.platform}/")
    assert facts["annotations"] == {"team": "risk"}
    assert facts["description"] == "fraud model, nightly"
    assert facts["version"] == 1

    # in the manifest annotations and, identically, in the image config's Labels
    manifest, config = manifest_and_config(stores, f"{target}:v1")
    annotations = manifest["annotations"]
    assert config["config"]["Labels"] == annotations
    assert annotations["org.opencontainers.image.revision"] == facts["code"]["commit"]
    assert annotations["org.opencontainers.image.source"] == facts["code"]["remote"]
    assert annotations["org.opencontainers.image.description"] == "fraud model, nightly"
    assert annotations["dev.modelreg.code.dirty"] == "true"
    assert json.loads(annotations["dev.modelreg.metrics"]) == facts["metrics"]
    assert "s3cret" not in json.dumps(manifest)

    # the freeze list is a layer /.modelreg/packages.txt that the annotation names
    packages_digest = annotations["dev.modelreg.env.packages"]
    assert facts["environment"]["packages_digest"] == packages_digest
    (layer,) = [x for x in manifest["layers"] if x["digest"] == packages_digest]
    assert layer["mediaType"] == LAYER
    assert layer["annotations"]["dev.modelreg.title"] == ".modelreg/packages.txt"
    assert "org.opencontainers.image.title" not in layer["annotations"]
    name, freeze = layer_file(stores, f"{target}:v1", layer)
    assert name == ".modelreg/packages.txt"
    requests_line = f"requests=={importlib.metadata.version('requests')}"
    assert requests_line in freeze.decode().splitlines()
    shown = json.loads(cli("show", f"{target}:v1", "--json").stdout)
    packages = shown["lineage"]["environment"]["packages"]
    assert packages["requests"] == importlib.metadata.version("requests")
    assert shown["files"].keys() == {"weights.bin", "config.json"}

    # the same model with the same lineage is the same version
    again = json.loads(cli(*args).stdout)
    assert (again["version"], again["digest"], again["existed"]) == (1, pushed["digest"], True)


@pytest.mark.parametrize(
    "name, text",
    [
        ("params.json", '{"lr": 0.01, "opt": {"name": "adam"}, "layers": [64, 32]}'),
        ("params.yaml", "lr: 0.01\nopt:\n  name: adam\nlayers: [64, 32]\n"),
        ("params.toml", 'lr = 0.01\nlayers = [64, 32]\n[opt]\nname = "adam"\n'),
    ],
)
def test_params_files_of_every_format_with_overrides(
    target: str, cli: Cli, tmp_path: Path, name: str, text: str
) -> None:
    (tmp_path / name).write_text(text)
    model = str(small_model(tmp_path / "model"))
    args = ["--params", str(tmp_path / name), "-p", "opt.name=sgd", "-p", "warmup=true"]
    result = cli("push", model, target, "--no-capture", *args)
    assert result.returncode == 0, result.stderr
    params = json.loads(cli("lineage", target, "--json").stdout)["params"]
    assert params == {"lr": 0.01, "opt": {"name": "sgd"}, "layers": [64, 32], "warmup": True}


def test_every_kind_of_change_is_a_new_version_and_diff_names_it(
    target: str,
    cli: Cli,
    code: Path,
    tmp_path: Path,
    install_demo_package: Callable[[str], None],
) -> None:
    model = small_model(tmp_path / "model")
    data = tmp_path / "train.csv"
    data.write_text("x,y\n1,0\n")
    lr = ["-p", "lr=0.01"]
    install_demo_package("1.0")

    def push() -> dict:
        result = cli(
            "push", str(model), target, "--code-dir", str(code), "--data", str(data), *lr,
            "--json",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def changed(a: int, b: int) -> dict[str, list[str]]:
        result = cli("diff", f"{target}:v{a}", f"{target}:v{b}", "--json")
        assert result.returncode == 0, result.stderr
        groups = json.loads(result.stdout)
        assert set(groups) == {
            *("data", "code", "params", "environment", "metrics", "description", "files")
        }
        return {group: [c["path"] for c in items] for group, items in groups.items() if items}

    assert push()["version"] == 1
    assert push() | {"created": None} == push() | {"created": None}
    assert push()["existed"]

    data.write_text("x,y\n1,0\n0,1\n")
    assert push()["version"] == 2
    assert changed(1, 2) == {"data": [f"data.{data}"]}

    (code / "train.py").write_text("print('train harder')\n")
    git(code, "commit", "-q", "-am", "harder")
    assert push()["version"] == 3
    assert changed(2, 3) == {"code": ["code.commit"]}

    lr = ["-p", "lr=0.02"]
    assert push()["version"] == 4
    assert changed(3, 4) == {"params": ["params.lr"]}
    diff = json.loads(cli("diff", f"{target}:v3", f"{target}:v4", "--json").stdout)
    assert diff["params"] == [{"path": "params.lr", "before": 0.01, "after": 0.02}]

    install_demo_package("2.0")
    assert push()["version"] == 5
    diff = json.loads(cli("diff", f"{target}:v4", f"{target}:v5", "--json").stdout)
    assert {"path": "packages.demo-pkg", "before": "1.0", "after": "2.0"} in diff["environment"]
    assert changed(4, 5) == {"environment": ["environment.packages_digest", "packages.demo-pkg"]}

    (model / "config.json").write_text('{"hidden": 16}\n')
    assert push()["version"] == 6
    assert changed(5, 6) == {"files": ["config.json"]}

    text = cli("diff", f"{target}:v1", f"{target}:v6").stdout
    for line in [
        "data:",
        "code:",
        "params:",
        "environment:",
        "files:",
        "  params.lr: 0.01 -> 0.02",
    ]:
        assert line in text.splitlines()
    assert cli("diff", f"{target}:v6", f"{target}:v6").stdout == "no differences\n"


def test_an_unchanged_dataset_is_not_hashed_again(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "dataset"
    for name in ("a.bin", "b.bin", "sub/c.bin"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes(name.encode() * 10_000)
    hashed: list[Path] = []
    real_sha256_file = hashcache.sha256_file

    def counting(path: Path) -> str:
        hashed.append(Path(path))
        return real_sha256_file(path)

    monkeypatch.setattr(hashcache, "sha256_file", counting)

    def push(model: str) -> str:
        result = cli(
            "push", str(small_model(tmp_path / model, model)), "ds", "--data", str(data),
            "--no-capture", "--json",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        facts = json.loads(cli("lineage", "ds", "--json").stdout)
        return str(facts["data"][0]["digest"])

    def data_files_hashed() -> list[str]:
        return sorted(p.relative_to(data).as_posix() for p in hashed if data in p.parents)

    first = push("one")
    assert data_files_hashed() == ["a.bin", "b.bin", "sub/c.bin"]
    hashed.clear()
    assert push("two") == first  # another model trained on the same data
    assert data_files_hashed() == []
    hashed.clear()
    (data / "b.bin").write_bytes(b"changed")
    assert push("three") != first
    assert data_files_hashed() == ["b.bin"]


# ----- the Python API -----------------------------------------------------------------------

_TRAINING_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import modelreg

    # ... training happens here ...
    result = modelreg.push(
        sys.argv[1],
        sys.argv[2],
        params={"lr": 0.01, "epochs": 3},
        metrics={"auc": 0.91, "val": {"loss": 0.2}},
        data=["outputs/train.csv", "s3://bucket/raw@v3"],
        description="nightly",
    )
    print(json.dumps(result.to_dict()))
    """
)


def test_a_training_script_pushes_with_one_call(
    target: str, code: Path, tmp_path: Path, stores: Stores
) -> None:
    (code / "outputs").mkdir()
    (code / "outputs" / "train.csv").write_text("x,y\n1,0\n")  # ignored by git: still clean
    model = small_model(tmp_path / "model")
    result = subprocess.run(
        [sys.executable, "-c", _TRAINING_SCRIPT, str(model), target],
        cwd=code,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    pushed = json.loads(result.stdout)
    assert pushed["version"] == 1
    info = api.inspect(f"{target}@{pushed['digest']}", stores=stores)
    lineage = info.lineage
    assert lineage is not None
    assert lineage.code == CodeInfo(
        commit=git(code, "rev-parse", "HEAD").strip(),
        branch="exp/lr-sweep",
        dirty=False,
        remote="https://git.example.com/ml/fraud.git",
    )
    assert lineage.data == (
        DataRef("outputs/train.csv", sha256(b"x,y\n1,0\n")),
        DataRef("s3://bucket/raw", None, "v3"),
    )
    assert lineage.params == {"lr": 0.01, "epochs": 3}
    assert lineage.metrics == {"auc": 0.91, "val.loss": 0.2}
    assert lineage.environment is not None
    assert lineage.environment.python == platform.python_version()
    assert info.packages["requests"] == importlib.metadata.version("requests")
    assert lineage.description == "nightly"


def test_api_fields_override_a_given_lineage_one_by_one(
    target: str, tmp_path: Path, stores: Stores
) -> None:
    assert modelreg.push is api.push
    given = Lineage(
        code=CodeInfo(commit="a" * 40, branch="main"),
        data=(DataRef("s3://bucket/train", None, "v1"),),
        params={"lr": 0.1},
        metrics={"auc": 0.5},
        environment=Environment("3.11.0", "linux/amd64", accelerators={"torch": "2.3.0"}),
        description="given",
    )
    model = small_model(tmp_path / "model")
    pushed = api.push(model, target, lineage=given, metrics={"auc": 0.9}, stores=stores)
    stored = api.inspect(f"{target}@{pushed.digest}", stores=stores).lineage
    assert stored == replace(given, metrics={"auc": 0.9})

    pushed = api.push(
        model, target, lineage=given, data=["s3://bucket/train@v2"], params={"lr": 0.2},
        description="retrained", stores=stores,
    )  # fmt: skip
    stored = api.inspect(f"{target}@{pushed.digest}", stores=stores).lineage
    assert stored == replace(
        given,
        data=(DataRef("s3://bucket/train", None, "v2"),),
        params={"lr": 0.2},
        description="retrained",
    )
    assert pushed.version == 2

    bare = api.push(model, target, capture=False, params={"lr": 0.3}, stores=stores)
    stored = api.inspect(f"{target}@{bare.digest}", stores=stores).lineage
    assert stored == Lineage(params={"lr": 0.3})


# ----- queries ------------------------------------------------------------------------------


def test_show_and_lineage_answer_in_text(
    target: str, cli: Cli, code: Path, tmp_path: Path, stores: Stores
) -> None:
    data = tmp_path / "train.csv"
    data.write_text("x\n")
    pushed = api.push(
        small_model(tmp_path / "model"), target, code_dir=code, data=[str(data), "s3://b/x@v7"],
        params={"lr": 0.01}, metrics={"auc": 0.9}, aliases=["bert-base"], stores=stores,
    )  # fmt: skip
    shown = cli("show", f"{target}:bert-base").stdout.splitlines()
    assert shown[0] == f"{pushed.repository}@{pushed.digest}"
    assert "version: v1" in shown
    assert {"  weights.bin", "  config.json", "data:", "code:", "params:", "metrics:"} <= set(shown)
    assert f"  - uri={data}, digest={sha256(data.read_bytes())}" in shown
    assert "  branch: exp/lr-sweep" in shown
    assert len(shown) < 60  # the freeze list is for --json, not the terminal

    for reference in (target, f"{target}:v1", f"{target}:bert-base", pushed.reference):
        answer = cli("lineage", reference)
        assert answer.returncode == 0, answer.stderr
        lines = answer.stdout.splitlines()
        assert lines[0] == f"{pushed.repository}@{pushed.digest}  (v1)"
        assert "  - uri=s3://b/x, version=v7" in lines
        assert "  lr: 0.01" in lines


# ----- bad input ----------------------------------------------------------------------------

FIVE_MIB = 5 * 1024 * 1024


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "bad.json": '{"lr": 0.01,}',
        "bad.yaml": "lr: [0.01\nbatch: 3\n",
        "bad.toml": "lr = \n",
        "metrics.json": '{"auc": "high"}',
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return {name: tmp_path / name for name in files}


@pytest.mark.parametrize(
    "case, code, message",
    [
        pytest.param(["-m", "auc=high"], 2, "metric 'auc' is not a number: 'high'", id="metric"),
        pytest.param(["-m", "auc=nan"], 2, "metric 'auc' is not a number", id="metric-nan"),
        pytest.param(
            ["--metrics", "metrics.json"], 2, "metric 'auc' is not a number", id="metrics-file"
        ),
        pytest.param(["--params", "bad.json"], 2, "is not valid JSON at line 1", id="json"),
        pytest.param(["--params", "bad.yaml"], 2, "is not valid YAML at line", id="yaml"),
        pytest.param(["--params", "bad.toml"], 2, "is not valid TOML", id="toml"),
        pytest.param(
            ["--data", "no/such/dataset"], 3, "--data path does not exist: no/such", id="data"
        ),
        pytest.param(
            ["--annotation", "big=" + "x" * FIVE_MIB], 2, "annotations total", id="annotation-5MiB"
        ),
        pytest.param(
            ["--description", "y" * FIVE_MIB], 2, "annotations total", id="description-5MiB"
        ),
        pytest.param(["--annotation", "dev.modelreg.data=x"], 2, "is reserved", id="reserved"),
        pytest.param(["--annotation", "novalue"], 2, "is not KEY=VALUE", id="annotation-form"),
        pytest.param(["--tag", "v2"], 2, "looks like a version tag", id="alias-vN"),
        pytest.param(["--tag", "production"], 2, "is a stage", id="alias-stage"),
    ],
)
def test_bad_input_is_one_clear_error_and_nothing_is_pushed(
    target: str,
    cli: Cli,
    tmp_path: Path,
    nothing_stored: Callable[[], bool],
    case: list[str],
    code: int,
    message: str,
) -> None:
    files = _bad_files(tmp_path)
    args = [str(files[a]) if a in files else a for a in case]
    model = small_model(tmp_path / "model")
    result = cli("push", str(model), target, "--no-capture", *args)
    assert result.returncode == code, result.stdout
    assert message in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: ")
    assert len(lines[0]) < 300
    assert nothing_stored()


def test_bad_input_through_the_api_pushes_nothing(
    target: str, tmp_path: Path, stores: Stores, nothing_stored: Callable[[], bool]
) -> None:
    model = small_model(tmp_path / "model")
    with pytest.raises(InvalidInput, match="annotations total"):
        api.push(model, target, capture=False, annotations={"big": "x" * FIVE_MIB}, stores=stores)
    with pytest.raises(InvalidInput, match="metric 'auc' is not a number"):
        api.push(model, target, capture=False, metrics={"auc": "high"}, stores=stores)
    with pytest.raises(InvalidInput, match="not a finite number"):
        api.push(model, target, capture=False, metrics={"auc": float("nan")}, stores=stores)
    with pytest.raises(NotFound, match="does not exist"):
        api.push(model, target, capture=False, data=[str(tmp_path / "missing")], stores=stores)
    with pytest.raises(InvalidInput, match="not a JSON value"):
        api.push(model, target, capture=False, params={"f": object()}, stores=stores)
    assert nothing_stored()
    # and the repository is fine afterwards
    assert api.push(model, target, capture=False, stores=stores).version == 1


def test_help_shows_reference_and_data_syntax_literally(cli: Cli) -> None:
    assert "URI[@VERSION]" in cli("push", "--help").stdout
    # the reference syntax is described once, in the top-level help; commands point there
    assert "[HOST[:PORT]/]REPO[:TAG][@sha256:DIGEST]" in cli("--help").stdout
    assert "A model reference (see modelreg --help)." in cli("pull", "--help").stdout
