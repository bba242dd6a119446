"""A registry worth looking at, and a real ``modelreg ui`` process serving it.

Two repositories on a real registry:2: ``ml/fraud`` (four versions with metrics, a
staging and a production stage signed by alice, a production rollback, a description
and metric name that try to run script, a 9 MiB file in v3 (a layer of its own), and
v1 proposed for ``release``, a 2-of-2 stage, signed by alice alone) and
``ml/tampered`` (its production tag moved by a plain tag PUT, with no signed record).
The UI is meant to run with ``--policy scene.policy`` (alice and bob; ``release``
needs both, every other stage either).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from modelreg import api
from modelreg.oci import IMAGE_MANIFEST
from modelreg.policy import load_policy, policy_from_keys
from modelreg.reference import parse_reference
from modelreg.signing import load_signing_key
from modelreg.store import RegistryOptions, Stores

XSS = '<script>window.__xss = 1; alert(1)</script><img src="x" onerror="window.__xss = 2">'
XSS_METRIC = '<img src=x onerror="window.__xss=3">'
BIG_FILE = "shards/big.bin"
BIG_SIZE = 9 * 1024 * 1024  # over packing.LARGE_FILE: a layer of its own


@dataclass(frozen=True)
class Scene:
    host: str
    fraud: str
    tampered: str
    digests: dict[str, list[str]]
    policy: Path


def build_scene(host: str, home: Path, keys: Path, work: Path) -> Scene:
    stores = Stores(home=home, options=RegistryOptions(settle=0.05))
    fraud, tampered = f"{host}/ml/fraud", f"{host}/ml/tampered"
    digests: dict[str, list[str]] = {fraud: [], tampered: []}
    aucs = [0.90, 0.93, 0.91, 0.95]
    for index, auc in enumerate(aucs):
        model = work / f"fraud-{index}"
        model.mkdir(parents=True)
        (model / "weights.bin").write_bytes(os.urandom(2048) + bytes([index]))
        (model / "config.json").write_text(f'{{"layers": {index + 2}}}\n')
        if index == 2:
            (model / BIG_FILE).parent.mkdir()
            with (model / BIG_FILE).open("wb") as big:
                big.truncate(BIG_SIZE)  # sparse: nothing written to disk
        metrics = {"auc": auc, "loss": 0.4 - auc / 4}
        if index == 2:
            metrics[XSS_METRIC] = 1.0
        digests[fraud].append(
            api.push(
                model,
                fraud,
                capture=False,
                metrics=metrics,
                params={"lr": 0.01 * (index + 1), "epochs": 10},
                data=["s3://bucket/fraud/2026-11.parquet"],
                description=XSS if index == 2 else f"fraud model, run {index + 1}",
                stores=stores,
            ).digest
        )
    for index in range(2):
        model = work / f"tampered-{index}"
        model.mkdir(parents=True)
        (model / "weights.bin").write_bytes(os.urandom(512))
        digests[tampered].append(
            api.push(model, tampered, capture=False, metrics={"auc": 0.8}, stores=stores).digest
        )
    alice = load_signing_key(keys / "alice.key")
    policy = policy_from_keys([keys / "alice.pub"])
    api.promote(f"{fraud}:v2", "staging", alice, policy=policy, stores=stores)
    api.promote(f"{fraud}:v3", "production", alice, policy=policy, stores=stores)
    api.promote(f"{fraud}:v4", "production", alice, policy=policy, stores=stores)
    api.rollback(fraud, "production", alice, policy=policy, stores=stores)
    api.promote(f"{tampered}:v1", "production", alice, policy=policy, stores=stores)
    policy_file = work / "scene.policy"
    policy_file.write_text(
        f'[keys]\nalice = "{keys / "alice.pub"}"\nbob = "{keys / "bob.pub"}"\n\n'
        '[stages.release]\nsigners = ["alice", "bob"]\nthreshold = 2\n'
    )
    proposed = api.promote(
        f"{fraud}:v1", "release", alice, policy=load_policy(policy_file), stores=stores
    )
    assert proposed.status == "pending", proposed
    repo = stores.repository(parse_reference(tampered))
    _, data = repo.fetch_manifest(digests[tampered][1])
    repo.push_manifest(data, IMAGE_MANIFEST, ["production"])  # a plain tag PUT, no record
    stores.close()
    return Scene(host, fraud, tampered, digests, policy_file)


class UiProcess:
    """``python -m modelreg ui …`` on a free loopback port, stopped with Ctrl-C (SIGINT)."""

    def __init__(self, home: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "modelreg", "--home", str(home), "ui", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if not found:
            self.process.kill()
            _, err = self.process.communicate(timeout=10)
            raise AssertionError(f"modelreg ui did not start: {line!r} {err}")
        self.url = found.group(0)

    def interrupt(self, timeout: float = 15) -> tuple[int, str]:
        """Ctrl-C: the exit code and stderr."""
        self.process.send_signal(signal.SIGINT)
        try:
            _, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise
        return self.process.returncode, err

    def stop(self) -> None:
        if self.process.poll() is None:
            self.interrupt()


def wait_listening(url: str, seconds: float = 10) -> None:
    import requests

    deadline = time.monotonic() + seconds
    while True:
        try:
            requests.get(url + "static/style.css", timeout=2)
            return
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
