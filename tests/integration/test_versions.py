"""Integer versions: concurrent claims, repair, pagination, listing and aliases.

Against the real local store and a real registry:2; pagination and fault
injection go through a real HTTP proxy (tests/helpers/regproxy.py) in front of it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from helpers.cli import Cli
from helpers.models import unique_repo
from helpers.oci_state import raw_manifest, raw_put_manifest, raw_tags
from helpers.regproxy import running_proxy

from modelreg import api
from modelreg.digest import sha256_digest
from modelreg.errors import ConflictError, IntegrityError, InvalidInput
from modelreg.oci import EMPTY_JSON_BYTES, IMAGE_MANIFEST, Descriptor, empty_config_descriptor
from modelreg.reference import parse_reference
from modelreg.store import RegistryOptions, Stores
from modelreg.store.layout import LayoutRepository
from modelreg.transfer import push_model
from modelreg.versions import (
    anchor_tag,
    find_version,
    parse_version_tag,
    version_record,
    version_record_tag,
    version_tag,
)


def tiny_model(root: Path, text: str) -> Path:
    root.mkdir(parents=True)
    (root / "weights.bin").write_bytes(text.encode() * 64)
    return root


def version_tags(tags: set[str]) -> set[str]:
    return {t for t in tags if parse_version_tag(t) is not None}


# ----- concurrency -----------------------------------------------------------------------

# The body of `python -m modelreg`, started early and held at a barrier, so that all
# eight pushes hit the repository in the same instant instead of one per import.
_AT_BARRIER = textwrap.dedent(
    """
    import contextlib, os, sys, time
    from modelreg.cli import main
    with contextlib.suppress(ImportError):
        import typer._adapters  # what typer imports lazily on the first command (~0.5 s)
    go = sys.argv[1]
    open(f"{go}.ready-{os.getpid()}", "w").close()
    deadline = time.monotonic() + 120
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.002)
    sys.argv = ["modelreg", *sys.argv[2:]]
    main()
    """
)


def test_eight_concurrent_pushes_get_versions_one_to_eight(
    target: str, tmp_path: Path, stores: Stores, home: Path, cli: Cli
) -> None:
    models = [tiny_model(tmp_path / f"m{i}", f"model {i}\n") for i in range(8)]
    go = tmp_path / "go"

    def push_args(model: Path) -> list[str]:
        return ["push", str(model), target, "--json", "--no-capture"]

    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _AT_BARRIER, str(go), *push_args(model)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for model in models
    ]
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("go.ready-*"))) < len(processes):
            assert time.monotonic() < deadline, "pushers did not start"
            assert all(p.poll() is None for p in processes), "a pusher died before the barrier"
            time.sleep(0.02)
        go.touch()
        outputs = [p.communicate(timeout=180) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    results = [json.loads(out) for out, _ in outputs]

    assert sorted(r["version"] for r in results) == list(range(1, 9))
    assert len({r["digest"] for r in results}) == 8
    assert not any(r["existed"] for r in results)
    repository = stores.repository(parse_reference(target))
    for result in results:
        found = repository.resolve(version_tag(result["version"]))
        assert found is not None and found.digest == result["digest"]
        assert find_version(repository, result["digest"]).version == result["version"]
    tags = raw_tags(target, home)
    assert version_tags(tags) == {f"v{n}" for n in range(1, 9)}
    assert {anchor_tag(r["digest"]) for r in results} <= tags
    assert {version_record_tag(r["digest"]) for r in results} <= tags

    result = cli("versions", target, "--json")
    assert "without a version" not in result.stderr
    listed = json.loads(result.stdout)
    assert [row["version"] for row in listed] == list(range(1, 9))
    by_version = {r["version"]: r["digest"] for r in results}
    assert {row["version"]: row["digest"] for row in listed} == by_version


def _overwrite_tag(target: str, tag: str, data: bytes, stores: Stores) -> None:
    """What a stalled foreign writer does: point ``tag`` at another manifest, no questions asked."""
    ref = parse_reference(target)
    if ref.registry is None:
        repository = stores.repository(ref)
        assert isinstance(repository, LayoutRepository)
        repository.push_manifest(data, IMAGE_MANIFEST, [tag])
    else:
        raw_put_manifest(ref.registry, ref.repository, tag, data, IMAGE_MANIFEST)


@pytest.mark.parametrize("heal", ["repair", "push again"])
def test_a_lost_claim_gets_the_next_number(
    target: str, tmp_path: Path, stores: Stores, cli: Cli, heal: str
) -> None:
    first = api.push(tiny_model(tmp_path / "a", "a"), target, capture=False, stores=stores)
    model_b = tiny_model(tmp_path / "b", "b")
    second = api.push(model_b, target, capture=False, stores=stores)
    assert (first.version, second.version) == (1, 2)
    repository = stores.repository(parse_reference(target))
    _, data_a = repository.fetch_manifest(first.digest)
    _overwrite_tag(target, "v2", data_a, stores)
    result = cli("versions", target, "--json")
    listed = json.loads(result.stdout)
    assert [(r["version"], r["digest"]) for r in listed] == [(1, first.digest), (2, first.digest)]
    assert find_version(repository, second.digest) is None  # lost, but anchored
    assert f"1 pushed model(s) without a version tag ({second.digest})" in result.stderr

    if heal == "repair":
        result = cli("versions", target, "--repair")
        assert result.returncode == 0, result.stderr
        assert f"repaired: {second.digest} is now v3" in result.stdout
        again = cli("versions", target, "--repair", "--json")
        assert "repaired" not in again.stdout + again.stderr
        assert len(json.loads(again.stdout)) == 3
    else:
        pushed = api.push(model_b, target, capture=False, stores=stores)
        assert (pushed.version, pushed.digest, pushed.existed) == (3, second.digest, False)
    result = cli("versions", target, "--json")
    assert "without a version" not in result.stderr
    listed = json.loads(result.stdout)
    assert [(r["version"], r["digest"]) for r in listed] == [
        (1, first.digest),
        (2, first.digest),
        (3, second.digest),
    ]
    assert find_version(repository, second.digest).version == 3
    if heal == "repair":  # the repaired version keeps the time it was pushed
        assert listed[2]["created"] == second.created


def test_a_claim_overwritten_after_it_was_verified_moves_to_the_next_number(
    registry, tmp_path: Path, home: Path
) -> None:
    """A writer that stalls past the settle delay lands on v2 just after B verified it."""
    repo = unique_repo()
    direct = Stores(home=home, options=RegistryOptions(settle=0.05))
    first = api.push(
        tiny_model(tmp_path / "a", "a"), f"{registry.host}/{repo}", capture=False, stores=direct
    )
    data_a, media_type = raw_manifest(registry.host, repo, first.digest)
    landed: list[str] = []

    def stalled_writer(method: str, path: str) -> None:
        if method == "PUT" and path.endswith(".version") and not landed:
            landed.append(path)
            raw_put_manifest(registry.host, repo, "v2", data_a, media_type)

    with running_proxy(registry.url, before=stalled_writer) as proxy:
        via_proxy = Stores(home=home, options=RegistryOptions(settle=0.05, plain_http=True))
        pushed = api.push(
            tiny_model(tmp_path / "b", "b"),
            f"{proxy.host}/{repo}",
            capture=False,
            stores=via_proxy,
        )
        via_proxy.close()
    direct.close()
    assert landed, "the fault was not injected"
    assert pushed.version == 3
    tags = raw_tags(f"{registry.host}/{repo}", home)
    assert version_tags(tags) == {"v1", "v2", "v3"}
    assert raw_manifest(registry.host, repo, "v3")[0] != data_a
    assert raw_manifest(registry.host, repo, "v2")[0] == data_a


# ----- pagination ------------------------------------------------------------------------


def put_in_parallel(registry: str, repo: str, writes: list[tuple[str, bytes]]) -> None:
    with requests.Session() as session, ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda w: raw_put_manifest(registry, repo, w[0], w[1], IMAGE_MANIFEST, session),
                writes,
            )
        )


def make_versions(registry: str, repo: str, count: int, model: Path, home: Path) -> list[str]:
    """``count`` versions exactly as publish leaves them (anchor, vN, record), written fast."""
    stores = Stores(home=home, options=RegistryOptions(plain_http=True))
    repository = stores.repository(parse_reference(f"{registry}/{repo}"))
    base = push_model(repository, model, annotations={})
    empty = empty_config_descriptor()
    repository.push_blob([EMPTY_JSON_BYTES], empty.size, empty.digest)
    stores.close()
    writes, digests = [], []
    for n in range(1, count + 1):
        metrics = json.dumps({"auc": n / 1000}, separators=(",", ":"))
        annotations = {"dev.modelreg.lineage": "1", "dev.modelreg.metrics": metrics}
        data = replace(base.manifest, annotations=annotations).to_bytes()
        model_descriptor = Descriptor(IMAGE_MANIFEST, sha256_digest(data), len(data))
        record = version_record(model_descriptor, n, f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}Z")
        digests.append(model_descriptor.digest)
        writes += [
            (anchor_tag(model_descriptor.digest), data),
            (version_tag(n), data),
            (version_record_tag(model_descriptor.digest), record.to_bytes()),
        ]
    put_in_parallel(registry, repo, writes)
    return digests


def test_tag_lists_are_followed_across_pages(registry, tmp_path: Path, home: Path) -> None:
    repo = unique_repo()
    make_versions(registry.host, repo, 1, tiny_model(tmp_path / "m", "m"), home)
    data, _ = raw_manifest(registry.host, repo, "v1")
    put_in_parallel(registry.host, repo, [(f"alias-{i:03d}", data) for i in range(300)])
    everything = raw_tags(f"{registry.host}/{repo}", home)
    assert len(everything) == 303  # v1, anchor, record and 300 aliases: one page from 2.8

    with running_proxy(registry.url, page_size=50) as proxy:
        via_proxy = Stores(home=home, options=RegistryOptions(plain_http=True))
        repository = via_proxy.repository(parse_reference(f"{proxy.host}/{repo}"))
        assert repository.list_tags() == sorted(everything)
        assert proxy.tag_pages == 7
        listed = api.versions(f"{proxy.host}/{repo}", stores=via_proxy)
        via_proxy.close()
    assert [v.version for v in listed] == [1]
    assert listed[0].aliases == tuple(f"alias-{i:03d}" for i in range(300))


@pytest.mark.parametrize("link", ["same", "http://elsewhere.invalid:1/v2/x/tags/list"])
def test_a_looping_or_foreign_next_link_is_refused(
    registry, tmp_path: Path, home: Path, link: str
) -> None:
    repo = unique_repo()
    make_versions(registry.host, repo, 1, tiny_model(tmp_path / "m", "m"), home)
    next_link = f"/v2/{repo}/tags/list?n=1000" if link == "same" else link
    with running_proxy(registry.url, page_size=50, next_link=next_link) as proxy:
        via_proxy = Stores(home=home, options=RegistryOptions(plain_http=True))
        repository = via_proxy.repository(parse_reference(f"{proxy.host}/{repo}"))
        with pytest.raises(IntegrityError, match="loop" if link == "same" else "another host"):
            repository.list_tags()
        via_proxy.close()


def test_versions_past_pagination_through_the_cli(
    registry, tmp_path: Path, home: Path, cli: Cli
) -> None:
    """120 versions (360 tags) listed through a registry that pages tag lists by 50."""
    repo = unique_repo()
    count = 120
    digests = make_versions(registry.host, repo, count, tiny_model(tmp_path / "m", "m"), home)
    with running_proxy(registry.url, page_size=50) as proxy:
        result = cli("--plain-http", "versions", f"{proxy.host}/{repo}", "--json")
        assert result.returncode == 0, result.stderr
        assert proxy.tag_pages == 2 * 8  # 360 tags by 50; listed for versions and unversioned
        listed = json.loads(result.stdout)
        assert [r["version"] for r in listed] == list(range(1, count + 1))
        assert [r["digest"] for r in listed] == digests
        assert [r["metrics"]["auc"] for r in listed] == [n / 1000 for n in range(1, count + 1)]
        assert listed[-1]["created"] == "2026-01-01T00:02:00Z"
        result = cli(
            "--plain-http",
            "versions",
            f"{proxy.host}/{repo}",
            "--where",
            "metrics.auc>0.1",
            "--json",
        )
        assert [r["version"] for r in json.loads(result.stdout)] == list(range(101, count + 1))


# ----- listing ---------------------------------------------------------------------------


def test_versions_lists_tags_metrics_and_filters(
    target: str, tmp_path: Path, stores: Stores, cli: Cli
) -> None:
    runs = [
        ({"lr": 0.01, "depth": 4}, {"auc": 0.88, "loss": 0.4}),
        ({"lr": 0.01, "depth": 6}, {"auc": 0.93, "loss": 0.3}),
        ({"lr": 0.1, "depth": 6}, {"auc": 0.95, "loss": 0.2}),
    ]
    pushed = [
        api.push(
            tiny_model(tmp_path / f"m{i}", str(i)),
            target,
            capture=False,
            params=params,
            metrics=metrics,
            aliases=["bert-large"] if i == 1 else [],
            stores=stores,
        )
        for i, (params, metrics) in enumerate(runs)
    ]
    repository = stores.repository(parse_reference(target))
    _, data = repository.fetch_manifest(pushed[2].digest)
    repository.push_manifest(data, IMAGE_MANIFEST, ["production"])  # a stage tag, as promote does

    rows = json.loads(cli("versions", target, "--json").stdout)
    assert [r["version"] for r in rows] == [1, 2, 3]
    assert [r["digest"] for r in rows] == [p.digest for p in pushed]
    assert [r["created"] for r in rows] == [p.created for p in pushed]
    assert [r["size"] for r in rows] == [p.size for p in pushed]
    assert [r["aliases"] for r in rows] == [[], ["bert-large"], []]
    assert [r["stages"] for r in rows] == [[], [], ["production"]]
    assert [r["metrics"] for r in rows] == [m for _, m in runs]

    text = cli("versions", target).stdout.splitlines()
    assert text[0].split()[:4] == ["VERSION", "DIGEST", "CREATED", "SIZE"]
    assert text[2].startswith("v2 ") and "bert-large" in text[2] and "auc=0.93" in text[2]
    assert "production" in text[3] and pushed[2].digest[:19] in text[3]

    def where(*conditions: str) -> list[int]:
        args = [a for c in conditions for a in ("--where", c)]
        result = cli("versions", target, *args, "--json")
        assert result.returncode == 0, result.stderr
        return [r["version"] for r in json.loads(result.stdout)]

    assert where("metrics.auc>=0.9") == [2, 3]
    assert where("params.lr=0.01") == [1, 2]
    assert where("metrics.auc>=0.9", "params.lr=0.01") == [2]
    assert where("params.depth=6", "metrics.loss<0.25") == [3]
    assert where("metrics.auc>0.99") == []
    assert cli("versions", target, "--where", "metrics.auc>0.99").stdout == "no versions match\n"


@pytest.mark.parametrize("expr", ["metrics.auc>>0.9", "auc>=0.9", "metrics.auc>=", "=1"])
def test_a_where_that_does_not_parse_is_a_clear_error(
    target: str, tmp_path: Path, stores: Stores, cli: Cli, expr: str
) -> None:
    api.push(tiny_model(tmp_path / "m", "m"), target, capture=False, stores=stores)
    result = cli("versions", target, "--where", expr)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "hint: " in result.stderr
    assert len(result.stderr.splitlines()) == 2


# ----- aliases ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alias, message",
    [
        ("v7", "looks like a version tag"),
        ("production", "is a stage"),
        ("staging", "is a stage"),
        ("sha256-abc", "reserves"),
        ("bad tag", "tag"),
    ],
)
def test_a_bad_alias_is_refused_before_anything_is_pushed(
    target: str, model_dir: Path, home: Path, cli: Cli, alias: str, message: str
) -> None:
    result = cli("push", str(model_dir), target, "--no-capture", "--tag", alias)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr
    assert raw_tags(target, home) == set()
    assert not (home / "oci" / parse_reference(target).repository / "blobs").exists()


def test_alias_tags_on_push_and_later(
    target: str, tmp_path: Path, stores: Stores, cli: Cli, home: Path
) -> None:
    first = api.push(
        tiny_model(tmp_path / "a", "a"),
        target,
        capture=False,
        stores=stores,
        aliases=["v1.2.0-bert-large"],
    )
    second = api.push(tiny_model(tmp_path / "b", "b"), target, capture=False, stores=stores)
    assert cli("tag", f"{target}:v2", "candidate").returncode == 0
    rows = json.loads(cli("versions", target, "--json").stdout)
    assert [r["aliases"] for r in rows] == [["v1.2.0-bert-large"], ["candidate"]]

    before = raw_tags(target, home)
    for alias, code in [("v3", 2), ("production", 2), ("v1.2.0-bert-large", 9)]:
        result = cli("tag", f"{target}:v2", alias)
        assert result.returncode == code, (alias, result.stderr)
    assert raw_tags(target, home) == before
    with pytest.raises(ConflictError):
        api.tag(f"{target}@{second.digest}", "v1.2.0-bert-large", stores=stores)
    with pytest.raises(InvalidInput):
        api.tag(f"{target}@{first.digest}", "v1", stores=stores)
    # the same alias on the same model again is fine
    assert api.tag(f"{target}:v1", "v1.2.0-bert-large", stores=stores) == first.digest


def test_copy_refuses_a_bad_alias_before_copying(
    target: str, tmp_path: Path, stores: Stores, home: Path
) -> None:
    pushed = api.push(tiny_model(tmp_path / "m", "m"), target, capture=False, stores=stores)
    destination = unique_repo("copy")
    for alias in ("v2", "archived"):
        with pytest.raises(InvalidInput):
            api.copy(pushed.reference, f"{destination}:{alias}", stores=stores)
    assert not (home / "oci" / destination).exists()
    copied = api.copy(pushed.reference, f"{destination}:imported", stores=stores)
    name, digest = copied.repository, copied.digest
    rows = api.versions(name, stores=stores)
    assert [(r.version, r.digest, r.aliases) for r in rows] == [(1, digest, ("imported",))]


def test_a_listed_tag_that_is_not_readable_yet_is_waited_for(
    stores: Stores, target: str, tmp_path: Path
) -> None:
    """registry:2 lists a tag a moment before it can be read; reads after a listing wait."""
    from modelreg.errors import NotFound
    from modelreg.store.base import read_listed

    repo = stores.repository(parse_reference(target))
    (tmp_path / "m.bin").write_bytes(b"weights")
    pushed = api.push(tmp_path / "m.bin", target, capture=False, stores=stores)
    _, data = repo.fetch_manifest(pushed.digest)
    late = ThreadPoolExecutor(1).submit(
        lambda: (time.sleep(0.2), repo.push_manifest(data, IMAGE_MANIFEST, ["late"]))
    )
    found, _ = read_listed(lambda: repo.fetch_manifest("late"))
    late.result()
    assert found.digest == pushed.digest
    started = time.monotonic()
    with pytest.raises(NotFound):
        read_listed(lambda: repo.fetch_manifest("never"))
    assert time.monotonic() - started < 5  # bounded
