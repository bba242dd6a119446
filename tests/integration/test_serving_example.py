"""The serving example swaps models on promotion and rollback, without a restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests
from helpers.models import unique_repo

from modelreg import api
from modelreg.policy import policy_from_keys
from modelreg.signing import generate_keypair, load_signing_key
from modelreg.store import Stores

SERVER = Path(__file__).parents[2] / "examples" / "serving" / "server.py"


def make_model(root: Path, weight: float, bias: float) -> Path:
    root.mkdir(parents=True)
    (root / "model.json").write_text(json.dumps({"weight": weight, "bias": bias}))
    return root


def wait_for(url: str, version: int, deadline: float) -> dict:
    last: dict = {}
    while time.monotonic() < deadline:
        last = requests.get(url, timeout=5).json()
        if last.get("version") == version:
            return last
        time.sleep(0.1)
    raise AssertionError(f"still serving {last} instead of v{version}")


def test_server_follows_promotions_and_rollbacks(stores: Stores, registry, tmp_path: Path) -> None:
    generate_keypair(tmp_path, "alice")
    alice = load_signing_key(tmp_path / "alice.key")
    policy = policy_from_keys([tmp_path / "alice.pub"])
    target = f"{registry.host}/{unique_repo()}"
    for index, (weight, bias) in enumerate([(2.0, 1.0), (3.0, 0.5)]):
        api.push(
            make_model(tmp_path / f"m{index}", weight, bias), target, capture=False, stores=stores
        )
    api.promote(f"{target}:v1", "production", alice, policy=policy, stores=stores)

    server = subprocess.Popen(
        [
            sys.executable,
            str(SERVER),
            target,
            "--trust",
            str(tmp_path / "alice.pub"),
            "--port",
            "0",
            "--interval",
            "0.1",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MODELREG_HOME": str(stores.home)},
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("listening on"), server.stderr.read() if server.stderr else line
        url = f"http://127.0.0.1:{int(line.split()[-1])}/predict?x=2"
        deadline = time.monotonic() + 60
        assert wait_for(url, 1, deadline)["prediction"] == 5.0
        api.promote(f"{target}:v2", "production", alice, policy=policy, stores=stores)
        assert wait_for(url, 2, deadline)["prediction"] == 6.5
        api.rollback(target, "production", alice, policy=policy, stores=stores)
        assert wait_for(url, 1, deadline)["prediction"] == 5.0
        # a tag moved without a signed record is not followed: v1 stays
        repo = stores.repository(api._reference(target))
        _, data = repo.fetch_manifest("v2")
        repo.push_manifest(data, "application/vnd.oci.image.manifest.v1+json", ["production"])
        time.sleep(1.0)
        assert requests.get(url, timeout=5).json()["version"] == 1
    finally:
        server.terminate()
        server.wait(10)
