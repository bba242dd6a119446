"""``modelreg import mlflow+http://…`` against a REAL MLflow tracking server seeded through
MLflow's own client, and against a hostile one that lies on purpose."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers.cli import Cli
from helpers.mlflow_server import MlflowServer
from helpers.models import unique_repo
from helpers.processes import ServiceUnavailable
from helpers.registry import Registry
from helpers.skips import STRICT_ENV, unavailable

import modelreg
from modelreg.errors import IntegrityError, InvalidInput, NotFound, RegistryError
from modelreg.importers import mlflow_client
from modelreg.importers.mlflow import ANNOTATION_RUN, ANNOTATION_VERSION
from modelreg.store import Stores

pytestmark = pytest.mark.mlflow


@pytest.fixture(scope="module")
def mlflow(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[MlflowServer, dict[str, Any]]]:
    """One server for the module, seeded once (starting mlflow takes long)."""
    try:
        with MlflowServer(tmp_path_factory.mktemp("mlflow")) as server:
            yield server, server.seed("fraud")
    except ServiceUnavailable as exc:
        unavailable(exc, "MLflow tracking server")


def test_a_missing_mlflow_fails_under_strict_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELREG_TEST_MLFLOW", str(tmp_path / "no-mlflow"))
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="MODELREG_TEST_STRICT=1"):
        try:
            MlflowServer(tmp_path)
        except ServiceUnavailable as exc:
            unavailable(exc, "MLflow tracking server")


def source(server: MlflowServer, model: str) -> str:
    return f"mlflow+{server.url}/{model}"


def files_of(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_bytes().hex()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_every_version_oldest_first_with_its_runs_lineage(
    mlflow: tuple[MlflowServer, dict[str, Any]], registry: Registry, stores: Stores, tmp_path: Path
) -> None:
    server, seeded = mlflow
    repo = f"{registry.host}/{unique_repo('fraud')}"
    report = modelreg.import_model(source(server, "fraud"), repo, stores=stores)
    assert report.complete and report.form == "mlflow"
    assert [(v.source_version, v.version, v.existed) for v in report.imported] == [
        (1, 1, False),
        (2, 2, False),
        (3, 3, False),
    ]
    assert dict(report.aliases) == {"champion": 2} and dict(report.promotions) == {}

    for expected in seeded["versions"]:
        number = expected["version"]
        pulled = modelreg.pull(f"{repo}:v{number}", tmp_path / f"v{number}", stores=stores)
        assert files_of(pulled.path) == expected["files"]  # byte for byte
        lineage = modelreg.inspect(f"{repo}:v{number}", stores=stores).lineage
        assert lineage is not None
        assert lineage.params == expected["params"]
        assert lineage.metrics["auc"] == pytest.approx(0.80 + number / 100)
        assert lineage.code is not None
        assert lineage.code.commit == f"{number:040x}" and lineage.code.branch == "main"
        assert lineage.code.remote == "https://git.example.com/team/fraud.git"
        assert [d.uri for d in lineage.data] == ["s3://data/fraud.csv"]
        assert lineage.data[0].version and lineage.data[0].version.startswith("fraud-q3@")
        assert lineage.annotations[ANNOTATION_RUN] == expected["runId"]
        assert lineage.annotations[ANNOTATION_VERSION] == str(number)
        assert lineage.annotations["io.mlflow.tag.team"] == "risk"
        assert lineage.description == f"version {number}"
    champion = modelreg.inspect(f"{repo}:champion", stores=stores)
    assert champion.version == 2

    # a new MLflow version (registered through MLflow's REST API) is all a re-run imports
    server.rest(
        "model-versions/create",
        {"name": "fraud", "source": f"runs:/{seeded['versions'][0]['runId']}/model",
         "run_id": seeded["versions"][0]["runId"]},
    )  # fmt: skip
    again = modelreg.import_model(source(server, "fraud"), repo, stores=stores)
    assert [(v.source_version, v.version, v.existed) for v in again.imported] == [
        (1, 1, True),
        (2, 2, True),
        (3, 3, True),
        (4, 4, False),
    ]
    assert [v.version for v in modelreg.versions(repo, stores=stores)] == [1, 2, 3, 4]


def test_cli_stages_as_signed_promotions_and_idempotent_rerun(
    mlflow: tuple[MlflowServer, dict[str, Any]], cli: Cli, keys: Path, tmp_path: Path
) -> None:
    server, _ = mlflow
    model = unique_repo("stages")
    _copy_model(server, "fraud", model, versions=(1, 2, 3))
    server.rest("model-versions/transition-stage",
                {"name": model, "version": "3", "stage": "Production",
                 "archive_existing_versions": False})  # fmt: skip
    server.rest("model-versions/transition-stage",
                {"name": model, "version": "2", "stage": "Staging",
                 "archive_existing_versions": False})  # fmt: skip
    # an alias named like a stage cannot be a tag: a note, the rest goes on
    server.rest("registered-models/alias", {"name": model, "alias": "production", "version": "1"})
    repo = unique_repo("imported")
    argv = ["import", source(server, model), repo, "--stages-as-promotions",
            "--key", str(keys / "alice.key")]  # fmt: skip
    first = cli(*argv)
    assert first.returncode == 0, first.stderr
    assert f"{repo} v1 imported mlflow version 1" in first.stdout
    assert "production -> v3 (signed promotion)" in first.stdout
    assert "staging -> v2 (signed promotion)" in first.stdout
    assert "note: MLflow alias 'production' not set: 'production' is a stage" in first.stdout
    verified = modelreg.verify(f"{repo}:production", trust=[keys / "alice.pub"])
    assert verified.version == 3
    again = cli(*argv, "--json")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert [v["existed"] for v in result["imported"]] == [True, True, True]
    assert result["promotions"] == {"production": 3, "staging": 2}
    history = modelreg.history(repo, trust=[keys / "alice.pub"])
    assert len(history) == 2  # the re-run signed nothing new

    refused = cli("import", source(server, model), unique_repo("x"), "--stages-as-promotions")
    assert refused.returncode == 2 and "needs a key" in refused.stderr


def _copy_model(
    server: MlflowServer,
    origin: str,
    name: str,
    versions: tuple[int, ...],
    sources: dict[int, str] | None = None,
) -> dict[int, str]:
    """A new registered model whose versions point at ``origin``'s runs (or ``sources``)."""
    server.rest("registered-models/create", {"name": name})
    made: dict[int, str] = {}
    for index, number in enumerate(versions, start=1):
        run = _run_of(server, origin, number)
        body = {"name": name, "source": (sources or {}).get(index, f"runs:/{run}/model"),
                "run_id": run}  # fmt: skip
        made[index] = server.rest("model-versions/create", body)["model_version"]["version"]
    return made


def _run_of(server: MlflowServer, model: str, version: int) -> str:
    import requests

    answer = requests.get(
        f"{server.url}/api/2.0/mlflow/model-versions/get",
        params={"name": model, "version": str(version)},
        timeout=60,
    ).json()
    run: str = answer["model_version"]["run_id"]
    return run


def test_a_version_whose_artifacts_are_gone_is_skipped_and_reported(
    mlflow: tuple[MlflowServer, dict[str, Any]], cli: Cli
) -> None:
    server, _ = mlflow
    model = unique_repo("partial")
    run = _run_of(server, "fraud", 2)
    _copy_model(server, "fraud", model, (1, 2, 3), sources={2: f"runs:/{run}/gone"})
    repo = unique_repo("partial")
    result = cli("import", source(server, model), repo)
    assert result.returncode == NotFound.exit_code
    assert "skipped mlflow version 2: the MLflow artifacts at" in result.stdout
    assert "1 version(s) of" in result.stderr and "(2); 2 imported" in result.stderr
    assert "hint: restore their artifacts" in result.stderr
    assert [v.version for v in modelreg.versions(repo)] == [1, 2]  # MLflow 1 and 3
    assert modelreg.inspect(f"{repo}:v2").lineage.annotations[ANNOTATION_VERSION] == "3"  # type: ignore[union-attr]


def test_unknown_model_and_unreachable_server(
    mlflow: tuple[MlflowServer, dict[str, Any]], cli: Cli
) -> None:
    server, _ = mlflow
    repo = unique_repo("nothing")
    unknown = cli("import", source(server, "no-such-model"), repo)
    assert unknown.returncode == 3
    assert "has no registered model 'no-such-model'" in unknown.stderr
    down = cli("--timeout", "2", "import", "mlflow+http://127.0.0.1:9/fraud", repo)
    assert down.returncode == 5 and "cannot reach the MLflow server" in down.stderr
    assert "hint:" in down.stderr
    with pytest.raises(NotFound):
        modelreg.versions(repo)  # nothing written


# ----- a hostile server ----------------------------------------------------------------------


class _Hostile(ThreadingHTTPServer):
    routes: dict[str, tuple[int, bytes]]
    seen: list[dict[str, str]]


class _Handler(BaseHTTPRequestHandler):
    server: _Hostile

    def do_GET(self) -> None:
        self.server.seen.append(dict(self.headers))
        path = self.path.split("?", 1)[0]
        listing = self.path if "artifacts?" in self.path else path
        status, body = self.server.routes.get(listing, self.server.routes.get(path, (404, b"{}")))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def hostile_mlflow() -> Iterator[_Hostile]:
    server = _Hostile(("127.0.0.1", 0), _Handler)
    server.routes, server.seen = {}, []
    model = {"registered_model": {"name": "m", "aliases": []}}
    versions = {"model_versions": [{"name": "m", "version": "1", "status": "READY", "run_id": ""}]}
    api = "/api/2.0/mlflow"
    server.routes.update(
        {
            f"{api}/registered-models/get": (200, json.dumps(model).encode()),
            f"{api}/model-versions/search": (200, json.dumps(versions).encode()),
            f"{api}/model-versions/get-download-uri": (
                200, b'{"artifact_uri": "mlflow-artifacts:/1/run/artifacts/model"}'),
        }
    )  # fmt: skip
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


def _listing(server: _Hostile, files: list[dict[str, Any]]) -> None:
    server.routes["/api/2.0/mlflow-artifacts/artifacts?path=1%2Frun%2Fartifacts%2Fmodel"] = (
        200,
        json.dumps({"files": files}).encode(),
    )


def _url(server: _Hostile) -> str:
    return f"mlflow+http://127.0.0.1:{server.server_address[1]}/m"


def test_hostile_server_paths_that_escape_are_refused(
    hostile_mlflow: _Hostile,
) -> None:
    for bad in ("../../etc/passwd", "/abs", "a/../../b", "..", "a\\..\\b"):
        _listing(hostile_mlflow, [{"path": bad, "is_dir": False, "file_size": 3}])
        with pytest.raises(IntegrityError, match="unsafe artifact path"):
            modelreg.import_model(_url(hostile_mlflow), "escaped")
    with pytest.raises(NotFound):
        modelreg.versions("escaped")  # nothing written


def test_hostile_server_bounds(hostile_mlflow: _Hostile, monkeypatch: pytest.MonkeyPatch) -> None:
    api = "/api/2.0/mlflow"
    # a huge listing
    monkeypatch.setattr(mlflow_client, "MAX_FILES", 50)
    _listing(
        hostile_mlflow, [{"path": f"f{i}", "is_dir": False, "file_size": 1} for i in range(60)]
    )
    with pytest.raises(IntegrityError, match="more than 50 entries"):
        modelreg.import_model(_url(hostile_mlflow), "bounded")
    # an artifact longer than listed
    _listing(hostile_mlflow, [{"path": "w.bin", "is_dir": False, "file_size": 3}])
    hostile_mlflow.routes["/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/model/w.bin"] = (
        200,
        b"x" * 5000,
    )
    with pytest.raises(IntegrityError, match="larger than its listed 3 bytes"):
        modelreg.import_model(_url(hostile_mlflow), "bounded")
    # malformed and oversized JSON
    hostile_mlflow.routes[f"{api}/model-versions/search"] = (200, b"{not json")
    with pytest.raises(RegistryError, match="something other than JSON"):
        modelreg.import_model(_url(hostile_mlflow), "bounded")
    hostile_mlflow.routes[f"{api}/model-versions/search"] = (200, b"[1, 2]")
    with pytest.raises(RegistryError, match="malformed"):
        modelreg.import_model(_url(hostile_mlflow), "bounded")
    monkeypatch.setattr(mlflow_client, "MAX_JSON", 4096)
    hostile_mlflow.routes[f"{api}/model-versions/search"] = (200, b" " * 10_000 + b"{}")
    with pytest.raises(RegistryError, match="larger than 4096 bytes"):
        modelreg.import_model(_url(hostile_mlflow), "bounded")
    with pytest.raises(NotFound):
        modelreg.versions("bounded")


def test_credentials_as_mlflow_reads_them(
    hostile_mlflow: _Hostile, monkeypatch: pytest.MonkeyPatch
) -> None:
    _listing(hostile_mlflow, [])
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t0ken")
    modelreg.import_model(_url(hostile_mlflow), "auth")  # the only version has no artifacts
    assert hostile_mlflow.seen and all(
        h.get("Authorization") == "Bearer t0ken" for h in hostile_mlflow.seen
    )
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ann")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    hostile_mlflow.seen.clear()
    modelreg.import_model(_url(hostile_mlflow), "auth")
    assert hostile_mlflow.seen[0].get("Authorization") == "Basic YW5uOnB3"
    hostile_mlflow.routes["/api/2.0/mlflow/registered-models/get"] = (401, b"{}")
    with pytest.raises(modelreg.ModelregError) as refused:
        modelreg.import_model(_url(hostile_mlflow), "auth")
    assert refused.value.exit_code == 4 and "MLFLOW_TRACKING_TOKEN" in str(refused.value.hint)


@pytest.mark.parametrize(
    "bad",
    [
        "mlflow+http://127.0.0.1:5000",
        "mlflow+http://user:secret@127.0.0.1:5000/m",
        "mlflow+http://127.0.0.1:notaport/m",
        "mlflow+ftp://127.0.0.1/m",
    ],
)
def test_bad_mlflow_urls(bad: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        modelreg.import_model(bad, "x")
    assert caught.value.hint
