"""``modelreg import`` of a ModelPack or ModelKit keeps its tar layers as the same blobs.

Every claim is checked against the registry itself (its manifests over HTTP, the
requests a fault proxy saw), not against what modelreg reports; "the same files"
means pulling the import writes exactly what pulling the source writes.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import zstandard
from helpers.cli import Cli
from helpers.engines import podman_base
from helpers.fault_proxy import FaultProxy
from helpers.models import unique_repo
from helpers.skips import binary_or_skip
from helpers.tars import CRAFTED
from test_modelpack import FILEPATH, KITFILE, modelpack_config, push_artifact, repository
from test_push_pull import files_of

from modelreg import api
from modelreg.compression import LAYER_TAR_GZIP, LAYER_TAR_ZSTD
from modelreg.digest import sha256_digest
from modelreg.importing import import_oci
from modelreg.oci import IMAGE_MANIFEST, LAYER_TAR
from modelreg.store import Stores

NS = "application/vnd.cncf.model"
KIT = "application/vnd.kitops.modelkit"


def tar_of(files: dict[str, bytes], **fields: Any) -> bytes:
    """A tar as other tools write it: PAX, entries at their own paths, directories listed."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        dirs = sorted({str(Path(n).parent) for n in files} - {"."})
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            for key, value in fields.items():
                setattr(info, key, value)
            archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


def registry_manifest(host: str, name: str, reference: str) -> dict[str, Any]:
    """The manifest as the registry serves it (not as modelreg reports it)."""
    request = urllib.request.Request(
        f"http://{host}/v2/{name}/manifests/{reference}", headers={"Accept": IMAGE_MANIFEST}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body: dict[str, Any] = json.loads(response.read())
    return body


def registry_blob(host: str, name: str, digest: str) -> bytes:
    with urllib.request.urlopen(f"http://{host}/v2/{name}/blobs/{digest}", timeout=30) as r:
        data: bytes = r.read()
    return data


def registry_tags(host: str, name: str) -> list[str] | None:
    try:
        with urllib.request.urlopen(f"http://{host}/v2/{name}/tags/list", timeout=30) as r:
            return list(json.loads(r.read()).get("tags") or [])
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        return None


def modelpack_source(stores: Stores, host: str, zstd: bool = True) -> tuple[str, dict[str, bytes]]:
    """A hand-built ModelPack: tar, tar+gzip, tar+zstd layers and a raw one; its tar blobs."""
    name = f"{host}/{unique_repo('mp')}"
    config_type, config = f"{NS}.weight.config.v1.tar", tar_of({"config.json": b'{"a": 1}'})
    if zstd:
        config_type, config = config_type + "+zstd", zstandard.ZstdCompressor().compress(config)
    tars = {
        f"{NS}.weight.v1.tar": tar_of({"weights/model.safetensors": b"W" * 70000}),
        f"{NS}.doc.v1.tar+gzip": gzip.compress(tar_of({"README.md": b"# tiny\n"}), mtime=0),
        config_type: config,
    }
    push_artifact(
        repository(stores, name),
        f"{NS}.config.v1+json",
        modelpack_config(),
        [
            *((media_type, blob, {}) for media_type, blob in tars.items()),
            (f"{NS}.code.v1.raw", b"print('raw')\n", {FILEPATH: "src/run.py"}),
        ],
        artifact_type=f"{NS}.manifest.v1+json",
    )
    return name, tars


def uncompressed(blob: bytes) -> bytes:
    if blob[:2] == b"\x1f\x8b":
        return gzip.decompress(blob)
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().decompress(blob, max_output_size=1 << 24)
    return blob


def test_import_lists_the_sources_tar_blobs_and_uploads_none_of_them(
    stores: Stores, registry: Any, proxy: FaultProxy, tmp_path: Path
) -> None:
    source, tars = modelpack_source(stores, registry.host)
    requests: list[tuple[str, str]] = []

    def note(method: str, path: str, _: int) -> None:
        requests.append((method, path))

    proxy.rules.append(note)
    src_name = source.split("/", 1)[1]
    dest_name = unique_repo("imported")
    imported = import_oci(
        f"{proxy.host}/{src_name}:latest", f"{proxy.host}/{dest_name}", stores=stores
    )
    assert imported.reused_layers == 3 and len(imported.repacked) == 1
    # the registry's manifest: the three tar blobs as they are, with image layer types
    manifest = registry_manifest(registry.host, dest_name, imported.digest)
    layers = manifest["layers"]
    by_digest = {sha256_digest(blob): blob for blob in tars.values()}
    assert [layer["digest"] for layer in layers[:3]] == list(by_digest)
    assert [layer["mediaType"] for layer in layers[:3]] == [
        LAYER_TAR,
        LAYER_TAR_GZIP,
        LAYER_TAR_ZSTD,
    ]
    assert all(layer["annotations"]["dev.modelreg.root"] == "/" for layer in layers[:3])
    # the raw file was packed under /model (a new blob): engines need tars
    assert layers[3]["mediaType"] == LAYER_TAR and layers[3]["digest"] not in by_digest
    config = json.loads(registry_blob(registry.host, dest_name, manifest["config"]["digest"]))
    diff_ids = config["rootfs"]["diff_ids"]
    assert diff_ids[:3] == [sha256_digest(uncompressed(blob)) for blob in tars.values()]
    assert diff_ids[3:] == [layer["digest"] for layer in layers[3:]]
    # no source blob went over the wire again: they were mounted
    uploaded = [path for method, path in requests if method == "PUT" and "/blobs/uploads/" in path]
    hexes = {d.split(":")[1] for d in by_digest}  # the query has them URL-encoded
    assert uploaded and not [path for path in uploaded if any(h in path for h in hexes)]
    mounts = [path for method, path in requests if method == "POST" and "mount=" in path]
    assert {h for h in hexes if any(h in path for path in mounts)} == hexes
    # the same files as pulling the source; listed by inspect
    pulled_source = api.pull(source + ":latest", tmp_path / "source", stores=stores)
    pulled_import = api.pull(
        f"{registry.host}/{dest_name}@{imported.digest}", tmp_path / "import", stores=stores
    )
    assert files_of(pulled_import.path) == files_of(pulled_source.path)
    assert set(files_of(pulled_import.path)) == {
        "weights/model.safetensors",
        "README.md",
        "config.json",
        "src/run.py",
    }
    info = api.inspect(f"{registry.host}/{dest_name}@{imported.digest}", stores=stores)
    assert set(info.files) == set(files_of(pulled_source.path))
    assert info.files["README.md"] == sha256_digest(b"# tiny\n")
    # idempotent: the same digest, nothing new
    requests.clear()
    again = import_oci(
        f"{proxy.host}/{src_name}:latest", f"{proxy.host}/{dest_name}", stores=stores
    )
    assert (again.digest, again.version, again.existed) == (imported.digest, 1, True)
    assert not [(m, p) for m, p in requests if m in ("PUT", "PATCH")]


def test_a_modelkit_imports_over_its_blobs_and_selective_pull_and_resolver_read_it(
    stores: Stores, registry: Any, keys: Path, tmp_path: Path, cli: Cli
) -> None:
    from modelreg import Resolver
    from modelreg.policy import policy_from_keys
    from modelreg.signing import load_signing_key

    name = f"{registry.host}/{unique_repo('kit')}"
    blobs = [
        (f"{KIT}.model.v1.tar", tar_of({"model.joblib": b"M" * 3000})),
        (f"{KIT}.dataset.v1.tar+gzip", gzip.compress(tar_of({"data/train.csv": b"a,b\n1,2\n"}))),
        (
            f"{KIT}.code.v1.tar+zstd",
            zstandard.ZstdCompressor().compress(tar_of({"train.py": b"fit()\n"})),
        ),
    ]
    push_artifact(
        repository(stores, name),
        f"{KIT}.config.v1+json",
        json.dumps({**KITFILE, "datasets": [{"path": "./data"}]}).encode(),
        [(media_type, blob, {}) for media_type, blob in blobs],
    )
    dest = f"{registry.host}/{unique_repo('kit-imported')}"
    out = cli("import", f"{name}:latest", dest, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["reused_layers"] == 3 and result["repacked"] == []
    manifest = registry_manifest(registry.host, dest.split("/", 1)[1], result["digest"])
    assert [layer["digest"] for layer in manifest["layers"][:3]] == [
        sha256_digest(blob) for _, blob in blobs
    ]
    again = cli("import", f"{name}:latest", dest)
    assert again.returncode == 0 and "already holds" in again.stdout + again.stderr
    assert "3 layer(s) of the source kept as the same blobs" in again.stdout + again.stderr
    source_files = files_of(api.pull(f"{name}:latest", tmp_path / "src", stores=stores).path)
    assert set(source_files) == {"model.joblib", "data/train.csv", "train.py"}
    selective = cli("pull", f"{dest}:v1", str(tmp_path / "some"), "--include", "data/*")
    assert selective.returncode == 0, selective.stderr
    assert files_of(tmp_path / "some") == {"data/train.csv": b"a,b\n1,2\n"}
    shown = cli("show", f"{dest}:v1")
    assert shown.returncode == 0 and "data/train.csv" in shown.stdout, shown.stdout
    from modelreg.ui.views import usage_lines

    where = usage_lines(dest, api.inspect(f"{dest}:v1", stores=stores))["files in a container"]
    assert "own paths" in where and "/data/train.csv" in where, where
    refused = cli("modelpack", f"{dest}:v1")
    assert refused.returncode == 2 and "imported over another tool's layers" in refused.stderr
    policy = policy_from_keys([keys / "alice.pub"])
    api.promote(
        f"{dest}@{result['digest']}",
        "production",
        load_signing_key(keys / "alice.key"),
        policy=policy,
        stores=stores,
    )
    resolver = Resolver(trust=[keys / "alice.pub"], cache_dir=tmp_path / "cache", stores=stores)
    assert files_of(resolver.fetch(resolver.resolve(dest))) == source_files


def test_import_to_another_registry_copies_the_blobs_as_they_are(
    stores: Stores, registry: Any, make_registry: Any, tmp_path: Path
) -> None:
    source, tars = modelpack_source(stores, registry.host)
    other = make_registry()
    dest_name = unique_repo("far")
    imported = import_oci(f"{source}:latest", f"{other.host}/{dest_name}", stores=stores)
    manifest = registry_manifest(other.host, dest_name, imported.digest)
    for layer, blob in zip(manifest["layers"], tars.values(), strict=False):
        assert layer["digest"] == sha256_digest(blob)
        assert registry_blob(other.host, dest_name, layer["digest"]) == blob
    pulled = api.pull(f"{other.host}/{dest_name}:v1", tmp_path / "far", stores=stores)
    source_files = api.pull(f"{source}:latest", tmp_path / "near", stores=stores).path
    assert files_of(pulled.path) == files_of(source_files)
    # the version travels like any other: copy it back, pull it
    back = api.copy(
        f"{other.host}/{dest_name}:v1", f"{registry.host}/{unique_repo()}", stores=stores
    )
    assert back.digest == imported.digest
    again = api.pull(f"{back.repository}@{back.digest}", tmp_path / "back", stores=stores)
    assert files_of(again.path) == files_of(source_files)


def _link(name: str, kind: bytes, target: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(tarfile.TarInfo("ok.bin"), io.BytesIO(b""))
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        archive.addfile(info)
    return out.getvalue()


def _device() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("dev/sda")
        info.type, info.devmajor, info.devminor = tarfile.BLKTYPE, 8, 0
        archive.addfile(info)
    return out.getvalue()


def _twice() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for content in (b"first", b"second"):
            info = tarfile.TarInfo("model.bin")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (tar_of({"../../etc/cron.d/x": b"* * * * * root sh\n"}), "escapes"),
        (tar_of({"/etc/passwd": b"root::0:0::/:/bin/sh\n"}), "unsafe path"),
        (_link("weights.bin", tarfile.SYMTYPE, "/etc/shadow"), "symlink"),
        (_link("weights.bin", tarfile.LNKTYPE, "ok.bin"), "hardlink"),
        (_device(), "special file"),
        (_twice(), "twice"),
        *((craft(), "read differently") for craft in CRAFTED.values()),
    ],
    ids=["escape", "absolute", "symlink", "hardlink", "device", "duplicate", *CRAFTED],
)
def test_a_hostile_tar_is_refused_with_nothing_written_at_dest(
    stores: Stores, registry: Any, cli: Cli, blob: bytes, message: str
) -> None:
    name = f"{registry.host}/{unique_repo('hostile')}"
    push_artifact(
        repository(stores, name),
        f"{KIT}.config.v1+json",
        json.dumps(KITFILE).encode(),
        [(f"{KIT}.model.v1.tar", blob, {})],
    )
    dest_name = unique_repo("never")
    out = cli("import", f"{name}:latest", f"{registry.host}/{dest_name}")
    assert out.returncode == 6, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2 and message in lines[0] and lines[1].startswith("hint:"), lines
    assert registry_tags(registry.host, dest_name) in (None, [])


@pytest.mark.parametrize(
    ("blob", "why"),
    [
        (tar_of({"run.sh": b"#!/bin/sh\n"}, mode=0o4755), "set-uid"),
        (tar_of({"secret.bin": b"s"}, mode=0o600), "not readable by all"),
        (tar_of({"w.bin": b"w"}, pax_headers={"SCHILY.xattr.security.capability": "x"}), "PAX"),
        (tar_of({".modelreg/lineage.json": b"{}", "w.bin": b"w"}), "lineage"),
        (tar_of({"w.bin": b"w"}) + b"\x01" * 512, "after the end"),
    ],
    ids=["setuid", "unreadable", "xattr", "lineage-path", "trailing-data"],
)
def test_a_tar_an_engine_would_read_otherwise_is_repacked(
    stores: Stores, registry: Any, tmp_path: Path, blob: bytes, why: str
) -> None:
    name = f"{registry.host}/{unique_repo('odd')}"
    push_artifact(
        repository(stores, name),
        f"{KIT}.config.v1+json",
        json.dumps(KITFILE).encode(),
        [(f"{KIT}.model.v1.tar", blob, {})],
    )
    dest = f"{registry.host}/{unique_repo('odd-imported')}"
    imported = import_oci(f"{name}:latest", dest, stores=stores)
    assert imported.reused_layers == 0 and why in imported.repacked[0], imported.repacked
    manifest = registry_manifest(registry.host, dest.split("/", 1)[1], imported.digest)
    assert sha256_digest(blob) not in {layer["digest"] for layer in manifest["layers"]}
    pulled = api.pull(f"{dest}:v1", tmp_path / "import", stores=stores)
    source = api.pull(f"{name}:latest", tmp_path / "source", stores=stores)
    assert files_of(pulled.path) == files_of(source.path)
    assert all(not (p.stat().st_mode & 0o7000) for p in pulled.path.rglob("*"))


def test_umoci_and_podman_unpack_the_import_with_the_files_at_their_paths(
    stores: Stores, registry: Any, skopeo: str, tmp_path: Path, engines_tmp: Path
) -> None:
    """The config's diff_ids are checked by both: a wrong one fails the unpack or the pull.
    (umoci 0.4 reads no zstd layers; podman does.)"""
    umoci = binary_or_skip("umoci")
    source, _ = modelpack_source(stores, registry.host, zstd=False)
    dest = f"{registry.host}/{unique_repo('engines')}"
    imported = import_oci(f"{source}:latest", dest, stores=stores)
    pinned = f"{dest}@{imported.digest}"
    with_zstd, _ = modelpack_source(stores, registry.host)
    zstd_import = import_oci(f"{with_zstd}:latest", dest, stores=stores)
    layout = tmp_path / "layout"
    subprocess.run(
        [
            skopeo,
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--src-no-creds",
            f"docker://{pinned}",
            f"oci:{layout}:model",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    bundle = tmp_path / "bundle"
    done = subprocess.run(
        [umoci, "unpack", "--rootless", "--image", f"{layout}:model", str(bundle)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rootfs = bundle / "rootfs"
    assert (rootfs / "weights/model.safetensors").read_bytes() == b"W" * 70000
    assert (rootfs / "README.md").read_bytes() == b"# tiny\n"
    assert (rootfs / "config.json").read_bytes() == b'{"a": 1}'
    assert (rootfs / "model/src/run.py").read_bytes() == b"print('raw')\n"  # the repacked raw file
    podman = binary_or_skip("podman")
    storage = Path(tempfile.mkdtemp(prefix="pd-", dir=engines_tmp))
    base = podman_base(podman, storage)
    (storage / "auth.json").write_text('{"auths": {}}')
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(storage / "auth.json")}
    try:
        for digest in (imported.digest, zstd_import.digest):
            pulled = subprocess.run(
                [*base, "pull", "--tls-verify=false", f"{dest}@{digest}"],
                capture_output=True,
                text=True,
                timeout=300,
                env=env,
            )
            assert pulled.returncode == 0, pulled.stderr
        shown = subprocess.run(
            [*base, "image", "inspect", "--format", "{{.Digest}}", pinned],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert shown.stdout.strip() == imported.digest, shown.stderr
    finally:
        subprocess.run(
            [*base, "system", "reset", "--force"], capture_output=True, timeout=120, env=env
        )
        shutil.rmtree(storage, ignore_errors=True)


@pytest.mark.engines
def test_docker_and_containerd_pull_the_import_by_digest_with_the_files_at_their_paths(
    stores: Stores, registry: Any, dockerd: Any, containerd: Any, tmp_path: Path
) -> None:
    from test_engines import files_in_image, tree_of

    plain, _ = modelpack_source(stores, registry.host, zstd=False)  # Docker 20.10: no zstd
    dest = f"{registry.host}/{unique_repo('engines')}"
    imported = import_oci(f"{plain}:latest", dest, stores=stores)
    client = dockerd.client()
    image = client.images.pull(f"{dest}@{imported.digest}")
    assert f"{dest}@{imported.digest}" in image.attrs["RepoDigests"]
    pinned = f"{dest}@{imported.digest}"
    assert files_in_image(client, pinned, "/weights") == {
        "model.safetensors": (b"W" * 70000, False)
    }
    assert files_in_image(client, pinned, "/model") == {"src/run.py": (b"print('raw')\n", False)}
    # docker push drops every annotation; the config (copied as it is) says which layers
    # hold their files at their own paths, so modelreg still pulls the copy right
    copy = f"{registry.host}/{unique_repo('docker-copy')}:pushed"
    for args in (("tag", pinned, copy), ("push", copy)):
        done = dockerd.cli(*args)
        assert done.returncode == 0, (args, done.stderr)
    copied = api.inspect(copy, stores=stores).manifest
    assert not any(layer.annotations for layer in copied.layers)
    from_copy = api.pull(copy, tmp_path / "copy", stores=stores).path
    plain_files = api.pull(f"{plain}:latest", tmp_path / "plain", stores=stores).path
    assert files_of(from_copy) == files_of(plain_files)
    with_zstd, _ = modelpack_source(stores, registry.host)
    zstd_digest = import_oci(f"{with_zstd}:latest", dest, stores=stores).digest
    reference = f"{dest}@{zstd_digest}"
    pulled = containerd.ctr("images", "pull", "--plain-http", reference)
    assert pulled.returncode == 0, pulled.stderr
    mount = tmp_path / "mnt"
    mount.mkdir()
    try:
        containerd.ctr("images", "mount", reference, str(mount), check=True)
        try:
            tree = tree_of(mount)
        finally:
            containerd.ctr("images", "unmount", "--rm", str(mount), check=True)
    finally:
        containerd.ctr("images", "rm", "--sync", reference, check=True)
    source = api.pull(f"{with_zstd}:latest", tmp_path / "source", stores=stores).path
    expected = {name: (data, False) for name, data in files_of(source).items()}
    expected["model/src/run.py"] = expected.pop("src/run.py")
    assert tree == expected


def _named_twice() -> bytes:
    """An entry named by a PAX ``path`` and by a GNU long name: readers differ on which wins."""
    pax = tarfile.TarInfo("weights/" + "a" * 120).tobuf(tarfile.PAX_FORMAT)
    gnu = tarfile.TarInfo("../" + "b" * 120).tobuf(tarfile.GNU_FORMAT)
    return pax[: -tarfile.BLOCKSIZE] + gnu + b"\0" * 2 * tarfile.BLOCKSIZE


def _global_header(records: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(
        fileobj=out, mode="w", format=tarfile.PAX_FORMAT, pax_headers=records
    ) as archive:
        archive.addfile(tarfile.TarInfo("w.bin"), io.BytesIO(b""))
    return out.getvalue()


def test_a_name_given_twice_is_refused_and_a_global_header_repacked(
    stores: Stores, registry: Any, cli: Cli
) -> None:
    """A global header that renames the entries after it is read so by GNU tar and
    tarfile, ignored by Go: refused. One that only comments (``git archive``'s commit id)
    is repacked (engines differ on whether they keep it)."""
    cases = (
        (_named_twice(), 6, "given twice"),
        (_global_header({"path": "elsewhere"}), 6, "read differently"),
        (_global_header({"comment": "0" * 40}), 0, ""),
    )
    for blob, expected, message in cases:
        name = f"{registry.host}/{unique_repo('names')}"
        push_artifact(
            repository(stores, name),
            f"{KIT}.config.v1+json",
            json.dumps(KITFILE).encode(),
            [(f"{KIT}.model.v1.tar", blob, {})],
        )
        dest_name = unique_repo("names-imported")
        out = cli("import", f"{name}:latest", f"{registry.host}/{dest_name}", "--json")
        assert out.returncode == expected, out.stderr
        if expected:
            assert message in out.stderr
            assert registry_tags(registry.host, dest_name) in (None, [])
        else:
            assert "global PAX header" in json.loads(out.stdout)["repacked"][0]


def test_a_source_registry_that_swaps_a_blob_writes_nothing_at_dest(
    hostile: Any, registry: Any, cli: Cli
) -> None:
    """What is checked is what DEST gets: the blob is verified against its digest as it
    is read, so a registry serving a benign tar, then another, fails the import."""
    from helpers.hostile_registry import Reply

    repo = "ml/kit"
    config = json.dumps(KITFILE).encode()
    benign = tar_of({"model.joblib": b"M" * 100})
    evil = _link("model.joblib", tarfile.SYMTYPE, "/etc/shadow")
    config_digest = hostile.add_blob(repo, config)
    layer_digest = hostile.add_blob(repo, benign)
    hostile.override(hostile.blob_path(repo, layer_digest), Reply(200, evil))
    manifest = {
        "schemaVersion": 2,
        "mediaType": IMAGE_MANIFEST,
        "config": {
            "mediaType": f"{KIT}.config.v1+json",
            "digest": config_digest,
            "size": len(config),
        },
        "layers": [
            {"mediaType": f"{KIT}.model.v1.tar", "digest": layer_digest, "size": len(benign)}
        ],
    }
    hostile.add_manifest(repo, json.dumps(manifest).encode(), tags=["latest"])
    dest_name = unique_repo("swapped")
    out = cli("import", f"{hostile.host}/{repo}:latest", f"{registry.host}/{dest_name}")
    assert out.returncode == 6, out.stderr
    assert out.stderr.startswith("error: ") and "hint:" in out.stderr
    assert registry_tags(registry.host, dest_name) in (None, [])


def test_an_image_layer_naming_an_unknown_root_is_refused(
    stores: Stores, registry: Any, cli: Cli, tmp_path: Path
) -> None:
    """A pusher cannot point a layer's files elsewhere: '/' is the one other root."""
    name = f"{registry.host}/{unique_repo('root')}"
    layer = tar_of({"x.bin": b"x"})
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]}})
    push_artifact(
        repository(stores, name),
        "application/vnd.oci.image.config.v1+json",
        config.encode(),
        [(LAYER_TAR, layer, {"dev.modelreg.root": "../", "dev.modelreg.title": "x"})],
    )
    out = cli("pull", f"{name}:latest", str(tmp_path / "out"))
    assert out.returncode == 6 and "dev.modelreg.root" in out.stderr, out.stderr
    assert not (tmp_path / "out").exists()


def test_a_tar_of_very_many_entries_is_repacked_with_memory_bounded(
    stores: Stores, registry: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelreg.formats import reuse

    monkeypatch.setattr(reuse, "MAX_ENTRIES", 3)
    name = f"{registry.host}/{unique_repo('many')}"
    files = {f"part-{index}.bin": bytes([index]) for index in range(5)}
    push_artifact(
        repository(stores, name),
        f"{KIT}.config.v1+json",
        json.dumps(KITFILE).encode(),
        [(f"{KIT}.model.v1.tar", tar_of(files), {})],
    )
    imported = import_oci(f"{name}:latest", f"{registry.host}/{unique_repo()}", stores=stores)
    assert imported.reused_layers == 0 and "more than 3 entries" in imported.repacked[0]
    pulled = api.pull(f"{imported.repository}@{imported.digest}", tmp_path / "out", stores=stores)
    assert files_of(pulled.path) == files
