"""The README's "A tour" runs as written: its blocks, in order, from an empty directory.

The blocks are read from README.md itself, so the README cannot drift from the CLI.
Each runs against a fresh real registry:2 on a free loopback port, standing in for the
``localhost:5000`` the README names; the one block marked as needing a Docker engine
is skipped (tests/test_engines*.py drive docker-load against a real dockerd).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"
DOCKER_MARKER = "# needs a Docker engine"
README_REGISTRY = "localhost:5000"


def tour_blocks(language: str) -> list[str]:
    """The fenced ``language`` blocks of the "A tour" section, in order."""
    text = README.read_text()
    section = text[text.index("\n## A tour\n") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(rf"^```{language}\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)


def test_the_tour_has_what_it_promises() -> None:
    """A cheap guard that the extraction still finds the tour (a test that cannot fail is
    a defect: an empty extraction would let the run below pass vacuously)."""
    shell = "\n".join(tour_blocks("sh"))
    for needed in (
        "key generate carol",
        "policy.toml",
        "--to staging",
        "approve",
        "rollback",
        "history",
        "verify",
        "resolve",
        "pull",
        "copy",
        "diff",
        "lineage",
        "versions",
    ):
        assert needed in shell, needed
    assert sum(DOCKER_MARKER in block for block in tour_blocks("sh")) == 1
    assert len(tour_blocks("python")) == 1


def _run(
    command: list[str], script: str, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        input=script,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_tour_runs_as_written(make_registry: Callable[..., Any], tmp_path: Path) -> None:
    registry = make_registry()
    work = tmp_path / "tour"
    work.mkdir()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MODELREG_HOME": str(tmp_path / "home"),
        "DOCKER_CONFIG": str(tmp_path / "docker"),
        "MODELREG_SETTLE": "0.05",
    }
    for name in ("MODELREG_POLICY", "MODELREG_TRUST"):
        env.pop(name, None)
    blocks = [b for b in tour_blocks("sh") if DOCKER_MARKER not in b]
    script = "set -euo pipefail\n" + "\n".join(blocks).replace(README_REGISTRY, registry.host)
    shell = _run(["bash", "-s"], script, work, env)
    assert shell.returncode == 0, f"stdout:\n{shell.stdout}\nstderr:\n{shell.stderr}"
    out = shell.stdout

    # what the tour shows happened, not only that nothing failed
    assert out.count("key id:") == 3
    repo = f"{registry.host}/ml/fraud"
    assert f"pushed {repo} v3" in out or '"version": 3' in out
    assert "proposed v2 for production (record 1): 1 of 2 signatures" in out
    assert "production -> v3 (record 2, signed by alice, carol)" in out
    assert "production -> v2 (record 3, signed by alice, bob)" in out
    assert "archived -> v3" in out
    assert "description: null -> bert-large, lower learning rate" in out
    assert "config.json: changed (16 B -> 17 B)" in out  # files named with their sizes
    assert "null -> null" not in out
    assert f"verified: {repo}:production -> v2" in out
    assert f"pulled {repo}@sha256:" in out and "(v2)" in out
    assert re.search(rf"copied {re.escape(repo)}@sha256:[0-9a-f]{{64}} to fraud@sha256:", out)
    assert sorted(p.name for p in (work / "out").iterdir()) == ["config.json", "weights.bin"]
    # the rollback was signed under the policy: production verifies with it, on its own
    verify = _run(
        [sys.executable, "-m", "modelreg", "verify", f"{repo}:production", "--json"],
        "",
        work,
        {**env, "MODELREG_POLICY": str(work / "policy.toml")},
    )
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["signers"] == ["alice", "bob"]

    # the Python snippet, in the same directory, after the shell blocks
    (python,) = tour_blocks("python")
    snippet = _run([sys.executable, "-"], python.replace(README_REGISTRY, registry.host), work, env)
    assert snippet.returncode == 0, snippet.stderr
    assert snippet.stdout.splitlines()[0].startswith(f"4 {repo}@sha256:")
    assert snippet.stdout.splitlines()[1] == "production is v2: ['config.json', 'weights.bin']"
