"""`modelreg ui` over HTTP: a real server process on a real registry — what each page says,
that stage holders are verified now, that registry text is escaped, the security headers,
hostile registries, and a clean Ctrl-C. (test_ui_browser.py drives a real browser.)"""

from __future__ import annotations

import html
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers.cli import Cli
from helpers.hostile_registry import HostileRegistry, Reply
from helpers.registry import Registry, run_registry
from helpers.skips import service_or_skip
from helpers.token_issuer import TokenIssuer
from helpers.ui_scene import BIG_FILE, XSS, XSS_METRIC, Scene, UiProcess, build_scene
from markupsafe import escape
from test_auth import issuer, token_registry  # noqa: F401  (fixtures)

from modelreg.oci import IMAGE_MANIFEST
from modelreg.reference import parse_reference
from modelreg.store import Stores


@pytest.fixture(scope="module")
def scene_home(engines_tmp: Path, keys: Path) -> Iterator[tuple[Scene, Path]]:
    with service_or_skip("registry", run_registry(engines_tmp / "ui-http-registry")) as registry:
        home = engines_tmp / "ui-http-home"
        yield build_scene(registry.host, home, keys, engines_tmp / "ui-http-models"), home


@pytest.fixture(scope="module")
def ui(scene_home: tuple[Scene, Path]) -> Iterator[UiProcess]:
    scene, home = scene_home
    server = UiProcess(home, scene.host, "--policy", str(scene.policy))
    yield server
    server.stop()


@pytest.fixture
def scene(scene_home: tuple[Scene, Path]) -> Scene:
    return scene_home[0]


def get(ui: UiProcess, path: str, **params: str | list[str]) -> requests.Response:
    return requests.get(ui.url + path.lstrip("/"), params=params, timeout=30)


def test_home_lists_the_catalog_with_verified_stage_holders(ui: UiProcess, scene: Scene) -> None:
    page = get(ui, "/")
    assert page.status_code == 200
    text = page.text
    assert html.escape(scene.fraud) in text and html.escape(scene.tampered) in text
    assert "production → v3 ✓" in text  # rolled back from v4 to v3
    assert "staging → v2 ✓" in text
    # the moved tag is never shown as a holder
    assert "production → v2" not in text
    assert 'class="stage refused"' in text


def test_security_headers_on_every_answer(ui: UiProcess) -> None:
    for path in ("/", "/static/style.css", "/nowhere", "/repo?name=Bad%20Name"):
        answer = get(ui, path)
        csp = answer.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src" not in csp and "'unsafe-inline'" not in csp
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert get(ui, "/nowhere").status_code == 404
    assert get(ui, "/repo", name="Bad Name").status_code == 400


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("evil.example:8080", 400),  # DNS rebinding: the attacker's name, our address
        ("127.0.0.1.evil.example", 400),
        ("localhost.evil.example:80", 400),
        ("", 400),
        ("localhost", 200),
        ("LOCALHOST:8080", 200),
        ("127.0.0.1", 200),
        ("[::1]:8080", 200),
        ("10.0.0.7:8080", 200),  # an address names this machine (a --host bind)
    ],
)
def test_only_addresses_and_localhost_are_answered(ui: UiProcess, host: str, status: int) -> None:
    answer = requests.get(ui.url, headers={"Host": host}, timeout=30)
    assert answer.status_code == status, answer.text
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
    if status == 400:
        assert "Host" in answer.text and "fraud" not in answer.text


def test_repository_page_stages_verified_now(ui: UiProcess, scene: Scene) -> None:
    fraud = get(ui, "/repo", name=scene.fraud).text
    assert 'data-stage="production"' in fraud and "verified (record 3)" in fraud
    tampered = get(ui, "/repo", name=scene.tampered).text
    row = tampered.split('data-stage="production"', 1)[1].split("</tr>", 1)[0]
    assert "refused: the production tag" in row and "moved without a signed promotion" in row
    assert "verified" not in row
    # the versions table: the tag points at v2, but it is shown as not verified
    assert "production: tag not verified" in tampered
    assert f"modelreg rollback {scene.tampered} --stage production --key YOUR.key" in tampered


def _pending_row(text: str, stage: str) -> str:
    panel = text.split('id="stages"', 1)[1].split("</section>", 1)[0]
    return panel.split(f'class="pending-row" data-stage="{stage}"', 1)[1].split("</tr>", 1)[0]


def test_pending_proposals_show_who_signed_and_how_to_approve(ui: UiProcess, scene: Scene) -> None:
    text = get(ui, "/repo", name=scene.fraud).text
    row = html.unescape(_pending_row(text, "release"))
    v1 = scene.digests[scene.fraud][0]
    assert 'data-sequence="1"' in row
    assert "promote: ∅ → " in row and ">v1</a>" in row  # nothing holds release yet
    assert "<td>alice</td>" in row and ">1 of 2</td>" in row
    assert f"modelreg approve {scene.fraud}@{v1} --to release --key YOUR.key" in row
    # a proposal is not a holder: no stage row for release, and v1 carries no stage
    assert 'data-stage="release"' not in text.split('id="pending"', 1)[0]
    assert 'id="pending"' not in get(ui, "/repo", name=scene.tampered).text


def test_the_approve_command_shown_moves_the_stage(
    registry: Registry, tmp_path: Path, keys: Path, cli: Cli
) -> None:
    """Copied from the page and run with the second key, the command completes the move."""
    home = tmp_path / "home"
    name = f"{registry.host}/ml/approve-{tmp_path.name[-12:].lower()}"
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w" * 100)
    assert cli("--home", str(home), "push", str(model), name, "--no-capture").returncode == 0
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f'[keys]\nalice = "{keys / "alice.pub"}"\nbob = "{keys / "bob.pub"}"\n'
        "[stages.production]\nthreshold = 2\n"
    )
    alice = ("--key", str(keys / "alice.key"), "--policy", str(policy))
    proposed = cli("--home", str(home), "promote", f"{name}:v1", "--to", "production", *alice)
    assert proposed.returncode == 0 and "1 of 2 signatures" in proposed.stdout
    server = UiProcess(home, name, "--policy", str(policy))
    try:
        page = requests.get(server.url + "repo", params={"name": name}, timeout=60).text
        command = html.unescape(_pending_row(page, "production")).split("<code>", 1)[1]
        words = command.split("</code>", 1)[0].split()
        assert words[:2] == ["modelreg", "approve"] and words[-2:] == ["--key", "YOUR.key"]
        bob = [*words[1:-1], str(keys / "bob.key"), "--policy", str(policy)]
        approved = cli("--home", str(home), *bob)
        assert approved.returncode == 0, approved.stderr
        after = requests.get(server.url + "repo", params={"name": name}, timeout=60).text
    finally:
        code, err = server.interrupt()
    assert code == 0, err
    assert 'id="pending"' not in after
    row = after.split('data-stage="production"', 1)[1].split("</tr>", 1)[0]
    assert "verified (record 1)" in row and "alice, bob" in row


def test_a_version_tag_moved_between_renders_shows_as_moved(
    registry: Registry, tmp_path: Path, cli: Cli
) -> None:
    """The server remembers what digests name between requests, never where a tag points."""
    home = tmp_path / "home"
    name = f"{registry.host}/ml/moved-{tmp_path.name[-12:].lower()}"
    digests = []
    for index in range(2):
        model = tmp_path / f"model-{index}"
        model.mkdir()
        (model / "weights.bin").write_bytes(bytes([index]) * 100)
        pushed = cli("--home", str(home), "push", str(model), name, "--no-capture", "--json")
        assert pushed.returncode == 0, pushed.stderr
        digests.append(json.loads(pushed.stdout)["digest"])

    def row(page: str, version: int) -> str:
        return page.split(f'data-version="{version}"', 1)[1].split("</tr>", 1)[0]

    server = UiProcess(home, name)
    try:
        for _ in range(2):  # the second render is the warm one
            page = requests.get(server.url + "repo", params={"name": name}, timeout=60).text
            assert digests[0][:19] in row(page, 1) and digests[1][:19] in row(page, 2)
        with Stores(home=home) as stores:
            repository = stores.repository(parse_reference(name))
            _, data = repository.fetch_manifest(digests[1])
            repository.push_manifest(data, IMAGE_MANIFEST, ["v1"])  # a plain tag PUT
        page = requests.get(server.url + "repo", params={"name": name}, timeout=60).text
    finally:
        code, err = server.interrupt()
    assert code == 0, err
    assert digests[1][:19] in row(page, 1) and digests[0][:19] not in row(page, 1)


def test_promotion_history_timeline(ui: UiProcess, scene: Scene) -> None:
    text = get(ui, "/repo", name=scene.fraud).text
    timeline = text.split('id="history"', 1)[1]
    entries = [li.split("</li>", 1)[0] for li in timeline.split("<li")[1:]]
    heads = sorted(e.split("<strong>", 1)[1].split("</strong>", 1)[0] for e in entries)
    # promoting v4 archived v3, the rollback archived v4 again
    assert heads == [
        "archived #1",
        "archived #2",
        "production #1",
        "production #2",
        "production #3",
        "staging #1",
    ]
    assert 'production #3</strong>\n<span class="action">rollback</span>' in timeline
    assert "signed by alice" in timeline and "refused" not in timeline


def _version_order(text: str) -> list[str]:
    table = text.split('id="version-table"', 1)[1].split("</table>", 1)[0]
    return [part.split('"', 1)[0] for part in table.split('data-version="')[1:]]


def test_versions_sort_and_filter(ui: UiProcess, scene: Scene) -> None:
    assert _version_order(get(ui, "/repo", name=scene.fraud).text) == ["4", "3", "2", "1"]
    by_auc = get(ui, "/repo", name=scene.fraud, sort="metric:auc", order="asc").text
    assert _version_order(by_auc) == ["1", "3", "2", "4"]
    filtered = get(ui, "/repo", name=scene.fraud, where="metrics.auc>=0.93").text
    assert _version_order(filtered) == ["4", "2"]
    both = get(ui, "/repo", name=scene.fraud, where=["metrics.auc>=0.93", "params.lr<0.03"])
    assert _version_order(both.text) == ["2"]
    one_box = get(ui, "/repo", name=scene.fraud, where="metrics.auc>=0.93 and params.lr<0.03")
    assert _version_order(one_box.text) == ["2"]
    assert 'value="metrics.auc&gt;=0.93 and params.lr&lt;0.03"' in one_box.text
    bad = get(ui, "/repo", name=scene.fraud, where="metrics.auc>>1")
    assert bad.status_code == 400 and "hint:" in bad.text
    assert get(ui, "/repo", name=scene.fraud, sort="weights").status_code == 400


def test_charts_are_inline_svg_with_stage_holders(ui: UiProcess, scene: Scene) -> None:
    text = get(ui, "/repo", name=scene.fraud).text
    charts = text.split('id="charts"', 1)[1]
    assert charts.count("<svg") == 3  # auc, loss, and the hostile metric name
    assert "v3: auc = 0.91 (production)" in charts and "v2: auc = 0.93 (staging)" in charts
    assert "<script" not in text and 'src="http' not in text


def test_registry_text_is_escaped(ui: UiProcess, scene: Scene) -> None:
    for text in (
        get(ui, "/version", name=scene.fraud, v="3").text,
        get(ui, "/repo", name=scene.fraud).text,
    ):
        assert "<script" not in text and "<img" not in text
        assert "onerror=" not in text.replace("onerror=&#34;", "").replace("onerror=&quot;", "")
    version = get(ui, "/version", name=scene.fraud, v="3").text
    assert str(escape(XSS)) in version  # shown as text, exactly
    assert str(escape(XSS_METRIC)) in get(ui, "/repo", name=scene.fraud).text


def test_version_page(ui: UiProcess, scene: Scene) -> None:
    digest = scene.digests[scene.fraud][2]
    text = html.unescape(get(ui, "/version", name=scene.fraud, v="3").text)
    assert f"docker pull {scene.fraud}@{digest}" in text
    assert f"reference: {scene.fraud}@{digest}" in text  # the Kubernetes image volume
    assert f"modelreg pull {scene.fraud}@{digest} ./model" in text
    assert f'resolver.resolve("{scene.fraud}", stage="production")' in text
    assert "s3://bucket/fraud/2026-11.parquet" in text and "epochs" in text
    assert "weights.bin" in text and "config.json" in text
    files = text.split('id="files"', 1)[1].split("</table>", 1)[0]
    big = files.split(f"<tr><td>{BIG_FILE}</td>", 1)[1].split("</tr>", 1)[0]
    assert '"num">9.0 MiB</td>' in big and "own layer" in big  # its layer's size, no read
    records = text.split('id="records"', 1)[1]
    assert "production #1 promote" in records and "production #3 rollback" in records
    lineage = text.split('id="lineage"', 1)[1].split("</section>", 1)[0]
    assert "loss" in lineage and not re.search(r"\d\.\d{14,}", lineage)  # no 0.17500000000000002
    by_digest = get(ui, "/version", name=scene.fraud, digest=digest).text
    assert "weights.bin" in by_digest
    assert get(ui, "/version", name=scene.fraud, v="99").status_code == 404


def test_diff_page_matches_the_cli(ui: UiProcess, scene: Scene, cli, scene_home) -> None:
    text = html.unescape(get(ui, "/diff", name=scene.fraud, a="1", b="4").text)
    _, home = scene_home
    expected = json.loads(
        cli("--home", str(home), "diff", f"{scene.fraud}:v1", f"{scene.fraud}:v4", "--json").stdout
    )
    for group, changes in expected.items():
        for change in changes:
            assert f"<td>{change['path']}</td>" in text, (group, change)
    assert 'id="diff-params"' in text and 'id="diff-files"' in text
    assert f"modelreg diff {scene.fraud}:v1 {scene.fraud}:v4" in text
    assert '"before">0.9</td>' in text and '"after">0.95</td>' in text  # no float noise
    same = get(ui, "/diff", name=scene.fraud, a="2", b="2").text
    assert 'id="no-differences"' in same


def test_only_the_named_sources_are_served(ui: UiProcess, hostile: HostileRegistry) -> None:
    answer = get(ui, "/repo", name=f"{hostile.host}/ml/fraud")
    assert answer.status_code == 404 and "not one of the repositories this UI serves" in answer.text
    assert get(ui, "/repo", name="local/only").status_code == 404
    assert hostile.hits == []  # the server never asked a registry nobody named


def test_without_a_trust_policy_no_stage_has_a_holder(
    scene_home: tuple[Scene, Path], tmp_path: Path
) -> None:
    scene, home = scene_home
    server = UiProcess(home, scene.fraud)
    try:
        text = requests.get(server.url, timeout=30).text
        assert "✓" not in text and "no trust policy" in text
        page = requests.get(server.url + "repo", params={"name": scene.fraud}, timeout=30).text
        assert "not verified: no trust policy" in page and "verified (record" not in page
        # the proposal is listed, its signatures not counted without a policy
        row = _pending_row(page, "release")
        assert "not verified: no trust policy" in row and "of 2" not in row
    finally:
        code, err = server.interrupt()
    assert code == 0 and "stopped" in err


def test_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    server = UiProcess(tmp_path / "home")
    assert requests.get(server.url, timeout=30).status_code == 200
    code, err = server.interrupt()
    assert code == 0, err
    assert "stopped" in err and "Traceback" not in err
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url, timeout=5)


def test_busy_port_is_a_clear_error(cli, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = cli.process("ui", "--port", str(port), timeout=60)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "hint:" in result.stderr


def test_hostile_registry_gives_error_panels(
    hostile: HostileRegistry, tmp_path: Path, keys: Path
) -> None:
    hostile.override(
        "/v2/_catalog",
        Reply(200, json.dumps({"repositories": ["ml/bad", "ml/huge"]}).encode()),
    )
    hostile.override("/v2/ml/bad/tags/list", Reply(200, b'{"tags": {"not": "a list"}}'))
    hostile.override(
        "/v2/ml/huge/tags/list", Reply(200, b'{"tags": [' + b'"v1",' * 7_000_000 + b'"v2"]}')
    )
    server = UiProcess(tmp_path / "home", hostile.host, "--trust", str(keys / "alice.pub"))
    try:
        home = requests.get(server.url, timeout=60)
        assert home.status_code == 200
        assert "tag list is malformed" in home.text
        page = requests.get(server.url + "repo", params={"name": f"{hostile.host}/ml/bad"})
        assert page.status_code == 502 and 'id="error"' in page.text
        assert "tag list is malformed" in page.text
        huge = requests.get(server.url + "repo", params={"name": f"{hostile.host}/ml/huge"})
        assert huge.status_code == 502 and "byte limit" in huge.text
        hostile.override("/v2/_catalog", Reply(200, b"{not json"))
        broken = requests.get(server.url, timeout=60)
        assert broken.status_code == 200 and "catalog is not valid JSON" in broken.text
        assert requests.get(server.url + "static/style.css").status_code == 200  # still up
    finally:
        code, err = server.interrupt()
    assert code == 0 and "Traceback" not in err


def test_a_registry_that_trickles_gets_an_error_panel_not_the_whole_ui(
    hostile: HostileRegistry, tmp_path: Path, keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One repository whose tag list sends a byte every half second (each well within
    the read timeout, the answer never done) held every page and thread; now it is an
    error panel after its grace (3 x --timeout), and the rest of the UI answers."""
    import threading

    from helpers.hostile_registry import build_model

    monkeypatch.setenv("MODELREG_TIMEOUT", "1")
    data, blobs = build_model([("model", b"\0" * 1024)])
    for blob in blobs:
        hostile.add_blob("ml/ok", blob)
    hostile.add_manifest("ml/ok", data, IMAGE_MANIFEST, ["v1"])
    hostile.override(
        "/v2/_catalog", Reply(200, json.dumps({"repositories": ["ml/ok", "ml/slow"]}).encode())
    )
    gate = hostile.gate()

    def trickle() -> Iterator[bytes]:
        yield b'{"name":"ml/slow","tags":['
        while not gate.wait(0.5):
            yield b" "

    hostile.override("/v2/ml/slow/tags/list", Reply(200, trickle, {}, None))
    server = UiProcess(tmp_path / "home", hostile.host, "--trust", str(keys / "alice.pub"))
    try:
        slow = f"{hostile.host}/ml/slow"
        stuck = [
            threading.Thread(target=requests.get, args=(server.url + "repo",),
                             kwargs={"params": {"name": slow}, "timeout": 60})
            for _ in range(45)
        ]  # fmt: skip
        for thread in stuck:  # more than the server's worker threads
            thread.start()
        home = requests.get(server.url, timeout=60)
        assert home.status_code == 200 and "too slowly" in home.text
        ok = requests.get(server.url + "repo", params={"name": f"{hostile.host}/ml/ok"}, timeout=60)
        assert ok.status_code == 200 and "v1" in ok.text
        for thread in stuck:
            thread.join(60)
    finally:
        code, err = server.interrupt()
    assert code == 0 and "Traceback" not in err


def test_no_credential_or_token_reaches_a_page(
    token_registry: Registry,  # noqa: F811
    issuer: TokenIssuer,  # noqa: F811
    cli: Cli,
    tmp_path: Path,
    keys: Path,
) -> None:
    from test_auth import PASSWORD, USER, assert_clean

    home = tmp_path / "home"
    assert (
        cli("login", token_registry.host, "-u", USER, "--password-stdin", input=PASSWORD).returncode
        == 0
    )
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w" * 100)
    name = f"{token_registry.host}/ml/secret"
    pushed = cli("push", str(model), name, "--no-capture", "-m", "auc=0.9")
    assert pushed.returncode == 0, pushed.stderr
    server = UiProcess(home, token_registry.host, name, "--trust", str(keys / "alice.pub"))
    try:
        pages = [
            requests.get(server.url + path, params=params, timeout=60)
            for path, params in [
                ("", {}),
                ("repo", {"name": name}),
                ("version", {"name": name, "v": "1"}),
                ("version", {"name": name, "v": "7"}),
                ("diff", {"name": name, "a": "1", "b": "1"}),
            ]
        ]
    finally:
        code, err = server.interrupt()
    assert [p.status_code for p in pages] == [200, 200, 200, 404, 200]
    assert issuer.tokens  # the UI did authenticate
    for page in pages:
        assert_clean(page.text, *issuer.tokens)
    assert_clean(err, *issuer.tokens)
    assert code == 0
