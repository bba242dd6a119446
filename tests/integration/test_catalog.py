"""`modelreg ls`: the registry catalog (every page), the local store, and what a registry
that disables or abuses its catalog gets: a one-line error with what to do instead."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.cli import Cli
from helpers.hostile_registry import HostileRegistry, Reply, error_reply
from helpers.models import unique_repo

from modelreg import api
from modelreg.store import Stores, catalog


def _push(stores: Stores, target: str, tmp_path: Path) -> None:
    model = tmp_path / f"m-{target.replace('/', '_').replace(':', '_')}"
    model.mkdir()
    (model / "weights.bin").write_bytes(target.encode())
    api.push(model, target, capture=False, stores=stores)


def test_ls_local_store_with_prefix(cli: Cli, stores: Stores, tmp_path: Path) -> None:
    for name in ("ml/fraud", "ml/churn", "vision/cats"):
        _push(stores, name, tmp_path)
    result = cli("ls")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ml/churn", "ml/fraud", "vision/cats"]
    result = cli("ls", "ml", "--json")
    assert json.loads(result.stdout) == ["ml/churn", "ml/fraud"]
    # a prefix is a whole path component: "m" is not a prefix of "ml/…"
    assert cli("ls", "m").stdout == ""


def test_ls_empty_local_store_says_so(cli: Cli) -> None:
    result = cli("ls")
    assert result.returncode == 0 and result.stdout == ""
    assert "no repositories in the local store" in result.stderr


def test_ls_registry_follows_every_page(
    cli: Cli, stores: Stores, registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = unique_repo("lsp")
    names = [f"{prefix}/m{index}" for index in range(5)]
    for name in names:
        _push(stores, f"{registry.host}/{name}", tmp_path)
    monkeypatch.setattr(catalog, "CATALOG_PAGE", 2)  # registry:2 then pages with Link headers
    result = cli("ls", f"{registry.host}/{prefix}", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [f"{registry.host}/{n}" for n in names]
    everything = cli("ls", registry.host).stdout.split()
    assert set(json.loads(result.stdout)) <= set(everything)


@pytest.mark.parametrize(
    ("reply", "code", "says"),
    [
        (error_reply(404, "NOT_FOUND", "not found"), 5, "catalog API is disabled"),
        (error_reply(405, "UNSUPPORTED", "no catalog"), 5, "catalog API is disabled"),
        (error_reply(403, "DENIED", "requested access is denied"), 4, "does not let you list"),
    ],
)
def test_ls_disabled_catalog_says_to_name_repositories(
    cli: Cli, hostile: HostileRegistry, reply: Reply, code: int, says: str
) -> None:
    hostile.override("/v2/_catalog", reply)
    result = cli("ls", hostile.host)
    assert result.returncode == code, result.stderr
    assert says in result.stderr
    assert "hint: " in result.stderr and "name repositories explicitly" in result.stderr
    assert f"modelreg versions {hostile.host}/ORG/MODEL" in result.stderr


def test_ls_unauthorized_catalog(cli: Cli, hostile: HostileRegistry) -> None:
    hostile.override(
        "/v2/_catalog",
        Reply(
            401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": 'Basic realm="r"'}
        ),
    )
    result = cli("ls", hostile.host)
    assert result.returncode == 4, result.stderr
    assert "does not let you list its repositories" in result.stderr
    assert f"modelreg login {hostile.host}" in result.stderr


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (Reply(200, b"{not json"), "not valid JSON"),
        (Reply(200, b'{"repositories": [1, 2]}'), "malformed"),
        (Reply(200, b'{"repositories": "ml/fraud"}'), "malformed"),
        (Reply(200, b"[" * 100_000), "not valid JSON"),
        (
            Reply(200, b'{"repositories": ["a"]}', {"Link": '</v2/_catalog?n=1000>; rel="next"'}),
            "links loop",
        ),
        (
            Reply(
                200,
                b'{"repositories":[]}',
                {"Link": '<http://127.0.0.2:1/v2/_catalog>; rel="next"'},
            ),
            "another host",
        ),
        (Reply(200, b'{"repositories":["' + b"a" * (5 << 20) + b'"]}'), "over"),
    ],
)
def test_ls_hostile_catalog_is_an_error_not_a_crash(
    cli: Cli, hostile: HostileRegistry, reply: Reply, says: str
) -> None:
    hostile.override("/v2/_catalog", reply)
    result = cli("ls", hostile.host)
    assert result.returncode == 6, (result.stdout, result.stderr)
    assert says in result.stderr


def test_ls_endless_catalog_pages_stop(
    cli: Cli, hostile: HostileRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = iter(range(1_000_000))

    def page(method: str, path: str) -> Reply | None:
        if path != "/v2/_catalog":
            return None
        n = next(counter)
        return Reply(
            200,
            json.dumps({"repositories": [f"r{n}"]}).encode(),
            {"Link": f'</v2/_catalog?last=r{n}>; rel="next"'},
        )

    hostile.rule(page)
    monkeypatch.setattr(catalog, "MAX_CATALOG_PAGES", 20)
    result = cli("ls", hostile.host)
    assert result.returncode == 6 and "does not end" in result.stderr
    assert sum(1 for _, p in hostile.hits if p == "/v2/_catalog") == 20


def test_ls_drops_names_no_reference_can_carry(cli: Cli, hostile: HostileRegistry) -> None:
    listed = ["ml/fraud", "../../etc", "UPPER/case", "<script>", "ok/" + "a" * 300]
    hostile.override("/v2/_catalog", Reply(200, json.dumps({"repositories": listed}).encode()))
    result = cli("ls", hostile.host, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [f"{hostile.host}/ml/fraud"]


def test_ls_bad_argument(cli: Cli) -> None:
    result = cli("ls", "localhost:5000/Bad Name")
    assert result.returncode == 2 and "hint:" in result.stderr
