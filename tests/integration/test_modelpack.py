"""ModelPack and KitOps forms: published over the same blobs, read, imported; bad input."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import zstandard
from helpers.cli import Cli
from helpers.models import unique_repo
from test_push_pull import files_of

from modelreg import api
from modelreg.digest import sha256_digest
from modelreg.formats.modelpack import modelpack_tag, param_size
from modelreg.oci import IMAGE_MANIFEST, Descriptor, Manifest
from modelreg.reference import parse_reference
from modelreg.store import Stores
from modelreg.store.base import Repository

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "data" / "modelpack-config-schema.json").read_text()
)
FILEPATH = "org.cncf.model.filepath"


def validate(config: dict[str, Any]) -> None:
    """The spec's schema, formats included (createdAt is a date-time)."""
    jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(config)


def test_the_schema_check_refuses_a_created_at_that_is_no_date_time() -> None:
    config = json.loads(modelpack_config())
    config["descriptor"]["createdAt"] = "2026-12-03T07:00:00Z"
    validate(config)
    config["descriptor"]["createdAt"] = "not a date"
    with pytest.raises(jsonschema.ValidationError, match="date-time"):
        validate(config)


def repository(stores: Stores, name: str) -> Repository:
    return stores.repository(parse_reference(name))


def spec_unpack(repo: Repository, manifest: Manifest, target: Path) -> None:
    """An unpacker written from the spec alone (modctl's rules), not modelreg's pull code:
    a tar layer is extracted by its entry names, a raw layer is written to its filepath."""
    target.mkdir()
    for layer in manifest.layers:
        with repo.open_blob(layer) as raw:
            data = raw.read()
        assert sha256_digest(data) == layer.digest
        kind = layer.media_type.rsplit(".", 1)[-1]
        if kind == "raw":
            (target / layer.annotations[FILEPATH]).write_bytes(data)
            continue
        if kind == "tar+gzip":
            data = gzip.decompress(data)
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            archive.extractall(target, filter="data")


def test_push_modelpack_is_a_spec_valid_second_manifest_over_the_same_blobs(
    stores: Stores, model_dir: Path, target: str, tmp_path: Path
) -> None:
    (model_dir / "model.safetensors").write_bytes(_safetensors({"w": ("F16", [40, 50])}))
    pushed = api.push(model_dir, target, stores=stores, capture=False, modelpack=True)
    assert pushed.uploaded == pushed.size  # each layer sent once: the form adds no layer bytes
    assert pushed.modelpack is not None
    assert pushed.modelpack["tag"] == modelpack_tag(pushed.digest)
    repo = repository(stores, target)
    _, image_bytes = repo.fetch_manifest(pushed.digest)
    image = Manifest.parse(image_bytes)
    descriptor, data = repo.fetch_manifest(pushed.modelpack["tag"])
    assert descriptor.digest == pushed.modelpack["digest"]
    form = Manifest.parse(data)
    assert form.artifact_type == "application/vnd.cncf.model.manifest.v1+json"
    assert form.config.media_type == "application/vnd.cncf.model.config.v1+json"
    assert form.subject is not None and form.subject.digest == pushed.digest
    image_blobs = {layer.digest for layer in image.layers}
    assert {layer.digest for layer in form.layers} <= image_blobs
    assert all("org.opencontainers.image.title" not in layer.annotations for layer in form.layers)
    media = {layer.annotations[FILEPATH]: layer.media_type for layer in form.layers}
    assert media["model/weights.bin"] == "application/vnd.cncf.model.weight.v1.tar"
    assert media["model"] == "application/vnd.cncf.model.weight.v1.tar"  # holds the safetensors
    with repo.open_blob(form.config) as raw:
        config = json.loads(raw.read())
    validate(config)
    assert config["descriptor"]["version"] == f"v{pushed.version}"
    assert config["config"] == {"format": "safetensors", "precision": "float16", "paramSize": "2K"}
    assert config["modelfs"]["diffIds"] == [layer.digest for layer in form.layers]
    spec_unpack(repo, form, tmp_path / "spec")
    assert files_of(tmp_path / "spec" / "model") == files_of(model_dir)
    # modelreg's own reader lays the files out as the image pull does
    pulled = api.pull(f"{target}:{pushed.modelpack['tag']}", tmp_path / "ours", stores=stores)
    assert files_of(pulled.path) == files_of(model_dir)
    # inspect and show list those files (through its image), not the layers' filepaths
    shown = api.inspect(f"{target}:{pushed.modelpack['tag']}", stores=stores)
    assert set(shown.files) == set(files_of(model_dir))
    # a form naming that image as subject over other blobs gets no say from the image
    other = _tar({"other.bin": b"o"})
    digest = sha256_digest(other)
    repo.push_blob([other], len(other), digest)
    forged = Manifest(
        form.config,
        (Descriptor("application/vnd.cncf.model.weight.v1.tar", digest, len(other)),),
        artifact_type=form.artifact_type,
        subject=form.subject,
    )
    repo.push_manifest(forged.to_bytes(), IMAGE_MANIFEST, ["forged"])
    assert set(api.inspect(f"{target}:forged", stores=stores).files) == {digest[:19]}


def test_config_format_precision_and_size_are_detected(stores: Stores, tmp_path: Path) -> None:
    model = tmp_path / "st"
    model.mkdir()
    (model / "model.safetensors").write_bytes(
        _safetensors({"a": ("BF16", [1000, 1200]), "b": ("BF16", [1000])})
    )
    (model / "README.md").write_text("# a model\n")
    target = unique_repo("mp")
    pushed = api.push(
        model,
        target,
        stores=stores,
        capture=False,
        modelpack=True,
        annotations={
            "org.opencontainers.image.authors": "ada@example.org, bob@example.org",
            "org.opencontainers.image.licenses": "Apache-2.0",
        },
        description="a test model",
    )
    assert pushed.modelpack is not None
    repo = repository(stores, target)
    _, data = repo.fetch_manifest(pushed.modelpack["digest"])
    with repo.open_blob(Manifest.parse(data).config) as raw:
        config = json.loads(raw.read())
    validate(config)
    assert config["config"] == {
        "format": "safetensors",
        "precision": "bfloat16",
        "paramSize": "1.2M",
    }
    assert config["descriptor"]["authors"] == ["ada@example.org", "bob@example.org"]
    assert config["descriptor"]["licenses"] == ["Apache-2.0"]
    assert config["descriptor"]["description"] == "a test model"
    assert config["descriptor"]["name"] == target.rsplit("/", 1)[-1]


@pytest.mark.parametrize(
    ("count", "text"), [(6_700_000_000, "6.7B"), (100_000_000, "100M"), (1234, "1.2K")]
)
def test_param_size_follows_config_md(count: int, text: str) -> None:
    assert param_size(count) == text


def test_form_added_later_is_idempotent_and_gc_copy_mirror_carry_it(
    stores: Stores, model_dir: Path, registry: Any, cli: Cli
) -> None:
    source = f"{registry.host}/{unique_repo()}"
    pushed = api.push(model_dir, source, stores=stores, capture=False)
    first = api.add_modelpack(f"{source}:v1", stores=stores)
    again = cli("modelpack", f"{source}@{pushed.digest}", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == first
    tag = modelpack_tag(pushed.digest)
    copied = f"{registry.host}/{unique_repo()}"
    api.copy(f"{source}:v1", copied, stores=stores)
    assert repository(stores, copied).resolve(tag) is not None
    mirrored = f"{registry.host}/{unique_repo()}"
    api.mirror(source, mirrored, stores=stores)
    assert repository(stores, mirrored).resolve(tag).digest == first["digest"]  # type: ignore[union-attr]
    # gc keeps the form while the version lives, and deletes it with the version
    (model_dir / "config.json").write_text('{"hidden": 1024}\n')
    api.push(model_dir, source, stores=stores, capture=False, modelpack=True)
    from modelreg.retention import RetentionRules

    api.gc(source, RetentionRules(keep_last=2), stores=stores)
    assert repository(stores, source).resolve(tag) is not None
    api.gc(source, RetentionRules(keep_last=1), stores=stores)
    assert repository(stores, source).resolve(tag) is None
    out = cli("push", str(model_dir), source, "--modelpack", "--json", "--no-capture")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["modelpack"]["tag"].endswith(".modelpack")


# ----- hand-built artifacts of other tools --------------------------------------------


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


def _safetensors(tensors: dict[str, tuple[str, list[int]]]) -> bytes:
    header = {
        name: {"dtype": dtype, "shape": shape, "data_offsets": [0, 0]}
        for name, (dtype, shape) in tensors.items()
    }
    body = json.dumps(header).encode()
    return len(body).to_bytes(8, "little") + body


def push_artifact(
    repo: Repository,
    config_type: str,
    config: bytes,
    layers: list[tuple[str, bytes, dict[str, str]]],
    *,
    artifact_type: str | None = None,
    tag: str = "latest",
) -> str:
    descriptors = []
    for media_type, blob, notes in [(config_type, config, {}), *layers]:
        digest = sha256_digest(blob)
        if not repo.has_blob(digest):
            repo.push_blob([blob], len(blob), digest)
        descriptors.append(Descriptor(media_type, digest, len(blob), notes))
    manifest = Manifest(descriptors[0], tuple(descriptors[1:]), artifact_type=artifact_type)
    return repo.push_manifest(manifest.to_bytes(), IMAGE_MANIFEST, [tag]).digest


def modelpack_config(ns: str = "cncf", **descriptor: Any) -> bytes:
    return json.dumps(
        {
            "descriptor": {"name": "tiny", "version": "1.0", **descriptor},
            "config": {"format": "safetensors"},
            "modelfs": {"type": "layers", "diffIds": ["sha256:" + "0" * 64]},
        }
    ).encode()


@pytest.mark.parametrize("ns", ["cncf", "cnai"])
def test_read_hand_built_modelpack(
    stores: Stores, registry: Any, tmp_path: Path, ns: str, cli: Cli
) -> None:
    name = f"{registry.host}/{unique_repo()}"
    repo = repository(stores, name)
    weights = b"W" * 5000
    config = modelpack_config(authors=["ada"], licenses=["MIT"])
    push_artifact(
        repo,
        f"application/vnd.{ns}.model.config.v1+json",
        config,
        [
            (
                f"application/vnd.{ns}.model.weight.v1.raw",
                weights,
                {f"org.{ns}.model.filepath": "w/model.safetensors"},
            ),
            (
                f"application/vnd.{ns}.model.doc.v1.tar+gzip",
                gzip.compress(_tar({"README.md": b"# hi\n"})),
                {},
            ),
            (
                f"application/vnd.{ns}.model.weight.config.v1.tar+zstd",
                zstandard.ZstdCompressor().compress(_tar({"cfg/config.json": b"{}"})),
                {},
            ),
            (f"application/vnd.{ns}.model.code.v1.tar", _tar({"run.py": b"print(1)\n"}), {}),
            (  # modctl's raw codec keeps a file's mode in its metadata, and restores it
                f"application/vnd.{ns}.model.code.v1.raw",
                b"#!/bin/sh\n",
                {
                    f"org.{ns}.model.filepath": "bin/serve.sh",
                    f"org.{ns}.model.file.metadata+json": json.dumps({"mode": 0o755}),
                },
            ),
        ],
        artifact_type=f"application/vnd.{ns}.model.manifest.v1+json",
    )
    pulled = api.pull(f"{name}:latest", tmp_path / "out", stores=stores)
    assert files_of(pulled.path) == {
        "w/model.safetensors": weights,
        "README.md": b"# hi\n",
        "cfg/config.json": b"{}",
        "run.py": b"print(1)\n",
        "bin/serve.sh": b"#!/bin/sh\n",
    }
    assert (pulled.path / "bin/serve.sh").stat().st_mode & 0o777 == 0o755
    assert (pulled.path / "w/model.safetensors").stat().st_mode & 0o777 == 0o644
    info = api.inspect(f"{name}:latest", stores=stores)
    assert info.lineage is not None
    facts = info.lineage.annotations
    assert facts["org.opencontainers.image.title"] == "tiny"
    assert facts["org.opencontainers.image.version"] == "1.0"
    assert facts["org.opencontainers.image.authors"] == "ada"
    assert facts["org.opencontainers.image.licenses"] == "MIT"
    assert facts["org.cncf.model.format"] == "safetensors"
    shown = cli("show", f"{name}:latest")
    assert shown.returncode == 0 and "tiny" in shown.stdout, shown.stderr
    # import: an image-form version with the same files, idempotent
    dest = f"{registry.host}/{unique_repo()}"
    first = cli("import", f"{name}:latest", dest, "--json")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["version"] == 1 and result["form"] == "modelpack"
    again = json.loads(cli("import", f"{name}:latest", dest, "--json").stdout)
    assert again["digest"] == result["digest"] and again["existed"]
    api.pull(f"{dest}:v1", tmp_path / "imported", stores=stores)
    assert files_of(tmp_path / "imported") == files_of(pulled.path)
    lineage = api.inspect(f"{dest}:v1", stores=stores).lineage
    assert lineage is not None and lineage.annotations["org.opencontainers.image.title"] == "tiny"


KITFILE = {
    "manifestVersion": "1.0.0",
    "package": {"name": "sentiment", "version": "2.1", "authors": ["kit"], "license": "Apache-2.0"},
    "model": {"name": "clf", "path": "./model.joblib", "framework": "scikit-learn"},
    "code": [{"path": "./train.py"}],
}


def test_read_and_import_a_modelkit(stores: Stores, registry: Any, tmp_path: Path) -> None:
    name = f"{registry.host}/{unique_repo()}"
    repo = repository(stores, name)
    push_artifact(
        repo,
        "application/vnd.kitops.modelkit.config.v1+json",
        json.dumps(KITFILE).encode(),
        [
            (
                "application/vnd.kitops.modelkit.model.v1.tar",
                _tar({"model.joblib": b"M" * 300}),
                {},
            ),
            (
                "application/vnd.kitops.modelkit.code.v1.tar+gzip",
                gzip.compress(_tar({"train.py": b"fit()\n"})),
                {},
            ),
        ],
    )
    pulled = api.pull(f"{name}:latest", tmp_path / "out", stores=stores)
    assert files_of(pulled.path) == {"model.joblib": b"M" * 300, "train.py": b"fit()\n"}
    info = api.inspect(f"{name}:latest", stores=stores)
    assert info.lineage is not None
    assert info.lineage.annotations["ml.kitops.model.framework"] == "scikit-learn"
    assert json.loads(info.lineage.annotations["ml.kitops.package"])["name"] == "sentiment"
    from modelreg.importing import import_oci

    dest = unique_repo("kit")
    first = import_oci(f"{name}:latest", dest, stores=stores)
    again = import_oci(f"{name}:latest", dest, stores=stores)
    assert (first.version, again.version, again.existed) == (1, 1, True)


def test_raw_modelkit_layers_and_a_dot_filepath_are_read_as_kit_writes_them(
    stores: Stores, registry: Any, tmp_path: Path, cli: Cli
) -> None:
    """Current ``kit pack``: raw layers (plain or gzip) at their filepath with their file
    metadata, an MCP bundle kept verbatim, and ``filepath: .`` on a tar of the context."""
    kit = "application/vnd.kitops.modelkit"
    name = f"{registry.host}/{unique_repo()}"
    executable = {"org.cncf.model.file.metadata+json": json.dumps({"mode": 0o755})}
    push_artifact(
        repository(stores, name),
        f"{kit}.config.v1+json",
        json.dumps(KITFILE).encode(),
        [
            (f"{kit}.model.v1.raw", b"M" * 300, {FILEPATH: "model.joblib"}),
            (
                f"{kit}.code.v1.raw+gzip",
                gzip.compress(b"#!/bin/sh\n"),
                {FILEPATH: "run.sh", **executable},
            ),
            (f"{kit}.mcpb.v1.raw", b"PK\x05\x06" + bytes(18), {FILEPATH: "tools/server.mcpb"}),
            (f"{kit}.docs.v1.tar", _tar({"README.md": b"# hi\n"}), {FILEPATH: "."}),
        ],
    )
    pulled = api.pull(f"{name}:latest", tmp_path / "out", stores=stores)
    assert files_of(pulled.path) == {
        "model.joblib": b"M" * 300,
        "run.sh": b"#!/bin/sh\n",
        "tools/server.mcpb": b"PK\x05\x06" + bytes(18),
        "README.md": b"# hi\n",
    }
    assert (pulled.path / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (pulled.path / "model.joblib").stat().st_mode & 0o777 == 0o644
    dest = f"{registry.host}/{unique_repo('kit-raw')}"
    assert cli("import", f"{name}:latest", dest).returncode == 0
    again = api.pull(f"{dest}:v1", tmp_path / "imported", stores=stores)
    assert files_of(again.path) == files_of(pulled.path)


def test_a_modelkit_whose_model_is_another_modelkit_is_named_as_such(
    stores: Stores, registry: Any, cli: Cli, tmp_path: Path
) -> None:
    """``kit pack`` writes no model layer when the Kitfile's model is a reference."""
    name = f"{registry.host}/{unique_repo()}"
    parent = f"{registry.host}/base/llm:v1"
    kitfile = {**KITFILE, "model": {"name": "llm", "path": parent}}
    push_artifact(
        repository(stores, name),
        "application/vnd.kitops.modelkit.config.v1+json",
        json.dumps(kitfile).encode(),
        [("application/vnd.kitops.modelkit.code.v1.tar", _tar({"train.py": b"x"}), {})],
    )
    out = cli("pull", f"{name}:latest", str(tmp_path / "out"))
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert "another ModelKit" in lines[0] and parent in lines[1], lines
    assert not (tmp_path / "out").exists()


def test_import_of_our_own_form_reuses_the_blobs(
    stores: Stores, model_dir: Path, registry: Any
) -> None:
    from modelreg.importing import import_oci

    source = f"{registry.host}/{unique_repo()}"
    pushed = api.push(model_dir, source, stores=stores, capture=False, modelpack=True)
    assert pushed.modelpack is not None
    dest = f"{registry.host}/{unique_repo()}"
    imported = import_oci(f"{source}:{pushed.modelpack['tag']}", dest, stores=stores)
    assert imported.digest == pushed.digest


# ----- bad input: one line, an exit code, nothing written ------------------------------


def _bad(
    stores: Stores,
    registry: Any,
    layers: list[tuple[str, bytes, dict[str, str]]],
    kit: bool = False,
) -> str:
    name = f"{registry.host}/{unique_repo()}"
    repo = repository(stores, name)
    if kit:
        push_artifact(
            repo,
            "application/vnd.kitops.modelkit.config.v1+json",
            json.dumps(KITFILE).encode(),
            layers,
        )
    else:
        push_artifact(
            repo,
            "application/vnd.cncf.model.config.v1+json",
            modelpack_config(),
            layers,
            artifact_type="application/vnd.cncf.model.manifest.v1+json",
        )
    return f"{name}:latest"


RAW = "application/vnd.cncf.model.weight.v1.raw"


@pytest.mark.parametrize(
    ("layers", "kit", "message"),
    [
        ([(RAW, b"x", {FILEPATH: "../x"})], False, "escapes the model directory"),
        ([], False, "holds no files"),
        ([(RAW, b"x", {FILEPATH: "/etc/x"})], False, "is not a relative path"),
        ([(RAW, b"x", {})], False, "no org.cncf.model.filepath"),
        (
            [("application/vnd.cncf.model.secret.v1.tar", _tar({"a": b"1"}), {})],
            False,
            "does not define",
        ),
        (
            [("application/vnd.cncf.model.weight.v1.tar", _tar({"../evil": b"1"}), {})],
            False,
            "escapes",
        ),
        (
            # labelled gzip, but the stream's magic number decides (as containerd does):
            # read as a tar, it is not one
            [("application/vnd.cncf.model.weight.v1.tar+gzip", b"not gzip", {})],
            False,
            "not a valid tar archive",
        ),
        (
            [("application/vnd.kitops.modelkit.code.v1.tar", _tar({"train.py": b"1"}), {})],
            True,
            "no model layer",
        ),
        (
            [("application/vnd.kitops.modelkit.model.v1.tar", _tar({"/abs": b"1"}), {})],
            True,
            "unsafe path",
        ),
    ],
)
def test_bad_artifacts_are_refused_whole(
    stores: Stores,
    registry: Any,
    cli: Cli,
    tmp_path: Path,
    layers: list[tuple[str, bytes, dict[str, str]]],
    kit: bool,
    message: str,
) -> None:
    reference = _bad(stores, registry, layers, kit)
    out = cli("pull", reference, str(tmp_path / "out"))
    assert out.returncode == 6, out.stderr
    lines = out.stderr.strip().splitlines()
    assert message in lines[0] and lines[-1].startswith("hint:")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    dest = unique_repo("bad")
    imported = cli("import", reference, dest)
    assert imported.returncode == 6 and message in imported.stderr
    assert cli("versions", dest).returncode in (0, 3)
    assert not api.versions(dest, stores=stores) if (stores.home / "store").exists() else True


def test_import_refuses_a_modelreg_image(stores: Stores, model_dir: Path, cli: Cli) -> None:
    target = unique_repo("img")
    api.push(model_dir, target, stores=stores, capture=False)
    out = cli("import", f"{target}:v1", unique_repo("dest"))
    assert out.returncode == 2 and "copy" in out.stderr


def test_resolver_fetches_a_promoted_modelkit(
    stores: Stores, keys: Path, registry: Any, tmp_path: Path
) -> None:
    from modelreg import Resolver
    from modelreg.policy import policy_from_keys
    from modelreg.signing import load_signing_key

    name = f"{registry.host}/{unique_repo()}"
    push_artifact(
        repository(stores, name),
        "application/vnd.kitops.modelkit.config.v1+json",
        json.dumps(KITFILE).encode(),
        [
            (
                "application/vnd.kitops.modelkit.model.v1.tar+zstd",
                zstandard.ZstdCompressor().compress(_tar({"model.joblib": b"J" * 999})),
                {},
            )
        ],
    )
    result = api.copy(f"{name}:latest", f"{registry.host}/{unique_repo()}", stores=stores)
    copied, digest = result.repository, result.digest
    policy = policy_from_keys([keys / "alice.pub"])
    api.promote(
        f"{copied}@{digest}",
        "production",
        load_signing_key(keys / "alice.key"),
        policy=policy,
        stores=stores,
    )
    resolver = Resolver(trust=[keys / "alice.pub"], cache_dir=tmp_path / "cache", stores=stores)
    model = resolver.resolve(copied)
    assert model.digest == digest
    assert files_of(resolver.fetch(model)) == {"model.joblib": b"J" * 999}


def test_hostile_but_legal_names_round_trip_through_pull_and_import(
    stores: Stores, registry: Any, tmp_path: Path
) -> None:
    from modelreg.importing import import_oci

    names = {
        "weird name ; rm -rf.txt": b"1",
        "ünïcode/ファイル.bin": b"2",
        "-rf": b"3",
        ".modelreg/not-lineage": b"4",
        "model/inner.txt": b"5",
    }
    name = f"{registry.host}/{unique_repo()}"
    push_artifact(
        repository(stores, name),
        "application/vnd.cncf.model.config.v1+json",
        modelpack_config(),
        [
            ("application/vnd.cncf.model.weight.v1.tar", _tar(names), {}),
            (RAW, b"6", {FILEPATH: "./sub dir/raw file"}),
        ],
        artifact_type="application/vnd.cncf.model.manifest.v1+json",
    )
    expected = {**names, "sub dir/raw file": b"6"}
    pulled = api.pull(f"{name}:latest", tmp_path / "out", stores=stores)
    assert files_of(pulled.path) == expected
    imported = import_oci(f"{name}:latest", unique_repo("hostile"), stores=stores)
    out = api.pull(f"{imported.repository}@{imported.digest}", tmp_path / "again", stores=stores)
    assert files_of(out.path) == expected


def test_a_modelkit_whose_layer_blob_is_missing_writes_nothing(
    hostile: Any, cli: Cli, tmp_path: Path
) -> None:
    """registry:2 refuses such a manifest; a hostile or damaged registry serves one."""
    repo = "ml/kit"
    config = json.dumps(KITFILE).encode()
    model = _tar({"model.joblib": b"M" * 100})
    missing = _tar({"data.csv": b"a,b\n"})
    descriptors = [
        Descriptor(
            "application/vnd.kitops.modelkit.config.v1+json",
            hostile.add_blob(repo, config),
            len(config),
        ),
        Descriptor(
            "application/vnd.kitops.modelkit.model.v1.tar",
            hostile.add_blob(repo, model),
            len(model),
        ),
        Descriptor(
            "application/vnd.kitops.modelkit.dataset.v1.tar", sha256_digest(missing), len(missing)
        ),
    ]
    manifest = Manifest(descriptors[0], tuple(descriptors[1:]))
    hostile.add_manifest(repo, manifest.to_bytes(), tags=["latest"])
    reference = f"{hostile.host}/{repo}:latest"
    out = cli("pull", reference, str(tmp_path / "out"))
    assert out.returncode == 3, out.stderr
    assert out.stderr.startswith("error: ") and "hint:" in out.stderr
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    imported = cli("import", reference, "kit-dest")
    assert imported.returncode == 3, imported.stderr
    assert cli("versions", "kit-dest").returncode == 3
