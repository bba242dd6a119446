"""A real MLflow tracking server for the import tests: sqlite backend, local artifact store
served through the server (``--serve-artifacts``), on a free loopback port.

The ``mlflow`` executable is ``$MODELREG_TEST_MLFLOW``, else ``.venv-mlflow/bin/mlflow`` in
the checkout (scripts/setup creates it); the seeding script runs with that venv's python.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from helpers.processes import ServiceUnavailable, free_port

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 300.0  # mlflow imports a lot; on a loaded 2-core machine this takes minutes


def mlflow_executable() -> Path:
    configured = os.environ.get("MODELREG_TEST_MLFLOW")
    path = Path(configured) if configured else ROOT / ".venv-mlflow" / "bin" / "mlflow"
    if not path.is_file():
        raise ServiceUnavailable(
            f"no mlflow at {path} (run scripts/setup, or set MODELREG_TEST_MLFLOW)"
        )
    return path


class MlflowServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.executable = mlflow_executable()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "mlflow-server.log"

    def __enter__(self) -> MlflowServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    str(self.executable), "server",
                    "--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}",
                    "--artifacts-destination", str(self.workdir / "artifacts"),
                    "--serve-artifacts",
                    "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its workers are stopped with it, by its group
                # no job runner (a dozen huey workers): the import reads the registry only
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._stop()
                raise ServiceUnavailable("mlflow server exited", self.log.read_text()[-2000:])
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self._stop()
        raise ServiceUnavailable("mlflow server did not start", self.log.read_text()[-2000:])

    def __exit__(self, *_: object) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def seed(self, model: str) -> dict[str, Any]:
        """Runs, versions, an alias, legacy stages, a description, through MLflow's own client."""
        python = self.executable.parent / "python"
        work = self.workdir / f"seed-{model}"
        work.mkdir()
        done = subprocess.run(
            [
                str(python),
                str(Path(__file__).parent / "mlflow_seed.py"),
                self.url,
                model,
                str(work),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            raise ServiceUnavailable("seeding MLflow failed", done.stderr[-3000:])
        seeded: dict[str, Any] = json.loads((work / "seed.json").read_text())
        return seeded

    def rest(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to MLflow's REST API (what its client does), e.g. to add a version."""
        response = requests.post(f"{self.url}/api/2.0/mlflow/{endpoint}", json=body, timeout=60)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer


__all__ = ["MlflowServer", "mlflow_executable"]
