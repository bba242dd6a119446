"""Docker, containerd and skopeo carry models pushed by modelreg, by digest (issue 6).

Every test works on a model pushed by modelreg and names it by digest; the engines
are the real ones from integration/conftest.py (a private dockerd 20.10 over a private
containerd 1.6, skopeo, a registry:2). "Identical files" means the same names, the
same bytes and the same executable bits as the directory that was pushed.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.cli import Cli
from helpers.models import unique_repo, write_model
from helpers.processes import ServiceUnavailable, free_port, require_binary
from helpers.registry import write_htpasswd
from helpers.skips import unavailable

from modelreg import _open, api, engines
from modelreg.api import PushResult
from modelreg.errors import EngineError, IntegrityError
from modelreg.reference import parse_reference
from modelreg.store import RegistryOptions, Stores
from modelreg.store.layout import LayoutRepository
from modelreg.transfer import fetch_model_manifest

Tree = dict[str, tuple[bytes, bool]]
"""relative file name -> (content, executable)"""


def tree_of(root: Path) -> Tree:
    return {
        path.relative_to(root).as_posix(): (path.read_bytes(), bool(path.stat().st_mode & 0o111))
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def tree_of_tar(data: bytes, prefix: str) -> Tree:
    """The regular files below ``prefix/`` in a tar stream (what get_archive returns)."""
    out: Tree = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith(f"{prefix}/"):
                content = tar.extractfile(member).read()  # type: ignore[union-attr]
                out[member.name[len(prefix) + 1 :]] = (content, bool(member.mode & 0o111))
    return out


def files_in_image(client: Any, image: str, path: str) -> Tree:
    """Create (never start) a container from ``image`` and copy ``path`` out of it."""
    container = client.containers.create(image, command=["/none"], network_disabled=True)
    try:
        stream, stat = container.get_archive(path)
        return tree_of_tar(b"".join(stream), stat["name"])
    finally:
        container.remove(force=True)


@dataclass(frozen=True)
class Pushed:
    """One model pushed to the shared registry by modelreg, for the read-only tests."""

    reference: str  # 127.0.0.1:PORT/repo@sha256:…
    digest: str
    config_digest: str
    annotations: dict[str, str]
    files: Tree


@pytest.fixture(scope="module")
def pushed(registry: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    root = tmp_path_factory.mktemp("engines-pushed")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DOCKER_CONFIG", str(root / "docker-config"))
        stores = Stores(home=root / "home", options=RegistryOptions(settle=0.05))
        try:
            model = write_model(root / "model")
            result = api.push(
                model,
                f"{registry.host}/{unique_repo('engines/fraud')}",
                capture=False,
                params={"lr": 0.01},
                metrics={"auc": 0.93},
                description="engine tests",
                stores=stores,
            )
            info = api.inspect(result.reference, stores=stores)
        finally:
            stores.close()
    yield Pushed(
        reference=result.reference,
        digest=result.digest,
        config_digest=info.manifest.config.digest,
        annotations=dict(info.manifest.annotations),
        files=tree_of(model),
    )


# ------------------------------------------------------------------ dockerd


@pytest.mark.engines
def test_docker_pull_by_digest_shows_lineage_labels(dockerd: Any, pushed: Pushed) -> None:
    image = dockerd.client().images.pull(pushed.reference)
    assert image.id == pushed.config_digest  # the image ID is the config digest
    assert pushed.reference in image.attrs["RepoDigests"]
    labels = image.labels
    lineage = {k: v for k, v in pushed.annotations.items() if k.startswith("dev.modelreg.")}
    assert lineage and {k: labels.get(k) for k in lineage} == lineage
    assert json.loads(labels["dev.modelreg.metrics"]) == {"auc": 0.93}
    assert json.loads(labels["dev.modelreg.params"]) == {"lr": 0.01}
    # What a user sees with the docker CLI.
    shown = dockerd.cli(
        "inspect", "--format", "{{json .Config.Labels}}", pushed.reference, check=True
    ).stdout
    assert json.loads(json.loads(shown)["dev.modelreg.metrics"]) == {"auc": 0.93}


@pytest.mark.engines
def test_docker_create_and_copy_out_gives_identical_files(dockerd: Any, pushed: Pushed) -> None:
    client = dockerd.client()
    client.images.pull(pushed.reference)
    assert files_in_image(client, pushed.reference, "/model") == pushed.files
    assert pushed.files["serve.sh"][1] and not pushed.files["config.json"][1]


@pytest.mark.engines
def test_dockerfile_copy_from_digest_bakes_the_model(
    dockerd: Any, pushed: Pushed, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM scratch\nCOPY --from={pushed.reference} /model /opt/model\n"
    )
    tag = f"modelreg-test/baked:{os.getpid()}"
    built = build(dockerd, tmp_path, tag)
    try:
        assert files_in_image(dockerd.client(), tag, "/opt/model") == pushed.files
    finally:
        dockerd.client().images.remove(built, force=True)


def build(dockerd: Any, context: Path, tag: str, *args: str) -> str:
    """``docker build`` with the classic builder, offline; returns the image ID."""
    result = dockerd.cli(
        "build", "--network=none", "-t", tag, *args, str(context), env={"DOCKER_BUILDKIT": "0"}
    )
    assert result.returncode == 0, (
        f"docker build failed:\n{result.stdout}\n{result.stderr}\n"
        f"--- dockerd ---\n{dockerd.log_tail()}"
    )
    return str(dockerd.client().images.get(tag).id)


@pytest.mark.engines
def test_model_image_runs_only_a_mounted_static_tool(
    dockerd: Any, pushed: Pushed, tmp_path: Path
) -> None:
    """The init-container pattern of examples/kubernetes, run by a real engine.

    The model image has no shell: running anything of its own fails. Given a static
    busybox mounted from outside (the "tools" init container's emptyDir), the
    exact command of the example's "model" init container copies /model out.
    """
    busybox = static_busybox()
    example = yaml_documents(EXAMPLES / "kubernetes" / "deployment-init-container.yaml")[0]
    init = {c["name"]: c for c in example["spec"]["template"]["spec"]["initContainers"]}
    assert init["model"]["image"].startswith("registry.example.com/ml/fraud@sha256:")
    mounts = {m["name"]: m["mountPath"] for m in init["model"]["volumeMounts"]}
    out = tmp_path / "models"
    out.mkdir()

    no_shell = dockerd.cli("run", "--rm", "--network=none", pushed.reference, "/bin/sh", "-c", ":")
    assert no_shell.returncode != 0

    result = dockerd.cli(
        "run",
        "--rm",
        "--network=none",
        "-v",
        f"{busybox}:{mounts['tools']}/busybox:ro",
        "-v",
        f"{out}:{mounts['model']}",
        pushed.reference,
        *init["model"]["command"],
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert tree_of(out) == pushed.files


def static_busybox() -> str:
    try:
        path = require_binary("busybox")
    except ServiceUnavailable as exc:
        unavailable(exc, "busybox (Debian: busybox-static)")
    if has_elf_interpreter(Path(path)):
        unavailable(ServiceUnavailable(f"{path} is dynamically linked"), "busybox-static")
    return path


def has_elf_interpreter(path: Path) -> bool:
    """True for a dynamically linked ELF executable (it has a PT_INTERP program header)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2, f"{path} is not a 64-bit ELF file"
    order = "<" if data[5] == 1 else ">"
    (phoff,) = struct.unpack_from(f"{order}Q", data, 0x20)
    phentsize, phnum = struct.unpack_from(f"{order}HH", data, 0x36)
    pt_interp = 3
    return any(
        struct.unpack_from(f"{order}I", data, phoff + i * phentsize)[0] == pt_interp
        for i in range(phnum)
    )


# ------------------------------------------------------------------ containerd, skopeo


@pytest.mark.engines
def test_ctr_pull_unpacks_identical_files(containerd: Any, pushed: Pushed, tmp_path: Path) -> None:
    result = containerd.ctr("images", "pull", "--plain-http", pushed.reference)
    assert result.returncode == 0, f"ctr pull failed:\n{result.stdout}\n{result.stderr}"
    try:
        listing = containerd.ctr("images", "ls", check=True).stdout
        assert pushed.digest in listing
        mount = tmp_path / "mnt"
        mount.mkdir()
        containerd.ctr("images", "mount", pushed.reference, str(mount), check=True)
        try:
            assert tree_of(mount / "model") == pushed.files
        finally:
            containerd.ctr("images", "unmount", "--rm", str(mount), check=True)
    finally:
        containerd.ctr("images", "rm", "--sync", pushed.reference, check=True)


def test_skopeo_copy_preserves_the_digest_and_modelreg_pull_verifies(
    registry: Any, skopeo: str, stores: Stores, model_dir: Path, cli: Cli, tmp_path: Path
) -> None:
    source = api.push(
        model_dir,
        f"{registry.host}/{unique_repo()}",
        capture=False,
        metrics={"auc": 0.91},
        stores=stores,
    )
    mirror = f"{registry.host}/{unique_repo('mirror/fraud')}"
    subprocess.run(
        [
            skopeo,
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--src-no-creds",
            "--dest-no-creds",
            f"docker://{source.reference}",
            f"docker://{mirror}:copied",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    copied = api.inspect(f"{mirror}:copied", stores=stores)
    assert copied.digest == source.digest
    assert copied.lineage is not None and copied.lineage.metrics == {"auc": 0.91}

    result = cli("pull", f"{mirror}@{source.digest}", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert tree_of(tmp_path / "out") == tree_of(model_dir)


@pytest.mark.engines
def test_local_model_copied_to_a_registry_is_pullable_by_docker(
    registry: Any, dockerd: Any, stores: Stores, model_dir: Path, cli: Cli
) -> None:
    local = api.push(model_dir, unique_repo("fraud"), capture=False, stores=stores)
    remote = f"{registry.host}/{unique_repo()}"
    result = cli("copy", local.reference, remote, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["digest"] == local.digest

    image = dockerd.client().images.pull(f"{remote}@{local.digest}")
    assert f"{remote}@{local.digest}" in image.attrs["RepoDigests"]
    config = api.inspect(local.reference, stores=stores).manifest.config.digest
    assert image.id == config
    assert files_in_image(dockerd.client(), image.id, "/model") == tree_of(model_dir)


# ------------------------------------------------------------------ modelreg docker-load


@pytest.fixture
def local_model(stores: Stores, model_dir: Path) -> PushResult:
    """``model_dir`` pushed to a fresh repository of the local store."""
    return api.push(model_dir, unique_repo("fraud"), capture=False, stores=stores)


@pytest.mark.engines
def test_docker_load_of_a_registry_model_pulls_it_by_digest_via_docker_host(
    registry: Any, dockerd: Any, stores: Stores, model_dir: Path
) -> None:
    repo = f"{registry.host}/{unique_repo()}"
    pushed = api.push(model_dir, repo, capture=False, stores=stores)
    # a real subprocess: DOCKER_HOST is the only way it learns about our engine
    result = Cli.process("docker-load", f"{repo}:v1", "--json", env={"DOCKER_HOST": dockerd.host})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["method"] == "pull"
    assert out["docker_reference"] == pushed.reference
    assert out["tags"] == [f"{repo}:v1"]

    image = dockerd.client().images.get(f"{repo}:v1")
    assert image.id == out["image_id"]
    assert pushed.reference in image.attrs["RepoDigests"]


@pytest.mark.engines
def test_docker_load_of_a_local_model_streams_a_verified_archive(
    dockerd: Any, stores: Stores, model_dir: Path, cli: Cli, tmp_path: Path
) -> None:
    repo = unique_repo("fraud")
    pushed = api.push(model_dir, repo, capture=False, metrics={"auc": 0.9}, stores=stores)
    result = engines.docker_load(pushed.reference, docker_host=dockerd.host, stores=stores)

    info = api.inspect(pushed.reference, stores=stores)
    assert (result.method, result.digest) == ("load", pushed.digest)
    assert result.tags == (f"{repo}:v1",) and result.docker_reference == f"{repo}:v1"
    # Same image ID a registry pull of this digest gives: the config is unchanged.
    assert result.image_id == info.manifest.config.digest
    image = dockerd.client().images.get(f"{repo}:v1")
    assert image.id == result.image_id
    assert json.loads(image.labels["dev.modelreg.metrics"]) == {"auc": 0.9}
    assert files_in_image(dockerd.client(), f"{repo}:v1", "/model") == tree_of(model_dir)
    # The CLI: a name of the user's choosing, and what to type next.
    shown = cli("docker-load", repo, "--tag", f"{repo}-served", "--docker-host", dockerd.host)
    assert shown.returncode == 0, shown.stderr
    assert f"loaded {pushed.reference} into docker" in shown.stdout
    assert f"use it as: {repo}-served:latest" in shown.stdout
    assert dockerd.client().images.get(f"{repo}-served:latest").id == image.id
    # The image ID pins the content in a build too, as examples/docker/README.md says.
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "ARG MODEL_REF\nFROM ${MODEL_REF} AS model\nFROM scratch\n"
        "COPY --from=model /model /opt/model\n"
    )
    built = build(dockerd, context, f"{repo}-baked:v1", "--build-arg", f"MODEL_REF={image.id}")
    try:
        assert files_in_image(dockerd.client(), built, "/opt/model") == tree_of(model_dir)
    finally:
        dockerd.client().images.remove(built, force=True)


@pytest.mark.engines
def test_docker_load_archive_is_also_an_oci_archive_that_keeps_the_digest(
    containerd: Any, stores: Stores, local_model: PushResult
) -> None:
    pushed, repo = local_model, local_model.repository
    repository, identifier = _open.open_reference(stores, pushed.reference)
    _, data, manifest = fetch_model_manifest(repository, identifier)
    archive = b"".join(engines.image_archive(repository, data, manifest, [f"{repo}:v1"]))
    name = f"docker.io/library/{repo}:v1"
    result = subprocess.run(
        [*ctr_argv(containerd), "images", "import", "--no-unpack", "-"],
        input=archive,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    try:
        # containerd read index.json: the manifest is the exact one modelreg pushed.
        listing = containerd.ctr("images", "ls", check=True).stdout
        line = next(line for line in listing.splitlines() if line.startswith(f"{name} "))
        assert pushed.digest in line
    finally:
        containerd.ctr("images", "rm", "--sync", name, check=True)


def ctr_argv(containerd: Any) -> list[str]:
    return [
        containerd.ctr_binary,
        "--address",
        str(containerd.socket),
        "--namespace",
        containerd.namespace,
    ]


@pytest.mark.engines
def test_docker_load_refuses_a_corrupted_local_blob(
    dockerd: Any, stores: Stores, local_model: PushResult
) -> None:
    pushed, repo = local_model, local_model.repository
    repository = stores.repository(parse_reference(repo))
    assert isinstance(repository, LayoutRepository)
    weights = next(
        layer
        for layer in api.inspect(pushed.reference, stores=stores).manifest.layers
        if layer.annotations.get("dev.modelreg.title") == "weights.bin"
    )
    blob = repository.blob_path(weights.digest)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, one bit flipped
    blob.write_bytes(bytes(data))

    with pytest.raises(IntegrityError, match="does not match"):
        engines.docker_load(
            pushed.reference, tag=f"{repo}:bad", docker_host=dockerd.host, stores=stores
        )
    tags = {t for image in dockerd.client().images.list() for t in image.tags}
    assert f"{repo}:bad" not in tags and f"docker.io/library/{repo}:bad" not in tags


def test_docker_load_names_a_dead_engine(local_model: PushResult, cli: Cli) -> None:
    result = cli(
        "docker-load", local_model.reference, "--docker-host", "unix:///nonexistent/d.sock"
    )
    assert result.returncode == EngineError.exit_code
    assert "cannot reach the Docker engine at unix:///nonexistent/d.sock" in result.stderr
    assert "hint:" in result.stderr
    assert "('" not in result.stderr and len(result.stderr.splitlines()) == 2  # no raw tuple


def test_docker_py_stays_optional(local_model: PushResult) -> None:
    script = (
        "import sys\n"
        "import modelreg, modelreg.api, modelreg.cli, modelreg.engines\n"
        "assert 'docker' not in sys.modules, 'importing modelreg imported docker'\n"
        # from here on, an import of docker fails as if it were not installed
        "sys.modules['docker'] = None\n"
        "assert modelreg.api.inspect(sys.argv[1]).digest in sys.argv[1]\n"
        "sys.argv = ['modelreg', 'docker-load', sys.argv[1]]\n"
        "modelreg.cli.main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, local_model.reference],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr  # bad input: install the extra
    assert "the Docker SDK for Python is not installed" in result.stderr
    assert "pip install 'modelreg[docker]'" in result.stderr


@pytest.mark.engines
def test_docker_load_from_a_registry_with_login(
    make_registry: Any, dockerd: Any, stores: Stores, tmp_path: Path
) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "s3cret"})
    registry = make_registry(htpasswd=htpasswd)
    api.login(registry.host, "alice", "s3cret", stores=stores)
    model = write_model(tmp_path / "small", large=1024)
    pushed = api.push(model, f"{registry.host}/{unique_repo()}", capture=False, stores=stores)
    # The engine pulls with the credentials modelreg login stored (docker's config.json).
    result = engines.docker_load(pushed.reference, docker_host=dockerd.host, stores=stores)
    assert result.method == "pull"
    assert dockerd.client().images.get(pushed.reference).id == result.image_id


# ------------------------------------------------------------------ examples


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DIGEST_PINNED = re.compile(r"^[a-z0-9.:/_-]+(?::[\w.-]+)?@sha256:[a-f0-9]{64}$")


def yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def image_references(value: Any) -> Iterator[str]:
    """Every container image and image-volume reference in a Kubernetes object."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "image" and isinstance(item, str):
                yield item
            elif key == "image" and isinstance(item, dict) and "reference" in item:
                yield item["reference"]
            else:
                yield from image_references(item)
    elif isinstance(value, list):
        for item in value:
            yield from image_references(item)


def test_kubernetes_examples_parse_and_pin_every_image() -> None:
    manifests = sorted((EXAMPLES / "kubernetes").glob("deployment-*.yaml"))
    assert [p.name for p in manifests] == [
        "deployment-image-volume.yaml",
        "deployment-init-container.yaml",
    ]
    for path in manifests:
        (deployment,) = yaml_documents(path)
        assert deployment["kind"] == "Deployment"
        refs = list(image_references(deployment))
        assert len(refs) == 2 + ("init" in path.name)
        assert all(DIGEST_PINNED.match(ref) for ref in refs), (path.name, refs)
    (volume,) = yaml_documents(EXAMPLES / "kubernetes" / "deployment-image-volume.yaml")
    spec = volume["spec"]["template"]["spec"]
    assert spec["volumes"] == [
        {
            "name": "model",
            "image": {
                "reference": "registry.example.com/ml/fraud@sha256:" + "0" * 64,
                "pullPolicy": "IfNotPresent",
            },
        }
    ]
    (mount,) = spec["containers"][0]["volumeMounts"]
    assert (mount["name"], mount["subPath"], mount["readOnly"]) == ("model", "model", True)


def test_helm_chart_values_and_template_pin_the_model() -> None:
    chart = EXAMPLES / "kubernetes" / "helm" / "model-server"
    (meta,) = yaml_documents(chart / "Chart.yaml")
    assert meta["apiVersion"] == "v2"
    (values,) = yaml_documents(chart / "values.yaml")
    assert DIGEST_PINNED.match(values["model"]["reference"])
    assert DIGEST_PINNED.match(values["server"]["image"])
    # No helm binary here: render the few actions the template uses by hand, then parse.
    rendered = render_helm_subset((chart / "templates" / "deployment.yaml").read_text(), values)
    (deployment,) = list(yaml.safe_load_all(rendered))
    assert (
        deployment["spec"]["template"]["spec"]["volumes"][0]["image"]["reference"]
        == (values["model"]["reference"])
    )
    assert all(DIGEST_PINNED.match(ref) for ref in image_references(deployment))
    # The template refuses a tag: its guard is the regex below, checked here on both.
    guard = re.search(
        r'regexMatch "([^"]+)" \$ref', (chart / "templates" / "deployment.yaml").read_text()
    )
    assert guard is not None
    assert re.match(guard.group(1), values["model"]["reference"])
    assert not re.match(guard.group(1), "registry.example.com/ml/fraud:production")


def render_helm_subset(template: str, values: dict[str, Any]) -> str:
    """Go-template actions of the form {{ .Values.a.b }}, {{ $ref }}, {{ .Release.Name }}, |quote.

    Lines that hold only control actions ({{- if … }}, {{- fail … }}, {{- end }},
    {{- $ref := … }}) are dropped; ``$ref`` is ``.Values.model.reference``.
    """

    def lookup(expr: str) -> str:
        expr, _, pipe = (part.strip() for part in expr.partition("|"))
        if expr == "$ref":
            value: Any = values["model"]["reference"]
        elif expr == ".Release.Name":
            value = "fraud"
        elif expr.startswith(".Values."):
            value = values
            for key in expr.removeprefix(".Values.").split("."):
                value = value[key]
        else:
            raise AssertionError(f"template action not covered by the test renderer: {expr}")
        return json.dumps(str(value)) if pipe == "quote" else str(value)

    lines = []
    for line in template.splitlines():
        if re.fullmatch(r"\s*\{\{-.*\}\}\s*", line):
            continue
        lines.append(re.sub(r"\{\{\s*(.+?)\s*\}\}", lambda m: lookup(m.group(1)), line))
    return "\n".join(lines) + "\n"


def kubectl(*args: str) -> str:
    """stdout of a local (cluster-less) kubectl command; skip where kubectl is missing."""
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl not installed (its built-in kustomize renders the example)")
    return subprocess.run(
        [found, *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def test_kustomize_images_rewrites_the_image_volume_reference(tmp_path: Path) -> None:
    base = tmp_path / "kustomize"
    shutil.copytree(EXAMPLES / "kubernetes", base)
    digest = "sha256:" + "ab" * 32
    kustomization = base / "kustomization.yaml"
    # what `kustomize edit set image registry.example.com/ml/fraud@<digest>` writes
    kustomization.write_text(kustomization.read_text().replace("sha256:" + "0" * 64, digest))
    rendered = kubectl("kustomize", str(base))
    (deployment,) = list(yaml.safe_load_all(rendered))
    refs = list(image_references(deployment))
    assert f"registry.example.com/ml/fraud@{digest}" in refs
    assert all(DIGEST_PINNED.match(ref) for ref in refs)
    # Without kustomizeconfig.yaml the images transformer leaves the volume alone.
    kustomization.write_text(
        re.sub(r"configurations:\n  - kustomizeconfig.yaml\n", "", kustomization.read_text())
    )
    plain = kubectl("kustomize", str(base))
    assert f"registry.example.com/ml/fraud@{digest}" not in plain


def test_kubectl_strategic_patch_and_set_image_update_the_model(tmp_path: Path) -> None:
    ref = "registry.example.com/ml/fraud@sha256:" + "cd" * 32
    volume = {"name": "model", "image": {"reference": ref}}
    patch = json.dumps({"spec": {"template": {"spec": {"volumes": [volume]}}}})
    volume_yaml = str(EXAMPLES / "kubernetes" / "deployment-image-volume.yaml")
    patched = kubectl("patch", "--local", "-f", volume_yaml, "-p", patch, "-o", "json")
    volumes = json.loads(patched)["spec"]["template"]["spec"]["volumes"]
    assert volumes == [{"name": "model", "image": {"reference": ref, "pullPolicy": "IfNotPresent"}}]
    # The init-container variant: the model is a container image, so set image works.
    init_yaml = str(EXAMPLES / "kubernetes" / "deployment-init-container.yaml")
    updated = kubectl("set", "image", "--local", "-f", init_yaml, f"model={ref}", "-o", "json")
    init = json.loads(updated)["spec"]["template"]["spec"]["initContainers"]
    assert {c["name"]: c["image"] for c in init}["model"] == ref


@pytest.mark.engines
def test_docker_example_builds_against_a_pinned_model(
    dockerd: Any, pushed: Pushed, tmp_path: Path
) -> None:
    dockerfile = (EXAMPLES / "docker" / "Dockerfile").read_text()
    # every FROM comes from a build argument that has no default
    froms = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    assert froms == ["${MODEL_REF}", "${BASE_IMAGE}"]
    assert re.findall(r"^ARG\s+(\S+)", dockerfile, re.MULTILINE)[:2] == ["MODEL_REF", "BASE_IMAGE"]
    # Forgetting the model is an error, not an unpinned build.
    unpinned = dockerd.cli(
        "build",
        "--network=none",
        "--build-arg",
        "BASE_IMAGE=scratch",
        str(EXAMPLES / "docker"),
        env={"DOCKER_BUILDKIT": "0"},
    )
    assert unpinned.returncode != 0 and "should not be blank" in unpinned.stderr
    # No Python base image offline: the same Dockerfile on scratch proves the copy.
    tag = f"modelreg-test/example-server:{os.getpid()}"
    built = build(
        dockerd,
        EXAMPLES / "docker",
        tag,
        "--build-arg",
        f"MODEL_REF={pushed.reference}",
        "--build-arg",
        "BASE_IMAGE=scratch",
    )
    client = dockerd.client()
    try:
        assert files_in_image(client, tag, "/opt/model") == pushed.files
        server = files_in_image(client, tag, "/app")
        assert server["server.py"][0] == (EXAMPLES / "docker" / "server.py").read_bytes()
        config = client.images.get(tag).attrs["Config"]
        assert config["Labels"]["dev.modelreg.model.ref"] == pushed.reference
        assert f"MODEL_REF={pushed.reference}" in config["Env"]
    finally:
        client.images.remove(built, force=True)


def test_docker_example_server_serves_the_model(model_dir: Path) -> None:
    import urllib.request

    port = free_port()
    env = {
        **os.environ,
        "MODEL_DIR": str(model_dir),
        "MODEL_REF": "registry.example.com/ml/fraud@sha256:" + "0" * 64,
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "docker" / "server.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert "serving registry.example.com/ml/fraud@" in server.stdout.readline()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        base = f"http://127.0.0.1:{port}"
        with opener.open(f"{base}/healthz", timeout=10) as response:
            assert json.load(response) == {"status": "ok"}
        with opener.open(f"{base}/v1/model", timeout=10) as response:
            described = json.load(response)
        assert described["reference"] == env["MODEL_REF"]
        assert sorted(described["files"]) == sorted(tree_of(model_dir))
        assert described["files"]["config.json"]["size"] == len(
            (model_dir / "config.json").read_bytes()
        )
        request = urllib.request.Request(f"{base}/v1/predict", data=b'{"x": [1, 2]}', method="POST")
        with opener.open(request, timeout=10) as response:
            assert json.load(response) == {"input": {"x": [1, 2]}, "model": env["MODEL_REF"]}
    finally:
        server.terminate()
        server.wait(10)
