"""Registry faults against real processes: dropped connections and 5xx in the middle of
uploads and downloads (a fault-injecting proxy in front of the real registry), and the
registry SIGKILLed at random points of a push. Nothing half-done is ever tagged, and a
re-run completes without uploading again what had finished."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers.fault_proxy import Fault, FaultProxy
from helpers.models import unique_repo, write_model

from modelreg import api
from modelreg.errors import RegistryUnavailable
from modelreg.oci import MANIFEST_MEDIA_TYPES
from modelreg.store import RegistryOptions, Stores


@pytest.fixture
def via_proxy(home: Path) -> Iterator[Stores]:
    made = Stores(home=home, options=RegistryOptions(plain_http=True, settle=0.05, retries=3))
    yield made
    made.close()


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def tags_on(registry, repository: str) -> list[str]:
    answer = requests.get(f"{registry.url}/v2/{repository}/tags/list", timeout=10)
    return answer.json().get("tags") or [] if answer.status_code == 200 else []


def manifest_of(registry, repository: str, reference: str) -> dict:
    return requests.get(
        f"{registry.url}/v2/{repository}/manifests/{reference}",
        headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)},
        timeout=10,
    ).json()


def complete(registry, repository: str, tag: str) -> bool:
    """Every blob the tagged manifest references is in the registry; for an image index
    (the OCI 1.1 referrers index at ``sha256-<hex>``), every manifest it lists is complete."""
    manifest = manifest_of(registry, repository, tag)
    if "manifests" in manifest:
        return all(complete(registry, repository, m["digest"]) for m in manifest["manifests"])
    blobs = [manifest["config"], *manifest.get("layers", [])]
    return all(
        requests.head(f"{registry.url}/v2/{repository}/blobs/{b['digest']}", timeout=10).status_code
        == 200
        for b in blobs
    )


def first(kind_prefix: str, fault: Fault, times: int = 1):
    def rule(method: str, path: str, count: int) -> Fault | None:
        from helpers.fault_proxy import kind

        return fault if kind(method, path) == kind_prefix and count <= times else None

    return rule


def test_a_dropped_upload_is_retried(
    via_proxy: Stores, proxy: FaultProxy, registry, model_dir: Path, tmp_path: Path
) -> None:
    # small blobs go up in one PUT; the first PATCH is the weights upload: cut it once
    proxy.rules.append(first("PATCH upload", Fault(cut_request_after=1 << 20)))
    repository = unique_repo()
    pushed = api.push(model_dir, f"{proxy.host}/{repository}", capture=False, stores=via_proxy)
    assert proxy.faults == ["PATCH upload: request cut"]
    assert proxy.seen["PATCH upload"] == 2  # the cut upload, then its retry
    assert complete(registry, repository, "v1")
    api.pull(f"{registry.host}/{repository}@{pushed.digest}", tmp_path / "out")
    assert files_of(tmp_path / "out") == files_of(model_dir)


def test_5xx_answers_are_retried_with_backoff(
    via_proxy: Stores, proxy: FaultProxy, registry, model_dir: Path
) -> None:
    proxy.rules += [
        first("POST upload", Fault(status=503)),
        first("PUT manifest", Fault(status=502)),
        first("HEAD blob", Fault(status=500)),
    ]
    repository = unique_repo()
    api.push(model_dir, f"{proxy.host}/{repository}", capture=False, stores=via_proxy)
    assert len(proxy.faults) == 3
    assert complete(registry, repository, "v1")


def test_persistent_faults_end_in_a_clear_error_and_tag_nothing(
    via_proxy: Stores, proxy: FaultProxy, registry, model_dir: Path
) -> None:
    proxy.rules.append(first("PATCH upload", Fault(cut_request_after=1 << 20), times=1000))
    repository = unique_repo()
    with pytest.raises(RegistryUnavailable) as caught:
        api.push(model_dir, f"{proxy.host}/{repository}", capture=False, stores=via_proxy)
    assert caught.value.hint
    assert len(proxy.faults) == 1 + via_proxy.options.retries  # bounded: one try + retries
    assert tags_on(registry, repository) == []


def test_registry_killed_during_pushes_never_leaves_a_broken_tag(
    make_registry, tmp_path: Path
) -> None:
    """Many trials: the registry is SIGKILLed at a random moment of a push, restarted, and
    the push re-run. After every trial each tag names a complete artifact, and the re-run
    uploads only what had not finished."""
    registry = make_registry()
    model = write_model(tmp_path / "model", large=48 * 1024 * 1024)
    (model / "second.bin").write_bytes(os.urandom(24 * 1024 * 1024))
    home = tmp_path / "home"
    env = {**os.environ, "MODELREG_HOME": str(home), "MODELREG_TIMEOUT": "2"}
    rng = random.Random(7)
    resumed_without_reupload = 0
    for trial in range(8):
        repository = f"ml/killed-{trial}"
        target = f"{registry.host}/{repository}"
        push_argv = [
            sys.executable,
            "-m",
            "modelreg",
            "push",
            str(model),
            target,
            "--no-capture",
            "--json",
        ]
        push = subprocess.Popen(
            push_argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        time.sleep(rng.uniform(0.05, 1.5))
        registry.kill()
        push.communicate(timeout=120)
        registry.start()
        for tag in tags_on(registry, repository):
            assert complete(registry, repository, tag), f"trial {trial}: {tag} is incomplete"
        again = subprocess.run(
            push_argv,
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
        )
        assert again.returncode == 0, again.stderr
        result = json.loads(again.stdout)
        assert result["version"] == 1
        assert complete(registry, repository, "v1")
        if result["uploaded"] < result["size"]:
            resumed_without_reupload += 1
    assert resumed_without_reupload >= 1  # some trials died after a layer had finished


def largest_layer(registry, repository: str, digest: str) -> dict:
    layers = manifest_of(registry, repository, digest)["layers"]
    return max(layers, key=lambda layer: layer["size"])


def cut_blob(digest: str, fault: Fault, times: int = 1):
    seen = []

    def rule(method: str, path: str, count: int) -> Fault | None:
        if method == "GET" and path.endswith(f"/blobs/{digest}") and len(seen) < times:
            seen.append(path)
            return fault
        return None

    return rule


@pytest.fixture
def big_model(registry, tmp_path: Path) -> tuple[Path, str, str, dict]:
    """A model with a 40 MiB weights file pushed straight to the registry."""
    model = write_model(tmp_path / "big", large=40 << 20)
    repository = unique_repo()
    pushed = api.push(model, f"{registry.host}/{repository}", capture=False)
    return model, repository, pushed.digest, largest_layer(registry, repository, pushed.digest)


CUT_AT = 24 << 20


def test_a_cut_download_resumes_where_it_broke(
    via_proxy: Stores, proxy: FaultProxy, big_model, tmp_path: Path
) -> None:
    model, repository, digest, weights = big_model
    proxy.rules.append(cut_blob(weights["digest"], Fault(cut_response_after=CUT_AT)))
    api.pull(f"{proxy.host}/{repository}@{digest}", tmp_path / "out", stores=via_proxy)
    assert proxy.faults == ["GET blob: response cut"]
    assert files_of(tmp_path / "out") == files_of(model)
    # one ranged request for the rest: what had arrived before the cut is not fetched again
    assert len(proxy.ranges) == 1
    start = int(proxy.ranges[0].removeprefix("bytes=").removesuffix("-"))
    assert 0 < start <= CUT_AT


def test_a_registry_that_ignores_ranges_still_gives_the_whole_blob(
    via_proxy: Stores, proxy: FaultProxy, big_model, tmp_path: Path
) -> None:
    model, repository, digest, weights = big_model
    proxy.rules += [
        cut_blob(weights["digest"], Fault(cut_response_after=CUT_AT)),
        cut_blob(weights["digest"], Fault(ignore_range=True)),
    ]
    api.pull(f"{proxy.host}/{repository}@{digest}", tmp_path / "out", stores=via_proxy)
    assert proxy.faults == ["GET blob: response cut"]
    assert len(proxy.ranges) == 1  # asked for a range, got a 200 with everything
    assert files_of(tmp_path / "out") == files_of(model)


def test_5xx_on_a_download_is_retried(
    via_proxy: Stores, proxy: FaultProxy, big_model, tmp_path: Path
) -> None:
    model, repository, digest, weights = big_model
    proxy.rules += [
        cut_blob(weights["digest"], Fault(status=503)),
        first("GET manifest", Fault(status=502)),
    ]
    api.pull(f"{proxy.host}/{repository}@{digest}", tmp_path / "out", stores=via_proxy)
    assert sorted(proxy.faults) == ["GET blob: status 503", "GET manifest: status 502"]
    assert files_of(tmp_path / "out") == files_of(model)


def test_a_download_that_keeps_breaking_is_a_clear_error_and_leaves_nothing(
    via_proxy: Stores, proxy: FaultProxy, big_model, tmp_path: Path
) -> None:
    _, repository, digest, weights = big_model
    proxy.rules.append(cut_blob(weights["digest"], Fault(cut_response_after=1 << 20), times=1000))
    out = tmp_path / "out"
    with pytest.raises(RegistryUnavailable) as caught:
        api.pull(f"{proxy.host}/{repository}@{digest}", out, stores=via_proxy)
    assert "broke mid-transfer" in caught.value.message and caught.value.hint
    assert len(proxy.faults) == 1 + via_proxy.options.retries  # bounded: the first try + resumes
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big", "home"]  # no partial pull
